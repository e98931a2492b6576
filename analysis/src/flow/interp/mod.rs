//! Abstract interpretation of one function over its control-flow graph:
//! registers and stack slots hold `Val`s; calls, returns and stores through
//! parameters are recorded into a `Summary`.
//!
//! The interpreter is split by what it handles:
//! - here: the interpreter's state, decoding, block leaders and one instruction's step;
//! - `fixpoint.rs`: the worklist over blocks and the block graph the path rules use;
//! - `calls.rs`: call targets and call sites (direct, PLT/GOT, through pointers, tail calls);
//! - `memory.rs`: memory operands, loads and stores (what a store through a parameter records).
//! Per-instruction data transfer is `../transfer.rs`, branch tests `../branch.rs`.

mod calls;
mod fixpoint;
mod memory;

pub(super) use memory::Mem;

use super::summary::{Summary, Target};
use super::state::State;
use super::value::Val;
use crate::load::Binary;
use iced_x86::{Decoder, DecoderOptions, FlowControl, Instruction, InstructionInfoFactory, Mnemonic, OpKind, Register};
use std::cell::Cell;
use std::collections::BTreeMap;

/// Instructions beyond this are not interpreted (the function is marked imprecise).
const MAX_INSNS: usize = 60_000;
/// Block visits allowed per block before giving up on precision.
pub(super) const MAX_VISITS_PER_BLOCK: usize = 12;

pub(super) const RSP: usize = 4;
pub(super) const RBP: usize = 5;
/// Integer argument registers in System V order, as indices into the register file.
pub const ARG_REGS: [usize; 6] = [7, 6, 2, 1, 8, 9];
/// Caller-saved registers, clobbered by a call.
pub(super) const CLOBBERED: [usize; 9] = [0, 1, 2, 6, 7, 8, 9, 10, 11];

/// Index 0..16 of a general-purpose register (any width), in iced's RAX.. order.
pub fn gpr(r: Register) -> Option<usize> {
    let f = r.full_register();
    let (lo, hi) = (Register::RAX as u32, Register::R15 as u32);
    let v = f as u32;
    (lo..=hi).contains(&v).then(|| (v - lo) as usize)
}

/// Decode the function's instructions; stops at the first undecodable byte.
pub fn decode(bin: &Binary, addr: u64, size: u64) -> Vec<Instruction> {
    let Some(bytes) = bin.bytes(addr, size) else { return Vec::new() };
    let mut dec = Decoder::with_ip(64, bytes, addr, DecoderOptions::NONE);
    let mut out = Vec::new();
    let mut ins = Instruction::default();
    while dec.can_decode() && out.len() < MAX_INSNS {
        dec.decode_out(&mut ins);
        if ins.is_invalid() {
            break;
        }
        out.push(ins);
    }
    out
}

/// Callbacks the interpreter needs from the caller.
pub trait Env {
    /// True when a call to `t` never returns.
    fn noreturn(&self, t: &Target) -> bool;
}

pub(in crate::flow) struct Interp<'a, E: Env> {
    bin: &'a Binary,
    env: &'a E,
    start: u64,
    end: u64,
    pub(in crate::flow) insns: &'a [Instruction],
    /// Instruction index → call-site index.
    call_idx: BTreeMap<usize, usize>,
    pub(in crate::flow) sum: Summary,
    ret_at: BTreeMap<usize, Val>,
    /// Block being interpreted, and per block the parameters it stores to memory.
    cur_block: usize,
    keeps: Vec<u8>,
    /// Keeps in member slots, excused or not once the block graph is known.
    slot_keeps: super::keeps::SlotKeeps,
    /// The last store of this block into memory, when it went to member `.1` of
    /// parameter `.0` with width `.2`: a load of that member right after reads
    /// back `.3` (-O0 stores `--p->busy` and reloads it to test it).
    fwd: Option<(u8, i32, usize, Val)>,
    /// Instructions right after a call that never returns: gcc still emits the
    /// code it would run if the callee returned (`fatal_error(...); return p;`
    /// becomes a call and a `jmp` back to the return path) when it cannot see
    /// the callee is noreturn. That code is dead, not a jump-table target.
    after_noreturn: Vec<usize>,
    /// Parameters whose memory is accessed at a non-zero offset (see
    /// `Summary::struct_params`); a Cell because operands are resolved through `&self`.
    struct_params: Cell<u8>,
    /// Calls whose result some instruction reads.
    used_calls: std::collections::BTreeSet<u32>,
    /// Join of the states at the function's switch jumps (`jmp *table(,%rax,8)`):
    /// the entry state of the blocks only a jump table reaches.
    switch_state: Option<State>,
    pub(in crate::flow) info: InstructionInfoFactory,
    /// Per instruction, what it does with rax (see `note_reads`); 0 = not yet known.
    rax_use: Vec<u8>,
}

/// The summary of the function at `addr`, from its instructions (`decode`).
pub fn summarize<E: Env>(bin: &Binary, env: &E, addr: u64, insns: &[Instruction]) -> Summary {
    let end = insns.last().map(|i| i.next_ip()).unwrap_or(addr);
    let mut it = Interp {
        bin,
        env,
        start: addr,
        end,
        insns,
        call_idx: BTreeMap::new(),
        sum: Summary::default(),
        ret_at: BTreeMap::new(),
        cur_block: 0,
        keeps: Vec::new(),
        slot_keeps: Default::default(),
        fwd: None,
        after_noreturn: Vec::new(),
        struct_params: Cell::new(0),
        used_calls: Default::default(),
        switch_state: None,
        info: InstructionInfoFactory::new(),
        rax_use: vec![0; insns.len()],
    };
    if insns.len() >= MAX_INSNS {
        it.sum.imprecise = true;
    }
    it.run();
    it.finish()
}

impl<'a, E: Env> Interp<'a, E> {
    pub(super) fn inside(&self, a: u64) -> bool {
        a >= self.start && a < self.end
    }

    pub(super) fn index_of(&self, a: u64) -> Option<usize> {
        self.insns.binary_search_by_key(&a, |i| i.ip()).ok()
    }

    /// The instruction a direct branch goes to inside this function (in a `.o`,
    /// only where no relocation sends it elsewhere).
    pub(in crate::flow) fn local_target(&self, ins: &Instruction) -> Option<usize> {
        self.index_of(ins.near_branch_target()).filter(|_| !self.relocated(ins))
    }

    /// Block leaders: entry, in-function branch targets, and instructions after control transfers.
    fn leaders(&self) -> Vec<usize> {
        let mut lead = vec![false; self.insns.len()];
        if !lead.is_empty() {
            lead[0] = true;
        }
        for (i, ins) in self.insns.iter().enumerate() {
            match ins.flow_control() {
                FlowControl::ConditionalBranch | FlowControl::UnconditionalBranch => {
                    if let Some(t) = self.local_target(ins) {
                        lead[t] = true;
                    }
                    if i + 1 < lead.len() {
                        lead[i + 1] = true;
                    }
                }
                FlowControl::IndirectBranch | FlowControl::Return | FlowControl::Interrupt | FlowControl::Exception => {
                    if i + 1 < lead.len() {
                        lead[i + 1] = true;
                    }
                }
                FlowControl::Call | FlowControl::IndirectCall => {
                    if i + 1 < lead.len() {
                        lead[i + 1] = true;
                    }
                }
                _ => {}
            }
        }
        lead.iter().enumerate().filter(|(_, &l)| l).map(|(i, _)| i).collect()
    }


    /// Marks the calls whose results instruction `i` reads: those still in rax
    /// when it reads rax (explicitly, as a memory base or index, or implicitly).
    /// A write to rax ends their chance.
    fn note_reads(&mut self, i: usize, st: &mut State) {
        use iced_x86::OpAccess as A;
        if st.rax_calls.is_empty() {
            return;
        }
        // What the instruction does with rax, computed once per instruction
        // (blocks are visited several times): bit 0 read, bit 1 written, bit 7 known.
        let mut use_ = self.rax_use[i];
        if use_ == 0 {
            let info = self.info.info(&self.insns[i]);
            use_ = 0x80;
            for u in info.used_registers() {
                if gpr(u.register()) == Some(0) {
                    use_ |= u8::from(matches!(u.access(), A::Read | A::ReadWrite | A::CondRead | A::ReadCondWrite));
                    use_ |= u8::from(matches!(u.access(), A::Write | A::ReadWrite)) << 1;
                }
            }
            self.rax_use[i] = use_;
        }
        let (read, written) = (use_ & 1 != 0, use_ & 2 != 0);
        if read {
            self.used_calls.extend(st.rax_calls.iter().copied());
        }
        if read || written {
            st.rax_calls.clear();
        }
    }

    /// Where the block of instructions `lo..hi` may go next, from its last
    /// instruction alone (branch targets inside the function, fallthrough).
    fn static_succs(&self, lo: usize, hi: usize) -> Vec<usize> {
        let Some(ins) = self.insns[lo..hi].last() else { return Vec::new() };
        let fall = (hi < self.insns.len()).then_some(hi);
        match ins.flow_control() {
            FlowControl::ConditionalBranch => fall.into_iter().chain(self.local_target(ins)).collect(),
            FlowControl::UnconditionalBranch => self.local_target(ins).into_iter().collect(),
            FlowControl::Return | FlowControl::IndirectBranch | FlowControl::Interrupt | FlowControl::Exception => Vec::new(),
            _ => fall.into_iter().collect(),
        }
    }

    /// The value instruction `i` stores into memory outside the stack frame.
    fn stored_to_object(&self, i: usize, st: &State) -> Option<Val> {
        let ins = &self.insns[i];
        if ins.mnemonic() != Mnemonic::Mov || ins.op0_kind() != OpKind::Memory || ins.op1_kind() != OpKind::Register {
            return None;
        }
        if matches!(ins.memory_base(), Register::RSP | Register::RBP | Register::RIP) {
            return None;
        }
        Some(self.read(ins, 1, st))
    }

    /// Interpret instruction `i`. Returns Some(successor instruction indices) when
    /// it ends the block (empty: no successor), None to fall through.
    fn step(&mut self, i: usize, st: &mut State) -> Option<Succs> {
        let ins = self.insns[i];
        let next = i + 1;
        let fallthrough = || if next < self.insns.len() { Succs::one(next) } else { Succs::NONE };
        match ins.flow_control() {
            FlowControl::Return => {
                let rax = st.regs[0];
                let e = self.ret_at.entry(i).or_insert(rax);
                *e = e.join(&rax);
                return Some(Succs::NONE);
            }
            FlowControl::Call | FlowControl::IndirectCall => {
                let target = self.call_target(&ins, st);
                let noret = self.env.noreturn(&target);
                self.record_call(i, &ins, st, target, false);
                if noret && !self.after_noreturn.contains(&next) {
                    self.after_noreturn.push(next);
                }
                return Some(if noret { Succs::NONE } else { fallthrough() });
            }
            FlowControl::UnconditionalBranch => {
                let t = ins.near_branch_target();
                if self.inside(t) && !self.relocated(&ins) {
                    return Some(self.index_of(t).map_or(Succs::NONE, Succs::one));
                }
                if !self.is_cold_jump(&ins) {
                    let target = self.call_target(&ins, st);
                    self.record_tail_call(i, &ins, st, target);
                }
                return Some(Succs::NONE);
            }
            FlowControl::ConditionalBranch => {
                let t = ins.near_branch_target();
                let mut s = fallthrough();
                if self.inside(t) && !self.relocated(&ins) {
                    if let Some(t) = self.index_of(t) {
                        s.push(t);
                    }
                } else if matches!(ins.mnemonic(), Mnemonic::Jrcxz | Mnemonic::Jecxz | Mnemonic::Loop | Mnemonic::Loope | Mnemonic::Loopne) {
                } else if !self.is_cold_jump(&ins) {
                    // A conditional tail call out of the function.
                    let target = self.call_target(&ins, st);
                    self.record_tail_call(i, &ins, st, target);
                }
                return Some(s);
            }
            FlowControl::IndirectBranch => {
                let t = self.call_target(&ins, st);
                // `jmp *table(,%rax,8)` or a jump to an address computed from a table
                // entry is a switch inside the function; a jump through a loaded
                // function pointer is a tail call.
                let indexed = ins.op0_kind() == OpKind::Memory && ins.memory_index() != Register::None;
                if indexed || matches!(t, Target::PtrUnknown) {
                    self.sum.imprecise = true;
                    match &mut self.switch_state {
                        Some(s) => {
                            s.join_from(st);
                        }
                        None => self.switch_state = Some(st.clone()),
                    }
                    return Some(Succs::NONE);
                }
                self.record_tail_call(i, &ins, st, t);
                return Some(Succs::NONE);
            }
            FlowControl::Interrupt | FlowControl::Exception => {
                if matches!(ins.mnemonic(), Mnemonic::Ud2 | Mnemonic::Int3 | Mnemonic::Hlt) {
                    return Some(Succs::NONE);
                }
            }
            _ => {}
        }
        self.transfer(&ins, st);
        None
    }

    /// In a `.o`, a branch whose displacement carries a relocation goes wherever
    /// the relocation says, not to the (unrelocated) encoded target.
    pub(super) fn relocated(&self, ins: &Instruction) -> bool {
        !self.bin.rel_targets.is_empty() && self.bin.rel_targets.contains_key(&ins.next_ip().wrapping_sub(4))
    }

    /// A tail call: the callee's result is what this function returns, unless the
    /// callee never returns. The state is left as it was (a conditional tail

    fn finish(mut self) -> Summary {
        self.sum.rets = self.ret_at.values().copied().collect();
        self.sum.struct_params = self.struct_params.get();
        for (c, cs) in self.sum.calls.iter_mut().enumerate() {
            cs.result_used = self.used_calls.contains(&(c as u32));
        }
        self.sum
    }
}


pub(super) fn is_padding(i: &Instruction) -> bool {
    matches!(i.mnemonic(), Mnemonic::Nop | Mnemonic::Int3 | Mnemonic::Ud2) || i.code() == iced_x86::Code::Xchg_r16_AX
}

/// Where a block goes next: at most two instructions (the fallthrough, then
/// a branch target), kept inline because every block visit makes one.
#[derive(Clone, Copy)]
pub(super) struct Succs {
    n: u8,
    at: [usize; 2],
}

impl Succs {
    pub(super) const NONE: Succs = Succs { n: 0, at: [0; 2] };

    fn one(i: usize) -> Succs {
        Succs { n: 1, at: [i, 0] }
    }

    /// Adds a successor; no block has more than two (a third is never pushed).
    pub(super) fn push(&mut self, i: usize) {
        if let Some(slot) = self.at.get_mut(self.n as usize) {
            *slot = i;
            self.n += 1;
        }
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        self.at[..self.n as usize].iter().copied()
    }
}
