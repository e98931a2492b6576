//! `__allocsite_enter` / `__allocsite_exit`: the hook ABI (runtime/README.md).
use crate::tls::{drop_stale, hot, DEPTH};
use crate::{trace, FnDesc};
use core::sync::atomic::Ordering;

#[inline(always)]
unsafe fn bump_calls(f: *const FnDesc) {
    // Runtime-owned counter. Plain (unlocked) increment: a locked add would cost more
    // than the whole hook; concurrent calls of one function may lose counts.
    let c = &(*f).calls;
    c.store(c.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
}

#[no_mangle]
pub unsafe extern "C" fn __allocsite_enter(f: *const FnDesc, site: *mut u8, args: *const u64, entry_sp: *mut u8) {
    let h = hot();
    let sp = entry_sp as usize;
    let mut d = (*h).depth;
    if d != 0 {
        d = drop_stale(h, d, sp, true);
    }
    bump_calls(f);
    let mut size = match (*f).size_arg {
        a @ 0..=5 => *args.add(a as usize),
        _ => 0,
    };
    if let c @ 0..=5 = (*f).count_arg {
        size = size.wrapping_mul(*args.add(c as usize));
    }
    if (d as usize) < DEPTH {
        let e = &mut (*h).entries[d as usize];
        e.fn_ = f;
        e.site = site as usize;
        e.sp = sp;
        e.size = size;
    } else {
        crate::stats::DEPTH_OVERFLOWS.fetch_add(1, Ordering::Relaxed);
    }
    if d == 0 {
        (*h).outermost = site as usize;
    }
    (*h).depth = d + 1;
    // rare work last, in one out-of-line call, so the fast path saves no registers
    if trace::on() || (((*f).kind == KIND_FREE || (*f).kind == KIND_REALLOC) && crate::index::SUB_USED.load(Ordering::Relaxed)) {
        enter_slow(f, site as usize, args, d + 1);
    }
}

#[cold]
#[inline(never)]
unsafe fn enter_slow(f: *const FnDesc, site: usize, args: *const u64, depth: u32) {
    let k = (*f).kind;
    if (k == KIND_FREE || (k == KIND_REALLOC && !INTERPOSED.load(Ordering::Relaxed)))
        && crate::index::SUB_USED.load(Ordering::Relaxed)
    {
        sub_free(f, args);
    }
    if trace::on() {
        trace::enter(f, site, args, depth);
    }
}

#[no_mangle]
pub unsafe extern "C" fn __allocsite_exit(f: *const FnDesc, ret: u64, entry_sp: *mut u8) {
    let h = hot();
    let sp = entry_sp as usize;
    let mut d = (*h).depth;
    if d != 0 {
        d = drop_stale(h, d, sp, false);
    }
    let mut mine = 0;
    if d as usize > DEPTH {
        mine = d; // unrecorded level: trust the pairing
    } else if d != 0 && (*h).entries[d as usize - 1].sp == sp {
        mine = d;
    }
    let (site, size, inner_done) = if mine != 0 && (mine as usize) <= DEPTH {
        let e = &(*h).entries[mine as usize - 1];
        (e.site, e.size, e.fn_ as usize == (ret as usize | 1))
    } else {
        (0, 0, false)
    };
    let outer = (*h).outermost;
    if mine != 0 {
        d -= 1;
        if d == 0 {
            (*h).outermost = 0;
        }
    }
    (*h).depth = d;
    if trace::on() || ((RECORD_KINDS.load(Ordering::Relaxed) >> ((*f).kind & 7)) & 1 != 0 && ret != 0 && site != 0) {
        let depth = if mine != 0 { mine } else { d };
        exit_slow(f, ret, site, size, outer, depth | if inner_done { 1 << 31 } else { 0 });
    }
}

/// Kinds whose results `__allocsite_exit` indexes itself: suballocators always; when
/// the runtime's malloc is not the one in use (an unmodified program loading a
/// rewritten library: the runtime comes after libc in the lookup scope), also the
/// hooked alloc and realloc functions.
pub static RECORD_KINDS: core::sync::atomic::AtomicU8 = core::sync::atomic::AtomicU8::new(1 << KIND_SUBALLOC);
/// Whether the runtime's `malloc` is the process's `malloc` (set at load time).
pub static INTERPOSED: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(true);

/// At load time: is the runtime's malloc the one the process uses?
pub fn check_interposed() {
    // (the address of our own `malloc` taken here would itself be resolved through the
    // lookup scope: compare the objects holding the found symbol and this function)
    let found = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"malloc".as_ptr()) };
    let base = |a: *const libc::c_void| -> usize {
        let mut info: libc::Dl_info = unsafe { core::mem::zeroed() };
        if unsafe { libc::dladdr(a, &mut info) } != 0 {
            info.dli_fbase as usize
        } else {
            0
        }
    };
    if !found.is_null() && base(found) != base(check_interposed as *const libc::c_void) {
        INTERPOSED.store(false, Ordering::Relaxed);
        RECORD_KINDS.store((1 << KIND_SUBALLOC) | (1 << KIND_ALLOC) | (1 << KIND_REALLOC), Ordering::Relaxed);
    }
}

#[cold]
#[inline(never)]
unsafe fn exit_slow(f: *const FnDesc, ret: u64, site: usize, size: u64, outer: usize, depth: u32) {
    let inner_done = depth & (1 << 31) != 0;
    let depth = depth & !(1 << 31);
    if trace::on() {
        trace::exit(f, site, ret, depth);
    }
    if (RECORD_KINDS.load(Ordering::Relaxed) >> ((*f).kind & 7)) & 1 != 0 && ret != 0 && site != 0 && !inner_done {
        let code = if (*f).kind == KIND_SUBALLOC { crate::sites::A_SUB } else { crate::sites::A_HOOKED };
        let h = hot();
        sub_record(h, ret as usize, size, site, outer, f, code);
        // tell an enclosing hooked call returning the same pointer that it is indexed
        if depth >= 2 && (depth as usize - 1) <= DEPTH {
            (*h).entries[depth as usize - 2].fn_ = (ret as usize | 1) as *const FnDesc;
        }
    }
}

pub const KIND_ALLOC: u8 = 0;
pub const KIND_REALLOC: u8 = 1;
pub const KIND_FREE: u8 = 2;
pub const KIND_SUBALLOC: u8 = 3;

/// Index a piece returned by a hooked suballocator (the SUB index: pieces may lie
/// inside a glibc chunk, e.g. a pool's block).
#[cold]
#[inline(never)]
unsafe fn sub_record(h: *mut crate::tls::Hot, p: usize, size: u64, site: usize, outer: usize, f: *const FnDesc, code: u32) {
    use crate::interpose::{guard_off, guard_on, GUARD_WORK, INDEXING};
    use crate::{index, sites};
    if (*h).guard != 0 {
        return;
    }
    guard_on(h, GUARD_WORK);
    let id = sites::intern(h, site, outer, sites::make_key(f, code));
    if id != 0 {
        index::SUB_USED.store(true, Ordering::Relaxed);
        let size = size.min(1 << 40) as usize;
        let mut ok = false;
        if INDEXING.load(Ordering::Relaxed) {
            match index::insert(&index::SUB, p, size, id) {
                Ok(Some(old)) => {
                    sites::on_free(h, old.id, old.size as u64);
                    ok = true
                }
                Ok(None) => ok = true,
                Err(()) => {}
            }
        }
        sites::on_alloc(h, id, size as u64, ok);
    }
    guard_off(h);
}

/// A hooked free function is about to release a suballocated piece.
#[cold]
#[inline(never)]
unsafe fn sub_free(f: *const FnDesc, args: *const u64) {
    use crate::interpose::{guard_off, guard_on, GUARD_WORK};
    let a = (*f).ptr_arg;
    if !(0..6).contains(&a) {
        return;
    }
    let p = *args.add(a as usize) as usize;
    let h = hot();
    if p == 0 || (*h).guard != 0 {
        return;
    }
    guard_on(h, GUARD_WORK);
    if let Some(c) = crate::index::remove(&crate::index::SUB, p) {
        crate::sites::on_free(h, c.id, c.size as u64);
    }
    guard_off(h);
}
