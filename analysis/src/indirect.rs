//! Which functions an indirect call may reach: the address-taken functions,
//! narrowed by where their addresses were stored. A call through a pointer loaded
//! from global slot G reaches what was stored at G; a call through member +off of
//! some object reaches what was stored at member +off of any object, or whose
//! address escaped (passed as an argument, e.g. `lua_newstate(l_alloc, …)`).

use crate::dwarf::{SlotKey, Types};
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
    escaped: Vec<u64>,
    /// Stored in data whose containing object is unknown (stripped binaries).
    unplaced: Vec<u64>,
    everything: Vec<u64>,
}

/// Collect now, deduplicate once at the end (`tidy`): candidate lists get long.
fn add(v: &mut Vec<u64>, f: u64) {
    v.push(f);
}

fn tidy(v: &mut Vec<u64>) {
    v.sort_unstable();
    v.dedup();
}

impl Pointers {
    pub fn build(bin: &Binary, sums: &[Summary], types: &Types) -> Pointers {
        let mut p = Pointers { at_slot: HashMap::new(), at_key: HashMap::new(), keys: HashMap::new(), at_member: HashMap::new(), escaped: Vec::new(), unplaced: Vec::new(), everything: Vec::new() };
        for s in &bin.fn_stores {
            add(p.at_slot.entry(s.slot).or_default(), s.func);
            match s.member {
                Some(m) => add(p.at_member.entry(m as i64).or_default(), s.func),
                None => add(&mut p.unplaced, s.func),
            }
            add(&mut p.everything, s.func);
        }
        for r in sums.iter().flat_map(|s| s.fn_refs.iter()) {
            match *r {
                FnRef::AtGlobal { slot, func } => {
                    add(p.at_slot.entry(slot).or_default(), func);
                    add(&mut p.everything, func);
                }
                FnRef::AtMember { off, func } => {
                    add(p.at_member.entry(off as i64).or_default(), func);
                    add(&mut p.everything, func);
                }
                FnRef::Escaped { func } => {
                    add(&mut p.escaped, func);
                    add(&mut p.everything, func);
                }
                FnRef::Copy { .. } => {}
            }
        }
        let copies: Vec<(u64, u64)> = sums
            .iter()
            .flat_map(|s| s.fn_refs.iter())
            .filter_map(|r| match *r {
                FnRef::Copy { from, to } => Some((from, to)),
                _ => None,
            })
            .collect();
        let key_of = |a: u64| if types.is_empty() { None } else { types.key_at(a) };
        if !types.is_empty() {
            let slots: Vec<(u64, Vec<u64>)> = p.at_slot.iter().map(|(k, v)| (*k, v.clone())).collect();
            for (slot, funcs) in slots {
                if let Some(key) = types.key_at(slot) {
                    for f in funcs {
                        add(p.at_key.entry(key.clone()).or_default(), f);
                    }
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
        // source slot itself or its type key (chains settle in a few rounds).
        for _ in 0..3 {
            for &(from, to) in &copies {
                let mut funcs = p.at_slot.get(&from).cloned().unwrap_or_default();
                if let Some(k) = key_of(from) {
                    funcs.extend(p.at_key.get(&k).into_iter().flatten().copied());
                }
                for f in funcs {
                    add(p.at_slot.entry(to).or_default(), f);
                    if let Some(k) = key_of(to) {
                        add(p.at_key.entry(k).or_default(), f);
                    }
                }
            }
        }
        p.at_slot.values_mut().for_each(tidy);
        p.at_key.values_mut().for_each(tidy);
        p.at_member.values_mut().for_each(tidy);
        tidy(&mut p.escaped);
        tidy(&mut p.unplaced);
        tidy(&mut p.everything);
        p
    }

    /// Possible targets of an indirect call.
    pub fn candidates(&self, t: &Target) -> Vec<u64> {
        match t {
            Target::PtrGlobal(g) => {
                let mut v = self.at_slot.get(g).cloned().unwrap_or_default();
                if let Some(Some(key)) = self.keys.get(g) {
                    v.extend(self.at_key.get(key).into_iter().flatten());
                }
                tidy(&mut v);
                v
            }
            Target::PtrMember(off) => {
                let mut v = self.at_member.get(&(*off as i64)).cloned().unwrap_or_default();
                v.extend(self.escaped.iter().chain(self.unplaced.iter()));
                tidy(&mut v);
                v
            }
            Target::PtrUnknown => self.everything.clone(),
            _ => Vec::new(),
        }
    }
}
