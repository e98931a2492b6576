/* libwrap.so: allocation wrappers exported by a shared library. */
#include <stdlib.h>
#include <string.h>
#include <stdio.h>

void *wrap_alloc(size_t n)
{
    void *p = malloc(n);
    if (!p) {
        fputs("wrap_alloc: out of memory\n", stderr);
        abort();
    }
    return p;
}

char *wrap_strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = wrap_alloc(n);
    memcpy(d, s, n);
    return d;
}

void wrap_free(void *p)
{
    free(p);
}
