/* An allocator in a shared library, called from the executable slabuser.
 * Every block carries a 16-byte header holding its rounded size; the caller gets
 * the address just after it (malloc result + 16). The exported functions call
 * each other through the PLT (default visibility, no -Bsymbolic), the way real
 * libraries do: analysis sees `call slab_alloc@plt` inside libslab itself. */
#include <stdlib.h>
#include <string.h>
#include "libslab.h"

struct hdr {
    size_t size;      /* rounded user size */
    size_t magic;
};
#define SLAB_MAGIC 0x51ab51ab51ab51abUL

static unsigned long live;

static size_t round_class(size_t n)
{
    /* size classes: multiples of 16 */
    return (n + 15) & ~(size_t)15;
}

void *slab_alloc(size_t n)
{
    size_t r = round_class(n);
    if (r < n)
        return NULL;                       /* overflow */
    struct hdr *h = malloc(r + sizeof(struct hdr));
    if (h == NULL)
        return NULL;
    h->size = r;
    h->magic = SLAB_MAGIC;
    live++;
    return h + 1;
}

void *slab_calloc(size_t count, size_t size)
{
    if (size != 0 && count > (size_t)-1 / size)
        return NULL;
    void *p = slab_alloc(count * size);
    if (p != NULL)
        memset(p, 0, count * size);
    return p;
}

void *slab_zalloc(size_t n)
{
    return slab_calloc(1, n);
}

void slab_free(void *p)
{
    if (p == NULL)
        return;
    struct hdr *h = (struct hdr *)p - 1;
    if (h->magic != SLAB_MAGIC)
        abort();
    h->magic = 0;
    live--;
    free(h);
}

void *slab_realloc(void *p, size_t n)
{
    if (p == NULL)
        return slab_alloc(n);
    struct hdr *h = (struct hdr *)p - 1;
    if (h->magic != SLAB_MAGIC)
        abort();
    size_t r = round_class(n);
    struct hdr *q = realloc(h, r + sizeof(struct hdr));
    if (q == NULL)
        return NULL;
    q->size = r;
    return q + 1;
}

size_t slab_usable(const void *p)
{
    return ((const struct hdr *)p - 1)->size;
}

unsigned long slab_live(void)
{
    return live;
}
