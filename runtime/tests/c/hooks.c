/* Hook-core tests: nesting, failure, longjmp, 8 threads, trampoline cost. */
#define _GNU_SOURCE
#include "tramp.h"
#include <pthread.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CHECK(c) do { if (!(c)) { fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #c); exit(1); } } while (0)

DESC(d_xmalloc, "xmalloc", ALLOCSITE_ALLOC, 0, -1, -1, 1)
DESC(d_ckd_calloc, "ckd_calloc", ALLOCSITE_ALLOC, 1, 0, -1, 2)
DESC(d_ckd_2d, "ckd_calloc_2d", ALLOCSITE_ALLOC, 2, 0, -1, 3)
DESC(d_jumper, "jumper", ALLOCSITE_ALLOC, 0, -1, -1, 1)
DESC(d_xfree, "xfree", ALLOCSITE_FREE, -1, -1, 0, 1)
DESC(d_empty, "empty", ALLOCSITE_ALLOC, 0, -1, -1, 1)

void *xmalloc(size_t n);
void *ckd_calloc(size_t n, size_t sz);
void **ckd_calloc_2d(size_t d1, size_t d2, size_t sz);
void *jumper(size_t n);
void xfree(void *p);
uint64_t empty(uint64_t x);

void *seen_outer_xmalloc, *seen_outer_calloc;
__attribute__((used)) void *xmalloc_body(size_t n) { seen_outer_xmalloc = __outermost_allocsite; return malloc(n); }
__attribute__((used)) void *ckd_calloc_body(size_t n, size_t sz) { seen_outer_calloc = __outermost_allocsite; return calloc(n, sz); }
__attribute__((used)) void **ckd_2d_body(size_t d1, size_t d2, size_t sz) {
    char *data = ckd_calloc(d1 * d2, sz);
    void **rows = xmalloc(d1 * sizeof(void *));
    for (size_t i = 0; i < d1; i++) rows[i] = data + i * d2 * sz;
    return rows;
}
jmp_buf jb;
__attribute__((used)) void *jumper_body(size_t n) { void *p = xmalloc(n); free(p); longjmp(jb, 1); }
__attribute__((used)) void xfree_body(void *p) { free(p); }
__attribute__((used, noinline)) uint64_t empty_body(uint64_t x) { __asm__ volatile(""); return x + 1; }

TRAMP(xmalloc, d_xmalloc, xmalloc_body)
TRAMP(ckd_calloc, d_ckd_calloc, ckd_calloc_body)
TRAMP(ckd_calloc_2d, d_ckd_2d, ckd_2d_body)
TRAMP(jumper, d_jumper, jumper_body)
TRAMP(xfree, d_xfree, xfree_body)
TRAMP(empty, d_empty, empty_body)

static void init_descs(void) {
    DESC_INIT(d_xmalloc); DESC_INIT(d_ckd_calloc); DESC_INIT(d_ckd_2d);
    DESC_INIT(d_jumper); DESC_INIT(d_xfree); DESC_INIT(d_empty);
}

/* The return address of a call made right here (the site a hook would see). */
#define HERE_SITE(call, var) do { __label__ l; call; l: var = &&l; } while (0)

static int test_nest(void) {
    void **m = ckd_calloc_2d(3, 4, 8);
    CHECK(m && m[0]);
    CHECK(seen_outer_calloc != NULL && seen_outer_calloc == seen_outer_xmalloc);
    CHECK(__outermost_allocsite == NULL);
    /* ckd_calloc called directly: it is outermost itself */
    void *q = ckd_calloc(2, 2);
    CHECK(seen_outer_calloc != seen_outer_xmalloc);
    xfree(q);
    xfree(m[0]);
    xfree(m);
    CHECK(__outermost_allocsite == NULL);
    puts("nest ok");
    return 0;
}

static int test_fail(void) {
    void *p = xmalloc((size_t)1 << 62);
    CHECK(p == NULL);
    CHECK(__outermost_allocsite == NULL);
    void *r = xmalloc(16);
    CHECK(r != NULL && __outermost_allocsite == NULL);
    free(r);
    puts("fail ok");
    return 0;
}

static int test_longjmp(void) {
    for (int i = 0; i < 3; i++) {
        if (setjmp(jb) == 0) jumper(32);
        /* the jumper entry is stale here; the next hooked call drops it */
        void *p = xmalloc(8);
        CHECK(seen_outer_xmalloc != NULL);
        CHECK(__outermost_allocsite == NULL);
        free(p);
    }
    puts("longjmp ok");
    return 0;
}

static void *thread_main(void *arg) {
    long k = (long)arg;
    for (int i = 0; i < 200000; i++) {
        if (i % 1000 == 7) {
            CHECK(xmalloc((size_t)1 << 62) == NULL);
        } else if (i % 5000 == 11) {
            if (setjmp(jb) == 0) jumper(16); /* jb is shared: only thread 0 jumps */
        } else {
            void **m = ckd_calloc_2d(2, 2, 4);
            xfree(m[0]);
            xfree(m);
        }
        CHECK(__outermost_allocsite == NULL);
    }
    (void)k;
    return NULL;
}

static __thread jmp_buf tjb;
DESC(d_tjumper, "tjumper", ALLOCSITE_ALLOC, 0, -1, -1, 1)
void *tjumper(size_t n);
__attribute__((used)) void *tjumper_body(size_t n) { void *p = xmalloc(n); free(p); longjmp(tjb, 1); }
TRAMP(tjumper, d_tjumper, tjumper_body)

static void *thread_main2(void *arg) {
    (void)arg;
    for (int i = 0; i < 200000; i++) {
        if (i % 1000 == 7) {
            CHECK(xmalloc((size_t)1 << 62) == NULL);
        } else if (i % 5000 == 11) {
            if (setjmp(tjb) == 0) tjumper(16);
        } else {
            void **m = ckd_calloc_2d(2, 2, 4);
            xfree(m[0]);
            xfree(m);
        }
        CHECK(__outermost_allocsite == NULL || i % 5000 == 11);
    }
    return NULL;
}

static int test_threads(void) {
    DESC_INIT(d_tjumper);
    pthread_t t[8];
    for (long i = 0; i < 8; i++) CHECK(pthread_create(&t[i], NULL, thread_main2, (void *)i) == 0);
    for (int i = 0; i < 8; i++) pthread_join(t[i], NULL);
    printf("threads ok\n");
    return 0;
}

static double now(void) { struct timespec ts; clock_gettime(CLOCK_MONOTONIC, &ts); return ts.tv_sec + ts.tv_nsec * 1e-9; }

static int bench(void) {
    const long N = 50000000;
    uint64_t (*volatile direct)(uint64_t) = empty_body;
    uint64_t (*volatile hooked)(uint64_t) = empty;
    double best_d = 1e9, best_h = 1e9;
    for (int rep = 0; rep < 5; rep++) {
        uint64_t acc = 0;
        double t0 = now();
        for (long i = 0; i < N; i++) acc += direct(i);
        double t1 = now();
        for (long i = 0; i < N; i++) acc += hooked(i);
        double t2 = now();
        if (acc == 42) puts("");
        if ((t1 - t0) < best_d) best_d = t1 - t0;
        if ((t2 - t1) < best_h) best_h = t2 - t1;
    }
    printf("plain call %.2f ns, hooked call %.2f ns, hook cost %.2f ns\n", best_d / N * 1e9, best_h / N * 1e9,
           (best_h - best_d) / N * 1e9);
    return 0;
}

int main(int argc, char **argv) {
    (void)thread_main;
    init_descs();
    const char *m = argc > 1 ? argv[1] : "all";
    if (!strcmp(m, "nest")) return test_nest();
    if (!strcmp(m, "fail")) return test_fail();
    if (!strcmp(m, "longjmp")) return test_longjmp();
    if (!strcmp(m, "threads")) return test_threads();
    if (!strcmp(m, "bench")) return bench();
    test_nest(); test_fail(); test_longjmp(); test_threads();
    return 0;
}
