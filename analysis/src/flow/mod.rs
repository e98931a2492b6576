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
    let env = NoReturn { bin, local: local_noreturn(bin) };
    run(bin, &env)
}

/// Local functions that never return (`die()`, `xalloc_failed()`), by a cheap
/// syntactic scan: no `ret`, no indirect jump, and every jump out of the function
/// goes to a function that never returns. Three rounds settle short chains.
fn local_noreturn(bin: &Binary) -> Vec<bool> {
    use iced_x86::FlowControl;
    let decoded: Vec<Vec<iced_x86::Instruction>> =
        bin.funcs.iter().map(|f| interp::decode(bin, f.addr, f.size)).collect();
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

fn run(bin: &Binary, env: &NoReturn) -> Vec<Summary> {
    let n = bin.funcs.len();
    let threads = std::thread::available_parallelism().map(|p| p.get()).unwrap_or(1).clamp(1, 8);
    let chunk = n.div_ceil(threads).max(1);
    let mut out: Vec<Summary> = Vec::with_capacity(n);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..n)
            .step_by(chunk)
            .map(|lo| {
                let hi = (lo + chunk).min(n);
                let h = s.spawn(move || {
                    (lo..hi)
                        .map(|f| interp::summarize(bin, env, bin.funcs[f].addr, bin.funcs[f].size))
                        .collect::<Vec<_>>()
                });
                (hi - lo, h)
            })
            .collect();
        // Summaries stay index-aligned with the functions even if a chunk failed:
        // its functions get empty summaries (nothing is classified from them).
        for (len, h) in handles {
            out.extend(h.join().unwrap_or_else(|_| vec![Summary::default(); len]));
        }
    });
    out
}
