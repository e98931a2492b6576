//! allocsite runtime (`liballocsite_rt.so`): hook entry points, per-thread stack of
//! active allocation calls, heap index, query API and reports.
//! See runtime/README.md for the hook ABI and include/allocsite.h for the query API.
#![allow(clippy::missing_safety_doc, non_snake_case)]

// Layers (runtime/README.md, "Source layout"); a module uses only modules above it in
// this list:
// - abi, sys, tls: the hook ABI's data, system calls and buffers, the per-thread block
pub mod abi;
pub mod sys;
pub mod tls;
// - arena, stats: the runtime's own counted memory; process-wide counters
pub mod arena;
pub mod stats;
// - index, oob, chunkmap, smallheap: the suballocator index (and its building blocks),
//   the heap index's out-of-band records, the heap index, the runtime's own heap for
//   small requests (its objects' records in its span headers)
pub mod index;
pub mod oob;
pub mod chunkmap;
pub mod smallheap;
// - sitetab, sites: interned sites and their counters; how the allocators count
pub mod sitetab;
pub mod sites;
// - attribution, trace: what an allocation is attributed to; the hook trace
pub mod attribution;
pub mod trace;
// - check: the heap checks (ALLOCSITE_CHECK), called by hooks and interpose
pub mod check;
// - hooks, interpose, protect: the hook entry points, the interposed allocators
pub mod hooks;
pub mod interpose;
pub mod protect;
// - elf, dwarf, symbolize, types, report, api: reports and the query API (may allocate)
pub mod elf;
pub mod dwarf;
pub mod symbolize;
pub mod types;
pub mod findings;
pub mod report;
pub mod api;

use core::sync::atomic::Ordering;


/// Whether prepare took the index locks (not when fork is called by a signal handler
/// that interrupted the runtime on this thread: it may hold one of them).
static FORK_LOCKED: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

/// fork: hold every index lock across fork so the child inherits consistent state.
fn lock_all() {
    // (the checks' locks first: the quarantine's drain, holding DRAIN, gives span
    // objects back under the spans' lock; then the spans' lock: a free of a span object
    // holds it while it counts)
    for l in check::locks() {
        l.lock();
    }
    smallheap::LOCK.lock();
    // Lock order: regions, then the big arrays, the pool and the site table (a
    // region's lock is held while its array grows from the pool).
    index::lock_regions(&index::SUB);
    chunkmap::BIG.lock.lock();
    chunkmap::lock_oob();
    index::SUB.big.lock.lock();
    arena::POOL.lock_all();
    sites::LOCK.lock();
}
fn unlock_all(child: bool) {
    sites::LOCK.unlock();
    arena::POOL.unlock_all(child);
    index::SUB.big.lock.unlock();
    chunkmap::unlock_oob();
    chunkmap::BIG.lock.unlock();
    index::unlock_regions(&index::SUB);
    // (Spin::unlock is a plain store: the child may release what its parent's thread took)
    smallheap::LOCK.unlock();
    for l in check::locks().iter().rev() {
        l.unlock();
    }
}

extern "C" fn at_fork_prepare() {
    if unsafe { (*tls::hot()).guard } == 0 {
        lock_all();
        sites::REG_LOCK.lock();
        FORK_LOCKED.store(true, Ordering::Relaxed);
    }
}
extern "C" fn at_fork_parent() {
    if FORK_LOCKED.swap(false, Ordering::Relaxed) {
        sites::REG_LOCK.unlock();
        unlock_all(false);
    }
}
extern "C" fn at_fork_child() {
    if FORK_LOCKED.swap(false, Ordering::Relaxed) {
        unlock_all(true);
    }
    // the other threads are gone (their unflushed batches become this process's counts)
    sites::REG_LOCK.force_unlock();
    sites::after_fork_child();
    unsafe { (*tls::hot()).tid = 0 };
    trace::reopen_after_fork();
    hooks::update_masks();
}

extern "C" fn at_exit() {
    if check::on() {
        tls::guarded(tls::GUARD_INTERNAL, check::chunk::at_exit);
    }
    // (the report folds in this thread's and every other live thread's pending batches)
    if let Some(p) = report::path() {
        if let Err(e) = report::write(p, "exit") {
            let mut b = sys::Buf::<512>::new();
            b.s(b"allocsite: cannot write report ").s(p).s(b": errno ").dec(e.raw_os_error().unwrap_or(0) as u64).s(b"\n");
            sys::write_all(2, b.bytes());
        }
    }
}

/// Parse a byte count with an optional K/M/G suffix.
fn parse_bytes(s: &[u8]) -> Option<u64> {
    let (num, mul) = match s.last()? {
        b'k' | b'K' => (&s[..s.len() - 1], 1u64 << 10),
        b'm' | b'M' => (&s[..s.len() - 1], 1 << 20),
        b'g' | b'G' => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    let mut v: u64 = 0;
    if num.is_empty() {
        return None;
    }
    for &c in num {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add((c - b'0') as u64)?;
    }
    v.checked_mul(mul)
}

/// A finding's block on stderr; before an abort, the report (atexit will not run).
fn on_finding(f: &check::finding::Finding, abort: bool) {
    findings::print(f);
    if abort {
        if let Some(p) = report::path() {
            let _ = report::write(p, "finding");
        }
    }
}

/// Heap checks: `ALLOCSITE_CHECK`, else the options `rewrite --check` baked in.
fn init_checks() {
    let baked = check::baked::find();
    let Some(opts) = sys::env(c"ALLOCSITE_CHECK").or(baked) else { return };
    match check::options::parse(opts) {
        Ok(p) => {
            check::finding::SINK.store(on_finding as *const () as usize, Ordering::Relaxed);
            let mut p = p;
            if p.flags != 0 && check::chunk::note_unchecked_chunks() > check::chunk::PRE && p.flags & check::options::CANARY != 0 {
                // (too many chunks without a canary to tell apart)
                p.flags &= !check::options::CANARY;
                sys::write_all(2, b"allocsite: ALLOCSITE_CHECK: canary off (too many chunks made before the runtime started)\n");
            }
            check::options::set(&p);
            check::quarantine::start();
        }
        Err(bad) => {
            let mut b = sys::Buf::<256>::new();
            b.s(b"allocsite: ignoring ALLOCSITE_CHECK: unknown option ").s(&bad[..bad.len().min(64)]).s(b"\n");
            sys::write_all(2, b.bytes());
        }
    }
}

/// Whether `LD_PRELOAD` holds a valgrind tool's preload other than the core's.
fn replacing_tool(pre: &[u8]) -> bool {
    pre.split(|&c| c == b':' || c == b' ').any(|p| {
        let name = p.rsplit(|&c| c == b'/').next().unwrap_or(p);
        name.starts_with(b"vgpreload_") && !name.starts_with(b"vgpreload_core")
    })
}

/// The runtime's small-object heap (`smallheap`): on (with heap checks on, with each
/// object padded for the checks: check/spanobj.rs) unless the runtime's
/// `malloc` is not the process's, the program runs under valgrind (memcheck replaces
/// glibc's allocator: its `malloc` is the one to see every chunk), or
/// `ALLOCSITE_HEAP=glibc` (glibc's exact heap layout; ignored, like the other
/// variables, in AT_SECURE processes).
fn init_heap() {
    let mut allowed = hooks::INTERPOSED.load(Ordering::Relaxed);
    match sys::env(c"ALLOCSITE_HEAP") {
        None | Some(b"runtime") => {}
        Some(b"glibc") => allowed = false,
        Some(_) => sys::write_all(2, b"allocsite: ignoring ALLOCSITE_HEAP (glibc or runtime)\n"),
    }
    // (read directly: valgrind's preload is there whatever AT_SECURE says. Every tool
    // preloads vgpreload_core; the tools that replace the allocator — memcheck, helgrind,
    // drd, massif, dhat — preload vgpreload_TOOL as well, and their malloc is the one that
    // must see every chunk. Callgrind and cachegrind replace nothing: the spans stay on.)
    let pre = unsafe { libc::getenv(c"LD_PRELOAD".as_ptr()) };
    if !pre.is_null() && replacing_tool(unsafe { core::ffi::CStr::from_ptr(pre) }.to_bytes()) {
        allowed = false;
    }
    if check::on() {
        let _ = smallheap::enable_checked(allowed, check::spanobj::PAD);
    } else {
        let _ = smallheap::enable(allowed);
    }
}

extern "C" fn init() {
    // the index's static tables count as metadata from the start
    arena::META_BYTES.fetch_add(index::STATIC_BYTES + chunkmap::STATIC_BYTES, Ordering::Relaxed);
    sites::init_thread_key();
    hooks::check_interposed();
    if let Some(v) = sys::env(c"ALLOCSITE_MAX_META") {
        match parse_bytes(v) {
            Some(n) => arena::META_CAP.store(n, Ordering::Relaxed),
            None => sys::write_all(2, b"allocsite: ignoring malformed ALLOCSITE_MAX_META\n"),
        }
    }
    let reporting = sys::env(c"ALLOCSITE_REPORT").is_some_and(report::set_path);
    init_checks();
    init_heap();
    if reporting || check::on() {
        unsafe { libc::atexit(at_exit) };
    }
    trace::init();
    hooks::update_masks();
    protect::protect_loaded();
    unsafe { libc::pthread_atfork(Some(at_fork_prepare), Some(at_fork_parent), Some(at_fork_child)) };
}

#[used]
#[link_section = ".init_array"]
static INIT: extern "C" fn() = init;
