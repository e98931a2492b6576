//! allocsite runtime (`liballocsite_rt.so`): hook entry points, per-thread stack of
//! active allocation calls, heap index, query API and reports.
//! See runtime/README.md for the hook ABI and include/allocsite.h for the query API.
#![allow(clippy::missing_safety_doc, non_snake_case)]

pub mod api;
pub mod arena;
pub mod chunkmap;
pub mod dwarf;
pub mod hooks;
pub mod index;
pub mod protect;
pub mod interpose;
pub mod report;
pub mod sites;
pub mod stats;
pub mod symbolize;
pub mod sys;
pub mod tls;
pub mod trace;
pub mod types;

use core::sync::atomic::{AtomicU64, Ordering};


/// `struct allocsite_fn` (hook ABI version 3), emitted by the rewriter.
#[repr(C)]
pub struct FnDesc {
    pub magic: u32,
    pub kind: u8,
    pub size_arg: i8,
    pub count_arg: i8,
    pub ptr_arg: i8,
    pub out_arg: i8,
    pub nargs: u8,
    /// `FN_IMPORT`: an imported function hooked at its call sites.
    pub flags: u16,
    /// Pass-through return addresses in the table at `pt_rel`.
    pub pt_count: u32,
    pub entry_rel: i64,
    pub name_rel: i64,
    /// `[map_lo, map_hi)`: the object's new code; a site there is translated by the
    /// routine at `map_thunk` (all three relative to the descriptor; 0 = none).
    pub map_lo_rel: i64,
    pub map_hi_rel: i64,
    pub map_thunk_rel: i64,
    /// Sorted `i64[pt_count]`: pass-through return addresses, each minus the
    /// descriptor's address (the calls that forward this function's own role argument
    /// to an indirectly called allocation function).
    pub pt_rel: i64,
}
const _: () = {
    assert!(core::mem::size_of::<FnDesc>() == 64);
    assert!(core::mem::offset_of!(FnDesc, flags) == 10);
    assert!(core::mem::offset_of!(FnDesc, pt_count) == 12);
    assert!(core::mem::offset_of!(FnDesc, entry_rel) == 16);
    assert!(core::mem::offset_of!(FnDesc, pt_rel) == 56);
};
/// "ASF3" little-endian.
pub const FN_MAGIC: u32 = 0x3346_5341;
/// `FnDesc::flags` bit 0: an imported function, hooked at its call sites.
pub const FN_IMPORT: u16 = 1;

impl FnDesc {
    /// Whether `site` is one of this function's pass-through return addresses.
    #[inline]
    pub unsafe fn is_pass_through(f: *const FnDesc, site: usize) -> bool {
        let n = (*f).pt_count as usize;
        if n == 0 || (*f).pt_rel == 0 {
            return false;
        }
        let base = f as usize;
        let tab = core::slice::from_raw_parts(base.wrapping_add((*f).pt_rel as usize) as *const i64, n);
        let rel = site.wrapping_sub(base) as i64;
        tab.binary_search(&rel).is_ok()
    }
}

/// Copy `tmpl` into `out` with `%p` replaced by the pid; NUL-terminated. Returns the
/// length (0 when it does not fit).
pub fn expand_pid(tmpl: &[u8], out: &mut [u8]) -> usize {
    let mut b = sys::Buf::<4096>::new();
    let mut i = 0;
    while i < tmpl.len() {
        if tmpl[i] == b'%' && i + 1 < tmpl.len() && tmpl[i + 1] == b'p' {
            b.dec(unsafe { libc::getpid() } as u64);
            i += 2;
        } else {
            b.s(&tmpl[i..i + 1]);
            i += 1;
        }
    }
    let n = b.n;
    if n + 1 > out.len() || n + 1 > 4096 {
        return 0;
    }
    out[..n].copy_from_slice(b.bytes());
    out[n] = 0;
    n
}

static mut REPORT_PATH: [u8; 4096] = [0; 4096];
static REPORT_LEN: AtomicU64 = AtomicU64::new(0);

/// The `ALLOCSITE_REPORT` template, if set.
pub fn report_path() -> Option<&'static [u8]> {
    let n = REPORT_LEN.load(Ordering::Acquire) as usize;
    if n == 0 {
        None
    } else {
        Some(unsafe { core::slice::from_raw_parts(core::ptr::addr_of!(REPORT_PATH) as *const u8, n) })
    }
}

/// Whether prepare took the index locks (not when fork is called by a signal handler
/// that interrupted the runtime on this thread: it may hold one of them).
static FORK_LOCKED: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

extern "C" fn at_fork_prepare() {
    if unsafe { (*tls::hot()).guard } == 0 {
        index::lock_all();
        sites::REG_LOCK.lock();
        FORK_LOCKED.store(true, Ordering::Relaxed);
    }
}
extern "C" fn at_fork_parent() {
    if FORK_LOCKED.swap(false, Ordering::Relaxed) {
        sites::REG_LOCK.unlock();
        index::unlock_all(false);
    }
}
extern "C" fn at_fork_child() {
    if FORK_LOCKED.swap(false, Ordering::Relaxed) {
        index::unlock_all(true);
    }
    // the other threads are gone (their unflushed batches become this process's counts)
    sites::REG_LOCK.force_unlock();
    sites::after_fork_child();
    unsafe { (*tls::hot()).tid = 0 };
    trace::reopen_after_fork();
}

extern "C" fn at_exit() {
    // (the report folds in this thread's and every other live thread's pending batches)
    if let Some(p) = report_path() {
        if let Err(e) = report::write(p, "exit") {
            let mut b = sys::Buf::<512>::new();
            b.s(b"allocsite: cannot write report ").s(p).s(b": errno ").dec(e.raw_os_error().unwrap_or(0) as u64).s(b"\n");
            sys::write_all(2, b.bytes());
        }
    }
}

/// Parse a byte count with an optional K/M/G suffix.
fn parse_bytes(s: &[u8]) -> Option<u64> {
    let (num, mul) = match s.last()? {
        b'k' | b'K' => (&s[..s.len() - 1], 1u64 << 10),
        b'm' | b'M' => (&s[..s.len() - 1], 1 << 20),
        b'g' | b'G' => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    let mut v: u64 = 0;
    if num.is_empty() {
        return None;
    }
    for &c in num {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add((c - b'0') as u64)?;
    }
    v.checked_mul(mul)
}

extern "C" fn init() {
    sites::init_thread_key();
    hooks::check_interposed();
    if let Some(v) = sys::env(c"ALLOCSITE_MAX_META") {
        match parse_bytes(v) {
            Some(n) => arena::META_CAP.store(n, Ordering::Relaxed),
            None => sys::write_all(2, b"allocsite: ignoring malformed ALLOCSITE_MAX_META\n"),
        }
    }
    if let Some(p) = sys::env(c"ALLOCSITE_REPORT") {
        if p.len() < 4000 {
            unsafe { core::ptr::copy_nonoverlapping(p.as_ptr(), core::ptr::addr_of_mut!(REPORT_PATH) as *mut u8, p.len()) };
            REPORT_LEN.store(p.len() as u64, Ordering::Release);
            unsafe { libc::atexit(at_exit) };
        }
    }
    trace::init();
    protect::protect_loaded();
    unsafe { libc::pthread_atfork(Some(at_fork_prepare), Some(at_fork_parent), Some(at_fork_child)) };
}

#[used]
#[link_section = ".init_array"]
static INIT: extern "C" fn() = init;
