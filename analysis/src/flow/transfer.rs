//! Transfer functions: how each modelled instruction changes the state.
//! Anything not modelled makes what it writes unknown.

use super::interp::{gpr, Env, Interp, Mem, RBP, RSP};
use super::state::State;
use super::value::Val;
use iced_x86::{Instruction, Mnemonic, OpAccess, OpKind, Register};

/// Index 0..16 of an xmm/ymm register.
pub(super) fn xmm(r: Register) -> Option<usize> {
    let v = r as u32;
    for base in [Register::XMM0 as u32, Register::YMM0 as u32] {
        if (base..base + 16).contains(&v) {
            return Some((v - base) as usize);
        }
    }
    None
}

impl<'a, E: Env> Interp<'a, E> {
    fn lea(&self, ins: &Instruction, st: &State) -> Val {
        if ins.is_ip_rel_memory_operand() {
            return Val::global(ins.ip_rel_memory_address());
        }
        let disp = Val::konst(ins.memory_displacement64() as i64);
        let base = match ins.memory_base() {
            Register::None => Val::konst(0),
            r => gpr(r).map(|g| st.regs[g]).unwrap_or(Val::TOP),
        };
        let v = match ins.memory_index() {
            Register::None => base,
            r => {
                let idx = gpr(r).map(|g| st.regs[g]).unwrap_or(Val::TOP);
                base.arith(&idx.mul(&Val::konst(ins.memory_index_scale() as i64)))
            }
        };
        v.arith(&disp)
    }

    fn same_regs(ins: &Instruction) -> bool {
        ins.op_count() == 2
            && ins.op0_kind() == OpKind::Register
            && ins.op1_kind() == OpKind::Register
            && ins.op0_register() == ins.op1_register()
    }

    pub(super) fn transfer(&mut self, ins: &Instruction, st: &mut State) {
        use Mnemonic as M;
        match ins.mnemonic() {
            M::Mov | M::Movsxd => {
                let v = self.read(ins, 1, st);
                self.write(ins, 0, st, v);
            }
            M::Movzx | M::Movsx => {
                let v = self.read(ins, 1, st).transformed();
                self.write(ins, 0, st, v);
            }
            M::Lea => {
                let v = self.lea(ins, st);
                self.write(ins, 0, st, v);
            }
            M::Pxor | M::Xorps | M::Vpxor | M::Vxorps if Self::same_regs(ins) || ins.op_count() == 3 && ins.op1_register() == ins.op2_register() => {
                if let Some(x) = xmm(ins.op0_register()) {
                    st.xmm.set(x, [Val::konst(0); 2]);
                }
            }
            M::Xor | M::Sub | M::Sbb if Self::same_regs(ins) => {
                self.write(ins, 0, st, Val::konst(0));
            }
            M::Add | M::Adc => {
                let v = self.read(ins, 0, st).arith(&self.read(ins, 1, st));
                self.write(ins, 0, st, v);
            }
            M::Or | M::Xor => {
                let b = self.read(ins, 1, st);
                // `or $-1, %eax` is the constant -1 whatever %eax held.
                let v = if ins.mnemonic() == M::Or && b.as_const() == Some(-1) {
                    Val::konst(-1)
                } else {
                    self.read(ins, 0, st).bitwise(&b)
                };
                self.write(ins, 0, st, v);
            }
            M::Sub | M::Sbb => {
                let b = self.read(ins, 1, st);
                let b = match b.as_const() {
                    Some(k) => Val::konst(k.wrapping_neg()),
                    None => b,
                };
                let a = self.read(ins, 0, st);
                let mut v = a.arith(&b);
                // `n->nExpr - iStart`: the parameter shrinks the result.
                if b.params != 0 && a.params == 0 {
                    v.kinds |= super::value::SUBTRACTED;
                }
                self.write(ins, 0, st, v);
            }
            M::And => {
                let a = self.read(ins, 0, st);
                let b = self.read(ins, 1, st);
                let v = match (a.as_stack(), b.as_const()) {
                    // Entry rsp ≡ 8 (mod 16) by the ABI, so aligning a stack address is exact.
                    (Some(o), Some(m)) if m < 0 && (m.wrapping_neg() as u64).is_power_of_two() && m >= -4096 => {
                        let al = m.wrapping_neg();
                        Val::stack((8 + o).div_euclid(al) * al - 8)
                    }
                    _ if b.as_const() == Some(0) => Val::konst(0),
                    _ => a.bitwise(&b),
                };
                self.write(ins, 0, st, v);
            }
            M::Imul => match ins.op_count() {
                1 => {
                    st.regs[0] = st.regs[0].mul(&self.read(ins, 0, st));
                    st.regs[2] = Val::TOP;
                }
                2 => {
                    let v = self.read(ins, 0, st).mul(&self.read(ins, 1, st));
                    self.write(ins, 0, st, v);
                }
                _ => {
                    let v = self.read(ins, 1, st).mul(&self.read(ins, 2, st));
                    self.write(ins, 0, st, v);
                }
            },
            M::Mul => {
                st.regs[0] = st.regs[0].mul(&self.read(ins, 0, st));
                st.regs[2] = Val::TOP;
            }
            M::Div | M::Idiv => {
                st.regs[0] = st.regs[0].transformed();
                st.regs[2] = Val::TOP;
            }
            M::Shl | M::Sal => {
                let a = self.read(ins, 0, st);
                let v = match self.read(ins, 1, st).as_const() {
                    Some(k) if (0..63).contains(&k) => a.mul(&Val::konst(1i64 << k)),
                    _ => a.transformed(),
                };
                self.write(ins, 0, st, v);
            }
            // `p + -n` is `p - n`: a negated size still offsets an address (a
            // bump-down allocator), it does not scale it.
            M::Neg => {
                let a = self.read(ins, 0, st);
                let v = match a.as_const() {
                    Some(k) => Val::konst(k.wrapping_neg()),
                    None if a.params != 0 => {
                        let mut v = a.arith(&Val::konst(0));
                        v.kinds |= super::value::SUBTRACTED;
                        v
                    }
                    None => a.arith(&Val::konst(0)),
                };
                self.write(ins, 0, st, v);
            }
            M::Shr | M::Sar | M::Rol | M::Ror | M::Not | M::Inc | M::Dec | M::Bswap => {
                let v = self.read(ins, 0, st).transformed();
                self.write(ins, 0, st, v);
            }
            M::Cdqe => {}
            M::Cdq | M::Cqo | M::Cwd => st.regs[2] = Val::TOP,
            M::Xchg => {
                let a = self.read(ins, 0, st);
                let b = self.read(ins, 1, st);
                self.write(ins, 0, st, b);
                self.write(ins, 1, st, a);
            }
            m if is_cmov(m) => {
                let v = self.read(ins, 0, st).join(&self.read(ins, 1, st));
                self.write(ins, 0, st, v);
            }
            M::Push => {
                let v = self.read(ins, 0, st);
                st.regs[RSP] = st.regs[RSP].arith(&Val::konst(-8));
                match st.regs[RSP].as_stack() {
                    Some(o) => {
                        st.slots.insert(o, v);
                    }
                    None => st.regs[RSP] = Val::TOP,
                }
            }
            M::Pop => {
                let v = match st.regs[RSP].as_stack() {
                    Some(o) => st.slots.get(&o).copied().unwrap_or(Val::TOP),
                    None => Val::TOP,
                };
                st.regs[RSP] = st.regs[RSP].arith(&Val::konst(8));
                self.write(ins, 0, st, v);
            }
            M::Leave => {
                let bp = st.regs[RBP];
                let v = match bp.as_stack() {
                    Some(o) => st.slots.get(&o).copied().unwrap_or(Val::TOP),
                    None => Val::TOP,
                };
                st.regs[RSP] = bp.arith(&Val::konst(8));
                st.regs[RBP] = v;
            }
            M::Movq | M::Movd | M::Vmovq | M::Vmovd => self.vec_move(ins, st, 1),
            M::Movups | M::Movaps | M::Movdqu | M::Movdqa | M::Movupd | M::Movapd | M::Vmovups | M::Vmovaps
            | M::Vmovdqu | M::Vmovdqa => self.vec_move(ins, st, 2),
            M::Punpcklqdq | M::Movlhps | M::Vpunpcklqdq | M::Vmovlhps => {
                // dst.lane1 = src.lane0 (the three-operand VEX form takes lane0 from op1).
                let n = ins.op_count();
                let (d, a, b) = (xmm(ins.op0_register()), xmm(ins.op_register(n - 2)), ins.op_register(n - 1));
                let src = if ins.op_kind(n - 1) == OpKind::Register { xmm(b).map(|x| st.xmm.get(x)[0]) } else { Some(self.load(ins, st)) };
                if let (Some(d), Some(a)) = (d, a) {
                    st.xmm.set(d, [st.xmm.get(a)[0], src.unwrap_or(Val::TOP)]);
                }
            }
            M::Test | M::Cmp | M::Bt | M::Nop | M::Endbr64 | M::Endbr32 | M::Prefetchnta | M::Prefetcht0
            | M::Prefetcht1 | M::Prefetcht2 | M::Pause | M::Lfence | M::Mfence | M::Sfence => {}
            _ => self.clobber(ins, st),
        }
    }

    /// Moves between general registers, xmm lanes and memory, `lanes` 64-bit lanes wide.
    fn vec_move(&mut self, ins: &Instruction, st: &mut State, lanes: usize) {
        let wide = ins.op0_register().size() > 16 || ins.op1_register().size() > 16;
        let src: [Val; 2] = match ins.op1_kind() {
            OpKind::Register => match (xmm(ins.op1_register()), gpr(ins.op1_register())) {
                (Some(x), _) => st.xmm.get(x),
                (_, Some(g)) => [st.regs[g], Val::konst(0)],
                _ => [Val::TOP; 2],
            },
            OpKind::Memory => {
                let lo = self.load_mem(self.mem_at(ins, st, 0), st);
                let hi = if lanes == 2 { self.load_mem(self.mem_at(ins, st, 8), st) } else { Val::konst(0) };
                [lo, hi]
            }
            _ => [Val::TOP; 2],
        };
        match ins.op0_kind() {
            OpKind::Register => match (xmm(ins.op0_register()), gpr(ins.op0_register())) {
                (Some(x), _) => st.xmm.set(x, src),
                (_, Some(g)) => st.regs[g] = if ins.op0_register().size() >= 4 { src[0] } else { Val::TOP },
                _ => {}
            },
            OpKind::Memory => {
                let size = ins.memory_size().size();
                for (k, v) in src.iter().enumerate().take(lanes.min(size / 8).max(1)) {
                    let m = self.mem_at(ins, st, 8 * k as i64);
                    self.store_mem(m, st, *v, 8);
                }
                if wide || size > 16 {
                    // ymm stores: the upper half is not modelled.
                    for k in 2..size / 8 {
                        let m = self.mem_at(ins, st, 8 * k as i64);
                        self.store_mem(m, st, Val::TOP, 8);
                    }
                }
            }
            _ => {}
        }
    }

    /// Anything not modelled: what it writes becomes unknown.
    fn clobber(&mut self, ins: &Instruction, st: &mut State) {
        let info = self.info.info(ins);
        let written: Vec<Register> = info
            .used_registers()
            .iter()
            .filter(|u| matches!(u.access(), OpAccess::Write | OpAccess::ReadWrite | OpAccess::CondWrite | OpAccess::ReadCondWrite))
            .map(|u| u.register())
            .collect();
        let mem_written = info
            .used_memory()
            .iter()
            .any(|m| matches!(m.access(), OpAccess::Write | OpAccess::ReadWrite | OpAccess::CondWrite | OpAccess::ReadCondWrite));
        for r in written {
            if let Some(g) = gpr(r) {
                st.regs[g] = Val::TOP;
            } else if let Some(x) = xmm(r) {
                st.xmm.set(x, [Val::TOP; 2]);
            }
        }
        if mem_written {
            let size = ins.memory_size().size().max(8);
            if (0..ins.op_count()).any(|i| ins.op_kind(i) == OpKind::Memory) {
                if let Mem::Stack(o) = self.mem(ins, st) {
                    let keys: Vec<i64> = st.slots.keys_in(o.saturating_sub(7), o.saturating_add(size as i64));
                    for k in keys {
                        st.slots.insert(k, Val::TOP);
                    }
                }
            } else if matches!(ins.mnemonic(), Mnemonic::Stosb | Mnemonic::Stosd | Mnemonic::Stosq | Mnemonic::Movsb | Mnemonic::Movsq) {
                // rep stos/movs into a local: forget the locals.
                st.slots.clear();
            }
        }
    }

}

fn is_cmov(m: Mnemonic) -> bool {
    use Mnemonic as M;
    matches!(
        m,
        M::Cmova | M::Cmovae | M::Cmovb | M::Cmovbe | M::Cmove | M::Cmovg | M::Cmovge | M::Cmovl | M::Cmovle
            | M::Cmovne | M::Cmovno | M::Cmovnp | M::Cmovns | M::Cmovo | M::Cmovp | M::Cmovs
    )
}
