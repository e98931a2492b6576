//! Interned allocation sites: (innermost site, outermost site, hooked function,
//! allocator code) → a small id stored in every chunk record, with per-site statistics
//! (cold data, one cache line per site, kept apart from the hot TLS state).
use crate::arena;
use crate::sys::Spin;
use crate::tls::{Hot, Pend, NPEND};
use crate::abi::FnDesc;
use core::sync::atomic::{AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering};

pub const MAX_SITES: usize = 1 << 18;
const HASH_SLOTS: usize = MAX_SITES * 4;

/// Allocator codes (the C/C++ entry point that produced a chunk).
pub const ALLOCATORS: [&str; 17] = [
    "unknown",
    "malloc",
    "calloc",
    "realloc",
    "reallocarray",
    "posix_memalign",
    "aligned_alloc",
    "memalign",
    "valloc",
    "pvalloc",
    "strdup",
    "strndup",
    "operator new",
    "operator new[]",
    "suballoc",
    "hooked",
    "free",
];
pub const A_MALLOC: u32 = 1;
pub const A_CALLOC: u32 = 2;
pub const A_REALLOC: u32 = 3;
pub const A_REALLOCARRAY: u32 = 4;
pub const A_POSIX_MEMALIGN: u32 = 5;
pub const A_ALIGNED_ALLOC: u32 = 6;
pub const A_MEMALIGN: u32 = 7;
pub const A_VALLOC: u32 = 8;
pub const A_PVALLOC: u32 = 9;
pub const A_STRDUP: u32 = 10;
pub const A_STRNDUP: u32 = 11;
pub const A_NEW: u32 = 12;
pub const A_NEW_ARR: u32 = 13;
/// A piece returned by a hooked suballocator (pool, bump arena).
pub const A_SUB: u32 = 14;
/// A chunk indexed from a hooked alloc function's result (runtime not interposing malloc).
pub const A_HOOKED: u32 = 15;
/// Free sites (heap checks: the last free site of a freed chunk); not in reports' tables.
pub const A_FREE: u32 = 16;

#[repr(C)]
pub struct Key {
    pub inner: usize,
    pub outer: usize,
    /// `(fn descriptor address << 8) | allocator code`: the function called at the
    /// innermost site (the hooked function, else the C/C++ entry point of the code).
    pub key: usize,
    /// The function called at the outermost site: the bottom active entry's descriptor,
    /// 0 = the C/C++ entry point of `key`'s code (no hooked call was active).
    pub okey: usize,
}

#[repr(C, align(64))]
pub struct Stats {
    pub calls: AtomicU64,
    pub bytes: AtomicU64,
    pub live_bytes: AtomicU64,
    pub peak_live_bytes: AtomicU64,
    /// Allocations counted in calls/bytes but not indexed (metadata cap).
    pub dropped: AtomicU64,
}

static KEYS: AtomicPtr<Key> = AtomicPtr::new(core::ptr::null_mut());
static STATS: AtomicPtr<Stats> = AtomicPtr::new(core::ptr::null_mut());
static HASH: AtomicPtr<AtomicU32> = AtomicPtr::new(core::ptr::null_mut());
static HASH_PAGES: [AtomicU64; HASH_SLOTS * 4 / 4096 / 64] = [const { AtomicU64::new(0) }; HASH_SLOTS * 4 / 4096 / 64];
/// Next free id; id 0 is never used.
pub static NEXT: AtomicU32 = AtomicU32::new(1);
pub static LOCK: Spin = Spin::new();
static INIT: AtomicU32 = AtomicU32::new(0);

#[inline]
pub fn make_key(f: *const FnDesc, code: u32) -> usize {
    ((f as usize) << 8) | code as usize
}

fn init() -> bool {
    loop {
        match INIT.compare_exchange(0, 1, Ordering::Acquire, Ordering::Acquire) {
            Ok(_) => {
                let k = arena::reserve(MAX_SITES * core::mem::size_of::<Key>());
                let s = arena::reserve(MAX_SITES * core::mem::size_of::<Stats>());
                let h = arena::reserve(HASH_SLOTS * 4);
                if k.is_null() || s.is_null() || h.is_null() {
                    INIT.store(3, Ordering::Release);
                    return false;
                }
                KEYS.store(k.cast(), Ordering::Relaxed);
                STATS.store(s.cast(), Ordering::Relaxed);
                HASH.store(h.cast(), Ordering::Relaxed);
                INIT.store(2, Ordering::Release);
                return true;
            }
            Err(2) => return true,
            Err(3) => return false,
            Err(_) => core::hint::spin_loop(),
        }
    }
}

/// The hash table's generations `(first slot, slots)`: a program with few sites touches
/// one page of it (a single table of `HASH_SLOTS` slots spreads even 40 sites over as
/// many pages: 160 KiB of resident memory). A site goes into the first generation that
/// is less than half full; lookups probe every generation in use.
const GENS: [(usize, usize); 3] = [(0, 1024), (1024, 16384), (1024 + 16384, MAX_SITES * 2)];
static GEN_USED: [AtomicU32; 3] = [const { AtomicU32::new(0) }; 3];

#[inline]
fn hash(inner: usize, outer: usize, key: usize, okey: usize) -> usize {
    let mut h = inner.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    h ^= outer.wrapping_mul(0xC2B2_AE3D_27D4_EB4F).rotate_left(17);
    h ^= key.wrapping_mul(0x1656_67B1_9E37_79F9).rotate_left(31);
    h ^= okey.wrapping_mul(0x27D4_EB2F_1656_67C5).rotate_left(47);
    (h ^ (h >> 29)) & (HASH_SLOTS - 1)
}

#[inline]
pub fn key(id: u32) -> &'static Key {
    unsafe { &*KEYS.load(Ordering::Relaxed).add(id as usize) }
}
#[inline]
pub fn stats(id: u32) -> &'static Stats {
    unsafe { &*STATS.load(Ordering::Relaxed).add(id as usize) }
}
pub fn count() -> u32 {
    if INIT.load(Ordering::Acquire) != 2 {
        return 1;
    }
    NEXT.load(Ordering::Acquire)
}

/// A thread's direct-mapped cache of site ids, behind the two-entry MRU cache in the
/// hot block: allocation-heavy code alternates among more sites than two (Lua: every
/// object type has its own), and the shared table costs a few cache misses per probe.
#[repr(C)]
struct CacheEnt {
    inner: usize,
    outer: usize,
    key: usize,
    okey: usize,
    id: usize,
}
const CACHE_ENTS: usize = 64;
const CACHE_BYTES: usize = CACHE_ENTS * core::mem::size_of::<CacheEnt>();

/// The id of a site (0 when the table is full or over the metadata cap). A hit in
/// either entry of the two-entry cache in the hot block — the common case — is inlined
/// into the allocators; a hit in the second entry returns without reordering the
/// entries (code alternating between two sites, as Lua's allocator does, hits every
/// time without copying entries).
#[inline(always)]
pub unsafe fn intern(h: *mut Hot, inner: usize, outer: usize, key: usize, okey: usize) -> u32 {
    let id = cached(h, inner, outer, key, okey);
    if id != 0 {
        return id;
    }
    intern_miss(h, inner, outer, key, okey)
}

/// The id of a site if the two-entry cache in the hot block holds it, else 0 (nothing
/// looked up or made).
#[inline(always)]
pub unsafe fn cached(h: *mut Hot, inner: usize, outer: usize, key: usize, okey: usize) -> u32 {
    if (*h).c_inner == inner && (*h).c_outer == outer && (*h).c_key == key && (*h).c_okey == okey && (*h).c_id != 0 {
        return (*h).c_id;
    }
    if (*h).c2_inner == inner && (*h).c2_outer == outer && (*h).c2_key == key && (*h).c2_okey == okey && (*h).c2_id != 0 {
        return (*h).c2_id;
    }
    // then the thread's direct-mapped cache, its slot by the innermost site alone (cheap
    // to compute: Lua alternates among more sites than two)
    let cache = (*h).site_cache as *const CacheEnt;
    if !cache.is_null() {
        let e = &*cache.add(cache_slot(inner));
        if e.inner == inner && e.outer == outer && e.key == key && e.okey == okey {
            return e.id as u32;
        }
    }
    0
}

/// The direct-mapped cache's slot of a site: bits of its innermost return address.
#[inline(always)]
fn cache_slot(inner: usize) -> usize {
    (inner ^ (inner >> 6) ^ (inner >> 12)) & (CACHE_ENTS - 1)
}

/// Neither cached entry: the thread's direct-mapped cache, then the table; the new
/// entry takes the first slot and the first entry moves to the second (so the two most
/// recently missed sites stay cached).
#[inline(never)]
unsafe fn intern_miss(h: *mut Hot, inner: usize, outer: usize, key: usize, okey: usize) -> u32 {
    let id = intern_cached(h, inner, outer, key, okey);
    if id != 0 {
        (*h).c2_inner = (*h).c_inner;
        (*h).c2_outer = (*h).c_outer;
        (*h).c2_key = (*h).c_key;
        (*h).c2_okey = (*h).c_okey;
        (*h).c2_id = (*h).c_id;
        (*h).c_inner = inner;
        (*h).c_outer = outer;
        (*h).c_key = key;
        (*h).c_okey = okey;
        (*h).c_id = id;
    }
    id
}

#[inline]
unsafe fn intern_cached(h: *mut Hot, inner: usize, outer: usize, key: usize, okey: usize) -> u32 {
    let mut cache = (*h).site_cache as *mut CacheEnt;
    let slot = cache_slot(inner);
    if !cache.is_null() {
        let e = &*cache.add(slot);
        if e.inner == inner && e.outer == outer && e.key == key && e.okey == okey && e.id != 0 {
            return e.id as u32;
        }
    }
    let id = intern_slow(inner, outer, key, okey);
    if id == 0 {
        return 0;
    }
    if cache.is_null() {
        // (not for a thread whose exit destructor already ran: nothing would free it)
        if (*h).flags & F_EXITING != 0 {
            return id;
        }
        let p = arena::POOL.alloc(arena::class_of(CACHE_BYTES));
        if p.is_null() {
            return id;
        }
        core::ptr::write_bytes(p, 0, CACHE_BYTES);
        (*h).site_cache = p as usize;
        cache = p.cast();
    }
    // id last, and 0 while the entry is rewritten: a signal handler interning on this
    // thread meanwhile never matches a half-written entry
    let e = &mut *cache.add(slot);
    e.id = 0;
    core::sync::atomic::compiler_fence(Ordering::SeqCst);
    e.inner = inner;
    e.outer = outer;
    e.key = key;
    e.okey = okey;
    core::sync::atomic::compiler_fence(Ordering::SeqCst);
    e.id = id as usize;
    id
}

#[cold]
unsafe fn intern_slow(inner: usize, outer: usize, k: usize, okey: usize) -> u32 {
    if INIT.load(Ordering::Acquire) != 2 && !init() {
        return 0;
    }
    let tab = HASH.load(Ordering::Relaxed);
    let h0 = hash(inner, outer, k, okey);
    // Open addressing in generations (see `GENS`): each probed from its own home slot
    // up to an empty one; Err(the empty slot of the first generation with room).
    let find = |_locked: bool| -> Result<u32, usize> {
        let mut room = usize::MAX;
        for (g, &(lo, n)) in GENS.iter().enumerate() {
            let used = GEN_USED[g].load(Ordering::Acquire) as usize;
            if used == 0 && room != usize::MAX {
                break;
            }
            let mut i = h0 & (n - 1);
            loop {
                let id = (*tab.add(lo + i)).load(Ordering::Acquire);
                if id == 0 {
                    if room == usize::MAX && used < n / 2 {
                        room = lo + i;
                    }
                    break;
                }
                let e = key(id);
                if e.inner == inner && e.outer == outer && e.key == k && e.okey == okey {
                    return Ok(id);
                }
                i = (i + 1) & (n - 1);
            }
        }
        Err(room)
    };
    if let Ok(id) = find(false) {
        return id;
    }
    LOCK.lock();
    let r = match find(true) {
        Ok(id) => id,
        Err(slot) => {
            let id = NEXT.load(Ordering::Relaxed);
            let gen = GENS.iter().position(|&(lo, n)| slot >= lo && slot < lo + n).unwrap_or(GENS.len());
            // Count pages as they are first touched: keys, stats, hash slots.
            let ok = (id as usize) < MAX_SITES - 1
                && gen < GENS.len()
                && (id as usize % (4096 / 32) != 0 && id != 1 || arena::charge(4096))
                && (id as usize % (4096 / 64) != 0 && id != 1 || arena::charge(4096))
                && {
                    let pg = slot * 4 / 4096;
                    let bit = 1u64 << (pg % 64);
                    let w = &HASH_PAGES[pg / 64];
                    w.load(Ordering::Relaxed) & bit != 0 || (arena::charge(4096) && {
                        w.fetch_or(bit, Ordering::Relaxed);
                        true
                    })
                };
            if !ok {
                0
            } else {
                let e = &mut *KEYS.load(Ordering::Relaxed).add(id as usize);
                e.inner = inner;
                e.outer = outer;
                e.key = k;
                e.okey = okey;
                NEXT.store(id + 1, Ordering::Release);
                GEN_USED[gen].fetch_add(1, Ordering::Release);
                (*tab.add(slot)).store(id, Ordering::Release);
                id
            }
        }
    };
    LOCK.unlock();
    r
}

// Statistics are batched per thread: the hot TLS block keeps pending (calls, bytes,
// live-bytes delta) for up to NPEND sites, so the allocation path needs no locked
// instruction for them. A batch is flushed when it reaches FLUSH_CALLS calls or
// FLUSH_LIVE bytes of live growth or shrinkage, when its slot is reused, before a
// report and at thread exit. A batch also keeps its running maximum of live growth, so
// the site's peak is exact for one thread; for a site shared by threads the error is
// bounded by the other threads' unflushed batches (runtime/README.md, "Reports").
//
// Reports also read the batches other threads have not flushed yet: every thread that
// owns a batch is in a registry (its TLS block's address, added on its first batch,
// removed by its thread-exit destructor under the registry lock, so a reader never
// touches a dead thread's block). The owner writes its batches with plain stores; a
// flush marks the slot (FLUSHING in `id`) while it moves the batch into the site's
// counters, and a reader that sees the mark, a changed `id`, or a site whose `calls`
// changed while it read, reads again (`stats_with_pending`).
const FLUSH_CALLS: u32 = 1024;
pub const FLUSH_LIVE: i64 = 64 * 1024;
/// In a pending slot's `id` while its batch is being moved into the site's counters.
const FLUSHING: u32 = 1 << 31;

#[cold]
#[inline(never)]
fn flush(p: &mut Pend) {
    let id = p.id;
    if id == 0 {
        return;
    }
    unsafe { core::ptr::write_volatile(&mut p.id, id | FLUSHING) };
    core::sync::atomic::compiler_fence(Ordering::SeqCst);
    let s = stats(id);
    if p.calls != 0 {
        s.calls.fetch_add(p.calls as u64, Ordering::Relaxed);
        s.bytes.fetch_add(p.bytes, Ordering::Relaxed);
    }
    let before = if p.live >= 0 {
        s.live_bytes.fetch_add(p.live as u64, Ordering::Relaxed)
    } else {
        s.live_bytes.fetch_sub(p.live.unsigned_abs(), Ordering::Relaxed)
    };
    // the batch's highest point, on top of the live bytes before it
    if p.max_live > 0 {
        let peak = before.wrapping_add(p.max_live as u64);
        if (peak as i64) > 0 && peak > s.peak_live_bytes.load(Ordering::Relaxed) {
            s.peak_live_bytes.fetch_max(peak, Ordering::Relaxed);
        }
    }
    p.calls = 0;
    p.bytes = 0;
    p.live = 0;
    p.max_live = 0;
    // the counters' updates (locked instructions) and the zeroed batch are visible
    // before the mark goes away
    core::sync::atomic::fence(Ordering::Release);
    unsafe { core::ptr::write_volatile(&mut p.id, id) };
}

// ---------------------------------------------------------------- thread registry

/// Hot-block flags (`Hot::flags`): bit 0 = the thread-exit destructor is armed (see
/// `new_slot`); bit 1 = the block is in the registry; bit 2 = never register it (the
/// thread is exiting and was deregistered, or the registry refused it).
const F_DTOR: u16 = 1;
const F_REG: u16 = 2;
const F_EXITING: u16 = 4;

/// Registry capacity (threads that own a batch at the same time); more are counted in
/// `UNREGISTERED` and their unflushed batches are missing from reports written while
/// they run.
const REG_MAX: usize = 1 << 16;
pub static REG_LOCK: Spin = Spin::new();
static REG: AtomicPtr<usize> = AtomicPtr::new(core::ptr::null_mut());
/// Slots in use are below this (guarded by REG_LOCK).
static REG_HW: AtomicUsize = AtomicUsize::new(0);
/// Registry pages counted as metadata so far.
static REG_PAGES: AtomicUsize = AtomicUsize::new(0);
/// Threads that could not be registered (capacity or metadata cap).
pub static UNREGISTERED: AtomicU64 = AtomicU64::new(0);

unsafe fn register(h: *mut Hot) -> bool {
    REG_LOCK.lock();
    let mut reg = REG.load(Ordering::Relaxed);
    if reg.is_null() {
        reg = arena::reserve(REG_MAX * 8).cast();
        REG.store(reg, Ordering::Relaxed);
    }
    let hw = REG_HW.load(Ordering::Relaxed);
    let mut ok = false;
    if !reg.is_null() {
        let i = (0..hw).find(|&i| *reg.add(i) == 0).unwrap_or(hw);
        let pages = REG_PAGES.load(Ordering::Relaxed);
        if i < REG_MAX && (i * 8 / 4096 < pages || arena::charge(4096)) {
            if i * 8 / 4096 >= pages {
                REG_PAGES.store(pages + 1, Ordering::Relaxed);
            }
            *reg.add(i) = h as usize;
            if i == hw {
                REG_HW.store(hw + 1, Ordering::Relaxed);
            }
            ok = true;
        }
    }
    REG_LOCK.unlock();
    if !ok {
        UNREGISTERED.fetch_add(1, Ordering::Relaxed);
    }
    ok
}

unsafe fn deregister(h: *mut Hot) {
    REG_LOCK.lock();
    let reg = REG.load(Ordering::Relaxed);
    let mut hw = REG_HW.load(Ordering::Relaxed);
    if let Some(i) = (0..hw).find(|&i| *reg.add(i) == h as usize) {
        *reg.add(i) = 0;
        while hw > 0 && *reg.add(hw - 1) == 0 {
            hw -= 1;
        }
        REG_HW.store(hw, Ordering::Relaxed);
    }
    REG_LOCK.unlock();
}

/// Fork child (single-threaded; the registry lock is free): the other threads are
/// gone, so their pending batches — the parent's counts at the fork — go into the
/// site counters, and only this thread stays registered.
pub fn after_fork_child() {
    let me = crate::tls::hot();
    // This thread's own batches and live-chunk change too: should the child count as
    // single-threaded again, its counts go to the totals directly from now on (on_alloc).
    if unsafe { (*me).guard } == 0 {
        flush_thread();
        crate::tls::guarded(crate::tls::GUARD_INTERNAL, || unsafe { crate::chunkmap::flush_live(me) });
    }
    let reg = REG.load(Ordering::Relaxed);
    if reg.is_null() {
        return;
    }
    let hw = REG_HW.load(Ordering::Relaxed);
    unsafe {
        let mut n = 0;
        for i in 0..hw {
            let h = *reg.add(i) as *mut Hot;
            *reg.add(i) = 0;
            if h.is_null() || h == me {
                continue;
            }
            if INIT.load(Ordering::Acquire) == 2 {
                for p in (*h).pend.iter_mut() {
                    // a batch caught in the middle of its flush is half in the counters
                    if p.id & FLUSHING == 0 {
                        flush(p);
                    }
                }
            }
        }
        if (*me).flags & F_REG != 0 {
            *reg = me as usize;
            n = 1;
        }
        REG_HW.store(n, Ordering::Relaxed);
    }
}

/// A site's counters as a report sees them.
#[derive(Clone, Copy, Default)]
pub struct Snap {
    pub calls: u64,
    pub bytes: u64,
    pub live: i64,
    pub peak: u64,
    pub dropped: u64,
}

struct PendView {
    id: u32,
    calls: u64,
    bytes: u64,
    live: i64,
    max_live: i64,
}

/// Every site's counters (index = site id) with the batches every registered thread
/// has not flushed yet folded in, as if they had been flushed now (the calling thread
/// flushes its own first). Exact for threads that are not allocating meanwhile; a thread
/// that is may be caught in the middle of one call. Allocates: call with the guard set.
pub fn stats_with_pending() -> Vec<Snap> {
    flush_thread();
    if INIT.load(Ordering::Acquire) != 2 {
        return vec![Snap::default()];
    }
    // bounded wait: a signal handler may have interrupted this thread inside the lock
    let mut locked = false;
    for i in 0..20000 {
        if REG_LOCK.try_lock() {
            locked = true;
            break;
        }
        if i < 100 {
            core::hint::spin_loop();
        } else {
            unsafe { libc::sched_yield() };
        }
    }
    let reg = REG.load(Ordering::Relaxed);
    let hw = if locked && !reg.is_null() { REG_HW.load(Ordering::Relaxed) } else { 0 };
    let mut v: Vec<Snap> = Vec::new();
    let mut pend: Vec<PendView> = Vec::new();
    for attempt in 0..1000 {
        if attempt > 0 {
            unsafe { libc::sched_yield() };
        }
        let n = NEXT.load(Ordering::Acquire) as usize;
        v.clear();
        v.push(Snap::default());
        for id in 1..n as u32 {
            let s = stats(id);
            v.push(Snap {
                calls: s.calls.load(Ordering::Relaxed),
                bytes: s.bytes.load(Ordering::Relaxed),
                live: s.live_bytes.load(Ordering::Relaxed) as i64,
                peak: s.peak_live_bytes.load(Ordering::Relaxed),
                dropped: s.dropped.load(Ordering::Relaxed),
            });
        }
        core::sync::atomic::fence(Ordering::SeqCst);
        pend.clear();
        let mut ok = true;
        'threads: for i in 0..hw {
            let h = unsafe { *reg.add(i) } as *const Hot;
            if h.is_null() {
                continue;
            }
            for k in 0..NPEND {
                unsafe {
                    let p = core::ptr::addr_of!((*h).pend[k]);
                    let id = core::ptr::read_volatile(core::ptr::addr_of!((*p).id));
                    if id == 0 {
                        continue;
                    }
                    if id & FLUSHING != 0 || id as usize >= n {
                        ok = false;
                        break 'threads;
                    }
                    let pv = PendView {
                        id,
                        calls: core::ptr::read_volatile(core::ptr::addr_of!((*p).calls)) as u64,
                        bytes: core::ptr::read_volatile(core::ptr::addr_of!((*p).bytes)),
                        live: core::ptr::read_volatile(core::ptr::addr_of!((*p).live)),
                        max_live: core::ptr::read_volatile(core::ptr::addr_of!((*p).max_live)),
                    };
                    core::sync::atomic::fence(Ordering::Acquire);
                    if core::ptr::read_volatile(core::ptr::addr_of!((*p).id)) != id {
                        ok = false;
                        break 'threads;
                    }
                    pend.push(pv);
                }
            }
        }
        core::sync::atomic::fence(Ordering::SeqCst);
        // a batch flushed after the counters were read but before its slot was: retry
        ok = ok && (1..n as u32).all(|id| stats(id).calls.load(Ordering::Relaxed) == v[id as usize].calls);
        if ok {
            break;
        }
    }
    if locked {
        REG_LOCK.unlock();
    }
    for p in &pend {
        let s = &mut v[p.id as usize];
        s.calls += p.calls;
        s.bytes += p.bytes;
        let before = s.live;
        s.live += p.live;
        if p.max_live > 0 && before + p.max_live > 0 && (before + p.max_live) as u64 > s.peak {
            s.peak = (before + p.max_live) as u64;
        }
    }
    v
}

extern "C" fn thread_exit(_: *mut core::ffi::c_void) {
    flush_thread();
    let h = crate::tls::hot();
    unsafe {
        let saved = (*h).guard;
        (*h).guard = crate::tls::GUARD_INTERNAL;
        core::sync::atomic::compiler_fence(Ordering::SeqCst);
        if (*h).flags & F_REG != 0 {
            deregister(h);
        }
        crate::chunkmap::flush_live(h);
        // Later allocations in other destructors take a new slot, which arms this
        // destructor again (glibc re-runs destructors whose value was set again).
        for p in (*h).pend.iter_mut() {
            p.id = 0;
        }
        (*h).flags = ((*h).flags & !(F_DTOR | F_REG)) | F_EXITING;
        let c = core::mem::replace(&mut (*h).site_cache, 0);
        if c != 0 {
            arena::POOL.free(arena::class_of(CACHE_BYTES), c as *mut u8);
        }
        core::sync::atomic::compiler_fence(Ordering::SeqCst);
        (*h).guard = saved;
    }
}

static KEY: AtomicU32 = AtomicU32::new(u32::MAX);

/// Create the pthread key whose destructor flushes a thread's batches (from init).
pub fn init_thread_key() {
    let mut k: libc::pthread_key_t = 0;
    if unsafe { libc::pthread_key_create(&mut k, Some(thread_exit)) } == 0 {
        KEY.store(k, Ordering::Release);
    }
}

/// Flush this thread's pending statistics.
pub fn flush_thread() {
    let h = crate::tls::hot();
    unsafe {
        let saved = (*h).guard;
        (*h).guard = crate::tls::GUARD_INTERNAL;
        core::sync::atomic::compiler_fence(Ordering::SeqCst);
        if INIT.load(Ordering::Acquire) == 2 {
            for p in (*h).pend.iter_mut() {
                flush(p);
            }
        }
        core::sync::atomic::compiler_fence(Ordering::SeqCst);
        (*h).guard = saved;
    }
}

#[inline(always)]
unsafe fn pend_slot(h: *mut Hot, id: u32) -> &'static mut Pend {
    let pend = &mut (*h).pend;
    for i in 0..NPEND {
        if pend[i].id == id {
            return &mut *(&mut pend[i] as *mut Pend);
        }
    }
    new_slot(h, id)
}

/// Arm this thread's exit destructor (flushes its batches and live-chunk count).
unsafe fn arm_dtor(h: *mut Hot) {
    if (*h).flags & F_DTOR == 0 {
        let k = KEY.load(Ordering::Acquire);
        if k != u32::MAX {
            (*h).flags |= F_DTOR;
            libc::pthread_setspecific(k, 1 as *const core::ffi::c_void);
        }
    }
}

#[cold]
unsafe fn new_slot(h: *mut Hot, id: u32) -> &'static mut Pend {
    arm_dtor(h);
    if (*h).flags & (F_REG | F_EXITING) == 0 {
        // once per thread: when the registry refuses (counted in UNREGISTERED), the
        // thread's unflushed batches are missing from other threads' reports
        (*h).flags |= F_REG;
        if !register(h) {
            (*h).flags &= !F_REG;
            (*h).flags |= F_EXITING;
        }
    }
    let i = ((*h).pend_next as usize) % NPEND;
    (*h).pend_next = (*h).pend_next.wrapping_add(1);
    let p = &mut *(&mut (*h).pend[i] as *mut Pend);
    flush(p);
    p.id = id;
    p
}

// (always inlined: the allocation entry points are its only hot callers, and an
// outlined copy costs a call and spills on every allocation)
#[inline(always)]
pub unsafe fn on_alloc(h: *mut Hot, id: u32, n: u64, indexed: bool) {
    if !indexed {
        let s = stats(id);
        s.calls.fetch_add(1, Ordering::Relaxed);
        s.bytes.fetch_add(n, Ordering::Relaxed);
        s.dropped.fetch_add(1, Ordering::Relaxed);
        return;
    }
    if crate::chunkmap::single_threaded() {
        return on_alloc_single(id, n);
    }
    let p = pend_slot(h, id);
    p.calls += 1;
    p.bytes += n;
    p.live += n as i64;
    if p.live > p.max_live {
        p.max_live = p.live;
    }
    if p.calls >= FLUSH_CALLS || p.live >= FLUSH_LIVE {
        flush(p);
    }
}

/// `on_alloc` of an indexed chunk in a single-threaded process (the caller checked):
/// the site's counters themselves, with plain stores (no batch to find, nothing to
/// flush); the peak is the one a batch gives a single thread. A signal handler that
/// allocates while this runs is not counted (the guard).
#[inline(always)]
pub unsafe fn on_alloc_single(id: u32, n: u64) {
    let s = stats(id);
    s.calls.store(s.calls.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
    s.bytes.store(s.bytes.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
    let live = s.live_bytes.load(Ordering::Relaxed).wrapping_add(n);
    s.live_bytes.store(live, Ordering::Relaxed);
    if live as i64 > s.peak_live_bytes.load(Ordering::Relaxed) as i64 {
        s.peak_live_bytes.store(live, Ordering::Relaxed);
    }
}

/// A chunk's record was put back (failed realloc): its bytes are live again.
pub unsafe fn on_restore(h: *mut Hot, id: u32, n: u64) {
    let p = pend_slot(h, id);
    p.live += n as i64;
    if p.live > p.max_live {
        p.max_live = p.live;
    }
    if p.live >= FLUSH_LIVE {
        flush(p);
    }
}

#[inline(always)]
pub unsafe fn on_free(h: *mut Hot, id: u32, n: u64) {
    if crate::chunkmap::single_threaded() {
        return on_free_single(id, n);
    }
    on_free_batched(h, id, n)
}

/// `on_free` in a single-threaded process (the caller checked): as in on_alloc.
#[inline(always)]
pub unsafe fn on_free_single(id: u32, n: u64) {
    let s = stats(id);
    s.live_bytes.store(s.live_bytes.load(Ordering::Relaxed).wrapping_sub(n), Ordering::Relaxed);
}

#[inline(never)]
unsafe fn on_free_batched(h: *mut Hot, id: u32, n: u64) {
    let pend = &mut (*h).pend;
    for i in 0..NPEND {
        if pend[i].id == id {
            pend[i].live -= n as i64;
            if pend[i].live <= -FLUSH_LIVE {
                flush(&mut *(&mut pend[i] as *mut Pend));
            }
            return;
        }
    }
    stats(id).live_bytes.fetch_sub(n, Ordering::Relaxed);
    // (a thread that only frees still has a live-chunk count to flush at exit)
    if (*h).flags & F_DTOR == 0 {
        arm_dtor(h);
    }
}

/// Name of the function called at a site's innermost site: the hooked function's
/// name, else the C/C++ entry point.
pub fn allocator_name(key: usize) -> &'static [u8] {
    let f = (key >> 8) as *const FnDesc;
    if !f.is_null() {
        return unsafe { crate::abi::FnDesc::name(f) };
    }
    ALLOCATORS.get(key & 0xff).copied().unwrap_or("unknown").as_bytes()
}

/// Name of the function called at a site's outermost site (`Key::okey`, else the C/C++
/// entry point of `key`'s code).
pub fn outer_allocator_name(key: usize, okey: usize) -> &'static [u8] {
    if okey != 0 {
        return unsafe { crate::abi::FnDesc::name(okey as *const FnDesc) };
    }
    allocator_name(key & 0xff)
}
pub fn libc_allocator_name(key: usize) -> &'static str {
    ALLOCATORS.get(key & 0xff).copied().unwrap_or("unknown")
}

const ALLOCATORS_C: [&core::ffi::CStr; 16] = [
    c"unknown",
    c"malloc",
    c"calloc",
    c"realloc",
    c"reallocarray",
    c"posix_memalign",
    c"aligned_alloc",
    c"memalign",
    c"valloc",
    c"pvalloc",
    c"strdup",
    c"strndup",
    c"operator new",
    c"operator new[]",
    c"suballoc",
    c"hooked",
];
/// NUL-terminated static allocator name (for the C API): `allocator_name`.
pub fn allocator_cname(key: usize) -> *const core::ffi::c_char {
    let f = (key >> 8) as *const FnDesc;
    if !f.is_null() {
        return (f as usize as i64 + unsafe { (*f).name_rel }) as *const core::ffi::c_char;
    }
    ALLOCATORS_C.get(key & 0xff).copied().unwrap_or(c"unknown").as_ptr()
}
/// NUL-terminated `outer_allocator_name`.
pub fn outer_allocator_cname(key: usize, okey: usize) -> *const core::ffi::c_char {
    if okey != 0 {
        return allocator_cname(okey << 8);
    }
    allocator_cname(key & 0xff)
}
