//! Bump/pool sub-allocators: no storage call of their own, they hand out
//! memory reached through a parameter and advance a member of it. Apart from
//! `alloc_free.rs` because the evidence is a store pattern, not a call.

use super::alloc_free::count_size;
use super::{arg_name, lowest, role_arity, Classifier, Found};
use crate::classification::Kind;
use crate::flow::{Summary, Val};
use crate::seeds::Spec;

impl Classifier<'_> {
    /// A bump/pool allocator: returns memory reached through parameter `i` and
    /// advances a field of `*i` by a size derived from parameter `j`.
    pub(super) fn suballoc(&self, s: &Summary, storage_calls: u32) -> Option<Found> {
        use crate::flow::value::{CONST, GLOAD, GLOBAL, STACK};
        if s.rets.is_empty() || s.imprecise {
            return None;
        }
        let mut pool: Option<u8> = None;
        for r in &s.rets {
            if r.as_const() == Some(0) {
                continue;
            }
            if r.has(crate::flow::value::TOP) && r.lparams == 0 {
                return None;
            }
            // A bump hands out addresses: base + offset, never a scaled value; a
            // size in the address only when bumping down (see `bumped_down`).
            if (r.params != 0 && !bumped_down(s, r)) || r.has(crate::flow::value::STACK | crate::flow::value::GLOBAL | crate::flow::value::SCALED) {
                return None;
            }
            if r.calls & !storage_calls != 0 {
                return None;
            }
            if r.lparams == 0 {
                if r.calls == 0 {
                    return None;
                }
                continue;
            }
            let p = lowest(r.lparams)?;
            if pool.is_some_and(|q| q != p) {
                return None;
            }
            pool = Some(p);
        }
        let pool = pool?;
        // A bump: a field reached through the pool is advanced by arithmetic on
        // its own old value (`used += need`); a plain pointer swap (a list pop)
        // is not enough.
        let returned_fields = s.rets.iter().fold(0u32, |m, r| m | r.lfields);
        let st = s.stores.iter().find(|st| {
            let own = crate::flow::value::field_bit(st.param, st.via, st.off);
            st.param == pool
                && st.val.lparams & (1 << pool) != 0
                && st.val.has(crate::flow::value::ARITH)
                && st.val.calls == 0
                // the field is advanced from its own old value, which the result came from
                && st.val.lfields & own != 0
                && returned_fields & own != 0
                // by a size, or a constant object size: a constant step of ±1 is a
                // counter handing out indexes (`return fs->pc++`, a label allocator),
                // never a pointer into a pool
                && !(st.val.params & !(1 << pool) == 0 && st.val.kinds & (CONST | STACK | GLOBAL | GLOAD) == 0 && st.val.num.abs() == 1)
        })?;
        let (count, size) = count_size(Val { params: st.val.params & !(1 << pool), ..st.val });
        // Bumped by a constant alone (`return p->pFresh++` over 24-byte entries,
        // SQLite's rowSetEntryAlloc): every piece has one size, fixed inside —
        // a constructor handing out objects from its pool (DESIGN.md §1).
        let own = crate::flow::value::field_bit(st.param, st.via, st.off);
        let fixed = size.is_none()
            && count.is_none()
            && st.val.lfields == own
            && st.val.num != 0
            && st.val.kinds & (CONST | STACK | GLOBAL | GLOAD | crate::flow::value::TOP | crate::flow::value::MUL) == 0;
        if fixed {
            let mut spec = Spec { kind: Some(Kind::Ctor), ..Spec::default() };
            spec.nargs = role_arity(&spec);
            let why = format!("fixed size {} inside: member +{:#x} of memory reached through {} is bumped by it", st.val.num.abs(), st.off, arg_name(pool));
            return Some(Found { spec, evidence: vec![why] });
        }
        let mut spec = Spec { kind: Some(Kind::Suballoc), size, count, ..Spec::default() };
        spec.nargs = role_arity(&spec);
        let mut evidence = vec![format!("member +{:#x} of memory reached through {} is bumped", st.off, arg_name(pool))];
        if let Some(p) = size {
            evidence.push(format!("{} → bump size", arg_name(p)));
        }
        evidence.push(format!("memory reached through {} → return", arg_name(pool)));
        Some(Found { spec, evidence })
    }
}


/// A returned `base - size` that is also stored back where the base came from
/// (`alloc = ws->allocStart - bytes; ws->allocStart = alloc; return alloc;`):
/// a bump-down sub-allocator (zstd's `ZSTD_cwksp_reserve_internal_buffer_space`).
/// A NULL joined in by a shared epilogue (-O0) is still NULL-or-address.
fn bumped_down(s: &Summary, r: &Val) -> bool {
    use crate::flow::value::{ARITH, CONST, LOAD, SCALED};
    r.has(ARITH)
        && !r.has(SCALED)
        && (!r.has(CONST) || r.num == 0)
        && r.calls == 0
        && r.lparams.count_ones() == 1
        && s.stores.iter().any(|st| {
            st.param == r.lparams.trailing_zeros() as u8
                && st.val.params == r.params
                && st.val.lparams == r.lparams
                && st.val.lfields & r.lfields != 0
                && st.val.has(LOAD | ARITH)
        })
}
