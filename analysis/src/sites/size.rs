//! The size expression of a call: `scale × term + offset`, evaluated over the
//! straight-line code of the call's basic block. The flow summaries keep only
//! where a value comes from; the constants (`sizeof(Table)`, the element size in
//! `n * sizeof(TValue)`) are read back here from the instructions.

use iced_x86::{Instruction, Mnemonic, OpKind, Register};

use crate::flow::interp::gpr;

/// A linear expression in at most one unknown term.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expr {
    /// `scale × term + off`; term None means the value is the constant `off`.
    Lin { scale: i64, term: Option<u32>, off: i64 },
    Unknown,
}

impl Expr {
    pub(super) fn konst(k: i64) -> Expr {
        Expr::Lin { scale: 0, term: None, off: k }
    }

    /// Says more than "some value": a constant, a scale or an offset.
    pub fn informative(self) -> bool {
        matches!(self, Expr::Lin { scale, off, term } if term.is_none() || scale != 1 || off != 0)
    }

    pub fn as_const(self) -> Option<i64> {
        match self {
            Expr::Lin { term: None, off, .. } => Some(off),
            _ => None,
        }
    }

    pub(super) fn add(self, o: Expr) -> Expr {
        match (self, o) {
            (Expr::Lin { scale: a, term: ta, off: x }, Expr::Lin { scale: b, term: tb, off: y }) => {
                let term = match (ta, tb) {
                    (None, t) | (t, None) => t,
                    (Some(p), Some(q)) if p == q => Some(p),
                    _ => return Expr::Unknown,
                };
                let scale = if ta.is_some() { a } else { 0 } + if tb.is_some() { b } else { 0 };
                Expr::Lin { scale, term, off: x.wrapping_add(y) }
            }
            _ => Expr::Unknown,
        }
    }

    pub(super) fn mul(self, k: i64) -> Expr {
        match self {
            Expr::Lin { scale, term, off } => Expr::Lin { scale: scale.wrapping_mul(k), term, off: off.wrapping_mul(k) },
            Expr::Unknown => Expr::Unknown,
        }
    }

    pub(super) fn times(self, o: Expr) -> Expr {
        match (self.as_const(), o.as_const()) {
            (_, Some(k)) => self.mul(k),
            (Some(k), _) => o.mul(k),
            _ => Expr::Unknown,
        }
    }
}

/// Terms are numbered: 0..16 the registers at the block's start, 16 + i the
/// value loaded by instruction i.
pub const LOADED: u32 = 16;

/// Value of register `reg` (iced gpr index) just before `insns[at]`, evaluated
/// from the start of its basic block. `block_start` is the index of the first
/// instruction of the block.
pub fn eval(insns: &[Instruction], block_start: usize, at: usize, reg: usize) -> Expr {
    let mut regs: [Expr; 16] = std::array::from_fn(|r| Expr::Lin { scale: 1, term: Some(r as u32), off: 0 });
    for (i, ins) in insns.iter().enumerate().take(at).skip(block_start) {
        step(ins, i, &mut regs);
    }
    regs[reg]
}

fn reg_of(ins: &Instruction, op: u32) -> Option<usize> {
    (ins.op_kind(op) == OpKind::Register).then(|| gpr(ins.op_register(op))).flatten()
}

fn operand(ins: &Instruction, op: u32, regs: &[Expr; 16], i: usize) -> Expr {
    match ins.op_kind(op) {
        OpKind::Register => match gpr(ins.op_register(op)) {
            Some(r) => regs[r],
            None => Expr::Unknown,
        },
        OpKind::Immediate8 | OpKind::Immediate16 | OpKind::Immediate32 | OpKind::Immediate64 | OpKind::Immediate8to16 | OpKind::Immediate8to32 | OpKind::Immediate8to64 | OpKind::Immediate32to64 => {
            Expr::konst(ins.immediate(op) as i64)
        }
        OpKind::Memory => Expr::Lin { scale: 1, term: Some(LOADED + i as u32), off: 0 },
        _ => Expr::Unknown,
    }
}

fn step(ins: &Instruction, i: usize, regs: &mut [Expr; 16]) {
    let dst = reg_of(ins, 0);
    let v = match ins.mnemonic() {
        Mnemonic::Mov | Mnemonic::Movsxd | Mnemonic::Movzx | Mnemonic::Movsx => Some(operand(ins, 1, regs, i)),
        // Sign extension keeps the value.
        Mnemonic::Cdqe => None,
        Mnemonic::Call => {
            for r in [0, 1, 2, 6, 7, 8, 9, 10, 11] {
                regs[r] = Expr::Unknown;
            }
            None
        }
        Mnemonic::Lea => {
            let mut e = Expr::konst(ins.memory_displacement64() as i64);
            let base = ins.memory_base();
            if base == Register::RIP {
                e = Expr::Unknown;
            } else if base != Register::None {
                e = e.add(gpr(base).map(|r| regs[r]).unwrap_or(Expr::Unknown));
            }
            if ins.memory_index() != Register::None {
                let idx = gpr(ins.memory_index()).map(|r| regs[r]).unwrap_or(Expr::Unknown);
                e = e.add(idx.mul(ins.memory_index_scale() as i64));
            }
            Some(e)
        }
        Mnemonic::Add => Some(operand(ins, 0, regs, i).add(operand(ins, 1, regs, i))),
        Mnemonic::Sub => {
            let (a, b) = (operand(ins, 0, regs, i), operand(ins, 1, regs, i));
            // `sub r, r` zeroes.
            if ins.op_kind(1) == OpKind::Register && reg_of(ins, 0) == reg_of(ins, 1) {
                Some(Expr::konst(0))
            } else {
                Some(a.add(b.mul(-1)))
            }
        }
        Mnemonic::Xor if ins.op_kind(1) == OpKind::Register && reg_of(ins, 0) == reg_of(ins, 1) => Some(Expr::konst(0)),
        Mnemonic::Imul => match ins.op_count() {
            2 => Some(operand(ins, 0, regs, i).times(operand(ins, 1, regs, i))),
            3 => Some(operand(ins, 1, regs, i).times(operand(ins, 2, regs, i))),
            _ => {
                regs[0] = Expr::Unknown;
                regs[2] = Expr::Unknown;
                None
            }
        },
        Mnemonic::Shl | Mnemonic::Sal => match operand(ins, 1, regs, i).as_const() {
            Some(k) if (0..63).contains(&k) => Some(operand(ins, 0, regs, i).mul(1i64 << k)),
            _ => Some(Expr::Unknown),
        },
        Mnemonic::Nop | Mnemonic::Endbr64 | Mnemonic::Cmp | Mnemonic::Test => None,
        _ => {
            // Anything else: every register it writes becomes unknown.
            let mut f = iced_x86::InstructionInfoFactory::new();
            for u in f.info(ins).used_registers() {
                if matches!(u.access(), iced_x86::OpAccess::Write | iced_x86::OpAccess::ReadWrite | iced_x86::OpAccess::CondWrite | iced_x86::OpAccess::ReadCondWrite) {
                    if let Some(r) = gpr(u.register()) {
                        regs[r] = Expr::Unknown;
                    }
                }
            }
            None
        }
    };
    // A value with no register destination was stored to memory: no register changes.
    if let (Some(v), Some(d)) = (v, dst) {
        regs[d] = v;
    }
}

/// Index of the first instruction of the basic block holding `insns[at]`.
pub fn block_start(insns: &[Instruction], targets: &std::collections::HashSet<u64>, at: usize) -> usize {
    let mut i = at;
    while i > 0 {
        if targets.contains(&insns[i].ip()) {
            return i;
        }
        let prev = &insns[i - 1];
        use iced_x86::FlowControl as F;
        if !matches!(prev.flow_control(), F::Next | F::Call) {
            return i;
        }
        i -= 1;
    }
    0
}
