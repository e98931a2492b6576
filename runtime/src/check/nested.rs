//! glibc's allocator is not async-signal-safe: a signal handler that allocates while its
//! thread is inside glibc's `malloc` or `free` corrupts glibc's heap. Without checks the
//! window is short (glibc's fast paths); with them, and the quarantine above all, glibc
//! runs its slow paths far more often (cold chunks, a growing heap), and a handler that
//! allocates (`tests/c/index.c signals`, SIGPROF every 20 µs) broke glibc in most runs.
//!
//! So with checks on, every call of glibc's allocator by the runtime marks the thread as
//! inside glibc (the guard at `GUARD_LIBC`, restored after). An allocation arriving
//! while the mark is set can only be a signal handler's (or a nested handler's) on that
//! thread: it is served from a small runtime-private region (a bump allocator, reset
//! when everything in it has been freed), and a handler's free of a glibc chunk is
//! deferred to a lock-free list that the next checked `free` drains. The private
//! chunks are not indexed (like any allocation made while the runtime is busy); `free`
//! and `realloc` recognise them by address. Without checks nothing here runs: the
//! wrappers are one branch on `check::on()` before glibc's function.
use core::ffi::c_void;
use core::sync::atomic::{AtomicUsize, Ordering};

extern "C" {
    fn __libc_malloc(n: usize) -> *mut c_void;
    fn __libc_calloc(n: usize, s: usize) -> *mut c_void;
    fn __libc_realloc(p: *mut c_void, n: usize) -> *mut c_void;
    fn __libc_free(p: *mut c_void);
    fn __libc_memalign(a: usize, n: usize) -> *mut c_void;
    fn __libc_valloc(n: usize) -> *mut c_void;
    fn __libc_pvalloc(n: usize) -> *mut c_void;
}

/// The guard's value while the runtime is inside glibc's allocator for a checked call.
pub const GUARD_LIBC: u32 = 3;

const REGION: usize = 4 << 20;
static BASE: AtomicUsize = AtomicUsize::new(0);
static NEXT: AtomicUsize = AtomicUsize::new(0);
static LIVE: AtomicUsize = AtomicUsize::new(0);
static DEFERRED: AtomicUsize = AtomicUsize::new(0);

type P = *mut c_void;

/// Run glibc's `f` with the thread marked as inside glibc.
#[inline(always)]
unsafe fn marked<T>(f: impl FnOnce() -> T) -> T {
    let h = crate::tls::hot();
    let saved = (*h).guard;
    crate::tls::guard_on(h, GUARD_LIBC);
    let r = f();
    if saved == 0 {
        crate::tls::guard_off(h)
    } else {
        crate::tls::guard_on(h, saved)
    }
    r
}

/// Whether this thread is inside glibc's allocator (so this call is a handler's).
#[inline(always)]
fn nested() -> bool {
    unsafe { (*crate::tls::hot()).guard == GUARD_LIBC }
}

fn region() -> usize {
    let b = BASE.load(Ordering::Acquire);
    if b != 0 {
        return b;
    }
    // (mmap is async-signal-safe)
    let m = unsafe { libc::mmap(core::ptr::null_mut(), REGION, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, 0) };
    if m == libc::MAP_FAILED {
        return 0;
    }
    match BASE.compare_exchange(0, m as usize, Ordering::AcqRel, Ordering::Acquire) {
        Ok(_) => m as usize,
        Err(w) => {
            unsafe { libc::munmap(m, REGION) };
            w
        }
    }
}

/// Whether `p` is a private chunk.
#[inline]
pub fn owns(p: usize) -> bool {
    let b = BASE.load(Ordering::Relaxed);
    b != 0 && p >= b && p < b + REGION
}

/// A private chunk of `n` bytes aligned to `a`. Its header word looks like glibc's for
/// an mmap'd chunk (size | 2), so the index's readers take it for one it never had.
unsafe fn alloc(n: usize, a: usize) -> P {
    let b = region();
    if b == 0 || n > REGION {
        return core::ptr::null_mut();
    }
    let a = a.max(16);
    LIVE.fetch_add(1, Ordering::AcqRel);
    loop {
        let off = NEXT.load(Ordering::Acquire);
        let start = (b + off + 16 + a - 1) & !(a - 1);
        let end = (start + n.max(1) + 15) & !15;
        if end > b + REGION {
            LIVE.fetch_sub(1, Ordering::AcqRel);
            return core::ptr::null_mut();
        }
        if NEXT.compare_exchange(off, end - b, Ordering::AcqRel, Ordering::Acquire).is_ok() {
            *((start - 8) as *mut usize) = (end - start + 16) | 2;
            return start as P;
        }
    }
}

/// The bytes a private chunk holds.
pub fn size(p: usize) -> usize {
    unsafe { (*((p - 8) as *const usize) & !7) - 16 }
}

/// Free a private chunk; the region starts over when none is left.
pub fn release(_p: usize) {
    if LIVE.fetch_sub(1, Ordering::AcqRel) == 1 {
        let off = NEXT.load(Ordering::Acquire);
        if LIVE.load(Ordering::Acquire) == 0 {
            let _ = NEXT.compare_exchange(off, 0, Ordering::AcqRel, Ordering::Relaxed);
        }
    }
}

/// A handler's free of a glibc chunk: kept (linked through its first word) until the
/// next checked free drains the list.
unsafe fn defer(p: usize) {
    let mut h = DEFERRED.load(Ordering::Acquire);
    loop {
        *(p as *mut usize) = h;
        match DEFERRED.compare_exchange(h, p, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => return,
            Err(x) => h = x,
        }
    }
}

/// Give glibc the chunks handlers freed (from a checked free: not inside glibc).
#[inline]
pub unsafe fn drain() {
    if DEFERRED.load(Ordering::Relaxed) == 0 {
        return;
    }
    let mut p = DEFERRED.swap(0, Ordering::AcqRel);
    while p != 0 {
        let next = *(p as *const usize);
        marked(|| __libc_free(p as P));
        p = next;
    }
}

unsafe fn nested_free(p: P) {
    if owns(p as usize) {
        release(p as usize)
    } else {
        defer(p as usize)
    }
}

// ---------------------------------------------------------------- glibc's allocator,
// as the interposed functions call it

#[inline(always)]
pub unsafe fn malloc(n: usize) -> P {
    malloc_if(super::on(), n)
}

/// `malloc` with the checks' flag as the caller read it (`check::on()`, once per call:
/// the hot path reads the flag once, not in each helper).
#[inline(always)]
pub unsafe fn malloc_if(on: bool, n: usize) -> P {
    if !on {
        return __libc_malloc(n);
    }
    if nested() {
        return alloc(n, 16);
    }
    if let Some(p) = super::recycle::take_checked(n) {
        return p as P;
    }
    let p = marked(|| __libc_malloc(n));
    if !p.is_null() && super::options::has(super::options::QUARANTINE) {
        next_of_kind(p as usize);
    }
    p
}

/// Under the quarantine every chunk glibc hands out was freed long ago: it is cold. The
/// chunk glibc will hand out next for the same size is most often named in the one it
/// has just returned, which is in the cache now: a small bin's next victim is this
/// chunk's `bk` (glibc takes from the bin's tail), tcache's or a fastbin's next entry
/// its first word (safe-linked: xor'ed with the chunk's address >> 12). Both are asked
/// for ahead, so the next `malloc` of the size, and the program's first writes into it,
/// wait less. The words are taken only within this chunk's 64 MiB-aligned region: a
/// chunk split off a larger block or the top holds old contents or zeros, and a
/// prefetch never faults but one of an unmapped address still walks the page tables.
/// (The region is imposed by masking, not tested: no branch on what may be
/// uninitialised memory, which valgrind's memcheck would report.)
#[inline(always)]
unsafe fn next_of_kind(p: usize) {
    use core::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
    const LOW: usize = (1 << 26) - 1;
    let bk = *((p + 8) as *const usize);
    let next = *(p as *const usize) ^ (p >> 12);
    _mm_prefetch::<_MM_HINT_T0>(((p & !LOW) | (bk & LOW)) as *const i8);
    _mm_prefetch::<_MM_HINT_T0>(((p & !LOW) | (next & LOW)) as *const i8);
}

#[inline(always)]
pub unsafe fn calloc(n: usize, s: usize) -> P {
    if !super::on() {
        return __libc_calloc(n, s);
    }
    if nested() {
        let Some(t) = n.checked_mul(s) else { return core::ptr::null_mut() };
        let p = alloc(t, 16);
        if !p.is_null() {
            core::ptr::write_bytes(p as *mut u8, 0, t);
        }
        return p;
    }
    marked(|| __libc_calloc(n, s))
}

#[inline(always)]
pub unsafe fn memalign(a: usize, n: usize) -> P {
    if !super::on() {
        return __libc_memalign(a, n);
    }
    if nested() {
        return if a.is_power_of_two() { alloc(n, a) } else { core::ptr::null_mut() };
    }
    marked(|| __libc_memalign(a, n))
}

#[inline(always)]
pub unsafe fn valloc(n: usize) -> P {
    if !super::on() {
        return __libc_valloc(n);
    }
    if nested() {
        return alloc(n, 4096);
    }
    marked(|| __libc_valloc(n))
}

#[inline(always)]
pub unsafe fn pvalloc(n: usize) -> P {
    if !super::on() {
        return __libc_pvalloc(n);
    }
    if nested() {
        return alloc((n + 4095) & !4095, 4096);
    }
    marked(|| __libc_pvalloc(n))
}

#[inline(always)]
pub unsafe fn free(p: P) {
    free_if(super::on(), p)
}

/// `free` with the checks' flag as the caller read it (see `malloc_if`).
#[inline(always)]
pub unsafe fn free_if(on: bool, p: P) {
    if !on {
        return __libc_free(p);
    }
    if p.is_null() {
        return;
    }
    if nested() {
        return nested_free(p);
    }
    if owns(p as usize) {
        return release(p as usize);
    }
    marked(|| __libc_free(p))
}

#[inline(always)]
pub unsafe fn realloc(p: P, n: usize) -> P {
    realloc_if(super::on(), p, n)
}

/// `realloc` with the checks' flag as the caller read it (see `malloc_if`).
#[inline(always)]
pub unsafe fn realloc_if(on: bool, p: P, n: usize) -> P {
    if !on {
        return __libc_realloc(p, n);
    }
    if nested() || owns(p as usize) {
        // (a handler's, or a private chunk's: a private chunk, the contents copied)
        if p.is_null() {
            return alloc(n, 16);
        }
        if n == 0 {
            free(p);
            return core::ptr::null_mut();
        }
        let old = if owns(p as usize) { size(p as usize) } else { crate::chunkmap::header(p as usize).0 };
        let q = if nested() { alloc(n, 16) } else { marked(|| __libc_malloc(n)) };
        if !q.is_null() {
            core::ptr::copy_nonoverlapping(p as *const u8, q as *mut u8, old.min(n));
            free(p);
        }
        return q;
    }
    marked(|| __libc_realloc(p, n))
}
