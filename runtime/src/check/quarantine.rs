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
pub(super) struct Packed(u64, u64);

const LOW: u64 = (1 << 44) - 1;
const _: () = assert!(crate::sites::MAX_SITES <= 1 << 20);

impl Packed {
    pub(super) fn new(e: &Entry) -> Packed {
        Packed((e.base as u64 >> 4) | (e.alloc_id as u64) << 44, e.size as u64 | (e.free_id as u64) << 44)
    }
    pub(super) fn base(self) -> usize {
        ((self.0 & LOW) << 4) as usize
    }
    pub(super) fn size(self) -> usize {
        (self.1 & LOW) as usize
    }
    pub(super) fn entry(self) -> Entry {
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

/// With the quarantine in force (at start-up): the batch buffer is mapped now, not in
/// the middle of a program's `free`. glibc's fastbins stay on. (They were turned off
/// while chunks left one at a time, in the order they were freed, scattered: on
/// fastbins, LIFO lists that never merge, new objects landed in those scattered holes.
/// Batches leave in address order: a fastbin then lists neighbouring chunks, and the
/// next small requests take them one after another through contiguous memory without
/// glibc's merging and splitting. Lua, all checks, 7 interleaved runs on an idle
/// machine: fastbins off 2.23 s median, on 1.97 s, no checks 1.23 s.)
pub fn start() {
    if super::options::has(super::options::QUARANTINE) {
        unsafe { batch_buf() };
        super::recycle::start(super::options::QUARANTINE_BYTES.load(Ordering::Relaxed));
    }
}

fn ring() -> &'static mut Ring {
    unsafe { &mut *core::ptr::addr_of_mut!(RING) }
}

/// The free pattern of a chunk leaving quarantine (`size` requested bytes at `base`,
/// `b` the free byte): a damaged byte is a write after free, its sites from `entry`
/// (decoded only then).
#[inline(always)]
unsafe fn check_pattern(base: usize, size: usize, b: u8, entry: impl FnOnce() -> Entry) {
    if !pattern::filled(base, size, b) {
        if let Some(off) = pattern::first_not(base, size, b) {
            let e = entry();
            raise(Finding::write_after_free(e.base, e.size, e.alloc_id, e.free_id, off, e.size));
        }
    }
}

/// Check a chunk leaving quarantine, then give it to glibc (an object of the runtime's
/// small-object heap to its span).
pub(super) unsafe fn leave(e: Entry, release: bool) {
    check_pattern(e.base, e.size, pattern::free_byte(), || e);
    if release {
        if crate::smallheap::owns(e.base) {
            crate::smallheap::give_back(e.base);
        } else {
            super::nested::free(e.base as *mut _);
        }
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

/// Most chunks in a batch.
const BATCH: usize = 1 << 17;
/// Radix digits of 11 bits, two passes: chunks are sorted on their address in 16-byte
/// granules modulo 2^22 (64 MiB; Lua's checked heap is below 50 MB). Against offsets
/// from the batch's lowest chunk (two more passes over the batch to find it and the
/// span) the order differs only for a batch across a 64 MiB boundary or far apart.
const DIGIT: u32 = 11;
const RANGE: u32 = 2 * DIGIT;
/// Held by the thread that checks and frees a batch (the batch buffer is its own).
pub static DRAIN: Spin = Spin::new();
static mut BATCH_BUF: *mut Packed = core::ptr::null_mut();
/// The batch, then the radix sort's second buffer.
const BATCH_BYTES: usize = 2 * BATCH * core::mem::size_of::<Packed>();

/// The batch buffer (mapped once), or null.
unsafe fn batch_buf() -> *mut Packed {
    let b = *core::ptr::addr_of!(BATCH_BUF);
    if !b.is_null() {
        return b;
    }
    let m = libc::mmap(core::ptr::null_mut(), BATCH_BYTES, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, 0);
    if m == libc::MAP_FAILED {
        return core::ptr::null_mut();
    }
    *core::ptr::addr_of_mut!(BATCH_BUF) = m.cast();
    m.cast()
}

/// Sort `v` by `key` (below 2^`range_bits`), least significant digit first (stable),
/// the entries themselves moved (no gather through an index afterwards); `tmp` is as
/// long as `v`. Returns the sorted slice: `v` or `tmp`. A comparison sort of Lua's
/// batches (tens of thousands of chunks) cost more than the order gained.
fn radix_sort<'a>(mut v: &'a mut [Packed], mut tmp: &'a mut [Packed], key: impl Fn(&Packed) -> u64, range_bits: u32) -> &'a mut [Packed] {
    let mut shift = 0;
    while shift < range_bits {
        let mut count = [0u32; 1 << DIGIT];
        for e in v.iter() {
            count[((key(e) >> shift) & ((1 << DIGIT) - 1)) as usize] += 1;
        }
        let mut sum = 0;
        for c in count.iter_mut() {
            let n = *c;
            *c = sum;
            sum += n;
        }
        for e in v.iter() {
            let d = ((key(e) >> shift) & ((1 << DIGIT) - 1)) as usize;
            tmp[count[d] as usize] = *e;
            count[d] += 1;
        }
        core::mem::swap(&mut v, &mut tmp);
        shift += DIGIT;
    }
    v
}

/// Check and free a batch in address order, or hand its chunks to recycle.rs, which keeps
/// them by size and checks them when they are taken (`tmp`: as long as the batch).
unsafe fn leave_sorted(batch: &mut [Packed], tmp: &mut [Packed]) {
    super::recycle::age();
    // (the address's granule modulo 2^22, 64 MiB: no pass for the batch's lowest chunk
    // and span; a heap across a 64 MiB boundary leaves as two ascending runs)
    let key = |e: &Packed| e.0 & ((1 << RANGE) - 1);
    let sorted = radix_sort(batch, tmp, key, RANGE);
    let n = sorted.len();
    let fb = pattern::free_byte();
    for j in 0..n {
        let e = sorted[j];
        if crate::smallheap::owns(e.base()) {
            // (a span object, in line: checked, then back on its span's free list)
            if j + 4 < n {
                let nx = sorted[j + 4];
                prefetch_span_object(nx.base(), nx.size());
            }
            check_pattern(e.base(), e.size(), fb, || e.entry());
            crate::smallheap::give_back(e.base());
            continue;
        }
        // (a chunk recycle.rs keeps is checked when it is taken: it is not read here)
        if super::recycle::put(e) {
            continue;
        }
        if j + 4 < n {
            use core::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
            let nx = sorted[j + 4];
            if crate::smallheap::owns(nx.base()) {
                prefetch_span_object(nx.base(), nx.size());
            } else if !super::recycle::keeps(nx.size()) {
                // (the first lines of the chunk four places on, and its successor's header)
                _mm_prefetch::<_MM_HINT_T0>((nx.base() - 16) as *const i8);
                _mm_prefetch::<_MM_HINT_T0>((nx.base() + 48) as *const i8);
                _mm_prefetch::<_MM_HINT_T0>((nx.base() + nx.size() + 16) as *const i8);
            }
        }
        leave(e.entry(), true);
    }
}

/// Ask for a span object's lines up to the end of its request, a few places ahead of
/// the one leaving (its span's header is most often the one the previous objects used).
#[inline(always)]
fn prefetch_span_object(base: usize, size: usize) {
    use core::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
    unsafe {
        _mm_prefetch::<_MM_HINT_T0>(base as *const i8);
        _mm_prefetch::<_MM_HINT_T0>((base + size.saturating_sub(1)) as *const i8);
    }
}

/// Keep a freed chunk (already filled with the free pattern). When the quarantine holds
/// more than its budget, its oldest chunks leave together: at least a sixteenth of the
/// budget (at most `BATCH` chunks), checked and given back to glibc in address order
/// (or kept by size for the next requests, recycle.rs, and checked as they are taken).
/// Chunk by chunk, each one leaving was a cold chunk somewhere in a heap 2.5 times the
/// program's; in address order, neighbours freed about the same time merge in glibc or
/// line up in one fastbin as they go (a neighbour just freed is in the cache), the
/// checks read memory in ascending lines (the hardware prefetcher follows), and later
/// requests walk contiguous memory. The quarantine then holds between 15/16 of its
/// budget and all of it: a chunk stays out of reuse for at least 15/16 of the budget's
/// bytes of later frees. (Lua, all checks: batches of 1/16 -8 % against chunk by
/// chunk with the fastbins off, where 1/4 gained a further -12 to -15 %; with the
/// fastbins on, 1/16, 1/8 and 1/4 run alike — medians of 7 runs 1.90, 1.90, 1.89 s;
/// in another round 2.01 s for 1/16, 2.07 s for 1/4 — and 1/64 is slower, 2.22 s.)
#[inline(always)]
pub unsafe fn push(e: Entry) {
    // (one thread, room in the ring — every free but a few: the entry goes in here,
    // in line; a batch, growing the ring and the locked paths out of line)
    if crate::chunkmap::single_threaded() && e.size as u64 <= LOW {
        let r = ring();
        if r.len < r.cap {
            *r.buf.add((r.head + r.len) & (r.cap - 1)) = Packed::new(&e);
            r.len += 1;
            r.bytes += charge(e.size);
            if r.bytes > super::options::QUARANTINE_BYTES.load(Ordering::Relaxed) {
                over_budget(true);
            }
            return;
        }
    }
    push_general(e)
}

#[inline(never)]
unsafe fn push_general(e: Entry) {
    if e.size as u64 > LOW {
        return leave(e, true); // (more than any budget: it leaves as it comes)
    }
    // (one thread: nothing else can reach the ring while this push runs — a signal
    // handler's free on this thread is not checked while the guard is on, and no thread
    // can start — so the lock's atomic exchange is left out of every free)
    let st = crate::chunkmap::single_threaded();
    if !st {
        LOCK.lock();
    }
    loop {
        let r = ring();
        if r.len < r.cap || grow(r) {
            break;
        }
        let old = pop(r);
        if !st {
            LOCK.unlock();
        }
        match old {
            Some(o) => leave(o, true),
            None => return leave(e, true), // (no ring at all)
        }
        if !st {
            LOCK.lock();
        }
    }
    let r = ring();
    *r.buf.add((r.head + r.len) & (r.cap - 1)) = Packed::new(&e);
    r.len += 1;
    r.bytes += charge(e.size);
    if r.bytes <= super::options::QUARANTINE_BYTES.load(Ordering::Relaxed) {
        if !st {
            LOCK.unlock();
        }
        return;
    }
    over_budget(st)
}

/// The ring holds more than the budget (`LOCK` held when `!st`, released here): a batch
/// leaves, unless another thread is freeing one (the next push takes it).
#[cold]
#[inline(never)]
unsafe fn over_budget(st: bool) {
    let budget = super::options::QUARANTINE_BYTES.load(Ordering::Relaxed);
    let lock = || {
        if !st {
            LOCK.lock()
        }
    };
    let unlock = || {
        if !st {
            LOCK.unlock()
        }
    };
    let r = ring();
    if !DRAIN.try_lock() {
        unlock();
        return;
    }
    let b = batch_buf();
    if b.is_null() {
        // (no batch buffer: one at a time)
        while r.bytes > budget {
            let Some(o) = pop(r) else { break };
            unlock();
            leave(o, true);
            lock();
        }
        unlock();
        DRAIN.unlock();
        return;
    }
    let least = budget / 16;
    let mut taken = 0u64;
    let mut n = 0;
    while n < BATCH && r.len > 0 && (r.bytes > budget || taken < least) {
        let o = *r.buf.add(r.head);
        r.head = (r.head + 1) & (r.cap - 1);
        r.len -= 1;
        let c = charge(o.size());
        r.bytes -= c;
        taken += c;
        *b.add(n) = o;
        n += 1;
    }
    unlock();
    leave_sorted(core::slice::from_raw_parts_mut(b, n), core::slice::from_raw_parts_mut(b.add(BATCH), n));
    DRAIN.unlock();
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
    unsafe { super::recycle::check_all() };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn radix_sort_orders_by_address_stably_for_any_range() {
        for bits in [0u32, 1, 10, 11, 12, 22] {
            let n = 3000;
            let mut x = 0x9e3779b97f4a7c15u64;
            let mut v: Vec<Packed> = (0..n)
                .map(|i| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let off = if bits == 0 { 0 } else { x & ((1u64 << bits) - 1) };
                    // (the batch position in the size word, to see stability)
                    Packed(0x1000 + off, i as u64)
                })
                .collect();
            let mut want: Vec<(u64, u64)> = v.iter().map(|e| (e.0, e.1)).collect();
            want.sort_unstable();
            let mut tmp = vec![Packed(0, 0); n];
            let got: Vec<(u64, u64)> = radix_sort(&mut v, &mut tmp, |e| e.0 - 0x1000, bits).iter().map(|e| (e.0, e.1)).collect();
            assert_eq!(got, want, "range bits {bits}");
        }
    }

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
