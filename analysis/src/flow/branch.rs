//! The tests a branch makes, as the free rule reads them (`paths.rs`): NULL
//! tests of a parameter, of a member slot or of a call's result; checks of a
//! parameter's state (refusals) and counters written back (no refusal); the
//! range check of a switch on a type tag; a pool's bounds.

use super::interp::{gpr, Env, Interp};
use super::state::State;
use super::value::Val;
use iced_x86::{FlowControl, Instruction, Mnemonic, OpKind};

impl<'a, E: Env> Interp<'a, E> {
    /// A `test`/`cmp` of a member's updated value that the block has just
    /// written back (`if (--p->nBusy == 0) release(p)`): a reference count
    /// reaching zero, not a check of p's state whose other edge refuses p.
    pub(super) fn tests_written_counter(&self, ins: &Instruction, st: &State, written: &[Val]) -> bool {
        if !matches!(ins.mnemonic(), Mnemonic::Test | Mnemonic::Cmp) || ins.op_count() != 2 {
            return false;
        }
        (0..2).any(|k| {
            let v = self.read(ins, k, st);
            v.has(super::value::ARITH) && v.lparams != 0 && written.contains(&v)
        })
    }

    /// The two operands of a `test`/`cmp`.
    pub(super) fn tested_values(&self, ins: &Instruction, st: &State) -> [Val; 2] {
        if !matches!(ins.mnemonic(), Mnemonic::Test | Mnemonic::Cmp) || ins.op_count() != 2 {
            return [Val::TOP; 2];
        }
        [self.read(ins, 0, st), self.read(ins, 1, st)]
    }

    /// Value `v`, read from members of parameters, is stored back into one of
    /// those very members somewhere in the function.
    pub(super) fn stored_back(&self, v: &Val) -> bool {
        v.lparams != 0
            && v.calls == 0
            && v.outcalls == 0
            && !v.has(super::value::TOP)
            && self.sum.stores.iter().any(|st| st.val == *v && super::value::field_bit(st.param, st.via, st.off) & v.lfields != 0)
    }

    /// Parameters a `test`/`cmp` checks: the pointer itself, a member of the
    /// object it points to (`bzf->writing`), or the result of a call given
    /// either (`ferror(bzf->handle)`, `owns_buffer(&c->ws, c)`).
    pub(super) fn checked_params(&self, ins: &Instruction, st: &State) -> u8 {
        if !matches!(ins.mnemonic(), Mnemonic::Test | Mnemonic::Cmp) || ins.op_count() != 2 {
            return 0;
        }
        let of_one = |v: &Val| -> u8 {
            if let Some(p) = v.as_param() {
                return 1 << p;
            }
            // A verdict on p and its members (`setcc` after `cmp p, p->end`).
            let on = v.params | v.lparams;
            if v.calls == 0 && v.outcalls == 0 && on.count_ones() == 1 && !v.has(super::value::TOP) {
                return on;
            }
            match v.as_load() {
                Some((b, _)) if b < 6 => 1 << b,
                _ => 0,
            }
        };
        let mut m = 0;
        for k in 0..2 {
            let v = self.read(ins, k, st);
            m |= of_one(&v);
            if v.calls != 0 && v.params == 0 && v.lparams == 0 && v.calls.count_ones() == 1 {
                let c = v.calls.trailing_zeros() as usize;
                // A verdict is an int (`test %eax,%eax`), not a pointer: a
                // realloc's result given p is no check of p.
                let width = if ins.op0_kind() == OpKind::Register { ins.op0_register().size() } else { ins.memory_size().size() };
                let verdict = (1..=4).contains(&width);
                if let Some(cs) = self.sum.calls.get(c).filter(|_| c < 31 && verdict) {
                    for a in &cs.args[..2] {
                        let whole = Val { kinds: a.kinds & !super::value::ARITH, ..*a };
                        m |= of_one(&whole);
                    }
                }
            }
        }
        m & 0x3f
    }

    /// `setcc %r8` after a comparison in the same block: the byte is a verdict
    /// on the compared values (`in_ws = p >= c->ws.start`), kept whole in its
    /// register so that a later test of it still checks those values.
    pub(super) fn setcc_source(&self, first: usize, i: usize, st: &State) -> Option<(usize, Val)> {
        let ins = &self.insns[i];
        if ins.flow_control() != FlowControl::Next || !is_set_mnemonic(ins.mnemonic()) || ins.op0_kind() != OpKind::Register {
            return None;
        }
        let g = gpr(ins.op0_register())?;
        let setter = (first..i).rev().map(|j| &self.insns[j]).find(|x| x.rflags_modified() != 0)?;
        if setter.mnemonic() != Mnemonic::Cmp || setter.op_count() != 2 {
            return None;
        }
        Some((g, self.read(setter, 0, st).join(&self.read(setter, 1, st)).transformed()))
    }

    /// The parameter a `test %r,%r` / `cmp $0,x` compares with zero, if any.
    pub(super) fn null_test(&self, ins: &Instruction, st: &State) -> Option<u8> {
        let v = match ins.mnemonic() {
            Mnemonic::Test if ins.op_count() == 2 && ins.op0_kind() == OpKind::Register && ins.op1_kind() == OpKind::Register && ins.op0_register() == ins.op1_register() => {
                self.read(ins, 0, st)
            }
            Mnemonic::Cmp if ins.op1_kind() != OpKind::Register && ins.op1_kind() != OpKind::Memory && ins.immediate(1) == 0 => self.read(ins, 0, st),
            _ => return None,
        };
        v.as_param()
    }

    /// A member slot that `cmp $0`/`test` + `je`/`jne` compare with zero, and
    /// the instruction the branch goes to when it is NULL.
    pub(super) fn null_slot_test(&self, cmp: &Instruction, jcc: &Instruction, i: usize, st: &State) -> Option<(super::keeps::Slot, usize)> {
        let v = match cmp.mnemonic() {
            Mnemonic::Test if cmp.op_count() == 2 && cmp.op0_kind() == OpKind::Register && cmp.op1_kind() == OpKind::Register && cmp.op0_register() == cmp.op1_register() => {
                self.read(cmp, 0, st)
            }
            Mnemonic::Cmp if cmp.op_count() == 2 && cmp.op1_kind() != OpKind::Register && cmp.op1_kind() != OpKind::Memory && cmp.immediate(1) == 0 => self.read(cmp, 0, st),
            _ => return None,
        };
        let s = super::keeps::slot_of(&v)?;
        match jcc.mnemonic() {
            Mnemonic::Je => Some((s, self.local_target(jcc)?)),
            Mnemonic::Jne => Some((s, i + 1)),
            _ => None,
        }
    }

    /// A call's result (or what a call wrote into a local) that `cmp`/`test` +
    /// `je`/`jne` compare with zero, and the instruction the branch goes to when
    /// it is NULL.
    pub(super) fn null_result_test(&self, cmp: &Instruction, jcc: &Instruction, i: usize, st: &State) -> Option<(Val, usize)> {
        let v = match cmp.mnemonic() {
            Mnemonic::Test if cmp.op_count() == 2 && cmp.op0_kind() == OpKind::Register && cmp.op1_kind() == OpKind::Register && cmp.op0_register() == cmp.op1_register() => {
                self.read(cmp, 0, st)
            }
            Mnemonic::Cmp if cmp.op_count() == 2 && cmp.op1_kind() != OpKind::Register && cmp.op1_kind() != OpKind::Memory && cmp.immediate(1) == 0 => self.read(cmp, 0, st),
            _ => return None,
        };
        // Only a whole pointer: a 32-bit test of an int status says nothing of a pointer.
        let width = if cmp.op0_kind() == OpKind::Register { cmp.op0_register().size() } else { cmp.memory_size().size() };
        let pure = v.kinds == 0 && v.params == 0 && v.lparams == 0 && (v.calls != 0 || v.outcalls != 0);
        if !pure || width != 8 {
            return None;
        }
        match jcc.mnemonic() {
            Mnemonic::Je => Some((v, self.local_target(jcc)?)),
            Mnemonic::Jne => Some((v, i + 1)),
            _ => None,
        }
    }

    /// Parameter p when `cmp` + `ja`/`jae` compare a value read from the object p
    /// points to (a type tag, possibly rebased: `o->tt - 4`) with a constant: the
    /// range check of a switch on that tag.
    pub(super) fn tag_range_test(&self, cmp: &Instruction, jcc: &Instruction, st: &State) -> Option<u8> {
        if !matches!(jcc.mnemonic(), Mnemonic::Ja | Mnemonic::Jae) || cmp.mnemonic() != Mnemonic::Cmp || cmp.op_count() != 2 {
            return None;
        }
        if !matches!(self.read(cmp, 1, st).as_const(), Some(_)) {
            return None;
        }
        let v = self.read(cmp, 0, st);
        let tag = v.calls == 0 && v.outcalls == 0 && v.params == 0 && v.lparams.count_ones() == 1 && !v.has(super::value::TOP);
        tag.then(|| v.lparams.trailing_zeros() as u8)
    }

    /// Parameter p when `cmp` + `jcc` test whether p lies below or above a bound
    /// read through another parameter (`p < db->lookaside.pEnd`): the pointer is
    /// checked for membership in a pool that context owns. Paths through that
    /// test may hand the block back to the pool (or account for it there), so
    /// for the must-pass analysis they are excused like a NULL test: SQLite's
    /// `sqlite3DbFreeNN(db, p)` frees on every path that is not the pool's.
    pub(super) fn pool_test(&self, cmp: &Instruction, jcc: &Instruction, st: &State) -> Option<u8> {
        let unsigned_order = matches!(jcc.mnemonic(), Mnemonic::Jae | Mnemonic::Jb | Mnemonic::Ja | Mnemonic::Jbe);
        if !unsigned_order || cmp.mnemonic() != Mnemonic::Cmp || cmp.op_count() != 2 {
            return None;
        }
        let (a, b) = (self.read(cmp, 0, st), self.read(cmp, 1, st));
        // The bound is a member of the context itself (`db->lookaside.pEnd`), not
        // of an object it leads to (`pMem->db->...`: inlined size queries).
        let bound_of = |p: u8, v: &Val| v.as_load().is_some_and(|(b, _)| b < 8 && b != p);
        match (a.as_param(), b.as_param()) {
            (Some(p), _) if bound_of(p, &b) => Some(p),
            (_, Some(p)) if bound_of(p, &a) => Some(p),
            _ => None,
        }
    }
}

/// Every mnemonic whose name starts with `Set` (the `setcc` family, and
/// `setssbsy`, which has no register operand and so is never taken): a match,
/// not a formatted name, because this runs for every instruction.
fn is_set_mnemonic(m: Mnemonic) -> bool {
    use Mnemonic::*;
    matches!(m, Seta | Setae | Setb | Setbe | Sete | Setg | Setge | Setl | Setle | Setne | Setno | Setnp | Setns | Seto | Setp | Sets | Setssbsy)
}
