//! The free site of a checked free: attributed like an allocation (the innermost
//! classified call of a free, runtime/README.md "Attribution"), interned with the code
//! `A_FREE` — and cached, because every checked free needs it (the freed trailer and the
//! quarantine entry name it) and the attribution plus the site table's lookup cost
//! ≈ 70 instructions a free (Lua: 2.8 % of a run with all checks; the free site shares
//! the hot block's two-entry site cache with the allocation sites, which evict it).
//!
//! The cache is keyed by everything the attribution reads when no active hooked call is
//! stale (the innermost one's frame encloses this free): the free's return address and
//! mark, the innermost entry's site and function descriptor, the bottom entry's
//! function and the outermost site. Other states are attributed afresh.
//! A direct-mapped table, used only while the process has one thread (no races; a
//! signal handler's free meanwhile is not checked: the callers hold the thread's guard).
use crate::attribution::attribute_free;
use crate::sites::{self, make_key, A_FREE};
use crate::tls::{hot, DEPTH};

#[derive(Clone, Copy)]
struct Ent {
    ra: usize,
    site: usize,
    fn_: usize,
    outer: usize,
    bottom_fn: usize,
    id: usize,
}

const N: usize = 64;
const EMPTY: Ent = Ent { ra: 0, site: 0, fn_: 0, outer: 0, bottom_fn: 0, id: 0 };
static mut CACHE: [Ent; N] = [EMPTY; N];

/// The free site, attributed afresh.
#[inline(never)]
unsafe fn attributed(ra: usize, sp: usize, mark: usize) -> u32 {
    let h = hot();
    let a = attribute_free(ra, sp, mark != 0);
    sites::intern(h, a.inner, a.outer, make_key(a.inner_fn, A_FREE), a.outer_fn as usize)
}

/// The site id of a free entered from return address `ra` (entry stack pointer `sp`,
/// the hot block's `mark` as the entry shim found it). Call with the thread's guard on.
#[inline(always)]
pub unsafe fn id(ra: usize, sp: usize, mark: usize) -> u32 {
    let h = hot();
    let d = (*h).depth as usize;
    // (no active hooked call: the sites are `ra`; else, when the innermost active call's
    // frame encloses this free — none is stale — and all are recorded, the attribution
    // of a free reads only the top entry, the bottom entry's function and the outermost
    // site: attribution.rs, `attribute_among` without releases skipped)
    let (site, f, outer, bottom_fn) = if d == 0 {
        (0, 0, 0, 0)
    } else if d <= DEPTH && (*h).entries[d - 1].sp > sp {
        let e = &(*h).entries;
        (e[d - 1].site, e[d - 1].fn_ as usize, (*h).outermost, e[0].fn_ as usize)
    } else {
        return attributed(ra, sp, mark);
    };
    if !crate::chunkmap::single_threaded() {
        return attributed(ra, sp, mark);
    }
    // (return addresses are below 2^47: the mark in the top bit)
    let k = ra | ((mark != 0) as usize) << 63;
    let e = &mut *(core::ptr::addr_of_mut!(CACHE) as *mut Ent).add(((ra ^ site) >> 2) & (N - 1));
    if e.ra == k && e.site == site && e.fn_ == f && e.outer == outer && e.bottom_fn == bottom_fn && e.id != 0 {
        return e.id as u32;
    }
    let id = attributed(ra, sp, mark);
    if id != 0 {
        *e = Ent { ra: k, site, fn_: f, outer, bottom_fn, id: id as usize };
    }
    id
}
