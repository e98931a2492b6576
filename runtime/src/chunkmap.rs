//! The index of glibc heap chunks: two bits per 16-byte granule of heap (a start bit and
//! an out-of-band bit), and each chunk's record (site id, requested size) either in an
//! 8-byte trailer inside the chunk or, when the chunk has no room for one, in a small
//! out-of-band table of its bitmap page.
//!
//! Why this shape: on allocation-heavy programs the index runs on every malloc and free,
//! so it must not touch memory the allocator has not just touched, and it must not make
//! the program's heap bigger. The interposed allocators ask glibc for exactly what the
//! program asked for. glibc rounds every request up to its size class (usable sizes
//! 24, 40, 56, …): when that leaves 8 or more spare bytes, the record goes into the last
//! 8 usable bytes (the trailer), next to the following chunk's header that glibc reads
//! and writes anyway; otherwise (a 24-byte request in a 24-byte chunk) into the
//! out-of-band table of the chunk's bitmap page — 4 bytes per chunk at ≤ 3/4 load,
//! instead of the 16 bytes a larger size class would cost. The bitmap's second bit per
//! granule says which of the two holds the record, so `free` looks at exactly one.
//! The bits (1/64 of the heap's size) stay in cache; the start bits say which addresses
//! are indexed chunks (so `free` of a chunk made before the runtime started, or never
//! indexed, is recognised) and give interior-pointer lookups a floor search that is
//! bounded by the largest bitmapped chunk.
//!
//! Chunks glibc mmap'd, chunks larger than `MAX_SMALL`, the odd chunk whose slack does
//! not fit the trailer and out-of-band chunks of site ids ≥ 2^15 go to a sorted table
//! (`BIG`) instead.
//!
//! Bits change with plain stores while the process is single-threaded
//! (`__libc_single_threaded`, which glibc clears before the first thread is created)
//! and with atomic read-modify-writes after; the out-of-band tables are changed under
//! one of 64 striped spin locks once there are threads.
use crate::index::{child, Big, BigTab, Chunk};
use crate::oob;
use core::ptr::null_mut;
use core::sync::atomic::{AtomicI64, AtomicPtr, AtomicU64, Ordering};

/// Size of an in-chunk record.
pub const TRAILER: usize = 8;
/// Largest usable size kept in the bitmap.
pub const MAX_SMALL: usize = 128 * 1024;
const PAGE_SHIFT: u32 = 19; // one 8 KiB bitmap page (2 bits per granule) covers 512 KiB of heap
const WORDS: usize = 1024; // 32 granules per word
const GRANULES: usize = WORDS * 32;
const ADDR_LIMIT: usize = 1 << 47;
// key = addr >> 19 has 28 bits: 11 (top) + 9 (mid) + 8 (leaf of 16-byte slots)
const TOP: usize = 2048;
const LEAF: usize = 256;
/// Start bits of the 32 granules of a word (the odd bits are out-of-band bits).
const STARTS: u64 = 0x5555_5555_5555_5555;

/// A bitmap page and its out-of-band table (a leaf slot of the directory).
#[repr(C)]
pub struct Slot {
    page: AtomicPtr<u8>,
    /// The directory of the page's out-of-band record arrays, one per 4 KiB region.
    oob: AtomicPtr<u32>,
}

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
    static mut __libc_single_threaded: u8;
}
/// Whether the process has one thread (glibc clears the flag before it creates the
/// first thread). A plain read: while it is set no other thread can clear it, so the
/// compiler may reuse one read for the rest of a call (not across calls it cannot see).
#[inline(always)]
pub fn single_threaded() -> bool {
    unsafe { core::ptr::read(core::ptr::addr_of!(__libc_single_threaded)) != 0 }
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

/// The directory slot of `key` (= addr >> 19); `create`: make the path and the page.
fn slot_slow(key: usize, create: bool) -> Option<*const Slot> {
    let mid = child(&TOP_TAB[(key >> 17) & (TOP - 1)], create, 4096)?;
    let leaf = child(unsafe { &(*(mid as *const [AtomicPtr<u8>; 512]))[(key >> 8) & 511] }, create, 4096)?;
    let slot = unsafe { &(*(leaf as *const [Slot; LEAF]))[key & (LEAF - 1)] };
    if create && slot.page.load(Ordering::Acquire).is_null() {
        child(&slot.page, true, WORDS * 8)?;
        PAGES.fetch_add(1, Ordering::Relaxed);
    } else if slot.page.load(Ordering::Acquire).is_null() {
        return None;
    }
    Some(slot)
}

/// The slot through this thread's two-entry cache (pages are never freed, so a cached
/// address stays valid). Only for code under the runtime's guard: a signal handler's
/// update could otherwise land between reading a key and its slot.
#[inline(always)]
fn slot(key: usize, create: bool) -> Option<*const Slot> {
    let h = crate::tls::hot();
    let w = key & 1;
    unsafe {
        if (*h).pg_key[w] == key + 1 {
            return Some((*h).pg_ptr[w] as *const Slot);
        }
        let s = slot_slow(key, create)?;
        (*h).pg_key[w] = key + 1;
        (*h).pg_ptr[w] = s as usize;
        Some(s)
    }
}

#[inline(always)]
unsafe fn page_words(s: *const Slot) -> *const AtomicU64 {
    (*s).page.load(Ordering::Relaxed) as *const AtomicU64
}

/// Granule index of `p` in its page, the word holding its bits and their shift.
#[inline(always)]
fn pos(p: usize) -> (usize, usize, u32) {
    let g = (p >> 4) & (GRANULES - 1);
    (g, g >> 5, ((g & 31) * 2) as u32)
}

// ---------------------------------------------------------------- out-of-band records

const _: () = assert!(oob::REGIONS << oob::REGION_SHIFT == 1 << PAGE_SHIFT);

/// The record of the out-of-band chunk at `p` (readers). `wait`: false → never wait.
unsafe fn oob_get(key: usize, s: *const Slot, p: usize, wait: bool) -> Option<u32> {
    let st = single_threaded();
    let l = oob::lock(key);
    if st {
        // (writers take no lock while single-threaded: a reader that may have
        // interrupted one — a signal handler inside the runtime — must not look)
        if !wait {
            return None;
        }
    } else if wait {
        l.lock();
    } else if !l.try_lock() {
        return None;
    }
    let mut out = None;
    let (_, w, sh) = pos(p);
    if ((*page_words(s).add(w)).load(Ordering::Relaxed) >> sh) & 3 == 3 {
        out = oob::get(&(*s).oob, p);
    }
    if !st {
        l.unlock();
    }
    out
}

/// Index an out-of-band chunk (under the stripe lock once there are threads): its
/// record, then its bits. Returns the word's bits before, with the start bit of `p`'s
/// granule also set when the other granule of its pair held an indexed out-of-band
/// chunk: one that was freed behind the runtime's back (no live chunk starts 16 bytes
/// from another), whose slot this record takes — it is dropped, and the new chunk
/// counts as stale in its place.
#[inline(always)]
unsafe fn insert_oob(s: *const Slot, p: usize, word: &AtomicU64, sh: u32, e: u32, st: bool) -> Result<u64, ()> {
    oob::set(&(*s).oob, p, e)?;
    let mut old = if st {
        let v = word.load(Ordering::Relaxed);
        word.store(v | 3 << sh, Ordering::Relaxed);
        v
    } else {
        word.fetch_or(3 << sh, Ordering::Relaxed)
    };
    // (the pair's other granule: sh ^ 2, in the same word)
    let other = (old >> (sh ^ 2)) & 3;
    if other & 2 != 0 {
        stale_pair(word, sh ^ 2, other);
        if other == 3 {
            old |= 1 << sh;
        }
    }
    Ok(old)
}

/// An orphan's or a stale chunk's bits in the other granule of a new out-of-band
/// chunk's pair: the slot is no longer theirs.
#[cold]
#[inline(never)]
fn stale_pair(word: &AtomicU64, sh: u32, bits: u64) {
    word.fetch_and(!(bits << sh), Ordering::Relaxed);
}

/// Drop the out-of-band bit of the granule of `p` (an orphan's, or a stale chunk's,
/// found where a chunk with a trailer now starts; its slot may now be the other
/// granule's).
#[cold]
#[inline(never)]
unsafe fn drop_orphan(key: usize, word: &AtomicU64, sh: u32) {
    let st = single_threaded();
    if !st {
        oob::lock(key).lock();
    }
    word.fetch_and(!(2 << sh), Ordering::Relaxed);
    if !st {
        oob::lock(key).unlock();
    }
}

/// fork: hold the out-of-band tables' locks across it (`lib.rs`).
pub fn lock_oob() {
    oob::lock_all();
}
pub fn unlock_oob() {
    oob::unlock_all();
}

// ---------------------------------------------------------------- live chunks

/// Indexed chunks (bitmap and `BIG`), as flushed from the threads' counters: once there
/// are threads, each thread keeps its change since its last flush in the hot block
/// (`live`, plain stores) and moves it here every `LIVE_STEP` chunks of change; while
/// the process has one thread, the change goes here directly.
pub static LIVE_CHUNKS: AtomicI64 = AtomicI64::new(0);
/// Highest number of indexed chunks seen: `LIVE_CHUNKS` before a flush plus the
/// flushing thread's highest point since its previous one. Exact while one thread
/// allocates; with n threads, each other thread's unflushed change (below `LIVE_STEP`)
/// is missing from it.
pub static PEAK_LIVE_CHUNKS: AtomicI64 = AtomicI64::new(0);
const LIVE_STEP: i32 = 256;

#[inline(always)]
pub unsafe fn count_live(d: i32, st: bool) {
    if st {
        // (one thread: the totals themselves, with plain stores; the same peak as the
        // per-thread batches below give a single thread)
        let t = LIVE_CHUNKS.load(Ordering::Relaxed) + d as i64;
        LIVE_CHUNKS.store(t, Ordering::Relaxed);
        if t > PEAK_LIVE_CHUNKS.load(Ordering::Relaxed) {
            PEAK_LIVE_CHUNKS.store(t, Ordering::Relaxed);
        }
        return;
    }
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

// ---------------------------------------------------------------- insert, remove

/// Index a chunk glibc just returned for a request of `n` bytes (plus the checks'
/// padding, if any). Err when the metadata cap refused memory (then no new chunk is
/// indexed from now on).
#[inline(always)]
pub unsafe fn insert(p: usize, n: usize, id: u32) -> Result<(), ()> {
    let r = insert_any(p, n, id);
    if r.is_err() {
        refused();
    }
    r
}

#[cold]
#[inline(never)]
fn refused() {
    crate::arena::INDEXING.store(false, Ordering::Relaxed);
}

#[inline(always)]
unsafe fn insert_any(p: usize, n: usize, id: u32) -> Result<(), ()> {
    let (usable, mmapped) = header(p);
    if mmapped || usable > MAX_SMALL || p >= ADDR_LIMIT {
        return insert_big(p, n, id);
    }
    let spare = usable.wrapping_sub(n);
    let key = p >> PAGE_SHIFT;
    let s = slot(key, true).ok_or(())?;
    let (_, w, sh) = pos(p);
    let word = &*page_words(s).add(w);
    let st = single_threaded();
    let old = if spare >= TRAILER && spare - TRAILER <= 0xff {
        *((p + usable - TRAILER) as *mut u64) = encode(p, spare - TRAILER, id);
        let old = if st {
            let v = word.load(Ordering::Relaxed);
            word.store(v | 1 << sh, Ordering::Relaxed);
            v
        } else {
            word.fetch_or(1 << sh, Ordering::Relaxed)
        };
        if (old >> sh) & 2 != 0 {
            drop_orphan(key, word, sh);
        }
        old
    } else if spare < TRAILER && id < oob::ID_LIMIT {
        let e = id << 3 | spare as u32;
        let r = if st {
            insert_oob(s, p, word, sh, e, true)
        } else {
            let l = oob::lock(key);
            l.lock();
            let r = insert_oob(s, p, word, sh, e, false);
            l.unlock();
            r
        };
        match r {
            Ok(old) => old,
            // (the metadata cap refused an array: BIG will likely be refused too)
            Err(()) => return insert_big(p, n, id),
        }
    } else {
        return insert_big(p, n, id);
    };
    if (old >> sh) & 1 != 0 {
        STALE.fetch_add(1, Ordering::Relaxed);
    } else {
        count_live(1, st);
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
        Ok(None) => unsafe { count_live(1, single_threaded()) },
        Err(()) => {}
    }
    r.map(|_| ())
}

/// Whether `p` (a chunk glibc gave out) is indexed with a trailer in its last 8 usable
/// bytes.
pub unsafe fn has_trailer(p: usize) -> bool {
    if p >= ADDR_LIMIT {
        return false;
    }
    let Some(s) = slot_slow(p >> PAGE_SHIFT, false) else {
        return false;
    };
    let (_, w, sh) = pos(p);
    ((*page_words(s).add(w)).load(Ordering::Relaxed) >> sh) & 3 == 1
}

/// What both fast paths start from: the usable size of the bitmapped chunk at `p`,
/// its page's slot, the bitmap word holding its bits and their shift — when the chunk
/// is small, not mmap'd, and its page is in this thread's two-entry cache (no
/// directory walk on the fast paths). (The word comes as a raw pointer: as a reference
/// it would be the Option's niche, and the compiler would test it for null.)
#[inline(always)]
unsafe fn cached_word(h: *mut crate::tls::Hot, p: usize) -> Option<(usize, *const Slot, *const AtomicU64, u32)> {
    let (usable, mmapped) = header(p);
    let key = p >> PAGE_SHIFT;
    let w = key & 1;
    if mmapped || usable > MAX_SMALL || p >= ADDR_LIMIT || (*h).pg_key[w] != key + 1 {
        return None;
    }
    let s = (*h).pg_ptr[w] as *const Slot;
    let (_, wi, sh) = pos(p);
    Some((usable, s, page_words(s).add(wi), sh))
}

/// `insert` in the common case, in one straight line for a single-threaded process
/// (the caller checked `single_threaded()` and holds the guard): a bitmapped chunk
/// whose page this thread's cache holds, whose granule pair is clear, and whose record
/// fits its trailer or its region's existing out-of-band block. False, with nothing
/// changed, when any of that does not hold (`insert` then does the whole work).
#[inline(always)]
pub unsafe fn insert_fast(h: *mut crate::tls::Hot, p: usize, n: usize, id: u32) -> bool {
    let Some((usable, s, word, sh)) = cached_word(h, p) else {
        return false;
    };
    let word = &*word;
    let v = word.load(Ordering::Relaxed);
    // (both granules of the pair: nothing stale, no orphan)
    if (v >> (sh & !2)) & 15 != 0 {
        return false;
    }
    let spare = usable.wrapping_sub(n);
    if spare >= TRAILER && spare - TRAILER <= 0xff {
        *((p + usable - TRAILER) as *mut u64) = encode(p, spare - TRAILER, id);
        word.store(v | 1 << sh, Ordering::Relaxed);
    } else if spare < TRAILER && id < oob::ID_LIMIT && oob::set_existing(&(*s).oob, p, id << 3 | spare as u32) {
        word.store(v | 3 << sh, Ordering::Relaxed);
    } else {
        return false;
    }
    count_live(1, true);
    true
}

/// `remove` in the common case, in one straight line for a single-threaded process
/// (the caller checked `single_threaded()` and holds the guard): a bitmapped chunk
/// whose page this thread's cache holds and whose record decodes. `(size, site id)`,
/// or None with nothing changed when any of that does not hold (`remove` then does the
/// whole work, counting what it finds).
#[inline(always)]
pub unsafe fn remove_fast(h: *mut crate::tls::Hot, p: usize) -> Option<(usize, u32)> {
    let (usable, s, word, sh) = cached_word(h, p)?;
    let word = &*word;
    let v = word.load(Ordering::Relaxed);
    let r = match (v >> sh) & 3 {
        1 => decode(p, usable, *((p + usable - TRAILER) as *const u64))?,
        3 => {
            let e = oob::get(&(*s).oob, p)?;
            (usable.checked_sub((e & 7) as usize)?, e >> 3)
        }
        _ => return None,
    };
    word.store(v & !(3 << sh), Ordering::Relaxed);
    count_live(-1, true);
    Some(r)
}

/// Remove the chunk based at `p` (a chunk glibc gave out, about to be freed or
/// reallocated). None when it was not indexed. `quiet`: only unmark it (a signal
/// handler interrupted the runtime on this thread; nothing else may be touched).
#[inline(always)]
pub unsafe fn remove(p: usize, quiet: bool) -> Option<Chunk> {
    let (usable, mmapped) = header(p);
    if !mmapped && usable <= MAX_SMALL && p < ADDR_LIMIT {
        let key = p >> PAGE_SHIFT;
        // (quiet: the interrupted runtime may be halfway through updating the page cache)
        let s = if quiet { slot_slow(key, false) } else { slot(key, false) };
        if let Some(s) = s {
            let (_, w, sh) = pos(p);
            let word = &*page_words(s).add(w);
            let v = word.load(Ordering::Relaxed);
            let b = (v >> sh) & 3;
            if b & 1 != 0 {
                if quiet {
                    // (an out-of-band record and bit stay: an orphan, see above)
                    word.fetch_and(!(1 << sh), Ordering::Relaxed);
                    return None;
                }
                let st = single_threaded();
                count_live(-1, st);
                if b & 2 != 0 {
                    return remove_oob(key, s, p, word, sh, usable, st);
                }
                if st {
                    word.store(v & !(1 << sh), Ordering::Relaxed);
                } else {
                    word.fetch_and(!(1 << sh), Ordering::Relaxed);
                }
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
    remove_big(p)
}

/// Remove an out-of-band chunk: its record, then its bits.
#[inline(always)]
unsafe fn remove_oob(key: usize, s: *const Slot, p: usize, word: &AtomicU64, sh: u32, usable: usize, st: bool) -> Option<Chunk> {
    if !st {
        oob::lock(key).lock();
    }
    let e = oob::get(&(*s).oob, p);
    if st {
        word.store(word.load(Ordering::Relaxed) & !(3 << sh), Ordering::Relaxed);
    } else {
        word.fetch_and(!(3 << sh), Ordering::Relaxed);
        oob::lock(key).unlock();
    }
    let e = e?;
    let slack = (e & 7) as usize;
    Some(Chunk { base: p, size: usable.saturating_sub(slack), id: e >> 3 })
}

#[inline(never)]
fn remove_big(p: usize) -> Option<Chunk> {
    BIG.lock.lock();
    let r = BIG.remove(p);
    BIG.lock.unlock();
    if r.is_some() {
        unsafe { count_live(-1, single_threaded()) };
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

/// Chunks based at `bases` (bitmap starts; `oob[i]`: its record is out of band), read
/// safely; calls `f` with each valid one. `wait`: false → never wait for a lock.
fn resolve(bases: &[usize], oob: &[bool], wait: bool, f: &mut dyn FnMut(Chunk) -> bool) -> bool {
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
    let mut found = [None; 256];
    for i in 0..n {
        let (u, mm) = decode_header(words[i] as usize);
        if !ok[i] || mm || u > MAX_SMALL {
            continue;
        }
        let base = bases[i];
        if oob[i] {
            let key = base >> PAGE_SHIFT;
            let e = slot_slow(key, false).and_then(|s| unsafe { oob_get(key, s, base, wait) });
            if let Some(e) = e {
                let slack = (e & 7) as usize;
                if slack <= u {
                    found[i] = Some(Chunk { base, size: u - slack, id: e >> 3 });
                }
            }
        } else if u >= TRAILER {
            usable[m] = u;
            tr_at[m] = base + u - TRAILER;
            which[m] = i;
            m += 1;
        }
    }
    read_words(&tr_at[..m], &mut words[..m], &mut ok[..m]);
    for j in 0..m {
        let base = bases[which[j]];
        if let Some((size, id)) = ok[j].then(|| decode(base, usable[j], words[j])).flatten() {
            found[which[j]] = Some(Chunk { base, size, id });
        }
    }
    for c in found[..n].iter().flatten() {
        if f(*c) {
            return true;
        }
    }
    false
}

/// The greatest marked start ≤ p that could begin a bitmapped chunk holding p, and
/// whether its record is out of band.
fn floor_start(p: usize) -> Option<(usize, bool)> {
    let lo = p.saturating_sub(MAX_SMALL) & !15;
    let mut a = p & !15;
    loop {
        let key = a >> PAGE_SHIFT;
        if let Some(s) = slot_slow(key, false) {
            let pg = unsafe { page_words(s) };
            let (_, mut w, sh) = pos(a);
            let mut v = unsafe { (*pg.add(w)).load(Ordering::Relaxed) };
            let mut bits = v & STARTS & (u64::MAX >> (63 - sh));
            loop {
                if bits != 0 {
                    let b = 63 - bits.leading_zeros() as usize;
                    let base = (key << PAGE_SHIFT) | ((w << 5 | b / 2) << 4);
                    return (base >= lo).then_some((base, (v >> b) & 2 != 0));
                }
                if w == 0 || (key << PAGE_SHIFT) + (w << 9) <= lo {
                    break;
                }
                w -= 1;
                v = unsafe { (*pg.add(w)).load(Ordering::Relaxed) };
                bits = v & STARTS;
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
        if let Some((base, oob)) = floor_start(p) {
            let mut found = None;
            resolve(&[base], &[oob], wait, &mut |c| {
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
    let mut oob = [false; 256];
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
            for li in 0..LEAF {
                let pg = unsafe { (*(leaf as *const [Slot; LEAF]))[li].page.load(Ordering::Acquire) } as *const AtomicU64;
                if pg.is_null() {
                    continue;
                }
                let key = (ti << 17) | (mi << 8) | li;
                for w in 0..WORDS {
                    let v = unsafe { (*pg.add(w)).load(Ordering::Relaxed) };
                    let mut bits = v & STARTS;
                    while bits != 0 {
                        let b = bits.trailing_zeros() as usize;
                        bits &= bits - 1;
                        bases[k] = (key << PAGE_SHIFT) | ((w << 5 | b / 2) << 4);
                        oob[k] = (v >> b) & 2 != 0;
                        k += 1;
                        if k == bases.len() {
                            if resolve(&bases[..k], &oob[..k], true, &mut count) {
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
        stop = resolve(&bases[..k], &oob[..k], true, &mut count);
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
