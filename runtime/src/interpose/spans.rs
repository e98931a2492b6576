//! The interposed allocators' paths for objects of the runtime's small-object heap
//! (`smallheap`): a new small chunk from the spans while they serve, and the free,
//! realloc and moves (span ↔ glibc) of span objects, from one thread or, under the
//! spans' lock, from any. Split from `interpose` (whose entry points test `sh::owns`
//! and `serve_now` and come here) so each file keeps one heap's paths.
use super::*;
/// Whether a new small chunk may come from the spans now: the heap is on (decided at
/// load time: no heap checks, not under valgrind, `ALLOCSITE_HEAP` not `glibc`), the
/// process has one thread, and the index takes new chunks (the metadata cap).
#[inline(always)]
pub(super) fn serve_now() -> bool {
    sh::SERVE.load(Ordering::Relaxed) && chunkmap::single_threaded() && INDEXING.load(Ordering::Relaxed)
}

/// A span object for `n` bytes (`sh::small(n)`, `serve_now()`) in the common case: not
/// inside the runtime, the site in the thread's caches. None, with nothing made or
/// counted, otherwise.
#[inline(always)]
pub(super) unsafe fn small_fast(n: usize, code: u32, ra: usize, sp: usize, mark: usize) -> Option<P> {
    let h = hot();
    if (*h).guard != 0 {
        return None;
    }
    guard_on(h, GUARD_WORK);
    let id = cached_site(h, code, ra, sp, mark);
    let p = new_object(n, 0, id);
    guard_off(h);
    p
}

/// A new span object of site `id` (0: none) for `n` bytes (and the spans' `pad`),
/// counted as a new chunk of the site (one thread, under the guard); None when the
/// spans cannot make one.
#[inline(always)]
pub(super) unsafe fn new_object(n: usize, pad: usize, id: u32) -> Option<P> {
    if id == 0 {
        return None;
    }
    let p = sh::alloc(n + pad, id);
    if p.is_null() {
        return None;
    }
    sites::on_alloc_single(id, n as u64);
    chunkmap::count_live(1, true);
    Some(p as P)
}

/// A span object for `n` bytes when `sh::small(n)` and `serve_now()` (with heap checks
/// on, `small_checked`'s), the site attributed and interned as `record` does; None
/// (nothing made) otherwise, and when the spans cannot make one: the caller asks glibc.
#[inline(never)]
pub(super) unsafe fn small_general(n: usize, code: u32, ra: usize, sp: usize, mark: usize) -> Option<P> {
    if !sh::small(n) || !serve_now() {
        return small_checked(n, code, ra, sp, mark);
    }
    let h = hot();
    if (*h).guard != 0 {
        return None;
    }
    guard_on(h, GUARD_WORK);
    let p = new_object(n, 0, site(h, code, ra, sp, mark));
    guard_off(h);
    p
}

/// Take the spans' lock when the process has threads; returns whether it did.
#[inline(always)]
pub(super) fn lock_small() -> bool {
    if chunkmap::single_threaded() {
        return false;
    }
    sh::LOCK.lock();
    true
}
#[inline(always)]
pub(super) fn unlock_small(locked: bool) {
    if locked {
        sh::LOCK.unlock();
    }
}

/// `free` of a span object (`sh::owns(p)`). The common case (one thread, no
/// suballocator pieces, not inside the runtime) in one straight line.
#[inline(always)]
pub(super) unsafe fn small_free(p: P) {
    if chunkmap::single_threaded() && !index::SUB_USED.load(Ordering::Relaxed) {
        let h = hot();
        if (*h).guard == 0 {
            guard_on(h, GUARD_WORK);
            let Some((n, id)) = sh::free(p as usize) else { sh::invalid(b"free", p as usize) };
            sites::on_free_single(id, n as u64);
            chunkmap::count_live(-1, true);
            if sh::deferred() {
                drain_small(h);
            }
            guard_off(h);
            return;
        }
    }
    small_free_general(p)
}

/// `small_free` in every other case: inside the runtime (a signal handler that
/// interrupted it, the runtime's own work) the free is deferred; with threads, under
/// the spans' lock; pieces a suballocator carved out of the object die with it.
#[inline(never)]
unsafe fn small_free_general(p: P) {
    let h = hot();
    if (*h).guard != 0 {
        return sh::defer(p as usize);
    }
    guard_on(h, GUARD_WORK);
    let locked = lock_small();
    let r = sh::free(p as usize);
    if r.is_none() {
        sh::invalid(b"free", p as usize);
    }
    if sh::deferred() {
        drain_small(h);
    }
    unlock_small(locked);
    if let Some((n, id)) = r {
        sites::on_free(h, id, n as u64);
        chunkmap::count_live(-1, !locked);
        if index::SUB_USED.load(Ordering::Relaxed) {
            index::remove_range(&index::SUB, p as usize, p as usize + n, &mut |x| sites::on_free(h, x.id, x.size as u64));
        }
    }
    guard_off(h);
}

/// Free the deferred span objects (under the guard, and the lock when there are threads).
#[cold]
#[inline(never)]
pub(super) unsafe fn drain_small(h: *mut crate::tls::Hot) {
    let st = chunkmap::single_threaded();
    sh::drain(&mut |n, id| {
        sites::on_free(h, id, n as u64);
        chunkmap::count_live(-1, st);
    });
}

/// `realloc(p, n)` of a span object to a small size in the common case (`small_fast`'s,
/// and no suballocator pieces): in place when the class is the same, else a span
/// object of the new class, the contents copied (the live-chunk count is unchanged: one
/// object for another). The old object's bytes leave the site's counts first, as in
/// `small_realloc`. None, with nothing changed, when the case does not apply.
#[inline(always)]
pub(super) unsafe fn small_realloc_fast(p: P, n: usize, ra: usize, sp: usize, mark: usize) -> Option<P> {
    if !sh::small(n) || !serve_now() || index::SUB_USED.load(Ordering::Relaxed) {
        return None;
    }
    let h = hot();
    if (*h).guard != 0 {
        return None;
    }
    guard_on(h, GUARD_WORK);
    let id = cached_site(h, A_REALLOC, ra, sp, mark);
    let old = if id != 0 { sh::object(p as usize) } else { None };
    let Some((on, usable, oid)) = old else {
        guard_off(h);
        return None;
    };
    sites::on_free_single(oid, on as u64);
    if sh::resize(p as usize, n, id).is_some() {
        sites::on_alloc_single(id, n as u64);
        guard_off(h);
        return Some(p);
    }
    let q = sh::alloc(n, id);
    if q.is_null() {
        // (p is untouched: its bytes are live again; `small_realloc` does the rest)
        sites::on_restore(h, oid, on as u64);
        guard_off(h);
        return None;
    }
    sites::on_alloc_single(id, n as u64);
    core::ptr::copy_nonoverlapping(p as *const u8, q, usable.min(n));
    sh::free(p as usize);
    guard_off(h);
    Some(q as P)
}

/// `realloc(p, n)` of a span object: the same class in place (the record takes the new
/// size and site), else a new chunk (span or glibc's), the contents copied, the old
/// object freed. `realloc(p, 0)` frees, as glibc's does. The site is found once, for
/// either (the thread's caches first, as on the fast paths).
#[inline(never)]
pub(super) unsafe fn small_realloc(p: P, n: usize, code: u32, ra: usize, sp: usize, mark: usize) -> P {
    if check::on() && (*hot()).guard == 0 {
        return realloc_checked(p, n, code, ra, sp, mark);
    }
    if n == 0 {
        small_free(p);
        return null_mut();
    }
    let h = hot();
    if (*h).guard != 0 {
        return small_realloc_inside(p, n);
    }
    guard_on(h, GUARD_WORK);
    let id = site(h, code, ra, sp, mark);
    let locked = lock_small();
    // (not a live object's base: glibc's realloc aborts too)
    let Some((on, usable, oid)) = sh::object(p as usize) else { sh::invalid(b"realloc", p as usize) };
    let kept = id != 0 && sh::resize(p as usize, n, id).is_some();
    unlock_small(locked);
    // The old object leaves the counts first, as a glibc chunk leaves the index before
    // glibc's realloc (`realloc_common`): the site's peak never holds both.
    sites::on_free(h, oid, on as u64);
    if index::SUB_USED.load(Ordering::Relaxed) {
        index::remove_range(&index::SUB, p as usize, p as usize + on, &mut |x| sites::on_free(h, x.id, x.size as u64));
    }
    if kept {
        sites::on_alloc(h, id, n as u64, true);
        guard_off(h);
        return p;
    }
    chunkmap::count_live(-1, !locked);
    // a move: a span object when the spans serve, else glibc's chunk
    let mut q = null_mut();
    if sh::small(n) && serve_now() {
        q = new_object(n, 0, id).unwrap_or(null_mut());
    }
    guard_off(h);
    if q.is_null() {
        q = lc::malloc_if(false, n);
        guard_on(h, GUARD_WORK);
        if q.is_null() {
            // p is untouched: its bytes are live again
            sites::on_restore(h, oid, on as u64);
            chunkmap::count_live(1, chunkmap::single_threaded());
            guard_off(h);
            return q;
        }
        if id == 0 {
            stats::NO_SITE.fetch_add(1, Ordering::Relaxed);
        } else {
            record_id(h, q, n, id);
        }
        guard_off(h);
    }
    core::ptr::copy_nonoverlapping(p as *const u8, q as *mut u8, usable.min(n));
    // (counted above)
    guard_on(h, GUARD_WORK);
    let locked = lock_small();
    sh::free(p as usize);
    if sh::deferred() {
        drain_small(h);
    }
    unlock_small(locked);
    guard_off(h);
    q
}

/// `small_realloc` inside the runtime (a signal handler that interrupted it): a chunk of
/// glibc's, not indexed (as any allocation then), the old object's free deferred.
#[cold]
#[inline(never)]
unsafe fn small_realloc_inside(p: P, n: usize) -> P {
    // (the object's size without the lock: the interrupted code may hold it; a span's
    // class never changes while it has live objects)
    let s = sh::span::of(p as usize);
    let usable = (*s).size as usize;
    let q = lc::malloc_if(false, n);
    if !q.is_null() {
        core::ptr::copy_nonoverlapping(p as *const u8, q as *mut u8, usable.min(n));
        sh::defer(p as usize);
    }
    q
}

/// `realloc(p, n)` of one of glibc's chunks to a small size while the spans serve: a
/// span object, the contents (as many as `malloc_usable_size` promised) copied, the
/// old chunk out of the index and freed. None, with nothing changed, when no span
/// object could be made.
#[inline(never)]
pub(super) unsafe fn realloc_to_span(p: P, n: usize, code: u32, ra: usize, sp: usize, mark: usize) -> Option<P> {
    if !sh::small(n) || !serve_now() {
        return None;
    }
    let u = malloc_usable_size(p);
    // (the old chunk leaves the index and the counts first, as in `realloc_common`)
    let c = unrecord(p);
    let Some(q) = small_general(n, code, ra, sp, mark) else {
        if let Some(c) = c {
            restore(c);
        }
        return None;
    };
    core::ptr::copy_nonoverlapping(p as *const u8, q as *mut u8, u.min(n));
    lc::free_if(false, p);
    Some(q)
}
