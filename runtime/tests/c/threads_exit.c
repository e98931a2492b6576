/* Reports and threads that are still running (runtime/tests/runtime.rs).
 *
 *   threads_exit pending   workers allocate known numbers of chunks, then block (never
 *                          joined) while main writes an on-demand report and calls
 *                          exit(): both reports must count every call and byte, and
 *                          the peaks of single-thread sites exactly.
 *   threads_exit shared    a producer allocates from a site, a consumer frees the
 *                          chunks (and holds one of its own from the same site): the
 *                          shared site's peak must stay within the documented bound.
 *   threads_exit counts    allocations through libc internals plus blocked workers, for
 *                          a cross-check of totals.calls/bytes against valgrind.
 */
#define _GNU_SOURCE
#include "../../include/allocsite.h"
#include <locale.h>
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define NOINLINE __attribute__((noinline))
#define KEEP(p) __asm__ volatile("" : : "r"(p) : "memory")

/* one allocation site each (the call inside is the site) */
NOINLINE void *alloc_worker(size_t n) { void *p = malloc(n); KEEP(p); return p; }
NOINLINE void *alloc_peak(size_t n) { void *p = malloc(n); KEEP(p); return p; }
NOINLINE void *alloc_main(size_t n) { void *p = malloc(n); KEEP(p); return p; }
NOINLINE void *alloc_shared(size_t n) { void *p = malloc(n); KEEP(p); return p; }

static int block_fd[2];     /* never written: workers block reading it */
static int ready_fd[2];

static void block_forever(void)
{
    char c = 1;
    if (write(ready_fd[1], &c, 1) != 1)
        abort();
    for (;;)
        if (read(block_fd[0], &c, 1) >= 0)
            abort();
}

/* worker i allocates counts[i] chunks of 24+i bytes and keeps them */
static const int counts[] = {1500, 700, 10, 3000, 1};
#define NW (int)(sizeof counts / sizeof counts[0])

static void *worker(void *arg)
{
    int i = (int)(long)arg;
    for (int k = 0; k < counts[i]; k++)
        alloc_worker(24 + i);
    if (i == 0) {
        /* a single-thread site with its peak inside the unflushed batch: 200 x 100
         * bytes (below 1024 calls and 64 KiB), 100 freed: peak 20000 */
        void *v[200];
        for (int k = 0; k < 200; k++)
            v[k] = alloc_peak(100);
        for (int k = 0; k < 100; k++)
            free(v[k]);
    }
    block_forever();
    return NULL;
}

static void start_workers(void)
{
    if (pipe(block_fd) || pipe(ready_fd))
        abort();
    for (int i = 0; i < NW; i++) {
        pthread_t t;
        if (pthread_create(&t, NULL, worker, (void *)(long)i))
            abort();
    }
    for (int i = 0; i < NW; i++) {
        char c;
        if (read(ready_fd[0], &c, 1) != 1)
            abort();
    }
}

static int pending(void)
{
    /* main's own single-thread site: 3000 x 100 bytes live at once (flushed batches),
     * all freed, then 500 again: peak 300000 */
    static void *v[3000];
    for (int k = 0; k < 3000; k++)
        v[k] = alloc_main(100);
    for (int k = 0; k < 3000; k++)
        free(v[k]);
    for (int k = 0; k < 500; k++)
        v[k] = alloc_main(100);
    start_workers();
    if (allocsite_write_report("request.json") != 0)
        abort();
    exit(0);
}

/* ---------------------------------------------------------------- shared */

#define ROUNDS 5000
#define BATCH 10
static int to_consumer[2], to_producer[2];

static void *consumer(void *arg)
{
    (void)arg;
    void *mine = alloc_shared(1000); /* gives this thread a batch for the site */
    char c = 1;
    if (write(to_producer[1], &c, 1) != 1)
        abort();
    for (int r = 0; r < ROUNDS; r++) {
        void *v[BATCH];
        if (read(to_consumer[0], v, sizeof v) != sizeof v)
            abort();
        for (int k = 0; k < BATCH; k++)
            free(v[k]);
        if (write(to_producer[1], &c, 1) != 1)
            abort();
    }
    free(mine);
    return NULL;
}

static int shared(void)
{
    if (pipe(to_consumer) || pipe(to_producer))
        abort();
    pthread_t t;
    if (pthread_create(&t, NULL, consumer, NULL))
        abort();
    char c;
    for (int r = 0; r < ROUNDS; r++) {
        if (read(to_producer[0], &c, 1) != 1)
            abort();
        void *v[BATCH];
        for (int k = 0; k < BATCH; k++)
            v[k] = alloc_shared(1000);
        if (write(to_consumer[1], v, sizeof v) != sizeof v)
            abort();
    }
    if (read(to_producer[0], &c, 1) != 1)
        abort();
    pthread_join(t, NULL);
    /* true peak of the site: the consumer's chunk + one batch = 11000 bytes */
    printf("shared_calls=%d shared_peak=%d\n", ROUNDS * BATCH + 1, 1000 + BATCH * 1000);
    return 0;
}

/* ---------------------------------------------------------------- counts */

static int counts_mode(void)
{
    void *p = malloc(10);
    p = realloc(p, 100);
    p = realloc(p, 0); /* glibc frees and returns NULL: no allocation */
    p = realloc(NULL, 20);
    p = reallocarray(p, 4, 10);
    free(p);
    free(NULL);
    free(calloc(3, 7));
    free(strdup("hello"));
    free(strndup("hello", 2));
    if (posix_memalign(&p, 64, 100) == 0)
        free(p);
    free(aligned_alloc(64, 128));
    free(memalign(32, 50));
    free(valloc(10));
    /* libc-internal allocations */
    char *buf;
    size_t sz;
    FILE *m = open_memstream(&buf, &sz);
    for (int i = 0; i < 5000; i++)
        fprintf(m, "line %d\n", i);
    fclose(m);
    FILE *f = fmemopen(buf, sz, "r");
    char *line = NULL;
    size_t cap = 0;
    while (getline(&line, &cap, f) > 0) {
    }
    fclose(f);
    free(line);
    free(buf);
    char *a;
    if (asprintf(&a, "%s-%d", "x", 42) > 0)
        free(a);
    setlocale(LC_ALL, "C.UTF-8");
    start_workers();
    exit(0);
}

int main(int argc, char **argv)
{
    if (argc > 1 && !strcmp(argv[1], "pending"))
        return pending();
    if (argc > 1 && !strcmp(argv[1], "shared"))
        return shared();
    if (argc > 1 && !strcmp(argv[1], "counts"))
        return counts_mode();
    fprintf(stderr, "usage: threads_exit pending|shared|counts\n");
    return 2;
}
