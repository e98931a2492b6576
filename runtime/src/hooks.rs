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
    let size = match (*f).size_arg {
        a @ 0..=5 => *args.add(a as usize),
        _ => 0,
    };
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
    if trace::on() {
        trace::enter(f, site as usize, args, d + 1);
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
    if trace::on() {
        let site = if mine != 0 && (mine as usize) <= DEPTH { (*h).entries[mine as usize - 1].site } else { 0 };
        trace::exit(f, site, ret, if mine != 0 { mine } else { d });
    }
    if mine != 0 {
        d -= 1;
        if d == 0 {
            (*h).outermost = 0;
        }
    }
    (*h).depth = d;
}
