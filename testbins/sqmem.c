/* SQLite's pattern (mem1.c / malloc.c): a methods struct with the default
 * implementation, statically initialized, installed by copying the whole struct
 * into the global configuration (sqlite3GlobalConfig.m = *pMethods); every
 * allocation calls through gConfig.m.xMalloc etc. The default keeps the size in
 * an 8-byte prefix, like sqlite3MemMalloc. */
#include <stdlib.h>
#include <stdint.h>
#include "fnptr.h"

#define ROUND8(x) (((x) + 7) & ~7)

static void *memMalloc(int nByte)
{
    int64_t *p;
    nByte = ROUND8(nByte);
    p = malloc(nByte + 8);
    if (p) {
        p[0] = nByte;
        p++;
    }
    return (void *)p;
}

static void memFree(void *pPrior)
{
    int64_t *p = (int64_t *)pPrior;
    p--;
    free(p);
}

static int memSize(void *pPrior)
{
    int64_t *p;
    if (pPrior == 0)
        return 0;
    p = (int64_t *)pPrior;
    p--;
    return (int)p[0];
}

static void *memRealloc(void *pPrior, int nByte)
{
    int64_t *p = (int64_t *)pPrior;
    nByte = ROUND8(nByte);
    p--;
    p = realloc(p, nByte + 8);
    if (p) {
        p[0] = nByte;
        p++;
    }
    return (void *)p;
}

static int memRoundup(int n)
{
    return ROUND8(n);
}

static const mem_methods defaultMethods = {
    memMalloc, memFree, memRealloc, memSize, memRoundup, 0
};

static struct global_config {
    int bMemstat;
    mem_methods m;
    long nAlloc;
} gConfig;

int sq_config(const mem_methods *m)
{
    gConfig.m = *m;
    return 0;
}

void sq_default(void)
{
    sq_config(&defaultMethods);
}

void *sq_malloc(int n)
{
    if (n <= 0)
        return 0;
    void *p = gConfig.m.xMalloc(n);
    if (p)
        gConfig.nAlloc++;
    return p;
}

void sq_free(void *p)
{
    if (p == 0)
        return;
    gConfig.nAlloc--;
    gConfig.m.xFree(p);
}

void *sq_realloc(void *p, int n)
{
    if (p == 0)
        return sq_malloc(n);
    if (n <= 0) {
        sq_free(p);
        return 0;
    }
    return gConfig.m.xRealloc(p, n);
}

int sq_msize(void *p)
{
    return p ? gConfig.m.xSize(p) : 0;
}

/* SQLite's mallocWithAlarm: the size reaches xMalloc only through the rounding
 * hook called through the same methods table, and the block goes out through an
 * out-parameter. At -O0 nothing inlines the rounding: the size role is found only
 * by seeing through the pure helpers the pointer can reach. */
int sq_alarm_malloc(int n, void **pp)
{
    int full = gConfig.m.xRoundup(n);
    *pp = gConfig.m.xMalloc(full);
    return *pp ? 0 : 7;
}

/* Size-ish in, size-ish out: not an allocator. */
int sq_roundup(int n)
{
    return gConfig.m.xRoundup(n);
}
