//! The abstract machine state at a program point: registers, the known lanes
//! of xmm registers, and stack slots, with the join used at control-flow merges.

use super::interp::{ARG_REGS, RSP};
use super::value::Val;

/// Stack slots by offset from the entry rsp, kept sorted; functions have few.
#[derive(PartialEq, Default)]
pub(super) struct Slots(Vec<(i64, Val)>);

/// `clone_from` reuses the list's memory: the fixpoint copies a block's input
/// state into one scratch state on every block visit.
impl Clone for Slots {
    fn clone(&self) -> Slots {
        Slots(self.0.clone())
    }
    fn clone_from(&mut self, o: &Slots) {
        self.0.clone_from(&o.0);
    }
}

impl Slots {
    pub(super) fn get(&self, k: &i64) -> Option<&Val> {
        self.0.binary_search_by_key(k, |e| e.0).ok().map(|i| &self.0[i].1)
    }
    pub(super) fn insert(&mut self, k: i64, v: Val) {
        match self.0.binary_search_by_key(&k, |e| e.0) {
            Ok(i) => self.0[i].1 = v,
            Err(i) => self.0.insert(i, (k, v)),
        }
    }
    /// Keys in [lo, hi).
    pub(super) fn keys_in(&self, lo: i64, hi: i64) -> Vec<i64> {
        let i = self.0.partition_point(|e| e.0 < lo);
        self.0[i..].iter().take_while(|e| e.0 < hi).map(|e| e.0).collect()
    }
    pub(super) fn clear(&mut self) {
        self.0.clear();
    }
    /// Join `o` into self; a slot missing on one side is unknown there.
    pub(super) fn join_from(&mut self, o: &Slots) -> bool {
        // The usual case at a merge: the same slots on both sides. Joined in
        // place, without building a new list (this runs for every edge visit).
        if self.0.len() == o.0.len() && self.0.iter().zip(&o.0).all(|(x, y)| x.0 == y.0) {
            let mut changed = false;
            for (x, y) in self.0.iter_mut().zip(&o.0) {
                if x.1 != y.1 {
                    let j = x.1.join(&y.1);
                    changed |= j != x.1;
                    x.1 = j;
                }
            }
            return changed;
        }
        let mut out = Vec::with_capacity(self.0.len().max(o.0.len()));
        let (mut i, mut j) = (0, 0);
        while i < self.0.len() || j < o.0.len() {
            let (a, b) = (self.0.get(i), o.0.get(j));
            match (a, b) {
                (Some(x), Some(y)) if x.0 == y.0 => {
                    out.push((x.0, x.1.join(&y.1)));
                    i += 1;
                    j += 1;
                }
                (Some(x), Some(y)) if x.0 < y.0 => {
                    out.push((x.0, x.1.join(&Val::TOP)));
                    i += 1;
                }
                (Some(x), None) => {
                    out.push((x.0, x.1.join(&Val::TOP)));
                    i += 1;
                }
                (_, Some(y)) => {
                    out.push((y.0, y.1.join(&Val::TOP)));
                    j += 1;
                }
                (None, None) => break,
            }
        }
        let changed = out != self.0;
        self.0 = out;
        changed
    }
}

/// xmm registers with known lanes; absent = unknown. Usually empty, so the
/// state stays small.
#[derive(PartialEq, Default)]
pub(super) struct Xmm(Vec<(u8, [Val; 2])>);

impl Clone for Xmm {
    fn clone(&self) -> Xmm {
        Xmm(self.0.clone())
    }
    fn clone_from(&mut self, o: &Xmm) {
        self.0.clone_from(&o.0);
    }
}

impl Xmm {
    pub(super) fn get(&self, x: usize) -> [Val; 2] {
        self.0.iter().find(|e| e.0 as usize == x).map(|e| e.1).unwrap_or([Val::TOP; 2])
    }
    pub(super) fn set(&mut self, x: usize, v: [Val; 2]) {
        let known = v[0] != Val::TOP || v[1] != Val::TOP;
        match self.0.iter().position(|e| e.0 as usize == x) {
            Some(i) if known => self.0[i].1 = v,
            Some(i) => {
                self.0.swap_remove(i);
            }
            None if known => self.0.push((x as u8, v)),
            None => {}
        }
    }
    pub(super) fn join_from(&mut self, o: &Xmm) -> bool {
        if self.0 == o.0 {
            return false;
        }
        let mut changed = false;
        let mut out = Vec::new();
        for &(x, a) in &self.0 {
            let b = o.get(x as usize);
            let j = [a[0].join(&b[0]), a[1].join(&b[1])];
            changed |= j != a;
            if j[0] != Val::TOP || j[1] != Val::TOP {
                out.push((x, j));
            } else {
                changed = true;
            }
        }
        self.0 = out;
        changed
    }
}

#[derive(PartialEq)]
pub(super) struct State {
    pub(super) regs: [Val; 16],
    /// The two 64-bit lanes of xmm0–15: gcc copies structs of function pointers
    /// through them (`movq %rax,%xmm0; punpcklqdq; movups %xmm0,slot`).
    pub(super) xmm: Xmm,
    pub(super) slots: Slots,
    /// Calls whose result is still in rax, not yet read by anything (sorted).
    /// Every use of a result starts with reading rax, so this tells exactly
    /// which results are used, whatever the number of calls.
    pub(super) rax_calls: Vec<u32>,
}

/// `clone_from` reuses the memory of the slot, xmm and rax lists (see `Slots`).
impl Clone for State {
    fn clone(&self) -> State {
        State { regs: self.regs, xmm: self.xmm.clone(), slots: self.slots.clone(), rax_calls: self.rax_calls.clone() }
    }
    fn clone_from(&mut self, o: &State) {
        self.regs = o.regs;
        self.xmm.clone_from(&o.xmm);
        self.slots.clone_from(&o.slots);
        self.rax_calls.clone_from(&o.rax_calls);
    }
}

impl State {
    pub(super) fn entry() -> State {
        let mut regs = [Val::TOP; 16];
        for (i, &r) in ARG_REGS.iter().enumerate() {
            regs[r] = Val::param(i as u8);
        }
        regs[RSP] = Val::stack(0);
        State { regs, xmm: Xmm::default(), slots: Slots::default(), rax_calls: Vec::new() }
    }

    pub(super) fn unknown() -> State {
        State { regs: [Val::TOP; 16], xmm: Xmm::default(), slots: Slots::default(), rax_calls: Vec::new() }
    }

    /// This state with every register and stack slot holding exactly `v`
    /// replaced by the constant 0 (the edge of a branch where `v` is NULL).
    pub(super) fn nulled(&self, v: &Val) -> State {
        let mut st = self.clone();
        for r in st.regs.iter_mut().filter(|r| *r == v) {
            *r = Val::konst(0);
        }
        for e in st.slots.0.iter_mut().filter(|e| e.1 == *v) {
            e.1 = Val::konst(0);
        }
        st
    }

    /// Join `o` into self; true when self changed.
    pub(super) fn join_from(&mut self, o: &State) -> bool {
        let mut changed = false;
        for (r, v) in self.regs.iter_mut().zip(o.regs.iter()) {
            if r != v {
                let j = r.join(v);
                changed |= j != *r;
                *r = j;
            }
        }
        changed |= self.xmm.join_from(&o.xmm);
        for &c in &o.rax_calls {
            if let Err(i) = self.rax_calls.binary_search(&c) {
                self.rax_calls.insert(i, c);
                changed = true;
            }
        }
        changed | self.slots.join_from(&o.slots)
    }
}
