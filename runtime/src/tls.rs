//! Hot per-thread state: one initial-exec TLS block whose first word is the exported
//! `__outermost_allocsite`. Compact (600 bytes), no heap, reached with one `fs:`-relative
//! address computation.
use crate::abi::FnDesc;
use core::sync::atomic::{compiler_fence, Ordering};

/// Recorded nesting depth; deeper calls are counted in `depth` but not recorded.
pub const DEPTH: usize = 10;

#[repr(C)]
#[derive(Clone, Copy)]
pub struct Entry {
    /// The descriptor's address with its attribution class in bits 1–2, or a chunk's
    /// address | 1 (`abi::entry_word`, `abi::entry_desc`; hook ABI v5).
    pub fn_: *const FnDesc,
    pub site: usize,
    /// Stack pointer at the hooked function's entry (points at its return address).
    pub sp: usize,
    /// Value of the size argument (0 when the function has none).
    pub size: u64,
}

#[repr(C)]
pub struct Hot {
    /// `__outermost_allocsite`: site of the outermost active hooked call, 0 when none.
    pub outermost: usize,
    /// Logical number of active hooked calls (may exceed DEPTH).
    pub depth: u32,
    /// Non-zero while the runtime itself works on this thread (index updates, reports):
    /// allocations made meanwhile (including from signal handlers) are not indexed.
    pub guard: u32,
    /// Cached kernel thread id for traces (0 = unknown).
    pub tid: u32,
    /// Site cache for the allocation path: last (inner, outer, key) → site id.
    pub c_id: u32,
    pub c_inner: usize,
    pub c_outer: usize,
    pub c_key: usize,
    /// Bit 0: the thread-exit destructor that flushes `pend` is registered (sites.rs).
    pub flags: u16,
    /// ABI v3 `mark` (offset 50): set to 1 by the rewriter's mark stub just before a
    /// classified call of an interposed allocator; read and cleared by that allocator.
    pub mark: u8,
    pub _pad: u8,
    /// Round-robin victim for `pend`.
    pub pend_next: u32,
    /// This thread's site cache (sites.rs `SiteCache`, arena memory), null until used.
    pub site_cache: usize,
    pub entries: [Entry; DEPTH],
    /// Per-thread pending site statistics (see sites.rs), flushed in batches.
    pub pend: [Pend; NPEND],
    /// chunkmap's bitmap page cache: (page key + 1, page address), by key parity.
    pub pg_key: [usize; 2],
    pub pg_ptr: [usize; 2],
    /// Unused since session 8 (was the second entry of the hot block's site cache):
    /// spare room, the block's size unchanged.
    pub c2_inner: usize,
    pub c2_outer: usize,
    pub c2_key: usize,
    pub c2_id: u32,
    /// Trailers made minus trailers dropped on this thread since their bytes were last
    /// charged to the metadata count (in steps of `interpose::TRAIL_STEP`).
    pub trail: i32,
    /// `Key::okey` of the site-cache entry (`c2_okey`: unused, as `c2_*`).
    pub c_okey: usize,
    pub c2_okey: usize,
    /// Indexed chunks made minus removed on this thread since the last flush into
    /// `chunkmap::LIVE_CHUNKS`, and its running maximum (for the peak).
    pub live: i32,
    pub live_max: i32,
}

pub const NPEND: usize = 4;
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Pend {
    pub id: u32,
    pub calls: u32,
    pub bytes: u64,
    /// Live-bytes change since the last flush, and its running maximum (for the peak).
    pub live: i64,
    pub max_live: i64,
}

const _: () = assert!(core::mem::size_of::<Hot>() == HOT_SIZE);
/// (also in the `.tbss` definition below)
const HOT_SIZE: usize = 600;

core::arch::global_asm!(
    ".pushsection .tbss,\"awT\",@nobits",
    ".p2align 6",
    ".globl __outermost_allocsite",
    ".type __outermost_allocsite,@object",
    ".size __outermost_allocsite,8",
    ".globl allocsite_tls_hot",
    ".hidden allocsite_tls_hot",
    ".type allocsite_tls_hot,@object",
    ".size allocsite_tls_hot,600",
    "__outermost_allocsite:",
    "allocsite_tls_hot:",
    ".zero 600",
    ".popsection",
);

/// This thread's hot state.
#[inline(always)]
pub fn hot() -> *mut Hot {
    let p: *mut Hot;
    unsafe {
        core::arch::asm!(
            "mov {p}, qword ptr fs:[0]",
            "add {p}, qword ptr [rip + allocsite_tls_hot@GOTTPOFF]",
            p = out(reg) p,
            options(pure, nomem, nostack)
        );
    }
    p
}

/// Drop entries whose frames no longer exist (left by longjmp or an exception).
/// `inclusive`: an entry at exactly `sp` is stale too (a new call at the same frame).
/// Returns the new depth; also clears `outermost` when nothing remains.
#[inline(always)]
pub unsafe fn drop_stale(h: *mut Hot, mut d: u32, sp: usize, inclusive: bool) -> u32 {
    while d != 0 {
        let r = (d as usize).min(DEPTH);
        let esp = (*h).entries[r - 1].sp;
        let stale = if inclusive { esp <= sp } else { esp < sp };
        if !stale {
            break;
        }
        d = r as u32 - 1;
    }
    if d == 0 {
        (*h).outermost = 0;
    }
    d
}

/// Innermost and outermost site of the active hooked calls whose frames enclose `sp`
/// (the allocation function's own entry stack pointer); `None` when none is active.
#[inline(always)]
pub unsafe fn active_sites(sp: usize) -> Option<(usize, usize, *const FnDesc)> {
    let h = hot();
    let mut d = (*h).depth;
    if d == 0 {
        return None;
    }
    let d0 = d;
    d = drop_stale(h, d, sp, true);
    if d != d0 {
        (*h).depth = d;
        if d == 0 {
            return None;
        }
    }
    let e = &(*h).entries[(d as usize).min(DEPTH) - 1];
    let f = crate::abi::entry_desc(e.fn_);
    Some((e.site, (*h).outermost, f))
}

// The guard: "the runtime is working on this thread" (`Hot::guard`). Allocations seen
// while it is set (a signal handler interrupting the runtime, the runtime's own
// allocations) are not indexed.
/// Index updates and lookups (an allocation meanwhile counts as dropped_reentrant).
pub const GUARD_WORK: u32 = 1;
/// The runtime's own work that allocates (reports, thread exit): not counted at all.
pub const GUARD_INTERNAL: u32 = 2;

#[inline(always)]
pub unsafe fn guard_on(h: *mut Hot, v: u32) {
    core::ptr::write_volatile(&mut (*h).guard, v);
    compiler_fence(Ordering::SeqCst);
}
#[inline(always)]
pub unsafe fn guard_off(h: *mut Hot) {
    compiler_fence(Ordering::SeqCst);
    core::ptr::write_volatile(&mut (*h).guard, 0);
}

/// Run `f` with this thread's guard at `v`, then put back whatever it was (callers may
/// already be inside the runtime).
#[inline]
pub fn guarded<R>(v: u32, f: impl FnOnce() -> R) -> R {
    let h = hot();
    unsafe {
        let saved = (*h).guard;
        guard_on(h, v);
        let r = f();
        if saved == 0 {
            guard_off(h)
        } else {
            guard_on(h, saved)
        }
        r
    }
}
