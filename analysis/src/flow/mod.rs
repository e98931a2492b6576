//! Per-function data flow: which parameters and call results reach which call
//! arguments, returns and stores.

mod branch;
pub mod interp;
pub(crate) mod keeps;
pub(crate) mod paths;
mod state;
pub mod summary;
mod transfer;
pub mod value;

pub use summary::{CallSite, FnRef, ParamStore, Summary, Target, Via};
pub use value::Val;

use crate::load::Binary;
use crate::seeds;

/// Noreturn knowledge for the interpreter: external names, plus local functions
/// found not to return by a cheap first pass.
struct NoReturn<'a> {
    bin: &'a Binary,
    local: Vec<bool>,
}

impl interp::Env for NoReturn<'_> {
    fn noreturn(&self, t: &Target) -> bool {
        match t {
            Target::Import(n) => seeds::noreturn(n),
            Target::Local(a) => target_noreturn(self.bin, &self.local, *a),
            _ => false,
        }
    }
}

/// Summaries of every function (index-aligned with `bin.funcs`).
pub fn summarize_all(bin: &Binary) -> Vec<Summary> {
    // Each function is decoded once, for both the noreturn scan and its summary.
    let decoded: Vec<Vec<iced_x86::Instruction>> = par_map(bin, |f| interp::decode(bin, bin.funcs[f].addr, bin.funcs[f].size));
    let env = NoReturn { bin, local: local_noreturn(bin, &decoded) };
    par_map(bin, |f| interp::summarize(bin, &env, bin.funcs[f].addr, &decoded[f]))
}

/// `work(f)` for every function index f, index-aligned with `bin.funcs`, on all cores.
/// Functions are handed out one at a time, largest first, so that one huge
/// function (SQLite's `sqlite3VdbeExec`) does not leave the other cores idle at
/// the end, as fixed halves did. A function whose analysis panics gets the
/// default (for a summary: nothing is classified from it); the others are kept.
fn par_map<T: Default + Send>(bin: &Binary, work: impl Fn(usize) -> T + Sync) -> Vec<T> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let n = bin.funcs.len();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by_key(|&f| std::cmp::Reverse(bin.funcs[f].size));
    let threads = std::thread::available_parallelism().map(|p| p.get()).unwrap_or(1).clamp(1, 8).min(n.max(1));
    let next = AtomicUsize::new(0);
    let mut out: Vec<T> = (0..n).map(|_| T::default()).collect();
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let k = next.fetch_add(1, Ordering::Relaxed);
                        let Some(&f) = order.get(k) else { break };
                        if let Ok(v) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(f))) {
                            done.push((f, v));
                        }
                    }
                    done
                })
            })
            .collect();
        for h in handles {
            for (f, v) in h.join().unwrap_or_default() {
                out[f] = v;
            }
        }
    });
    out
}

/// Local functions that never return (`die()`, `xalloc_failed()`), by a cheap
/// syntactic scan: no `ret`, no indirect jump, and every jump out of the function
/// goes to a function that never returns. Three rounds settle short chains.
fn local_noreturn(bin: &Binary, decoded: &[Vec<iced_x86::Instruction>]) -> Vec<bool> {
    use iced_x86::FlowControl;
    let mut nr = vec![false; bin.funcs.len()];
    for _ in 0..3 {
        let mut changed = false;
        for (i, insns) in decoded.iter().enumerate() {
            if nr[i] || insns.is_empty() {
                continue;
            }
            let f = &bin.funcs[i];
            let (lo, hi) = (f.addr, f.addr.saturating_add(f.size));
            let exits_ok = insns.iter().all(|ins| match ins.flow_control() {
                FlowControl::Return | FlowControl::IndirectBranch => false,
                FlowControl::UnconditionalBranch => {
                    let t = ins.near_branch_target();
                    (lo..hi).contains(&t) || target_noreturn(bin, &nr, t)
                }
                _ => true,
            });
            let last = insns[insns.len() - 1];
            let ends_dead = matches!(last.flow_control(), FlowControl::Call | FlowControl::UnconditionalBranch | FlowControl::Interrupt | FlowControl::Exception)
                || last.mnemonic() == iced_x86::Mnemonic::Ud2;
            if exits_ok && ends_dead && insns.iter().any(|i| matches!(i.flow_control(), FlowControl::Call | FlowControl::UnconditionalBranch | FlowControl::Exception | FlowControl::Interrupt)) {
                nr[i] = true;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    nr
}

fn target_noreturn(bin: &Binary, nr: &[bool], t: u64) -> bool {
    if let Some(n) = bin.stubs.get(&t) {
        return seeds::noreturn(n);
    }
    match bin.by_addr.get(&t) {
        Some(&f) => nr[f] || seeds::noreturn(&bin.funcs[f].name),
        None => false,
    }
}
