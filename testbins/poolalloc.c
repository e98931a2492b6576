/* Sub-allocators: they hand out pointers into one bigger malloc'd block (the
 * arena), so their chunks are not heap chunks of their own. See pool.expect. */
#include <stdlib.h>
#include <string.h>
#include "poolalloc.h"

#define POOL_ALIGN 16

struct pool *pool_new(size_t cap)
{
    struct pool *p = malloc(sizeof(struct pool) + cap);
    if (p == NULL)
        return NULL;
    p->base = (char *)(p + 1);
    p->used = 0;
    p->cap = cap;
    p->peak = 0;
    return p;
}

/* Bump allocation: round up, check, advance p->used, return base + old used. */
void *pool_alloc(struct pool *p, size_t n)
{
    size_t need = (n + POOL_ALIGN - 1) & ~(size_t)(POOL_ALIGN - 1);
    if (need < n || p->cap - p->used < need)
        return NULL;
    void *r = p->base + p->used;
    p->used += need;
    if (p->used > p->peak)
        p->peak = p->used;
    return r;
}

void *pool_alloc_array(struct pool *p, size_t count, size_t size)
{
    if (size != 0 && count > (size_t)-1 / size)
        return NULL;
    return pool_alloc(p, count * size);
}

/* Size comes from strlen(s), not from an argument: a sub-allocator without a
 * size role. */
char *pool_strdup(struct pool *p, const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = pool_alloc(p, n);
    if (d != NULL)
        memcpy(d, s, n);
    return d;
}

void pool_reset(struct pool *p)
{
    p->used = 0;
}

size_t pool_used(const struct pool *p)
{
    return p->used;
}

void pool_destroy(struct pool *p)
{
    free(p);
}

/* Pops the free list, else carves a new object out of the arena. */
void *obj_get(struct objpool *op)
{
    void *o = op->free_list;
    if (o != NULL) {
        op->free_list = *(void **)o;
        return o;
    }
    return pool_alloc(op->arena, op->objsize);
}

/* Pushes onto the free list; the memory stays inside the arena. */
void obj_put(struct objpool *op, void *obj)
{
    *(void **)obj = op->free_list;
    op->free_list = obj;
}

/* A lookaside slot when one is free and the request fits, else the heap. */
void *la_alloc(struct lookaside *la, size_t n)
{
    void *p = la->free_list;
    if (n <= la->slot && p != NULL) {
        la->free_list = *(void **)p;
        return p;
    }
    return malloc(n);
}

__attribute__((noinline)) static void la_measure(struct lookaside *la, void *p)
{
    *la->measured += p != NULL;
}

/* Frees p: a lookaside slot (p inside [start, end)) goes back on the free
 * list, a heap block to free(), unless heap blocks are only being measured. */
void la_free(struct lookaside *la, void *p)
{
    if ((char *)p < la->end && (char *)p >= la->start) {
        *(void **)p = la->free_list;
        la->free_list = p;
        return;
    }
    if (la->measured != NULL) {
        la_measure(la, p);
        return;
    }
    free(p);
}

#define PAGE_SIZE 256
static void *page_free_list;    /* recycled pages, linked through their first word */

/* A recycled page when the request fits one, else the heap. */
void *page_alloc(size_t n)
{
    void *p = NULL;
    if (n <= PAGE_SIZE && page_free_list != NULL) {
        p = page_free_list;
        page_free_list = *(void **)p;
    }
    if (p == NULL)
        p = malloc(n < PAGE_SIZE ? PAGE_SIZE : n);
    return p;
}

/* Every page is recycled; the list is never given back (like pcache1's pool). */
void page_free(void *p)
{
    if (p == NULL)
        return;
    *(void **)p = page_free_list;
    page_free_list = p;
}

static void *hd_default_malloc(size_t n, void *data)
{
    (void)data;
    return malloc(n);
}

static void hd_default_free(void *p, void *data)
{
    (void)data;
    free(p);
}

/* The default allocator, copied into headers (writable: the program may replace it). */
struct hd_memctl hd_default = { hd_default_malloc, hd_default_free, NULL };

/* A block of `size` bytes after a copy of its allocator (pcre2's memctl). */
void *hd_alloc(size_t size, const struct hd_memctl *m)
{
    struct hd_memctl *h = m == NULL ? malloc(sizeof *h + size) : m->malloc(sizeof *h + size, m->data);
    if (h == NULL)
        return NULL;
    *h = m == NULL ? hd_default : *m;
    return h + 1;
}

/* Frees through the header's own allocator: `h = p - 24; h->free(h, h->data)`. */
void hd_free(void *p)
{
    if (p != NULL) {
        struct hd_memctl *h = (struct hd_memctl *)p - 1;
        h->free(h, h->data);
    }
}

/* Carves n bytes off the top: `p = top - n; top = p` (NULL when below bottom). */
void *down_alloc(struct downpool *d, size_t n)
{
    char *p = d->top - n;
    if (p < d->bottom)
        return NULL;
    d->top = p;
    return p;
}

/* Hands out the next entry of the current chunk, mallocing a new chunk when it
 * is used up (SQLite's rowSetEntryAlloc): `p->fresh++` bumps by one entry, a
 * constant. Every piece has the same size, fixed inside: a constructor. */
struct entry *entry_take(struct entries *p)
{
    if (p->nfresh == 0) {
        struct entry_chunk *c = malloc(sizeof *c);
        if (c == NULL)
            return NULL;
        c->next = p->chunks;
        p->chunks = c;
        p->fresh = c->e;
        p->nfresh = 8;
    }
    p->nfresh--;
    return p->fresh++;
}
