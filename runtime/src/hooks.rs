//! The hook ABI (runtime/README.md, version 5).
//!
//! The trampolines do the per-thread stack bookkeeping themselves, inline, on the hot
//! block's documented layout (below). They call into the runtime only when the
//! `__allocsite_slow_v5` masks say a kind needs more (tracing, recording the result,
//! sub-frees), or on anything unusual: nesting deeper than recorded, stale entries to
//! drop, a site inside the new code. Those calls go to the register-preserving
//! `__allocsite_hook_enter` / `__allocsite_hook_exit`, which save every caller-saved
//! register (xmm0–15 included: callers compiled with -fipa-ra may keep values there)
//! and call the C-ABI functions `__allocsite_enter` / `__allocsite_exit` (also usable
//! by hand-written trampolines).
use crate::tls::{drop_stale, hot, Hot, DEPTH};
use crate::abi::{entry_desc, entry_word, FnDesc, KIND_ALLOC, KIND_CTOR, KIND_FREE, KIND_REALLOC, KIND_SUBALLOC};
use crate::trace;
use core::mem::offset_of;
use core::sync::atomic::{AtomicU8, Ordering};

// `__allocsite_slow_v5`: two bytes the trampolines read through a GLOB_DAT slot — byte
// 0: bit k set = entries of functions of kind k go to the runtime; bit 7
// (`RELEASE_BOOKKEEPING`) set = calls of free-kind functions are recorded on the
// per-thread stack (with bit 2 clear and bit 7 clear, a free-kind trampoline jumps
// straight to the unhooked body); byte 1: bit k = exits of kind k go to the runtime.
// Defined here (exported by exports.map) so the name carries the ABI version: a
// program rewritten for another layout fails to load instead of corrupting state.
core::arch::global_asm!(
    ".pushsection .data.allocsite_slow,\"aw\",@progbits",
    ".globl __allocsite_slow_v5",
    ".type __allocsite_slow_v5,@object",
    ".size __allocsite_slow_v5,2",
    ".globl allocsite_slow_masks",
    ".hidden allocsite_slow_masks",
    "__allocsite_slow_v5:",
    "allocsite_slow_masks:",
    ".byte 0, 0",
    ".popsection",
);

extern "C" {
    static allocsite_slow_masks: [AtomicU8; 2];
}

/// Recompute the slow-path masks from the runtime's state (after any change to
/// tracing, `RECORD_KINDS` or `SUB_USED`).
pub fn update_masks() {
    let all = if trace::on() { (1 << (KIND_CTOR + 1)) - 1 } else { 0 };
    let record = RECORD_KINDS.load(Ordering::Relaxed);
    // kinds whose results the exit records also need the size argument at entry
    let sub = if crate::index::SUB_USED.load(Ordering::Relaxed) { (1 << KIND_FREE) | (1 << KIND_REALLOC) } else { 0 };
    // A free-kind call is passed over by the allocation attribution (attribution.rs);
    // its entry matters only as a free site (heap checks), for sub-frees and the trace
    // (both above send it to the runtime anyway). Without these the trampolines of
    // free-kind functions skip all bookkeeping.
    let releases = if crate::check::on() { RELEASE_BOOKKEEPING } else { 0 };
    // Byte 1 must stay a subset of byte 0, set before the first hooked call (tracing
    // and RECORD_KINDS are decided at load time; SUB_USED only adds entry bits): the
    // trampolines' exits test no mask — a kind whose exits go to the runtime took the
    // slow entry, which marks the call's frame for the slow exit (runtime/README.md,
    // "Trampoline shape").
    unsafe {
        allocsite_slow_masks[0].store(all | record | sub | releases, Ordering::Relaxed);
        allocsite_slow_masks[1].store(all | record, Ordering::Relaxed);
    }
}

/// Mask byte 0, bit 7: record calls of free-kind functions (hook ABI v4).
pub const RELEASE_BOOKKEEPING: u8 = 0x80;

// The hot block layout the trampolines and mark stubs rely on (ABI v3, runtime/README.md; the
// rewriter's trampoline.rs has the same numbers).
const _: () = {
    assert!(offset_of!(Hot, outermost) == 0);
    assert!(offset_of!(Hot, depth) == 8);
    assert!(offset_of!(Hot, flags) == 48);
    assert!(offset_of!(Hot, mark) == 50);
    assert!(offset_of!(Hot, entries) == 64);
    assert!(core::mem::size_of::<crate::tls::Entry>() == 32);
    assert!(offset_of!(crate::tls::Entry, fn_) == 0);
    assert!(offset_of!(crate::tls::Entry, site) == 8);
    assert!(offset_of!(crate::tls::Entry, sp) == 16);
    assert!(DEPTH == 10);
};

// Register ABI of both hooks: called by `call [slot]` with r11 = the descriptor and
// the caller's r11 pushed just before the call, so the hooked function's entry stack
// pointer is rsp+16 (pointing at the caller's return address, the allocation site).
// rax holds the return value at exit. Every register except rflags is preserved. The
// stack may have any alignment.

/// The body of both hooks: save every caller-saved register (the six argument registers
/// laid out as args[0..6] at [rbp+32], the descriptor r11 at [rbp+8], the hooked
/// function's entry stack pointer at [rbp+96]) and xmm0–15, realign, put the C-ABI
/// function's arguments in place (`$setup`), call it, restore everything.
macro_rules! preserving_call {
    ($($setup:literal),* ; $f:path) => {
        core::arch::naked_asm!(
            ".cfi_startproc",
            "endbr64",
            "push r9", ".cfi_adjust_cfa_offset 8",
            "push r8", ".cfi_adjust_cfa_offset 8",
            "push rcx", ".cfi_adjust_cfa_offset 8",
            "push rdx", ".cfi_adjust_cfa_offset 8",
            "push rsi", ".cfi_adjust_cfa_offset 8",
            "push rdi", ".cfi_adjust_cfa_offset 8",
            "push rax", ".cfi_adjust_cfa_offset 8",
            "push r10", ".cfi_adjust_cfa_offset 8",
            "push r11", ".cfi_adjust_cfa_offset 8",
            "push rbp", ".cfi_adjust_cfa_offset 8", ".cfi_rel_offset rbp, 0",
            "mov rbp, rsp", ".cfi_def_cfa_register rbp",
            "and rsp, -16",
            "sub rsp, 256",
            "movaps [rsp + 0], xmm0",
            "movaps [rsp + 16], xmm1",
            "movaps [rsp + 32], xmm2",
            "movaps [rsp + 48], xmm3",
            "movaps [rsp + 64], xmm4",
            "movaps [rsp + 80], xmm5",
            "movaps [rsp + 96], xmm6",
            "movaps [rsp + 112], xmm7",
            "movaps [rsp + 128], xmm8",
            "movaps [rsp + 144], xmm9",
            "movaps [rsp + 160], xmm10",
            "movaps [rsp + 176], xmm11",
            "movaps [rsp + 192], xmm12",
            "movaps [rsp + 208], xmm13",
            "movaps [rsp + 224], xmm14",
            "movaps [rsp + 240], xmm15",
            $($setup,)*
            "call {f}",
            "movaps xmm0, [rsp + 0]",
            "movaps xmm1, [rsp + 16]",
            "movaps xmm2, [rsp + 32]",
            "movaps xmm3, [rsp + 48]",
            "movaps xmm4, [rsp + 64]",
            "movaps xmm5, [rsp + 80]",
            "movaps xmm6, [rsp + 96]",
            "movaps xmm7, [rsp + 112]",
            "movaps xmm8, [rsp + 128]",
            "movaps xmm9, [rsp + 144]",
            "movaps xmm10, [rsp + 160]",
            "movaps xmm11, [rsp + 176]",
            "movaps xmm12, [rsp + 192]",
            "movaps xmm13, [rsp + 208]",
            "movaps xmm14, [rsp + 224]",
            "movaps xmm15, [rsp + 240]",
            "mov rsp, rbp", ".cfi_def_cfa_register rsp",
            "pop rbp", ".cfi_adjust_cfa_offset -8", ".cfi_restore rbp",
            "pop r11", ".cfi_adjust_cfa_offset -8",
            "pop r10", ".cfi_adjust_cfa_offset -8",
            "pop rax", ".cfi_adjust_cfa_offset -8",
            "pop rdi", ".cfi_adjust_cfa_offset -8",
            "pop rsi", ".cfi_adjust_cfa_offset -8",
            "pop rdx", ".cfi_adjust_cfa_offset -8",
            "pop rcx", ".cfi_adjust_cfa_offset -8",
            "pop r8", ".cfi_adjust_cfa_offset -8",
            "pop r9", ".cfi_adjust_cfa_offset -8",
            "ret",
            ".cfi_endproc",
            f = sym $f,
        )
    };
}

/// Entry hook (register ABI above).
#[unsafe(naked)]
#[no_mangle]
pub unsafe extern "C" fn __allocsite_hook_enter() {
    preserving_call!("mov rdi, r11", "lea rsi, [rbp + 32]", "lea rdx, [rbp + 96]"; enter_from_hook)
}

/// Exit hook (register ABI above).
#[unsafe(naked)]
#[no_mangle]
pub unsafe extern "C" fn __allocsite_hook_exit() {
    preserving_call!("mov rdi, r11", "mov rsi, rax", "lea rdx, [rbp + 96]"; __allocsite_exit)
}

/// Slow entry from `__allocsite_hook_enter`: translate a site inside the new code
/// (a call among relocated instructions, or a tail call out of another trampoline's
/// pad) with the object's map routine, then the C-ABI entry.
unsafe extern "C" fn enter_from_hook(f: *const FnDesc, args: *const u64, entry_sp: *mut u8) {
    let mut site = *(entry_sp as *const usize);
    let base = f as usize;
    let (lo, hi) = (base.wrapping_add((*f).map_lo_rel as usize), base.wrapping_add((*f).map_hi_rel as usize));
    if (*f).map_thunk_rel != 0 && site >= lo && site < hi {
        let thunk = base.wrapping_add((*f).map_thunk_rel as usize);
        // the map routine's convention (rewriter trampoline.rs): rsi = site, rcx = where
        // it was read; returns rsi; clobbers r10, r11
        core::arch::asm!("call {t}", t = in(reg) thunk, inout("rsi") site, in("rcx") entry_sp, out("r10") _, out("r11") _);
    }
    __allocsite_enter(f, site as *mut u8, args, entry_sp);
}

#[no_mangle]
pub unsafe extern "C" fn __allocsite_enter(f: *const FnDesc, site: *mut u8, args: *const u64, entry_sp: *mut u8) {
    let h = hot();
    let sp = entry_sp as usize;
    let mut d = (*h).depth;
    if d != 0 {
        d = drop_stale(h, d, sp, true);
    }
    let mut size = match (*f).size_arg {
        a @ 0..=5 => *args.add(a as usize),
        _ => 0,
    };
    if let c @ 0..=5 = (*f).count_arg {
        size = size.wrapping_mul(*args.add(c as usize));
    }
    if (d as usize) < DEPTH {
        // A pass-through call (the enclosing allocation function forwards its own role
        // argument, e.g. through a function pointer) is no site of its own: the entry
        // repeats the enclosing one's site and function, so the exit still pairs.
        let (ef, es) = if d != 0 && FnDesc::is_pass_through(f, site as usize) {
            let below = &(*h).entries[d as usize - 1];
            (below.fn_, below.site)
        } else {
            (entry_word(f), site as usize)
        };
        let e = &mut (*h).entries[d as usize];
        e.fn_ = ef;
        e.site = es;
        e.sp = sp;
        e.size = size;
    } else {
        crate::stats::DEPTH_OVERFLOWS.fetch_add(1, Ordering::Relaxed);
    }
    if d == 0 {
        (*h).outermost = site as usize;
    }
    (*h).depth = d + 1;
    if trace::on() || (((*f).kind == KIND_FREE || (*f).kind == KIND_REALLOC) && crate::index::SUB_USED.load(Ordering::Relaxed)) {
        enter_slow(f, site as usize, args, d + 1);
    }
}

#[cold]
#[inline(never)]
unsafe fn enter_slow(f: *const FnDesc, site: usize, args: *const u64, depth: u32) {
    let k = (*f).kind;
    if (k == KIND_FREE || (k == KIND_REALLOC && !INTERPOSED.load(Ordering::Relaxed)))
        && crate::index::SUB_USED.load(Ordering::Relaxed)
    {
        sub_free(f, args, site);
    }
    if trace::on() {
        trace::enter(f, site, args, depth);
    }
}

#[no_mangle]
pub unsafe extern "C" fn __allocsite_exit(f: *const FnDesc, ret: u64, entry_sp: *mut u8) {
    let h = hot();
    let sp = entry_sp as usize;
    let mut d = (*h).depth;
    if d != 0 {
        d = drop_stale(h, d, sp, false);
    }
    let mut mine = 0;
    if d as usize > DEPTH {
        mine = d; // unrecorded level: trust the pairing
    } else if d != 0 && (*h).entries[d as usize - 1].sp == sp {
        mine = d;
    }
    let (site, size, inner_done) = if mine != 0 && (mine as usize) <= DEPTH {
        let e = &(*h).entries[mine as usize - 1];
        (e.site, e.size, e.fn_ as usize == (ret as usize | 1))
    } else {
        (0, 0, false)
    };
    let outer = (*h).outermost;
    if mine != 0 {
        d -= 1;
        if d == 0 {
            (*h).outermost = 0;
        }
    }
    (*h).depth = d;
    if trace::on() || ((RECORD_KINDS.load(Ordering::Relaxed) >> ((*f).kind & 7)) & 1 != 0 && ret != 0 && site != 0) {
        let depth = if mine != 0 { mine } else { d };
        exit_slow(f, ret, site, size, outer, depth | if inner_done { 1 << 31 } else { 0 });
    }
}

/// Kinds whose results `__allocsite_exit` indexes itself: suballocators always; when
/// the runtime's malloc is not the one in use (an unmodified program loading a
/// rewritten library: the runtime comes after libc in the lookup scope), also the
/// hooked alloc and realloc functions.
pub static RECORD_KINDS: core::sync::atomic::AtomicU8 = core::sync::atomic::AtomicU8::new(1 << KIND_SUBALLOC);
/// Whether the runtime's `malloc` is the process's `malloc` (set at load time).
pub static INTERPOSED: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(true);

/// At load time: is the runtime's malloc the one the process uses?
pub fn check_interposed() {
    // (the address of our own `malloc` taken here would itself be resolved through the
    // lookup scope: compare the objects holding the found symbol and this function)
    let found = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"malloc".as_ptr()) };
    let base = |a: *const libc::c_void| -> usize {
        let mut info: libc::Dl_info = unsafe { core::mem::zeroed() };
        if unsafe { libc::dladdr(a, &mut info) } != 0 {
            info.dli_fbase as usize
        } else {
            0
        }
    };
    if !found.is_null() && base(found) != base(check_interposed as *const libc::c_void) {
        INTERPOSED.store(false, Ordering::Relaxed);
        RECORD_KINDS.store((1 << KIND_SUBALLOC) | (1 << KIND_ALLOC) | (1 << KIND_REALLOC), Ordering::Relaxed);
    }
    update_masks();
}

#[cold]
#[inline(never)]
unsafe fn exit_slow(f: *const FnDesc, ret: u64, site: usize, size: u64, outer: usize, depth: u32) {
    let inner_done = depth & (1 << 31) != 0;
    let depth = depth & !(1 << 31);
    if trace::on() {
        trace::exit(f, site, ret, depth);
    }
    if (RECORD_KINDS.load(Ordering::Relaxed) >> ((*f).kind & 7)) & 1 != 0 && ret != 0 && site != 0 && !inner_done {
        let code = if (*f).kind == KIND_SUBALLOC { crate::sites::A_SUB } else { crate::sites::A_HOOKED };
        let h = hot();
        // the function called at the site: this one, unless its entry repeats an
        // enclosing call's site and function (a pass-through call)
        let mut called = f;
        if depth >= 1 && depth as usize <= DEPTH {
            let e = entry_desc((*h).entries[depth as usize - 1].fn_);
            if !e.is_null() {
                called = e;
            }
        }
        sub_record(h, ret as usize, size, site, outer, called, code);
        // tell an enclosing hooked call returning the same pointer that it is indexed
        if depth >= 2 && (depth as usize - 1) <= DEPTH {
            (*h).entries[depth as usize - 2].fn_ = (ret as usize | 1) as *const FnDesc;
        }
    }
}

/// Index a piece returned by a hooked suballocator (the SUB index: pieces may lie
/// inside a glibc chunk, e.g. a pool's block).
#[cold]
#[inline(never)]
unsafe fn sub_record(h: *mut crate::tls::Hot, p: usize, size: u64, site: usize, outer: usize, f: *const FnDesc, code: u32) {
    use crate::arena::INDEXING;
    use crate::tls::{guard_off, guard_on, GUARD_WORK};
    use crate::{index, sites};
    if (*h).guard != 0 {
        return;
    }
    guard_on(h, GUARD_WORK);
    // the function called at the outermost site: the bottom entry's (still in place
    // when this call was the outermost one and has just been popped)
    let okey = entry_desc((*h).entries[0].fn_) as usize;
    let id = sites::intern(h, site, outer, sites::make_key(f, code), okey);
    if id != 0 {
        if !index::SUB_USED.swap(true, Ordering::Relaxed) {
            update_masks();
        }
        let size = size.min(1 << 40) as usize;
        let mut ok = false;
        if crate::check::on() {
            crate::check::sub::handed_out(p, size, id);
        }
        if INDEXING.load(Ordering::Relaxed) {
            match index::insert(&index::SUB, p, size, id) {
                Ok(Some(old)) => {
                    sites::on_free(h, old.id, old.size as u64);
                    ok = true
                }
                Ok(None) => ok = true,
                Err(()) => {}
            }
        }
        sites::on_alloc(h, id, size as u64, ok);
    }
    guard_off(h);
}

/// A hooked free function is about to release a suballocated piece.
#[cold]
#[inline(never)]
unsafe fn sub_free(f: *const FnDesc, args: *const u64, site: usize) {
    use crate::tls::{guard_off, guard_on, GUARD_WORK};
    let a = (*f).ptr_arg;
    if !(0..6).contains(&a) {
        return;
    }
    let p = *args.add(a as usize) as usize;
    let h = hot();
    if p == 0 || (*h).guard != 0 {
        return;
    }
    guard_on(h, GUARD_WORK);
    let removed = crate::index::remove(&crate::index::SUB, p);
    if let Some(c) = removed {
        crate::sites::on_free(h, c.id, c.size as u64);
    }
    if crate::check::on() {
        // the sub-free's site: this call of f, as for an allocation
        let okey = entry_desc((*h).entries[0].fn_) as usize;
        let fid = crate::sites::intern(h, site, (*h).outermost, crate::sites::make_key(f, crate::sites::A_FREE), okey);
        match removed {
            Some(c) => crate::check::sub::given_back(&c, f, fid),
            None => {
                if let Some(x) = crate::check::sub::wrong(p, f, fid) {
                    guard_off(h);
                    // (fail=warn: the pool's free still runs; only the runtime reports)
                    crate::check::finding::raise(x);
                    return;
                }
            }
        }
    }
    guard_off(h);
}
