//! Checks on the pieces of hooked suballocators (pools, arenas): a piece given back is
//! filled with the free pattern (before the pool's own free runs, which may then link
//! it into a free list) and remembered with its free site, so that giving it back again
//! is a double free; a sub-free of a pointer that is no live piece — inside a piece, or
//! inside the pool's heap chunk where the pool never handed one out — is a wrong free.
//! Pieces get neither poison (a suballocator may fill a piece before it returns, e.g. a
//! pool's strdup, and the runtime sees it only then) nor quarantine (the pool decides
//! reuse); their canary is a check of their slack (`gap`).
use super::finding::{Finding, Kind};
use super::options::{has, CANARY, DOUBLE_FREE, POISON, QUARANTINE};
use super::pattern;
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
}

/// Pieces given back lately, direct-mapped by address (a collision forgets the older).
const SLOTS: usize = 4096;
pub static LOCK: Spin = Spin::new();
static mut FREED: [Freed; SLOTS] = [Freed { base: 0, size: 0, alloc_id: 0, free_id: 0 }; SLOTS];

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
    let i = slot(p);
    LOCK.lock();
    let e = unsafe { &mut (*core::ptr::addr_of_mut!(FREED))[i] };
    if e.base == p {
        e.base = 0;
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
    LOCK.lock();
    (*core::ptr::addr_of_mut!(FREED))[slot(c.base)] = Freed { base: c.base, size: c.size, alloc_id: c.id, free_id };
    LOCK.unlock();
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
    let e = unsafe { (*core::ptr::addr_of!(FREED))[slot(p)] };
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
