//! One span: `SPAN` bytes of objects of one size class, its header first.
//!
//! ```text
//! [ header (64 B) | records: one per object, 2 or 4 bytes | objects … ]
//! ```
//! A record is `site id << 4 | slack` (slack = object size − requested size − the
//! span's `pad`, < 16), 0 for an object not live (free, or freed and held by the heap
//! checks' quarantine): the 2-byte form holds ids below `NARROW`, the 4-byte form any id
//! the site table makes. Which one a span uses is chosen when it is set up for a class
//! (`wide`): 2 bytes while the process's site ids are small, so a span of 32-byte
//! objects spends 1/16 of its bytes on records (glibc's own header is 1/4 of such a
//! chunk). An object's record is found from its address alone: the span by masking,
//! the index by a multiply-shift (`Geom::recip`).
//!
//! Free objects are kept in a LIFO list threaded through their first word (the last
//! one freed is the next one handed out, while it is still in the cache); objects never
//! handed out are taken from the span's untouched tail (`bump`), so a span's pages are
//! touched only as far as it has been used.
use super::classes::{Geom, GEOM, HDR, SPAN};
use core::sync::atomic::{AtomicU16, AtomicU32, Ordering};

/// Ids that fit a 2-byte record.
pub const NARROW: u32 = 1 << 12;
/// Ids that fit a 4-byte record.
pub const WIDE: u32 = 1 << 28;

/// Where a span is in its class's lists.
pub const CUR: u8 = 1; // the class's allocation span
pub const PARTIAL: u8 = 2; // on the class's partial list (has free objects)
pub const FULL: u8 = 3; // every object handed out, on no list
pub const CACHED: u8 = 4; // empty, kept by its class (pages kept)

#[repr(C)]
pub struct Span {
    /// Head of the free list (an object's address), 0 when empty.
    pub free: usize,
    /// Objects handed out at least once (the untouched tail starts at `bump`).
    pub bump: u32,
    pub nobj: u32,
    /// Objects handed out and not freed.
    pub live: u32,
    pub size: u32,
    pub start: u32,
    pub recip: u32,
    pub class: u8,
    pub wide: u8,
    pub state: u8,
    /// Bytes every object holds beyond its request: 0, or with heap checks on the
    /// checks' pad (canary and freed trailer, `check::options::PAD`), set for the span's
    /// whole life so that objects made before and after agree.
    pub pad: u8,
    _pad: [u8; 4],
    /// The class's partial list.
    pub next: *mut Span,
    pub prev: *mut Span,
    _pad2: usize,
}
const _: () = assert!(core::mem::size_of::<Span>() == HDR);

/// The span holding `p` (any address inside it).
#[inline(always)]
pub fn of(p: usize) -> *mut Span {
    (p & !(SPAN - 1)) as *mut Span
}

/// Set up a zeroed span (records all 0) for class `c`, objects padded by `pad` bytes.
pub unsafe fn init(s: *mut Span, c: usize, wide: bool, pad: u8) {
    let g: Geom = GEOM[wide as usize][c];
    (*s).free = 0;
    (*s).bump = 0;
    (*s).nobj = g.nobj;
    (*s).live = 0;
    (*s).size = g.size;
    (*s).start = g.start;
    (*s).recip = g.recip;
    (*s).class = c as u8;
    (*s).wide = wide as u8;
    (*s).state = CUR;
    (*s).pad = pad;
    (*s).next = core::ptr::null_mut();
    (*s).prev = core::ptr::null_mut();
}

/// The index of the object at offset `off` from object 0 (any offset inside it).
#[inline(always)]
pub unsafe fn index(s: *const Span, off: usize) -> usize {
    ((off as u64 * (*s).recip as u64) >> 32) as usize
}

#[inline(always)]
pub unsafe fn record(s: *const Span, i: usize) -> u32 {
    let r = (s as usize) + HDR;
    if (*s).wide != 0 {
        (*(r as *const AtomicU32).add(i)).load(Ordering::Relaxed)
    } else {
        (*(r as *const AtomicU16).add(i)).load(Ordering::Relaxed) as u32
    }
}

#[inline(always)]
pub unsafe fn set_record(s: *mut Span, i: usize, v: u32) {
    let r = (s as usize) + HDR;
    if (*s).wide != 0 {
        (*(r as *const AtomicU32).add(i)).store(v, Ordering::Relaxed)
    } else {
        (*(r as *const AtomicU16).add(i)).store(v as u16, Ordering::Relaxed)
    }
}

/// A live object's (requested size, site id) from its record.
#[inline(always)]
pub unsafe fn decode(s: *const Span, r: u32) -> (usize, u32) {
    ((*s).size as usize - (*s).pad as usize - (r & 15) as usize, r >> 4)
}

/// Whether a record of site `id` fits this span.
#[inline(always)]
pub unsafe fn fits(s: *const Span, id: u32) -> bool {
    id < if (*s).wide != 0 { WIDE } else { NARROW }
}

/// Hand out an object of `s` for a request of `n` bytes, the pad included, of site `id`
/// (the caller checked `fits`); 0 when the span has none left.
#[inline(always)]
pub unsafe fn take(s: *mut Span, n: usize, id: u32) -> usize {
    let base = s as usize + (*s).start as usize;
    let p = (*s).free;
    let i;
    if p != 0 {
        (*s).free = *(p as *const usize);
        i = index(s, p - base);
        set_record(s, i, id << 4 | ((*s).size as usize - n) as u32);
        (*s).live += 1;
        return p;
    }
    i = (*s).bump as usize;
    if i >= (*s).nobj as usize {
        return 0;
    }
    (*s).bump = i as u32 + 1;
    set_record(s, i, id << 4 | ((*s).size as usize - n) as u32);
    (*s).live += 1;
    base + i * (*s).size as usize
}

/// The object based exactly at `p` of span `s`, if live: its index and record.
#[inline(always)]
pub unsafe fn live_at(s: *const Span, p: usize) -> Option<(usize, u32)> {
    let i = handed_out_at(s, p)?;
    let r = record(s, i);
    if r == 0 {
        return None;
    }
    Some((i, r))
}

/// Put the live object `p` (index `i`) back on the free list.
#[inline(always)]
pub unsafe fn put(s: *mut Span, p: usize, i: usize) {
    set_record(s, i, 0);
    *(p as *mut usize) = (*s).free;
    (*s).free = p;
    (*s).live -= 1;
}

/// The index of the object based exactly at `p` among those handed out at least once
/// (live or not).
#[inline(always)]
pub unsafe fn handed_out_at(s: *const Span, p: usize) -> Option<usize> {
    // (a span given back to the system reads as zeros: `bump` 0, nothing handed out)
    let off = p.wrapping_sub(s as usize + (*s).start as usize);
    let i = index(s, off);
    (i < (*s).bump as usize && i * (*s).size as usize == off).then_some(i)
}

/// The live object holding `p` (any interior pointer): (base, requested size, id).
pub unsafe fn holding(s: *const Span, p: usize) -> Option<(usize, usize, u32)> {
    if (*s).nobj == 0 {
        return None;
    }
    let base = s as usize + (*s).start as usize;
    if p < base {
        return None;
    }
    let i = index(s, p - base);
    if i >= (*s).bump as usize {
        return None;
    }
    let r = record(s, i);
    if r == 0 {
        return None;
    }
    let ob = base + i * (*s).size as usize;
    let (n, id) = decode(s, r);
    // (like the heap index: a pointer past the requested bytes is not inside the chunk;
    // a 0-byte chunk holds its base)
    if p >= ob + n.max(1) {
        return None;
    }
    Some((ob, n, id))
}
