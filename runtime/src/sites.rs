//! Per-site statistics as the allocators count them: directly while the process has
//! one thread, else in per-thread batches in the hot TLS block (no locked instruction
//! on the allocation path), with the registry of threads whose batches reports read.
//! The site table itself (interning, the counters) is `sitetab`, re-exported here.
pub use crate::sitetab::*;
use crate::arena;
use crate::sys::Spin;
use crate::tls::{Hot, Pend, NPEND};
use core::sync::atomic::{AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering};

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
const F_REG: u16 = 2;

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
            if ready() {
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
    if !ready() {
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
        if ready() {
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
    if crate::chunkmap::single_threaded() {
        // (one thread: the counters directly, as on_alloc_single, without a call)
        let s = stats(id);
        let live = s.live_bytes.load(Ordering::Relaxed).wrapping_add(n);
        s.live_bytes.store(live, Ordering::Relaxed);
        if live as i64 > s.peak_live_bytes.load(Ordering::Relaxed) as i64 {
            s.peak_live_bytes.store(live, Ordering::Relaxed);
        }
        return;
    }
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

