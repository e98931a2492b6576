/* Calls the shared-library allocator libslab.<variant>.so (found through
 * DT_RUNPATH $ORIGIN, so it runs from out/). slab_* are imports here: analysing
 * this executable alone cannot classify them (see libslab.expect for the
 * library's own classification). */
#include <stdio.h>
#include <stdint.h>
#include <string.h>
#include "libslab.h"

static uint32_t sum = 2166136261u;

static void mix(const void *p, size_t n)
{
    const unsigned char *c = p;
    for (size_t i = 0; i < n; i++)
        sum = (sum ^ c[i]) * 16777619u;
}

int main(void)
{
    char *v[32];
    for (int i = 0; i < 32; i++) {
        size_t n = 8 + (size_t)i * 5;
        v[i] = (i % 3 == 0) ? slab_alloc(n) : (i % 3 == 1) ? slab_calloc(n, 2) : slab_zalloc(n);
        memset(v[i], 'a' + i % 26, n);
        mix(v[i], n);
    }
    for (int i = 0; i < 32; i += 2) {
        v[i] = slab_realloc(v[i], 200);
        memset(v[i], 'A' + i % 26, 200);
        mix(v[i], 200);
    }
    unsigned long usable = 0;
    for (int i = 0; i < 32; i++)
        usable += slab_usable(v[i]);
    printf("slabuser: live %lu usable %lu\n", slab_live(), usable);
    for (int i = 0; i < 32; i++)
        slab_free(v[i]);
    printf("slabuser: live %lu checksum %08x\n", slab_live(), sum);
    return 0;
}
