//! Trampoline code generation (balanced call-through, runtime/README.md):
//!
//! ```text
//! f.allocsite_entry:
//!     push rbx ; push the saved set (rdi..r9 last, so [rsp] = args[0..6])
//!     mov rbx, rsp ; and rsp, -16 ; sub rsp, 16*N ; movaps [rsp+16*i], xmmi
//!     rsi = [entry_sp]; if rsi is inside .allocsite.text: call allocsite.site_map
//!     call [__allocsite_enter](desc, site, args=rbx, entry_sp)
//!     restore ; mov rsp, rbx ; pop … ; pop rbx
//!     sub rsp, F ; copy stack argument words          ; F ≡ 8 (mod 16)
//!     call f.allocsite_pad                             ; (call-site mode: call f)
//!     add rsp, F
//!     save again ; call [__allocsite_exit](desc, rax, entry_sp) ; restore ; ret
//! f.allocsite_pad:
//!     displaced instructions, relocated ; jmp back into f (unless they end in ret/jmp)
//! ```
//! - The stack is realigned with rbx as frame base (CFA = rbx + k in the CFI): gcc
//!   omits the 16-byte alignment before calls to local functions that do not need it,
//!   so a function may be entered misaligned; the pad is entered with the same
//!   alignment the function was entered with.
//! - Saved set: when the function surely calls code gcc cannot see (PLT, indirect
//!   call, recursively), only the argument registers (rdi..r9, rax = al for varargs,
//!   r10 = static chain, xmm0–7) at entry and rax/rdx/xmm0–1 at exit. Otherwise every
//!   caller-saved register (rax, rcx, rdx, rsi, rdi, r8–r11, xmm0–15) at both: GCC's
//!   -fipa-ra lets callers of a known function keep values in caller-saved registers
//!   it does not touch, and the hooks may touch them.
//! - CET: the launch pad `jmp`, the `call` into the pad and its `jmp` back are direct
//!   branches, so no `endbr64` is needed in new code; calls and returns stay paired, so
//!   shadow stacks are unaffected. The GNU property notes are left as they are (the
//!   hooks are reached by `call [slot]`, an indirect call into the runtime, which must
//!   itself be an IBT object for IBT to stay enforced).
//! - The site the entry hook receives is the caller's return address. It points into
//!   new code when the call was among the displaced instructions of another pad, or
//!   when another hooked function's pad/body tail-called this one (the return address
//!   is then that trampoline's); `allocsite.site_map` maps the former to the original
//!   return address and follows the latter to that trampoline's own caller.

use super::cfi::{NewFde, Row};
use super::pad;
use super::plan::Hook;
use iced_x86::{BlockEncoder, BlockEncoderOptions, Code, IcedError, Instruction, InstructionBlock, MemoryOperand, Register};

/// Saved general-purpose registers, in push order; the last six pushed are rdi..r9's
/// mirror so that `[rsp]` holds `args[0..6]` = rdi, rsi, rdx, rcx, r8, r9.
const FULL: [Register; 9] =
    [Register::RAX, Register::R10, Register::R11, Register::R9, Register::R8, Register::RCX, Register::RDX, Register::RSI, Register::RDI];
/// Arguments (rdi..r9, al for variadic calls, r10 the static chain) for the entry hook.
const ARGS: [Register; 8] =
    [Register::RAX, Register::R10, Register::R9, Register::R8, Register::RCX, Register::RDX, Register::RSI, Register::RDI];
/// Return values for the exit hook.
const RETS: [Register; 2] = [Register::RAX, Register::RDX];

/// What one save/restore around a hook call preserves.
#[derive(Clone, Copy)]
struct SaveSet {
    gprs: &'static [Register],
    xmms: usize,
}

impl SaveSet {
    fn gpr_area(self) -> i64 {
        (self.gprs.len() * 8) as i64
    }
    fn xmm_area(self) -> i64 {
        (self.xmms * 16) as i64
    }
}

pub struct Built {
    pub code: Vec<u8>,
    pub entry_len: u32,
    pub pad_addr: u64,
    pub pad_len: u32,
    pub fdes: [NewFde; 2],
    /// `(return address in the relocated pad, original return address)` of the calls
    /// among the displaced instructions.
    pub pad_calls: Vec<(u64, u64)>,
    /// Where `call f.allocsite_pad` returns to, and the distance from the entry sp of a
    /// function the pad tail-calls to this trampoline's own return address.
    pub pad_return: (u64, i64),
}

const RSP: u16 = gimli::X86_64::RSP.0;
const RBX: u16 = gimli::X86_64::RBX.0;

/// Instructions plus the unwind row after each one.
struct Asm {
    ins: Vec<Instruction>,
    row: Row,
    after: Vec<Row>,
}

impl Asm {
    fn new() -> Self {
        Asm { ins: Vec::new(), row: Row::entry(), after: Vec::new() }
    }
    /// Instructions get small unique IPs (index + 1) so branches can name them as labels;
    /// no real target is that small.
    fn emit(&mut self, i: Result<Instruction, IcedError>) -> Result<(), String> {
        let mut i = i.map_err(|e| format!("internal encoding error: {e}"))?;
        i.set_ip(self.ins.len() as u64 + 1);
        self.ins.push(i);
        self.after.push(self.row.clone());
        Ok(())
    }
    /// An instruction that moves rsp by `delta` bytes down (negative: up).
    fn op(&mut self, i: Result<Instruction, IcedError>, delta: i64) -> Result<(), String> {
        if self.row.cfa_reg == RSP {
            self.row.cfa_off += delta;
        }
        self.emit(i)
    }
    fn push(&mut self, r: Register) -> Result<(), String> {
        self.op(Instruction::with1(Code::Push_r64, r), 8)?;
        if r == Register::RBX {
            let at = -(self.row.cfa_off);
            self.row.saved = vec![(RBX, at)];
            self.after.last_mut().map(|x| x.saved = self.row.saved.clone());
        }
        Ok(())
    }
    fn pop(&mut self, r: Register) -> Result<(), String> {
        if r == Register::RBX {
            self.row.saved.clear();
        }
        self.op(Instruction::with1(Code::Pop_r64, r), -8)
    }
    /// Save rbx and the caller-saved registers, then realign the stack to 16 bytes
    /// (functions may be entered with any alignment: gcc omits the alignment for
    /// callees it knows do not need it), keeping the frame base in rbx.
    fn save_all(&mut self, set: SaveSet) -> Result<(), String> {
        self.push(Register::RBX)?;
        for &r in set.gprs {
            self.push(r)?;
        }
        self.emit(Instruction::with2(Code::Mov_r64_rm64, Register::RBX, Register::RSP))?;
        self.row.cfa_reg = RBX;
        self.after.last_mut().map(|x| x.cfa_reg = RBX);
        self.emit(Instruction::with2(Code::And_rm64_imm8, Register::RSP, -16i32))?;
        if set.xmms > 0 {
            self.emit(Instruction::with2(Code::Sub_rm64_imm32, Register::RSP, set.xmm_area() as i32))?;
        }
        for k in 0..set.xmms {
            let m = MemoryOperand::with_base_displ(Register::RSP, 16 * k as i64);
            self.emit(Instruction::with2(Code::Movaps_xmmm128_xmm, m, xmm(k)))?;
        }
        Ok(())
    }
    fn restore_all(&mut self, set: SaveSet) -> Result<(), String> {
        for k in 0..set.xmms {
            let m = MemoryOperand::with_base_displ(Register::RSP, 16 * k as i64);
            self.emit(Instruction::with2(Code::Movaps_xmm_xmmm128, xmm(k), m))?;
        }
        self.emit(Instruction::with2(Code::Mov_r64_rm64, Register::RSP, Register::RBX))?;
        self.row.cfa_reg = RSP;
        self.after.last_mut().map(|x| x.cfa_reg = RSP);
        for r in set.gprs.iter().rev() {
            self.pop(*r)?;
        }
        self.pop(Register::RBX)
    }
    fn rip(&mut self, code: Code, reg: Register, target: u64) -> Result<(), String> {
        let m = MemoryOperand::with_base_displ(Register::RIP, target as i64);
        self.emit(Instruction::with2(code, reg, m))
    }
}

fn xmm(k: usize) -> Register {
    [
        Register::XMM0, Register::XMM1, Register::XMM2, Register::XMM3, Register::XMM4, Register::XMM5, Register::XMM6,
        Register::XMM7, Register::XMM8, Register::XMM9, Register::XMM10, Register::XMM11, Register::XMM12,
        Register::XMM13, Register::XMM14, Register::XMM15,
    ][k]
}

/// Where the trampoline finds its data.
pub struct Refs {
    pub descriptor: u64,
    pub enter_slot: u64,
    pub exit_slot: u64,
    /// `(lo, hi, thunk)`: a site in `[lo, hi)` (the new code) is translated by `thunk`.
    pub site_map: Option<(u64, u64, u64)>,
    /// `(function entry, its trampoline)` of call-site-mode functions: branches to them
    /// among displaced instructions go to the trampoline instead.
    pub redirect: Vec<(u64, u64)>,
}

/// The label IP the next emitted instruction will get.
fn next_ip(a: &Asm) -> u64 {
    a.ins.len() as u64 + 1
}

fn entry_code(h: &Hook, refs: &Refs, pad_addr: u64) -> Result<Asm, String> {
    let mut a = Asm::new();
    let (enter_set, exit_set) = if h.full_save {
        (SaveSet { gprs: &FULL, xmms: 16 }, SaveSet { gprs: &FULL, xmms: 16 })
    } else {
        (SaveSet { gprs: &ARGS, xmms: 8 }, SaveSet { gprs: &RETS, xmms: 2 })
    };
    // After save_all: rbx = entry_sp - 8 - gpr_area, and [rbx] = args[0..6].
    let entry_sp_from_rbx = enter_set.gpr_area() + 8;
    a.save_all(enter_set)?;
    a.emit(Instruction::with2(Code::Lea_r64_m, Register::RCX, MemoryOperand::with_base_displ(Register::RBX, entry_sp_from_rbx)))?;
    a.emit(Instruction::with2(Code::Mov_r64_rm64, Register::RSI, MemoryOperand::with_base_displ(Register::RCX, 0)))?;
    if let Some((lo, hi, thunk)) = refs.site_map {
        // The return address points into new code when the caller is a relocated pad
        // (a call among the displaced instructions) or a trampoline whose pad tail-called
        // this function: translate it to the allocation site in the program's own code.
        a.rip(Code::Lea_r64_m, Register::R11, lo)?;
        a.emit(Instruction::with2(Code::Cmp_rm64_r64, Register::RSI, Register::R11))?;
        let jb = a.ins.len();
        a.emit(Instruction::with_branch(Code::Jb_rel8_64, 0))?;
        a.rip(Code::Lea_r64_m, Register::R11, hi)?;
        a.emit(Instruction::with2(Code::Cmp_rm64_r64, Register::RSI, Register::R11))?;
        let jae = a.ins.len();
        a.emit(Instruction::with_branch(Code::Jae_rel8_64, 0))?;
        a.emit(Instruction::with_branch(Code::Call_rel32_64, thunk))?;
        let ok = next_ip(&a);
        a.ins[jb].set_near_branch64(ok);
        a.ins[jae].set_near_branch64(ok);
    }
    a.emit(Instruction::with2(Code::Mov_r64_rm64, Register::RDX, Register::RBX))?;
    a.rip(Code::Lea_r64_m, Register::RDI, refs.descriptor)?;
    a.emit(Instruction::with1(Code::Call_rm64, MemoryOperand::with_base_displ(Register::RIP, refs.enter_slot as i64)))?;
    a.restore_all(enter_set)?;
    // The pad is entered with rsp ≡ entry rsp (mod 16), whatever that was, and finds
    // stack argument word j at [rsp+8+8j]: F ≡ 8 (mod 16).
    let m = h.stack_words as i64;
    let f = stack_frame(h);
    a.op(Instruction::with2(Code::Sub_rm64_imm32, Register::RSP, f as i32), f)?;
    for j in 0..m {
        let src = MemoryOperand::with_base_displ(Register::RSP, f + 8 + 8 * j);
        a.emit(Instruction::with2(Code::Mov_r64_rm64, Register::R11, src))?;
        let dst = MemoryOperand::with_base_displ(Register::RSP, 8 * j);
        a.emit(Instruction::with2(Code::Mov_rm64_r64, dst, Register::R11))?;
    }
    a.emit(Instruction::with_branch(Code::Call_rel32_64, pad_addr))?;
    a.op(Instruction::with2(Code::Add_rm64_imm32, Register::RSP, f as i32), -f)?;
    a.save_all(exit_set)?;
    a.emit(Instruction::with2(Code::Mov_r64_rm64, Register::RSI, Register::RAX))?;
    let exit_sp_from_rbx = exit_set.gpr_area() + 8;
    a.emit(Instruction::with2(Code::Lea_r64_m, Register::RDX, MemoryOperand::with_base_displ(Register::RBX, exit_sp_from_rbx)))?;
    a.rip(Code::Lea_r64_m, Register::RDI, refs.descriptor)?;
    a.emit(Instruction::with1(Code::Call_rm64, MemoryOperand::with_base_displ(Register::RIP, refs.exit_slot as i64)))?;
    a.restore_all(exit_set)?;
    a.op(Ok(Instruction::with(Code::Retnq)), -8)?;
    Ok(a)
}

/// Bytes between the trampoline's entry sp and the pad's return address slot: F ≡ 8 (mod 16).
fn stack_frame(h: &Hook) -> i64 {
    let m = h.stack_words as i64;
    if m % 2 == 1 {
        8 * m
    } else {
        8 * m + 8
    }
}

/// The shared site-translation routine (called with rsi = site, rcx = where it was
/// read from; returns the translated rsi; clobbers r10, r11):
/// a pad call's return address maps to the original one; a trampoline's pad-return
/// address means the pad tail-called: take that trampoline's own return address
/// (at a fixed distance above) and repeat while it is still in `[lo, hi)`.
pub fn site_thunk(at: u64, lo: u64, hi: u64, pad_calls: &[(u64, u64)], pad_returns: &[(u64, i64)]) -> Result<(Vec<u8>, NewFde), String> {
    let mut a = Asm::new();
    a.emit(Instruction::with2(Code::Mov_r64_rm64, Register::R10, Register::RCX))?;
    let top = next_ip(&a);
    let mut pending: Vec<usize> = Vec::new();
    let mut to_check: Vec<usize> = Vec::new();
    let bind = |a: &mut Asm, pending: &mut Vec<usize>| {
        let here = next_ip(a);
        for j in pending.drain(..) {
            a.ins[j].set_near_branch64(here);
        }
    };
    for &(moved, orig) in pad_calls {
        bind(&mut a, &mut pending);
        a.rip(Code::Lea_r64_m, Register::R11, moved)?;
        a.emit(Instruction::with2(Code::Cmp_rm64_r64, Register::RSI, Register::R11))?;
        pending.push(a.ins.len());
        a.emit(Instruction::with_branch(Code::Jne_rel32_64, 0))?;
        a.rip(Code::Lea_r64_m, Register::RSI, orig)?;
        a.emit(Ok(Instruction::with(Code::Retnq)))?;
    }
    for &(ret, dist) in pad_returns {
        bind(&mut a, &mut pending);
        a.rip(Code::Lea_r64_m, Register::R11, ret)?;
        a.emit(Instruction::with2(Code::Cmp_rm64_r64, Register::RSI, Register::R11))?;
        pending.push(a.ins.len());
        a.emit(Instruction::with_branch(Code::Jne_rel32_64, 0))?;
        a.emit(Instruction::with2(Code::Lea_r64_m, Register::R10, MemoryOperand::with_base_displ(Register::R10, dist)))?;
        a.emit(Instruction::with2(Code::Mov_r64_rm64, Register::RSI, MemoryOperand::with_base_displ(Register::R10, 0)))?;
        to_check.push(a.ins.len());
        a.emit(Instruction::with_branch(Code::Jmp_rel32_64, 0))?;
    }
    bind(&mut a, &mut pending);
    a.emit(Ok(Instruction::with(Code::Retnq)))?;
    // Still inside the new code? Translate again.
    let check = next_ip(&a);
    for j in to_check {
        a.ins[j].set_near_branch64(check);
    }
    a.rip(Code::Lea_r64_m, Register::R11, lo)?;
    a.emit(Instruction::with2(Code::Cmp_rm64_r64, Register::RSI, Register::R11))?;
    let done1 = a.ins.len();
    a.emit(Instruction::with_branch(Code::Jb_rel32_64, 0))?;
    a.rip(Code::Lea_r64_m, Register::R11, hi)?;
    a.emit(Instruction::with2(Code::Cmp_rm64_r64, Register::RSI, Register::R11))?;
    a.emit(Instruction::with_branch(Code::Jb_rel32_64, top))?;
    let done = next_ip(&a);
    a.ins[done1].set_near_branch64(done);
    a.emit(Ok(Instruction::with(Code::Retnq)))?;
    let (code, _) = encode(&a, at)?;
    let len = code.len() as u32;
    Ok((code, NewFde { start: at, len, rows: Vec::new() }))
}

fn encode(a: &Asm, at: u64) -> Result<(Vec<u8>, Vec<u32>), String> {
    let r = BlockEncoder::encode(64, InstructionBlock::new(&a.ins, at), BlockEncoderOptions::RETURN_NEW_INSTRUCTION_OFFSETS)
        .map_err(|e| format!("cannot encode the trampoline at {at:#x}: {e}"))?;
    Ok((r.code_buffer, r.new_instruction_offsets))
}

/// Build the trampoline and relocated pad of `h` at address `at`.
pub fn build(h: &Hook, refs: &Refs, at: u64) -> Result<Built, String> {
    // The entry part's length does not depend on the pad address (rel32 call, RIP-relative
    // operands), so encode once to learn it and again with the real pad address.
    // Call-site mode: no pad, the trampoline calls the untouched function itself.
    let direct = !h.patches_entry();
    let probe = encode(&entry_code(h, refs, if direct { h.pad.entry } else { at })?, at)?.0.len() as u64;
    let pad_addr = at + probe;
    let target = if direct { h.pad.entry } else { pad_addr };
    let a = entry_code(h, refs, target)?;
    let (mut code, offs) = encode(&a, at)?;
    if code.len() as u64 != probe {
        return Err("internal error: trampoline length changed between passes".into());
    }
    let mut entry_rows = Vec::new();
    for (k, row) in a.after.iter().enumerate().take(a.ins.len() - 1) {
        let next = offs.get(k + 1).copied().unwrap_or(u32::MAX);
        if next != u32::MAX {
            entry_rows.push((next, row.clone()));
        }
    }
    let entry_len = code.len() as u32;
    let call_k = a.ins.iter().position(|i| i.code() == Code::Call_rel32_64 && i.near_branch_target() == target);
    let ret_off = call_k.and_then(|k| offs.get(k + 1).copied()).filter(|&o| o != u32::MAX).ok_or("internal error: no pad call")?;
    let pad_return = (at + ret_off as u64, stack_frame(h) + 8);

    if direct {
        return Ok(Built {
            code,
            entry_len,
            pad_addr: 0,
            pad_len: 0,
            fdes: [NewFde { start: at, len: entry_len, rows: entry_rows }, NewFde { start: 0, len: 0, rows: Vec::new() }],
            pad_calls: Vec::new(),
            pad_return,
        });
    }
    let rel = pad::relocate(&h.pad, pad_addr, &refs.redirect)?;
    let pad_rows = pad_rows(h, &rel);
    let pad_len = rel.code.len() as u32;
    let mut pad_calls = Vec::new();
    for (k, i) in h.pad.instrs.iter().enumerate() {
        if i.flow_control() == iced_x86::FlowControl::Call || i.flow_control() == iced_x86::FlowControl::IndirectCall {
            if let Some(Some(next)) = rel.offsets.get(k + 1) {
                pad_calls.push((pad_addr + *next as u64, i.next_ip()));
            }
        }
    }
    code.extend_from_slice(&rel.code);
    Ok(Built {
        code,
        entry_len,
        pad_addr,
        pad_len,
        fdes: [
            NewFde { start: at, len: entry_len, rows: entry_rows },
            NewFde { start: pad_addr, len: pad_len, rows: pad_rows },
        ],
        pad_calls,
        pad_return,
    })
}

/// Unwind rows of the relocated pad: the original function's rows at each displaced
/// instruction (the pad runs on the same stack as the original entry), or, without
/// usable CFI, the stack depth tracked from the instructions themselves.
fn pad_rows(h: &Hook, rel: &pad::Relocated) -> Vec<(u32, Row)> {
    let mut rows = Vec::new();
    let mut depth = 0i64;
    for (k, (off, orig)) in rel.offsets.iter().zip(&rel.origins).enumerate() {
        let tracked = Row { cfa_reg: gimli::X86_64::RSP.0, cfa_off: 8 + depth, saved: Vec::new() };
        let row = h
            .rows
            .iter()
            .find(|(s, e, _)| orig >= s && orig < e)
            .and_then(|r| r.2.clone())
            .unwrap_or(tracked);
        if let Some(o) = off {
            rows.push((*o, row));
        }
        if let Some(i) = h.pad.instrs.get(k) {
            depth -= i.stack_pointer_increment() as i64;
            if i.op0_register() == Register::RSP {
                match i.code() {
                    Code::Sub_rm64_imm8 | Code::Sub_rm64_imm32 => depth += i.immediate(1) as i64,
                    Code::Add_rm64_imm8 | Code::Add_rm64_imm32 => depth -= i.immediate(1) as i64,
                    _ => {}
                }
            }
        }
    }
    rows
}
