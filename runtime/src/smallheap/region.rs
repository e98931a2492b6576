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
/// Empty spans, linked through their first word.
static EMPTY: AtomicUsize = AtomicUsize::new(0);
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

/// A span: an empty one given back earlier (`true`: it held objects, its header and
/// record bytes may be anything but its pages were dropped, so they read as zero), or a
/// new one (zeroed). Null when the region is used up or the system refuses.
pub unsafe fn take() -> (*mut u8, bool) {
    let e = EMPTY.load(Ordering::Relaxed);
    if e != 0 {
        EMPTY.store(*(e as *const usize), Ordering::Relaxed);
        *(e as *mut usize) = 0;
        SPANS_IN_USE.fetch_add(1, Ordering::Relaxed);
        return (e as *mut u8, true);
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

/// Give an empty span back: its pages to the system, the span to the empty list.
pub unsafe fn release(s: *mut u8) {
    libc::madvise(s as *mut libc::c_void, SPAN, libc::MADV_DONTNEED);
    *(s as *mut usize) = EMPTY.load(Ordering::Relaxed);
    EMPTY.store(s as usize, Ordering::Relaxed);
    SPANS_IN_USE.fetch_sub(1, Ordering::Relaxed);
}
