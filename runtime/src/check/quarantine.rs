//! The quarantine: freed chunks kept out of glibc's reuse, first in first out, up to
//! `quarantine=BYTES` of usable size. Each chunk's free pattern is checked as it
//! leaves and at exit; a damaged byte is a write after free, reported with its offset.
use super::finding::{raise, Finding};
use super::pattern;
use crate::sys::Spin;
use core::sync::atomic::Ordering;


#[derive(Clone, Copy)]
pub struct Entry {
    pub base: usize,
    pub size: usize,
    pub usable: usize,
    pub alloc_id: u32,
    pub free_id: u32,
}

const AHEAD: usize = 16;

/// Most chunks the quarantine holds (the ring doubles up to this).
const MAX: usize = 1 << 24;

struct Ring {
    buf: *mut Entry,
    /// A power of two (4096, doubled): positions wrap with a mask, not a division.
    cap: usize,
    head: usize,
    len: usize,
    bytes: u64,
}
pub static LOCK: Spin = Spin::new();
static mut RING: Ring = Ring { buf: core::ptr::null_mut(), cap: 0, head: 0, len: 0, bytes: 0 };

/// Double the ring (entries move to the front in FIFO order); false when it cannot.
unsafe fn grow(r: &mut Ring) -> bool {
    let cap = if r.cap == 0 { 4096 } else { r.cap * 2 };
    if cap > MAX {
        return false;
    }
    let sz = core::mem::size_of::<Entry>();
    let m = libc::mmap(core::ptr::null_mut(), cap * sz, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, 0);
    if m == libc::MAP_FAILED {
        return false;
    }
    let nb: *mut Entry = m.cast();
    for i in 0..r.len {
        *nb.add(i) = *r.buf.add((r.head + i) & (r.cap - 1));
    }
    if !r.buf.is_null() {
        libc::munmap(r.buf.cast(), r.cap * sz);
    }
    r.buf = nb;
    r.cap = cap;
    r.head = 0;
    true
}

/// With the quarantine in force (at start-up): glibc's fastbins off. Chunks leave the
/// quarantine in the order they were freed, 16 MiB of frees later, scattered over the
/// heap; on fastbins (LIFO lists that never coalesce) the program's new objects would
/// land in those scattered holes. Without them a leaving chunk coalesces with free
/// neighbours, and glibc carves new chunks out of the merged blocks in address order,
/// so the live heap stays denser (Lua: 15 % faster with all checks, README).
pub fn start() {
    if super::options::has(super::options::QUARANTINE) {
        unsafe { libc::mallopt(libc::M_MXFAST, 0) };
    }
}

fn ring() -> &'static mut Ring {
    unsafe { &mut *core::ptr::addr_of_mut!(RING) }
}

/// Check a chunk leaving quarantine, then give it to glibc.
unsafe fn leave(e: Entry, release: bool) {
    let b = pattern::free_byte();
    if let Some(off) = pattern::first_not(e.base, e.size, b) {
        raise(Finding::write_after_free(e.base, e.size, e.alloc_id, e.free_id, off, e.size));
    }
    if release {
        super::nested::free(e.base as *mut _);
    }
}

fn pop(r: &mut Ring) -> Option<Entry> {
    if r.len == 0 {
        return None;
    }
    let e = unsafe { *r.buf.add(r.head) };
    r.head = (r.head + 1) & (r.cap - 1);
    r.len -= 1;
    r.bytes -= e.usable as u64;
    Some(e)
}

/// Keep a freed chunk (already filled with the free pattern); the oldest ones leave
/// while the quarantine holds more than its budget.
pub unsafe fn push(e: Entry) {
    let budget = super::options::QUARANTINE_BYTES.load(Ordering::Relaxed);
    LOCK.lock();
    loop {
        let r = ring();
        if r.len < r.cap || grow(r) {
            break;
        }
        let old = pop(r);
        LOCK.unlock();
        match old {
            Some(o) => leave(o, true),
            None => return leave(e, true), // (no ring at all)
        }
        LOCK.lock();
    }
    let r = ring();
    *r.buf.add((r.head + r.len) & (r.cap - 1)) = e;
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
    // The chunks about to leave were freed 16 MiB of frees ago: they are cold. Ask for
    // the first lines of the one AHEAD places from leaving (about AHEAD frees from now),
    // so the misses overlap the program's work.
    let r = ring();
    if r.len > AHEAD {
        let nx = (*r.buf.add((r.head + AHEAD) & (r.cap - 1))).base;
        use core::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>((nx - 16) as *const i8);
        _mm_prefetch::<_MM_HINT_T0>((nx + 48) as *const i8);
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
        let e = unsafe { *r.buf.add((r.head + i) & (r.cap - 1)) };
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
        v.push(unsafe { *r.buf.add((r.head + i) & (r.cap - 1)) });
    }
    LOCK.unlock();
    for e in v {
        unsafe { leave(e, false) };
    }
}
