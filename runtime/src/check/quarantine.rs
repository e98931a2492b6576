//! The quarantine: freed chunks kept out of glibc's reuse, first in first out, up to
//! `quarantine=BYTES` of usable size. Each chunk's free pattern is checked as it
//! leaves and at exit; a damaged byte is a write after free, reported with its offset.
use super::finding::{raise, Finding, Kind};
use super::pattern;
use crate::sys::Spin;
use core::sync::atomic::Ordering;

extern "C" {
    fn __libc_free(p: *mut core::ffi::c_void);
}

#[derive(Clone, Copy)]
pub struct Entry {
    pub base: usize,
    pub size: usize,
    pub usable: usize,
    pub alloc_id: u32,
    pub free_id: u32,
}

/// Ring capacity: address space reserved once, touched as it fills.
const CAP: usize = 1 << 21;

struct Ring {
    buf: *mut Entry,
    head: usize,
    len: usize,
    bytes: u64,
}
static LOCK: Spin = Spin::new();
static mut RING: Ring = Ring { buf: core::ptr::null_mut(), head: 0, len: 0, bytes: 0 };

fn ring() -> &'static mut Ring {
    unsafe { &mut *core::ptr::addr_of_mut!(RING) }
}

/// Check a chunk leaving quarantine, then give it to glibc.
unsafe fn leave(e: Entry, release: bool) {
    let b = pattern::free_byte();
    if let Some(off) = pattern::first_not(e.base, e.size, b) {
        let mut f = Finding::new(Kind::WriteAfterFree, e.base);
        f.base = e.base;
        f.size = e.size;
        f.alloc_id = e.alloc_id;
        f.free_id = e.free_id;
        f.offset = Some(off);
        (f.found, f.nfound) = pattern::bytes_at(e.base, off, e.size);
        raise(f);
    }
    if release {
        __libc_free(e.base as *mut _);
    }
}

fn pop(r: &mut Ring) -> Option<Entry> {
    if r.len == 0 {
        return None;
    }
    let e = unsafe { *r.buf.add(r.head) };
    r.head = (r.head + 1) % CAP;
    r.len -= 1;
    r.bytes -= e.usable as u64;
    Some(e)
}

/// Keep a freed chunk (already filled with the free pattern); the oldest ones leave
/// while the quarantine holds more than its budget.
pub unsafe fn push(e: Entry) {
    let budget = super::options::QUARANTINE_BYTES.load(Ordering::Relaxed);
    LOCK.lock();
    let r = ring();
    if r.buf.is_null() {
        let m = libc::mmap(
            core::ptr::null_mut(),
            CAP * core::mem::size_of::<Entry>(),
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        );
        if m == libc::MAP_FAILED {
            LOCK.unlock();
            return leave(e, true);
        }
        r.buf = m.cast();
    }
    if r.len == CAP {
        let old = pop(r);
        LOCK.unlock();
        if let Some(o) = old {
            leave(o, true);
        }
        LOCK.lock();
    }
    let r = ring();
    *r.buf.add((r.head + r.len) % CAP) = e;
    r.len += 1;
    r.bytes += e.usable as u64;
    loop {
        let r = ring();
        if r.bytes <= budget {
            break;
        }
        let Some(o) = pop(r) else { break };
        LOCK.unlock();
        leave(o, true);
        LOCK.lock();
    }
    LOCK.unlock();
}

/// The quarantined chunk based at `p`, if any (a linear search: only for frees of
/// pointers the index does not know).
pub fn find(p: usize) -> Option<Entry> {
    LOCK.lock();
    let r = ring();
    let mut found = None;
    for i in 0..r.len {
        let e = unsafe { *r.buf.add((r.head + i) % CAP) };
        if e.base == p {
            found = Some(e);
        }
    }
    LOCK.unlock();
    found
}

/// At exit: check every quarantined chunk's pattern (they stay allocated).
pub fn check_all() {
    LOCK.lock();
    let r = ring();
    let mut v = Vec::with_capacity(r.len);
    for i in 0..r.len {
        v.push(unsafe { *r.buf.add((r.head + i) % CAP) });
    }
    LOCK.unlock();
    for e in v {
        unsafe { leave(e, false) };
    }
}
