//! The index of glibc heap chunks: one start bit per 16-byte granule of heap, and an
//! 8-byte trailer inside each chunk holding its site and size.
//!
//! Why this shape: on allocation-heavy programs the index runs on every malloc and free,
//! so it must not touch memory the allocator has not just touched. The interposed
//! allocators ask glibc for 8 bytes more than the program did; the trailer sits in the
//! last 8 usable bytes, next to the following chunk's header that glibc reads and
//! writes anyway. The start bits (1/128 of the heap's size) stay in cache; they say
//! which addresses are indexed chunks (so `free` of a chunk made before the runtime
//! started, or never indexed, is recognised) and give interior-pointer lookups a floor
//! search that is bounded by the largest bitmapped chunk.
//!
//! Chunks glibc mmap'd, chunks larger than `MAX_SMALL` and the odd chunk whose slack
//! does not fit the trailer go to a sorted table (`BIG`) instead, without a trailer.
//!
//! Bits change with plain stores while the process is single-threaded
//! (`__libc_single_threaded`, which glibc clears before the first thread is created)
//! and with atomic read-modify-writes after.
use crate::index::{child, Big, BigTab, Chunk};
use core::ptr::null_mut;
use core::sync::atomic::{AtomicI64, AtomicPtr, AtomicU64, Ordering};

/// Bytes the interposed allocators add to each request.
pub const TRAILER: usize = 8;
/// Largest usable size kept in the bitmap.
pub const MAX_SMALL: usize = 128 * 1024;
const PAGE_SHIFT: u32 = 19; // one 4 KiB bitmap page covers 512 KiB of heap
const WORDS: usize = 512;
const ADDR_LIMIT: usize = 1 << 47;
const TOP: usize = 1024; // key = addr >> 19 has 28 bits: 10 (top) + 9 (mid) + 9 (leaf)

static TOP_TAB: [AtomicPtr<u8>; TOP] = [const { AtomicPtr::new(null_mut()) }; TOP];
/// Chunks outside the bitmap.
pub static BIG: BigTab = BigTab::new();
/// Bitmap pages ever created.
pub static PAGES: AtomicU64 = AtomicU64::new(0);
/// Indexed chunks found already marked at allocation (freed behind the runtime's back).
pub static STALE: AtomicU64 = AtomicU64::new(0);
/// Frees of indexed chunks whose trailer had been overwritten (a heap overflow).
pub static OVERWRITTEN: AtomicU64 = AtomicU64::new(0);

pub const STATIC_BYTES: u64 = (TOP * 8) as u64;

extern "C" {
    static __libc_single_threaded: u8;
}
#[inline(always)]
fn single_threaded() -> bool {
    unsafe { core::ptr::read_volatile(core::ptr::addr_of!(__libc_single_threaded)) != 0 }
}

/// glibc's chunk header word before `p`: usable size, and whether glibc mmap'd it.
#[inline(always)]
pub unsafe fn header(p: usize) -> (usize, bool) {
    decode_header(*((p - 8) as *const usize))
}
#[inline(always)]
fn decode_header(h: usize) -> (usize, bool) {
    let sz = h & !7;
    if h & 2 != 0 {
        (sz.wrapping_sub(16), true)
    } else {
        (sz.wrapping_sub(8), false)
    }
}

#[inline(always)]
fn check(base: usize) -> u64 {
    (((base >> 4) as u64) ^ 0x5a_c3a5) & 0xff_ffff
}
#[inline(always)]
fn encode(base: usize, slack: usize, id: u32) -> u64 {
    id as u64 | (slack as u64) << 32 | check(base) << 40
}
/// (requested size, site id) from a trailer word, None when it is not this chunk's.
#[inline(always)]
fn decode(base: usize, usable: usize, t: u64) -> Option<(usize, u32)> {
    let id = t as u32;
    let slack = ((t >> 32) & 0xff) as usize;
    if t >> 40 != check(base) || id == 0 || slack + TRAILER > usable {
        return None;
    }
    Some((usable - TRAILER - slack, id))
}

/// The bitmap page of `key` (= addr >> 19), through the directory.
fn page_slow(key: usize, create: bool) -> Option<*mut AtomicU64> {
    let mid = child(&TOP_TAB[(key >> 18) & (TOP - 1)], create, 4096)?;
    let leaf = child(unsafe { &(*(mid as *const [AtomicPtr<u8>; 512]))[(key >> 9) & 511] }, create, 4096)?;
    let slot = unsafe { &(*(leaf as *const [AtomicPtr<u8>; 512]))[key & 511] };
    let had = !slot.load(Ordering::Acquire).is_null();
    let pg = child(slot, create, WORDS * 8)?;
    if !had {
        PAGES.fetch_add(1, Ordering::Relaxed);
    }
    Some(pg.cast())
}

/// The bitmap page through this thread's two-entry cache (pages are never freed, so a
/// cached address stays valid). Only for code under the runtime's guard: a signal
/// handler's update could otherwise land between reading a key and its page.
#[inline(always)]
fn page(key: usize, create: bool) -> Option<*mut AtomicU64> {
    let h = crate::tls::hot();
    let w = key & 1;
    unsafe {
        if (*h).pg_key[w] == key + 1 {
            return Some((*h).pg_ptr[w] as *mut AtomicU64);
        }
        let pg = page_slow(key, create)?;
        (*h).pg_key[w] = key + 1;
        (*h).pg_ptr[w] = pg as usize;
        Some(pg)
    }
}

/// Word and bit of the granule at `p` in its page.
#[inline(always)]
fn pos(p: usize) -> (usize, u64) {
    let g = (p >> 4) & (WORDS * 64 - 1);
    (g >> 6, 1u64 << (g & 63))
}

/// Trailers are charged to the metadata count per thread in steps of this many.
const TRAIL_STEP: i32 = 512;

/// Count trailer bytes as metadata, in steps (a plain per-thread counter on the fast
/// path). Past the cap, new chunks stop being indexed.
#[inline(always)]
unsafe fn charge_trailers(d: i32) {
    let h = crate::tls::hot();
    let t = (*h).trail + d;
    (*h).trail = t;
    if t >= TRAIL_STEP {
        if crate::arena::charge((TRAIL_STEP as usize * TRAILER) as u64) {
            (*h).trail = t - TRAIL_STEP;
        } else {
            crate::arena::INDEXING.store(false, Ordering::Relaxed);
        }
    } else if t <= -TRAIL_STEP {
        crate::arena::META_BYTES.fetch_sub((TRAIL_STEP as usize * TRAILER) as u64, Ordering::Relaxed);
        (*h).trail = t + TRAIL_STEP;
    }
}

/// Indexed chunks (bitmap and `BIG`), as flushed from the threads' counters: each
/// thread keeps its change since its last flush in the hot block (`live`, plain
/// stores) and moves it here every `LIVE_STEP` chunks of change.
pub static LIVE_CHUNKS: AtomicI64 = AtomicI64::new(0);
/// Highest number of indexed chunks seen: `LIVE_CHUNKS` before a flush plus the
/// flushing thread's highest point since its previous one. Exact while one thread
/// allocates; with n threads, each other thread's unflushed change (below `LIVE_STEP`)
/// is missing from it.
pub static PEAK_LIVE_CHUNKS: AtomicI64 = AtomicI64::new(0);
const LIVE_STEP: i32 = 256;

#[inline(always)]
unsafe fn count_live(d: i32) {
    let h = crate::tls::hot();
    let t = (*h).live + d;
    (*h).live = t;
    if t > (*h).live_max {
        (*h).live_max = t;
    }
    if t >= LIVE_STEP || t <= -LIVE_STEP {
        flush_live(h);
    }
}

/// Move this thread's live-chunk change into `LIVE_CHUNKS` (and its peak into
/// `PEAK_LIVE_CHUNKS`). Only by the owning thread, under its guard.
#[cold]
#[inline(never)]
pub unsafe fn flush_live(h: *mut crate::tls::Hot) {
    let (t, m) = ((*h).live, (*h).live_max);
    (*h).live = 0;
    (*h).live_max = 0;
    let before = LIVE_CHUNKS.fetch_add(t as i64, Ordering::Relaxed);
    if m > 0 {
        PEAK_LIVE_CHUNKS.fetch_max(before + m as i64, Ordering::Relaxed);
    }
}

/// The peak number of indexed chunks (see `PEAK_LIVE_CHUNKS`), after flushing this
/// thread's change; never below `now` (the chunks the index holds at the moment).
pub fn peak_live_chunks(now: u64) -> u64 {
    crate::tls::guarded(crate::tls::GUARD_INTERNAL, || unsafe { flush_live(crate::tls::hot()) });
    (PEAK_LIVE_CHUNKS.load(Ordering::Relaxed).max(0) as u64).max(now)
}

/// Index a chunk glibc just returned for a request of `n + TRAILER` bytes. Err when the
/// metadata cap refused a bitmap page.
pub unsafe fn insert(p: usize, n: usize, id: u32) -> Result<(), ()> {
    let (usable, mmapped) = header(p);
    let slack = usable.wrapping_sub(n + TRAILER);
    if mmapped || usable > MAX_SMALL || slack > 0xff || p >= ADDR_LIMIT {
        return insert_big(p, n, id);
    }
    let pg = page(p >> PAGE_SHIFT, true).ok_or(())?;
    *((p + usable - TRAILER) as *mut u64) = encode(p, slack, id);
    let (w, b) = pos(p);
    let word = &*pg.add(w);
    let old = if single_threaded() {
        let v = word.load(Ordering::Relaxed);
        word.store(v | b, Ordering::Relaxed);
        v
    } else {
        word.fetch_or(b, Ordering::Relaxed)
    };
    if old & b != 0 {
        STALE.fetch_add(1, Ordering::Relaxed);
    } else {
        charge_trailers(1);
        count_live(1);
    }
    Ok(())
}

fn insert_big(p: usize, n: usize, id: u32) -> Result<(), ()> {
    BIG.lock.lock();
    let r = BIG.insert(Big { base: p, size: n, id: id as u64 });
    BIG.lock.unlock();
    match r {
        Ok(Some(_)) => {
            STALE.fetch_add(1, Ordering::Relaxed);
        }
        Ok(None) => unsafe { count_live(1) },
        Err(()) => {}
    }
    r.map(|_| ())
}

/// Whether `p` (a chunk glibc gave out) carries a trailer.
pub unsafe fn has_trailer(p: usize) -> bool {
    if p >= ADDR_LIMIT {
        return false;
    }
    let Some(pg) = page_slow(p >> PAGE_SHIFT, false) else {
        return false;
    };
    let (w, b) = pos(p);
    (*pg.add(w)).load(Ordering::Relaxed) & b != 0
}

/// Remove the chunk based at `p` (a chunk glibc gave out, about to be freed or
/// reallocated). None when it was not indexed. `quiet`: only unmark it (a signal
/// handler interrupted the runtime on this thread; nothing else may be touched).
pub unsafe fn remove(p: usize, quiet: bool) -> Option<Chunk> {
    let (usable, mmapped) = header(p);
    if !mmapped && usable <= MAX_SMALL && p < ADDR_LIMIT {
        // (quiet: the interrupted runtime may be halfway through updating the page cache)
        let pg = if quiet { page_slow(p >> PAGE_SHIFT, false) } else { page(p >> PAGE_SHIFT, false) };
        if let Some(pg) = pg {
            let (w, b) = pos(p);
            let word = &*pg.add(w);
            let v = word.load(Ordering::Relaxed);
            if v & b != 0 {
                if quiet || !single_threaded() {
                    word.fetch_and(!b, Ordering::Relaxed);
                } else {
                    word.store(v & !b, Ordering::Relaxed);
                }
                if quiet {
                    return None;
                }
                charge_trailers(-1);
                count_live(-1);
                let t = *((p + usable - TRAILER) as *const u64);
                return match decode(p, usable, t) {
                    Some((size, id)) => Some(Chunk { base: p, size, id }),
                    None => {
                        OVERWRITTEN.fetch_add(1, Ordering::Relaxed);
                        None
                    }
                };
            }
        }
        // a small chunk not in the bitmap may still be in BIG (its slack did not fit)
    }
    if quiet || BIG.len() == 0 {
        return None;
    }
    BIG.lock.lock();
    let r = BIG.remove(p);
    BIG.lock.unlock();
    if r.is_some() {
        count_live(-1);
    }
    r.map(|b| Chunk { base: b.base, size: b.size, id: b.id as u32 })
}

// ---------------------------------------------------------------- readers

/// Read words other threads may be freeing (and glibc unmapping) meanwhile: directly
/// while single-threaded, else through `process_vm_readv` on this process, which fails
/// instead of faulting. `ok[i]` says whether `out[i]` was read.
fn read_words(addrs: &[usize], out: &mut [u64], ok: &mut [bool]) {
    if single_threaded() {
        for i in 0..addrs.len() {
            out[i] = unsafe { *(addrs[i] as *const u64) };
            ok[i] = true;
        }
        return;
    }
    let pid = unsafe { libc::getpid() };
    let mut i = 0;
    while i < addrs.len() {
        let k = (addrs.len() - i).min(256);
        let mut local = [libc::iovec { iov_base: null_mut(), iov_len: 0 }; 256];
        let mut remote = [libc::iovec { iov_base: null_mut(), iov_len: 0 }; 256];
        for j in 0..k {
            local[j] = libc::iovec { iov_base: (&mut out[i + j]) as *mut u64 as *mut _, iov_len: 8 };
            remote[j] = libc::iovec { iov_base: addrs[i + j] as *mut _, iov_len: 8 };
        }
        let r = unsafe { libc::process_vm_readv(pid, local.as_ptr(), k as _, remote.as_ptr(), k as _, 0) };
        if r < 0 {
            let e = unsafe { *libc::__errno_location() };
            if e == libc::EFAULT {
                ok[i] = false;
                i += 1;
                continue;
            }
            // no such system call here (seccomp, old kernel): read directly
            for j in i..i + k {
                out[j] = unsafe { *(addrs[j] as *const u64) };
                ok[j] = true;
            }
            i += k;
            continue;
        }
        let done = (r as usize / 8).min(k);
        for o in ok[i..i + done].iter_mut() {
            *o = true;
        }
        if done < k {
            ok[i + done] = false; // unreadable: skip it
            i += done + 1;
        } else {
            i += k;
        }
    }
}

/// Chunks based at `bases` (bitmap starts), read safely; calls `f` with each valid one.
fn resolve(bases: &[usize], f: &mut dyn FnMut(Chunk) -> bool) -> bool {
    let n = bases.len();
    let mut hdr_at = [0usize; 256];
    let mut words = [0u64; 256];
    let mut ok = [false; 256];
    for (i, &b) in bases.iter().enumerate() {
        hdr_at[i] = b - 8;
    }
    read_words(&hdr_at[..n], &mut words[..n], &mut ok[..n]);
    let mut usable = [0usize; 256];
    let mut tr_at = [0usize; 256];
    let mut m = 0;
    let mut which = [0usize; 256];
    for i in 0..n {
        let (u, mm) = decode_header(words[i] as usize);
        if ok[i] && !mm && u <= MAX_SMALL && u >= TRAILER {
            usable[m] = u;
            tr_at[m] = bases[i] + u - TRAILER;
            which[m] = i;
            m += 1;
        }
    }
    read_words(&tr_at[..m], &mut words[..m], &mut ok[..m]);
    for j in 0..m {
        let base = bases[which[j]];
        if let Some((size, id)) = ok[j].then(|| decode(base, usable[j], words[j])).flatten() {
            if f(Chunk { base, size, id }) {
                return true;
            }
        }
    }
    false
}

/// The greatest marked start ≤ p that could begin a bitmapped chunk holding p.
fn floor_start(p: usize) -> Option<usize> {
    let lo = p.saturating_sub(MAX_SMALL) & !15;
    let mut a = p & !15;
    loop {
        let key = a >> PAGE_SHIFT;
        if let Some(pg) = page_slow(key, false) {
            let g = (a >> 4) & (WORDS * 64 - 1);
            let mut w = g >> 6;
            let mut bits = unsafe { (*pg.add(w)).load(Ordering::Relaxed) } & (u64::MAX >> (63 - (g & 63)));
            loop {
                if bits != 0 {
                    let base = (key << PAGE_SHIFT) | ((w << 6 | (63 - bits.leading_zeros() as usize)) << 4);
                    return (base >= lo).then_some(base);
                }
                if w == 0 || (key << PAGE_SHIFT) + (w << 10) <= lo {
                    break;
                }
                w -= 1;
                bits = unsafe { (*pg.add(w)).load(Ordering::Relaxed) };
            }
        }
        let start = key << PAGE_SHIFT;
        if start == 0 || start <= lo {
            return None;
        }
        a = start - 16;
    }
}

/// The chunk holding `p` (any interior pointer). `wait`: false → never wait for a lock.
pub fn lookup(p: usize, wait: bool) -> Option<Chunk> {
    if p < ADDR_LIMIT {
        if let Some(base) = floor_start(p) {
            let mut found = None;
            resolve(&[base], &mut |c| {
                if p < c.base + c.size.max(1) {
                    found = Some(c);
                }
                true
            });
            if found.is_some() {
                return found;
            }
        }
    }
    if BIG.len() == 0 {
        return None;
    }
    if wait {
        BIG.lock.lock();
    } else if !BIG.lock.try_lock() {
        return None;
    }
    let b = BIG.find(p);
    BIG.lock.unlock();
    b.map(|b| Chunk { base: b.base, size: b.size, id: b.id as u32 })
}

/// Every indexed chunk (bitmap, then BIG); `f` returns true to stop. Returns the number
/// visited.
pub fn for_each_chunk(f: &mut dyn FnMut(Chunk) -> bool) -> usize {
    let mut n = 0usize;
    let mut bases = [0usize; 256];
    let mut k = 0;
    let mut stop = false;
    let mut count = |c: Chunk| {
        n += 1;
        f(c)
    };
    'top: for (ti, t) in TOP_TAB.iter().enumerate() {
        let mid = t.load(Ordering::Acquire);
        if mid.is_null() {
            continue;
        }
        for mi in 0..512 {
            let leaf = unsafe { (*(mid as *const [AtomicPtr<u8>; 512]))[mi].load(Ordering::Acquire) };
            if leaf.is_null() {
                continue;
            }
            for li in 0..512 {
                let pg = unsafe { (*(leaf as *const [AtomicPtr<u8>; 512]))[li].load(Ordering::Acquire) } as *const AtomicU64;
                if pg.is_null() {
                    continue;
                }
                let key = (ti << 18) | (mi << 9) | li;
                for w in 0..WORDS {
                    let mut bits = unsafe { (*pg.add(w)).load(Ordering::Relaxed) };
                    while bits != 0 {
                        let b = bits.trailing_zeros() as usize;
                        bits &= bits - 1;
                        bases[k] = (key << PAGE_SHIFT) | ((w << 6 | b) << 4);
                        k += 1;
                        if k == bases.len() {
                            if resolve(&bases[..k], &mut count) {
                                stop = true;
                                break 'top;
                            }
                            k = 0;
                        }
                    }
                }
            }
        }
    }
    if !stop && k > 0 {
        stop = resolve(&bases[..k], &mut count);
    }
    if !stop {
        let mut i = 0;
        loop {
            let Some(b) = BIG.nth(i) else { break };
            if count(Chunk { base: b.base, size: b.size, id: b.id as u32 }) {
                break;
            }
            i += 1;
        }
    }
    n
}
