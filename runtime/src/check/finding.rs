//! A finding: what the checks caught, kept for the report's `"findings"` and handed to
//! the sink (`findings.rs`, installed by lib.rs) that prints its block on stderr; then,
//! with `fail=abort` (the default), SIGABRT.
use super::options::{has, WARN};
use crate::sys::Spin;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    /// The canary after the requested size was damaged.
    Overflow,
    /// The trailer itself was overwritten (an overflow past the canary, or none set).
    TrailerOverwritten,
    /// A quarantined chunk's free pattern was damaged.
    WriteAfterFree,
    /// A second free of a chunk from the same free site.
    DoubleFree,
    /// A free of a chunk already freed at another site.
    FreedElsewhere,
    /// A free of a pointer inside a chunk.
    InteriorFree,
    /// A free of a pointer no allocator handed out (stack, static data, unmapped).
    NotHeap,
    /// A sub-free of a pointer the pool never handed out (or already took back).
    WrongSubFree,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Overflow => "overflow",
            Kind::TrailerOverwritten => "overflow-trailer",
            Kind::WriteAfterFree => "write-after-free",
            Kind::DoubleFree => "double-free",
            Kind::FreedElsewhere => "wrong-free-already-freed",
            Kind::InteriorFree => "wrong-free-interior",
            Kind::NotHeap => "wrong-free-not-heap",
            Kind::WrongSubFree => "wrong-sub-free",
        }
    }
}

pub const STACK: usize = 32;

#[derive(Clone, Copy)]
pub struct Finding {
    pub kind: Kind,
    /// The pointer the program passed (frees) or the chunk's base.
    pub addr: usize,
    /// The chunk (0 when unknown), its requested size, its site id (0 = unknown).
    pub base: usize,
    pub size: usize,
    pub alloc_id: u32,
    /// The chunk's last free site id (0 = none).
    pub free_id: u32,
    /// This free's site id, for frees (0 otherwise).
    pub this_free_id: u32,
    /// Overflows and writes after free: offset in the chunk and the bytes found there.
    pub offset: Option<usize>,
    pub found: [u8; 16],
    pub nfound: u8,
    /// Return addresses of the current stack, innermost first.
    pub stack: [usize; STACK],
    pub depth: u8,
    pub tid: u32,
}

impl Finding {
    /// A write after free: freed chunk `[base, base+size)` made at `alloc_id`, freed at
    /// `free_id`, whose free pattern differs at `off`; shows the bytes found up to `end`.
    pub unsafe fn write_after_free(base: usize, size: usize, alloc_id: u32, free_id: u32, off: usize, end: usize) -> Finding {
        let mut f = Finding::new(Kind::WriteAfterFree, base);
        f.base = base;
        f.size = size;
        f.alloc_id = alloc_id;
        f.free_id = free_id;
        f.offset = Some(off);
        (f.found, f.nfound) = super::pattern::bytes_at(base, off, end);
        f
    }

    pub fn new(kind: Kind, addr: usize) -> Finding {
        Finding {
            kind,
            addr,
            base: 0,
            size: 0,
            alloc_id: 0,
            free_id: 0,
            this_free_id: 0,
            offset: None,
            found: [0; 16],
            nfound: 0,
            stack: [0; STACK],
            depth: 0,
            tid: 0,
        }
    }
}

/// Findings kept for the report (the first ones; later ones are only counted).
pub const KEEP: usize = 64;
struct Kept {
    list: [Option<Finding>; KEEP],
}
pub static LOCK: Spin = Spin::new();
static mut KEPT: Kept = Kept { list: [None; KEEP] };
pub static COUNT: AtomicU64 = AtomicU64::new(0);

/// Prints a finding (and, when the process is about to abort, writes the report).
pub type Sink = fn(&Finding, bool);
pub static SINK: AtomicUsize = AtomicUsize::new(0);

extern "C" {
    fn backtrace(buf: *mut *mut core::ffi::c_void, n: i32) -> i32;
}

/// Record `f`, tell the sink, and abort unless `fail=warn`. Called with the guard set.
pub fn raise(mut f: Finding) {
    // (the first backtrace loads libgcc's unwinder, which allocates: the runtime's own)
    let d = crate::tls::guarded(crate::tls::GUARD_INTERNAL, || unsafe { backtrace(f.stack.as_mut_ptr().cast(), STACK as i32) });
    f.depth = d.clamp(0, STACK as i32) as u8;
    f.tid = crate::sys::gettid();
    let i = COUNT.fetch_add(1, Ordering::Relaxed) as usize;
    if i < KEEP {
        LOCK.lock();
        unsafe { (*core::ptr::addr_of_mut!(KEPT)).list[i] = Some(f) };
        LOCK.unlock();
    }
    let abort = !has(WARN);
    let s = SINK.load(Ordering::Relaxed);
    if s != 0 {
        let s: Sink = unsafe { core::mem::transmute(s) };
        crate::tls::guarded(crate::tls::GUARD_INTERNAL, || s(&f, abort));
    }
    if abort {
        unsafe { libc::abort() };
    }
}

/// The kept findings, in order.
pub fn kept() -> Vec<Finding> {
    LOCK.lock();
    let v = unsafe { (*core::ptr::addr_of!(KEPT)).list.iter().flatten().copied().collect() };
    LOCK.unlock();
    v
}
