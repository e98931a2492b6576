//! Per-function data flow: which parameters and call results reach which call
//! arguments, returns and stores.

pub mod interp;
pub mod summary;
pub mod value;

pub use summary::{CallSite, FnRef, ParamStore, Summary, Target};
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
            Target::Local(a) => match self.bin.by_addr.get(a) {
                Some(&f) => self.local[f] || seeds::noreturn(&self.bin.funcs[f].name),
                None => false,
            },
            _ => false,
        }
    }
}

/// Summaries of every function (index-aligned with `bin.funcs`).
pub fn summarize_all(bin: &Binary) -> Vec<Summary> {
    let mut env = NoReturn { bin, local: vec![false; bin.funcs.len()] };
    // Two passes: the first learns which local functions never return
    // (`die()`, `xalloc_failed()`), the second uses that to cut their call edges.
    let first = run(bin, &env);
    env.local = first.iter().map(|s| s.noreturn).collect();
    run(bin, &env)
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
                s.spawn(move || {
                    (lo..hi)
                        .map(|f| interp::summarize(bin, env, bin.funcs[f].addr, bin.funcs[f].size))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for h in handles {
            out.extend(h.join().unwrap_or_default());
        }
    });
    out
}
