/* A bump/pool sub-allocator over one malloc'd arena (poolalloc.c). */
#ifndef POOLALLOC_H
#define POOLALLOC_H
#include <stddef.h>

struct pool {
    char *base;       /* the arena: just after this header, same malloc block */
    size_t used;
    size_t cap;
    size_t peak;
};

struct pool *pool_new(size_t cap);             /* alloc size=0: one malloc(sizeof(struct pool) + cap) */
void *pool_alloc(struct pool *p, size_t n);    /* suballoc size=1: pointer inside the arena */
void *pool_alloc_array(struct pool *p, size_t count, size_t size);  /* suballoc count=1 size=2 */
char *pool_strdup(struct pool *p, const char *s);
void pool_reset(struct pool *p);
size_t pool_used(const struct pool *p);
void pool_destroy(struct pool *p);             /* free ptr=0 */

/* A fixed-size object pool with a free list, carved from a pool. */
struct objpool {
    struct pool *arena;
    size_t objsize;
    void *free_list;
};
void *obj_get(struct objpool *op);
void obj_put(struct objpool *op, void *obj);

/* A lookaside region in front of the heap (SQLite's db->lookaside): slots of
 * `slot` bytes between start and end, recycled through free_list. */
struct lookaside {
    char *start, *end;
    void *free_list;
    size_t slot;
    size_t *measured;     /* when set, heap blocks are only measured, not freed */
};
void *la_alloc(struct lookaside *la, size_t n);
void la_free(struct lookaside *la, void *p);

/* A page allocator with a global free list of recycled pages (SQLite's pcache1). */
void *page_alloc(size_t n);
void page_free(void *p);

/* pcre2's memctl: every block carries its allocator in a header in front of it. */
struct hd_memctl {
    void *(*malloc)(size_t, void *);
    void (*free)(void *, void *);
    void *data;
};
void *hd_alloc(size_t size, const struct hd_memctl *m);   /* m NULL: malloc */
void hd_free(void *p);                                    /* the header's free(header, data) */

/* A workspace carved from its top down (zstd's cwksp buffers). */
struct downpool { char *bottom, *top; };
void *down_alloc(struct downpool *d, size_t n);          /* suballoc size=1: top -= n */

/* Fixed-size entries handed out of chunks (SQLite's rowSetEntryAlloc). */
struct entry { struct entry *next; long v; };
struct entry_chunk { struct entry_chunk *next; struct entry e[8]; };
struct entries { struct entry_chunk *chunks; struct entry *fresh; int nfresh; };
struct entry *entry_take(struct entries *p);             /* ctor: return p->fresh++ */
#endif
