//! Software breakpoints (int3) in an address space, shared by every process that maps
//! that memory (threads, vfork children), copied at fork.
//!
//! Stepping over a hit: `endbr64` and `push reg` — how nearly every function starts —
//! are emulated (no single-step); anything else is lifted for one single-step of the
//! thread that hit it and put back after. While lifted, another thread may run through
//! unseen: a lost observation, never a wrong execution. A SIGTRAP from an int3 that is
//! no longer there (removed while the trap was queued) is rewound and resumed.

use super::driver::resume;
use super::images::Mapped;
use super::learn::FnId;
use super::memory;
use super::sys::{self, Pid};
use super::Tracer;
use std::collections::{BTreeMap, HashMap};

const INT3: u8 = 0xcc;
const SI_KERNEL: i32 = 0x80;
const TRAP_TRACE: i32 = 2;

#[derive(Clone, Copy)]
enum Emul {
    Step,
    Skip(u8),
    Push(u8, u8),
    /// `mov src, dst` between registers: (length, 64-bit, dst, src).
    Mov(u8, bool, u8, u8),
    /// `test a, b` between registers: (length, 64-bit, a, b).
    Test(u8, bool, u8, u8),
}

#[derive(Clone)]
pub struct Bp {
    orig: u8,
    inserted: bool,
    emul: Emul,
    /// Entry of a C library allocator (index into `learn::ALLOCATORS`).
    pub alloc: Option<u8>,
    /// Entry of a watched function.
    pub func: Option<FnId>,
    /// The loader's r_debug breakpoint (`_dl_debug_state`).
    pub loader: bool,
    /// Watched calls that return here.
    pub rets: u32,
    /// A one-shot probe on an indirect call (see `probe.rs`).
    pub probe: bool,
}

impl Bp {
    /// The byte the int3 replaced.
    pub fn original(&self) -> u8 {
        self.orig
    }

    fn wanted(&self) -> bool {
        self.alloc.is_some() || self.func.is_some() || self.loader || self.rets > 0 || self.probe
    }
}

/// A heap block an allocator handed out while something was being learned.
#[derive(Clone)]
pub struct Block {
    pub size: u64,
    /// Watched or candidate functions on the stack when it was allocated.
    pub getters: Vec<FnId>,
}

#[derive(Clone, Default)]
pub struct Space {
    pub users: u32,
    pub bps: HashMap<u64, Bp>,
    pub maps: Vec<Mapped>,
    /// Mappings (by start address) whose breakpoints are placed.
    pub seen: Vec<u64>,
    pub blocks: BTreeMap<u64, Block>,
    /// Return addresses looked at for a tail caller, and call sites probed (once each).
    pub probed: std::collections::HashSet<u64>,
    /// The executable's image (its id), once its mappings were read: processes of one
    /// program share how long nothing was learned (`idle.rs`).
    pub exe: Option<usize>,
    /// Allocators and function entries unwatched after a long quiet spell.
    pub disarmed: bool,
    /// It maps an image that is not the system's (whose functions are learned): only
    /// then are its allocators watched. A process running only system code (a script's
    /// shell and utilities) has nothing an allocator hit could teach, and stops only at
    /// the loader's breakpoint, where a `dlopen` may bring in code that has.
    pub learns: bool,
}

impl Space {
    /// The block containing `p`, if one is remembered.
    pub fn block_of(&self, p: u64) -> Option<(u64, &Block)> {
        let (&lo, b) = self.blocks.range(..=p).next_back()?;
        (p < lo + b.size.max(1)).then_some((lo, b))
    }
}

fn emulation(pid: Pid, addr: u64) -> Emul {
    let mut b = [0u8; 4];
    if !sys::read(pid, addr, &mut b) {
        return Emul::Step;
    }
    // Register-to-register mov/test, with or without a REX prefix: the commonest
    // first instruction of a function body and after a call (`test %rax,%rax`).
    let (rex, op, modrm, len) = match b {
        [r @ 0x40..=0x4f, op, m, _] => (r, op, m, 3),
        [op, m, _, _] => (0, op, m, 2),
    };
    let regs_form = modrm >> 6 == 3;
    let reg = ((modrm >> 3) & 7) | if rex & 4 != 0 { 8 } else { 0 };
    let rm = (modrm & 7) | if rex & 1 != 0 { 8 } else { 0 };
    let w = rex & 8 != 0;
    match b {
        [0xf3, 0x0f, 0x1e, 0xfa] => Emul::Skip(4),
        [x @ 0x50..=0x57, ..] => Emul::Push(1, x - 0x50),
        [0x41, x @ 0x50..=0x57, ..] => Emul::Push(2, x - 0x50 + 8),
        _ if regs_form && op == 0x89 => Emul::Mov(len, w, rm, reg),
        _ if regs_form && op == 0x85 => Emul::Test(len, w, rm, reg),
        _ => Emul::Step,
    }
}

fn reg(r: &mut sys::Regs, n: u8) -> &mut u64 {
    match n {
        0 => &mut r.rax,
        1 => &mut r.rcx,
        2 => &mut r.rdx,
        3 => &mut r.rbx,
        4 => &mut r.rsp,
        5 => &mut r.rbp,
        6 => &mut r.rsi,
        7 => &mut r.rdi,
        8 => &mut r.r8,
        9 => &mut r.r9,
        10 => &mut r.r10,
        11 => &mut r.r11,
        12 => &mut r.r12,
        13 => &mut r.r13,
        14 => &mut r.r14,
        _ => &mut r.r15,
    }
}

impl Tracer {
    pub fn fork_space(&mut self, parent: super::state::SpaceId) -> super::state::SpaceId {
        let mut s = self.st.spaces.get(&parent).cloned().unwrap_or_default();
        s.users = 1;
        self.mem.charge(s.bps.len() as u64 * memory::BREAKPOINT + s.blocks.len() as u64 * memory::BLOCK);
        self.st.new_space(s)
    }

    /// Add a role to the breakpoint at `addr` in `tid`'s space, inserting it if new.
    pub fn bp_add(&mut self, tid: Pid, addr: u64, role: impl FnOnce(&mut Bp)) -> bool {
        let Some(sid) = self.st.space_of(tid) else { return false };
        let Some(space) = self.st.spaces.get_mut(&sid) else { return false };
        if let Some(bp) = space.bps.get_mut(&addr) {
            role(bp);
            return true;
        }
        if self.mem.over {
            return false;
        }
        // Only in the code of an image the process maps. A return address is read off
        // the stack, and a function entry may come from an unwind table: an int3 written
        // anywhere else lands in the program's data (a heap string's first byte, turned
        // into 0xcc and later "restored" to what it held before the program wrote it).
        if !space.maps.iter().any(|m| addr >= m.lo && addr < m.hi) {
            self.stats.refused_breakpoints += 1;
            return false;
        }
        let emul = emulation(tid, addr);
        let Ok(orig) = sys::poke_byte(tid, addr, INT3) else { return false };
        if super::debug() {
            eprintln!("trace: {tid}: add {addr:#x} in space {sid}");
        }
        let mut bp = Bp { orig, inserted: true, emul, alloc: None, func: None, loader: false, rets: 0, probe: false };
        role(&mut bp);
        space.bps.insert(addr, bp);
        self.mem.charge(memory::BREAKPOINT);
        true
    }

    /// Take a role away from the breakpoint at `addr`; the last one removes it.
    pub fn bp_drop(&mut self, tid: Pid, addr: u64, role: impl FnOnce(&mut Bp)) {
        let Some(sid) = self.st.space_of(tid) else { return };
        let Some(space) = self.st.spaces.get_mut(&sid) else { return };
        let Some(bp) = space.bps.get_mut(&addr) else { return };
        role(bp);
        if super::debug() && !bp.wanted() {
            eprintln!("trace: {tid}: drop {addr:#x} in space {sid}");
        }
        if !bp.wanted() {
            if bp.inserted {
                let _ = sys::poke_byte(tid, addr, bp.orig);
            }
            space.bps.remove(&addr);
            self.mem.release(memory::BREAKPOINT);
        }
    }

    /// Remove every breakpoint of `tid`'s space (detach, memory bound).
    pub fn bp_clear(&mut self, tid: Pid) {
        let Some(sid) = self.st.space_of(tid) else { return };
        let Some(space) = self.st.spaces.get_mut(&sid) else { return };
        for (&addr, bp) in space.bps.iter() {
            if bp.inserted {
                let _ = sys::poke_byte(tid, addr, bp.orig);
            }
        }
        self.mem.release(space.bps.len() as u64 * memory::BREAKPOINT);
        space.bps.clear();
    }

    /// A SIGTRAP stop of `tid`: true when it was ours (and `tid` is already resumed).
    pub fn on_trap(&mut self, tid: Pid) -> bool {
        let Ok(mut regs) = sys::regs(tid) else { return false };
        let sid = self.st.space_of(tid);
        // Standing just past one of our inserted int3s, not where it was last resumed
        // (a signal queued for the thread would stop it there before it ran anything),
        // and not single-stepping: the int3 trapped, without asking the kernel (one
        // PTRACE_GETSIGINFO fewer per stop).
        let thread = self.st.threads.get(&tid);
        let plain = thread.is_some_and(|t| t.step.is_none() && t.resumed_at != regs.rip)
            && sid.and_then(|s| self.st.spaces.get(&s)).and_then(|s| s.bps.get(&regs.rip.wrapping_sub(1))).is_some_and(|b| b.inserted);
        let code = if plain { SI_KERNEL } else { sys::si_code(tid).unwrap_or(0) };
        if let Some(addr) = self.st.threads.get_mut(&tid).and_then(|t| t.step.take()) {
            if let Some(bp) = sid.and_then(|s| self.st.spaces.get_mut(&s)).and_then(|s| s.bps.get_mut(&addr)) {
                if !bp.inserted && sys::poke_byte(tid, addr, INT3).is_ok() {
                    bp.inserted = true;
                }
            }
            if code == TRAP_TRACE {
                if self.st.threads.get_mut(&tid).is_some_and(|t| std::mem::take(&mut t.probing)) {
                    self.probe_landed(tid);
                }
                resume(tid, 0);
                return true;
            }
        }
        if code != SI_KERNEL {
            if super::debug() {
                eprintln!("trace: {tid}: SIGTRAP code {code} at {:#x}", regs.rip);
            }
            return false;
        }
        let addr = regs.rip.wrapping_sub(1);
        let known = sid.and_then(|s| self.st.spaces.get(&s)).is_some_and(|s| s.bps.contains_key(&addr));
        if !known {
            // An int3 we removed after it fired: the original byte is back.
            let mut b = [0u8];
            if sys::read(tid, addr, &mut b) && b[0] != INT3 {
                regs.rip = addr;
                let _ = sys::set_regs(tid, &regs);
                resume(tid, 0);
                return true;
            }
            if super::debug() {
                eprintln!("trace: {tid}: unknown int3 at {addr:#x}");
            }
            return false;
        }
        regs.rip = addr;
        self.hit(tid, addr, &regs);
        self.step_over(tid, addr, regs);
        true
    }

    fn step_over(&mut self, tid: Pid, addr: u64, mut regs: sys::Regs) {
        let bp = self.st.space_of(tid).and_then(|s| self.st.spaces.get_mut(&s)).and_then(|s| s.bps.get_mut(&addr));
        let probing = self.st.threads.get(&tid).is_some_and(|t| t.probing);
        let Some(bp) = bp else {
            let _ = sys::set_regs(tid, &regs);
            if probing {
                // The probe is gone and the call's own bytes are back: step into it.
                if let Some(t) = self.st.threads.get_mut(&tid) {
                    t.step = Some(addr);
                }
                self.stats.single_steps += 1;
                if sys::step(tid).is_ok() {
                    return;
                }
            }
            resume(tid, 0);
            return;
        };
        match bp.emul {
            Emul::Skip(4) => {
                // endbr64 (f3 0f 1e fa) under the int3: from the byte after it the CPU
                // reads `0f 1e fa`, a reserved-hint NOP of the same remaining length, so
                // the thread resumes where the trap left it — no PTRACE_SETREGS.
                if let Some(t) = self.st.threads.get_mut(&tid) {
                    t.resumed_at = addr + 1;
                }
                resume(tid, 0);
                return;
            }
            Emul::Skip(n) => {
                regs.rip += n as u64;
            }
            Emul::Push(n, r) => {
                let v = *reg(&mut regs, r);
                regs.rsp -= 8;
                // SAFETY: POKEDATA takes an address and a word.
                let ok = unsafe { libc::ptrace(libc::PTRACE_POKEDATA, tid, regs.rsp as *mut libc::c_void, v as *mut libc::c_void) } == 0;
                if ok {
                    regs.rip += n as u64;
                } else {
                    regs.rsp += 8;
                    bp.emul = Emul::Step;
                    return self.step_over(tid, addr, regs);
                }
            }
            Emul::Mov(n, w, dst, src) => {
                let v = *reg(&mut regs, src);
                *reg(&mut regs, dst) = if w { v } else { v & 0xffff_ffff };
                regs.rip += n as u64;
            }
            Emul::Test(n, w, a, b) => {
                let mut v = *reg(&mut regs, a) & *reg(&mut regs, b);
                if !w {
                    v &= 0xffff_ffff;
                }
                let sign = if w { v >> 63 } else { v >> 31 } & 1;
                // CF = OF = 0; AF undefined (cleared); PF = even parity of the low byte.
                let mut f = regs.eflags & !(1 | 1 << 2 | 1 << 4 | 1 << 6 | 1 << 7 | 1 << 11);
                if (v as u8).count_ones() % 2 == 0 {
                    f |= 1 << 2;
                }
                if v == 0 {
                    f |= 1 << 6;
                }
                if sign == 1 {
                    f |= 1 << 7;
                }
                regs.eflags = f;
                regs.rip += n as u64;
            }
            Emul::Step => {
                if bp.inserted && sys::poke_byte(tid, addr, bp.orig).is_ok() {
                    bp.inserted = false;
                }
                let _ = sys::set_regs(tid, &regs);
                if let Some(t) = self.st.threads.get_mut(&tid) {
                    t.step = Some(addr);
                }
                self.stats.single_steps += 1;
                if sys::step(tid).is_err() {
                    resume(tid, 0);
                }
                return;
            }
        }
        let _ = sys::set_regs(tid, &regs);
        if let Some(t) = self.st.threads.get_mut(&tid) {
            t.resumed_at = regs.rip;
        }
        resume(tid, 0);
    }
}
