//! Abstract interpretation of one function over its control-flow graph:
//! registers and stack slots hold `Val`s; calls, returns and stores through
//! parameters are recorded into a `Summary`.

use super::summary::{CallSite, FnRef, ParamStore, Summary, Target, Via};
use super::state::State;
use super::value::{Val, OTHER_BASE};
use crate::load::{Binary, RelTarget};
use iced_x86::{
    Decoder, DecoderOptions, FlowControl, Instruction, InstructionInfoFactory, Mnemonic, OpKind, Register,
};
use std::cell::Cell;
use std::collections::BTreeMap;


/// Instructions beyond this are not interpreted (the function is marked imprecise).
const MAX_INSNS: usize = 60_000;
/// Block visits allowed per block before giving up on precision.
const MAX_VISITS_PER_BLOCK: usize = 12;

pub(super) const RSP: usize = 4;
pub(super) const RBP: usize = 5;
/// Integer argument registers in System V order, as indices into the register file.
pub const ARG_REGS: [usize; 6] = [7, 6, 2, 1, 8, 9];
/// Caller-saved registers, clobbered by a call.
const CLOBBERED: [usize; 9] = [0, 1, 2, 6, 7, 8, 9, 10, 11];

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

/// Where a memory operand points.
pub(super) enum Mem {
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

/// Callbacks the interpreter needs from the caller.
pub trait Env {
    /// True when a call to `t` never returns.
    fn noreturn(&self, t: &Target) -> bool;
}

pub(super) struct Interp<'a, E: Env> {
    bin: &'a Binary,
    env: &'a E,
    start: u64,
    end: u64,
    pub(super) insns: &'a [Instruction],
    /// Instruction index → call-site index.
    call_idx: BTreeMap<usize, usize>,
    pub(super) sum: Summary,
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
    pub(super) info: InstructionInfoFactory,
}

pub fn summarize<E: Env>(bin: &Binary, env: &E, addr: u64, size: u64) -> Summary {
    let insns = decode(bin, addr, size);
    let end = insns.last().map(|i| i.next_ip()).unwrap_or(addr);
    let mut it = Interp {
        bin,
        env,
        start: addr,
        end,
        insns: &insns,
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
    };
    if insns.len() >= MAX_INSNS {
        it.sum.imprecise = true;
    }
    it.run();
    it.finish()
}

impl<'a, E: Env> Interp<'a, E> {
    fn inside(&self, a: u64) -> bool {
        a >= self.start && a < self.end
    }

    fn index_of(&self, a: u64) -> Option<usize> {
        self.insns.binary_search_by_key(&a, |i| i.ip()).ok()
    }

    /// The instruction a direct branch goes to inside this function (in a `.o`,
    /// only where no relocation sends it elsewhere).
    pub(super) fn local_target(&self, ins: &Instruction) -> Option<usize> {
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

    fn run(&mut self) {
        if self.insns.is_empty() {
            return;
        }
        let leaders = self.leaders();
        let block_of = |i: usize| leaders.partition_point(|&l| l <= i) - 1;
        let nblocks = leaders.len();
        let mut input: Vec<Option<State>> = vec![None; nblocks];
        let mut visits = vec![0usize; nblocks];
        input[0] = Some(State::entry());
        let mut work: Vec<usize> = vec![0];
        let mut queued = vec![false; nblocks];
        queued[0] = true;
        let mut reached = vec![false; nblocks];
        let mut succ_of: Vec<Vec<usize>> = vec![Vec::new(); nblocks];
        let mut guard: Vec<Option<u8>> = vec![None; nblocks];
        // (parameter, instruction the branch goes to when it is NULL)
        let mut null_edge: Vec<Option<(u8, usize)>> = vec![None; nblocks];
        let mut checks: Vec<u8> = vec![0; nblocks];
        // The values each block's checking branch compares (see `stored_back`).
        let mut tested: Vec<[Val; 2]> = vec![[Val::TOP; 2]; nblocks];
        self.keeps = vec![0; nblocks];
        let mut switch_blocks: Vec<usize> = Vec::new();
        let mut range_test: Vec<Option<u8>> = vec![None; nblocks];
        let mut switch_jump = vec![false; nblocks];
        loop {
            while let Some(b) = work.pop() {
                queued[b] = false;
                reached[b] = true;
                visits[b] += 1;
                if visits[b] > MAX_VISITS_PER_BLOCK {
                    self.sum.imprecise = true;
                    continue;
                }
                let Some(mut st) = input[b].clone() else { continue };
                self.cur_block = b;
                self.fwd = None;
                let first = leaders[b];
                let last = leaders.get(b + 1).copied().unwrap_or(self.insns.len());
                let mut succs = Vec::new();
                // Values this block stores into objects (not its own frame).
                let mut written: Vec<Val> = Vec::new();
                // A call's result tested for NULL, and the instruction its NULL edge goes to.
                let mut null_result: Option<(Val, usize)> = None;
                // What the branch checks is judged on this visit's state, the widest
                // so far: an early visit may have seen only some of the paths in
                // (SQLite's rtreeUpdate reaches `nBusy--; if (nBusy == 0)` from a
                // path that did not decrement yet, then from those that did).
                checks[b] = 0;
                for i in first..last {
                    if i > first && self.insns[i].flow_control() == FlowControl::ConditionalBranch {
                        let (cmp, jcc) = (&self.insns[i - 1], &self.insns[i]);
                        guard[b] = guard[b].or(self.pool_test(cmp, jcc, &st));
                        // The check may sit a few moves before its branch (bzip2's
                        // `cmpb $0,writing(%rsi); movl $0,lastErr(%rsi); jne`).
                        if let Some(setter) = (first..i).rev().map(|j| &self.insns[j]).find(|x| x.rflags_modified() != 0) {
                            if !self.tests_written_counter(setter, &st, &written) {
                                checks[b] |= self.checked_params(setter, &st);
                                tested[b] = self.tested_values(setter, &st);
                            }
                        }
                        null_edge[b] = null_edge[b].or_else(|| {
                            let p = self.null_test(cmp, &st)?;
                            let taken = self.local_target(jcc)?;
                            match jcc.mnemonic() {
                                Mnemonic::Je => Some((p, taken)),
                                Mnemonic::Jne => Some((p, i + 1)),
                                _ => None,
                            }
                        });
                        range_test[b] = range_test[b].or(self.tag_range_test(cmp, jcc, &st));
                        null_result = self.null_result_test(cmp, jcc, i, &st);
                        if let Some((s, to)) = self.null_slot_test(cmp, jcc, i, &st) {
                            self.slot_keeps.test(b, s, to);
                        }
                    }
                    if let Some(v) = self.stored_to_object(i, &st) {
                        written.push(v);
                    }
                    self.note_reads(i, &mut st);
                    let verdict_of = self.setcc_source(first, i, &st);
                    let step = self.step(i, &mut st);
                    if let Some((g, v)) = verdict_of {
                        st.regs[g] = v;
                    }
                    if let Some(next) = step {
                        // An indirect jump that is no tail call: a switch.
                        switch_jump[b] |= self.insns[i].flow_control() == FlowControl::IndirectBranch && !self.call_idx.contains_key(&i);
                        for t in next {
                            succs.push(t);
                        }
                        break;
                    }
                    if i + 1 == last && last < self.insns.len() {
                        succs.push(last);
                    }
                }
                for s in succs {
                    let sb = block_of(s);
                    if !succ_of[b].contains(&sb) {
                        succ_of[b].push(sb);
                    }
                    // On the edge where a call's result was found NULL, that value is
                    // the constant 0 wherever it is held: `*out = p` on the failure
                    // path of `p = realloc(...); if (!p) { *out = p; return ERR; }`
                    // hands back no storage.
                    let nulled;
                    let out_st = match null_result {
                        Some((v, t)) if t == s => {
                            nulled = st.nulled(&v);
                            &nulled
                        }
                        _ => &st,
                    };
                    let changed = match &mut input[sb] {
                        Some(old) => old.join_from(out_st),
                        slot @ None => {
                            *slot = Some(out_st.clone());
                            true
                        }
                    };
                    if changed && !queued[sb] {
                        queued[sb] = true;
                        work.push(sb);
                    }
                }
            }
            // Blocks reached only through jump tables or by the unwinder (landing
            // pads): analyze them from an unknown state. Alignment padding is skipped;
            // a `ret` reached this way makes the returns imprecise.
            let next = (0..nblocks).find(|&b| {
                let (lo, hi) = (leaders[b], leaders.get(b + 1).copied().unwrap_or(self.insns.len()));
                !reached[b] && input[b].is_none() && !self.insns[lo..hi].iter().all(is_padding)
            });
            match next {
                // Dead code after a noreturn call, and what only it branches to:
                // analyzing it from an unknown state would make the returns it
                // jumps back into unknown too.
                Some(b) if self.after_noreturn.contains(&leaders[b]) => {
                    reached[b] = true;
                    for t in self.static_succs(leaders[b], leaders.get(b + 1).copied().unwrap_or(self.insns.len())) {
                        if !self.after_noreturn.contains(&t) {
                            self.after_noreturn.push(t);
                        }
                    }
                }
                Some(b) => {
                    let hi = leaders.get(b + 1).copied().unwrap_or(self.insns.len());
                    if self.insns[leaders[b]..hi].iter().any(|i| i.flow_control() == FlowControl::Return) {
                        self.sum.imprecise = true;
                    }
                    // A case of a switch starts from the state at the switch jump
                    // (Lua's `freeobj(L, o)` frees `o` in every case); without a
                    // switch, from an unknown state.
                    input[b] = Some(self.switch_state.clone().unwrap_or_else(State::unknown));
                    if self.switch_state.is_some() {
                        switch_blocks.push(b);
                    }
                    queued[b] = true;
                    work.push(b);
                }
                None => {
                    // Switch jumps found since some cases were seeded widen their entry.
                    let Some(sw) = self.switch_state.clone() else { break };
                    let mut again = false;
                    for &b in &switch_blocks {
                        if input[b].as_mut().is_some_and(|st| st.join_from(&sw)) && !queued[b] {
                            queued[b] = true;
                            work.push(b);
                            again = true;
                        }
                    }
                    if !again {
                        break;
                    }
                }
            }
        }
        // A tested value that the function writes back into the member it was read
        // from, in any block, is a counter being updated (`if (--p->busy == 0)
        // free(p)` where gcc tests before it stores): a reference count reaching
        // zero, no check of p's state whose other edge refuses p.
        for b in 0..nblocks {
            if checks[b] != 0 && tested[b].iter().any(|v| self.stored_back(v)) {
                checks[b] = 0;
            }
        }
        let exits: Vec<bool> = (0..nblocks)
            .map(|b| {
                let hi = leaders.get(b + 1).copied().unwrap_or(self.insns.len());
                self.ret_at.range(leaders[b]..hi).next().is_some()
            })
            .collect();
        // The range check in front of a switch on the pointee's type tag
        // (`switch (o->tt)` in Lua's freeobj): a tag no case handles is no object
        // the function is given, so its path is excused like a NULL test's.
        for b in 0..nblocks {
            if let Some(p) = range_test[b].filter(|_| guard[b].is_none() && succ_of[b].iter().any(|&n| switch_jump[n])) {
                guard[b] = Some(p);
            }
        }
        let null_block: Vec<Option<(u8, usize)>> = null_edge.iter().map(|e| e.and_then(|(p, i)| (i < self.insns.len()).then(|| (p, block_of(i))))).collect();
        // Behind a partial-inlining clone's entry tests every branch on the
        // pointer being NULL counts, both of its edges (see `split_clone_free`).
        let entry_guard: Vec<Option<u8>> = guard.iter().zip(&null_block).map(|(g, e)| g.or(e.map(|(p, _)| p))).collect();
        let calls: Vec<(usize, usize)> = self.call_idx.iter().map(|(&i, &c)| (c, block_of(i))).collect();
        let mut has_call = vec![false; nblocks];
        for &(_, bc) in &calls {
            has_call[bc] = true;
        }
        // Parameters handed back by the `ret`s of each block.
        let returns: Vec<u8> = (0..nblocks)
            .map(|b| {
                let hi = leaders.get(b + 1).copied().unwrap_or(self.insns.len());
                self.ret_at.range(leaders[b]..hi).fold(0u8, |m, (_, v)| m | v.params)
            })
            .collect();
        let (quiet, quiet_returns) = super::paths::quiet_blocks(&succ_of, &has_call, &returns);
        self.slot_keeps.excused_into(&succ_of, block_of, &mut self.keeps);
        let graph = super::paths::Graph { succ: succ_of, exits, guard, null_edge: null_block, checks, quiet, quiet_returns, keeps: std::mem::take(&mut self.keeps) };
        let loose = super::paths::Graph { guard: entry_guard, null_edge: Vec::new(), checks: Vec::new(), ..graph.clone() };
        for (c, bc) in calls {
            let mask = self.sum.calls[c].args.iter().fold(0u8, |m, a| m | a.params) & 0x3f;
            self.sum.calls[c].unavoidable = graph.view().unavoidable(bc, mask);
            self.sum.calls[c].behind_entry_tests = loose.view().unavoidable(bc, mask);
            self.sum.calls[c].block = bc;
        }
        self.sum.paths = graph;
    }

    /// Marks the calls whose results instruction `i` reads: those still in rax
    /// when it reads rax (explicitly, as a memory base or index, or implicitly).
    /// A write to rax ends their chance.
    fn note_reads(&mut self, i: usize, st: &mut State) {
        use iced_x86::OpAccess as A;
        if st.rax_calls.is_empty() {
            return;
        }
        let ins = &self.insns[i];
        let info = self.info.info(ins);
        let (mut read, mut written) = (false, false);
        for u in info.used_registers() {
            if gpr(u.register()) == Some(0) {
                read |= matches!(u.access(), A::Read | A::ReadWrite | A::CondRead | A::ReadCondWrite);
                written |= matches!(u.access(), A::Write | A::ReadWrite);
            }
        }
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
    fn step(&mut self, i: usize, st: &mut State) -> Option<Vec<usize>> {
        let ins = self.insns[i];
        let next = i + 1;
        let fallthrough = || if next < self.insns.len() { vec![next] } else { vec![] };
        match ins.flow_control() {
            FlowControl::Return => {
                let rax = st.regs[0];
                let e = self.ret_at.entry(i).or_insert(rax);
                *e = e.join(&rax);
                return Some(vec![]);
            }
            FlowControl::Call | FlowControl::IndirectCall => {
                let target = self.call_target(&ins, st);
                let noret = self.env.noreturn(&target);
                self.record_call(i, &ins, st, target, false);
                if noret && !self.after_noreturn.contains(&next) {
                    self.after_noreturn.push(next);
                }
                return Some(if noret { vec![] } else { fallthrough() });
            }
            FlowControl::UnconditionalBranch => {
                let t = ins.near_branch_target();
                if self.inside(t) && !self.relocated(&ins) {
                    return Some(self.index_of(t).into_iter().collect());
                }
                if !self.is_cold_jump(&ins) {
                    let target = self.call_target(&ins, st);
                    self.record_tail_call(i, &ins, st, target);
                }
                return Some(vec![]);
            }
            FlowControl::ConditionalBranch => {
                let t = ins.near_branch_target();
                let mut s = fallthrough();
                if self.inside(t) && !self.relocated(&ins) {
                    s.extend(self.index_of(t));
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
                    return Some(vec![]);
                }
                self.record_tail_call(i, &ins, st, t);
                return Some(vec![]);
            }
            FlowControl::Interrupt | FlowControl::Exception => {
                if matches!(ins.mnemonic(), Mnemonic::Ud2 | Mnemonic::Int3 | Mnemonic::Hlt) {
                    return Some(vec![]);
                }
            }
            _ => {}
        }
        self.transfer(&ins, st);
        None
    }

    /// In a `.o`, a branch whose displacement carries a relocation goes wherever
    /// the relocation says, not to the (unrelocated) encoded target.
    fn relocated(&self, ins: &Instruction) -> bool {
        !self.bin.rel_targets.is_empty() && self.bin.rel_targets.contains_key(&ins.next_ip().wrapping_sub(4))
    }

    /// A tail call: the callee's result is what this function returns, unless the
    /// callee never returns. The state is left as it was (a conditional tail
    /// call falls through when not taken).
    fn record_tail_call(&mut self, i: usize, ins: &Instruction, st: &State, target: Target) {
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
    fn is_cold_jump(&self, ins: &Instruction) -> bool {
        let t = ins.near_branch_target();
        if self.relocated(ins) || self.bin.stubs.contains_key(&t) {
            return false;
        }
        match self.bin.func_containing(t) {
            Some(f) => self.bin.funcs[f].name.contains(".cold") || self.bin.funcs[f].addr != t,
            None => false,
        }
    }

    fn record_call(&mut self, i: usize, ins: &Instruction, st: &mut State, target: Target, tail: bool) -> usize {
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
            (a.as_param_arith() == Some(p) && a.has(super::value::ARITH) && k < 0 && k <= off as i64 && off as i64 - k < 4096)
                .then(|| Target::PtrMember((off as i64 - k) as i32, None))
        })
    }

    fn call_target(&self, ins: &Instruction, st: &State) -> Target {
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
                    let via = if b & super::value::LOAD2 != 0 && b != OTHER_BASE {
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

    pub(super) fn mem(&self, ins: &Instruction, st: &State) -> Mem {
        self.mem_at(ins, st, 0)
    }

    /// The memory operand displaced by `extra` bytes (the second lane of a vector access).
    pub(super) fn mem_at(&self, ins: &Instruction, st: &State, extra: i64) -> Mem {
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
            Mem::Member(disp as i32, v.lparams | v.params, v.calls, chain_of(&v), !v.has(super::value::ARITH))
        }
    }

    pub(super) fn load(&self, ins: &Instruction, st: &State) -> Val {
        let m = self.mem(ins, st);
        if let (Mem::Param(p, d), Some((q, e, w, v))) = (&m, self.fwd) {
            if (*p, *d) == (q, e) && ins.memory_size().size() == w {
                return v;
            }
        }
        self.load_mem(m, st)
    }

    pub(super) fn load_mem(&self, m: Mem, st: &State) -> Val {
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
                    v.load_base = super::value::LOAD2 | param;
                    v.num = l as i64;
                    v.lfields = super::value::field_bit(param, Some(l), d);
                } else if via != 0 {
                    v.lfields = super::value::field_bit(via.trailing_zeros() as u8, None, d);
                }
                v
            }
            Mem::Unknown => Val::TOP,
        }
    }

    pub(super) fn store(&mut self, ins: &Instruction, st: &mut State, v: Val, size: usize) {
        let m = self.mem(ins, st);
        self.store_mem(m, st, v, size);
    }

    pub(super) fn store_mem(&mut self, m: Mem, st: &mut State, v: Val, size: usize) {
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
                if let Some(s) = super::keeps::slot_of(&v) {
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
                    Some(Via { param, load: Some(l) }) => Some((super::value::LOAD2 | param, l as i64, d)),
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
                if base != 0 && v.calls != 0 && v.has(super::value::ARITH) && !self.sum.call_stores.contains(&(base, v.calls)) {
                    self.sum.call_stores.push((base, v.calls));
                }
                if let Some(f) = self.fn_addr(&v) {
                    self.push_ref(FnRef::AtMember { off: d, func: f, via: chain });
                }
            }
            Mem::Global(g) => {
                let linked = v.has(super::value::LOAD) && v.load_base == OTHER_BASE && v.lparams == 0 && v.params == 0 && v.calls == 0;
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
    fn note_param_member(&mut self, v: &Val, off: i32, slot: Option<super::keeps::Slot>) {
        if let Some(k) = v.as_param() {
            if let Some(s) = slot {
                self.slot_keeps.keep(self.cur_block, k, s);
            }
            if !self.sum.param_members.contains(&(k, off)) {
                self.sum.param_members.push((k, off));
            }
        }
    }

    fn push_ref(&mut self, r: FnRef) {
        if !self.sum.fn_refs.contains(&r) {
            self.sum.fn_refs.push(r);
        }
    }

    pub(super) fn read(&self, ins: &Instruction, op: u32, st: &State) -> Val {
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

    pub(super) fn write(&mut self, ins: &Instruction, op: u32, st: &mut State, v: Val) {
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

    fn finish(mut self) -> Summary {
        self.sum.rets = self.ret_at.values().copied().collect();
        self.sum.struct_params = self.struct_params.get();
        for (c, cs) in self.sum.calls.iter_mut().enumerate() {
            cs.result_used = self.used_calls.contains(&(c as u32));
        }
        self.sum
    }
}

/// `param->[load]` when `v` was loaded from a member of what a parameter points to.
fn chain_of(v: &Val) -> Option<Via> {
    let (b, off) = v.as_load()?;
    (b < 8).then_some(Via { param: b, load: Some(off) })
}

fn is_padding(i: &Instruction) -> bool {
    matches!(i.mnemonic(), Mnemonic::Nop | Mnemonic::Int3 | Mnemonic::Ud2) || i.code() == iced_x86::Code::Xchg_r16_AX
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
