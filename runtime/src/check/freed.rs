//! The trailer of a freed chunk: while a chunk sits in quarantine (and after, until
//! glibc reuses its last word) its trailer says who made it and who freed it, so a
//! second free is recognised and told apart: `alloc id (23) | free id (23) |
//! slack (8) | tag (10 bits of the base address)`. A live trailer (chunkmap) never
//! decodes as a freed one at the same address: the start bit tells them apart first.
use crate::chunkmap::TRAILER;

const ID: u64 = (1 << 23) - 1;

fn tag(base: usize) -> u64 {
    (((base >> 4) as u64) ^ 0x2c9) & 0x3ff
}

/// Write the freed trailer of the chunk at `base` (usable size `usable`, requested `n`).
pub unsafe fn mark(base: usize, usable: usize, n: usize, alloc_id: u32, free_id: u32) {
    let slack = (usable - TRAILER - n).min(0xff) as u64;
    let w = (alloc_id as u64 & ID) | (free_id as u64 & ID) << 23 | slack << 46 | tag(base) << 54;
    *((base + usable - TRAILER) as *mut u64) = w;
}

/// (requested size, alloc id, free id) when `w`, the trailer word of a chunk at `base`
/// with usable size `usable`, is a freed trailer.
pub fn decode(base: usize, usable: usize, w: u64) -> Option<(usize, u32, u32)> {
    let a = (w & ID) as u32;
    let f = ((w >> 23) & ID) as u32;
    let slack = ((w >> 46) & 0xff) as usize;
    let n = crate::sites::count();
    if w >> 54 != tag(base) || a == 0 || f == 0 || a >= n || f >= n || slack + TRAILER > usable {
        return None;
    }
    Some((usable - TRAILER - slack, a, f))
}
