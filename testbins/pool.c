/* Drives the pool sub-allocators: a bump arena, arrays and strings inside it, a
 * free-list object pool on top, reset and destroy. */
#include <stdio.h>
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
    pool_reset(p);
    printf("pool: after reset %zu bytes used, checksum %08x\n", pool_used(p), sum);
    pool_destroy(p);
    return 0;
}
