//! allocsite runtime (`liballocsite_rt.so`): hook entry points, per-thread stack of
//! active allocation calls, heap index, query API and reports.
//! See runtime/README.md for the hook ABI and include/allocsite.h for the query API.
#![allow(clippy::missing_safety_doc)]

pub mod hooks;
pub mod stats;
pub mod sys;
pub mod tls;
pub mod trace;

use core::sync::atomic::{AtomicU64, Ordering};

/// `struct allocsite_fn` (hook ABI version 1), emitted by the rewriter.
#[repr(C)]
pub struct FnDesc {
    pub magic: u32,
    pub kind: u8,
    pub size_arg: i8,
    pub count_arg: i8,
    pub ptr_arg: i8,
    pub out_arg: i8,
    pub nargs: u8,
    pub flags: u16,
    pub _pad: u32,
    pub entry_rel: i64,
    pub name_rel: i64,
    pub calls: AtomicU64,
}
const _: () = assert!(core::mem::size_of::<FnDesc>() == 40);
pub const FN_MAGIC: u32 = 0x3146_5341;

/// Copy `tmpl` into `out` with `%p` replaced by the pid; NUL-terminated. Returns the
/// length (0 when it does not fit).
pub fn expand_pid(tmpl: &[u8], out: &mut [u8]) -> usize {
    let mut b = sys::Buf::<4096>::new();
    let mut i = 0;
    while i < tmpl.len() {
        if tmpl[i] == b'%' && i + 1 < tmpl.len() && tmpl[i + 1] == b'p' {
            b.dec(unsafe { libc::getpid() } as u64);
            i += 2;
        } else {
            b.s(&tmpl[i..i + 1]);
            i += 1;
        }
    }
    let n = b.n;
    if n + 1 > out.len() || n + 1 > 4096 {
        return 0;
    }
    out[..n].copy_from_slice(b.bytes());
    out[n] = 0;
    n
}

extern "C" fn at_fork_child() {
    unsafe { (*tls::hot()).tid = 0 };
    trace::reopen_after_fork();
}

extern "C" fn init() {
    trace::init();
    unsafe { libc::pthread_atfork(None, None, Some(at_fork_child)) };
    let _ = Ordering::Relaxed;
}

#[used]
#[link_section = ".init_array"]
static INIT: extern "C" fn() = init;
