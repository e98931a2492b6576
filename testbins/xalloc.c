/* Direct allocation wrappers (issue 2): NULL checks whose failure path calls
 * exit/abort, a chain of three wrappers, tail-call wrappers and one wrapper whose
 * -O2 code is shorter than 5 bytes. See wrappers.expect. */
#include <stdio.h>
#include <stdlib.h>
#include "xalloc.h"

/* noinline: keeps the wrapper chain below (mem_alloc -> xmalloc) and the short
 * alias real calls at -O2; without it gcc inlines xmalloc into its callers here. */
__attribute__((noinline)) void *xmalloc(size_t n)
{
    void *p = malloc(n);
    if (p == NULL && n != 0) {
        fprintf(stderr, "xmalloc: out of memory (%zu bytes)\n", n);
        exit(2);
    }
    return p;
}

/* The short wrapper: at -O2 its whole body is `eb xx` (jmp rel8 to xmalloc),
 * 2 bytes, followed by alignment padding (nops up to the next 16-byte boundary).
 * It must stay right after xmalloc in this file: gcc emits functions in source
 * order here, and gas only uses the 2-byte form when the target is within 127
 * bytes and in the same section. */
void *xmalloc_alias(size_t n)
{
    return xmalloc(n);
}

void *xcalloc(size_t n, size_t sz)
{
    void *p = calloc(n, sz);
    if (p == NULL && n != 0 && sz != 0) {
        fprintf(stderr, "xcalloc: out of memory (%zu x %zu bytes)\n", n, sz);
        abort();
    }
    return p;
}

void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n);
    if (q == NULL && n != 0) {
        fprintf(stderr, "xrealloc: out of memory (%zu bytes)\n", n);
        exit(2);
    }
    return q;
}

void xfree(void *p)
{
    if (p != NULL)
        free(p);
}

/* The "try" wrapper: failure is reported to the caller, not fatal. */
void *try_malloc(size_t n)
{
    void *p = malloc(n);
    if (p == NULL)
        return NULL;
    return p;
}

/* Three levels over malloc: buf_alloc -> mem_alloc -> xmalloc -> malloc. noinline
 * keeps the levels apart at -O2 inside this one TU. */
__attribute__((noinline)) void *mem_alloc(size_t n)
{
    return xmalloc(n + 8);
}

__attribute__((noinline)) void *buf_alloc(size_t n)
{
    return mem_alloc(n * 2);
}

/* -O2: shl $4,%rdi; jmp malloc@plt (4 + 5 = 9 bytes). */
void *alloc16(size_t n)
{
    return malloc(n << 4);
}

/* -O2: jmp malloc@plt, exactly 5 bytes (the boundary case for a launch pad). */
void *plain_malloc(size_t n)
{
    return malloc(n);
}

void *xmalloc_cb(size_t n, alloc_cb *cb, void *arg)
{
    void *p = xmalloc(n);
    if (cb != NULL)
        cb(p, n, arg);
    return p;
}
