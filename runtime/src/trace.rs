//! `ALLOCSITE_TRACE=FILE`: one line per hook event, written with one `write(2)`
//! (O_APPEND, so lines of different threads never interleave). No allocation.
use crate::sys::{self, Buf};
use crate::tls::hot;
use crate::abi::FnDesc;
use core::sync::atomic::{AtomicI32, Ordering};

static FD: AtomicI32 = AtomicI32::new(-1);

#[inline(always)]
pub fn on() -> bool {
    FD.load(Ordering::Relaxed) >= 0
}

/// Open (or, in a fork child, reopen) the trace file from the environment (the caller
/// then updates the hook masks: `hooks::update_masks`).
pub fn init() {
    let Some(tmpl) = sys::env(c"ALLOCSITE_TRACE") else { return };
    let mut path = [0u8; 4096];
    let n = sys::expand_pid(tmpl, &mut path);
    if n == 0 {
        return;
    }
    let fd = unsafe {
        libc::open(
            path.as_ptr().cast(),
            libc::O_WRONLY | libc::O_CREAT | libc::O_APPEND | libc::O_TRUNC | libc::O_CLOEXEC,
            0o644,
        )
    };
    let old = FD.swap(fd, Ordering::Relaxed);
    if old >= 0 {
        unsafe { libc::close(old) };
    }
}

/// Only used by the fork child before reopening (the file name may contain `%p`).
pub fn reopen_after_fork() {
    // a per-process file only when the name has %p; else keep appending to the shared one
    if on() && sys::env(c"ALLOCSITE_TRACE").is_some_and(|t| t.windows(2).any(|w| w == b"%p")) {
        init();
    }
}

fn tid() -> u32 {
    let h = hot();
    unsafe {
        if (*h).tid == 0 {
            (*h).tid = sys::gettid();
        }
        (*h).tid
    }
}

/// `<object>+0x<off>` of an address, the object's basename from `dladdr`.
pub fn put_site<const N: usize>(b: &mut Buf<N>, addr: usize) {
    let mut info: libc::Dl_info = unsafe { core::mem::zeroed() };
    if addr != 0 && unsafe { libc::dladdr(addr as *const _, &mut info) } != 0 && !info.dli_fname.is_null() {
        let name = unsafe { core::ffi::CStr::from_ptr(info.dli_fname) }.to_bytes();
        let base = match name.iter().rposition(|&c| c == b'/') {
            Some(i) => &name[i + 1..],
            None => name,
        };
        let base = if base.is_empty() { b"?".as_slice() } else { base };
        b.s(base).s(b"+").hex((addr - info.dli_fbase as usize) as u64);
    } else {
        b.s(b"?+").hex(addr as u64);
    }
}


#[cold]
#[inline(never)]
pub unsafe fn enter(f: *const FnDesc, site: usize, args: *const u64, depth: u32) {
    let mut b = Buf::<1024>::new();
    b.s(b"enter tid=").dec(tid() as u64).s(b" fn=").s(FnDesc::name(f)).s(b" site=");
    put_site(&mut b, site);
    b.s(b" depth=").dec(depth as u64);
    let arg = |i: i8| -> Option<u64> { if (0..6).contains(&i) { Some(*args.add(i as usize)) } else { None } };
    if let Some(v) = arg((*f).size_arg) {
        b.s(b" size=").dec(v);
    }
    if let Some(v) = arg((*f).count_arg) {
        b.s(b" count=").dec(v);
    }
    if let Some(v) = arg((*f).ptr_arg) {
        b.s(b" ptr=").hex(v);
    }
    if let Some(v) = arg((*f).out_arg) {
        b.s(b" out=").hex(v);
    }
    b.s(b"\n");
    sys::write_all(FD.load(Ordering::Relaxed), b.bytes());
}

#[cold]
#[inline(never)]
pub unsafe fn exit(f: *const FnDesc, site: usize, ret: u64, depth: u32) {
    let mut b = Buf::<1024>::new();
    b.s(b"exit  tid=").dec(tid() as u64).s(b" fn=").s(FnDesc::name(f)).s(b" site=");
    put_site(&mut b, site);
    b.s(b" depth=").dec(depth as u64).s(b" ret=").hex(ret).s(b"\n");
    sys::write_all(FD.load(Ordering::Relaxed), b.bytes());
}
