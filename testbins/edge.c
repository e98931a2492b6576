/* Shapes that are hard for a launch pad (the first >= 5 bytes of a function are
 * moved into a trampoline; see DESIGN.md §5). Part of `wrappers`. */
#include <stdlib.h>
#include <string.h>
#include "edge.h"

/* Called when malloc fails; nonzero means "memory was freed, try again". */
int (*alloc_reclaim)(size_t n);

/* Retries through a global function pointer whose targets are not allocators.
 * (-O2: the loop head is at offset 9, after the 5 bytes of prologue.) */
void *retry_alloc(size_t n)
{
    for (;;) {
        void *p = malloc(n);
        if (p != NULL || alloc_reclaim == NULL || !alloc_reclaim(n))
            return p;
    }
}

/* -O2: `add $1,%rdi; test $0xf,%dil; jne <pad_alloc>; jmp malloc@plt` — the loop
 * branches back to the function's ENTRY, i.e. to the start of the launch pad:
 * jumping there again would re-run the entry hook on every iteration. */
void *pad_alloc(size_t n)
{
    do
        n++;
    while (n & 15);
    return malloc(n);
}

/* -O2 (this TU is built with -falign-loops=1): `xor %eax,%eax` (2 bytes), and the
 * loop head at offset 2 — a branch from the body into the MIDDLE of the first 5
 * bytes. A rewriter must refuse (with a reason) or hook the call sites. */
unsigned long pad_steps;

void *pad_count_alloc(size_t n)
{
    unsigned k = 0;
    do {
        n++;
        k++;
    } while (n & 15);
    pad_steps += k;
    return malloc(n);
}

/* Seven integer arguments: `owner` is passed on the stack (at 8(%rsp) on
 * entry). A call-through trampoline must copy it, or refuse. */
struct track { const char *file; const char *func; const void *owner; int line, flags; };

void *tracked_alloc(size_t n, const char *file, int line, const char *func,
                    int flags, int zero, void *owner)
{
    struct track *t = malloc(sizeof *t + n);
    if (t == NULL)
        return NULL;
    t->file = file;
    t->func = func;
    t->owner = owner;
    t->line = line;
    t->flags = flags;
    if (zero)
        memset(t + 1, 0, n);
    return t + 1;
}

const void *tracked_owner(const void *p)
{
    return ((const struct track *)p - 1)->owner;
}

const char *tracked_func(const void *p)
{
    return ((const struct track *)p - 1)->func;
}

void tracked_free(void *p)
{
    if (p != NULL)
        free((struct track *)p - 1);
}

/* Two exits: the pad (test + je = 5 bytes) ends just before `jmp malloc`, and
 * the je's target (xor %eax,%eax; ret) lies after it. */
void *maybe_alloc(size_t n)
{
    if (n == 0)
        return NULL;
    return malloc(n);
}

/* bash's and readline's xmalloc: the failure path calls a variadic reporting
 * function defined in another file (wrappers.c), so gcc cannot tell it never
 * returns and jumps back to the return path after it. That jump is dead code:
 * the analysis must not read the return value as unknown because of it. */
void *die_alloc(size_t n)
{
    void *p = malloc(n);
    if (p == NULL)
        wrappers_fatal("die_alloc: cannot allocate %lu bytes", (unsigned long)n);
    return p;
}
