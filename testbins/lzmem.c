/* liblzma's lzma_alloc/lzma_free (and pcre2's memctl): the caller may pass an
 * allocator; without one, malloc and free. On the allocator's path the block
 * goes to a function pointer the analysis cannot resolve, so lz_free frees on
 * every path only if handing the block to that pointer counts as releasing it. */
#include <stdlib.h>
#include "fnptr.h"

void *lz_alloc(size_t size, const lz_allocator *a)
{
    if (a != NULL && a->alloc != NULL)
        return a->alloc(a->opaque, 1, size);
    return malloc(size);
}

void lz_free(void *ptr, const lz_allocator *a)
{
    if (a != NULL && a->free != NULL)
        a->free(a->opaque, ptr);
    else
        free(ptr);
}
