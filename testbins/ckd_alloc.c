/* sphinx3-style allocators (ckd_alloc.c of SPEC 482.sphinx3, rewritten small).
 * __ckd_calloc_2d__ calls two classified allocators — __ckd_calloc__ for the
 * d1*d2 element block and __ckd_malloc__ for the d1 row pointers — and returns
 * the row-pointer array; __ckd_calloc_3d__ adds a third level. See nested.expect.
 *
 * NOINLINE: at -O2 gcc would inline __ckd_calloc__/__ckd_malloc__ into the 2-D
 * and 3-D allocators of this same file, and the nesting (two classified calls
 * inside a classified call) would exist only at -O0. We want it at every
 * variant, so the two leaf wrappers are kept out of line. */
#include <stdio.h>
#include <stdlib.h>
#include "ckd_alloc.h"

#define NOINLINE __attribute__((noinline))

/* sphinx3's E_FATAL: message with the caller's position, then exit. */
static void ckd_fatal(const char *what, size_t bytes, const char *file, int line)
{
    fprintf(stderr, "FATAL_ERROR: \"%s\", line %d: %s(%zu) failed\n", file, line, what, bytes);
    exit(1);
}

NOINLINE void *__ckd_calloc__(size_t n, size_t size, const char *caller_file, int caller_line)
{
    void *mem = calloc(n, size);
    if (mem == NULL)
        ckd_fatal("calloc", n * size, caller_file, caller_line);
    return mem;
}

NOINLINE void *__ckd_malloc__(size_t size, const char *caller_file, int caller_line)
{
    void *mem = malloc(size);
    if (mem == NULL)
        ckd_fatal("malloc", size, caller_file, caller_line);
    return mem;
}

void *__ckd_realloc__(void *ptr, size_t new_size, const char *caller_file, int caller_line)
{
    void *mem = realloc(ptr, new_size);
    if (mem == NULL)
        ckd_fatal("realloc", new_size, caller_file, caller_line);
    return mem;
}

void ckd_free(void *ptr)
{
    if (ptr)
        free(ptr);
}

void **__ckd_calloc_2d__(int32 d1, int32 d2, int32 elemsize, const char *caller_file, int32 caller_line)
{
    char *mem = __ckd_calloc__((size_t)d1 * d2, elemsize, caller_file, caller_line);
    void **ref = __ckd_malloc__((size_t)d1 * sizeof(void *), caller_file, caller_line);
    for (int32 i = 0, offset = 0; i < d1; i++, offset += d2 * elemsize)
        ref[i] = mem + offset;
    return ref;
}

void ckd_free_2d(void **ptr)
{
    if (ptr)
        ckd_free(ptr[0]);
    ckd_free(ptr);
}

void ***__ckd_calloc_3d__(int32 d1, int32 d2, int32 d3, int32 elemsize, const char *caller_file, int32 caller_line)
{
    char *mem = __ckd_calloc__((size_t)d1 * d2 * d3, elemsize, caller_file, caller_line);
    void **ref1 = __ckd_malloc__((size_t)d1 * d2 * sizeof(void *), caller_file, caller_line);
    void ***ref2 = __ckd_malloc__((size_t)d1 * sizeof(void **), caller_file, caller_line);
    for (int32 i = 0, offset = 0; i < d1; i++, offset += d2)
        ref2[i] = ref1 + offset;
    for (int32 i = 0, offset = 0; i < d1 * d2; i++, offset += d3 * elemsize)
        ref1[i] = mem + offset;
    return ref2;
}

void ckd_free_3d(void ***ptr)
{
    if (ptr && ptr[0])
        ckd_free(ptr[0][0]);
    if (ptr)
        ckd_free(ptr[0]);
    ckd_free(ptr);
}
