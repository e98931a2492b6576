//! Hot per-thread state: one initial-exec TLS block whose first word is the exported
//! `__outermost_allocsite`. Compact (600 bytes), no heap, reached with one `fs:`-relative
//! address computation.
use crate::FnDesc;

/// Recorded nesting depth; deeper calls are counted in `depth` but not recorded.
pub const DEPTH: usize = 10;

#[repr(C)]
#[derive(Clone, Copy)]
pub struct Entry {
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
    /// Second entry of the site cache (the first is c_*).
    pub c2_inner: usize,
    pub c2_outer: usize,
    pub c2_key: usize,
    pub c2_id: u32,
    /// Trailers made minus trailers dropped on this thread since their bytes were last
    /// charged to the metadata count (in steps of `interpose::TRAIL_STEP`).
    pub trail: i32,
    /// `Key::okey` of the two site-cache entries.
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

/// What an allocation is attributed to: its innermost and outermost site and the
/// function called at each (null: the C/C++ entry point that made the chunk).
pub struct Sites {
    pub inner: usize,
    pub outer: usize,
    pub inner_fn: *const FnDesc,
    pub outer_fn: *const FnDesc,
}

/// The sites of a chunk made by an interposed allocator called from return address
/// `ra` with entry stack pointer `sp`; `mark`: the call was a classified call of that
/// allocator (the rewriter's mark stub set the hot block's mark byte).
/// - mark set: innermost = `ra` (that call); outermost = the active outermost, else `ra`.
/// - no active hooked call: both `ra`.
/// - else innermost = the top entry's site and function, unless that function is a
///   constructor (`rewrite --ctors`: ctors count only for the outermost site), then `ra`;
///   outermost = the bottom entry's site and function.
#[inline(always)]
pub unsafe fn attribute(ra: usize, sp: usize, mark: bool) -> Sites {
    let none = Sites { inner: ra, outer: ra, inner_fn: core::ptr::null(), outer_fn: core::ptr::null() };
    let Some((site, outer, f)) = active_sites(sp) else { return none };
    let h = hot();
    let bottom = (*h).entries[0].fn_;
    // (an entry's fn_ with bit 0 set marks "result indexed by an inner call")
    let outer_fn = if bottom as usize & 1 != 0 { core::ptr::null() } else { bottom };
    if mark || (!f.is_null() && (*f).kind == crate::hooks::KIND_CTOR) {
        return Sites { inner: ra, outer, inner_fn: core::ptr::null(), outer_fn };
    }
    Sites { inner: site, outer, inner_fn: f, outer_fn }
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
    // (an entry's fn_ with bit 0 set marks "result indexed by an inner call")
    let f = if e.fn_ as usize & 1 != 0 { core::ptr::null() } else { e.fn_ };
    Some((e.site, (*h).outermost, f))
}
