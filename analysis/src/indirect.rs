//! Which functions an indirect call may reach, from where function addresses
//! were stored:
//! - through a global slot G: what was stored at G, or at any slot with the
//!   same DWARF type key (`sqlite3Config.m.xMalloc` ~ `defaultMethods.xMalloc`),
//!   including struct copies between globals;
//! - through member +off of some object: what was stored at member +off of any
//!   object — by static initializers, by code, or by a callee that stores the
//!   parameter it was passed (`lua_newstate(l_alloc, …)` → `g->frealloc = f`);
//! - through parameter k: what callers pass as argument k.
//!
//! The classifier trusts a target only when *every* candidate is a classified
//! allocator with the same roles, so an offset shared by unrelated structs costs
//! a miss, never a false positive.

use crate::dwarf::{Params, SlotKey, Types};
use crate::flow::{FnRef, Summary, Target};
use crate::load::Binary;
use std::collections::HashMap;

pub struct Pointers {
    at_slot: HashMap<u64, Vec<u64>>,
    /// By DWARF struct type and member offset (global slots only).
    at_key: HashMap<SlotKey, Vec<u64>>,
    /// Key of each global slot a call loads through.
    keys: HashMap<u64, Option<SlotKey>>,
    at_member: HashMap<i64, Vec<u64>>,
    /// (function entry, argument index) → functions passed there.
    passed: HashMap<(u64, u8), Vec<u64>>,
    /// By function-pointer typedef (`lua_Alloc`): stored into a member or passed
    /// as a parameter of that type.
    at_fntype: HashMap<String, Vec<u64>>,
}

fn tidy(v: &mut Vec<u64>) {
    v.sort_unstable();
    v.dedup();
}

/// Adds `new` to the sorted, unique `into`; says whether it grew.
fn merge(into: &mut Vec<u64>, new: &[u64]) -> bool {
    let before = into.len();
    into.extend_from_slice(new);
    tidy(into);
    into.len() != before
}

impl Pointers {
    pub fn build(bin: &Binary, sums: &[Summary], types: &Types, params: &Params) -> Pointers {
        let mut p = Pointers {
            at_fntype: HashMap::new(),
            at_slot: HashMap::new(),
            at_key: HashMap::new(),
            keys: HashMap::new(),
            at_member: HashMap::new(),
            passed: HashMap::new(),
        };
        for s in &bin.fn_stores {
            p.at_slot.entry(s.slot).or_default().push(s.func);
            if let Some(m) = s.member {
                p.at_member.entry(m as i64).or_default().push(s.func);
            }
        }
        let mut copies = Vec::new();
        let param_ty = |f: u64, k: u8| params.get(f).and_then(|d| Some((d.unit, d.args.get(k as usize)?.ty_ref?)));
        for (fi, r) in sums.iter().enumerate().flat_map(|(i, s)| s.fn_refs.iter().map(move |r| (i, r))) {
            match r {
                FnRef::AtGlobal { slot, func } => p.at_slot.entry(*slot).or_default().push(*func),
                FnRef::AtMember { off, func, via } => {
                    p.at_member.entry(*off as i64).or_default().push(*func);
                    if let Some((unit, ty)) = via.and_then(|v| param_ty(bin.funcs[fi].addr, v.param)) {
                        let (key, fnt) = types.via_key(unit, ty, via.and_then(|v| v.load), *off);
                        if let Some(k) = key {
                            p.at_key.entry(k).or_default().push(*func);
                        }
                        if let Some(t) = fnt {
                            p.at_fntype.entry(t).or_default().push(*func);
                        }
                    }
                }
                FnRef::Copy { from, to } => copies.push((*from, *to)),
                FnRef::Passed { callee: Target::Local(g), arg, func } => {
                    p.passed.entry((*g, *arg)).or_default().push(*func);
                    if let Some(t) = param_ty(*g, *arg).and_then(|(u, ty)| types.fn_typedef(u, ty)) {
                        p.at_fntype.entry(t).or_default().push(*func);
                    }
                    // The callee keeps the pointer: it lands where the callee stores that parameter.
                    if let Some(&gi) = bin.by_addr.get(g) {
                        for &(k, off) in &sums[gi].param_members {
                            if k == *arg {
                                p.at_member.entry(off as i64).or_default().push(*func);
                            }
                        }
                        for &(k, slot) in &sums[gi].param_globals {
                            if k == *arg {
                                p.at_slot.entry(slot).or_default().push(*func);
                            }
                        }
                    }
                }
                FnRef::Passed { .. } => {}
            }
        }
        let key_of = |a: u64| if types.is_empty() { None } else { types.key_at(a) };
        if !types.is_empty() {
            for (slot, funcs) in p.at_slot.iter() {
                let (key, fnt) = types.key_and_fntype_at(*slot);
                if let Some(key) = key {
                    p.at_key.entry(key).or_default().extend(funcs.iter().copied());
                }
                if let Some(t) = fnt {
                    p.at_fntype.entry(t).or_default().extend(funcs.iter().copied());
                }
            }
            for s in sums {
                for c in &s.calls {
                    if let Target::PtrGlobal(g) = c.target {
                        p.keys.entry(g).or_insert_with(|| types.key_at(g));
                    }
                }
            }
        }
        // Copies between globals carry the stored functions along, through the
        // source slot itself or its type key, until nothing changes. Sets, not lists:
        // copies that form a cycle (`a = b; … b = a;`, common in stripped programs
        // that save and restore handlers) doubled a list on every pass.
        p.at_slot.values_mut().for_each(tidy);
        p.at_key.values_mut().for_each(tidy);
        let mut changed = true;
        while changed {
            changed = false;
            for &(from, to) in &copies {
                let mut funcs = p.at_slot.get(&from).cloned().unwrap_or_default();
                if let Some(k) = key_of(from) {
                    funcs.extend(p.at_key.get(&k).into_iter().flatten().copied());
                }
                if funcs.is_empty() {
                    continue;
                }
                changed |= merge(p.at_slot.entry(to).or_default(), &funcs);
                if let Some(k) = key_of(to) {
                    changed |= merge(p.at_key.entry(k).or_default(), &funcs);
                }
            }
        }
        p.at_slot.values_mut().for_each(tidy);
        p.at_key.values_mut().for_each(tidy);
        p.at_member.values_mut().for_each(tidy);
        p.passed.values_mut().for_each(tidy);
        p.at_fntype.values_mut().for_each(tidy);
        p
    }

    /// Possible targets of an indirect call made by the function at `caller`.
    /// A member call whose object type DWARF names takes the stores to that
    /// struct member and the functions of that pointer typedef, not every store
    /// at the same offset.
    /// The flag says whether the candidates are precise (typed or tracked), as
    /// opposed to every store at the same member offset.
    pub fn candidates(&self, t: &Target, caller: u64, types: &Types, params: &Params) -> (Vec<u64>, bool) {
        if let Target::PtrMember(off, Some(via)) = t {
            let pt = params.get(caller).and_then(|d| Some((d.unit, d.args.get(via.param as usize)?.ty_ref?)));
            if let Some((unit, ty)) = pt {
                let (key, fnt) = types.via_key(unit, ty, via.load, *off);
                if key.is_some() || fnt.is_some() {
                    let mut v: Vec<u64> = key.and_then(|k| self.at_key.get(&k)).into_iter().flatten().copied().collect();
                    v.extend(fnt.and_then(|n| self.at_fntype.get(&n)).into_iter().flatten());
                    tidy(&mut v);
                    return (v, true);
                }
            }
        }
        let precise = matches!(t, Target::PtrGlobal(_) | Target::PtrParam(_));
        let mut v = match t {
            Target::PtrGlobal(g) => {
                let mut v = self.at_slot.get(g).cloned().unwrap_or_default();
                if let Some(Some(key)) = self.keys.get(g) {
                    v.extend(self.at_key.get(key).into_iter().flatten());
                }
                v
            }
            Target::PtrMember(off, _) => self.at_member.get(&(*off as i64)).cloned().unwrap_or_default(),
            Target::PtrParam(k) => self.passed.get(&(caller, *k)).cloned().unwrap_or_default(),
            _ => Vec::new(),
        };
        tidy(&mut v);
        (v, precise)
    }
}
