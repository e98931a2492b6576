//! The allocators of the C library and the C++ runtime that propagation starts
//! from, and the functions known never to return.

use crate::classification::Kind;

/// Role positions of an allocation function; the propagation's unit of knowledge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Spec {
    pub kind: Option<Kind>,
    pub size: Option<u8>,
    pub count: Option<u8>,
    pub ptr: Option<u8>,
    pub out: Option<u8>,
    /// A string argument the block's size comes from (strdup's `s`). Internal: no
    /// JSON role, but it keeps strdup-like functions from looking fixed-size, and
    /// lets `xstrdup(s) → strdup(s)` count as forwarding.
    pub src: Option<u8>,
    /// Storage is made only when this argument is NULL (`realpath(p, NULL)`,
    /// `getcwd(NULL, 0)`); with a buffer the call fills it instead.
    pub when_null: Option<u8>,
    /// Integer arguments taken.
    pub nargs: u8,
}

impl Spec {
    const fn new(kind: Kind, nargs: u8) -> Spec {
        Spec { kind: Some(kind), size: None, count: None, ptr: None, out: None, src: None, when_null: None, nargs }
    }
    const fn when_null(mut self, p: u8) -> Spec {
        self.when_null = Some(p);
        self
    }
    const fn src(mut self, p: u8) -> Spec {
        self.src = Some(p);
        self
    }
    const fn size(mut self, p: u8) -> Spec {
        self.size = Some(p);
        self
    }
    const fn count(mut self, p: u8) -> Spec {
        self.count = Some(p);
        self
    }
    const fn ptr(mut self, p: u8) -> Spec {
        self.ptr = Some(p);
        self
    }
    const fn out(mut self, p: u8) -> Spec {
        self.out = Some(p);
        self
    }
    /// Returns fresh storage (through the return value or an out-parameter).
    pub fn gives_storage(&self) -> bool {
        matches!(self.kind, Some(Kind::Alloc | Kind::Realloc | Kind::Suballoc | Kind::Ctor))
    }
    /// A size, count or string argument sizes the block.
    pub fn has_size_role(&self) -> bool {
        self.size.is_some() || self.count.is_some() || self.src.is_some()
    }
}

/// The seed allocator called `name` (versioned names like `malloc@GLIBC_2.2.5` accepted).
pub fn seed(name: &str) -> Option<Spec> {
    let name = name.split('@').next().unwrap_or(name);
    use Kind::*;
    Some(match name {
        "malloc" | "valloc" | "pvalloc" | "__libc_malloc" | "__libc_valloc" | "__libc_pvalloc" => Spec::new(Alloc, 1).size(0),
        "calloc" | "__libc_calloc" => Spec::new(Alloc, 2).count(0).size(1),
        "realloc" | "__libc_realloc" => Spec::new(Realloc, 2).ptr(0).size(1),
        "reallocarray" => Spec::new(Realloc, 3).ptr(0).count(1).size(2),
        "free" | "__libc_free" | "cfree" => Spec::new(Free, 1).ptr(0),
        "posix_memalign" => Spec::new(Alloc, 3).out(0).size(2),
        "aligned_alloc" | "memalign" | "__libc_memalign" => Spec::new(Alloc, 2).size(1),
        "strdup" | "__strdup" => Spec::new(Alloc, 1).src(0),
        "strndup" | "__strndup" => Spec::new(Alloc, 2).size(1).src(0),
        // operator new / new[], plain, nothrow, aligned (and both).
        "_Znwm" | "_Znam" | "_ZnwmRKSt9nothrow_t" | "_ZnamRKSt9nothrow_t" | "_ZnwmSt11align_val_t"
        | "_ZnamSt11align_val_t" | "_ZnwmSt11align_val_tRKSt9nothrow_t" | "_ZnamSt11align_val_tRKSt9nothrow_t" => {
            Spec::new(Alloc, 1).size(0)
        }
        // operator delete / delete[], plain, sized, aligned, nothrow.
        "_ZdlPv" | "_ZdaPv" | "_ZdlPvm" | "_ZdaPvm" | "_ZdlPvSt11align_val_t" | "_ZdaPvSt11align_val_t"
        | "_ZdlPvmSt11align_val_t" | "_ZdaPvmSt11align_val_t" | "_ZdlPvRKSt9nothrow_t" | "_ZdaPvRKSt9nothrow_t"
        | "_ZdlPvSt11align_val_tRKSt9nothrow_t" | "_ZdaPvSt11align_val_tRKSt9nothrow_t" => Spec::new(Free, 1).ptr(0),
        _ => return None,
    })
}

/// The imported allocating function called `name`: the seeds, plus the C library's
/// functions that hand out storage the caller frees. Only for imports: a program
/// may define its own `getline` or `tempnam`, which says nothing about storage.
///
/// Kinds and roles (analysis/README.md, "imported allocation functions"):
/// asprintf/vasprintf store a fresh string at `*strp` (`alloc out=0`);
/// getline/getdelim resize the block at `*lineptr` and store the new one back
/// (`realloc out=0`: the out-parameter is both the old block's slot and the new
/// one's; no size role, the size is the line's); realpath/getcwd allocate only
/// when their buffer argument is NULL; scandir stores a fresh array at
/// `*namelist`; open_memstream's buffer appears at `*ptr`.
pub fn import(name: &str) -> Option<Spec> {
    let name = name.split('@').next().unwrap_or(name);
    if let Some(s) = seed(name) {
        return Some(s);
    }
    use Kind::*;
    Some(match name {
        "wcsdup" => Spec::new(Alloc, 1).src(0),
        "asprintf" | "__asprintf" | "__asprintf_chk" => Spec::new(Alloc, 2).out(0),
        "vasprintf" | "__vasprintf_chk" => Spec::new(Alloc, 3).out(0),
        "getline" => Spec::new(Realloc, 3).out(0),
        "getdelim" | "__getdelim" => Spec::new(Realloc, 4).out(0),
        "realpath" => Spec::new(Alloc, 2).src(0).when_null(1),
        "canonicalize_file_name" => Spec::new(Alloc, 1).src(0),
        "open_memstream" | "open_wmemstream" => Spec::new(Alloc, 2).out(0),
        "get_current_dir_name" => Spec::new(Alloc, 0),
        "getcwd" => Spec::new(Alloc, 2).when_null(0),
        "scandir" => Spec::new(Alloc, 4).out(1),
        "scandirat" => Spec::new(Alloc, 5).out(2),
        "tempnam" => Spec::new(Alloc, 2),
        _ => return None,
    })
}

/// True for external functions that never return to their caller.
pub fn noreturn(name: &str) -> bool {
    let name = name.split('@').next().unwrap_or(name);
    matches!(
        name,
        "exit" | "_exit" | "_Exit" | "abort" | "__assert_fail" | "__assert_perror_fail" | "__stack_chk_fail"
            | "err" | "errx" | "verr" | "verrx" | "__cxa_throw" | "__cxa_rethrow" | "__cxa_bad_cast"
            | "__cxa_bad_typeid" | "__cxa_throw_bad_array_new_length" | "_Unwind_Resume" | "longjmp" | "_longjmp"
            | "siglongjmp" | "__longjmp_chk" | "pthread_exit" | "__fortify_fail" | "__chk_fail" | "quick_exit"
            | "_ZSt9terminatev" | "__cxa_call_terminate" | "__cxa_pure_virtual"
    ) || (name.starts_with("_ZSt") && name.contains("__throw_"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_cover_cxx_variants() {
        assert_eq!(seed("malloc@GLIBC_2.2.5").unwrap().size, Some(0));
        assert_eq!(seed("_ZnamSt11align_val_tRKSt9nothrow_t").unwrap().kind, Some(Kind::Alloc));
        assert_eq!(seed("_ZdaPvmSt11align_val_t").unwrap().ptr, Some(0));
        assert_eq!(seed("calloc").unwrap().count, Some(0));
        assert!(seed("memcpy").is_none());
        assert!(seed("getline").is_none());
        assert_eq!(import("getline@GLIBC_2.2.5").unwrap().out, Some(0));
        assert_eq!(import("strdup").unwrap().src, Some(0));
        assert_eq!(import("realpath").unwrap().when_null, Some(1));
        assert!(noreturn("_ZSt17__throw_bad_allocv"));
        assert!(!noreturn("malloc"));
    }
}
