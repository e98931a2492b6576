//! glibc's heap statistics with the runtime's small-object heap counted in: a program
//! that reports its memory through `mallinfo2`/`mallinfo` sees the span objects it
//! holds (glibc's own answer knows nothing of them). Spans set up and kept count as
//! arena, their live objects as allocated (`uordblks`), the rest of them as free
//! (`fordblks`), as glibc counts its heap's chunks.
use super::*;

#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct Mallinfo2 {
    arena: usize,
    ordblks: usize,
    smblks: usize,
    hblks: usize,
    hblkhd: usize,
    usmblks: usize,
    fsmblks: usize,
    uordblks: usize,
    fordblks: usize,
    keepcost: usize,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct Mallinfo {
    arena: i32,
    ordblks: i32,
    smblks: i32,
    hblks: i32,
    hblkhd: i32,
    usmblks: i32,
    fsmblks: i32,
    uordblks: i32,
    fordblks: i32,
    keepcost: i32,
}

/// glibc's `mallinfo2` (found once), or None.
fn libc_mallinfo2() -> Option<unsafe extern "C" fn() -> Mallinfo2> {
    static SLOT: AtomicPtr<c_void> = AtomicPtr::new(null_mut());
    let f = unsafe { real(&SLOT, c"mallinfo2") };
    (!f.is_null()).then(|| unsafe { core::mem::transmute::<*mut c_void, unsafe extern "C" fn() -> Mallinfo2>(f) })
}

#[no_mangle]
pub unsafe extern "C" fn mallinfo2() -> Mallinfo2 {
    let mut m = libc_mallinfo2().map(|f| f()).unwrap_or_default();
    let (spans, live) = sh::usage();
    m.arena += spans;
    m.uordblks += live;
    m.fordblks += spans - live;
    m
}

/// The old `int` form, from `mallinfo2` (glibc's own truncates the same way).
#[no_mangle]
pub unsafe extern "C" fn mallinfo() -> Mallinfo {
    let m = mallinfo2();
    let t = |v: usize| v as i32;
    Mallinfo {
        arena: t(m.arena),
        ordblks: t(m.ordblks),
        smblks: t(m.smblks),
        hblks: t(m.hblks),
        hblkhd: t(m.hblkhd),
        usmblks: t(m.usmblks),
        fsmblks: t(m.fsmblks),
        uordblks: t(m.uordblks),
        fordblks: t(m.fordblks),
        keepcost: t(m.keepcost),
    }
}
