/* Attribution rules of hook ABI v3 (runtime/README.md, "Attribution"), with
 * hand-made descriptors and trampolines (tramp.h) and the mark byte set the way the
 * rewriter's mark stubs set it. Each mode checks allocsite_lookup's answers; the test
 * (runtime.rs) also checks the report. Exit status 0 = pass. */
#define _GNU_SOURCE
#include "tramp.h"
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(c) do { if (!(c)) { fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #c); exit(1); } } while (0)
#define NOINLINE __attribute__((noinline))

static int sym_starts(const void *addr, const char *prefix) {
    char buf[512];
    allocsite_symbolize(addr, buf, sizeof buf);
    if (strncmp(buf, prefix, strlen(prefix)) != 0) {
        fprintf(stderr, "symbol %s does not start with %s\n", buf, prefix);
        return 0;
    }
    return 1;
}

/* The mark byte in this thread's hot block (what a mark stub writes before jumping to
 * the allocator's PLT entry). */
static volatile unsigned char *mark(void) { return (volatile unsigned char *)&__outermost_allocsite + ALLOCSITE_MARK_OFFSET; }

static allocsite_chunk_t look(void *p) {
    allocsite_chunk_t c;
    CHECK(allocsite_lookup(p, &c) == 1 && c.base == p);
    return c;
}

/* ------------------------------------------------------------ hooked functions */
DESC(d_xmalloc, "xmalloc", ALLOCSITE_ALLOC, 0, -1, -1, 1)
DESC(d_make_obj, "make_obj", ALLOCSITE_ALLOC, 0, -1, -1, 1)
DESC(d_new_table, "new_table", ALLOCSITE_CTOR, -1, -1, -1, 0)
DESC(d_wrap_alloc, "wrap_alloc", ALLOCSITE_ALLOC, 0, -1, -1, 1)
DESC(d_inner_alloc, "inner_alloc", ALLOCSITE_ALLOC, 0, -1, -1, 1)
DESC(d_wrap_sub, "wrap_sub", ALLOCSITE_SUBALLOC, 0, -1, -1, 1)
DESC(d_bump, "bump", ALLOCSITE_SUBALLOC, 0, -1, -1, 1)
void *xmalloc(size_t n);
void *make_obj(size_t n);
void *new_table(void);
void *wrap_alloc(size_t n);
void *inner_alloc(size_t n);
void *wrap_sub(size_t n);
void *bump(size_t n);

__attribute__((used)) void *xmalloc_body(size_t n) { return malloc(n); }

/* make_obj: a classified call of malloc (marked), then an unmarked one */
void *unmarked_chunk;
__attribute__((used)) void *make_obj_body(size_t n) {
    *mark() = 1;
    void *p = malloc(n);
    unmarked_chunk = malloc(n + 1);
    return p;
}

/* a constructor: makes a fixed-size table and its array */
struct table { void *arr; };
__attribute__((used)) void *new_table_body(void) {
    struct table *t = malloc(sizeof *t);
    t->arr = xmalloc(40);
    return t;
}

/* wrap_alloc forwards its own size to inner_alloc through a pointer: a pass-through
 * call (return address wrap_pt_ret), as Lua's luaM_malloc_ → g->frealloc */
__attribute__((used)) void *inner_alloc_body(size_t n) { return malloc(n); }
void *(*volatile inner_fp)(size_t) = inner_alloc;
extern char wrap_pt_ret[], not_pt_lo[], not_pt_hi[];
__asm__(".intel_syntax noprefix\n.text\n"
        ".globl wrap_alloc_body\n.type wrap_alloc_body,@function\nwrap_alloc_body:\n"
        "  sub rsp, 8\n"
        "  call [rip+inner_fp]\n"
        ".globl wrap_pt_ret\nwrap_pt_ret:\n"
        "  add rsp, 8\n  ret\n"
        ".globl not_pt_lo\nnot_pt_lo: nop\n.globl not_pt_hi\nnot_pt_hi: nop\n"
        ".size wrap_alloc_body, .-wrap_alloc_body\n.att_syntax\n");

/* the same with suballocators, whose pieces the runtime records at their exit: wrap_sub
 * forwards its size to bump through a pointer (pass-through, return address
 * wrap_sub_pt_ret); the piece belongs to the caller's call of wrap_sub */
static char arena[4096];
static size_t arena_used;
__attribute__((used)) void *bump_body(size_t n) {
    void *p = arena + arena_used;
    arena_used += (n + 15) & ~(size_t)15;
    return p;
}
void *(*volatile bump_fp)(size_t) = bump;
extern char wrap_sub_pt_ret[];
__asm__(".intel_syntax noprefix\n.text\n"
        ".globl wrap_sub_body\n.type wrap_sub_body,@function\nwrap_sub_body:\n"
        "  sub rsp, 8\n"
        "  call [rip+bump_fp]\n"
        ".globl wrap_sub_pt_ret\nwrap_sub_pt_ret:\n"
        "  add rsp, 8\n  ret\n"
        ".size wrap_sub_body, .-wrap_sub_body\n.att_syntax\n");

TRAMP(xmalloc, d_xmalloc, xmalloc_body)
TRAMP(wrap_sub, d_wrap_sub, wrap_sub_body)
TRAMP(bump, d_bump, bump_body)
TRAMP(make_obj, d_make_obj, make_obj_body)
TRAMP(new_table, d_new_table, new_table_body)
TRAMP(wrap_alloc, d_wrap_alloc, wrap_alloc_body)
TRAMP(inner_alloc, d_inner_alloc, inner_alloc_body)

static int64_t pt_table[3], bump_pt_table[1];
static int cmp64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}
static void init(void) {
    DESC_INIT(d_wrap_sub); DESC_INIT(d_bump);
    bump_pt_table[0] = (int64_t)((uintptr_t)wrap_sub_pt_ret - (uintptr_t)&d_bump);
    d_bump.pt_count = 1;
    d_bump.pt_rel = (int64_t)((uintptr_t)bump_pt_table - (uintptr_t)&d_bump);
    DESC_INIT(d_xmalloc); DESC_INIT(d_make_obj); DESC_INIT(d_new_table); DESC_INIT(d_wrap_alloc); DESC_INIT(d_inner_alloc);
    /* inner_alloc's pass-through return addresses: wrap_pt_ret among two others */
    uintptr_t d = (uintptr_t)&d_inner_alloc;
    pt_table[0] = (int64_t)((uintptr_t)not_pt_hi - d);
    pt_table[1] = (int64_t)((uintptr_t)wrap_pt_ret - d);
    pt_table[2] = (int64_t)((uintptr_t)not_pt_lo - d);
    qsort(pt_table, 3, sizeof pt_table[0], cmp64);
    d_inner_alloc.pt_count = 3;
    d_inner_alloc.pt_rel = (int64_t)((uintptr_t)pt_table - d);
}

/* ------------------------------------------------------------ modes */
void *keep[16];

NOINLINE static int mark_caller(void) {
    /* under an active hooked call: the marked malloc is its own innermost site */
    void *p = make_obj(24);
    allocsite_chunk_t c = look(p);
    CHECK(sym_starts(c.site, "make_obj_body+") && strcmp(c.allocator, "malloc") == 0);
    CHECK(sym_starts(c.outermost, "mark_caller+") && strcmp(c.outermost_allocator, "make_obj") == 0);
    /* the unmarked one after it: the hooked call's site, as in ABI v2 */
    c = look(unmarked_chunk);
    CHECK(sym_starts(c.site, "mark_caller+") && strcmp(c.allocator, "make_obj") == 0);
    CHECK(c.site == c.outermost && strcmp(c.outermost_allocator, "make_obj") == 0);
    CHECK(*mark() == 0);
    keep[0] = p;
    keep[1] = unmarked_chunk;
    /* no active hooked call: innermost = outermost = the call */
    *mark() = 1;
    char *s = strdup("marked");
    CHECK(*mark() == 0);
    c = look(s);
    CHECK(sym_starts(c.site, "mark_caller+") && c.site == c.outermost);
    CHECK(strcmp(c.allocator, "strdup") == 0 && strcmp(c.outermost_allocator, "strdup") == 0);
    keep[2] = s;
    /* a failed marked call clears the mark too */
    volatile size_t huge = (size_t)1 << 62;
    *mark() = 1;
    CHECK(malloc(huge) == NULL);
    CHECK(*mark() == 0);
    /* a free clears it (and nothing else: a stale mark never outlives the next call) */
    void *volatile null = NULL;
    *mark() = 1;
    free(null);
    CHECK(*mark() == 0);
    puts("mark ok");
    return 0;
}

NOINLINE static int pt_caller(void) {
    /* inner_alloc called at a pass-through return address: its entry repeats
     * wrap_alloc's, so the chunk's innermost site is this function's call */
    void *p = wrap_alloc(48);
    CHECK(__outermost_allocsite == NULL);
    allocsite_chunk_t c = look(p);
    CHECK(sym_starts(c.site, "pt_caller+") && strcmp(c.allocator, "wrap_alloc") == 0);
    CHECK(c.site == c.outermost && strcmp(c.outermost_allocator, "wrap_alloc") == 0);
    keep[3] = p;
    /* called directly (not a pass-through site): its own site */
    p = inner_alloc(56);
    c = look(p);
    CHECK(sym_starts(c.site, "pt_caller+") && strcmp(c.allocator, "inner_alloc") == 0);
    keep[4] = p;
    /* a suballocator's piece through a pass-through call: this call of wrap_sub */
    void *piece = wrap_sub(100);
    c = look(piece);
    CHECK(sym_starts(c.site, "pt_caller+") && strcmp(c.allocator, "wrap_sub") == 0);
    CHECK(c.site == c.outermost && strcmp(c.outermost_allocator, "wrap_sub") == 0);
    puts("pt ok");
    return 0;
}

NOINLINE static int ctor_caller(void) {
    struct table *t = new_table();
    CHECK(__outermost_allocsite == NULL);
    /* malloc called by the ctor itself: innermost = that call; outermost = this call */
    allocsite_chunk_t c = look(t);
    CHECK(sym_starts(c.site, "new_table_body+") && strcmp(c.allocator, "malloc") == 0);
    CHECK(sym_starts(c.outermost, "ctor_caller+") && strcmp(c.outermost_allocator, "new_table") == 0);
    /* the ctor's call of xmalloc: innermost = that call, allocator xmalloc */
    c = look(t->arr);
    CHECK(sym_starts(c.site, "new_table_body+") && strcmp(c.allocator, "xmalloc") == 0);
    CHECK(sym_starts(c.outermost, "ctor_caller+") && strcmp(c.outermost_allocator, "new_table") == 0);
    keep[5] = t;
    puts("ctor ok");
    return 0;
}

/* chunks live at exit, from one line (the test finds it by the LEAK marker) */
NOINLINE static void leak_some(int n) {
    for (int i = 0; i < n; i++) keep[6 + i] = strdup("leaked"); /* LEAK */
}

/* a helper gcc inlines at -O2: its chunk's line is the caller's line */
static inline char *dup_helper(const char *s) {
    return strdup(s); /* INLINED-BODY */
}

NOINLINE static int peak(void) {
    enum { N = 10000 };
    void **v = malloc(N * sizeof *v);
    for (int i = 0; i < N; i++) CHECK((v[i] = malloc(32)) != NULL);
    for (int i = 0; i < N; i++) free(v[i]);
    free(v);
    leak_some(7);
    keep[14] = dup_helper("inlined"); /* INLINED-CALL */
    puts("peak ok");
    return 0;
}

int main(int argc, char **argv) {
    init();
    const char *m = argc > 1 ? argv[1] : "";
    if (!strcmp(m, "mark")) return mark_caller();
    if (!strcmp(m, "pt")) return pt_caller();
    if (!strcmp(m, "ctor")) return ctor_caller();
    if (!strcmp(m, "peak")) return peak();
    fprintf(stderr, "usage: attrib mark|pt|ctor|peak\n");
    return 2;
}
