//! Calls: what a call or jump out of the function reaches (a local function,
//! an import through the PLT/GOT or a relocation, a function pointer in a global,
//! a member or a parameter) and the call site recorded with its arguments'
//! provenance. Apart from the step because a tail call is recorded the same way.

use super::{Env, Interp, Mem, ARG_REGS, CLOBBERED, gpr};
use crate::flow::state::State;
use crate::flow::summary::{CallSite, FnRef, Target, Via};
use crate::flow::value::{Val, OTHER_BASE};
use crate::load::RelTarget;
use iced_x86::{Instruction, OpKind};

impl<E: Env> Interp<'_, E> {
    /// call falls through when not taken).
    pub(super) fn record_tail_call(&mut self, i: usize, ins: &Instruction, st: &State, target: Target) {
        let noret = self.env.noreturn(&target);
        let c = self.record_call(i, ins, &mut st.clone(), target, true);
        if !noret {
            let e = self.ret_at.entry(i).or_insert(Val::call(c));
            *e = e.join(&Val::call(c));
        }
    }

    /// A jump out of the function into split-off code (`f.cold`) or into the
    /// middle of another function's range: a continuation of this function, not
    /// a tail call. In a `.o` the encoded target means nothing; the relocation decides.
    pub(super) fn is_cold_jump(&self, ins: &Instruction) -> bool {
        let t = ins.near_branch_target();
        if self.relocated(ins) || self.bin.stubs.contains_key(&t) {
            return false;
        }
        match self.bin.func_containing(t) {
            Some(f) => self.bin.funcs[f].name.contains(".cold") || self.bin.funcs[f].addr != t,
            None => false,
        }
    }

    pub(super) fn record_call(&mut self, i: usize, ins: &Instruction, st: &mut State, target: Target, tail: bool) -> usize {
        let n = self.call_idx.len();
        let c = *self.call_idx.entry(i).or_insert(n);
        let mut args = [Val::TOP; 6];
        for (k, &r) in ARG_REGS.iter().enumerate() {
            args[k] = st.regs[r];
            if let Some(f) = self.fn_addr(&args[k]) {
                let r = FnRef::Passed { callee: target.clone(), arg: k as u8, func: f };
                self.push_ref(r);
            }
        }
        // A parameter handed to a function pointer (`allocator->free(opaque, ptr)`
        // in lzma_free, zstd's customFree) may be released there: for the
        // must-pass analysis that path keeps the block, like a cache would.
        if matches!(target, Target::PtrGlobal(_) | Target::PtrMember(..) | Target::PtrParam(_) | Target::PtrUnknown) {
            let handed = args.iter().filter_map(|a| a.as_param()).fold(0u8, |m, p| m | 1 << p);
            if let Some(m) = self.keeps.get_mut(self.cur_block) {
                *m |= handed;
            }
        }
        if c == self.sum.calls.len() {
            self.sum.calls.push(CallSite { addr: ins.ip(), ret_addr: ins.next_ip(), target, args, tail, unavoidable: 0, behind_entry_tests: 0, block: 0, result_used: false });
        } else {
            let cs = &mut self.sum.calls[c];
            for (a, b) in cs.args.iter_mut().zip(args.iter()) {
                *a = a.join(b);
            }
        }
        // A local whose address was passed may now hold what the callee wrote (an out-parameter).
        for v in args.iter() {
            if let Some(o) = v.as_stack() {
                if o < 0 {
                    st.slots.insert(o, Val::outcall(c));
                }
            }
        }
        let first = args[0];
        let ret_is_first = matches!(&self.sum.calls[c].target, Target::Import(n) if returns_first_arg(n));
        for &r in CLOBBERED.iter() {
            st.regs[r] = Val::TOP;
        }
        st.regs[0] = if ret_is_first { first } else { Val::call(c) };
        st.rax_calls.clear();
        st.rax_calls.push(c as u32);
        c
    }

    pub(super) fn fn_addr(&self, v: &Val) -> Option<u64> {
        let a = v.as_global().or_else(|| v.as_const().map(|k| k as u64))?;
        self.bin.by_addr.contains_key(&a).then_some(a)
    }

    /// A function pointer read at a negative offset `off` from parameter p, in a
    /// call that passes `p - k` (k >= -off) as an argument: the object is a header
    /// in front of p's block (pcre2's `memctl = (pcre2_memctl *)(string - 24);
    /// memctl->free(memctl, ...)`), so the pointer is its member `off + k`, the
    /// same target as when the header's address is kept in a variable (-O0).
    fn header_member(&self, p: u8, off: i32, st: &State) -> Option<Target> {
        if off >= 0 {
            return None;
        }
        ARG_REGS.iter().map(|&r| st.regs[r]).find_map(|a| {
            let k = a.num;
            (a.as_param_arith() == Some(p) && a.has(crate::flow::value::ARITH) && k < 0 && k <= off as i64 && off as i64 - k < 4096)
                .then(|| Target::PtrMember((off as i64 - k) as i32, None))
        })
    }

    pub(super) fn call_target(&self, ins: &Instruction, st: &State) -> Target {
        let field = ins.next_ip().wrapping_sub(4);
        if let Some(t) = self.bin.rel_targets.get(&field) {
            return match t {
                RelTarget::Local(a) => Target::Local(*a),
                RelTarget::External(n) => Target::Import(n.clone()),
            };
        }
        match ins.op0_kind() {
            OpKind::NearBranch64 | OpKind::NearBranch32 => {
                let t = ins.near_branch_target();
                if let Some(n) = self.bin.stubs.get(&t) {
                    Target::Import(n.clone())
                } else {
                    Target::Local(t)
                }
            }
            OpKind::Memory => match self.mem(ins, st) {
                Mem::Global(g) => match self.bin.got.get(&g) {
                    Some(n) => Target::Import(n.clone()),
                    None => Target::PtrGlobal(g),
                },
                Mem::Param(p, d) => self.header_member(p, d, st).unwrap_or(Target::PtrMember(d, Some(Via { param: p, load: None }))),
                Mem::Member(d, _, _, ch, _) => Target::PtrMember(d, ch),
                _ => Target::PtrUnknown,
            },
            OpKind::Register => {
                let v = gpr(ins.op0_register()).map(|r| st.regs[r]).unwrap_or(Val::TOP);
                if let Some(g) = v.as_gload() {
                    return match self.bin.got.get(&g) {
                        Some(n) => Target::Import(n.clone()),
                        None => Target::PtrGlobal(g),
                    };
                }
                if let Some((b, off)) = v.as_load() {
                    if let Some(t) = (b < 8).then(|| self.header_member(b, off, st)).flatten() {
                        return t;
                    }
                    let via = if b & crate::flow::value::LOAD2 != 0 && b != OTHER_BASE {
                        Some(Via { param: b & 0x7f, load: Some(v.num as i32) })
                    } else {
                        (b < 8).then_some(Via { param: b, load: None })
                    };
                    return Target::PtrMember(off, via);
                }
                if let Some(k) = v.as_param() {
                    return Target::PtrParam(k);
                }
                match self.fn_addr(&v) {
                    Some(f) => Target::Local(f),
                    None => Target::PtrUnknown,
                }
            }
            _ => Target::PtrUnknown,
        }
    }
}


/// C library functions that return their first argument (`memcpy(d, s, n)` is
/// `d`): gcc reuses that return value instead of keeping `d` in a register.
fn returns_first_arg(name: &str) -> bool {
    let name = name.split('@').next().unwrap_or(name);
    matches!(
        name,
        "memcpy" | "memmove" | "memset" | "strcpy" | "strncpy" | "strcat" | "strncat" | "__memcpy_chk"
            | "__memmove_chk" | "__memset_chk" | "__strcpy_chk" | "__strncpy_chk" | "__strcat_chk" | "__strncat_chk"
            | "wmemcpy" | "wmemmove" | "wmemset"
    )
}
