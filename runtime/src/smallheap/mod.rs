//! The runtime's own heap for small requests (≤ `classes::MAX` bytes): size-segregated
//! spans in one reserved region, each object's record (site id, slack) in its span's
//! header (`span.rs`). It replaces, for those sizes, glibc's heap plus the heap index
//! on top of it (`chunkmap`): `free` reads one header line the runtime owns, instead of
//! glibc's chunk header, a bitmap word and a trailer or out-of-band slot (runtime/README.md,
//! "The runtime's small-object heap").
//!
//! Serialisation: the interposed allocators call in here only under the thread's guard
//! (a signal handler that interrupts them sees the guard and defers its frees: `defer`),
//! and either while the process has one thread or holding `LOCK`. New objects are made
//! only while the process has one thread (`interpose` checks); objects are freed,
//! resized and looked up from any thread.
//!
//! Span lists per class: the allocation span (`cur`), a doubly-linked list of spans with
//! free objects (`partial`), and one cached empty span; a span that becomes empty beyond
//! that goes back to the region (its pages dropped).
pub mod classes;
pub mod region;
pub mod span;

use crate::index::Chunk;
use crate::sys::Spin;
use classes::{class, CLASSES, MAX, SPAN};
use core::cell::UnsafeCell;
use core::ptr::null_mut;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use span::{Span, CACHED, CUR, FULL, PARTIAL};

pub use region::owns;

/// Whether new small requests may be served from spans (decided at load time by
/// `enable`; the callers add the per-call conditions).
pub static SERVE: AtomicBool = AtomicBool::new(false);
/// The same with heap checks on (`enable_checked`): requests of up to `MAX - PAD`
/// bytes, each object `PAD` bytes larger (the checks' canary and freed trailer). Kept
/// apart from `SERVE`, which the unchecked fast paths test alone.
pub static SERVE_CHECKED: AtomicBool = AtomicBool::new(false);
/// The pad of the spans set up from now on (0 without heap checks).
pub static PAD: AtomicU8 = AtomicU8::new(0);
/// Held for every call in here once the process has threads.
pub static LOCK: Spin = Spin::new();
/// Frees of span objects deferred (signal handlers that interrupted the runtime, the
/// runtime's own frees), linked through the objects' first word.
static DEFERRED: AtomicUsize = AtomicUsize::new(0);
/// Bytes of span headers and records charged as metadata.
pub static META: AtomicU64 = AtomicU64::new(0);

struct Class {
    cur: *mut Span,
    partial: *mut Span,
    cached: *mut Span,
}
struct Classes(UnsafeCell<[Class; CLASSES + 1]>);
unsafe impl Sync for Classes {}
static CLS: Classes = Classes(UnsafeCell::new([const { Class { cur: null_mut(), partial: null_mut(), cached: null_mut() } }; CLASSES + 1]));

#[inline(always)]
unsafe fn cls(c: usize) -> *mut Class {
    (CLS.0.get() as *mut Class).add(c)
}

/// Why the heap is not used, at load time: None = serve.
pub enum Off {
    Env,
    Reserve,
}

/// Load time: reserve the region and serve from now on. `allowed`: the caller's
/// conditions (no heap checks, the runtime's malloc is the process's, not under
/// valgrind, `ALLOCSITE_HEAP` not `glibc`).
pub fn enable(allowed: bool) -> Result<(), Off> {
    if !allowed {
        return Err(Off::Env);
    }
    if !region::reserve() {
        return Err(Off::Reserve);
    }
    SERVE.store(true, Ordering::Relaxed);
    Ok(())
}

/// `enable` with heap checks on: every object `pad` bytes (≤ 64) beyond its request.
pub fn enable_checked(allowed: bool, pad: usize) -> Result<(), Off> {
    if !allowed || pad > 64 {
        return Err(Off::Env);
    }
    if !region::reserve() {
        return Err(Off::Reserve);
    }
    PAD.store(pad as u8, Ordering::Relaxed);
    SERVE_CHECKED.store(true, Ordering::Relaxed);
    Ok(())
}

/// Whether a request of `n` bytes is one for the spans (not whether it will be served).
#[inline(always)]
pub fn small(n: usize) -> bool {
    n.wrapping_sub(1) < MAX
}

/// A new object for a request of `n` (1 ≤ n ≤ MAX) bytes, `PAD` included, of site `id`
/// (1 ≤ id), null when none can be made (region or metadata cap exhausted). Caller:
/// one thread, guard.
#[inline(always)]
pub unsafe fn alloc(n: usize, id: u32) -> *mut u8 {
    let k = cls(class(n));
    let s = (*k).cur;
    if !s.is_null() && span::fits(s, id) {
        let p = span::take(s, n, id);
        if p != 0 {
            return p as *mut u8;
        }
    }
    alloc_slow(class(n), n, id)
}

/// The class's allocation span has no object left (or none yet, or its records are
/// too narrow for `id`): the next one from the partial list, the cached empty span, the
/// region.
#[cold]
#[inline(never)]
unsafe fn alloc_slow(c: usize, n: usize, id: u32) -> *mut u8 {
    let k = cls(c);
    let old = (*k).cur;
    if !old.is_null() {
        (*k).cur = null_mut();
        if (*old).free == 0 && (*old).bump == (*old).nobj {
            (*old).state = FULL;
        } else {
            push_partial(k, old);
        }
    }
    let wide = id >= span::NARROW;
    // a partial span whose records fit
    let mut s = (*k).partial;
    while !s.is_null() && !span::fits(s, id) {
        s = (*s).next;
    }
    if !s.is_null() {
        unlink(k, s);
    } else if !(*k).cached.is_null() && span::fits((*k).cached, id) {
        s = (*k).cached;
        (*k).cached = null_mut();
        // (every object was freed: the records are 0; hand out from the start again)
        (*s).free = 0;
        (*s).bump = 0;
    } else {
        let (m, warm) = region::take();
        if m.is_null() {
            return null_mut();
        }
        s = m as *mut Span;
        let g = classes::GEOM[wide as usize][c];
        if warm {
            // (a span of another class, perhaps: its old objects' bytes may lie where
            // this class's records go)
            core::ptr::write_bytes(m.add(classes::HDR), 0, g.start as usize - classes::HDR);
        }
        // (the header and records count as the runtime's metadata, once per span carved
        // or reused; charged before the span is used)
        let meta = g.start as u64;
        if !crate::arena::charge(meta) {
            region::release(m);
            return null_mut();
        }
        META.fetch_add(meta, Ordering::Relaxed);
        span::init(s, c, wide, PAD.load(Ordering::Relaxed));
    }
    (*s).state = CUR;
    (*k).cur = s;
    let p = span::take(s, n, id);
    if p == 0 {
        null_mut()
    } else {
        p as *mut u8
    }
}

unsafe fn push_partial(k: *mut Class, s: *mut Span) {
    (*s).state = PARTIAL;
    (*s).prev = null_mut();
    (*s).next = (*k).partial;
    if !(*k).partial.is_null() {
        (*(*k).partial).prev = s;
    }
    (*k).partial = s;
}

unsafe fn unlink(k: *mut Class, s: *mut Span) {
    if (*s).prev.is_null() {
        (*k).partial = (*s).next;
    } else {
        (*(*s).prev).next = (*s).next;
    }
    if !(*s).next.is_null() {
        (*(*s).next).prev = (*s).prev;
    }
    (*s).next = null_mut();
    (*s).prev = null_mut();
}

/// Free the object based at `p` (`owns(p)`): its (requested size, site id), or None
/// when `p` is not a live object's base (nothing changed). Caller: one thread or
/// `LOCK`; guard.
#[inline(always)]
pub unsafe fn free(p: usize) -> Option<(usize, u32)> {
    let s = span::of(p);
    let (i, r) = span::live_at(s, p)?;
    span::put(s, p, i);
    if (*s).state != CUR {
        after_free(s);
    }
    Some(span::decode(s, r))
}

/// A span not the allocation span lost an object: a full one goes on the partial list;
/// an empty one is cached by its class or given back to the region.
#[cold]
#[inline(never)]
unsafe fn after_free(s: *mut Span) {
    let k = cls((*s).class as usize);
    if (*s).state == FULL {
        push_partial(k, s);
    }
    if (*s).live == 0 && (*s).state == PARTIAL {
        unlink(k, s);
        let old = (*k).cached;
        (*s).state = CACHED;
        (*k).cached = s;
        if !old.is_null() {
            // (the header and records are charged again when the span is reused)
            let meta = (*old).start as u64;
            crate::arena::META_BYTES.fetch_sub(meta, Ordering::Relaxed);
            META.fetch_sub(meta, Ordering::Relaxed);
            region::release(old as *mut u8);
        }
    }
}

/// Resize the live object at `p` to `n` bytes (the span's pad included) of site `id`
/// in place, when `n` is of its class and `id` fits its records: the old (requested
/// size, id). None: nothing changed (not a live object's base, or it must move).
/// Caller: as `free`.
#[inline(always)]
pub unsafe fn resize(p: usize, n: usize, id: u32) -> Option<(usize, u32)> {
    let s = span::of(p);
    let (i, r) = span::live_at(s, p)?;
    if !small(n) || class(n) != (*s).class as usize || !span::fits(s, id) {
        return None;
    }
    span::set_record(s, i, id << 4 | ((*s).size as usize - n) as u32);
    Some(span::decode(s, r))
}

/// Take the live object based at `p` out of use without making it free: its record
/// says not live (a second free is told from it), but it is on no free list and its
/// span counts it live (the span stays), until `give_back`. Its (requested size,
/// usable size, id); None when `p` is not a live object's base. Caller: as `free`.
#[inline(always)]
pub unsafe fn retire(p: usize) -> Option<(usize, usize, u32)> {
    let s = span::of(p);
    let (i, r) = span::live_at(s, p)?;
    span::set_record(s, i, 0);
    let (n, id) = span::decode(s, r);
    Some((n, (*s).size as usize, id))
}

/// Free an object `retire` took out of use (the heap checks' quarantine lets it go):
/// its record is 0 already; it goes on its span's free list. Takes `LOCK` when the
/// process has threads; caller: guard, and `p` an object `retire` gave out.
pub unsafe fn give_back(p: usize) {
    let st = crate::chunkmap::single_threaded();
    if !st {
        LOCK.lock();
    }
    let s = span::of(p);
    *(p as *mut usize) = (*s).free;
    (*s).free = p;
    (*s).live -= 1;
    if (*s).state != CUR {
        after_free(s);
    }
    if !st {
        LOCK.unlock();
    }
}

/// The usable size of the object based at `p` when it was handed out and is not live
/// now (freed, or retired): where the heap checks look for its freed trailer.
pub unsafe fn not_live_at(p: usize) -> Option<usize> {
    let s = span::of(p);
    let i = span::handed_out_at(s, p)?;
    (span::record(s, i) == 0).then_some((*s).size as usize)
}

/// The pad of the span holding `p` (`owns(p)`).
#[inline(always)]
pub unsafe fn pad_of(p: usize) -> usize {
    (*span::of(p)).pad as usize
}

/// The live object based at `p`: (requested size, usable size, id).
#[inline(always)]
pub unsafe fn object(p: usize) -> Option<(usize, usize, u32)> {
    let s = span::of(p);
    let (_, r) = span::live_at(s, p)?;
    let (n, id) = span::decode(s, r);
    Some((n, (*s).size as usize, id))
}

/// The live object holding `p` (interior pointers too). `wait`: false → never wait for
/// `LOCK` (None when it is taken).
pub fn lookup(p: usize, wait: bool) -> Option<Chunk> {
    if !owns(p) {
        return None;
    }
    let st = crate::chunkmap::single_threaded();
    if !st {
        if wait {
            LOCK.lock();
        } else if !LOCK.try_lock() {
            return None;
        }
    }
    let r = unsafe { span::holding(span::of(p), p) };
    if !st {
        LOCK.unlock();
    }
    r.map(|(base, size, id)| Chunk { base, size, id })
}

/// Every live object; `f` returns true to stop. Returns the number visited. The objects
/// are collected a batch at a time and `f` runs without `LOCK` (it may allocate and free).
pub fn for_each(f: &mut dyn FnMut(Chunk) -> bool) -> usize {
    let base = region::BASE.load(Ordering::Relaxed);
    let mut n = 0;
    let mut batch = [Chunk { base: 0, size: 0, id: 0 }; 128];
    let mut at = 0;
    loop {
        // (collect from `at` on, under the lock if there are threads)
        let st = crate::chunkmap::single_threaded();
        if !st {
            LOCK.lock();
        }
        let carved = region::CARVED.load(Ordering::Acquire);
        let mut k = 0;
        while at < carved && k < batch.len() {
            let s = span::of(base + at);
            let off = at & (SPAN - 1);
            let (nobj, bump, start, size) = unsafe { ((*s).nobj, (*s).bump as usize, (*s).start as usize, (*s).size as usize) };
            if nobj == 0 || off >= start + bump * size {
                at = (at | (SPAN - 1)) + 1;
                continue;
            }
            let i = if off < start { 0 } else { (off - start) / size };
            let r = unsafe { span::record(s, i) };
            if r != 0 {
                let (n, id) = unsafe { span::decode(s, r) };
                batch[k] = Chunk { base: s as usize + start + i * size, size: n, id };
                k += 1;
            }
            at = (s as usize - base) + start + (i + 1) * size;
        }
        if !st {
            LOCK.unlock();
        }
        for c in &batch[..k] {
            n += 1;
            if f(*c) {
                return n;
            }
        }
        if k < batch.len() {
            return n;
        }
    }
}

/// What the spans hold, for `mallinfo2`: (bytes of spans set up and not given back,
/// bytes of their objects handed out and not freed).
pub fn usage() -> (usize, usize) {
    let base = region::BASE.load(Ordering::Relaxed);
    let st = crate::chunkmap::single_threaded();
    if !st {
        LOCK.lock();
    }
    let carved = region::CARVED.load(Ordering::Acquire);
    let (mut spans, mut live) = (0, 0);
    let mut at = 0;
    while at < carved {
        let s = span::of(base + at);
        // (a span whose pages went back to the system reads as zeros: no objects)
        let (nobj, n, size) = unsafe { ((*s).nobj, (*s).live as usize, (*s).size as usize) };
        if nobj != 0 {
            spans += SPAN;
            live += n * size;
        }
        at += SPAN;
    }
    if !st {
        LOCK.unlock();
    }
    (spans, live)
}

/// Defer the free of the span object `p` (the runtime is busy on this thread: a signal
/// handler that interrupted it, or its own work); `drain` frees it later.
pub unsafe fn defer(p: usize) {
    let mut h = DEFERRED.load(Ordering::Relaxed);
    loop {
        *(p as *mut usize) = h;
        match DEFERRED.compare_exchange_weak(h, p, Ordering::Release, Ordering::Relaxed) {
            Ok(_) => return,
            Err(x) => h = x,
        }
    }
}

/// Whether frees are waiting (one load; the fast paths test it).
#[inline(always)]
pub fn deferred() -> bool {
    DEFERRED.load(Ordering::Relaxed) != 0
}

/// Free the deferred objects; `f` gets each one's (requested size, id). Caller: as `free`.
#[cold]
#[inline(never)]
pub unsafe fn drain(f: &mut dyn FnMut(usize, u32)) {
    let mut p = DEFERRED.swap(0, Ordering::Acquire);
    while p != 0 {
        let next = *(p as *const usize);
        match free(p) {
            Some((n, id)) => f(n, id),
            None => invalid(b"free", p),
        }
        p = next;
    }
}

/// A free or realloc of an address in the region that is no live object's base (a
/// double free, a free of an interior pointer): glibc's allocator aborts on the bad
/// frees it can tell ("free(): invalid pointer", "double free detected"), so a program
/// whose objects live in spans must not run on silently after one. One line naming
/// the address, then SIGABRT (a core file and gdb show the culprit frame).
#[cold]
#[inline(never)]
pub fn invalid(op: &[u8], p: usize) -> ! {
    let mut b = crate::sys::Buf::<320>::new();
    b.s(b"allocsite: ").s(op).s(b"(): invalid pointer ").hex(p as u64).s(
        b": not a live object of the runtime's small-object heap (a double free or an interior pointer; \
ALLOCSITE_CHECK=double-free names both sites)\n",
    );
    crate::sys::write_all(2, b.bytes());
    unsafe { libc::abort() }
}

/// The usable size of the span object based at `p` (0: not a live object).
pub unsafe fn usable(p: usize) -> usize {
    object(p).map_or(0, |o| o.1)
}
