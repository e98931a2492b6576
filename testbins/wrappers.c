/* Drives the wrappers of xalloc.c and tiny.c from another translation unit.
 *   ./wrappers          normal run: prints a checksum, exits 0
 *   ./wrappers oom      xmalloc's failure path: message on stderr, exit(2)
 *   ./wrappers abort    xcalloc's failure path: message on stderr, abort()
 *   ./wrappers die      die_alloc's failure path: wrappers_fatal, exit(3)
 * Output never depends on addresses, so original and rewritten runs compare. */
#include <stdarg.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "xalloc.h"
#include "tiny.h"
#include "edge.h"

static uint32_t sum = 2166136261u;

static void mix(const void *p, size_t n)
{
    const unsigned char *c = p;
    for (size_t i = 0; i < n; i++)
        sum = (sum ^ c[i]) * 16777619u;
}

static void fill(void *p, size_t n, int seed)
{
    unsigned char *c = p;
    for (size_t i = 0; i < n; i++)
        c[i] = (unsigned char)(seed + i * 7);
}

/* Installed in alloc_reclaim: asks retry_alloc for one more try, then gives up. */
static int reclaims;

static int reclaim_once(size_t n)
{
    (void)n;
    return ++reclaims == 1;
}

/* Passed to xmalloc_cb: reached through a function-pointer parameter. */
static void fill_cb(void *p, size_t n, void *arg)
{
    fill(p, n, (int)(intptr_t)arg);
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "oom") == 0) {
        char *p = xmalloc(SIZE_MAX / 2);   /* malloc fails → fprintf + exit(2) */
        return p != NULL;
    }
    if (argc > 1 && strcmp(argv[1], "die") == 0) {
        char *p = die_alloc(SIZE_MAX / 2);  /* malloc fails → wrappers_fatal → exit(3) */
        return p != NULL;
    }
    if (argc > 1 && strcmp(argv[1], "abort") == 0) {
        char *p = xcalloc(SIZE_MAX / 8, 4); /* calloc fails → fprintf + abort() */
        return p != NULL;
    }

    int calls = 0;
    char *a = xmalloc(100);                  fill(a, 100, 1);   calls++;
    int *b = xcalloc(25, sizeof(int));       mix(b, 25 * sizeof(int)); calls++;
    a = xrealloc(a, 300);                    fill(a + 100, 200, 2); calls++;
    mix(a, 300);
    char *c = buf_alloc(40);                 fill(c, 88, 3); mix(c, 88); calls++;   /* 40*2+8 bytes */
    char *d = mem_alloc(10);                 fill(d, 18, 4); mix(d, 18); calls++;
    char *e = alloc16(3);                    fill(e, 48, 5); mix(e, 48); calls++;
    char *f = plain_malloc(7);               fill(f, 7, 6);  mix(f, 7);  calls++;
    char *g = xmalloc_alias(33);             fill(g, 33, 7); mix(g, 33); calls++;
    char *h = try_malloc(64);                if (h) { fill(h, 64, 8); mix(h, 64); } calls++;
    char *i = try_malloc(SIZE_MAX / 2);      calls++;           /* fails, returns NULL */
    char *j = xmalloc_cb(20, fill_cb, (void *)(intptr_t)9); mix(j, 20); calls++;
    char *k = tiny_alias(12);                fill(k, 12, 10); mix(k, 12); calls++;
    char *l = tiny_new(5);                   fill(l, 5, 11); mix(l, 5); calls++;
    char *m = xmalloc(0);                    calls++;           /* NULL or a unique pointer: both fine */

    /* edge.c: launch-pad edge cases. */
    alloc_reclaim = reclaim_once;
    char *ra = retry_alloc(24);              fill(ra, 24, 12); mix(ra, 24); calls++;
    char *rb = retry_alloc(SIZE_MAX / 2);    calls++;           /* fails, one reclaim, NULL */
    char *pa = pad_alloc(5);                 fill(pa, 16, 13); mix(pa, 16); calls++;   /* 16 bytes */
    char *pc = pad_count_alloc(20);          fill(pc, 32, 14); mix(pc, 32); calls++;   /* 32 bytes */
    char *ta = tracked_alloc(24, "wrappers.c", 42, "main", 1, 1, &sum);
    mix(ta, 24); calls++;
    char *m0 = maybe_alloc(0);               calls++;
    char *m9 = maybe_alloc(9);               fill(m9, 9, 15); mix(m9, 9); calls++;
    char *da = die_alloc(48);                fill(da, 48, 16); mix(da, 48); calls++;
    printf("wrappers: retry_alloc(huge) %s after %d reclaim(s), pad_count steps %lu\n",
           rb ? "succeeded" : "failed", reclaims, pad_steps);
    printf("wrappers: tracked block from %s, owner %s, maybe_alloc(0) %s\n", tracked_func(ta),
           tracked_owner(ta) == &sum ? "kept" : "LOST", m0 ? "allocated" : "NULL");
    xfree(ra); xfree(pa); xfree(pc); xfree(m9); xfree(da); tracked_free(ta);

    /* A realloc chain: grow a buffer 16 times. */
    char *r = NULL;
    for (int n = 1; n <= 16; n++) {
        r = xrealloc(r, (size_t)n * 16);
        fill(r + (n - 1) * 16, 16, n);
        calls++;
    }
    mix(r, 256);

    xfree(a); xfree(b); xfree(c); xfree(d); xfree(e); xfree(f); xfree(g);
    xfree(h); xfree(i); xfree(j); xfree(m); xfree(r); xfree(NULL);
    tiny_release(k); tiny_release(l);
    printf("wrappers: %d allocation calls, try_malloc(huge) %s\n", calls, i ? "succeeded" : "failed");
    printf("wrappers: checksum %08x\n", sum);
    return 0;
}

void wrappers_fatal(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(3);
}
