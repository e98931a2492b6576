//! The hook ABI's data (runtime/README.md, "Hook ABI"): the function descriptors the
//! rewriter emits and the kinds they name. The bottom layer, with `sys` and `tls`.

/// `struct allocsite_fn` (hook ABI version 3), emitted by the rewriter.
#[repr(C)]
pub struct FnDesc {
    pub magic: u32,
    pub kind: u8,
    pub size_arg: i8,
    pub count_arg: i8,
    pub ptr_arg: i8,
    pub out_arg: i8,
    pub nargs: u8,
    /// `FN_IMPORT`: an imported function hooked at its call sites.
    pub flags: u16,
    /// Pass-through return addresses in the table at `pt_rel`.
    pub pt_count: u32,
    pub entry_rel: i64,
    pub name_rel: i64,
    /// `[map_lo, map_hi)`: the object's new code; a site there is translated by the
    /// routine at `map_thunk` (all three relative to the descriptor; 0 = none).
    pub map_lo_rel: i64,
    pub map_hi_rel: i64,
    pub map_thunk_rel: i64,
    /// Sorted `i64[pt_count]`: pass-through return addresses, each minus the
    /// descriptor's address (the calls that forward this function's own role argument
    /// to an indirectly called allocation function).
    pub pt_rel: i64,
}
const _: () = {
    assert!(core::mem::size_of::<FnDesc>() == 64);
    assert!(core::mem::offset_of!(FnDesc, flags) == 10);
    assert!(core::mem::offset_of!(FnDesc, pt_count) == 12);
    assert!(core::mem::offset_of!(FnDesc, entry_rel) == 16);
    assert!(core::mem::offset_of!(FnDesc, pt_rel) == 56);
};
/// "ASF5" little-endian (hook ABI version 5).
pub const FN_MAGIC: u32 = 0x3546_5341;
/// `FnDesc::flags` bit 0: an imported function, hooked at its call sites.
pub const FN_IMPORT: u16 = 1;

impl FnDesc {
    /// Whether `site` is one of this function's pass-through return addresses.
    #[inline]
    pub unsafe fn is_pass_through(f: *const FnDesc, site: usize) -> bool {
        let n = (*f).pt_count as usize;
        if n == 0 || (*f).pt_rel == 0 {
            return false;
        }
        let base = f as usize;
        let tab = core::slice::from_raw_parts(base.wrapping_add((*f).pt_rel as usize) as *const i64, n);
        let rel = site.wrapping_sub(base) as i64;
        tab.binary_search(&rel).is_ok()
    }
}

/// Kinds (`FnDesc::kind`).
pub const KIND_ALLOC: u8 = 0;
pub const KIND_REALLOC: u8 = 1;
pub const KIND_FREE: u8 = 2;
pub const KIND_SUBALLOC: u8 = 3;
/// A constructor (hooked only with `rewrite --ctors`): counts for the outermost site.
pub const KIND_CTOR: u8 = 4;

// An active call's entry (`tls::Entry::fn_`, hook ABI v5) holds its descriptor's
// address with the kind's attribution class in bits 1–2, so that attribution's common
// case needs no load of the descriptor: bit 1 = a free-kind function, bit 2 = a
// constructor; both clear = a call that is a site of its own. Bit 0 set: no descriptor
// at all (the runtime's "result indexed by an inner call" mark on a chunk's address).
/// Entry tag of a free-kind function.
pub const ENTRY_FREE: usize = 2;
/// Entry tag of a constructor.
pub const ENTRY_CTOR: usize = 4;
/// All tag bits of an entry's function word.
pub const ENTRY_TAGS: usize = 7;

/// The entry word of a call of `f` (null stays null).
#[inline]
pub unsafe fn entry_word(f: *const FnDesc) -> *const FnDesc {
    if f.is_null() {
        return f;
    }
    let tag = match (*f).kind {
        KIND_FREE => ENTRY_FREE,
        KIND_CTOR => ENTRY_CTOR,
        _ => 0,
    };
    (f as usize | tag) as *const FnDesc
}

/// The descriptor an entry word names: null for a word with bit 0 set (no descriptor).
#[inline(always)]
pub fn entry_desc(w: *const FnDesc) -> *const FnDesc {
    if w as usize & 1 != 0 {
        core::ptr::null()
    } else {
        (w as usize & !ENTRY_TAGS) as *const FnDesc
    }
}

impl FnDesc {
    /// The function's NUL-terminated name, without the NUL.
    pub unsafe fn name(f: *const FnDesc) -> &'static [u8] {
        let p = (f as usize as i64 + (*f).name_rel) as *const core::ffi::c_char;
        core::ffi::CStr::from_ptr(p).to_bytes()
    }
}
