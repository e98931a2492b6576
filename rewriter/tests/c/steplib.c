/* A shared library whose allocation wrapper is static and reached only by direct
 * calls: the rewrite instruments it at its call sites (caller side). */
#include <stdlib.h>
#include <string.h>

static __attribute__((noinline)) void *lib_xmalloc(size_t n)
{
    void *p = malloc(n);
    if (p == NULL)
        abort();
    return p;
}

int lib_sum(int n)
{
    int *v = lib_xmalloc(n * sizeof(int));
    int s = 0;
    for (int i = 0; i < n; i++)
        v[i] = i;
    for (int i = 0; i < n; i++)
        s += v[i];
    free(v);
    return s;
}
