/* allocsite.h — the C interface of liballocsite_rt.so.
 *
 * Two parts:
 *  1. The hook ABI (version 5) used by the trampolines that `allocsite rewrite` emits
 *     (see runtime/README.md). Programs never call these themselves.
 *  2. The query API: ask the heap index what a pointer is, walk live chunks, write a
 *     report now. Link with -lallocsite_rt (a rewritten program already loads it).
 *
 * All functions are thread-safe and never allocate through malloc. The query API
 * functions may be called from any thread; allocsite_lookup is async-signal-safe
 * when called from a handler that interrupted code outside the runtime (otherwise it
 * returns 0 rather than wait).
 */
#ifndef ALLOCSITE_H
#define ALLOCSITE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- hook ABI v5 -- */

#define ALLOCSITE_FN_MAGIC 0x35465341u /* "ASF5" */
enum allocsite_fn_kind {
    ALLOCSITE_ALLOC = 0, ALLOCSITE_REALLOC = 1, ALLOCSITE_FREE = 2, ALLOCSITE_SUBALLOC = 3,
    ALLOCSITE_CTOR = 4 /* constructor, hooked only with `rewrite --ctors` */
};
#define ALLOCSITE_FN_IMPORT 1u /* flags: an imported function hooked at its call sites */

struct allocsite_fn {          /* 64 bytes, one per hooked function, 8-byte aligned */
    uint32_t magic;            /* ALLOCSITE_FN_MAGIC */
    uint8_t  kind;             /* enum allocsite_fn_kind */
    int8_t   size_arg;         /* 0-based argument positions, -1 = none */
    int8_t   count_arg;
    int8_t   ptr_arg;
    int8_t   out_arg;
    uint8_t  nargs;            /* integer arguments, 0xff = unknown */
    uint16_t flags;            /* ALLOCSITE_FN_IMPORT */
    uint32_t pt_count;         /* entries in the pass-through table at pt_rel */
    int64_t  entry_rel;        /* function entry (IMPORT: its PLT stub, or 0) - (uintptr_t)&descriptor */
    int64_t  name_rel;         /* NUL-terminated name - (uintptr_t)&descriptor */
    int64_t  map_lo_rel;       /* [map_lo, map_hi): the object's new code, where a site */
    int64_t  map_hi_rel;       /*   is translated by the routine at map_thunk; all three */
    int64_t  map_thunk_rel;    /*   relative to the descriptor, 0 = none */
    int64_t  pt_rel;           /* sorted int64_t[pt_count]: pass-through return addresses
                                  (calls that forward a caller's own role argument to this
                                  function), each minus (uintptr_t)&descriptor */
};

/* Offset of the `mark` byte in the per-thread block at __outermost_allocsite: set to 1
 * just before a classified call of an allocator the runtime interposes; that allocator
 * reads and clears it (the chunk's innermost site is then that call). */
#define ALLOCSITE_MARK_OFFSET 50

/* C-ABI hooks, for hand-written trampolines (the rewriter's trampolines do the
 * bookkeeping inline and call the register-preserving __allocsite_hook_enter/exit;
 * see runtime/README.md).
 * Before the hooked function's body: site = caller's return address, args = rdi..r9,
 * entry_sp = stack pointer at function entry (points at the return address). */
void __allocsite_enter(const struct allocsite_fn *fn, void *site, const uint64_t args[6], void *entry_sp);
/* After each normal return, with rax; pops the entry pushed by the matching enter. */
void __allocsite_exit(const struct allocsite_fn *fn, uint64_t ret, void *entry_sp);

/* Site of the outermost active hooked call on this thread; NULL when none. */
extern __thread void *__outermost_allocsite;

/* ---------------------------------------------------------------- query API -- */

/* One live heap chunk as the index knows it. */
typedef struct allocsite_chunk {
    void       *base;       /* start of the chunk (what the allocator returned) */
    size_t      size;       /* requested size in bytes */
    void       *site;       /* innermost site: the innermost classified call of an
                               allocation function active when the chunk was made
                               (runtime/README.md, "Attribution") */
    void       *outermost;  /* outermost site: the outermost call of an allocation
                               function on the stack (__outermost_allocsite), else the
                               direct call site */
    const char *allocator;  /* static string: the function called at the innermost
                               site: the innermost hooked function's name (e.g.
                               "xmalloc"), else the C/C++ allocator ("malloc",
                               "calloc", "operator new", ...) */
    const char *outermost_allocator; /* the function called at the outermost site (added
                               with hook ABI v3: a program compiled against an older
                               allocsite.h passes allocsite_lookup a struct without it
                               and must be recompiled) */
} allocsite_chunk_t;

/* Look up any pointer into a live indexed chunk (interior pointers too).
 * Returns 1 and fills *out when found, 0 when the pointer is in no indexed chunk
 * (also for chunks made before the runtime started or dropped by the metadata cap). */
int allocsite_lookup(const void *ptr, allocsite_chunk_t *out);

/* Symbolize a code address into buf as "function+0xoff (file:line)" — the part in
 * parentheses only when the object has DWARF line information; "object+0xoff" when no
 * symbol covers the address. Always NUL-terminates (when len > 0). Returns the length
 * of the full string (like snprintf). Not async-signal-safe (reads ELF files). */
int allocsite_symbolize(const void *addr, char *buf, size_t len);

/* The type allocated at the innermost site of the chunk holding ptr ("Table",
 * "struct point"…), from the site → type table `allocsite cc` embeds in the object
 * (section .allocsite.types); NULL when ptr is in no indexed chunk or the site has no
 * type. The string stays valid for the life of the process. Not async-signal-safe. */
const char *allocsite_get_type(const void *ptr);

/* Call fn for every live indexed chunk (in address order per region, no global order);
 * stop early when fn returns non-zero. fn may allocate and free. Returns the number of
 * chunks visited. Chunks allocated or freed during the walk may or may not be seen. */
typedef int (*allocsite_visit_fn)(const allocsite_chunk_t *chunk, void *arg);
size_t allocsite_for_each_chunk(allocsite_visit_fn fn, void *arg);

/* Write the JSON report now. path NULL: the ALLOCSITE_REPORT path ("%p" = pid);
 * returns 0 on success, -1 on error (errno set; EINVAL when path is NULL and
 * ALLOCSITE_REPORT is not set). */
int allocsite_write_report(const char *path);

/* Totals of the runtime's own accounting. */
typedef struct allocsite_totals {
    uint64_t calls;        /* allocation calls seen */
    uint64_t bytes;        /* bytes requested by them */
    uint64_t live_chunks;  /* chunks currently indexed */
    uint64_t live_bytes;
    uint64_t dropped;      /* chunks not indexed (metadata cap, reentrancy) */
    uint64_t meta_bytes;   /* the runtime's own metadata memory (mmap'd) */
} allocsite_totals_t;
void allocsite_get_totals(allocsite_totals_t *out);

#ifdef __cplusplus
}
#endif
#endif
