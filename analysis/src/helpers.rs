//! Pure helpers: functions whose result derives only from their own parameters
//! (`round_class(n)`, SQLite's `xRoundup(n)` reached through `sqlite3GlobalConfig.m`).
//! A size computed by such a helper is still the size its arguments carry, so
//! `xMalloc(xRoundup(n))` gives its caller a size role (`mallocWithAlarm`,
//! `sqlite3Realloc` at -O0, where nothing inlines the rounding).

use crate::flow::value::{GLOAD, LOAD, TOP};
use crate::flow::{Summary, Target, Val};
use crate::load::Binary;
use std::collections::HashMap;

/// Most candidates a pointer call may have and still count as a helper call: a slot
/// shared more widely than that is a callback table, not a rounding hook.
const MAX_CANDIDATES: usize = 16;

pub struct Helpers {
    /// Per function: the parameters its result derives from, when it is pure.
    pure: Vec<Option<u8>>,
    /// Candidate functions of the calls through pointers whose candidates do not depend
    /// on the caller (globals and untyped members).
    ptr: HashMap<Target, Vec<usize>>,
}

fn bit(c: usize) -> u32 {
    1u32 << c.min(31)
}

impl Helpers {
    /// `cands`: the classifier's candidate lists, keyed by (target, caller key).
    pub fn build(bin: &Binary, sums: &[Summary], cands: &crate::fxhash::FxHashMap<(Target, u64), (Vec<u64>, bool)>) -> Helpers {
        let ptr: HashMap<Target, Vec<usize>> = cands
            .iter()
            .filter(|((_, caller), (c, _))| *caller == 0 && !c.is_empty() && c.len() <= MAX_CANDIDATES)
            .filter_map(|((t, _), (c, _))| {
                let fs: Vec<usize> = c.iter().filter_map(|a| bin.by_addr.get(a).copied()).collect();
                (fs.len() == c.len()).then(|| (t.clone(), fs))
            })
            .collect();
        let mut h = Helpers { pure: vec![None; sums.len()], ptr };
        // Purity only grows (a function is pure once the helpers it calls are), so
        // this settles; recursion never becomes pure.
        for _round in 0..8 {
            let mut changed = false;
            for (g, gs) in sums.iter().enumerate() {
                if h.pure[g].is_some() {
                    continue;
                }
                if let Some(m) = h.pure_mask(bin, g, gs) {
                    h.pure[g] = Some(m);
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
        h
    }

    /// The parameters a pure function's result derives from, given what is known.
    fn pure_mask(&self, bin: &Binary, g: usize, gs: &Summary) -> Option<u8> {
        if gs.rets.is_empty() {
            return None;
        }
        let mut mask = 0u8;
        for r in &gs.rets {
            if r.outcalls != 0 || r.lparams != 0 || r.has(TOP | LOAD | GLOAD) {
                return None;
            }
            mask |= r.params;
            for (c, cs) in gs.calls.iter().enumerate().take(31) {
                if r.calls & bit(c) != 0 {
                    mask |= self.forwarded(bin, cs, Some(g))?;
                }
            }
            if r.calls & bit(31) != 0 && gs.calls.len() > 31 {
                return None;
            }
        }
        Some(mask)
    }

    /// The caller's parameters a call of a pure helper forwards into its result.
    /// `caller` is left out of a pointer call's candidates: a wrapper installed in the
    /// same slot type as what it wraps (SQLite's `memtraceRoundup` calling the saved
    /// `xRoundup`) must not make itself impure.
    fn forwarded(&self, bin: &Binary, cs: &crate::flow::CallSite, caller: Option<usize>) -> Option<u8> {
        let callee_mask = match &cs.target {
            Target::Local(a) => self.pure[*bin.by_addr.get(a)?]?,
            t @ (Target::PtrGlobal(_) | Target::PtrMember(_, None)) => {
                let fs = self.ptr.get(t)?;
                let mut others = fs.iter().filter(|&&f| Some(f) != caller).peekable();
                others.peek()?;
                others.try_fold(0u8, |m, &f| Some(m | self.pure[f]?))?
            }
            _ => return None,
        };
        Some((0..6).filter(|k| callee_mask & (1 << k) != 0).fold(0u8, |m, k| m | cs.args[k].params))
    }

    /// `v` with the results of pure helper calls replaced by the arguments they came from.
    pub fn expand(&self, bin: &Binary, s: &Summary, mut v: Val) -> Val {
        for (c, cs) in s.calls.iter().enumerate().take(31) {
            if v.calls & bit(c) == 0 {
                continue;
            }
            if let Some(params) = self.forwarded(bin, cs, None) {
                v.params |= params;
                v.kinds |= crate::flow::value::ARITH;
            }
        }
        v
    }
}
