//! Memory operands: where an access points (stack slot, global, a parameter's
//! member, a member of something reached through one), what a load reads and
//! what a store records into the summary (stores through parameters, keeps,
//! function addresses stored). Shared by the step and `../transfer.rs`.

use super::{gpr, Env, Interp};
use crate::flow::state::State;
use crate::flow::summary::{FnRef, ParamStore, Via};
use crate::flow::value::{Val, OTHER_BASE};
use iced_x86::{Instruction, OpKind, Register};


/// Where a memory operand points.
pub(in crate::flow) enum Mem {
    Stack(i64),
    Global(u64),
    Param(u8, i32),
    /// Member `off` of an object reached through the parameters in the mask
    /// (.1) or derived from the call results in the mask (.2); .3 is the base
    /// when it was loaded from a parameter's member (`param->[load]`); .4 says
    /// the base was not computed by arithmetic (a fixed member, not an element).
    Member(i32, u8, u32, Option<Via>, bool),
    Unknown,
}

impl<E: Env> Interp<'_, E> {
    pub(in crate::flow) fn mem(&self, ins: &Instruction, st: &State) -> Mem {
        self.mem_at(ins, st, 0)
    }

    /// The memory operand displaced by `extra` bytes (the second lane of a vector access).
    pub(in crate::flow) fn mem_at(&self, ins: &Instruction, st: &State, extra: i64) -> Mem {
        match self.mem_base(ins, st) {
            Mem::Stack(o) => Mem::Stack(o + extra),
            Mem::Global(g) => Mem::Global(g.wrapping_add(extra as u64)),
            Mem::Param(p, d) => Mem::Param(p, d + extra as i32),
            Mem::Member(d, via, c, ch, fixed) => Mem::Member(d + extra as i32, via, c, ch, fixed),
            Mem::Unknown => Mem::Unknown,
        }
    }

    fn mem_base(&self, ins: &Instruction, st: &State) -> Mem {
        if ins.segment_prefix() == Register::FS || ins.segment_prefix() == Register::GS {
            return Mem::Unknown;
        }
        if ins.is_ip_rel_memory_operand() {
            return Mem::Global(ins.ip_rel_memory_address());
        }
        let disp = ins.memory_displacement64() as i64;
        let base = ins.memory_base();
        if ins.memory_index() != Register::None {
            // An array element: not a member whose offset identifies anything,
            // but an element of a freshly allocated array is worth knowing.
            return match gpr(base).map(|r| st.regs[r]) {
                Some(v) if v.calls != 0 => Mem::Member(0, 0, v.calls, None, false),
                _ => Mem::Unknown,
            };
        }
        if base == Register::None {
            return Mem::Global(disp as u64);
        }
        let Some(r) = gpr(base) else { return Mem::Unknown };
        let v = st.regs[r];
        if let Some(s) = v.as_stack() {
            Mem::Stack(s.wrapping_add(disp))
        } else if let Some(g) = v.as_global() {
            Mem::Global(g.wrapping_add(disp as u64))
        } else if let Some(p) = v.as_param() {
            if disp != 0 {
                self.struct_params.set(self.struct_params.get() | 1 << p);
            }
            Mem::Param(p, disp as i32)
        } else {
            // `param + k` as a base: memory beside what the parameter points to.
            if let Some(p) = v.as_param_arith() {
                self.struct_params.set(self.struct_params.get() | 1 << p);
            }
            Mem::Member(disp as i32, v.lparams | v.params, v.calls, chain_of(&v), !v.has(crate::flow::value::ARITH))
        }
    }

    pub(in crate::flow) fn load(&self, ins: &Instruction, st: &State) -> Val {
        let m = self.mem(ins, st);
        if let (Mem::Param(p, d), Some((q, e, w, v))) = (&m, self.fwd) {
            if (*p, *d) == (q, e) && ins.memory_size().size() == w {
                return v;
            }
        }
        self.load_mem(m, st)
    }

    pub(in crate::flow) fn load_mem(&self, m: Mem, st: &State) -> Val {
        match m {
            Mem::Stack(o) => match st.slots.get(&o) {
                Some(v) => *v,
                None if o >= 8 && (o - 8) % 8 == 0 && (o - 8) / 8 < 2 => Val::param(6 + ((o - 8) / 8) as u8),
                None => Val::TOP,
            },
            Mem::Global(g) => Val::gload(g),
            Mem::Param(p, d) => Val::load(p, d),
            Mem::Member(d, via, _, chain, _) => {
                let mut v = Val::load(OTHER_BASE, d);
                v.lparams = via;
                if let Some(Via { param, load: Some(l) }) = chain {
                    v.load_base = crate::flow::value::LOAD2 | param;
                    v.num = l as i64;
                    v.lfields = crate::flow::value::field_bit(param, Some(l), d);
                } else if via != 0 {
                    v.lfields = crate::flow::value::field_bit(via.trailing_zeros() as u8, None, d);
                }
                v
            }
            Mem::Unknown => Val::TOP,
        }
    }

    pub(in crate::flow) fn store(&mut self, ins: &Instruction, st: &mut State, v: Val, size: usize) {
        let m = self.mem(ins, st);
        self.store_mem(m, st, v, size);
    }

    pub(in crate::flow) fn store_mem(&mut self, m: Mem, st: &mut State, v: Val, size: usize) {
        match m {
            Mem::Stack(_) => {}
            Mem::Param(p, d) if size >= 4 => self.fwd = Some((p, d, size, v)),
            _ => self.fwd = None,
        }
        match m {
            Mem::Stack(o) => {
                let size = size.max(1) as i64;
                let stale: Vec<i64> = st.slots.keys_in(o.saturating_sub(7), o.saturating_add(size)).into_iter().filter(|&k| k != o).collect();
                for k in stale {
                    st.slots.insert(k, Val::TOP);
                }
                st.slots.insert(o, if size >= 4 { v } else { Val::TOP });
            }
            Mem::Param(p, d) => {
                // Every store through a parameter: even `c->slot = NULL` tells that
                // the field is written back (a pop, not a lookup).
                if self.sum.stores.len() < 4096 {
                    self.sum.stores.push(ParamStore { param: p, via: None, off: d, val: v });
                }
                self.note_param_member(&v, d, Some((p, 0, d)));
                // The value of a slot linked into a parameter's block (`n->next = a->free`).
                if let Some(s) = crate::flow::keeps::slot_of(&v) {
                    self.slot_keeps.link(p, s);
                }
                if let Some(f) = self.fn_addr(&v) {
                    self.push_ref(FnRef::AtMember { off: d, func: f, via: Some(Via { param: p, load: None }) });
                }
            }
            Mem::Member(d, via, base, chain, fixed) => {
                // Kept where a cache or free list lives (a member of something a
                // parameter reaches); an array element or a fresh node's member
                // is a container taking the block, not a free.
                let slot = match chain {
                    Some(Via { param, load: Some(l) }) => Some((crate::flow::value::LOAD2 | param, l as i64, d)),
                    _ => None,
                };
                if via != 0 && fixed {
                    self.note_param_member(&v, d, slot);
                    self.keep_unless_slot(&v, slot.is_none());
                } else {
                    self.note_param_member(&v, d, None);
                }
                // Memory reached through a parameter (`op->arena->used += n`): the
                // sub-allocator rule wants these too.
                if via != 0 && (v.lparams & via != 0 || v.as_const().is_some()) && self.sum.stores.len() < 4096 {
                    let (p, l) = match chain {
                        Some(Via { param, load: Some(l) }) => (param, Some(l)),
                        _ => (via.trailing_zeros() as u8, None),
                    };
                    self.sum.stores.push(ParamStore { param: p, via: l, off: d, val: v });
                }
                // Only a pointer *into* the other block (`data + i * stride`) says
                // the returned block indexes it.
                if base != 0 && v.calls != 0 && v.has(crate::flow::value::ARITH) && !self.sum.call_stores.contains(&(base, v.calls)) {
                    self.sum.call_stores.push((base, v.calls));
                }
                if let Some(f) = self.fn_addr(&v) {
                    self.push_ref(FnRef::AtMember { off: d, func: f, via: chain });
                }
            }
            Mem::Global(g) => {
                let linked = v.has(crate::flow::value::LOAD) && v.load_base == OTHER_BASE && v.lparams == 0 && v.params == 0 && v.calls == 0;
                if linked && !self.sum.global_pops.contains(&g) && self.sum.global_pops.len() < 64 {
                    self.sum.global_pops.push(g);
                }
                if let Some(k) = v.as_param() {
                    if let Some(m) = self.keeps.get_mut(self.cur_block) {
                        *m |= 1 << k;
                    }
                    if !self.sum.param_globals.contains(&(k, g)) {
                        self.sum.param_globals.push((k, g));
                    }
                }
                if let Some(f) = self.fn_addr(&v) {
                    self.push_ref(FnRef::AtGlobal { slot: g, func: f });
                } else if let Some(src) = v.as_gload() {
                    // A struct copy between globals moves whatever pointers the source held.
                    self.push_ref(FnRef::Copy { from: src, to: g });
                }
            }
            Mem::Unknown => {}
        }
    }

    /// A member of an untraceable object kept a parameter: excused as before.
    fn keep_unless_slot(&mut self, v: &Val, unknown_slot: bool) {
        if let (Some(k), true) = (v.as_param(), unknown_slot) {
            if let Some(m) = self.keeps.get_mut(self.cur_block) {
                *m |= 1 << k;
            }
        }
    }

    /// Parameter v stored into member `off` (of slot `slot` when known: a keep
    /// judged by `keeps.rs` once the block graph is known).
    fn note_param_member(&mut self, v: &Val, off: i32, slot: Option<crate::flow::keeps::Slot>) {
        if let Some(k) = v.as_param() {
            if let Some(s) = slot {
                self.slot_keeps.keep(self.cur_block, k, s);
            }
            if !self.sum.param_members.contains(&(k, off)) {
                self.sum.param_members.push((k, off));
            }
        }
    }

    pub(super) fn push_ref(&mut self, r: FnRef) {
        if !self.sum.fn_refs.contains(&r) {
            self.sum.fn_refs.push(r);
        }
    }

    pub(in crate::flow) fn read(&self, ins: &Instruction, op: u32, st: &State) -> Val {
        match ins.op_kind(op) {
            OpKind::Register => {
                let r = ins.op_register(op);
                match gpr(r) {
                    Some(g) if r.size() >= 4 => st.regs[g],
                    Some(g) => st.regs[g].transformed(),
                    None => Val::TOP,
                }
            }
            OpKind::Immediate8
            | OpKind::Immediate16
            | OpKind::Immediate32
            | OpKind::Immediate64
            | OpKind::Immediate8to16
            | OpKind::Immediate8to32
            | OpKind::Immediate8to64
            | OpKind::Immediate32to64 => Val::konst(ins.immediate(op) as i64),
            OpKind::Memory => self.load(ins, st),
            _ => Val::TOP,
        }
    }

    pub(in crate::flow) fn write(&mut self, ins: &Instruction, op: u32, st: &mut State, v: Val) {
        match ins.op_kind(op) {
            OpKind::Register => {
                let r = ins.op_register(op);
                if let Some(g) = gpr(r) {
                    st.regs[g] = if r.size() >= 4 { v } else { Val::TOP };
                }
            }
            OpKind::Memory => {
                let size = ins.memory_size().size();
                self.store(ins, st, v, size);
            }
            _ => {}
        }
    }
}


/// `param->[load]` when `v` was loaded from a member of what a parameter points to.
fn chain_of(v: &Val) -> Option<Via> {
    let (b, off) = v.as_load()?;
    (b < 8).then_some(Via { param: b, load: Some(off) })
}
