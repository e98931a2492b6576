//! Options baked into a program by `allocsite rewrite --check OPTS`: the rewriter puts
//! `MAGIC` followed by the NUL-terminated option string, 8-byte aligned, at the end of
//! its new data (`.allocsite.data`, runtime/README.md "Heap checks"). Found in the
//! first loaded object (the executable comes first) whose rewriter segment — the
//! writable PT_LOAD that starts with its PT_DYNAMIC, as protect.rs recognises it —
//! holds one.
use core::ffi::c_void;

pub const MAGIC: &[u8; 16] = b"allocsite-check\0";

unsafe extern "C" fn visit(info: *mut libc::dl_phdr_info, _: usize, data: *mut c_void) -> i32 {
    let info = &*info;
    let out = &mut *(data as *mut Option<&'static [u8]>);
    let Some((base, dynamic, seg)) = crate::sys::rewriter_segment(info) else { return 0 };
    let start = base + (dynamic.p_vaddr + dynamic.p_memsz) as usize;
    let end = base + (seg.p_vaddr + seg.p_filesz) as usize;
    let mut a = start.div_ceil(8) * 8;
    while a + MAGIC.len() < end {
        if core::slice::from_raw_parts(a as *const u8, 16) == MAGIC {
            let s = a + 16;
            let n = (s..end).position(|q| *(q as *const u8) == 0).unwrap_or(0);
            *out = Some(core::slice::from_raw_parts(s as *const u8, n));
            return 1;
        }
        a += 8;
    }
    0
}

/// The baked option string, if any loaded object carries one.
pub fn find() -> Option<&'static [u8]> {
    let mut out: Option<&'static [u8]> = None;
    unsafe { libc::dl_iterate_phdr(Some(visit), &mut out as *mut _ as *mut c_void) };
    out.filter(|s| !s.is_empty())
}
