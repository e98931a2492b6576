//! Abstract interpretation of one function over its control-flow graph:
//! registers and stack slots hold `Val`s; calls, returns and stores through
//! parameters are recorded into a `Summary`.

use super::summary::{CallSite, FnRef, ParamStore, Summary, Target};
use super::value::{Val, OTHER_BASE, TOP};
use crate::load::{Binary, RelTarget};
use iced_x86::{
    Decoder, DecoderOptions, FlowControl, Instruction, InstructionInfoFactory, Mnemonic, OpAccess, OpKind, Register,
};
use std::collections::BTreeMap;


/// Instructions beyond this are not interpreted (the function is marked imprecise).
const MAX_INSNS: usize = 60_000;
/// Block visits allowed per block before giving up on precision.
const MAX_VISITS_PER_BLOCK: usize = 40;

const RSP: usize = 4;
const RBP: usize = 5;
/// Integer argument registers in System V order, as indices into the register file.
pub const ARG_REGS: [usize; 6] = [7, 6, 2, 1, 8, 9];
/// Caller-saved registers, clobbered by a call.
const CLOBBERED: [usize; 9] = [0, 1, 2, 6, 7, 8, 9, 10, 11];

/// Index 0..16 of a general-purpose register (any width), in iced's RAX.. order.
fn gpr(r: Register) -> Option<usize> {
    let f = r.full_register();
    let (lo, hi) = (Register::RAX as u32, Register::R15 as u32);
    let v = f as u32;
    (lo..=hi).contains(&v).then(|| (v - lo) as usize)
}

/// Index 0..16 of an xmm/ymm register.
fn xmm(r: Register) -> Option<usize> {
    let v = r as u32;
    for base in [Register::XMM0 as u32, Register::YMM0 as u32] {
        if (base..base + 16).contains(&v) {
            return Some((v - base) as usize);
        }
    }
    None
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
enum Mem {
    Stack(i64),
    Global(u64),
    Param(u8, i32),
    /// Member `off` of an object reached through the parameters in the mask.
    Member(i32, u8),
    Unknown,
}

/// Stack slots by offset from the entry rsp, kept sorted; functions have few.
#[derive(Clone, PartialEq, Default)]
struct Slots(Vec<(i64, Val)>);

impl Slots {
    fn get(&self, k: &i64) -> Option<&Val> {
        self.0.binary_search_by_key(k, |e| e.0).ok().map(|i| &self.0[i].1)
    }
    fn insert(&mut self, k: i64, v: Val) {
        match self.0.binary_search_by_key(&k, |e| e.0) {
            Ok(i) => self.0[i].1 = v,
            Err(i) => self.0.insert(i, (k, v)),
        }
    }
    /// Keys in [lo, hi).
    fn keys_in(&self, lo: i64, hi: i64) -> Vec<i64> {
        let i = self.0.partition_point(|e| e.0 < lo);
        self.0[i..].iter().take_while(|e| e.0 < hi).map(|e| e.0).collect()
    }
    fn clear(&mut self) {
        self.0.clear();
    }
    /// Join `o` into self; a slot missing on one side is unknown there.
    fn join_from(&mut self, o: &Slots) -> bool {
        if self.0 == o.0 {
            return false;
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
#[derive(Clone, PartialEq, Default)]
struct Xmm(Vec<(u8, [Val; 2])>);

impl Xmm {
    fn get(&self, x: usize) -> [Val; 2] {
        self.0.iter().find(|e| e.0 as usize == x).map(|e| e.1).unwrap_or([Val::TOP; 2])
    }
    fn set(&mut self, x: usize, v: [Val; 2]) {
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
    fn join_from(&mut self, o: &Xmm) -> bool {
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

#[derive(Clone, PartialEq)]
struct State {
    regs: [Val; 16],
    /// The two 64-bit lanes of xmm0–15: gcc copies structs of function pointers
    /// through them (`movq %rax,%xmm0; punpcklqdq; movups %xmm0,slot`).
    xmm: Xmm,
    slots: Slots,
}

impl State {
    fn entry() -> State {
        let mut regs = [Val::TOP; 16];
        for (i, &r) in ARG_REGS.iter().enumerate() {
            regs[r] = Val::param(i as u8);
        }
        regs[RSP] = Val::stack(0);
        State { regs, xmm: Xmm::default(), slots: Slots::default() }
    }

    fn unknown() -> State {
        State { regs: [Val::TOP; 16], xmm: Xmm::default(), slots: Slots::default() }
    }

    /// Join `o` into self; true when self changed.
    fn join_from(&mut self, o: &State) -> bool {
        let mut changed = false;
        for (r, v) in self.regs.iter_mut().zip(o.regs.iter()) {
            if r != v {
                let j = r.join(v);
                changed |= j != *r;
                *r = j;
            }
        }
        changed |= self.xmm.join_from(&o.xmm);
        changed | self.slots.join_from(&o.slots)
    }
}

/// Callbacks the interpreter needs from the caller.
pub trait Env {
    /// True when a call to `t` never returns.
    fn noreturn(&self, t: &Target) -> bool;
}

struct Interp<'a, E: Env> {
    bin: &'a Binary,
    env: &'a E,
    start: u64,
    end: u64,
    insns: &'a [Instruction],
    /// Instruction index → call-site index.
    call_idx: BTreeMap<usize, usize>,
    sum: Summary,
    ret_at: BTreeMap<usize, Val>,
    info: InstructionInfoFactory,
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

    /// Block leaders: entry, in-function branch targets, and instructions after control transfers.
    fn leaders(&self) -> Vec<usize> {
        let mut lead = vec![false; self.insns.len()];
        if !lead.is_empty() {
            lead[0] = true;
        }
        for (i, ins) in self.insns.iter().enumerate() {
            match ins.flow_control() {
                FlowControl::ConditionalBranch | FlowControl::UnconditionalBranch => {
                    if let Some(t) = self.index_of(ins.near_branch_target()).filter(|_| !self.relocated(ins)) {
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
                let first = leaders[b];
                let last = leaders.get(b + 1).copied().unwrap_or(self.insns.len());
                let mut succs = Vec::new();
                for i in first..last {
                    if let Some(next) = self.step(i, &mut st) {
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
                    let changed = match &mut input[sb] {
                        Some(old) => old.join_from(&st),
                        slot @ None => {
                            *slot = Some(st.clone());
                            true
                        }
                    };
                    if changed && !queued[sb] {
                        queued[sb] = true;
                        work.push(sb);
                    }
                }
            }
            // Blocks reachable only through jump tables: analyze from an unknown state.
            match (0..nblocks).find(|&b| !reached[b] && input[b].is_none()) {
                Some(b) => {
                    self.sum.imprecise = true;
                    input[b] = Some(State::unknown());
                    queued[b] = true;
                    work.push(b);
                }
                None => break,
            }
        }
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
                return Some(if noret { vec![] } else { fallthrough() });
            }
            FlowControl::UnconditionalBranch => {
                let t = ins.near_branch_target();
                if self.inside(t) && !self.relocated(&ins) {
                    return Some(self.index_of(t).into_iter().collect());
                }
                let target = self.call_target(&ins, st);
                if !self.env.noreturn(&target) {
                    let c = self.record_call(i, &ins, st, target, true);
                    let e = self.ret_at.entry(i).or_insert(st.regs[0]);
                    *e = e.join(&Val::call(c));
                } else {
                    self.record_call(i, &ins, st, target, true);
                }
                return Some(vec![]);
            }
            FlowControl::ConditionalBranch => {
                let t = ins.near_branch_target();
                let mut s = fallthrough();
                if self.inside(t) && !self.relocated(&ins) {
                    s.extend(self.index_of(t));
                } else if matches!(ins.mnemonic(), Mnemonic::Jrcxz | Mnemonic::Jecxz | Mnemonic::Loop | Mnemonic::Loope | Mnemonic::Loopne) {
                } else {
                    // A conditional jump out of the function: a `.cold` part or a conditional tail call.
                    let target = self.call_target(&ins, st);
                    if !self.env.noreturn(&target) && !self.is_cold_part(t) {
                        let mut after = st.clone();
                        let c = self.record_call(i, &ins, &mut after, target, true);
                        let e = self.ret_at.entry(i).or_insert(after.regs[0]);
                        *e = e.join(&Val::call(c));
                    }
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
                    return Some(vec![]);
                }
                let c = self.record_call(i, &ins, st, t, true);
                let e = self.ret_at.entry(i).or_insert(Val::call(c));
                *e = e.join(&Val::call(c));
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

    fn is_cold_part(&self, t: u64) -> bool {
        self.bin
            .func_containing(t)
            .is_some_and(|f| self.bin.funcs[f].name.contains(".cold"))
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
        if c == self.sum.calls.len() {
            self.sum.calls.push(CallSite { addr: ins.ip(), ret_addr: ins.next_ip(), target, args, tail });
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
        for &r in CLOBBERED.iter() {
            st.regs[r] = Val::TOP;
        }
        st.regs[0] = Val::call(c);
        c
    }

    fn fn_addr(&self, v: &Val) -> Option<u64> {
        let a = v.as_global().or_else(|| v.as_const().map(|k| k as u64))?;
        self.bin.by_addr.contains_key(&a).then_some(a)
    }

    fn note_fn_escape(&mut self, v: &Val) {
        if let Some(f) = self.fn_addr(v) {
            let r = FnRef::Escaped { func: f };
            if !self.sum.fn_refs.contains(&r) {
                self.sum.fn_refs.push(r);
            }
        }
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
                Mem::Param(_, d) | Mem::Member(d, _) => Target::PtrMember(d),
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
                if let Some((_, off)) = v.as_load() {
                    return Target::PtrMember(off);
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

    fn mem(&self, ins: &Instruction, st: &State) -> Mem {
        self.mem_at(ins, st, 0)
    }

    /// The memory operand displaced by `extra` bytes (the second lane of a vector access).
    fn mem_at(&self, ins: &Instruction, st: &State, extra: i64) -> Mem {
        match self.mem_base(ins, st) {
            Mem::Stack(o) => Mem::Stack(o + extra),
            Mem::Global(g) => Mem::Global(g.wrapping_add(extra as u64)),
            Mem::Param(p, d) => Mem::Param(p, d + extra as i32),
            Mem::Member(d, via) => Mem::Member(d + extra as i32, via),
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
            // An array element: not a member whose offset identifies anything.
            return Mem::Unknown;
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
            Mem::Param(p, disp as i32)
        } else {
            Mem::Member(disp as i32, v.lparams | v.params)
        }
    }

    fn load(&self, ins: &Instruction, st: &State) -> Val {
        self.load_mem(self.mem(ins, st), st)
    }

    fn load_mem(&self, m: Mem, st: &State) -> Val {
        match m {
            Mem::Stack(o) => match st.slots.get(&o) {
                Some(v) => *v,
                None if o >= 8 && (o - 8) % 8 == 0 && (o - 8) / 8 < 2 => Val::param(6 + ((o - 8) / 8) as u8),
                None => Val::TOP,
            },
            Mem::Global(g) => Val::gload(g),
            Mem::Param(p, d) => Val::load(p, d),
            Mem::Member(d, via) => {
                let mut v = Val::load(OTHER_BASE, d);
                v.lparams = via;
                v
            }
            Mem::Unknown => Val::TOP,
        }
    }

    fn store(&mut self, ins: &Instruction, st: &mut State, v: Val, size: usize) {
        let m = self.mem(ins, st);
        self.store_mem(m, st, v, size);
    }

    fn store_mem(&mut self, m: Mem, st: &mut State, v: Val, size: usize) {
        match m {
            Mem::Stack(o) => {
                let size = size.max(1) as i64;
                let stale: Vec<i64> = st.slots.keys_in(o - 7, o + size).into_iter().filter(|&k| k != o).collect();
                for k in stale {
                    st.slots.insert(k, Val::TOP);
                }
                st.slots.insert(o, if size >= 4 { v } else { Val::TOP });
            }
            Mem::Param(p, d) => {
                if v.calls != 0 || v.outcalls != 0 || v.params != 0 || v.lparams != 0 {
                    self.sum.stores.push(ParamStore { param: p, off: d, val: v });
                }
                self.note_param_member(&v, d);
                if let Some(f) = self.fn_addr(&v) {
                    self.push_ref(FnRef::AtMember { off: d, func: f });
                }
            }
            Mem::Member(d, _) => {
                self.note_param_member(&v, d);
                if let Some(f) = self.fn_addr(&v) {
                    self.push_ref(FnRef::AtMember { off: d, func: f });
                }
            }
            Mem::Global(g) => {
                if let Some(k) = v.as_param() {
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
            Mem::Unknown => self.note_fn_escape(&v),
        }
    }

    fn note_param_member(&mut self, v: &Val, off: i32) {
        if let Some(k) = v.as_param() {
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

    fn read(&self, ins: &Instruction, op: u32, st: &State) -> Val {
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

    fn write(&mut self, ins: &Instruction, op: u32, st: &mut State, v: Val) {
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

    fn transfer(&mut self, ins: &Instruction, st: &mut State) {
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
                let v = self.read(ins, 0, st).arith(&b);
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
            M::Shr | M::Sar | M::Rol | M::Ror | M::Neg | M::Not | M::Inc | M::Dec | M::Bswap => {
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
                    let keys: Vec<i64> = st.slots.keys_in(o - 7, o + size as i64);
                    for k in keys {
                        st.slots.insert(k, Val::TOP);
                    }
                }
            } else if matches!(ins.mnemonic(), Mnemonic::Stosb | Mnemonic::Stosd | Mnemonic::Stosq | Mnemonic::Movsb | Mnemonic::Movsq) {
                // rep stos/movs into a local: forget the locals.
                st.slots.clear();
            }
        }
        let _ = TOP;
    }

    fn finish(mut self) -> Summary {
        self.sum.rets = self.ret_at.values().copied().collect();
        self.sum.noreturn = self.sum.rets.is_empty() && !self.sum.imprecise;
        let mut used = 0u8;
        let mut note = |v: &Val| {
            if v.params != 0 {
                used = used.max(8 - v.params.leading_zeros() as u8);
            }
        };
        for c in &self.sum.calls {
            c.args.iter().for_each(&mut note);
        }
        for s in &self.sum.stores {
            note(&s.val);
        }
        self.sum.rets.iter().for_each(&mut note);
        self.sum.params_used = used;
        self.sum
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
