/* Heap shape for measuring the runtime's metadata bytes per live chunk
 * (testbins/bench/run): N chunks of 1..200 bytes through a classified wrapper, a third
 * of them freed in pseudo-random order, the rest still live when the program exits, so
 * the exit report's totals (meta_bytes / live_chunks) describe a big live heap.
 *
 * usage: metacost [chunks]       prints a checksum (same for original and rewritten)
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

__attribute__((noinline)) void *mc_alloc(size_t n)
{
    void *p = malloc(n);
    if (p == NULL) {
        fprintf(stderr, "metacost: out of memory\n");
        exit(1);
    }
    return p;
}

static uint32_t state = 12345;
static uint32_t rnd(void)
{
    state = state * 1103515245u + 12345u;
    return state >> 8;
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 1000000;
    char **v = malloc(sizeof *v * (size_t)n);
    uint64_t sum = 0;
    long live = n;
    if (v == NULL)
        return 1;
    for (long i = 0; i < n; i++) {
        size_t sz = 1 + rnd() % 200;
        v[i] = mc_alloc(sz);
        memset(v[i], (int)(i & 0xff), sz);
        sum += sz;
    }
    for (long k = 0; k < n / 3; k++) {
        long i = (long)(rnd() % (uint32_t)n);
        if (v[i] != NULL) {
            sum += (unsigned char)v[i][0];
            free(v[i]);
            v[i] = NULL;
            live--;
        }
    }
    printf("chunks=%ld live=%ld checksum=%llu\n", n, live, (unsigned long long)sum);
    return 0;   /* the live chunks stay allocated: the exit report counts them */
}
