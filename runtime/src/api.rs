//! The query API of include/allocsite.h.
use crate::tls::{guard_off, guard_on, guarded, GUARD_INTERNAL, GUARD_WORK};
use crate::sites;
use crate::tls::hot;
use crate::{chunkmap, index, smallheap};
use core::ffi::{c_char, c_int, c_void};

#[repr(C)]
pub struct AllocsiteChunk {
    pub base: *mut c_void,
    pub size: usize,
    pub site: *mut c_void,
    pub outermost: *mut c_void,
    pub allocator: *const c_char,
    pub outermost_allocator: *const c_char,
}

#[repr(C)]
pub struct AllocsiteTotals {
    pub calls: u64,
    pub bytes: u64,
    pub live_chunks: u64,
    pub live_bytes: u64,
    pub dropped: u64,
    pub meta_bytes: u64,
}

fn fill(c: &index::Chunk, out: &mut AllocsiteChunk) {
    let k = sites::key(c.id);
    out.base = c.base as *mut c_void;
    out.size = c.size;
    out.site = k.inner as *mut c_void;
    out.outermost = k.outer as *mut c_void;
    out.allocator = sites::allocator_cname(k.key);
    out.outermost_allocator = sites::outer_allocator_cname(k.key, k.okey);
}

#[no_mangle]
pub unsafe extern "C" fn allocsite_lookup(p: *const c_void, out: *mut AllocsiteChunk) -> c_int {
    let h = hot();
    let c = if (*h).guard != 0 {
        index::lookup(&index::SUB, p as usize, false)
            .or_else(|| smallheap::lookup(p as usize, false))
            .or_else(|| chunkmap::lookup(p as usize, false))
    } else {
        guard_on(h, GUARD_WORK);
        let c = index::lookup(&index::SUB, p as usize, true)
            .or_else(|| smallheap::lookup(p as usize, true))
            .or_else(|| chunkmap::lookup(p as usize, true));
        guard_off(h);
        c
    };
    match c {
        Some(c) if !out.is_null() => {
            fill(&c, &mut *out);
            1
        }
        Some(_) => 1,
        None => 0,
    }
}

#[no_mangle]
pub unsafe extern "C" fn allocsite_symbolize(addr: *const c_void, buf: *mut c_char, len: usize) -> c_int {
    guarded(GUARD_INTERNAL, || {
        let s = crate::symbolize::symbolize(addr as usize);
        let text = match &s.line {
            Some(l) => format!("{} ({})", s.symbol, l),
            None => s.symbol.clone(),
        };
        if len > 0 && !buf.is_null() {
            let n = text.len().min(len - 1);
            core::ptr::copy_nonoverlapping(text.as_ptr(), buf as *mut u8, n);
            *buf.add(n) = 0;
        }
        text.len() as c_int
    })
}

pub type VisitFn = unsafe extern "C" fn(*const AllocsiteChunk, *mut c_void) -> c_int;

#[no_mangle]
pub unsafe extern "C" fn allocsite_for_each_chunk(f: Option<VisitFn>, arg: *mut c_void) -> usize {
    let Some(f) = f else { return 0 };
    let stop = core::cell::Cell::new(false);
    let mut n = 0;
    let mut visit = |c: index::Chunk| {
        let mut out = AllocsiteChunk {
            base: core::ptr::null_mut(),
            size: 0,
            site: core::ptr::null_mut(),
            outermost: core::ptr::null_mut(),
            allocator: core::ptr::null(),
            outermost_allocator: core::ptr::null(),
        };
        fill(&c, &mut out);
        stop.set(f(&out, arg) != 0);
        stop.get()
    };
    n += chunkmap::for_each_chunk(&mut visit);
    if !stop.get() {
        n += smallheap::for_each(&mut visit);
    }
    if !stop.get() {
        n += index::for_each_chunk(&index::SUB, &mut visit);
    }
    n
}

#[no_mangle]
pub unsafe extern "C" fn allocsite_write_report(path: *const c_char) -> c_int {
    let p: &[u8] = if path.is_null() {
        match crate::report::path() {
            Some(p) => p,
            None => {
                *libc::__errno_location() = libc::EINVAL;
                return -1;
            }
        }
    } else {
        core::ffi::CStr::from_ptr(path).to_bytes()
    };
    match crate::report::write(p, "request") {
        Ok(()) => 0,
        Err(e) => {
            *libc::__errno_location() = e.raw_os_error().unwrap_or(libc::EIO);
            -1
        }
    }
}

#[no_mangle]
pub unsafe extern "C" fn allocsite_get_totals(out: *mut AllocsiteTotals) {
    if out.is_null() {
        return;
    }
    // (the snapshot's memory is freed before the guard is put back)
    let t = guarded(GUARD_INTERNAL, || crate::report::totals(&crate::report::snapshot()));
    *out = AllocsiteTotals {
        calls: t.agg.calls,
        bytes: t.agg.bytes,
        live_chunks: t.agg.live_chunks,
        live_bytes: t.agg.live_bytes,
        dropped: t.dropped,
        meta_bytes: t.meta_bytes,
    };
}

/// `const char *allocsite_get_type(const void *ptr)`: the type name of the chunk
/// holding `ptr` (its innermost site's, from the object's `.allocsite.types`), or NULL.
#[no_mangle]
pub unsafe extern "C" fn allocsite_get_type(p: *const c_void) -> *const c_char {
    let mut c: AllocsiteChunk = core::mem::zeroed();
    if allocsite_lookup(p, &mut c) == 0 || c.site.is_null() {
        return core::ptr::null();
    }
    guarded(GUARD_INTERNAL, || {
        let s = crate::symbolize::symbolize(c.site as usize);
        crate::types::type_at(&s.path, s.vaddr).map(|n| n.as_ptr()).unwrap_or(core::ptr::null())
    })
}
