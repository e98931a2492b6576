/* Allocation functions for the rewriter tests (a separate TU from main, so gcc
 * cannot inline them into their callers). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

__attribute__((noinline)) void *xmalloc(size_t n) {
    void *p = malloc(n);
    if (!p) { fprintf(stderr, "out of memory\n"); exit(2); }
    return p;
}

void *xcalloc(size_t n, size_t m) {
    void *p = calloc(n, m);
    if (!p) abort();
    return p;
}

void xfree(void *p) { free(p); }

/* tail call at -O2: the whole pad is `add; jmp` */
void *wrap_tail(size_t n) { return xmalloc(n + 16); }

/* seven integer arguments: `tag` arrives on the stack */
void *alloc7(int a, int b, int c, int d, int e, size_t n, long tag) {
    char *p = xmalloc(n);
    snprintf(p, n, "%d-%d-%d-%d-%d-%ld", a, b, c, d, e, tag);
    return p;
}

/* floating-point argument and a double computed after the hook ran */
void *scaled_alloc(double scale, size_t n) {
    size_t m = (size_t)(scale * (double)n);
    return xmalloc(m ? m : 1);
}

/* a leaf bump allocator: gcc's -fipa-ra lets same-TU callers keep values in
 * caller-saved registers across calls to it */
static char arena[1 << 20];
static size_t used;
__attribute__((noinline)) void *bump(size_t n) {
    void *p = arena + used;
    used += (n + 15) & ~(size_t)15;
    return p;
}

unsigned long bump_many(unsigned k) {
    unsigned long acc = 0, x = 1, y = 7, z = 13;
    for (unsigned i = 0; i < k; i++) {
        char *p = bump(i + 1);
        *p = (char)i;
        acc += (unsigned long)(p - arena) * x + y * z;
        x = x * 3 + i; y ^= x; z += y;
    }
    return acc;
}
