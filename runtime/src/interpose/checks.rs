//! The interposed allocators' paths with heap checks on (`check`), for both heaps:
//! glibc's chunks (indexed, with the checks' trailer and canary) and the objects of
//! the runtime's small-object heap, which serves requests up to `MAX - PAD` bytes
//! with checks on as without (check/spanobj.rs: each object `PAD` bytes larger, its
//! span's record the exact live/free state, the quarantine handing it back to its span).
use super::*;
use crate::check::spanobj;

/// A span object for `n` requested bytes with checks on (one thread, the spans
/// serving with checks, not inside the runtime), its site attributed and interned,
/// poisoned and its canary put; None (nothing made) otherwise: the caller asks glibc.
#[inline(always)]
pub(super) unsafe fn small_checked(n: usize, code: u32, ra: usize, sp: usize, mark: usize) -> Option<P> {
    if !serves_checked(n) {
        return None;
    }
    let pad = sh::PAD.load(Ordering::Relaxed) as usize;
    let h = hot();
    if (*h).guard != 0 {
        return None;
    }
    guard_on(h, GUARD_WORK);
    let p = new_object(n, pad, site(h, code, ra, sp, mark));
    guard_off(h);
    let p = p?;
    spanobj::fresh(p as usize, n, sh::classes::class(n + pad) * 16, false);
    Some(p)
}

/// Whether a request of `n` bytes would be a span object with checks on now.
#[inline(always)]
fn serves_checked(n: usize) -> bool {
    sh::SERVE_CHECKED.load(Ordering::Relaxed)
        && chunkmap::single_threaded()
        && INDEXING.load(Ordering::Relaxed)
        && sh::small(n)
        && sh::small(n + sh::PAD.load(Ordering::Relaxed) as usize)
}

/// A new chunk for `n` requested bytes with checks on (`malloc`, `realloc(NULL, n)`, a
/// realloc's move): a span object, else glibc's (indexed, poisoned, the canary put);
/// null when neither can be made.
#[inline(never)]
pub(super) unsafe fn new_checked(n: usize, code: u32, ra: usize, sp: usize, mark: usize) -> P {
    if let Some(q) = small_checked(n, code, ra, sp, mark) {
        return q;
    }
    let q = lc::malloc(req(n));
    if !q.is_null() {
        record(q, n, code, ra, sp, mark);
        if code == A_REALLOC || code == A_REALLOCARRAY {
            // (`record` leaves a realloc's chunk to its caller)
            checked::fresh(q as usize, n, false);
        }
    }
    q
}

/// `free` of a span object with checks on, from the entry point: inside the runtime
/// (a signal handler that interrupted it) deferred and unchecked, as without checks.
#[inline(never)]
pub(super) unsafe fn free_span_checked(p: P, ra: usize, sp: usize, mark: usize) {
    if (*hot()).guard != 0 {
        return small_free(p);
    }
    lc::drain();
    free_checked_span(p, ra, sp, mark)
}

/// `free` of a span object with checks on (not under the guard): out of use at once
/// (its record says not live), then checked, filled, marked freed and quarantined
/// (check/spanobj.rs); an address of the region that is no live object's base is a
/// bad free, reported and, with `fail=warn`, skipped.
#[inline(always)]
unsafe fn free_checked_span(p: P, ra: usize, sp: usize, mark: usize) {
    let h = hot();
    guard_on(h, GUARD_WORK);
    let fid = free_site(ra, sp, mark);
    let locked = lock_small();
    let r = sh::retire(p as usize);
    if sh::deferred() {
        drain_small(h);
    }
    unlock_small(locked);
    match r {
        Some((n, usable, id)) => {
            sites::on_free(h, id, n as u64);
            chunkmap::count_live(-1, !locked);
            if index::SUB_USED.load(Ordering::Relaxed) {
                index::remove_range(&index::SUB, p as usize, p as usize + n, &mut |x| sites::on_free(h, x.id, x.size as u64));
            }
            spanobj::release(p as usize, n, usable, id, fid);
        }
        None => match spanobj::bad_free(p as usize, fid) {
            Some(f) => check::finding::raise(f),
            None => sh::invalid(b"free", p as usize),
        },
    }
    guard_off(h);
}

/// `realloc(p, n)`, n > 0, of a span object with checks on: in place, its canary
/// checked, when `n` (with the pad) is of its class (the grown part poisoned, the canary
/// moved), else a new chunk, the contents copied, the old object freed as by `free`
/// (checked and quarantined). A pointer that is no live object's base is a bad free.
unsafe fn realloc_checked_span(p: P, n: usize, code: u32, ra: usize, sp: usize, mark: usize) -> P {
    let h = hot();
    guard_on(h, GUARD_WORK);
    let locked = lock_small();
    let obj = sh::object(p as usize);
    unlock_small(locked);
    let Some((on, usable, oid)) = obj else {
        let fid = free_site(ra, sp, mark);
        match spanobj::bad_free(p as usize, fid) {
            Some(f) => check::finding::raise(f),
            None => sh::invalid(b"realloc", p as usize),
        }
        guard_off(h);
        return null_mut();
    };
    let pad = sh::pad_of(p as usize);
    if sh::small(n) && sh::small(n + pad) {
        let id = site(h, code, ra, sp, mark);
        let locked = lock_small();
        let kept = id != 0 && sh::resize(p as usize, n + pad, id).is_some();
        unlock_small(locked);
        if kept {
            // (the canary is checked before it moves; on a move `free_checked_span` checks it)
            if let Some(mut f) = spanobj::canary(p as usize, on, usable, oid) {
                f.this_free_id = free_site(ra, sp, mark);
                check::finding::raise(f);
            }
            sites::on_free(h, oid, on as u64);
            if index::SUB_USED.load(Ordering::Relaxed) {
                index::remove_range(&index::SUB, p as usize, p as usize + on, &mut |x| sites::on_free(h, x.id, x.size as u64));
            }
            sites::on_alloc(h, id, n as u64, true);
            guard_off(h);
            spanobj::resized(p as usize, on, n, usable);
            return p;
        }
    }
    guard_off(h);
    let q = new_checked(n, code, ra, sp, mark);
    if q.is_null() {
        return q;
    }
    core::ptr::copy_nonoverlapping(p as *const u8, q as *mut u8, on.min(n));
    free_checked_span(p, ra, sp, mark);
    q
}

/// The free site: attributed like an allocation (the innermost classified call of a
/// free, runtime/README.md "Attribution"), interned with the code `A_FREE` (the thread's
/// site caches first: the direct-mapped cache's slot depends on the code, so a call
/// site's free and allocation sites do not evict each other).
pub(super) unsafe fn free_site(ra: usize, sp: usize, mark: usize) -> u32 {
    let h = hot();
    let a = crate::attribution::attribute_free(ra, sp, mark != 0);
    sites::intern(h, a.inner, a.outer, make_key(a.inner_fn, A_FREE), a.outer_fn as usize)
}

/// `free` with checks on (not under the guard): the chunk's canary, then the free
/// pattern and the quarantine; a pointer the index does not hold is checked for a
/// double or wrong free. A bad free is reported and, with `fail=warn`, skipped.
pub(super) unsafe fn free_checked(p: P, ra: usize, sp: usize, mark: usize) {
    // (chunks a signal handler made or freed inside glibc: check/nested.rs)
    lc::drain();
    if lc::owns(p as usize) {
        return lc::release(p as usize);
    }
    if sh::owns(p as usize) {
        return free_checked_span(p, ra, sp, mark);
    }
    let h = hot();
    guard_on(h, GUARD_WORK);
    let fid = free_site(ra, sp, mark);
    // (glibc's chunks are 16-byte aligned: another pointer shares a chunk's start-bit
    // granule and must not unmark it)
    let aligned = p as usize % 16 == 0;
    guard_off(h);
    // (a chunk whose trailer no longer decodes is counted in OVERWRITTEN as it goes)
    let over = chunkmap::OVERWRITTEN.load(Ordering::Relaxed);
    let c = if aligned { unrecord(p) } else { None };
    let marked = c.is_none() && chunkmap::OVERWRITTEN.load(Ordering::Relaxed) != over;
    guard_on(h, GUARD_WORK);
    match c {
        Some(c) => checked::release(c, fid),
        None => match checked::unknown(p as usize, fid, marked) {
            Some(f) => check::finding::raise(f),
            None => lc::free(p),
        },
    }
    guard_off(h);
}

/// `realloc(p, n)` with checks on. The old chunk leaves the index first (as at
/// `free`). When it already holds `n` bytes and the pad (shrinking, or growing into
/// glibc's slack) it is kept: reindexed with the new size, the grown part poisoned and
/// the canary put after `n`. Otherwise a new chunk, the contents copied, the old chunk
/// freed as by `free` (checked and quarantined: a stale pointer to it is caught). A
/// pointer the index does not hold is checked like a bad free; a chunk the runtime
/// never indexed (made before it) goes to glibc's realloc.
pub(super) unsafe fn realloc_checked(p: P, n: usize, code: u32, ra: usize, sp: usize, mark: usize) -> P {
    if n == 0 {
        free_checked(p, ra, sp, mark);
        return null_mut();
    }
    if lc::owns(p as usize) {
        let q = lc::realloc(p, req(n));
        if !q.is_null() {
            record(q, n, code, ra, sp, mark);
            checked::fresh(q as usize, n, true);
        }
        return q;
    }
    if sh::owns(p as usize) {
        return realloc_checked_span(p, n, code, ra, sp, mark);
    }
    let h = hot();
    let over = chunkmap::OVERWRITTEN.load(Ordering::Relaxed);
    let c = if p as usize % 16 == 0 { unrecord(p) } else { None };
    let Some(c) = c else {
        let marked = chunkmap::OVERWRITTEN.load(Ordering::Relaxed) != over;
        guard_on(h, GUARD_WORK);
        let f = checked::unknown(p as usize, free_site(ra, sp, mark), marked);
        guard_off(h);
        if let Some(f) = f {
            check::finding::raise(f);
            return null_mut();
        }
        let q = lc::realloc(p, req(n));
        if !q.is_null() {
            record(q, n, code, ra, sp, mark);
            checked::fresh(q as usize, n, true);
        }
        return q;
    };
    // (kept in place unless it now belongs in a span, as without checks: realloc_to_span)
    if !serves_checked(n) && checked::usable_for(c.base, c.size).is_some_and(|u| u >= req(n)) {
        // (the canary is checked before it moves; a chunk made before the checks gets
        // one from now on)
        guard_on(h, GUARD_WORK);
        if let Some(mut f) = checked::canary_finding(&c, true) {
            f.this_free_id = free_site(ra, sp, mark);
            guard_off(h);
            check::finding::raise(f);
            guard_on(h, GUARD_WORK);
        }
        guard_off(h);
        record(p, n, code, ra, sp, mark);
        checked::resized(p as usize, c.size, n);
        return p;
    }
    let q = new_checked(n, code, ra, sp, mark);
    if q.is_null() {
        // p is untouched: put its record back
        restore(c);
        return q;
    }
    core::ptr::copy_nonoverlapping(p as *const u8, q as *mut u8, c.size.min(n));
    checked::resized(q as usize, c.size, n);
    guard_on(h, GUARD_WORK);
    checked::release(c, free_site(ra, sp, mark));
    guard_off(h);
    q
}

