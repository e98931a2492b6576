//! The C and C++ allocators, interposed (the runtime precedes libc in the lookup scope).
//! Each exported entry point is a naked shim that passes the caller's return address
//! (rcx), its entry stack pointer (r8) and the hot block's mark byte, cleared (r9), to
//! the Rust implementation, which serves small requests from the runtime's own spans
//! (`smallheap`, when `serve_now`) or forwards to
//! glibc's `__libc_*` functions (asking for the requested size; with heap checks on, for
//! room for the trailer and the canary as well), and records the chunk in the index.
use crate::chunkmap::{self, TRAILER};
use crate::index;
use crate::smallheap as sh;
use crate::sites::{self, *};
use crate::stats;
use crate::arena::INDEXING;
use crate::check::{self, chunk as checked, nested as lc};
use crate::attribution::attribute;
use crate::tls::{guard_off, guard_on, hot, GUARD_WORK};
use core::ffi::c_void;
use core::ptr::null_mut;
use core::sync::atomic::{AtomicPtr, Ordering};

mod spans;
use spans::*;
mod checks;
use checks::*;
mod mallinfo;



/// Index a chunk the allocator entered from return address `ra` (entry stack pointer
/// `sp`) just made; `mark`: the hot block's mark byte as the entry shim found it.
#[inline(always)]
unsafe fn record(p: *mut c_void, n: usize, code: u32, ra: usize, sp: usize, mark: usize) {
    record_if(check::on(), p, n, code, ra, sp, mark)
}

/// `record` with the checks' flag as the caller read it at entry (the hot entry points
/// read `check::on()` once per call, not once in each helper).
#[inline(always)]
unsafe fn record_if(chk: bool, p: *mut c_void, n: usize, code: u32, ra: usize, sp: usize, mark: usize) {
    let h = hot();
    if (*h).guard != 0 {
        if (*h).guard == GUARD_WORK {
            stats::REENTRANT.fetch_add(1, Ordering::Relaxed);
        }
        return;
    }
    guard_on(h, GUARD_WORK);
    let id = site(h, code, ra, sp, mark);
    if id == 0 {
        stats::NO_SITE.fetch_add(1, Ordering::Relaxed);
    } else {
        let ok = INDEXING.load(Ordering::Relaxed) && chunkmap::insert(p as usize, n, id).is_ok();
        sites::on_alloc(h, id, n as u64, ok);
    }
    guard_off(h);
    if chk && code != A_REALLOC && code != A_REALLOCARRAY {
        checked::fresh(p as usize, n, code == A_CALLOC);
    }
}

/// Put back the record of a chunk `unrecord` took out, when the realloc that was to
/// replace it failed (the chunk is untouched).
#[cold]
unsafe fn restore(c: index::Chunk) {
    let h = hot();
    guard_on(h, GUARD_WORK);
    if chunkmap::insert(c.base, c.size, c.id).is_ok() {
        sites::on_restore(h, c.id, c.size as u64);
    }
    guard_off(h);
}

/// Remove p from the index (before the memory is released).
#[inline(always)]
unsafe fn unrecord(p: *mut c_void) -> Option<index::Chunk> {
    if p.is_null() {
        return None;
    }
    let h = hot();
    if (*h).guard != 0 {
        if (*h).guard == GUARD_WORK {
            stats::REENTRANT_FREES.fetch_add(1, Ordering::Relaxed);
        }
        // (a signal handler interrupted the runtime: only unmark the chunk)
        chunkmap::remove(p as usize, true);
        return None;
    }
    guard_on(h, GUARD_WORK);
    let c = chunkmap::remove(p as usize, false);
    if let Some(c) = c {
        sites::on_free(h, c.id, c.size as u64);
        if index::SUB_USED.load(Ordering::Relaxed) {
            // pieces a hooked suballocator carved out of this chunk die with it
            index::remove_range(&index::SUB, c.base, c.base + c.size, &mut |x| sites::on_free(h, x.id, x.size as u64));
        }
    }
    guard_off(h);
    c
}

macro_rules! shim {
    ($name:ident ( $($a:ident : $t:ty),* ) -> $r:ty, $imp:path) => {
        #[unsafe(naked)]
        #[no_mangle]
        pub unsafe extern "C" fn $name($($a: $t),*) -> $r {
            core::arch::naked_asm!(
                "mov rcx, [rsp]",
                "mov r8, rsp",
                // read and clear the mark (hook ABI v3): the rewriter's mark stub set it
                // if this is a classified call of the allocator
                "mov rax, qword ptr [rip + allocsite_tls_hot@GOTTPOFF]",
                "movzx r9d, byte ptr fs:[rax + 50]",
                "mov byte ptr fs:[rax + 50], 0",
                "jmp {imp}",
                imp = sym $imp
            )
        }
    };
}

type P = *mut c_void;

/// The size to ask glibc for: the request itself (the index keeps the record in the
/// chunk's spare bytes when glibc's size class leaves 8, else out of band, so the
/// program's chunks stay in their size class). With heap checks on, every chunk gets
/// room for the trailer (the checks keep a freed chunk's record there) and the canary
/// (a request too large to add to fails in glibc as the original would have).
#[inline(always)]
fn req(n: usize) -> usize {
    req_if(check::on(), n)
}
#[inline(always)]
fn req_if(chk: bool, n: usize) -> usize {
    if chk {
        n.saturating_add(check::options::PAD.load(Ordering::Relaxed))
    } else {
        n
    }
}

/// A fresh chunk (`malloc`, `realloc(NULL, n)`) in the common case: no checks, one
/// thread, not inside the runtime, the site in the thread's caches (`sites::cached`:
/// nothing looked up in the table, nothing made; a failed call must not make a site). The
/// site is found before glibc is called (so only the size and the id live across the
/// call), then the chunk goes into the index by `chunkmap::insert_fast` (else `insert`).
/// Err, with nothing counted or made, when the case does not apply (the caller then
/// does the whole work; dropping stale entries twice changes nothing).
#[inline(always)]
unsafe fn fresh_fast(n: usize, code: u32, ra: usize, sp: usize, mark: usize) -> Result<P, ()> {
    if check::on() || !chunkmap::single_threaded() {
        return Err(());
    }
    let h = hot();
    if (*h).guard != 0 {
        return Err(());
    }
    guard_on(h, GUARD_WORK);
    let id = cached_site(h, code, ra, sp, mark);
    guard_off(h);
    if id == 0 {
        return Err(());
    }
    let p = lc::malloc_if(false, n);
    if p.is_null() {
        return Ok(p);
    }
    guard_on(h, GUARD_WORK);
    index_fresh(h, p, n, id);
    guard_off(h);
    Ok(p)
}

/// The site of an allocation (under the guard): attributed, then found in the thread's
/// caches or the site table, made if new; 0 when none can be made.
#[inline(always)]
unsafe fn site(h: *mut crate::tls::Hot, code: u32, ra: usize, sp: usize, mark: usize) -> u32 {
    let a = attribute(ra, sp, mark != 0);
    sites::intern(h, a.inner, a.outer, make_key(a.inner_fn, code), a.outer_fn as usize)
}

/// The site of a fast-path allocation (under the guard): 0 unless the thread's caches
/// already hold it (`sites::cached` makes nothing).
#[inline(always)]
unsafe fn cached_site(h: *mut crate::tls::Hot, code: u32, ra: usize, sp: usize, mark: usize) -> u32 {
    let a = attribute(ra, sp, mark != 0);
    sites::cached(h, a.inner, a.outer, make_key(a.inner_fn, code), a.outer_fn as usize)
}

/// Index a new chunk of a fast path (under the guard): `insert_fast` and the
/// single-threaded count, else the whole insert.
#[inline(always)]
unsafe fn index_fresh(h: *mut crate::tls::Hot, p: P, n: usize, id: u32) {
    if INDEXING.load(Ordering::Relaxed) && chunkmap::insert_fast(h, p as usize, n, id) {
        sites::on_alloc_single(id, n as u64);
    } else {
        record_id(h, p, n, id);
    }
}

/// Index a chunk whose site is known (`fresh_fast`, when `insert_fast` did not apply).
#[inline(never)]
unsafe fn record_id(h: *mut crate::tls::Hot, p: P, n: usize, id: u32) {
    let ok = INDEXING.load(Ordering::Relaxed) && chunkmap::insert(p as usize, n, id).is_ok();
    sites::on_alloc(h, id, n as u64, ok);
}

unsafe extern "C" fn malloc_impl(n: usize, a: usize, b: usize, ra: usize, sp: usize, mark: usize) -> P {
    if sh::small(n) && serve_now() {
        if let Some(p) = small_fast(n, A_MALLOC, ra, sp, mark) {
            return p;
        }
    }
    // (with checks the spans' fast path never applies: `serve_now` is false)
    if check::on() {
        return new_checked(n, A_MALLOC, ra, sp, mark);
    }
    if let Ok(p) = fresh_fast(n, A_MALLOC, ra, sp, mark) {
        return p;
    }
    malloc_general(n, a, b, ra, sp, mark)
}
#[inline(never)]
unsafe fn malloc_general(n: usize, _: usize, _: usize, ra: usize, sp: usize, mark: usize) -> P {
    if let Some(p) = small_general(n, A_MALLOC, ra, sp, mark) {
        return p;
    }
    let chk = check::on();
    let p = lc::malloc_if(chk, req_if(chk, n));
    if !p.is_null() {
        record_if(chk, p, n, A_MALLOC, ra, sp, mark);
    }
    p
}
unsafe extern "C" fn calloc_impl(n: usize, s: usize, _: usize, ra: usize, sp: usize, mark: usize) -> P {
    let Some(t) = n.checked_mul(s) else {
        *libc::__errno_location() = libc::ENOMEM;
        return null_mut();
    };
    if let Some(p) = small_general(t, A_CALLOC, ra, sp, mark) {
        // (a recycled object holds old contents)
        core::ptr::write_bytes(p as *mut u8, 0, t);
        return p;
    }
    let p = lc::calloc(req(t), 1);
    if !p.is_null() {
        record(p, t, A_CALLOC, ra, sp, mark);
    }
    p
}
unsafe fn realloc_common(p: P, n: usize, code: u32, ra: usize, sp: usize, mark: usize) -> P {
    // (the checks' flag read once for the whole call)
    let chk = check::on();
    if chk && !p.is_null() && (*hot()).guard == 0 {
        return realloc_checked(p, n, code, ra, sp, mark);
    }
    if p.is_null() {
        return realloc_null(chk, n, code, ra, sp, mark);
    }
    if sh::owns(p as usize) {
        return small_realloc(p, n, code, ra, sp, mark);
    }
    if n != 0 && !chk {
        if let Some(q) = realloc_to_span(p, n, code, ra, sp, mark) {
            return q;
        }
    }
    let old = unrecord(p);
    // (realloc to 0 frees in glibc: keep it a free)
    let q = lc::realloc_if(chk, p, if n == 0 { 0 } else { req_if(chk, n) });
    if q.is_null() && n != 0 {
        // failed: p is untouched, put its record back
        if let Some(c) = old {
            restore(c);
        }
        return q;
    }
    let _ = old;
    if !q.is_null() {
        record_if(chk, q, n, code, ra, sp, mark);
    }
    q
}
/// `realloc(NULL, n)` (Lua's allocator makes every object this way): as cheap as
/// `malloc(n)`, which glibc's `realloc` calls for it; inlined into `realloc_impl`,
/// which tests for NULL first (one call level less on Lua's every allocation).
#[inline(always)]
unsafe fn realloc_null(chk: bool, n: usize, code: u32, ra: usize, sp: usize, mark: usize) -> P {
    if chk {
        // (a new chunk like malloc's)
        return new_checked(n, code, ra, sp, mark);
    }
    if let Some(q) = small_general(n, code, ra, sp, mark) {
        return q;
    }
    let q = lc::malloc_if(false, n);
    if !q.is_null() {
        record_if(false, q, n, code, ra, sp, mark);
    }
    q
}
unsafe extern "C" fn realloc_impl(p: P, n: usize, _: usize, ra: usize, sp: usize, mark: usize) -> P {
    // (realloc_common sends a NULL pointer to realloc_null whatever the checks)
    if p.is_null() {
        if sh::small(n) && serve_now() {
            if let Some(q) = small_fast(n, A_REALLOC, ra, sp, mark) {
                return q;
            }
        }
        if check::on() {
            return new_checked(n, A_REALLOC, ra, sp, mark);
        }
        if let Ok(q) = fresh_fast(n, A_REALLOC, ra, sp, mark) {
            return q;
        }
        return realloc_null_general(n, ra, sp, mark);
    }
    if sh::owns(p as usize) {
        if let Some(q) = small_realloc_fast(p, n, ra, sp, mark) {
            return q;
        }
        return small_realloc(p, n, A_REALLOC, ra, sp, mark);
    }
    if sh::small(n) && serve_now() {
        // (a chunk of glibc's made small: realloc_common moves it into a span)
        return realloc_common(p, n, A_REALLOC, ra, sp, mark);
    }
    if let Ok(q) = realloc_fast(p, n, ra, sp, mark) {
        return q;
    }
    realloc_common(p, n, A_REALLOC, ra, sp, mark)
}

/// `realloc(p, n)`, n > 0, in the common case (`fresh_fast`'s, and the old chunk found
/// at once by `chunkmap::remove_fast`): the old record out, glibc's realloc, the new
/// chunk in, as `realloc_common` does. Err, with nothing changed, when the case does
/// not apply.
#[inline(always)]
unsafe fn realloc_fast(p: P, n: usize, ra: usize, sp: usize, mark: usize) -> Result<P, ()> {
    if n == 0 || check::on() || !chunkmap::single_threaded() || index::SUB_USED.load(Ordering::Relaxed) {
        return Err(());
    }
    let h = hot();
    if (*h).guard != 0 {
        return Err(());
    }
    guard_on(h, GUARD_WORK);
    let id = cached_site(h, A_REALLOC, ra, sp, mark);
    let old = if id != 0 { chunkmap::remove_fast(h, p as usize) } else { None };
    let Some((size, oid)) = old else {
        guard_off(h);
        return Err(());
    };
    sites::on_free_single(oid, size as u64);
    guard_off(h);
    let q = lc::realloc_if(false, p, n);
    guard_on(h, GUARD_WORK);
    if q.is_null() {
        // failed: p is untouched, put its record back
        if chunkmap::insert(p as usize, size, oid).is_ok() {
            sites::on_restore(h, oid, size as u64);
        }
    } else {
        index_fresh(h, q, n, id);
    }
    guard_off(h);
    Ok(q)
}
#[inline(never)]
unsafe fn realloc_null_general(n: usize, ra: usize, sp: usize, mark: usize) -> P {
    realloc_null(check::on(), n, A_REALLOC, ra, sp, mark)
}
unsafe extern "C" fn reallocarray_impl(p: P, n: usize, s: usize, ra: usize, sp: usize, mark: usize) -> P {
    let Some(t) = n.checked_mul(s) else {
        *libc::__errno_location() = libc::ENOMEM;
        return null_mut();
    };
    realloc_common(p, t, A_REALLOCARRAY, ra, sp, mark)
}
unsafe extern "C" fn free_impl(p: P, a: usize, b: usize, ra: usize, sp: usize, mark: usize) {
    // (span objects first: the unchecked free of one is the hottest path)
    if sh::owns(p as usize) {
        if check::on() {
            return free_span_checked(p, ra, sp, mark);
        }
        return small_free(p);
    }
    // The common case in one straight line, without a stack frame: no checks, one
    // thread, no suballocator pieces, not inside the runtime, and a chunk the index
    // finds at once (`chunkmap::remove_fast`). Anything else goes, from the start, to
    // `free_slow` (with checks: the free's site needs `ra`, `sp` and `mark`) or
    // `free_unchecked` (nothing is changed before the fast path knows it applies).
    if check::on() {
        return free_slow(p, a, b, ra, sp, mark);
    }
    if p.is_null() {
        return;
    }
    if chunkmap::single_threaded() && !index::SUB_USED.load(Ordering::Relaxed) {
        let h = hot();
        if (*h).guard == 0 {
            guard_on(h, GUARD_WORK);
            if let Some((size, id)) = chunkmap::remove_fast(h, p as usize) {
                sites::on_free_single(id, size as u64);
                guard_off(h);
                return lc::free_if(false, p);
            }
            guard_off(h);
        }
    }
    free_unchecked(p)
}

#[inline(never)]
unsafe fn free_unchecked(p: P) {
    unrecord(p);
    lc::free_if(false, p);
}

#[inline(never)]
unsafe fn free_slow(p: P, _: usize, _: usize, ra: usize, sp: usize, mark: usize) {
    if p.is_null() {
        return;
    }
    let chk = check::on();
    if chk && (*hot()).guard == 0 {
        free_checked(p, ra, sp, mark);
        return;
    }
    if sh::owns(p as usize) {
        // (inside the runtime: deferred, unchecked)
        return small_free(p);
    }
    unrecord(p);
    lc::free_if(chk, p);
}
unsafe extern "C" fn posix_memalign_impl(pp: *mut P, a: usize, n: usize, ra: usize, sp: usize, mark: usize) -> i32 {
    if a % core::mem::size_of::<usize>() != 0 || !a.is_power_of_two() {
        return libc::EINVAL;
    }
    let p = lc::memalign(a, req(n));
    if p.is_null() {
        return libc::ENOMEM;
    }
    *pp = p;
    record(p, n, A_POSIX_MEMALIGN, ra, sp, mark);
    0
}
unsafe extern "C" fn aligned_alloc_impl(a: usize, n: usize, _: usize, ra: usize, sp: usize, mark: usize) -> P {
    let p = lc::memalign(a, req(n));
    if !p.is_null() {
        record(p, n, A_ALIGNED_ALLOC, ra, sp, mark);
    }
    p
}
unsafe extern "C" fn memalign_impl(a: usize, n: usize, _: usize, ra: usize, sp: usize, mark: usize) -> P {
    let p = lc::memalign(a, req(n));
    if !p.is_null() {
        record(p, n, A_MEMALIGN, ra, sp, mark);
    }
    p
}
unsafe extern "C" fn valloc_impl(n: usize, _: usize, _: usize, ra: usize, sp: usize, mark: usize) -> P {
    let p = lc::valloc(req(n));
    if !p.is_null() {
        record(p, n, A_VALLOC, ra, sp, mark);
    }
    p
}
unsafe extern "C" fn pvalloc_impl(n: usize, _: usize, _: usize, ra: usize, sp: usize, mark: usize) -> P {
    let p = lc::pvalloc(req(n));
    if !p.is_null() {
        let pg = libc::sysconf(libc::_SC_PAGESIZE) as usize;
        record(p, (n + pg - 1) & !(pg - 1), A_PVALLOC, ra, sp, mark);
    }
    p
}
unsafe extern "C" fn strdup_impl(s: *const i8, _: usize, _: usize, ra: usize, sp: usize, mark: usize) -> P {
    let n = libc::strlen(s) + 1;
    if let Some(p) = small_general(n, A_STRDUP, ra, sp, mark) {
        core::ptr::copy_nonoverlapping(s as *const u8, p as *mut u8, n);
        return p;
    }
    let p = lc::malloc(req(n));
    if !p.is_null() {
        // (recorded first: a check may poison the new chunk)
        record(p, n, A_STRDUP, ra, sp, mark);
        core::ptr::copy_nonoverlapping(s as *const u8, p as *mut u8, n);
    }
    p
}
unsafe extern "C" fn strndup_impl(s: *const i8, m: usize, _: usize, ra: usize, sp: usize, mark: usize) -> P {
    let n = libc::strnlen(s, m);
    if let Some(p) = small_general(n + 1, A_STRNDUP, ra, sp, mark) {
        core::ptr::copy_nonoverlapping(s as *const u8, p as *mut u8, n);
        *(p as *mut u8).add(n) = 0;
        return p;
    }
    let p = lc::malloc(req(n + 1));
    if !p.is_null() {
        record(p, n + 1, A_STRNDUP, ra, sp, mark);
        core::ptr::copy_nonoverlapping(s as *const u8, p as *mut u8, n);
        *(p as *mut u8).add(n) = 0;
    }
    p
}

shim!(malloc(n: usize) -> P, malloc_impl);
shim!(calloc(n: usize, s: usize) -> P, calloc_impl);
shim!(realloc(p: P, n: usize) -> P, realloc_impl);
shim!(reallocarray(p: P, n: usize, s: usize) -> P, reallocarray_impl);
shim!(free(p: P) -> (), free_impl);
shim!(cfree(p: P) -> (), free_impl);
shim!(posix_memalign(pp: *mut P, a: usize, n: usize) -> i32, posix_memalign_impl);
shim!(aligned_alloc(a: usize, n: usize) -> P, aligned_alloc_impl);
shim!(memalign(a: usize, n: usize) -> P, memalign_impl);
shim!(valloc(n: usize) -> P, valloc_impl);
shim!(pvalloc(n: usize) -> P, pvalloc_impl);
shim!(strdup(s: *const i8) -> P, strdup_impl);
shim!(strndup(s: *const i8, n: usize) -> P, strndup_impl);
shim!(__strdup(s: *const i8) -> P, strdup_impl);
shim!(__strndup(s: *const i8, n: usize) -> P, strndup_impl);

/// glibc's `malloc_usable_size`, from the chunk header, less the trailer's bytes.
#[no_mangle]
pub unsafe extern "C" fn malloc_usable_size(p: P) -> usize {
    if p.is_null() {
        return 0;
    }
    if sh::owns(p as usize) {
        let locked = lock_small();
        // (with checks, the bytes past the requested size hold the canary)
        let u = if check::on() { sh::object(p as usize).map_or(0, |o| o.0) } else { sh::usable(p as usize) };
        unlock_small(locked);
        return u;
    }
    if check::on() {
        // (the bytes past the requested size hold the canary)
        if let Some(c) = chunkmap::lookup(p as usize, true).filter(|c| c.base == p as usize) {
            return c.size;
        }
    }
    let (u, _) = chunkmap::header(p as usize);
    if chunkmap::has_trailer(p as usize) {
        u - TRAILER
    } else {
        u
    }
}

// ---------------------------------------------------------------- C++

unsafe extern "C" fn new_impl(n: usize, _: usize, _: usize, ra: usize, sp: usize, mark: usize) -> P {
    if let Some(p) = small_general(n, A_NEW, ra, sp, mark) {
        return p;
    }
    let p = lc::malloc(req(n.max(1)));
    if !p.is_null() {
        record(p, n, A_NEW, ra, sp, mark);
    }
    p
}
unsafe extern "C" fn new_arr_impl(n: usize, _: usize, _: usize, ra: usize, sp: usize, mark: usize) -> P {
    if let Some(p) = small_general(n, A_NEW_ARR, ra, sp, mark) {
        return p;
    }
    let p = lc::malloc(req(n.max(1)));
    if !p.is_null() {
        record(p, n, A_NEW_ARR, ra, sp, mark);
    }
    p
}
unsafe extern "C" fn new_al_impl(n: usize, a: usize, _: usize, ra: usize, sp: usize, mark: usize) -> P {
    let p = lc::memalign(a, req(n.max(1)));
    if !p.is_null() {
        record(p, n, A_NEW, ra, sp, mark);
    }
    p
}
unsafe extern "C" fn new_arr_al_impl(n: usize, a: usize, _: usize, ra: usize, sp: usize, mark: usize) -> P {
    let p = lc::memalign(a, req(n.max(1)));
    if !p.is_null() {
        record(p, n, A_NEW_ARR, ra, sp, mark);
    }
    p
}

/// The C++ runtime's own operator, used only when the allocation failed (it runs the
/// new-handler loop and throws `std::bad_alloc`, or returns NULL for nothrow forms).
unsafe fn real(slot: &AtomicPtr<c_void>, name: &core::ffi::CStr) -> *mut c_void {
    let mut f = slot.load(Ordering::Acquire);
    if f.is_null() {
        f = libc::dlsym(libc::RTLD_NEXT, name.as_ptr());
        slot.store(f, Ordering::Release);
    }
    f
}

macro_rules! cxx_new {
    ($name:ident, $imp:path) => {
        #[unsafe(naked)]
        #[no_mangle]
        pub unsafe extern "C" fn $name(_n: usize, _a: usize, _b: usize) -> P {
            core::arch::naked_asm!(
                "push rdi",
                "push rsi",
                "push rdx",
                "mov rcx, [rsp+24]",
                "lea r8, [rsp+24]",
                "mov rax, qword ptr [rip + allocsite_tls_hot@GOTTPOFF]",
                "movzx r9d, byte ptr fs:[rax + 50]",
                "mov byte ptr fs:[rax + 50], 0",
                "call {imp}",
                "pop rdx",
                "pop rsi",
                "pop rdi",
                "test rax, rax",
                "jz 2f",
                "ret",
                "2:",
                "jmp {slow}",
                imp = sym $imp,
                slow = sym slow::$name,
            )
        }
    };
}

macro_rules! cxx_slow {
    ($($name:ident $nothrow:expr;)*) => {
        mod slow {
            use super::*;
            $(
                pub unsafe extern "C-unwind" fn $name(a: usize, b: usize, c: usize) -> P {
                    static SLOT: AtomicPtr<c_void> = AtomicPtr::new(null_mut());
                    let f = real(&SLOT, core::ffi::CStr::from_bytes_with_nul_unchecked(concat!(stringify!($name), "\0").as_bytes()));
                    if f.is_null() {
                        if $nothrow {
                            return null_mut();
                        }
                        libc::abort();
                    }
                    let f: unsafe extern "C-unwind" fn(usize, usize, usize) -> P = core::mem::transmute(f);
                    f(a, b, c)
                }
            )*
        }
    };
}

cxx_slow! {
    _Znwm false;
    _Znam false;
    _ZnwmRKSt9nothrow_t true;
    _ZnamRKSt9nothrow_t true;
    _ZnwmSt11align_val_t false;
    _ZnamSt11align_val_t false;
    _ZnwmSt11align_val_tRKSt9nothrow_t true;
    _ZnamSt11align_val_tRKSt9nothrow_t true;
}
cxx_new!(_Znwm, new_impl);
cxx_new!(_Znam, new_arr_impl);
cxx_new!(_ZnwmRKSt9nothrow_t, new_impl);
cxx_new!(_ZnamRKSt9nothrow_t, new_arr_impl);
cxx_new!(_ZnwmSt11align_val_t, new_al_impl);
cxx_new!(_ZnamSt11align_val_t, new_arr_al_impl);
cxx_new!(_ZnwmSt11align_val_tRKSt9nothrow_t, new_al_impl);
cxx_new!(_ZnamSt11align_val_tRKSt9nothrow_t, new_arr_al_impl);

shim!(_ZdlPv(p: P) -> (), free_impl);
shim!(_ZdaPv(p: P) -> (), free_impl);
shim!(_ZdlPvm(p: P, n: usize) -> (), free_impl);
shim!(_ZdaPvm(p: P, n: usize) -> (), free_impl);
shim!(_ZdlPvSt11align_val_t(p: P, a: usize) -> (), free_impl);
shim!(_ZdaPvSt11align_val_t(p: P, a: usize) -> (), free_impl);
shim!(_ZdlPvmSt11align_val_t(p: P, n: usize, a: usize) -> (), free_impl);
shim!(_ZdaPvmSt11align_val_t(p: P, n: usize, a: usize) -> (), free_impl);
shim!(_ZdlPvRKSt9nothrow_t(p: P, t: usize) -> (), free_impl);
shim!(_ZdaPvRKSt9nothrow_t(p: P, t: usize) -> (), free_impl);
shim!(_ZdlPvSt11align_val_tRKSt9nothrow_t(p: P, a: usize, t: usize) -> (), free_impl);
shim!(_ZdaPvSt11align_val_tRKSt9nothrow_t(p: P, a: usize, t: usize) -> (), free_impl);
