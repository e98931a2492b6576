//! The allocated type at a site: follow the call's result forward from the return
//! address (register copies, spills to frame slots and reloads) and read the DWARF
//! type of whatever keeps it — a variable or parameter whose location holds it, a
//! struct member it is stored into, the parameter of a call it is passed to, the
//! function's return value. A type is taken only when its size agrees with the
//! site's size expression; otherwise the fallback is an unambiguous size match
//! among the pointed-to types of the function's variables; otherwise `?`.

use super::debug::{Debug, Loc, Pointee, Var};
use super::size::Expr;
use crate::dwarf::Params;
use crate::flow::interp::gpr;
use crate::load::Binary;
use iced_x86::{FlowControl, Instruction, Mnemonic, OpKind, Register};

/// What keeps the result, in the order found.
struct Keeper {
    pointee: Pointee,
    what: String,
    /// The keeper holds the result plus this many bytes (`&((LX *) p)->l`).
    offset: i64,
}

/// Registers a call preserves (iced indices: rbx, rbp, r12–r15).
const SAVED: [usize; 6] = [3, 5, 12, 13, 14, 15];
const ARG_REGS: [usize; 6] = crate::flow::interp::ARG_REGS;
const MAX_STEPS: usize = 96;

pub struct Inferred {
    pub ty: Option<String>,
    pub why: String,
}

/// `insns` are the caller's instructions, `at` the index of the call; `callee` the
/// entry of a directly called function (its declared return type is evidence).
#[allow(clippy::too_many_arguments)]
pub fn infer(bin: &Binary, dbg: &Debug, params: &Params, insns: &[Instruction], at: usize, size: Expr, count: Option<Expr>, callee: Option<u64>) -> Inferred {
    let pc0 = insns[at].next_ip();
    let vars = dbg.vars_at(pc0);
    let keepers = keepers(bin, dbg, params, insns, at, &vars);
    let bytes = total(size, count);
    // The best fit over all keepers; earlier keepers win ties.
    let best = keepers.iter().filter_map(|k| fits(k, bytes).map(|(rank, how)| (rank, k, how))).min_by_key(|(rank, _, _)| *rank);
    if let Some((rank, k, how)) = &best {
        if *rank < 2 {
            return Inferred { ty: Some(k.pointee.name.clone()), why: format!("{} ({} *), {how}", k.what, k.pointee.name) };
        }
    }
    // The callee declares the pointer type it returns, and the result is kept as one.
    let declared = callee.and_then(|c| dbg.return_type(c)).and_then(|(u, t)| dbg.pointee(u, t));
    if let Some(d) = declared.filter(|d| d.record.is_some()) {
        if let Some(k) = keepers.iter().find(|k| k.pointee.name == d.name && k.offset == 0) {
            return Inferred { ty: Some(d.name.clone()), why: format!("{} ({} *), the type the callee returns", k.what, d.name) };
        }
    }
    if let Some((_, k, how)) = best {
        return Inferred { ty: Some(k.pointee.name.clone()), why: format!("{} ({} *), {how}", k.what, k.pointee.name) };
    }
    // No size to check against: every keeper agrees on one type.
    let unknown = matches!(bytes, Expr::Unknown | Expr::Lin { scale: 1, off: 0, term: Some(_) });
    if unknown {
        if let Some(k) = keepers.first().filter(|k| k.offset == 0 && keepers.iter().all(|o| o.pointee.name == k.pointee.name)) {
            return Inferred { ty: Some(k.pointee.name.clone()), why: format!("{} ({} *), size not known at the call", k.what, k.pointee.name) };
        }
    }
    // Fallback: one pointed-to type of the function has exactly that size.
    if let Some(c) = bytes.as_const().filter(|&c| c > 0) {
        let mut names: Vec<String> = vars
            .iter()
            .filter_map(|v| dbg.pointee(v.unit, v.ty))
            .filter(|p| p.size as i64 == c && p.record.is_some())
            .map(|p| p.name)
            .collect();
        names.sort();
        names.dedup();
        if names.len() == 1 {
            return Inferred { ty: Some(names[0].clone()), why: format!("the only pointed-to type of the function with size {c}") };
        }
    }
    let why = match keepers.first() {
        Some(k) => format!("{} ({} *, size {}) does not fit", k.what, k.pointee.name, k.pointee.size),
        None => "no variable, member or parameter with a pointer type keeps the result".to_string(),
    };
    Inferred { ty: None, why }
}

/// Bytes allocated: size × count.
fn total(size: Expr, count: Option<Expr>) -> Expr {
    match (size, count) {
        (s, None) => s,
        (s, Some(c)) => match (s.as_const(), c.as_const()) {
            (Some(a), Some(b)) => Expr::Lin { scale: 0, term: None, off: a.wrapping_mul(b) },
            (Some(a), None) => match c {
                Expr::Lin { scale, term, off } => Expr::Lin { scale: scale.wrapping_mul(a), term, off: off.wrapping_mul(a) },
                Expr::Unknown => Expr::Lin { scale: a, term: Some(u32::MAX), off: 0 },
            },
            (None, Some(b)) => match s {
                Expr::Lin { scale, term, off } => Expr::Lin { scale: scale.wrapping_mul(b), term, off: off.wrapping_mul(b) },
                Expr::Unknown => Expr::Lin { scale: b, term: Some(u32::MAX), off: 0 },
            },
            _ => Expr::Unknown,
        },
    }
}

/// Whether the keeper's type can be what `bytes` allocates: (rank, how); rank 0
/// is an exact fit, 1 a header plus trailing bytes, 2 a multiple of the size.
fn fits(k: &Keeper, bytes: Expr) -> Option<(u8, String)> {
    let p = &k.pointee;
    let sz = p.size as i64;
    let d = k.offset;
    match bytes {
        // Kept at an offset into the block: the block is a header of d bytes and the type.
        Expr::Lin { term: None, off: c, .. } if d != 0 => (c == d + sz).then(|| (0, format!("size {c} = {d} + sizeof, kept at +{d}"))),
        Expr::Lin { term: None, off: c, .. } => {
            if c == sz {
                return Some((0, format!("size {c} = sizeof")));
            }
            if let Some((off, _)) = p.trailing {
                if c > off as i64 {
                    return Some((1, format!("size {c} = header {off} + trailing array")));
                }
            }
            if sz > 0 && c > sz && c % sz == 0 {
                return Some((2, format!("size {c} = {} × sizeof", c / sz)));
            }
            None
        }
        Expr::Lin { .. } if d != 0 => None,
        Expr::Lin { scale, term: Some(_), off } => {
            if let Some((t, es)) = p.trailing {
                if scale > 0 && off > 0 && scale % es as i64 == 0 && off >= t as i64 - es as i64 {
                    return Some((0, format!("header {off} + {scale} × n trailing bytes")));
                }
                if scale == 1 && off >= 8 && off <= sz + es as i64 {
                    return Some((1, format!("header {off} + n trailing bytes")));
                }
            }
            if scale == sz && off == 0 {
                return Some((0, format!("element size {scale} = sizeof")));
            }
            // The whole struct, then bytes for what follows it (`sizeof *p + n`).
            if p.record.is_some() && scale > 0 && off >= sz {
                return Some((1, format!("sizeof {sz} + {scale} × n trailing bytes")));
            }
            if sz > 0 && scale % sz == 0 && off % sz == 0 {
                return Some((2, format!("a multiple of sizeof {sz}")));
            }
            None
        }
        Expr::Unknown => None,
    }
}

/// CFA offset of a `[rbp + d]` operand in a frame set up by `push rbp; mov rbp, rsp`.
fn frame_slot(ins: &Instruction, op: u32, rbp_frame: bool) -> Option<i64> {
    (rbp_frame && ins.op_kind(op) == OpKind::Memory && ins.memory_base() == Register::RBP && ins.memory_index() == Register::None)
        .then(|| ins.memory_displacement64() as i64 - 16)
}

fn reg_of(ins: &Instruction, op: u32) -> Option<usize> {
    (ins.op_kind(op) == OpKind::Register).then(|| gpr(ins.op_register(op))).flatten()
}

fn has_rbp_frame(insns: &[Instruction]) -> bool {
    let mut it = insns.iter().filter(|i| i.mnemonic() != Mnemonic::Endbr64);
    let (Some(a), Some(b)) = (it.next(), it.next()) else { return false };
    a.mnemonic() == Mnemonic::Push
        && a.op_register(0) == Register::RBP
        && b.mnemonic() == Mnemonic::Mov
        && b.op_register(0) == Register::RBP
        && b.op_register(1) == Register::RSP
}

fn keepers(bin: &Binary, dbg: &Debug, params: &Params, insns: &[Instruction], at: usize, vars: &[Var]) -> Vec<Keeper> {
    let rbp_frame = has_rbp_frame(insns);
    let mut out: Vec<Keeper> = Vec::new();
    let push = |out: &mut Vec<Keeper>, p: Option<Pointee>, what: String, offset: i64| {
        if let Some(p) = p {
            if !out.iter().any(|k| k.pointee.name == p.name && k.what == what) {
                out.push(Keeper { pointee: p, what, offset });
            }
        }
    };
    // Per register: holds the result plus this offset.
    let mut regs: [Option<i64>; 16] = [None; 16];
    regs[0] = Some(0);
    // Frame slots (CFA offset) holding the result plus an offset.
    let mut slots: Vec<(i64, i64)> = Vec::new();
    // Per register: the frame slot it was last loaded from (-O0 reloads a pointer
    // variable before storing through it).
    let mut loaded_from: [Option<i64>; 16] = [None; 16];
    let var_in = |pc: u64, l: Loc| vars.iter().find(|v| v.at(pc) == Some(l));
    let slot_off = |slots: &[(i64, i64)], s: i64| slots.iter().find(|x| x.0 == s).map(|x| x.1);
    let mut i = at + 1;
    let mut steps = 0;
    while i < insns.len() && steps < MAX_STEPS && (regs.iter().any(|r| r.is_some()) || !slots.is_empty()) {
        steps += 1;
        let ins = &insns[i];
        let pc = ins.ip();
        for v in vars {
            let held = match v.at(pc) {
                Some(Loc::Reg(r)) => regs[r],
                Some(Loc::Cfa(o)) => slot_off(&slots, o),
                None => None,
            };
            if let Some(d) = held {
                push(&mut out, dbg.pointee(v.unit, v.ty), format!("variable `{}`", v.name), d);
            }
        }
        let src = |op: u32| reg_of(ins, op).and_then(|r| regs[r]);
        match ins.mnemonic() {
            Mnemonic::Mov if ins.op_kind(0) == OpKind::Memory => {
                let fs = frame_slot(ins, 0, rbp_frame);
                if let Some(s) = fs {
                    slots.retain(|x| x.0 != s);
                }
                if let Some(d) = src(1).filter(|_| ins.op_register(1).size() == 8) {
                    if let Some(s) = fs {
                        slots.push((s, d));
                    } else if let Some(b) = gpr(ins.memory_base()).filter(|_| ins.memory_index() == Register::None) {
                        // Stored into a member of the object a variable points to.
                        let holder = var_in(pc, Loc::Reg(b)).or_else(|| loaded_from[b].and_then(|s| var_in(pc, Loc::Cfa(s))));
                        if let Some(h) = holder {
                            if let Some(rec) = dbg.pointee(h.unit, h.ty).and_then(|p| p.record) {
                                if let Some((u, t, m)) = dbg.member_at(rec, ins.memory_displacement64()) {
                                    push(&mut out, dbg.pointee(u, t), format!("member `{}->{m}`", h.name), d);
                                }
                            }
                        }
                    }
                }
            }
            Mnemonic::Mov | Mnemonic::Lea | Mnemonic::Movsxd | Mnemonic::Movzx | Mnemonic::Add => {
                let Some(dst) = reg_of(ins, 0) else {
                    i += 1;
                    continue;
                };
                let wide = ins.op_register(0).size() == 8;
                let v = match ins.mnemonic() {
                    Mnemonic::Mov => src(1).or_else(|| frame_slot(ins, 1, rbp_frame).and_then(|s| slot_off(&slots, s))),
                    // `lea r, [p + d]`: a pointer into the block.
                    Mnemonic::Lea if ins.memory_index() == Register::None => {
                        gpr(ins.memory_base()).and_then(|b| regs[b]).map(|d| d + ins.memory_displacement64() as i64)
                    }
                    Mnemonic::Add if matches!(ins.op_kind(1), OpKind::Immediate8to64 | OpKind::Immediate32to64 | OpKind::Immediate32 | OpKind::Immediate8to32) => {
                        regs[dst].map(|d| d + ins.immediate(1) as i64)
                    }
                    _ => None,
                };
                loaded_from[dst] = if ins.mnemonic() == Mnemonic::Mov { frame_slot(ins, 1, rbp_frame) } else { None };
                regs[dst] = v.filter(|_| wide);
            }
            Mnemonic::Call => {
                // Passed on: the callee's parameter type.
                let callee = (ins.op0_kind() == OpKind::NearBranch64).then(|| ins.near_branch_target());
                if let Some(p) = callee.and_then(|t| params.get(t)) {
                    for (k, &r) in ARG_REGS.iter().enumerate() {
                        if let (Some(d), Some(a)) = (regs[r], p.args.get(k)) {
                            if let Some(t) = a.ty_ref {
                                push(&mut out, dbg.pointee(p.unit, t), format!("parameter `{}`", a.name), d);
                            }
                        }
                    }
                }
                for (r, v) in regs.iter_mut().enumerate() {
                    if !SAVED.contains(&r) {
                        *v = None;
                    }
                }
                loaded_from = [None; 16];
                if callee.is_some_and(|t| crate::seeds::noreturn(bin.stubs.get(&t).map(|s| s.as_str()).unwrap_or(""))) {
                    break;
                }
            }
            _ => {
                match ins.flow_control() {
                    FlowControl::Return => {
                        if let Some(d) = regs[0] {
                            if let Some((u, t)) = dbg.return_type(pc) {
                                push(&mut out, dbg.pointee(u, t), "the function's return value".to_string(), d);
                            }
                        }
                        break;
                    }
                    FlowControl::UnconditionalBranch => {
                        let t = ins.near_branch_target();
                        match insns.iter().position(|x| x.ip() == t) {
                            Some(j) if j > i => {
                                i = j;
                                continue;
                            }
                            _ => break,
                        }
                    }
                    FlowControl::IndirectBranch | FlowControl::Interrupt | FlowControl::Exception => break,
                    _ => {}
                }
                let mut f = iced_x86::InstructionInfoFactory::new();
                for u in f.info(ins).used_registers() {
                    if matches!(u.access(), iced_x86::OpAccess::Write | iced_x86::OpAccess::ReadWrite) && u.register().size() >= 4 {
                        if let Some(r) = gpr(u.register()) {
                            regs[r] = None;
                            loaded_from[r] = None;
                        }
                    }
                }
            }
        }
        i += 1;
    }
    out
}
