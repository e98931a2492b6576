//! The quarantine: freed chunks kept out of glibc's reuse, first in first out, up to
//! `quarantine=BYTES` of usable size (`charge`). Each chunk's free pattern is checked as it
//! leaves and at exit; a damaged byte is a write after free, reported with its offset.
use super::finding::{raise, Finding};
use super::pattern;
use crate::sys::Spin;
use core::sync::atomic::Ordering;


/// A quarantined chunk, as the checks see it.
#[derive(Clone, Copy)]
pub struct Entry {
    pub base: usize,
    pub size: usize,
    pub alloc_id: u32,
    pub free_id: u32,
}

/// An entry as the ring keeps it, in 16 bytes (Lua's 16 MiB quarantine holds about
/// 200,000 chunks: the ring is read and written once per free, and at 32 bytes an entry
/// it was 6 MiB of the caches' room): `base >> 4 | alloc id << 44`,
/// `size | free id << 44`. Site ids are below `sites::MAX_SITES` (2^18), chunks in
/// glibc's 16-byte granules, sizes below 2^44 (a larger chunk leaves at once).
#[derive(Clone, Copy)]
struct Packed(u64, u64);

const LOW: u64 = (1 << 44) - 1;
const _: () = assert!(crate::sites::MAX_SITES <= 1 << 20);

impl Packed {
    fn new(e: &Entry) -> Packed {
        Packed((e.base as u64 >> 4) | (e.alloc_id as u64) << 44, e.size as u64 | (e.free_id as u64) << 44)
    }
    fn base(self) -> usize {
        ((self.0 & LOW) << 4) as usize
    }
    fn size(self) -> usize {
        (self.1 & LOW) as usize
    }
    fn entry(self) -> Entry {
        Entry { base: self.base(), size: self.size(), alloc_id: (self.0 >> 44) as u32, free_id: (self.1 >> 44) as u32 }
    }
}

/// What a chunk of `size` requested bytes counts against the budget: the usable size of
/// the heap chunk glibc makes for it with the pad (16-byte granules, 32 at least), from
/// the size alone, so that a chunk leaves with what it came in with.
fn charge(size: usize) -> u64 {
    let pad = super::options::PAD.load(Ordering::Relaxed) as u64;
    ((size as u64).saturating_add(pad + 8 + 15) & !15).max(32) - 8
}

const AHEAD: usize = 16;

/// Most chunks the quarantine holds (the ring doubles up to this).
const MAX: usize = 1 << 24;

struct Ring {
    buf: *mut Packed,
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
    let sz = core::mem::size_of::<Packed>();
    let m = libc::mmap(core::ptr::null_mut(), cap * sz, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, 0);
    if m == libc::MAP_FAILED {
        return false;
    }
    let nb: *mut Packed = m.cast();
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
    let e = unsafe { *r.buf.add(r.head) }.entry();
    r.head = (r.head + 1) & (r.cap - 1);
    r.len -= 1;
    r.bytes -= charge(e.size);
    Some(e)
}

/// Keep a freed chunk (already filled with the free pattern); the oldest ones leave
/// while the quarantine holds more than its budget.
pub unsafe fn push(e: Entry) {
    let budget = super::options::QUARANTINE_BYTES.load(Ordering::Relaxed);
    if e.size as u64 > LOW {
        return leave(e, true); // (more than any budget: it leaves as it comes)
    }
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
    *r.buf.add((r.head + r.len) & (r.cap - 1)) = Packed::new(&e);
    r.len += 1;
    r.bytes += charge(e.size);
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
        let nxe = *r.buf.add((r.head + AHEAD) & (r.cap - 1));
        let nx = nxe.base();
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
        if e.base() == p {
            found = Some(e.entry());
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
        v.push(unsafe { *r.buf.add((r.head + i) & (r.cap - 1)) }.entry());
    }
    LOCK.unlock();
    for e in v {
        unsafe { leave(e, false) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_entries_keep_every_field() {
        let top = (crate::sites::MAX_SITES - 1) as u32;
        for e in [
            Entry { base: 0x5555_5555_a010, size: 24, alloc_id: 1, free_id: 2 },
            Entry { base: 0x7fff_ffff_fff0, size: LOW as usize, alloc_id: top, free_id: top },
            Entry { base: 16, size: 0, alloc_id: 0, free_id: top },
        ] {
            let d = Packed::new(&e).entry();
            assert_eq!((d.base, d.size, d.alloc_id, d.free_id), (e.base, e.size, e.alloc_id, e.free_id));
        }
    }

    #[test]
    fn a_chunk_is_charged_its_glibc_usable_size() {
        let pad = crate::check::options::PAD.load(Ordering::Relaxed) as u64;
        for n in 0..200usize {
            let c = charge(n);
            assert!(c >= n as u64 + pad && (c < n as u64 + pad + 16 || c == 24) && (c + 8) % 16 == 0 && c >= 24, "n {n}: {c}");
        }
        assert!(charge(usize::MAX) > 1 << 60);
    }
}
