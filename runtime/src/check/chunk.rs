//! The checks on heap chunks at allocation and free: poison and canary when a chunk is
//! made, canary and double/wrong free when it is freed, then the free pattern and the
//! quarantine. The interposed allocators (interpose.rs) call these behind `check::on()`.
use super::finding::{raise, Finding, Kind};
use super::options::{has, CANARY, DOUBLE_FREE, POISON, QUARANTINE};
use super::{freed, maps, pattern, quarantine};
use crate::chunkmap::{self, TRAILER};
use crate::index::Chunk;
use crate::sys::Spin;
use core::sync::atomic::{AtomicUsize, Ordering};


// Chunks indexed before the checks were put in force (libc's start-up allocations)
// have no canary: their bases, so that their frees skip the canary check.
pub const PRE: usize = 1024;
pub static PRE_LOCK: Spin = Spin::new();
static mut PRE_BASES: [usize; PRE] = [0; PRE];
static PRE_LEN: AtomicUsize = AtomicUsize::new(0);

/// Remember the chunks live now as made without checks (at start-up, before `set`).
/// Returns how many there are; more than fit (`PRE`) means the canary cannot be used.
pub fn note_unchecked_chunks() -> usize {
    PRE_LOCK.lock();
    let mut n = 0;
    let mut all = 0;
    chunkmap::for_each_chunk(&mut |c| {
        if n < PRE {
            unsafe { (*core::ptr::addr_of_mut!(PRE_BASES))[n] = c.base };
            n += 1;
        }
        all += 1;
        false
    });
    PRE_LEN.store(n, Ordering::Relaxed);
    PRE_LOCK.unlock();
    all
}

/// Whether the chunk at `base` was made before the checks (and forget it: it is freed).
fn unchecked(base: usize, forget: bool) -> bool {
    // (usually empty soon: libc's start-up chunks are few and mostly freed early)
    if PRE_LEN.load(Ordering::Relaxed) == 0 {
        return false;
    }
    PRE_LOCK.lock();
    let bases = unsafe { &mut *core::ptr::addr_of_mut!(PRE_BASES) };
    let len = PRE_LEN.load(Ordering::Relaxed);
    let i = bases[..len].iter().position(|&b| b == base);
    if let (Some(i), true) = (i, forget) {
        bases[i] = bases[len - 1];
        PRE_LEN.store(len - 1, Ordering::Relaxed);
    }
    PRE_LOCK.unlock();
    i.is_some()
}

fn usable(base: usize) -> usize {
    unsafe { chunkmap::header(base).0 }
}

/// Most bytes glibc hands out beyond a request (and the pad): an mmap'd chunk's page
/// rounding, with room for its header.
const MAX_EXTRA: usize = 4096 + 64;

/// The usable size glibc's header gives the chunk at `base` made for `n` bytes, when
/// it fits the request: at least what the runtime asked for (`n` + the pad), at most a
/// page more. Under another malloc (valgrind's memcheck replaces glibc's, and its
/// blocks have no glibc header) the word before the chunk is anything: the checks then
/// keep to the bytes the runtime asked for, and write nothing after them.
pub fn usable_for(base: usize, n: usize) -> Option<usize> {
    let u = usable(base);
    let pad = super::options::PAD.load(Ordering::Relaxed);
    (u >= n.saturating_add(pad) && u - n - pad <= MAX_EXTRA).then_some(u)
}

/// The end (offset) of the canary area of a chunk of `n` bytes: up to the trailer, or
/// only the pad's canary bytes when the header does not fit (`usable_for`, given as `u`).
#[inline(always)]
fn canary_end_in(u: Option<usize>, n: usize) -> usize {
    match u {
        Some(u) => u - TRAILER,
        None => n + super::options::PAD.load(Ordering::Relaxed) - TRAILER,
    }
}

#[inline(always)]
fn canary_end(base: usize, n: usize) -> usize {
    canary_end_in(usable_for(base, n), n)
}

/// A chunk just made for a request of `n` bytes; `zeroed`: calloc's (not poisoned),
/// `keep`: realloc's copy (neither).
pub unsafe fn fresh(p: usize, n: usize, zeroed: bool) {
    if has(POISON) && !zeroed {
        pattern::fill(p, n, pattern::poison_byte());
    }
    if has(CANARY) {
        let end = canary_end(p, n);
        if end > n {
            pattern::put_canary(p, n, end);
        }
    }
}

/// A chunk whose `old` first bytes hold a realloc's contents now serves a request of
/// `n` bytes: the grown part is poisoned, the canary put after `n`.
pub unsafe fn resized(p: usize, old: usize, n: usize) {
    if has(POISON) && n > old {
        pattern::fill(p + old, n - old, pattern::poison_byte());
    }
    if has(CANARY) {
        let end = canary_end(p, n);
        if end > n {
            pattern::put_canary(p, n, end);
        }
    }
}

fn chunk_finding(kind: Kind, addr: usize, c: &Chunk) -> Finding {
    let mut f = Finding::new(kind, addr);
    f.base = c.base;
    f.size = c.size;
    f.alloc_id = c.id;
    f
}

/// The canary of a live chunk: a finding when damaged.
pub unsafe fn canary_finding(c: &Chunk, forget: bool) -> Option<Finding> {
    canary_damage(c, usable_for(c.base, c.size), forget)
}

/// `canary_finding` with the chunk's `usable_for` as the caller read it.
#[inline(always)]
unsafe fn canary_damage(c: &Chunk, u: Option<usize>, forget: bool) -> Option<Finding> {
    if !has(CANARY) || unchecked(c.base, forget) {
        return None;
    }
    let end = canary_end_in(u, c.size);
    let off = pattern::check_canary(c.base, c.size, end)?;
    Some(overflow(c, off, end))
}

#[cold]
unsafe fn overflow(c: &Chunk, off: usize, end: usize) -> Finding {
    let mut f = chunk_finding(Kind::Overflow, c.base, c);
    f.offset = Some(off);
    (f.found, f.nfound) = pattern::bytes_at(c.base, off, end);
    f
}

/// Free an indexed chunk the index has just given up (`c`), freed at site `free_id`.
pub unsafe fn release(c: Chunk, free_id: u32) {
    // (glibc's header is read once for the canary, the freed trailer and the quarantine)
    let u = usable_for(c.base, c.size);
    if let Some(mut f) = canary_damage(&c, u, true) {
        f.this_free_id = free_id;
        raise(f);
    }
    if crate::index::SUB_USED.load(Ordering::Relaxed) {
        // (the pieces a pool freed inside this chunk: their free pattern)
        super::sub::chunk_released(c.base, c.size);
    }
    if has(POISON | QUARANTINE) {
        pattern::fill(c.base, c.size, pattern::free_byte());
    }
    if let Some(u) = u {
        freed::mark(c.base, u, c.size, c.id, free_id);
    }
    if has(QUARANTINE) {
        quarantine::push(quarantine::Entry { base: c.base, size: c.size, alloc_id: c.id, free_id });
    } else {
        super::nested::free(c.base as *mut _);
    }
}

/// What is wrong with freeing `p`, a pointer the heap index does not hold (`marked`:
/// its start bit was set but its trailer did not decode — overwritten). None: nothing
/// known against it (a chunk made before the runtime started, or never indexed).
pub unsafe fn unknown(p: usize, free_id: u32, marked: bool) -> Option<Finding> {
    if marked {
        let mut f = Finding::new(Kind::TrailerOverwritten, p);
        f.base = p;
        let u = usable(p);
        f.size = u.saturating_sub(TRAILER);
        f.offset = Some(f.size);
        (f.found, f.nfound) = pattern::bytes_at(p, f.size, u);
        f.this_free_id = free_id;
        return Some(f);
    }
    if !has(DOUBLE_FREE) {
        return None;
    }
    if let Some(c) = chunkmap::lookup(p, true) {
        if c.base != p {
            let mut f = chunk_finding(Kind::InteriorFree, p, &c);
            f.offset = Some(p - c.base);
            f.this_free_id = free_id;
            return Some(f);
        }
    }
    let again = |base: usize, size: usize, a: u32, last: u32| {
        let mut f = Finding::new(if last == free_id { Kind::DoubleFree } else { Kind::FreedElsewhere }, p);
        f.base = base;
        f.size = size;
        f.alloc_id = a;
        f.free_id = last;
        f.this_free_id = free_id;
        f
    };
    if let Some(e) = quarantine::find(p) {
        return Some(again(e.base, e.size, e.alloc_id, e.free_id));
    }
    if !crate::arena::INDEXING.load(core::sync::atomic::Ordering::Relaxed) {
        // (past the metadata cap new chunks are not indexed: an unknown pointer says
        // nothing, and reading the mappings at every such free would crawl)
        return None;
    }
    match maps::region(p) {
        maps::Region::Anon(lo, hi) => {
            if p < lo + 16 || p % 16 != 0 {
                return None;
            }
            let u = usable(p);
            if u < 16 || p + u > hi {
                return None;
            }
            let w = *((p + u - TRAILER) as *const u64);
            let (n, a, last) = freed::decode(p, u, w)?;
            Some(again(p, n, a, last))
        }
        _ => {
            let mut f = Finding::new(Kind::NotHeap, p);
            f.this_free_id = free_id;
            Some(f)
        }
    }
}

/// At exit: the canaries of the chunks still live and the quarantine's patterns.
pub fn at_exit() {
    if has(CANARY) {
        let mut found = Vec::new();
        chunkmap::for_each_chunk(&mut |c| {
            if let Some(f) = unsafe { canary_finding(&c, false) } {
                found.push(f);
            }
            false
        });
        super::spanobj::at_exit(&mut found);
        for f in found {
            raise(f);
        }
        super::gap::at_exit();
    }
    if has(QUARANTINE) {
        quarantine::check_all();
    }
    super::sub::at_exit();
}
