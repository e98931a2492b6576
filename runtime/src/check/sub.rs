//! Checks on the pieces of hooked suballocators (pools, arenas): a piece given back is
//! filled with the free pattern (before the pool's own free runs, which may then link
//! it into a free list) and remembered with its free site, so that giving it back again
//! is a double free; a sub-free of a pointer that is no live piece — inside a piece, or
//! inside the pool's heap chunk where the pool never handed one out — is a wrong free.
//!
//! Write after free in a piece: the pool legitimately writes into a piece it got back
//! (its free-list link, in the first word or words). So the leading 8-byte words of the
//! piece that no longer hold the free pattern when the runtime next looks (at the next
//! sub-free or hand-out, at the next free of a heap chunk holding freed pieces, at
//! exit) are noted as the pool's own; any other byte of the piece that changes while it
//! is free is a write after free. The piece is checked when its slot in the table is
//! taken by another piece, when the heap chunk holding it is freed (a pool's block
//! given back), and at exit (if that chunk is still live). A piece the pool hands out
//! again is forgotten unchecked: its allocator may have written into it already. A
//! pool that links free pieces through words beyond the first intact one (or writes
//! them later, past the words noted) would be reported.
//!
//! Pieces get neither poison (a suballocator may fill a piece before it returns, e.g. a
//! pool's strdup, and the runtime sees it only then: what it wrote cannot be told from
//! poison) nor quarantine (the pool decides reuse); a piece carved from a heap chunk
//! shows that chunk's poison, a recycled one the free pattern. Their canary is a check
//! of their slack (`gap`).
use super::finding::{Finding, Kind};
use super::options::{has, CANARY, DOUBLE_FREE, POISON, QUARANTINE};
use super::pattern;
use super::finding::raise;
use crate::abi::FnDesc;
use crate::index::{self, Chunk};
use crate::sys::Spin;
use core::sync::atomic::{AtomicUsize, Ordering};

#[derive(Clone, Copy)]
struct Freed {
    base: usize,
    size: usize,
    alloc_id: u32,
    free_id: u32,
    /// The heap chunk holding the piece (its base, 0: none or not checked, and site id,
    /// to see it is still the same chunk).
    chunk: usize,
    chunk_id: u32,
    /// The pool's own bytes [lo, hi) (offsets), or lo == PENDING before they are noted.
    lo: u32,
    hi: u32,
}
const PENDING: u32 = u32::MAX;
const NONE: Freed = Freed { base: 0, size: 0, alloc_id: 0, free_id: 0, chunk: 0, chunk_id: 0, lo: 0, hi: 0 };

/// Pieces given back lately, direct-mapped by address (a collision checks and forgets
/// the older).
const SLOTS: usize = 4096;
pub static LOCK: Spin = Spin::new();
static mut FREED: [Freed; SLOTS] = [NONE; SLOTS];
/// The slot of the piece whose pool free is running (its span not noted yet), + 1.
static LAST: AtomicUsize = AtomicUsize::new(0);
/// The heap chunks that hold freed pieces (so that freeing one checks them; 0: free
/// entry). A piece in a further chunk is not checked for writes after free.
const CHUNKS: usize = 32;
static POOL_CHUNKS: [AtomicUsize; CHUNKS] = [const { AtomicUsize::new(0) }; CHUNKS];

unsafe fn table() -> &'static mut [Freed; SLOTS] {
    &mut *core::ptr::addr_of_mut!(FREED)
}

fn filled() -> bool {
    has(POISON | QUARANTINE)
}

/// Note the pool's own bytes of the piece given back last (under LOCK): the leading
/// 8-byte words that no longer hold the free pattern (the pool's free-list link).
unsafe fn note_span() {
    let i = LAST.swap(0, Ordering::Relaxed);
    if i == 0 {
        return;
    }
    let e = &mut table()[i - 1];
    if e.base == 0 || e.lo != PENDING {
        return;
    }
    let w = u64::from_ne_bytes([pattern::free_byte(); 8]);
    let mut hi = 0;
    while hi + 8 <= e.size && ((e.base + hi) as *const u64).read_unaligned() != w {
        hi += 8;
    }
    (e.lo, e.hi) = (0, hi as u32);
}

/// A write after free in freed piece `e` (under LOCK, span noted): the first byte
/// outside the pool's span that lost the free pattern, while the heap chunk holding
/// the piece is still the one it was.
/// `held`: the chunk is known to be the one (being freed, out of the index already).
unsafe fn damaged(e: &Freed, held: bool) -> Option<Finding> {
    if e.base == 0 || e.chunk == 0 || e.lo == PENDING || !filled() {
        return None;
    }
    if !held {
        match crate::chunkmap::lookup(e.base, true) {
            Some(c) if c.base == e.chunk && c.id == e.chunk_id && e.base + e.size <= c.base + c.size => {}
            _ => return None,
        }
    }
    let b = pattern::free_byte();
    let (lo, hi) = (e.lo as usize, e.hi as usize);
    let off = match pattern::first_not(e.base, lo, b) {
        Some(o) => o,
        None => hi + pattern::first_not(e.base + hi, e.size - hi, b)?,
    };
    let end = if off < lo { lo } else { e.size };
    Some(Finding::write_after_free(e.base, e.size, e.alloc_id, e.free_id, off, end))
}

/// Check and forget the freed pieces inside heap chunk `base` (being freed).
pub fn chunk_released(base: usize, size: usize) {
    let Some(k) = POOL_CHUNKS.iter().position(|c| c.load(Ordering::Relaxed) == base) else {
        return;
    };
    let mut found = Vec::new();
    LOCK.lock();
    unsafe {
        note_span();
        for e in table().iter_mut() {
            if e.base >= base && e.base < base + size && e.chunk == base {
                if let Some(x) = damaged(e, true) {
                    found.push(x);
                }
                *e = NONE;
            }
        }
    }
    POOL_CHUNKS[k].store(0, Ordering::Relaxed);
    LOCK.unlock();
    for x in found {
        raise(x);
    }
}

/// The heap chunk holding piece `p`, when its freed pieces can be checked.
fn pool_chunk(p: usize) -> (usize, u32) {
    let Some(c) = crate::chunkmap::lookup(p, true) else { return (0, 0) };
    for s in POOL_CHUNKS.iter() {
        match s.compare_exchange(0, c.base, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return (c.base, c.id),
            Err(v) if v == c.base => return (c.base, c.id),
            Err(_) => {}
        }
    }
    (0, 0)
}

/// At exit: the freed pieces still in their heap chunks.
pub fn at_exit() {
    if !filled() {
        return;
    }
    let mut found = Vec::new();
    LOCK.lock();
    unsafe {
        note_span();
        for e in table().iter() {
            if let Some(x) = damaged(e, false) {
                found.push(x);
            }
        }
    }
    LOCK.unlock();
    for x in found {
        raise(x);
    }
}

/// The hooked free functions that have given back a piece (the pools' frees).
const FNS: usize = 64;
static SUB_FREES: [AtomicUsize; FNS] = [const { AtomicUsize::new(0) }; FNS];

fn slot(p: usize) -> usize {
    (p >> 4 ^ p >> 16) & (SLOTS - 1)
}

fn is_sub_free(f: *const FnDesc) -> bool {
    SUB_FREES.iter().map(|s| s.load(Ordering::Relaxed)).take_while(|&v| v != 0).any(|v| v == f as usize)
}

fn note_sub_free(f: *const FnDesc) {
    for s in SUB_FREES.iter() {
        match s.compare_exchange(0, f as usize, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return,
            Err(v) if v == f as usize => return,
            Err(_) => {}
        }
    }
}

/// A piece was handed out (again): it is no longer a freed one; with `canary`, its
/// slack is remembered (`gap`).
pub fn handed_out(p: usize, n: usize, id: u32) {
    LOCK.lock();
    unsafe {
        note_span();
        // The freed pieces inside this one are live again (not checked: the
        // suballocator may have written into the piece before returning it, as a
        // zeroing or copying allocator does).
        if n <= 16 * 64 {
            let mut q = p & !15;
            while q < p + n.max(1) {
                let e = &mut table()[slot(q)];
                if e.base >= p && e.base < p + n.max(1) {
                    *e = NONE;
                }
                q += 16;
            }
        } else {
            for e in table().iter_mut() {
                if e.base >= p && e.base < p + n {
                    *e = NONE;
                }
            }
        }
    }
    LOCK.unlock();
    if has(CANARY) {
        super::gap::handed_out(p, n, id);
    }
}

/// The live piece `c` is being given back by `f` at free site `free_id`.
pub unsafe fn given_back(c: &Chunk, f: *const FnDesc, free_id: u32) {
    if has(CANARY) {
        if let Some(mut x) = super::gap::check(c.base, true) {
            x.this_free_id = free_id;
            super::finding::raise(x);
        }
    }
    if has(POISON | QUARANTINE) {
        pattern::fill(c.base, c.size, pattern::free_byte());
    }
    note_sub_free(f);
    let (chunk, chunk_id) = if filled() && c.size > 0 && c.size < PENDING as usize { pool_chunk(c.base) } else { (0, 0) };
    let i = slot(c.base);
    LOCK.lock();
    note_span();
    // (the older piece in this slot is checked before it is forgotten)
    let older = if table()[i].base != c.base { damaged(&table()[i], false) } else { None };
    table()[i] = Freed { base: c.base, size: c.size, alloc_id: c.id, free_id, chunk, chunk_id, lo: PENDING, hi: 0 };
    LAST.store(i + 1, Ordering::Relaxed);
    LOCK.unlock();
    if let Some(x) = older {
        raise(x);
    }
}

/// Whether some live piece lies inside heap chunk `c` (a scan of the piece index: only
/// on a bad-looking sub-free).
fn holds_pieces(c: &Chunk) -> bool {
    let mut found = false;
    index::for_each_chunk(&index::SUB, &mut |x| {
        found = x.base >= c.base && x.base < c.base + c.size;
        found
    });
    found
}

/// `f` (a hooked free function) got `p`, which is no live piece: a finding when `f` is
/// a pool's free and `p` was given back already or lies inside a piece or a heap chunk.
pub fn wrong(p: usize, f: *const FnDesc, free_id: u32) -> Option<Finding> {
    if !has(DOUBLE_FREE) {
        return None;
    }
    LOCK.lock();
    let e = unsafe { table()[slot(p)] };
    LOCK.unlock();
    if e.base == p && p != 0 {
        let mut x = Finding::new(if e.free_id == free_id { Kind::DoubleFree } else { Kind::FreedElsewhere }, p);
        x.base = e.base;
        x.size = e.size;
        x.alloc_id = e.alloc_id;
        x.free_id = e.free_id;
        x.this_free_id = free_id;
        return Some(x);
    }
    let mut x = Finding::new(Kind::WrongSubFree, p);
    x.this_free_id = free_id;
    if let Some(c) = index::lookup(&index::SUB, p, true) {
        x.base = c.base;
        x.size = c.size;
        x.alloc_id = c.id;
        x.offset = Some(p - c.base);
        return Some(x);
    }
    match crate::chunkmap::lookup(p, true) {
        // inside a heap chunk that a pool carves pieces from (not a header in front
        // of a block, as pcre2's memctl frees), where it never handed out this one
        Some(c) if c.base != p && (is_sub_free(f) || holds_pieces(&c)) => {
            // (the chunk named is the pool's own, with its allocation site)
            x.base = c.base;
            x.size = c.size;
            x.alloc_id = c.id;
            x.offset = Some(p - c.base);
            Some(x)
        }
        _ => None,
    }
}
