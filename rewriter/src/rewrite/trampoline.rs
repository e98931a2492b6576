//! Trampoline code generation (balanced call-through, runtime/README.md):
//!
//! ```text
//! f.allocsite_entry:
//!     free kind: unless the masks ask for releases, straight to the pad (hook ABI v4)
//!     pass-through site (≤ 8 compared inline, with only rax saved): straight to the pad
//!     enter bookkeeping, inline (push one entry on the per-thread stack)
//!     sub rsp, F-8m ; push m stack argument words              ; F ≡ 8 (mod 16)
//!     call f.allocsite_pad                                      ; (call-site mode: call f)
//!     add rsp, F
//!     exit bookkeeping, inline (pop it) ; ret
//!     out of line: push r11 ; lea r11, [desc] ; call [__allocsite_hook_enter|exit] ; pop r11
//!     (the inline entry stores desc | its kind's tag, hook ABI v5; the hooks get desc)
//! f.allocsite_pad:
//!     displaced instructions, relocated ; jmp back into f (unless they end in ret/jmp)
//! ```
//! - The bookkeeping is inline because calls cost: a call/ret pair into the runtime
//!   costs as much as all of the bookkeeping. It works on the runtime's per-thread
//!   block (hook ABI v3: its thread-pointer offset comes from an `R_X86_64_TPOFF64`
//!   slot, its layout is fixed by the ABI) and saves the few registers it uses: callers
//!   compiled with -fipa-ra may keep values in registers they know the function leaves
//!   alone. Anything else goes to the runtime's hooks, which preserve every register
//!   but rflags: a kind the runtime's masks flag (tracing, results the runtime records,
//!   sub-frees), a recorded stack that is full, stale entries (left by longjmp or an
//!   exception) to drop, a site inside the new code to translate.
//! - The pad is entered with rsp ≡ entry rsp (mod 16), whatever that was: gcc omits the
//!   16-byte alignment before calls to local functions it knows do not need it.
//! - Stack arguments are copied with `push [rsp+F]` (the same displacement for every
//!   word), so no register is clobbered.
//! - CET: the launch pad `jmp`, the `call` into the pad and its `jmp` back are direct
//!   branches, so no `endbr64` is needed in new code; calls and returns stay paired, so
//!   shadow stacks are unaffected. The GNU property notes are left as they are (the
//!   hooks are reached by `call [slot]`; their entry points start with `endbr64`).
//! - The site is the caller's return address. It points into new code when the call
//!   was among the displaced instructions of another pad, or when another hooked
//!   function's pad/body tail-called this one (the return address is then that
//!   trampoline's); the descriptor names the new code's range and the shared
//!   `allocsite.site_map` routine, which maps the former to the original return
//!   address and follows the latter to that trampoline's own caller.

use super::cfi::{NewFde, Row};
use super::pad;
use super::plan::Hook;
use iced_x86::{BlockEncoder, BlockEncoderOptions, Code, IcedError, Instruction, InstructionBlock, MemoryOperand, Register};

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

/// Instructions plus the unwind row at each one (in effect when it starts).
struct Asm {
    ins: Vec<Instruction>,
    row: Row,
    at: Vec<Row>,
}

impl Asm {
    fn new() -> Self {
        Asm { ins: Vec::new(), row: Row::entry(), at: Vec::new() }
    }
    /// Instructions get small unique IPs (index + 1) so branches can name them as labels;
    /// no real target is that small.
    fn emit(&mut self, i: Result<Instruction, IcedError>) -> Result<(), String> {
        let mut i = i.map_err(|e| format!("internal encoding error: {e}"))?;
        i.set_ip(self.ins.len() as u64 + 1);
        self.ins.push(i);
        self.at.push(self.row.clone());
        Ok(())
    }
    /// An instruction that moves rsp by `delta` bytes down (negative: up).
    fn op(&mut self, i: Result<Instruction, IcedError>, delta: i64) -> Result<(), String> {
        self.emit(i)?;
        if self.row.cfa_reg == RSP {
            self.row.cfa_off += delta;
        }
        Ok(())
    }
    fn push(&mut self, r: Register) -> Result<(), String> {
        self.op(Instruction::with1(Code::Push_r64, r), 8)
    }
    fn pop(&mut self, r: Register) -> Result<(), String> {
        self.op(Instruction::with1(Code::Pop_r64, r), -8)
    }
    /// `push r11 ; lea r11, [desc] ; call [slot] ; pop r11`: the hooks' register ABI.
    fn hook(&mut self, desc: u64, slot: u64) -> Result<(), String> {
        self.push(Register::R11)?;
        self.rip(Code::Lea_r64_m, Register::R11, desc)?;
        self.emit(Instruction::with1(Code::Call_rm64, MemoryOperand::with_base_displ(Register::RIP, slot as i64)))?;
        self.pop(Register::R11)
    }
    fn rip(&mut self, code: Code, reg: Register, target: u64) -> Result<(), String> {
        let m = MemoryOperand::with_base_displ(Register::RIP, target as i64);
        self.emit(Instruction::with2(code, reg, m))
    }
}

/// Where the trampoline finds its data.
pub struct Refs {
    pub descriptor: u64,
    pub enter_slot: u64,
    pub exit_slot: u64,
    /// Slot holding the address of the runtime's `__allocsite_slow_v5` masks.
    pub masks_slot: u64,
    /// Slot holding the thread-pointer offset of the runtime's per-thread block.
    pub tpoff_slot: u64,
    /// `[lo, hi)`: the new code; a site there goes to the runtime for translation.
    pub new_code: (u64, u64),
    /// `(address of a displaced call/jmp, new target)`: the per-site decisions for the
    /// calls that move with this function's pad (`callsites`).
    pub redirect: Vec<(u64, u64)>,
    /// Sorted return addresses of the pass-through calls that reach this trampoline
    /// (indirect ones, direct ones that could not be retargeted to the pad): such a call
    /// skips all bookkeeping and goes straight to the pad.
    pub pass_through: Vec<u64>,
    /// A site may lie in the new code (a launch pad: anything may call the function,
    /// also another hooked function's tail call; a call-site trampoline reached by a
    /// retargeted `jmp` or a call among relocated instructions): the trampoline looks
    /// for the real site first. Without, the caller's return address is the site.
    pub walk: bool,
    /// Every caller must assume the function clobbers all caller-saved registers
    /// (`clobber.rs`): the trampoline uses r11 before the call and rcx/r11 after it
    /// without saving them.
    pub clobbers_all: bool,
}

/// The label IP the next emitted instruction will get.
fn next_ip(a: &Asm) -> u64 {
    a.ins.len() as u64 + 1
}

// The runtime's per-thread block (hook ABI v3, runtime/README.md; asserted in
// runtime/src/hooks.rs): `outermost` at 0, `depth` (u32) at 8, `entries` at 64, each
// entry 32 bytes {fn, site, sp, size}; `DEPTH` entries are recorded. Since v5 `fn` is
// the descriptor's address with `entry_tag` in bits 1–2.
const HOT_DEPTH: i64 = 8;
const HOT_ENTRIES: i64 = 64;
const ENTRY_SHIFT: u32 = 5;
const ENTRY_SIZE: i64 = 1 << ENTRY_SHIFT;
const E_FN: i64 = 0;
const E_SITE: i64 = 8;
const E_SP: i64 = 16;
const DEPTH: u32 = 10;
/// `mark` (u8) in the per-thread block: set by a mark stub right before an interposed
/// allocator runs, read and cleared by it (hook ABI v3).
pub const HOT_MARK: i64 = 50;
/// Mask byte 0, bit 7 (hook ABI v4): the runtime records calls of free-kind functions
/// (heap checks' free sites); with it and the free kind's own bit clear, their
/// trampolines go straight to the unhooked body.
const RELEASE_BOOKKEEPING: u32 = 0x80;
/// Up to this many pass-through return addresses are compared inline (unrolled); more
/// are looked up in the descriptor's table (binary search).
const PT_UNROLL: usize = 8;
/// `cs add rsp, imm32` (2E 48 81 C4) as a little-endian dword: the instruction after a
/// trampoline's call into its pad. Compilers do not emit the redundant prefix there,
/// so it identifies a trampoline's return address among addresses in the new code.
const RETURN_MARK: u32 = u32::from_le_bytes([0x2e, 0x48, 0x81, 0xc4]);

fn mem(base: Register, index: Register, displ: i64) -> MemoryOperand {
    MemoryOperand::new(base, index, 1, displ, if displ == 0 { 0 } else { 1 }, false, Register::None)
}

/// An operand in the per-thread block: `base` holds the block's thread-pointer offset,
/// so the access is fs-relative (no load of the thread pointer itself).
fn hot_mem(base: Register, index: Register, displ: i64) -> MemoryOperand {
    MemoryOperand::new(base, index, 1, displ, if displ == 0 { 0 } else { 1 }, false, Register::FS)
}

/// The tag an entry's function word carries (hook ABI v5, runtime `abi::entry_word`):
/// the descriptor's address | 2 for a free-kind function, | 4 for a constructor, so
/// that the runtime's attribution tells a call that is a site of its own without
/// loading the descriptor.
fn entry_tag(h: &Hook) -> u64 {
    use allocsite_analysis::Kind;
    match h.f.kind {
        Kind::Free => 2,
        Kind::Ctor => 4,
        _ => 0,
    }
}

fn kind_bit(h: &Hook) -> u32 {
    use allocsite_analysis::Kind;
    1 << match h.f.kind {
        Kind::Alloc => 0,
        Kind::Realloc => 1,
        Kind::Free => 2,
        Kind::Suballoc => 3,
        Kind::Ctor => 4,
    }
}

impl Asm {
    /// A branch to a label bound later; returns its index for `bind`.
    fn jump(&mut self, code: Code) -> Result<usize, String> {
        self.emit(Instruction::with_branch(code, 0))?;
        Ok(self.ins.len() - 1)
    }
    fn bind(&mut self, branches: &[usize]) {
        let here = next_ip(self);
        for &j in branches {
            self.ins[j].set_near_branch64(here);
        }
    }
    /// `reg` = the thread-pointer offset of this thread's block (use with `hot_mem`).
    fn hot(&mut self, reg: Register, tpoff_slot: u64) -> Result<(), String> {
        self.rip(Code::Mov_r64_rm64, reg, tpoff_slot)
    }
}

/// The trampoline's code; also the index of its call of the function (`pad_addr`, or
/// `[rip+got]` for an import reached through its GOT slot).
///
/// Per call, the common path (no mask bit, depth < 10, no stale entry):
/// - enter: save rax (and r11 unless the function clobbers it anyway, rdx when the
///   site may lie in the new code, rcx for a table search); push the entry `{desc,
///   site, entry_sp}` (depth 0 inline: also outermost = site); depth+1, also written
///   into the trampoline's frame (`DEPTH_SLOT`);
/// - exit: the depth is still the one the frame holds (so the top entry is this
///   call's: nothing else can have replaced it) → depth−1, outermost = 0 at depth 0.
///   Any other value (−1: the entry went to the runtime and the exit must too; a
///   deeper value: stale entries left by longjmp) → the runtime's exit hook.
fn entry_code(h: &Hook, refs: &Refs, pad_addr: u64) -> Result<(Asm, usize), String> {
    use Register::*;
    let mut a = Asm::new();
    let bit = kind_bit(h);
    let entry_row = a.row.clone();
    // r11 (never an argument) may be clobbered before the call, rcx and r11 after it
    let free = refs.clobbers_all;
    let direct = !h.patches_entry();
    let unrolled = !refs.pass_through.is_empty() && refs.pass_through.len() <= PT_UNROLL;
    let search = refs.pass_through.len() > PT_UNROLL;

    // ---- calls that need no bookkeeping, before anything else: a free-kind call while
    // the runtime records no releases (hook ABI v4), a pass-through call (its site is
    // one of the descriptor's pass-through return addresses; Lua's l_alloc is called
    // this way for every allocation). Sites in the new code go to the runtime, which
    // repeats the check after mapping.
    let mut straight = Vec::new();
    let early = bit == 1 << 2 || unrolled;
    let scratch = if free { R11 } else { RAX };
    let site_at = if free { 0 } else { 8 };
    if early && !free {
        a.push(RAX)?;
    }
    let saved1 = a.row.clone();
    // with nothing saved, a branch straight to the function (or the pad after this code)
    let skip = |a: &mut Asm, straight: &mut Vec<usize>| -> Result<(), String> {
        if free {
            a.emit(Instruction::with_branch(Code::Je_rel32_64, pad_addr))
        } else {
            straight.push(a.jump(Code::Je_rel32_64)?);
            Ok(())
        }
    };
    if bit == 1 << 2 {
        a.rip(Code::Mov_r64_rm64, scratch, refs.masks_slot)?;
        a.emit(Instruction::with2(Code::Test_rm8_imm8, mem(scratch, Register::None, 0), bit | RELEASE_BOOKKEEPING))?;
        skip(&mut a, &mut straight)?;
    }
    if unrolled {
        for &r in &refs.pass_through {
            a.rip(Code::Lea_r64_m, scratch, r)?;
            a.emit(Instruction::with2(Code::Cmp_rm64_r64, mem(RSP, Register::None, site_at), scratch))?;
            skip(&mut a, &mut straight)?;
        }
    }
    if !(early && !free) {
        a.push(RAX)?;
    }
    // rdx holds the site when it may have to be looked for (or looked up); rcx only the
    // table search needs
    let with_site = refs.walk || search;
    let mut saved = vec![RAX];
    for (r, yes) in [(RCX, search), (R11, !free), (RDX, with_site)] {
        if yes {
            a.push(r)?;
            saved.push(r);
        }
    }
    let saved_all = a.row.clone();
    let sp_at = 8 * saved.len() as i64; // entry_sp = rsp + sp_at
    let slot = sp_at + DEPTH_SLOT; // the frame's depth slot, from rsp (below it)
    let mut slow = Vec::new();
    let mut bypass = Vec::new();
    if search {
        a.emit(Instruction::with2(Code::Mov_r64_rm64, RDX, mem(RSP, Register::None, sp_at)))?;
        // Binary search of the descriptor's sorted table of (return address - &desc)
        // for site - &desc: rax = first candidate, ecx = candidates, r11d = half.
        a.rip(Code::Lea_r64_m, R11, refs.descriptor)?;
        a.emit(Instruction::with2(Code::Mov_r32_rm32, ECX, mem(R11, Register::None, super::DESC_PT_COUNT)))?;
        a.emit(Instruction::with2(Code::Mov_r64_rm64, RAX, mem(R11, Register::None, super::DESC_PT_REL)))?;
        a.emit(Instruction::with2(Code::Add_r64_rm64, RAX, R11))?;
        a.emit(Instruction::with2(Code::Sub_r64_rm64, RDX, R11))?;
        let top = next_ip(&a);
        a.emit(Instruction::with2(Code::Test_rm32_r32, ECX, ECX))?;
        let done = a.jump(Code::Je_rel32_64)?;
        a.emit(Instruction::with2(Code::Mov_r32_rm32, R11D, ECX))?;
        a.emit(Instruction::with2(Code::Shr_rm32_imm8, R11D, 1u32))?;
        a.emit(Instruction::with2(Code::Cmp_rm64_r64, MemoryOperand::new(RAX, R11, 8, 0, 0, false, Register::None), RDX))?;
        bypass.push(a.jump(Code::Je_rel32_64)?);
        let right = a.jump(Code::Jl_rel32_64)?;
        a.emit(Instruction::with2(Code::Mov_r32_rm32, ECX, R11D))?;
        a.emit(Instruction::with_branch(Code::Jmp_rel32_64, top))?;
        a.bind(&[right]);
        a.emit(Instruction::with2(Code::Lea_r64_m, RAX, MemoryOperand::new(RAX, R11, 8, 8, 1, false, Register::None)))?;
        a.emit(Instruction::with2(Code::Sub_r32_rm32, ECX, R11D))?;
        a.emit(Instruction::with2(Code::Sub_rm32_imm8, ECX, 1i32))?;
        a.emit(Instruction::with_branch(Code::Jmp_rel32_64, top))?;
        a.bind(&[done]);
    }
    a.rip(Code::Mov_r64_rm64, RAX, refs.masks_slot)?;
    a.emit(Instruction::with2(Code::Test_rm8_imm8, mem(RAX, Register::None, 0), bit))?;
    slow.push(a.jump(Code::Jne_rel32_64)?);
    if with_site {
        a.emit(Instruction::with2(Code::Lea_r64_m, R11, mem(RSP, Register::None, sp_at)))?;
        let again = next_ip(&a);
        a.emit(Instruction::with2(Code::Mov_r64_rm64, RDX, mem(R11, Register::None, 0)))?;
        if refs.walk {
            // The site: the caller's return address, unless that lies in the new code.
            // A hooked function whose body tail-called this one returns through its
            // trampoline: the site is then that trampoline's own return address, F+8
            // bytes further up (repeated along chains of such tail calls). Other sites
            // in the new code (calls among relocated instructions) go to the runtime,
            // which translates them. Not needed when every way in is a `call` from the
            // original code (`Refs::walk`).
            a.rip(Code::Lea_r64_m, RAX, refs.new_code.0)?;
            a.emit(Instruction::with2(Code::Cmp_r64_rm64, RDX, RAX))?;
            let below = a.jump(Code::Jb_rel32_64)?;
            a.rip(Code::Lea_r64_m, RAX, refs.new_code.1)?;
            a.emit(Instruction::with2(Code::Cmp_r64_rm64, RDX, RAX))?;
            let above = a.jump(Code::Jae_rel32_64)?;
            a.emit(Instruction::with2(Code::Cmp_rm32_imm32, mem(RDX, Register::None, 0), RETURN_MARK))?;
            slow.push(a.jump(Code::Jne_rel32_64)?);
            a.emit(Instruction::with2(Code::Mov_r32_rm32, EAX, mem(RDX, Register::None, 4)))?;
            a.emit(Instruction::with2(Code::Lea_r64_m, R11, mem(R11, RAX, 8)))?;
            let j = a.jump(Code::Jmp_rel32_64)?;
            a.ins[j].set_near_branch64(again);
            a.bind(&[below, above]);
        }
    }
    a.hot(RAX, refs.tpoff_slot)?;
    a.emit(Instruction::with2(Code::Cmp_rm32_imm8, hot_mem(RAX, Register::None, HOT_DEPTH), 0u32))?;
    let deeper = a.jump(Code::Jne_rel32_64)?;
    // depth 0, the common case (allocation functions are seldom nested), inline:
    // entries[0] = {desc, site, entry_sp}, outermost = site, depth = 1
    let push_entry = |a: &mut Asm| -> Result<(), String> {
        a.emit(Instruction::with2(Code::Mov_rm64_r64, hot_mem(RAX, Register::None, HOT_ENTRIES + E_SP), R11))?;
        let site = if with_site {
            RDX
        } else {
            a.emit(Instruction::with2(Code::Mov_r64_rm64, R11, mem(R11, Register::None, 0)))?;
            R11
        };
        a.emit(Instruction::with2(Code::Mov_rm64_r64, hot_mem(RAX, Register::None, HOT_ENTRIES + E_SITE), site))?;
        Ok(())
    };
    a.emit(Instruction::with2(Code::Lea_r64_m, R11, mem(RSP, Register::None, sp_at)))?;
    push_entry(&mut a)?;
    a.emit(Instruction::with2(Code::Mov_rm64_r64, hot_mem(RAX, Register::None, 0), if with_site { RDX } else { R11 }))?;
    a.rip(Code::Lea_r64_m, R11, refs.descriptor + entry_tag(h))?;
    a.emit(Instruction::with2(Code::Mov_rm64_r64, hot_mem(RAX, Register::None, HOT_ENTRIES + E_FN), R11))?;
    a.emit(Instruction::with2(Code::Mov_rm32_imm32, hot_mem(RAX, Register::None, HOT_DEPTH), 1u32))?;
    a.emit(Instruction::with2(Code::Mov_rm64_imm32, mem(RSP, Register::None, slot), 1i32))?;
    let restore = next_ip(&a);
    for &r in saved.iter().rev() {
        a.pop(r)?;
    }
    let after_enter = next_ip(&a);

    // ---- the call
    // The pad is entered with rsp ≡ entry rsp (mod 16) and finds stack argument word j
    // at [rsp+8+8j]: F ≡ 8 (mod 16). Word j sits at entry rsp + 8 + 8j; pushing from the
    // last to the first, each is at [rsp + F] when pushed.
    let m = h.stack_words as i64;
    let f = stack_frame(h);
    let gap = f - 8 * m;
    a.op(Instruction::with2(Code::Sub_rm64_imm32, RSP, gap as i32), gap)?;
    for _ in 0..m {
        a.op(Instruction::with1(Code::Push_rm64, MemoryOperand::with_base_displ(RSP, f)), 8)?;
    }
    let call_k = a.ins.len();
    match h.got {
        Some(slot) => a.emit(Instruction::with1(Code::Call_rm64, MemoryOperand::with_base_displ(RIP, slot as i64)))?,
        _ => a.emit(Instruction::with_branch(Code::Call_rel32_64, pad_addr))?,
    };
    // `cs add rsp, F`: the redundant prefix marks this return address as a trampoline's
    // (see RETURN_MARK), and F says where the trampoline's own return address is.
    let mut add = RETURN_MARK.to_le_bytes().to_vec();
    add.extend_from_slice(&(f as u32).to_le_bytes());
    a.op(Instruction::with_declare_byte(&add), -f)?;

    // ---- exit: pop this call's entry, which is the top one if the depth is still the
    // one the frame holds; outermost = 0 at depth 0
    let xsaved: &[Register] = if free { &[] } else { &[RCX, R11] };
    for &r in xsaved {
        a.push(r)?;
    }
    let saved3 = a.row.clone();
    let mut xslow = Vec::new();
    let slot_at = DEPTH_SLOT + 8 * xsaved.len() as i64;
    a.hot(RCX, refs.tpoff_slot)?;
    a.emit(Instruction::with2(Code::Mov_r32_rm32, R11D, mem(RSP, Register::None, slot_at)))?;
    a.emit(Instruction::with2(Code::Cmp_rm32_r32, hot_mem(RCX, Register::None, HOT_DEPTH), R11D))?;
    xslow.push(a.jump(Code::Jne_rel32_64)?);
    a.emit(Instruction::with2(Code::Sub_rm32_imm8, R11D, 1u32))?;
    a.emit(Instruction::with2(Code::Mov_rm32_r32, hot_mem(RCX, Register::None, HOT_DEPTH), R11D))?;
    let nested = a.jump(Code::Jne_rel32_64)?;
    a.emit(Instruction::with2(Code::Mov_rm64_imm32, hot_mem(RCX, Register::None, 0), 0i32))?;
    a.bind(&[nested]);
    for &r in xsaved.iter().rev() {
        a.pop(r)?;
    }
    a.op(Ok(Instruction::with(Code::Retnq)), -8)?;

    // ---- out of line
    // nested: entries[depth] = {desc, site, entry_sp}, unless the stack is full or the
    // entry below is at or under this frame (left by longjmp/an exception); rax = the
    // block's offset + 32·depth while the entry is written
    a.row = saved_all.clone();
    a.bind(&[deeper]);
    a.emit(Instruction::with2(Code::Mov_r32_rm32, R11D, hot_mem(RAX, Register::None, HOT_DEPTH)))?;
    a.emit(Instruction::with2(Code::Cmp_rm32_imm32, R11D, DEPTH))?;
    slow.push(a.jump(Code::Jae_rel32_64)?);
    a.emit(Instruction::with2(Code::Shl_rm32_imm8, R11D, ENTRY_SHIFT))?;
    a.emit(Instruction::with2(Code::Add_r64_rm64, RAX, R11))?;
    a.emit(Instruction::with2(Code::Lea_r64_m, R11, mem(RSP, Register::None, sp_at)))?;
    a.emit(Instruction::with2(Code::Cmp_rm64_r64, hot_mem(RAX, Register::None, HOT_ENTRIES - ENTRY_SIZE + E_SP), R11))?;
    slow.push(a.jump(Code::Jbe_rel32_64)?);
    push_entry(&mut a)?;
    a.rip(Code::Lea_r64_m, R11, refs.descriptor + entry_tag(h))?;
    a.emit(Instruction::with2(Code::Mov_rm64_r64, hot_mem(RAX, Register::None, HOT_ENTRIES + E_FN), R11))?;
    a.hot(RAX, refs.tpoff_slot)?;
    a.emit(Instruction::with2(Code::Mov_r32_rm32, R11D, hot_mem(RAX, Register::None, HOT_DEPTH)))?;
    a.emit(Instruction::with2(Code::Add_rm32_imm8, R11D, 1u32))?;
    a.emit(Instruction::with2(Code::Mov_rm32_r32, hot_mem(RAX, Register::None, HOT_DEPTH), R11D))?;
    a.emit(Instruction::with2(Code::Mov_rm64_r64, mem(RSP, Register::None, slot), R11))?;
    let j = a.jump(Code::Jmp_rel32_64)?;
    a.ins[j].set_near_branch64(restore);
    // the runtime's entry hook; then the frame's depth: the runtime's (this call's entry
    // is the top one when recorded), or −1 when the exit must go to the runtime as well
    // (mask byte 1: byte 1 ⊆ byte 0, so such an entry always came here; or not recorded)
    a.row = saved_all.clone();
    a.bind(&slow);
    for &r in saved.iter().rev() {
        a.pop(r)?;
    }
    a.hook(refs.descriptor, refs.enter_slot)?;
    a.push(RAX)?;
    a.push(RCX)?;
    a.rip(Code::Mov_r64_rm64, RAX, refs.masks_slot)?;
    a.emit(Instruction::with2(Code::Test_rm8_imm8, mem(RAX, Register::None, 1), bit))?;
    let unrecorded = a.jump(Code::Jne_rel32_64)?;
    a.hot(RAX, refs.tpoff_slot)?;
    a.emit(Instruction::with2(Code::Mov_r32_rm32, ECX, hot_mem(RAX, Register::None, HOT_DEPTH)))?;
    a.emit(Instruction::with2(Code::Cmp_rm32_imm32, ECX, DEPTH))?;
    let recorded = a.jump(Code::Jbe_rel32_64)?;
    a.bind(&[unrecorded]);
    a.emit(Instruction::with2(Code::Mov_r32_imm32, ECX, u32::MAX))?;
    a.bind(&[recorded]);
    a.emit(Instruction::with2(Code::Mov_rm64_r64, mem(RSP, Register::None, 16 + DEPTH_SLOT), RCX))?;
    a.pop(RCX)?;
    a.pop(RAX)?;
    let j = a.jump(Code::Jmp_rel32_64)?;
    a.ins[j].set_near_branch64(after_enter);
    // the runtime's exit hook
    a.row = saved3;
    a.bind(&xslow);
    for &r in xsaved.iter().rev() {
        a.pop(r)?;
    }
    a.hook(refs.descriptor, refs.exit_slot)?;
    a.op(Ok(Instruction::with(Code::Retnq)), -8)?;
    debug_assert_eq!(a.row.cfa_off, entry_row.cfa_off - 8);
    // a pass-through call (or a free-kind call nobody records): the registers back, then
    // on into the pad as if never hooked. The relocated pad follows the trampoline, so
    // this, its last part, falls through into it (`build` settles the length of the
    // branches to it); call-site mode jumps to the original, far away in the input's code.
    if !bypass.is_empty() {
        a.row = saved_all;
        a.bind(&bypass);
        // (rax pushed before the early checks: the straight path below pops it)
        let keep_rax = early && !free;
        for &r in saved.iter().rev() {
            if !(keep_rax && r == RAX) {
                a.pop(r)?;
            }
        }
        if keep_rax {
            straight.push(a.jump(Code::Jmp_rel32_64)?);
        } else {
            a.emit(Instruction::with_branch(Code::Jmp_rel32_64, pad_addr))?;
        }
    }
    if !straight.is_empty() {
        a.row = saved1;
        a.bind(&straight);
        a.pop(RAX)?;
        if direct {
            a.emit(Instruction::with_branch(Code::Jmp_rel32_64, pad_addr))?;
        }
    }
    Ok((a, call_k))
}

/// Where the frame keeps the depth its entry made (or −1), relative to the entry sp:
/// below the registers the trampoline saves (≤ 4), inside the gap above the copied
/// stack arguments (`stack_frame`), so the function never writes it. It is written
/// before rsp covers it and read after `add rsp, F`, from the red zone (signal frames
/// go below it).
const DEPTH_SLOT: i64 = -40;

/// Bytes between the trampoline's entry sp and the pad's return address slot: F ≡ 8
/// (mod 16), with at least 40 bytes above the copied stack arguments (the depth slot).
fn stack_frame(h: &Hook) -> i64 {
    let m = h.stack_words as i64;
    if m % 2 == 1 {
        8 * m + 48
    } else {
        8 * m + 40
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
    // The relocated pad follows the trampoline, whose branches to it may take a
    // shorter form once its address is known: encode until the length settles.
    let mut len = encode(&entry_code(h, refs, if direct { h.pad.entry } else { at })?.0, at)?.0.len() as u64;
    let mut pass = 0;
    let (a, call_k, mut code, offs) = loop {
        let target = if direct { h.pad.entry } else { at + len };
        let (a, call_k) = entry_code(h, refs, target)?;
        let (code, offs) = encode(&a, at)?;
        if code.len() as u64 == len {
            break (a, call_k, code, offs);
        }
        pass += 1;
        if pass == 4 {
            return Err("internal error: trampoline length does not settle".into());
        }
        len = code.len() as u64;
    };
    let pad_addr = at + len;
    let mut entry_rows = Vec::new();
    for (k, row) in a.at.iter().enumerate().skip(1) {
        let off = offs.get(k).copied().unwrap_or(u32::MAX);
        if off != u32::MAX {
            entry_rows.push((off, row.clone()));
        }
    }
    let entry_len = code.len() as u32;
    let ret_off = offs.get(call_k + 1).copied().filter(|&o| o != u32::MAX).ok_or("internal error: no pad call")?;
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

/// How a mark stub or an import trampoline reaches an imported function.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Callee {
    /// Its PLT stub (`.plt`/`.plt.sec`).
    Plt(u64),
    /// Its GOT slot (`-fno-plt`: `call [rip+slot]`).
    Got(u64),
}

/// A mark stub for a classified call of an allocator the runtime interposes (hook ABI
/// v3): `mov r11,[rip+tpoff]; mov byte fs:[r11+50],1; jmp F@plt | jmp [rip+GOT]`.
/// The allocator sees its own return address, the classified site, and the mark that
/// says so. r11 is neither an argument nor preserved across calls (PLT stubs and the
/// lazy binder clobber it too); no stack change, so the entry row holds throughout and
/// unwinders see the site's frame directly.
pub fn mark_stub(at: u64, tpoff_slot: u64, callee: Callee) -> Result<(Vec<u8>, NewFde), String> {
    let mut a = Asm::new();
    a.hot(Register::R11, tpoff_slot)?;
    a.emit(Instruction::with2(Code::Mov_rm8_imm8, hot_mem(Register::R11, Register::None, HOT_MARK), 1u32))?;
    match callee {
        Callee::Plt(plt) => a.emit(Instruction::with_branch(Code::Jmp_rel32_64, plt))?,
        Callee::Got(slot) => a.emit(Instruction::with1(Code::Jmp_rm64, MemoryOperand::with_base_displ(Register::RIP, slot as i64)))?,
    }
    let (code, _) = encode(&a, at)?;
    let len = code.len() as u32;
    Ok((code, NewFde { start: at, len, rows: Vec::new() }))
}
