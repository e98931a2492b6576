/* zlib's pattern (zutil.c / inflate.c): the stream carries zalloc/zfree/opaque;
 * init installs the defaults zcalloc/zcfree with plain stores when the user left
 * them NULL; all internal allocation goes through the ZALLOC/ZFREE macros. */
#include <stdlib.h>
#include <string.h>
#include "fnptr.h"

#define Z_OK 0
#define Z_MEM_ERROR (-4)
#define ZALLOC(strm, items, size) (*((strm)->zalloc))((strm)->opaque, (items), (size))
#define ZFREE(strm, addr) (*((strm)->zfree))((strm)->opaque, (void *)(addr))

struct zs_state {
    unsigned wbits;
    unsigned char *window;
    unsigned long adler;
};

/* zlib's own: `unsigned` items and size, multiplied in 32 bits. */
void *zcalloc(void *opaque, unsigned items, unsigned size)
{
    (void)opaque;
    return malloc(items * size);
}

void zcfree(void *opaque, void *ptr)
{
    (void)opaque;
    free(ptr);
}

/* Keeps the pointer (strm->state) and returns an int status: not an allocator. */
int zs_init(z_stream *strm)
{
    if (strm->zalloc == NULL) {
        strm->zalloc = zcalloc;
        strm->opaque = NULL;
    }
    if (strm->zfree == NULL)
        strm->zfree = zcfree;
    struct zs_state *s = ZALLOC(strm, 1, sizeof(struct zs_state));
    if (s == NULL)
        return Z_MEM_ERROR;
    s->wbits = 0;
    s->window = NULL;
    s->adler = 1;
    strm->state = s;
    strm->total = 0;
    return Z_OK;
}

/* Also keeps the pointer (in the state): not an allocator. */
int zs_window(z_stream *strm, unsigned bits)
{
    struct zs_state *s = strm->state;
    s->window = ZALLOC(strm, 1U << bits, sizeof(unsigned char));
    if (s->window == NULL)
        return Z_MEM_ERROR;
    s->wbits = bits;
    memset(s->window, 0, 1U << bits);
    return Z_OK;
}

/* An exported ZALLOC: allocator through the zalloc member. */
void *zs_alloc(z_stream *strm, unsigned items, unsigned size)
{
    return ZALLOC(strm, items, size);
}

void zs_free(z_stream *strm, void *p)
{
    ZFREE(strm, p);
}

unsigned long zs_feed(z_stream *strm, const unsigned char *in, unsigned n)
{
    struct zs_state *s = strm->state;
    unsigned mask = (1U << s->wbits) - 1;
    for (unsigned i = 0; i < n; i++) {
        s->window[(strm->total + i) & mask] = in[i];
        s->adler = (s->adler * 31 + in[i]) % 65521;
    }
    strm->total += n;
    return s->adler;
}

/* Frees memory reached through strm, not strm itself: not a free function. */
int zs_end(z_stream *strm)
{
    if (strm->state == NULL)
        return Z_OK;
    if (strm->state->window != NULL)
        ZFREE(strm, strm->state->window);
    ZFREE(strm, strm->state);
    strm->state = NULL;
    return Z_OK;
}
