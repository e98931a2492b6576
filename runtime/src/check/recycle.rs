//! Chunks that leave the quarantine, kept by size for the next `malloc` of that size
//! instead of going back through glibc's `free` (single-threaded programs, glibc's
//! allocator only), and checked when they are handed out again.
//!
//! Why keep them: a batch leaving the quarantine put thousands of chunks on glibc's
//! lists at once — tcache's 7 per size, then the fastbins (singly linked through the
//! chunks). When tcache ran dry, glibc's `malloc` took a fastbin's head and moved the
//! next 7 chunks of the list into tcache, following each chunk's link: seven dependent
//! loads of chunks freed long ago, each waiting for memory. In Lua with all checks that
//! walk was three quarters of `_int_malloc`'s samples (≈ 7 % of the run). Here the chunks
//! of a size are an array (a stack, in address order as the batch leaves): taking one
//! follows no link, and the next but one is prefetched as one is taken. They stay
//! allocated in glibc's eyes (nothing here writes into them) until handed out again or
//! given back to glibc.
//!
//! Why check them when taken: a chunk kept here is not read as it leaves the quarantine
//! (the batch only moves its entry here); its free pattern is checked when `malloc`
//! takes it — just before the checks poison it, so the chunk is read and written in one
//! visit instead of two a batch apart — or when it goes back to glibc, or at exit. A
//! damaged byte is the same `write-after-free` finding (offset, both sites) as when it
//! left the quarantine; the chunk has stayed out of reuse that much longer.
//!
//! Bounds: sizes up to `CLASSES` glibc chunk sizes (16-byte steps from 32), at most
//! `CAP` chunks a size and `budget / 8` bytes in all (two batches); a chunk beyond them
//! is checked and freed as before. Chunks not taken within one to two batches go back
//! to glibc (`age`), so a size the program stopped asking for holds nothing for long. A
//! freed chunk's trailer stays, so a double free of a chunk kept here is found as
//! after glibc's `free` (`chunk::unknown`).
//!
//! Only while the process has one thread: `put` and `take` then never race (the flag
//! is cleared before a second thread exists, by the thread that creates it); the first
//! batch that sees more threads checks and gives everything kept back to glibc. While
//! the bins change, `BUSY` sends a signal handler's `malloc` on the thread elsewhere.
//! Only on glibc's chunks (`probe`): not under valgrind's memcheck, whose malloc
//! replaces glibc's (no header to size a chunk by).
use super::quarantine::{Entry, Packed};
use core::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};

/// Sizes kept: glibc chunk sizes 32, 48, … up to 32 + 16 * (CLASSES - 1) bytes.
const CLASSES: usize = 64;
/// Most chunks kept of one size.
const CAP: usize = 8192;

static ON: AtomicBool = AtomicBool::new(false);
/// Bytes of chunks kept at most (set at start from the quarantine's budget).
static LIMIT: AtomicUsize = AtomicUsize::new(0);
static mut BINS: *mut Packed = core::ptr::null_mut();
static mut LEN: [u32; CLASSES] = [0; CLASSES];
/// How many of a size's chunks were kept before the last batch came in (`age`).
static mut MARK: [u32; CLASSES] = [0; CLASSES];
static mut BYTES: usize = 0;
/// Any chunk kept (so that the first drain with more threads knows to flush).
static ANY: AtomicBool = AtomicBool::new(false);

extern "C" {
    fn __libc_malloc(n: usize) -> *mut core::ffi::c_void;
    fn __libc_free(p: *mut core::ffi::c_void);
}

/// glibc's `malloc_usable_size` (found at start).
static USABLE: AtomicUsize = AtomicUsize::new(0);
/// Whether the chunks are glibc's: 0 not known yet, 1 yes, 2 no (`probe`).
static GLIBC: AtomicU8 = AtomicU8::new(0);

/// Whether the chunk at `base`, with `header` the word before it, is glibc's: glibc's
/// `malloc_usable_size` agrees with the size in the header. Under valgrind's memcheck,
/// which replaces glibc's malloc, a block has no glibc header and the function answers
/// the block's exact size. Asked once, of the first chunk that would be kept (a probe
/// allocation of its own would show in valgrind's counts).
unsafe fn probe(base: usize, header: usize) -> bool {
    let f = USABLE.load(Ordering::Relaxed);
    if f == 0 {
        return false;
    }
    let usable: unsafe extern "C" fn(*mut core::ffi::c_void) -> usize = core::mem::transmute(f);
    usable(base as *mut _) == (header & !7).wrapping_sub(8)
}

/// At start-up, with the quarantine in force.
pub fn start(budget: u64) {
    let f = unsafe { libc::dlsym(libc::RTLD_NEXT, c"malloc_usable_size".as_ptr()) };
    if f.is_null() {
        return;
    }
    USABLE.store(f as usize, Ordering::Relaxed);
    let bytes = CLASSES * CAP * core::mem::size_of::<Packed>();
    let m = unsafe { libc::mmap(core::ptr::null_mut(), bytes, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE, -1, 0) };
    if m == libc::MAP_FAILED {
        return;
    }
    unsafe { *core::ptr::addr_of_mut!(BINS) = m.cast() };
    LIMIT.store((budget / 8) as usize, Ordering::Relaxed);
    ON.store(true, Ordering::Release);
}

/// The class of glibc's chunk for a request of `n` bytes (its `request2size`).
#[inline(always)]
fn class_of_request(n: usize) -> usize {
    let cs = if n < 32 - 8 { 32 } else { n.wrapping_add(8 + 15) & !15 };
    (cs >> 4).wrapping_sub(2)
}

#[inline(always)]
unsafe fn bin(c: usize) -> *mut Packed {
    (*core::ptr::addr_of!(BINS)).add(c * CAP)
}

#[inline(always)]
unsafe fn len(c: usize) -> *mut u32 {
    (core::ptr::addr_of_mut!(LEN) as *mut u32).add(c)
}

/// Whether chunks of `size` requested bytes can be kept.
#[inline(always)]
pub fn keeps(size: usize) -> bool {
    class_of_request(size.wrapping_add(super::options::PAD.load(Ordering::Relaxed))) < CLASSES
}

/// Set while the bins change: a signal handler's `malloc` on this thread meanwhile
/// goes to glibc (or, inside glibc, to the private region) instead of taking from them.
static mut BUSY: bool = false;

#[inline(always)]
unsafe fn busy(on: bool) {
    core::sync::atomic::compiler_fence(Ordering::SeqCst);
    *core::ptr::addr_of_mut!(BUSY) = on;
    core::sync::atomic::compiler_fence(Ordering::SeqCst);
}

/// The entry of a kept chunk for a request of `n` bytes (the pad included), if one of
/// its class is kept.
#[inline(always)]
unsafe fn take(n: usize) -> Option<Entry> {
    let c = class_of_request(n);
    if c >= CLASSES || !ON.load(Ordering::Relaxed) || !crate::chunkmap::single_threaded() || *core::ptr::addr_of!(BUSY) {
        return None;
    }
    let l = *len(c) as usize;
    if l == 0 {
        return None;
    }
    busy(true);
    let b = bin(c);
    let p = *b.add(l - 1);
    *len(c) = (l - 1) as u32;
    *core::ptr::addr_of_mut!(BYTES) -= (c + 2) << 4;
    busy(false);
    if l >= 3 {
        // (the chunk two places down, the next but one of this size: its header, first
        // line and end — it is read (header, free pattern), poisoned and its trailer
        // written as it is taken; without the header and end lines, user time +2 to
        // 6 %, without any, +7 %)
        use core::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        let q = (*b.add(l - 3)).base();
        _mm_prefetch::<_MM_HINT_T0>((q - 8) as *const i8);
        _mm_prefetch::<_MM_HINT_T0>(q as *const i8);
        _mm_prefetch::<_MM_HINT_T0>((q + ((c + 2) << 4) - 16) as *const i8);
    }
    Some(p.entry())
}

/// A kept chunk for a request of `n` bytes (the pad included), checked: its free
/// pattern (a damaged byte is a write after free, as when it left the quarantine), and
/// glibc's header, which must give the chunk the size of its class (a chunk a realloc
/// shrank in place is larger: checked and given to glibc instead).
pub unsafe fn take_checked(n: usize) -> Option<usize> {
    loop {
        let e = take(n)?;
        let h = *((e.base - 8) as *const usize);
        if h & 6 != 0 || h & !7 != (class_of_request(n) + 2) << 4 {
            super::quarantine::leave(e, true);
            continue;
        }
        super::quarantine::leave(e, false);
        return Some(e.base);
    }
}

/// Keep a chunk leaving the quarantine (not checked yet: it is checked when taken, or
/// given back to glibc, or at exit); false: not kept, the caller checks and frees it.
#[inline(always)]
pub(super) unsafe fn put(p: Packed) -> bool {
    // (a span object goes back to its span, which keeps it by size already)
    if !ON.load(Ordering::Relaxed) || !crate::chunkmap::single_threaded() || crate::smallheap::owns(p.base()) {
        return false;
    }
    let pad = super::options::PAD.load(Ordering::Relaxed);
    let c = class_of_request(p.size().wrapping_add(pad));
    let cs = (c + 2) << 4;
    if c >= CLASSES {
        return false;
    }
    let l = *len(c) as usize;
    if l >= CAP || *core::ptr::addr_of!(BYTES) + cs > LIMIT.load(Ordering::Relaxed) {
        return false;
    }
    match GLIBC.load(Ordering::Relaxed) {
        1 => {}
        0 => {
            let base = p.base();
            let yes = probe(base, *((base - 8) as *const usize));
            GLIBC.store(if yes { 1 } else { 2 }, Ordering::Relaxed);
            if !yes {
                return false;
            }
        }
        _ => return false,
    }
    busy(true);
    *bin(c).add(l) = p;
    *len(c) = (l + 1) as u32;
    *core::ptr::addr_of_mut!(BYTES) += cs;
    busy(false);
    ANY.store(true, Ordering::Relaxed);
    true
}

/// At each batch leaving the quarantine (by its thread, before the batch's chunks
/// come in): the chunks kept since before the previous batch and still not taken are
/// checked and go back to glibc, so a size the program no longer asks for holds nothing
/// for long; with more than one thread now, all of them.
pub unsafe fn age() {
    if !ANY.load(Ordering::Relaxed) {
        return;
    }
    let all = !crate::chunkmap::single_threaded();
    let marks = &mut *core::ptr::addr_of_mut!(MARK);
    let mut any = false;
    // (the whole time: the chunks checked and freed here are still in their bins)
    busy(true);
    for c in 0..CLASSES {
        let l = *len(c) as usize;
        let old = if all { l } else { (marks[c] as usize).min(l) };
        let b = bin(c);
        for i in 0..old {
            super::quarantine::leave((*b.add(i)).entry(), true);
        }
        if old > 0 {
            core::ptr::copy(b.add(old), b, l - old);
            *core::ptr::addr_of_mut!(BYTES) -= old * ((c + 2) << 4);
            *len(c) = (l - old) as u32;
        }
        marks[c] = (l - old) as u32;
        any |= l > old;
    }
    busy(false);
    ANY.store(any, Ordering::Relaxed);
}

/// At exit: the free pattern of every chunk kept (they stay allocated).
pub unsafe fn check_all() {
    if !ANY.load(Ordering::Relaxed) {
        return;
    }
    for c in 0..CLASSES {
        for i in 0..*len(c) as usize {
            super::quarantine::leave((*bin(c).add(i)).entry(), false);
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn classes_are_glibc_chunk_sizes() {
        // glibc: request2size(n) = max(32, (n + 8 + 15) & ~15)
        for n in 0..2000usize {
            let cs = ((n + 8 + 15) & !15).max(32);
            assert_eq!(super::class_of_request(n), (cs >> 4) - 2, "n {n}");
        }
    }

    #[test]
    fn the_probe_knows_glibc_chunks() {
        // (cargo test runs on glibc's malloc: the probe must take its chunks for glibc's,
        // and not a chunk whose header does not match)
        let f = unsafe { libc::dlsym(libc::RTLD_NEXT, c"malloc_usable_size".as_ptr()) };
        super::USABLE.store(f as usize, super::Ordering::Relaxed);
        for n in [1usize, 20, 24, 100, 1000] {
            let p = unsafe { super::__libc_malloc(n) } as usize;
            let h = unsafe { *((p - 8) as *const usize) };
            assert!(unsafe { super::probe(p, h) }, "n {n}");
            assert!(!unsafe { super::probe(p, h + 16) }, "n {n}");
            unsafe { super::__libc_free(p as *mut _) };
        }
    }
}

