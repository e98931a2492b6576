/* A library a system program loads at run time (python3's ctypes, in tests/trace.rs):
 * its allocation and free functions are learned although the program that loads it
 * is the system's, whose processes are otherwise not stopped at their allocators. */
#include <stdlib.h>

__attribute__((noinline)) void *mk(size_t n)
{
    void *p = malloc(n);
    if (!p)
        abort();
    return p;
}

static int freed;

/* (Not `jmp free`: free's return address must be in this library, not in libffi.) */
__attribute__((noinline)) int rel(void *p)
{
    free(p);
    return ++freed;
}
