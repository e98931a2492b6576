/* Drives the pool sub-allocators: a bump arena, arrays and strings inside it, a
 * free-list object pool on top, reset and destroy. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "poolalloc.h"

static unsigned sum = 2166136261u;

static void mix(const void *p, size_t n)
{
    const unsigned char *c = p;
    for (size_t i = 0; i < n; i++)
        sum = (sum ^ c[i]) * 16777619u;
}

struct point { int x, y; };

int main(void)
{
    struct pool *p = pool_new(4096);
    int granted = 0, refused = 0;

    struct point *pts = pool_alloc_array(p, 10, sizeof(struct point));
    for (int i = 0; i < 10; i++) {
        pts[i].x = i;
        pts[i].y = i * i;
    }
    mix(pts, 10 * sizeof(struct point));
    granted++;

    char *names[4];
    static const char *words[4] = { "arena", "bump", "pool", "slab" };
    for (int i = 0; i < 4; i++) {
        names[i] = pool_strdup(p, words[i]);
        mix(names[i], strlen(names[i]));
        granted++;
    }

    for (size_t n = 1; n <= 512; n *= 2) {
        char *b = pool_alloc(p, n);
        if (b == NULL) {
            refused++;
            continue;
        }
        memset(b, (int)n, n);
        mix(b, n);
        granted++;
    }
    if (pool_alloc(p, 1 << 20) == NULL)     /* larger than the arena */
        refused++;
    printf("pool: %d granted, %d refused, %zu bytes used of 4096\n", granted, refused, pool_used(p));

    struct objpool op = { p, 32, NULL };
    void *objs[8];
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < 8; i++) {
            objs[i] = obj_get(&op);
            memset(objs[i], 'a' + i, 32);
            mix(objs[i], 32);
        }
        for (int i = 0; i < 8; i++)
            obj_put(&op, objs[i]);
    }
    printf("pool: objects recycled, %zu bytes used; %s %s %s %s\n", pool_used(p),
           names[0], names[1], names[2], names[3]);

    /* A lookaside region inside the pool; blocks that do not fit come from the heap. */
    size_t measured = 0;
    struct lookaside la = { NULL, NULL, NULL, 64, NULL };
    la.start = pool_alloc(p, 4 * 64);
    la.end = la.start + 4 * 64;
    for (int i = 3; i >= 0; i--)
        la_free(&la, la.start + i * 64);
    void *las[6];
    for (int i = 0; i < 6; i++) {
        las[i] = la_alloc(&la, i < 3 ? 48 : 200);
        memset(las[i], 'k' + i, i < 3 ? 48 : 200);
        mix(las[i], i < 3 ? 48 : 200);
    }
    int in_la = 0;
    for (int i = 0; i < 6; i++)
        in_la += (char *)las[i] >= la.start && (char *)las[i] < la.end;
    la.measured = &measured;
    la_free(&la, las[5]);
    la.measured = NULL;
    for (int i = 0; i < 5; i++)
        la_free(&la, las[i]);
    free(las[5]);
    printf("pool: lookaside %d of 6 in slots, %zu measured\n", in_la, measured);

    void *pages[3];
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < 3; i++) {
            pages[i] = page_alloc(100 + 50 * i);
            memset(pages[i], 'q', 100 + 50 * i);
            mix(pages[i], 100 + 50 * i);
        }
        for (int i = 0; i < 3; i++)
            page_free(pages[i]);
    }
    printf("pool: pages recycled\n");

    char *hd[3];
    for (int i = 0; i < 3; i++) {
        hd[i] = hd_alloc(10 + 10 * (size_t)i, NULL);
        memset(hd[i], 'h', 10 + 10 * (size_t)i);
        mix(hd[i], 10 + 10 * (size_t)i);
    }
    for (int i = 0; i < 3; i++)
        hd_free(hd[i]);
    printf("pool: header blocks freed\n");

    struct downpool dp;
    dp.bottom = pool_alloc(p, 256);
    dp.top = dp.bottom + 256;
    int carved = 0;
    for (size_t n = 24; n <= 96; n += 24) {
        char *c = down_alloc(&dp, n);
        if (c != NULL) {
            memset(c, 'd', n);
            mix(c, n);
            carved++;
        }
    }
    printf("pool: %d carved from the top, %td bytes left\n", carved, dp.top - dp.bottom);
    pool_reset(p);
    printf("pool: after reset %zu bytes used, checksum %08x\n", pool_used(p), sum);
    pool_destroy(p);
    struct entries ents = { NULL, NULL, 0 };
    long esum = 0;
    for (int i = 0; i < 20; i++) {
        struct entry *e = entry_take(&ents);
        e->v = i;
        esum += e->v;
    }
    while (ents.chunks != NULL) {
        struct entry_chunk *n = ents.chunks->next;
        free(ents.chunks);
        ents.chunks = n;
    }
    printf("pool: entries sum %ld\n", esum);
    return 0;
}
