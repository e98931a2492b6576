/* Allocation hooks saved into and restored from one another, 24 scopes deep:
 * scope k saves cur_alloc in saved_k, installs its own hook, runs scope k+1 and
 * restores cur_alloc from saved_k. Every save and restore is a distinct copy
 * between globals, and together they form 24 cycles through cur_alloc: the
 * shape of bash's and readline's signal-handler and hook juggling, which once
 * made the analysis's copy propagation grow without bound. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "slotalloc.h"

static unsigned sum = 2166136261u;

static void mix(const void *p, size_t n)
{
    const unsigned char *c = p;
    for (size_t i = 0; i < n; i++)
        sum = (sum ^ c[i]) * 16777619u;
}

/* One allocation through the current hook, filled, checksummed and freed. */
static void work(int k)
{
    size_t n = 16 + 8 * (size_t)k;
    unsigned char *p = hook_alloc(n);
    if (!p) {
        fprintf(stderr, "hookslots: allocation failed\n");
        exit(1);
    }
    memset(p, k, n);
    mix(p, n);
    free(p);
}

#define SCOPE(k, next)                                                  \
    alloc_hook saved_##k;                                               \
    void scope_##k(void);                                               \
    void scope_##next(void);                                            \
    void scope_##k(void)                                                \
    {                                                                   \
        saved_##k = cur_alloc;                                          \
        cur_alloc = (k) % 2 ? counting_alloc : plain_alloc;             \
        work(k);                                                        \
        scope_##next();                                                 \
        cur_alloc = saved_##k;                                          \
        work(k);                                                        \
    }

SCOPE(1, 2)
SCOPE(2, 3)
SCOPE(3, 4)
SCOPE(4, 5)
SCOPE(5, 6)
SCOPE(6, 7)
SCOPE(7, 8)
SCOPE(8, 9)
SCOPE(9, 10)
SCOPE(10, 11)
SCOPE(11, 12)
SCOPE(12, 13)
SCOPE(13, 14)
SCOPE(14, 15)
SCOPE(15, 16)
SCOPE(16, 17)
SCOPE(17, 18)
SCOPE(18, 19)
SCOPE(19, 20)
SCOPE(20, 21)
SCOPE(21, 22)
SCOPE(22, 23)
SCOPE(23, 24)

void scope_24(void)
{
    work(24);
}

int main(void)
{
    scope_1();
    work(0);
    printf("hookslots: %ld counted allocations, checksum %08x\n", counted_allocs(), sum);
    return 0;
}
