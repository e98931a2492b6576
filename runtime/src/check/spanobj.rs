//! The checks on objects of the runtime's small-object heap (`smallheap`), which serves
//! requests up to `MAX - PAD` bytes with checks on as without. Each object is `PAD`
//! bytes larger than its request (its span says so: `pad`):
//!
//! ```text
//! live:  [ request (poisoned when new) | canary, ≥ 8 bytes, to the object's end ]
//! freed: [ request (free pattern)      | canary …           | freed trailer (8) ]
//! ```
//! The span's record says whether an object is live, exactly: a free of anything else
//! in the region is a bad free, without the heap index's bitmap or a trailer to decode
//! (a freed object's trailer then says who made and who freed it). A freed object is
//! retired (not live, on no free list) while the quarantine holds it, and given back
//! to its span as it leaves, instead of to glibc.
use super::finding::{raise, Finding, Kind};
use super::options::{has, CANARY, DOUBLE_FREE, POISON, QUARANTINE};
use super::{freed, pattern, quarantine};
use crate::chunkmap::TRAILER;
use crate::index::Chunk;
use crate::smallheap as sh;
use core::sync::atomic::Ordering;

/// The bytes a span object holds beyond its request: the live object's canary runs to
/// the object's end (no live trailer: the span's record holds the site), and the freed
/// trailer overwrites the canary's last 8 bytes once the canary has been checked. So
/// 8 bytes give both, where glibc's chunks need the index's trailer and the canary
/// (`options::PAD`, 16).
pub const PAD: usize = 8;
const _: () = assert!(PAD >= TRAILER && PAD >= super::options::CANARY_MIN);

/// An object just made for a request of `n` bytes, `usable` in all; `zeroed`: calloc's.
#[inline(always)]
pub unsafe fn fresh(p: usize, n: usize, usable: usize, zeroed: bool) {
    if has(POISON) && !zeroed {
        pattern::fill(p, n, pattern::poison_byte());
    }
    if has(CANARY) {
        pattern::put_canary(p, n, usable);
    }
}

/// An object kept in place by a realloc from `old` to `n` requested bytes: the grown
/// part poisoned, the canary after `n`.
#[inline(always)]
pub unsafe fn resized(p: usize, old: usize, n: usize, usable: usize) {
    if has(POISON) && n > old {
        pattern::fill(p + old, n - old, pattern::poison_byte());
    }
    if has(CANARY) {
        pattern::put_canary(p, n, usable);
    }
}

/// The canary of the live object at `p` (`n` requested, `usable` in all): a finding
/// when damaged. Objects of spans set up without the checks' pad have none.
#[inline(always)]
pub unsafe fn canary(p: usize, n: usize, usable: usize, alloc_id: u32) -> Option<Finding> {
    if !has(CANARY) || sh::pad_of(p) == 0 {
        return None;
    }
    let off = pattern::check_canary(p, n, usable)?;
    Some(overflow(p, n, usable, alloc_id, off))
}

#[cold]
unsafe fn overflow(p: usize, n: usize, usable: usize, alloc_id: u32, off: usize) -> Finding {
    let mut f = Finding::new(Kind::Overflow, p);
    f.base = p;
    f.size = n;
    f.alloc_id = alloc_id;
    f.offset = Some(off);
    (f.found, f.nfound) = pattern::bytes_at(p, off, usable);
    f
}

/// A live chunk (as the leak report lists it) that is a span object: its canary.
pub unsafe fn canary_of(c: &Chunk) -> Option<Finding> {
    let usable = (*sh::span::of(c.base)).size as usize;
    canary(c.base, c.size, usable, c.id)
}

/// Free an object `smallheap::retire` has taken out of use (`n` requested bytes,
/// `usable` in all, made at site `id`), freed at site `free_id`: the canary, the free
/// pattern, the freed trailer, then the quarantine (or back to its span at once).
pub unsafe fn release(p: usize, n: usize, usable: usize, id: u32, free_id: u32) {
    if let Some(mut f) = canary(p, n, usable, id) {
        f.this_free_id = free_id;
        raise(f);
    }
    if crate::index::SUB_USED.load(Ordering::Relaxed) {
        super::sub::chunk_released(p, n);
    }
    if has(POISON | QUARANTINE) {
        pattern::fill(p, n, pattern::free_byte());
    }
    if sh::pad_of(p) >= TRAILER {
        freed::mark(p, usable, n, id, free_id);
    }
    if has(QUARANTINE) {
        quarantine::push(quarantine::Entry { base: p, size: n, alloc_id: id, free_id });
    } else {
        sh::give_back(p);
    }
}

/// What is wrong with freeing `p`, an address of the region that is no live object's
/// base (`smallheap::retire` said so; the caller does not hold the spans' lock).
/// Without `double-free` nothing is said: the caller aborts as without checks.
pub unsafe fn bad_free(p: usize, free_id: u32) -> Option<Finding> {
    if !has(DOUBLE_FREE) {
        return None;
    }
    let st = crate::chunkmap::single_threaded();
    if !st {
        sh::LOCK.lock();
    }
    let trailer = match sh::not_live_at(p) {
        Some(usable) if sh::pad_of(p) >= TRAILER => freed::decode(p, usable, *((p + usable - TRAILER) as *const u64)),
        _ => None,
    };
    if !st {
        sh::LOCK.unlock();
    }
    if let Some((n, a, last)) = trailer {
        let mut f = Finding::new(if last == free_id { Kind::DoubleFree } else { Kind::FreedElsewhere }, p);
        f.base = p;
        f.size = n;
        f.alloc_id = a;
        f.free_id = last;
        f.this_free_id = free_id;
        return Some(f);
    }
    let mut f = match sh::lookup(p, true) {
        Some(c) => {
            let mut f = Finding::new(Kind::InteriorFree, p);
            f.base = c.base;
            f.size = c.size;
            f.alloc_id = c.id;
            f.offset = Some(p - c.base);
            f
        }
        // (inside a free object, or one never handed out: no allocator handed it out)
        None => Finding::new(Kind::NotHeap, p),
    };
    f.this_free_id = free_id;
    Some(f)
}

/// At exit: the canaries of the span objects still live.
pub fn at_exit(found: &mut Vec<Finding>) {
    sh::for_each(&mut |c| {
        if let Some(f) = unsafe { canary_of(&c) } {
            found.push(f);
        }
        false
    });
}
