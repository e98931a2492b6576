//! The slack after a suballocator's piece, `canary` for pieces: a pool packs its pieces
//! and owns their layout, so no mark can be written after one (the bytes may be the
//! pool's own, or the next piece's). Instead the bytes from the requested size up to the
//! next 16-byte boundary — clipped to the heap chunk the pool carves from and to the
//! next piece — are copied when the piece is handed out and compared when it is given
//! back and at exit: a changed byte is an overflow. The pool's block was poisoned (or
//! holds whatever it held), so an off-by-one that writes a different byte shows.
use super::finding::{Finding, Kind};
use crate::index;
use crate::sys::Spin;

#[derive(Clone, Copy)]
struct Gap {
    /// The piece (0: empty slot), its requested size and site id.
    base: usize,
    size: usize,
    id: u32,
    /// The heap chunk holding it (its base and site id, to see it is still the same).
    chunk: usize,
    chunk_id: u32,
    len: u8,
    bytes: [u8; 16],
}

const EMPTY: Gap = Gap {
    base: 0,
    size: 0,
    id: 0,
    chunk: 0,
    chunk_id: 0,
    len: 0,
    bytes: [0; 16],
};
/// Direct-mapped by address (a collision forgets the older piece's slack).
const SLOTS: usize = 4096;
/// How far before a new piece an older piece's slack may reach.
const REACH: usize = 16;
pub static LOCK: Spin = Spin::new();
static mut GAPS: [Gap; SLOTS] = [EMPTY; SLOTS];

fn slot(p: usize) -> usize {
    (p >> 3 ^ p >> 16) & (SLOTS - 1)
}

unsafe fn gaps() -> &'static mut [Gap; SLOTS] {
    &mut *core::ptr::addr_of_mut!(GAPS)
}

/// Piece `p` of `n` bytes (site `id`) was handed out.
pub fn handed_out(p: usize, n: usize, id: u32) {
    if n == 0 {
        return;
    }
    let Some(c) = crate::chunkmap::lookup(p, true) else {
        return;
    };
    let from = p + n;
    let mut end = ((from + 15) & !15).min(c.base + c.size);
    // a piece already handed out inside the slack ends it
    if end > from {
        if let Some(x) = index::lookup(&index::SUB, end - 1, true) {
            if x.base > p {
                end = end.min(x.base.max(from));
            }
        }
    }
    LOCK.lock();
    let g = unsafe { gaps() };
    // this piece ends the slack of an older piece that reached into it
    for k in 1..=REACH {
        let q = p.wrapping_sub(k);
        let e = &mut g[slot(q)];
        if e.base == q && e.base + e.size <= p && e.base + e.size + e.len as usize > p {
            e.len = (p - (e.base + e.size)) as u8;
        }
    }
    let e = &mut g[slot(p)];
    *e = Gap {
        base: p,
        size: n,
        id,
        chunk: c.base,
        chunk_id: c.id,
        len: end.saturating_sub(from) as u8,
        bytes: [0; 16],
    };
    for i in 0..e.len as usize {
        e.bytes[i] = unsafe { *((from + i) as *const u8) };
    }
    LOCK.unlock();
}

/// The slack of piece `p`, still live in its heap chunk: a finding when changed.
/// `forget` drops it (the piece is given back).
pub unsafe fn check(p: usize, forget: bool) -> Option<Finding> {
    LOCK.lock();
    let e = gaps()[slot(p)];
    if forget && e.base == p {
        gaps()[slot(p)].base = 0;
    }
    LOCK.unlock();
    if e.base != p || p == 0 || e.len == 0 {
        return None;
    }
    // the pool's heap chunk may have gone (and its memory be another chunk's)
    match crate::chunkmap::lookup(e.base, true) {
        Some(c)
            if c.base == e.chunk
                && c.id == e.chunk_id
                && e.base + e.size + e.len as usize <= c.base + c.size => {}
        _ => return None,
    }
    let from = e.base + e.size;
    let i = (0..e.len as usize).find(|&i| *((from + i) as *const u8) != e.bytes[i])?;
    let mut f = Finding::new(Kind::Overflow, e.base);
    f.base = e.base;
    f.size = e.size;
    f.alloc_id = e.id;
    f.offset = Some(e.size + i);
    (f.found, f.nfound) = super::pattern::bytes_at(e.base, e.size + i, e.size + e.len as usize);
    Some(f)
}

/// At exit: the slack of the pieces still live.
pub fn at_exit() {
    let mut found = Vec::new();
    for i in 0..SLOTS {
        let b = unsafe { gaps()[i].base };
        if b == 0 {
            continue;
        }
        let live = index::lookup(&index::SUB, b, true)
            .is_some_and(|x| x.base == b && x.id == unsafe { gaps()[i].id });
        if live {
            if let Some(f) = unsafe { check(b, false) } {
                found.push(f);
            }
        }
    }
    for f in found {
        super::finding::raise(f);
    }
}
