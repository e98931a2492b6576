//! The rewriter's read-write segment of a rewritten object — its new `.dynamic`, the
//! slots the loader fills for the trampolines (hook addresses, the masks' address, the
//! per-thread block's offset) and the function descriptors — needs writing only while
//! the loader relocates. RELRO cannot cover it (one PT_GNU_RELRO per object, and it
//! describes the original data), so at start-up, once every object loaded with the
//! program is relocated, the runtime makes it read-only itself: the trampolines' code
//! pointers then get the protection the GOT has.
//!
//! Recognized strictly by content: a writable PT_LOAD that starts with the object's
//! PT_DYNAMIC and whose first words after it hold exactly the addresses of this
//! runtime's `__allocsite_hook_enter`, `__allocsite_hook_exit` and `__allocsite_slow_v5`
//! (the rewriter's layout, runtime/README.md). Objects `dlopen`ed later keep the segment
//! writable.

use core::ffi::c_void;

extern "C" {
    static __allocsite_slow_v5: u8;
}

const PAGE: usize = 4096;

unsafe extern "C" fn visit(info: *mut libc::dl_phdr_info, _: usize, data: *mut c_void) -> i32 {
    let info = &*info;
    let hooks = &*(data as *const [usize; 3]);
    let Some((base, dynamic, seg)) = crate::sys::rewriter_segment(info) else { return 0 };
    let start = base + seg.p_vaddr as usize;
    let slots = base + dynamic.p_vaddr as usize + (dynamic.p_memsz as usize).div_ceil(8) * 8;
    let end = start + seg.p_memsz as usize;
    if !start.is_multiple_of(PAGE) || slots + 24 > end {
        return 0;
    }
    let words = core::slice::from_raw_parts(slots as *const usize, 3);
    if words != hooks {
        return 0;
    }
    libc::mprotect(start as *mut c_void, (end - start).div_ceil(PAGE) * PAGE, libc::PROT_READ);
    0
}

/// Make the rewriter's segment of every object loaded so far read-only (from init).
pub fn protect_loaded() {
    let hooks: [usize; 3] = [
        crate::hooks::__allocsite_hook_enter as *const () as usize,
        crate::hooks::__allocsite_hook_exit as *const () as usize,
        core::ptr::addr_of!(__allocsite_slow_v5) as usize,
    ];
    unsafe { libc::dl_iterate_phdr(Some(visit), &hooks as *const _ as *mut c_void) };
}
