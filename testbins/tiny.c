/* A short wrapper with NO padding after it: this TU is compiled with
 * -falign-functions=1 (see Makefile), so at -O2 tiny_alias is the 2-byte
 * `jmp rel8` to tiny_new and tiny_release starts at the very next byte. A
 * launch pad cannot use padding here; the rewriter has to patch tiny_alias's
 * call sites (or refuse with a reason). */
#include <stdlib.h>
#include "tiny.h"

__attribute__((noinline)) void *tiny_new(size_t n)
{
    void *p = malloc(n);
    if (p == NULL)
        abort();
    return p;
}

void *tiny_alias(size_t n)
{
    return tiny_new(n);
}

void tiny_release(void *p)
{
    free(p);
}
