/* The hook slot and the allocators ever stored in it. hook_alloc calls through
 * the slot, so it is an allocator exactly when every function any code stores
 * there (directly, or by copying another slot into it) is one. */
#include <stdlib.h>
#include "slotalloc.h"

static long counted;

void *plain_alloc(size_t n)
{
    return malloc(n);
}

void *counting_alloc(size_t n)
{
    counted++;
    return malloc(n);
}

long counted_allocs(void)
{
    return counted;
}

alloc_hook cur_alloc = plain_alloc;

void *hook_alloc(size_t n)
{
    return cur_alloc(n);
}
