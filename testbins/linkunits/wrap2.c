/* libwrap2.a: a second wrapper, in a static archive, built on libwrap.so's. */
#include <stddef.h>

void *wrap_alloc(size_t n);

void *wrap2_array(size_t count, size_t size)
{
    if (size && count > (size_t)-1 / size)
        return NULL;
    return wrap_alloc(count * size);
}
