//! The attribution rules (runtime/README.md, "Attribution"): which innermost and
//! outermost site, and which function called at each, a chunk made by an interposed
//! allocator gets, from the per-thread stack of active hooked calls and the mark byte.
use crate::abi::{FnDesc, KIND_CTOR};
use crate::tls::{active_sites, hot};

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
#[inline(always)]
pub unsafe fn attribute(ra: usize, sp: usize, mark: bool) -> Sites {
    let none = Sites { inner: ra, outer: ra, inner_fn: core::ptr::null(), outer_fn: core::ptr::null() };
    let Some((site, outer, f)) = active_sites(sp) else { return none };
    let h = hot();
    let bottom = (*h).entries[0].fn_;
    // (an entry's fn_ with bit 0 set marks "result indexed by an inner call")
    let outer_fn = if bottom as usize & 1 != 0 { core::ptr::null() } else { bottom };
    if mark || (!f.is_null() && (*f).kind == KIND_CTOR) {
        return Sites { inner: ra, outer, inner_fn: core::ptr::null(), outer_fn };
    }
    Sites { inner: site, outer, inner_fn: f, outer_fn }
}
