/* The heaptrack fold's unit-test program (rewriter/tests/oracle.rs, fold_of_tiny_program):
 * a pass-through wrapper called from one site three times, two pass-through levels, a
 * sphinx3-style 2-D allocator with a pass-through and a classified inner call, a strdup
 * helper inlined into main, and stdout's buffer (the C library's own allocation). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

__attribute__((noinline)) void *xmalloc(size_t n)
{
    void *p = malloc(n);
    if (!p)
        abort();
    return p;
}

/* compiles to a tail call at -O2: its frame is gone when malloc runs */
__attribute__((noinline)) void *twice(size_t n)
{
    return xmalloc(n * 2);
}

__attribute__((noinline)) void **grid(size_t rows, size_t size)
{
    char *data = xmalloc(rows * size);
    void **r = xmalloc(rows * sizeof(void *));
    for (size_t i = 0; i < rows; i++)
        r[i] = data + i * size;
    return r;
}

static inline char *dup_name(const char *s)
{
    return strdup(s);
}

static volatile int three = 3; /* a loop bound gcc cannot unroll into three call sites */

/* three allocations from one call site */
__attribute__((noinline)) static void fill(void **keep, int n)
{
    for (int i = 0; i < n; i++)
        keep[i] = xmalloc(100 + i);
}

int main(void)
{
    void *keep[3];
    int n = three;
    fill(keep, n);
    void *t = twice(200);
    void **g = grid(6, 5 * sizeof(float));
    char *name = dup_name("htfold-name");
    printf("%s %d\n", name, (int)((char *)g[1] - (char *)g[0]));
    for (int i = 0; i < n; i++)
        free(keep[i]);
    free(t);
    free(g[0]);
    free(g);
    free(name);
    return 0;
}
