//! The one contiguous region the spans come from: reserved at start-up (address space
//! only, `PROT_NONE`, `MAP_NORESERVE`), made accessible from the bottom up in steps of
//! `STEP` as spans are carved. Whether a pointer is a span object is one subtraction and
//! one compare (`owns`): no lookup, no header of glibc's read.
//!
//! Spans that become empty come back here (`release`): their pages are given back to
//! the system (`MADV_DONTNEED`) and they are handed out again, for any class, before
//! new address space is carved.
//!
//! Callers serialise every function but `owns` (one thread, or `super::LOCK`).
use super::classes::SPAN;
use core::ptr::null_mut;
use core::sync::atomic::{AtomicUsize, Ordering};

/// Address space reserved (no memory is committed by reserving it).
const LEN: usize = 4 << 30;
/// Bytes made accessible at a time (one `mprotect` per 16 spans).
const STEP: usize = 1 << 20;

/// Start of the region (aligned to `SPAN`); 0 until reserved.
pub static BASE: AtomicUsize = AtomicUsize::new(0);
/// Bytes of the region carved into spans so far (only grows): `owns` tests against it,
/// so a pointer past it is never taken for a span object.
pub static CARVED: AtomicUsize = AtomicUsize::new(0);
/// Bytes made accessible so far.
static OPEN: AtomicUsize = AtomicUsize::new(0);
/// Empty spans whose pages were dropped, linked through their first word.
static EMPTY: AtomicUsize = AtomicUsize::new(0);
/// Empty spans whose pages are kept (`release`), linked the same way: a program that
/// frees many objects and then makes as many again (a garbage collector's cycle) reuses
/// them without a page fault per page.
static WARM: AtomicUsize = AtomicUsize::new(0);
static WARM_N: AtomicUsize = AtomicUsize::new(0);
/// Empty spans kept whole: at least this many (4 MiB), and up to half the spans in use
/// (glibc, for comparison, keeps all the free memory below its heap's top). Keeping
/// them never raises the peak RSS (they were resident while in use); it spares the
/// page faults. The Lua workload (`lua.lua 2`) gave pages back (and faulted them in
/// again) 1383 times with none kept, 875 with 4, 479 with 16, 281 with max(16, half in
/// use), 37 with 64, at the same peak RSS; minor faults 22490 → 1936 (the original: 1979).
pub const WARM_MIN: usize = 64;
/// Spans carved and not empty (for the report and tests).
pub static SPANS_IN_USE: AtomicUsize = AtomicUsize::new(0);

/// Whether `p` lies in a carved span.
#[inline(always)]
pub fn owns(p: usize) -> bool {
    p.wrapping_sub(BASE.load(Ordering::Relaxed)) < CARVED.load(Ordering::Relaxed)
}

/// Reserve the region (load time). False when the system refuses.
pub fn reserve() -> bool {
    let p = unsafe {
        libc::mmap(null_mut(), LEN + SPAN, libc::PROT_NONE, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE, -1, 0)
    };
    if p == libc::MAP_FAILED {
        return false;
    }
    let base = (p as usize + SPAN - 1) & !(SPAN - 1);
    BASE.store(base, Ordering::Relaxed);
    true
}

/// A span: an empty one given back earlier, or a new one; `true`: its pages were kept
/// (they hold what its objects held; its old records are 0), else it reads as zeros.
/// Null when the region is used up or the system refuses.
pub unsafe fn take() -> (*mut u8, bool) {
    let w = WARM.load(Ordering::Relaxed);
    if w != 0 {
        WARM.store(*(w as *const usize), Ordering::Relaxed);
        WARM_N.fetch_sub(1, Ordering::Relaxed);
        SPANS_IN_USE.fetch_add(1, Ordering::Relaxed);
        return (w as *mut u8, true);
    }
    let e = EMPTY.load(Ordering::Relaxed);
    if e != 0 {
        EMPTY.store(*(e as *const usize), Ordering::Relaxed);
        *(e as *mut usize) = 0;
        SPANS_IN_USE.fetch_add(1, Ordering::Relaxed);
        return (e as *mut u8, false);
    }
    let base = BASE.load(Ordering::Relaxed);
    let carved = CARVED.load(Ordering::Relaxed);
    if base == 0 || carved + SPAN > LEN {
        return (null_mut(), false);
    }
    let open = OPEN.load(Ordering::Relaxed);
    if carved + SPAN > open {
        if libc::mprotect((base + open) as *mut libc::c_void, STEP, libc::PROT_READ | libc::PROT_WRITE) != 0 {
            return (null_mut(), false);
        }
        OPEN.store(open + STEP, Ordering::Relaxed);
    }
    // (published after the span is accessible: `owns` of another thread may read it)
    CARVED.store(carved + SPAN, Ordering::Release);
    SPANS_IN_USE.fetch_add(1, Ordering::Relaxed);
    ((base + carved) as *mut u8, false)
}

/// Give an empty span back: kept whole while there are fewer than `WARM_MIN` such or
/// than half the spans in use, else its pages go back to the system.
pub unsafe fn release(s: *mut u8) {
    let used = SPANS_IN_USE.fetch_sub(1, Ordering::Relaxed) - 1;
    if WARM_N.load(Ordering::Relaxed) < WARM_MIN.max(used / 2) {
        *(s as *mut usize) = WARM.load(Ordering::Relaxed);
        WARM.store(s as usize, Ordering::Relaxed);
        WARM_N.fetch_add(1, Ordering::Relaxed);
        return;
    }
    libc::madvise(s as *mut libc::c_void, SPAN, libc::MADV_DONTNEED);
    *(s as *mut usize) = EMPTY.load(Ordering::Relaxed);
    EMPTY.store(s as usize, Ordering::Relaxed);
}
