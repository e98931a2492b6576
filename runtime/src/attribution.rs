//! The attribution rules (runtime/README.md, "Attribution"): which innermost and
//! outermost site, and which function called at each, a chunk made by an interposed
//! allocator gets, from the per-thread stack of active hooked calls and the mark byte.
use crate::abi::{entry_desc, FnDesc, ENTRY_FREE, ENTRY_TAGS, KIND_CTOR, KIND_FREE};
use crate::tls::{active_sites, hot, DEPTH};

/// What an allocation is attributed to: its innermost and outermost site and the
/// function called at each (null: the C/C++ entry point that made the chunk).
pub struct Sites {
    pub inner: usize,
    pub outer: usize,
    pub inner_fn: *const FnDesc,
    pub outer_fn: *const FnDesc,
}

/// The sites of a chunk made by an interposed allocator called from return address
/// `ra` with entry stack pointer `sp`; `mark`: the call was a classified call of that
/// allocator (the rewriter's mark stub set the hot block's mark byte).
/// - mark set: innermost = `ra` (that call); outermost = the active outermost, else `ra`.
/// - no active hooked call: both `ra`.
/// - else innermost = the top entry's site and function, unless that function is a
///   constructor (`rewrite --ctors`: ctors count only for the outermost site), then `ra`;
///   outermost = the bottom entry's site and function.
/// - entries of free-kind functions are passed over on both ends (only free calls
///   active: as if none).
#[inline(always)]
pub unsafe fn attribute(ra: usize, sp: usize, mark: bool) -> Sites {
    attribute_among(ra, sp, mark, true)
}

/// The sites of a free (`ALLOCSITE_CHECK`'s free site), by the same rules except that
/// free-kind calls count: they are the calls that make a free site.
#[inline(always)]
pub unsafe fn attribute_free(ra: usize, sp: usize, mark: bool) -> Sites {
    attribute_among(ra, sp, mark, false)
}

#[inline(always)]
unsafe fn attribute_among(ra: usize, sp: usize, mark: bool, skip_releases: bool) -> Sites {
    let h = hot();
    let d = (*h).depth;
    // The common case inline, in one straight line: one active hooked call whose frame
    // encloses this one (no stale entry to drop), an unmarked call, and a function
    // whose call is a site of its own (not a constructor, not a release being passed
    // over, not tagged as indexed by an inner call). It is the general walk's n == 1
    // result for that case; anything else goes to the out-of-line walk (runtime/README.md,
    // "What the bookkeeping costs per call").
    if d == 1 {
        let e = &(*h).entries[0];
        // the entry word's tag bits say the function's class without loading its
        // descriptor (hook ABI v5, `abi::entry_word`): all clear, or only the
        // free-kind bit when releases count (a free site)
        let w = e.fn_ as usize;
        let not_sites = if skip_releases { ENTRY_TAGS } else { ENTRY_TAGS & !ENTRY_FREE };
        // (no test for a null word: every writer stores a descriptor's address — the
        // trampolines, and `__allocsite_enter`, which reads its descriptor first — or a
        // chunk's address | 1)
        if e.sp > sp && !mark && w & not_sites == 0 {
            let f = (w & !ENTRY_FREE) as *const FnDesc;
            return Sites { inner: e.site, outer: (*h).outermost, inner_fn: f, outer_fn: f };
        }
    }
    if d == 0 {
        // no active hooked call: the allocator's own caller
        return Sites { inner: ra, outer: ra, inner_fn: core::ptr::null(), outer_fn: core::ptr::null() };
    }
    // Nested hooked calls (SQLite: a fifth of its allocations), the same case one level
    // up: the top entry live (then every entry below is: their frames enclose it), an
    // unmarked call of a function that is a site of its own, and a bottom entry that is
    // not a release being passed over — the walk's result with bottom = 0, top = d.
    if d as usize <= DEPTH {
        let e = &(*h).entries[d as usize - 1];
        let w = e.fn_ as usize;
        let not_sites = if skip_releases { ENTRY_TAGS } else { ENTRY_TAGS & !ENTRY_FREE };
        let w0 = (*h).entries[0].fn_ as usize;
        if e.sp > sp && !mark && w & not_sites == 0 && !(skip_releases && w0 & ENTRY_FREE != 0) {
            let f = (w & !ENTRY_FREE) as *const FnDesc;
            return Sites { inner: e.site, outer: (*h).outermost, inner_fn: f, outer_fn: entry_desc(w0 as *const FnDesc) };
        }
    }
    attribute_walk(ra, sp, mark, skip_releases)
}

/// The general rules (see `attribute`): stale entries dropped, free-kind entries
/// passed over at both ends, marks and constructors.
#[inline(never)]
unsafe fn attribute_walk(ra: usize, sp: usize, mark: bool, skip_releases: bool) -> Sites {
    let none = Sites { inner: ra, outer: ra, inner_fn: core::ptr::null(), outer_fn: core::ptr::null() };
    let h = hot();
    // (one active hooked call whose frame encloses this one — no stale entry to drop —
    // is the common case: straight to the n == 1 rules below)
    let live1 = (*h).depth == 1 && (*h).entries[0].sp > sp;
    let outermost = if live1 {
        (*h).outermost
    } else {
        let Some((_, outermost, _)) = active_sites(sp) else { return none };
        outermost
    };
    let n = ((*h).depth as usize).min(DEPTH);
    let e = &(*h).entries;
    // (an entry's word names no descriptor when bit 0 is set: "result indexed by an
    // inner call")
    let fn_at = |i: usize| entry_desc(e[i].fn_);
    // A chunk made while a free-kind function runs (stdio's buffer when
    // `BZ2_bzWriteClose` flushes its file) was not made by that call: releasing
    // calls are no sites of new chunks, wherever they are on the stack.
    let releases = |f: *const FnDesc| skip_releases && !f.is_null() && (*f).kind == KIND_FREE;
    if n == 1 {
        // (one active hooked call, the common case: the general walk below with
        // bottom = top - 1 = 0, without its loops)
        let f = fn_at(0);
        if releases(f) {
            return none;
        }
        if mark || (!f.is_null() && (*f).kind == KIND_CTOR) {
            return Sites { inner: ra, outer: outermost, inner_fn: core::ptr::null(), outer_fn: f };
        }
        return Sites { inner: e[0].site, outer: outermost, inner_fn: f, outer_fn: f };
    }
    let mut bottom = 0;
    while bottom < n && releases(fn_at(bottom)) {
        bottom += 1;
    }
    if bottom == n {
        return none;
    }
    let (outer, outer_fn) = if bottom == 0 { (outermost, fn_at(0)) } else { (e[bottom].site, fn_at(bottom)) };
    let mut top = n;
    while top > bottom + 1 && releases(fn_at(top - 1)) {
        top -= 1;
    }
    let f = fn_at(top - 1);
    if mark || (!f.is_null() && (*f).kind == KIND_CTOR) {
        return Sites { inner: ra, outer, inner_fn: core::ptr::null(), outer_fn };
    }
    Sites { inner: e[top - 1].site, outer, inner_fn: f, outer_fn }
}
