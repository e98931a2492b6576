//! Which functions an indirect call may reach: the address-taken functions,
//! narrowed by where their addresses were stored. A call through a pointer loaded
//! from global slot G reaches what was stored at G; a call through member +off of
//! some object reaches what was stored at member +off of any object, or whose
//! address escaped (passed as an argument, e.g. `lua_newstate(l_alloc, …)`).

use crate::flow::{FnRef, Summary, Target};
use crate::load::Binary;
use std::collections::HashMap;

pub struct Pointers {
    at_slot: HashMap<u64, Vec<u64>>,
    at_member: HashMap<i64, Vec<u64>>,
    escaped: Vec<u64>,
    /// Stored in data whose containing object is unknown (stripped binaries).
    unplaced: Vec<u64>,
    everything: Vec<u64>,
}

fn add(v: &mut Vec<u64>, f: u64) {
    if !v.contains(&f) {
        v.push(f);
    }
}

impl Pointers {
    pub fn build(bin: &Binary, sums: &[Summary]) -> Pointers {
        let mut p = Pointers { at_slot: HashMap::new(), at_member: HashMap::new(), escaped: Vec::new(), unplaced: Vec::new(), everything: Vec::new() };
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
            }
        }
        p
    }

    /// Possible targets of an indirect call.
    pub fn candidates(&self, t: &Target) -> Vec<u64> {
        match t {
            Target::PtrGlobal(g) => self.at_slot.get(g).cloned().unwrap_or_default(),
            Target::PtrMember(off) => {
                let mut v = self.at_member.get(&(*off as i64)).cloned().unwrap_or_default();
                for &f in self.escaped.iter().chain(self.unplaced.iter()) {
                    add(&mut v, f);
                }
                v
            }
            Target::PtrUnknown => self.everything.clone(),
            _ => Vec::new(),
        }
    }
}
