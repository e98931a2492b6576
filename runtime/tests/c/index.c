/* Heap-index tests against liballocsite_rt.so (linked directly, as a rewritten
 * program would load it). Each mode checks the runtime's numbers against what the
 * program really did; exit status 0 = pass. */
#define _GNU_SOURCE
#include "tramp.h"
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#define CHECK(c) do { if (!(c)) { fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #c); exit(1); } } while (0)
#define NOINLINE __attribute__((noinline))

static allocsite_totals_t T(void) { allocsite_totals_t t; allocsite_get_totals(&t); return t; }

static int sym_starts(const void *addr, const char *prefix) {
    char buf[512];
    allocsite_symbolize(addr, buf, sizeof buf);
    if (strncmp(buf, prefix, strlen(prefix)) != 0) {
        fprintf(stderr, "symbol %s does not start with %s\n", buf, prefix);
        return 0;
    }
    return 1;
}

/* ------------------------------------------------------------ basic + interior */
static void check_chunk(void *p, size_t n, const char *alloc) {
    allocsite_chunk_t c;
    CHECK(allocsite_lookup(p, &c) == 1);
    CHECK(c.base == p && c.size == n);
    CHECK(strcmp(c.allocator, alloc) == 0);
    if (n > 1) {
        CHECK(allocsite_lookup((char *)p + n / 2, &c) == 1 && c.base == p);
        CHECK(allocsite_lookup((char *)p + n - 1, &c) == 1 && c.base == p);
    }
}

NOINLINE static int basic(void) {
    size_t sizes[] = {0, 1, 16, 24, 100, 1000, 1024, 1025, 4000, 5000, 65536, 70000, 200000, 3 << 20};
    enum { K = sizeof sizes / sizeof sizes[0] };
    void *p[K];
    allocsite_totals_t t0 = T();
    size_t bytes = 0;
    for (int i = 0; i < K; i++) { p[i] = malloc(sizes[i]); bytes += sizes[i]; }
    allocsite_totals_t t1 = T();
    CHECK(t1.calls - t0.calls == K && t1.bytes - t0.bytes == bytes);
    CHECK(t1.live_chunks - t0.live_chunks == K && t1.live_bytes - t0.live_bytes == bytes);
    for (int i = 0; i < K; i++) check_chunk(p[i], sizes[i], "malloc");
    allocsite_chunk_t c;
    CHECK(allocsite_lookup(p[0], &c) == 1 && sym_starts(c.site, "basic+") && c.site == c.outermost);
    CHECK(allocsite_lookup((char *)p[13] + (3 << 20), &c) == 0 || c.base != p[13]);
    int x; CHECK(allocsite_lookup(&x, &c) == 0);
    for (int i = 0; i < K; i++) free(p[i]);
    allocsite_totals_t t2 = T();
    CHECK(t2.live_chunks == t0.live_chunks && t2.live_bytes == t0.live_bytes);
    for (int i = 1; i < K; i++) CHECK(allocsite_lookup(p[i], &c) == 0 || c.base != p[i] || c.size != sizes[i]);

    /* every allocator */
    void *q;
    q = calloc(10, 12); check_chunk(q, 120, "calloc"); free(q);
    q = strdup("hello"); check_chunk(q, 6, "strdup"); free(q);
    q = strndup("hello world", 5); check_chunk(q, 6, "strndup"); CHECK(strcmp(q, "hello") == 0); free(q);
    CHECK(posix_memalign(&q, 64, 100) == 0); CHECK(((uintptr_t)q & 63) == 0); check_chunk(q, 100, "posix_memalign"); free(q);
    CHECK(posix_memalign(&q, 3, 100) == EINVAL);
    q = aligned_alloc(256, 512); CHECK(((uintptr_t)q & 255) == 0); check_chunk(q, 512, "aligned_alloc"); free(q);
    q = memalign(4096, 10); check_chunk(q, 10, "memalign"); free(q);
    q = valloc(100); check_chunk(q, 100, "valloc"); free(q);
    q = reallocarray(NULL, 10, 10); check_chunk(q, 100, "reallocarray");
    CHECK(reallocarray(q, (size_t)1 << 40, (size_t)1 << 40) == NULL && errno == ENOMEM);
    check_chunk(q, 100, "reallocarray"); free(q);
    CHECK(malloc_usable_size(NULL) == 0);
    q = malloc(100); CHECK(malloc_usable_size(q) >= 100); free(q);
    free(NULL);

    /* realloc chain: grows through all levels, then shrinks */
    allocsite_totals_t r0 = T();
    char *r = NULL;
    size_t n = 1;
    int steps = 0;
    for (; n <= (8 << 20); n = n * 3 + 7, steps++) {
        r = realloc(r, n);
        r[n - 1] = 1;
        check_chunk(r, n, "realloc");
    }
    size_t last = 0;
    for (; n > 8; n /= 5, steps++) { r = realloc(r, n); check_chunk(r, n, "realloc"); last = n; }
    n = last;
    allocsite_totals_t r1 = T();
    CHECK(r1.calls - r0.calls == (uint64_t)steps);
    CHECK(r1.live_chunks - r0.live_chunks == 1);
    CHECK(r1.live_bytes - r0.live_bytes == n);
    CHECK(realloc(r, (size_t)1 << 62) == NULL); /* failed: r keeps its entry */
    check_chunk(r, n, "realloc");
    CHECK(realloc(r, 0) == NULL);
    allocsite_totals_t r2 = T();
    CHECK(r2.live_chunks == r0.live_chunks && r2.live_bytes == r0.live_bytes);

    /* failed allocation leaves nothing */
    allocsite_totals_t f0 = T();
    CHECK(malloc((size_t)1 << 62) == NULL);
    CHECK(calloc((size_t)1 << 40, (size_t)1 << 40) == NULL);
    allocsite_totals_t f1 = T();
    CHECK(f1.calls == f0.calls && f1.live_chunks == f0.live_chunks);
    puts("basic ok");
    return 0;
}

/* ------------------------------------------------------------ wrappers (hooked) */
DESC(d_xmalloc, "xmalloc", ALLOCSITE_ALLOC, 0, -1, -1, 1)
DESC(d_ckd_calloc, "__ckd_calloc__", ALLOCSITE_ALLOC, 1, 0, -1, 2)
DESC(d_ckd_2d, "__ckd_calloc_2d__", ALLOCSITE_ALLOC, 2, 0, -1, 3)
DESC(d_xfree, "xfree", ALLOCSITE_FREE, -1, -1, 0, 1)
DESC(d_xrealloc, "xrealloc", ALLOCSITE_REALLOC, 1, -1, 0, 2)
void *xmalloc(size_t n);
void *ckd_calloc(size_t n, size_t sz);
void **ckd_calloc_2d(size_t d1, size_t d2, size_t sz);
void xfree(void *p);
void *xrealloc(void *p, size_t n);
__attribute__((used)) void *xmalloc_body(size_t n) { return malloc(n); }
__attribute__((used)) void *ckd_calloc_body(size_t n, size_t sz) { return calloc(n, sz); }
__attribute__((used)) void **ckd_2d_body(size_t d1, size_t d2, size_t sz) {
    char *data = ckd_calloc(d1 * d2, sz);
    void **rows = xmalloc(d1 * sizeof(void *));
    for (size_t i = 0; i < d1; i++) rows[i] = data + i * d2 * sz;
    return rows;
}
__attribute__((used)) void xfree_body(void *p) { free(p); }
__attribute__((used)) void *xrealloc_body(void *p, size_t n) { return realloc(p, n); }
TRAMP(xmalloc, d_xmalloc, xmalloc_body)
TRAMP(ckd_calloc, d_ckd_calloc, ckd_calloc_body)
TRAMP(ckd_calloc_2d, d_ckd_2d, ckd_2d_body)
TRAMP(xfree, d_xfree, xfree_body)
TRAMP(xrealloc, d_xrealloc, xrealloc_body)

NOINLINE static int sphinx_caller(void) {
    void **m = ckd_calloc_2d(4, 5, 8);
    allocsite_chunk_t c;
    CHECK(allocsite_lookup(m[0], &c) == 1);
    CHECK(c.size == 160 && strcmp(c.allocator, "__ckd_calloc__") == 0);
    CHECK(sym_starts(c.site, "ckd_2d_body+"));
    CHECK(sym_starts(c.outermost, "sphinx_caller"));
    CHECK(allocsite_lookup((char *)m[3] + 7, &c) == 1 && c.base == m[0]);
    CHECK(allocsite_lookup(m, &c) == 1);
    CHECK(c.size == 32 && strcmp(c.allocator, "xmalloc") == 0);
    CHECK(sym_starts(c.site, "ckd_2d_body+") && sym_starts(c.outermost, "sphinx_caller"));
    allocsite_totals_t t0 = T();
    xfree(m[0]);
    xfree(m);
    allocsite_totals_t t1 = T();
    CHECK(t0.live_chunks - t1.live_chunks == 2 && t0.live_bytes - t1.live_bytes == 192);
    return 0;
}

NOINLINE static int wrappers(void) {
    sphinx_caller();
    void *p = xmalloc(77);
    allocsite_chunk_t c;
    CHECK(allocsite_lookup(p, &c) == 1 && sym_starts(c.site, "wrappers+") && c.site == c.outermost);
    p = xrealloc(p, 5000);
    CHECK(allocsite_lookup(p, &c) == 1 && c.size == 5000 && strcmp(c.allocator, "xrealloc") == 0);
    CHECK(sym_starts(c.site, "wrappers+"));
    allocsite_totals_t t0 = T();
    CHECK(xmalloc((size_t)1 << 62) == NULL);
    allocsite_totals_t t1 = T();
    CHECK(t0.calls == t1.calls && t0.live_chunks == t1.live_chunks && __outermost_allocsite == NULL);
    xfree(p);
    /* leak on purpose: 3 chunks of 1000 bytes from this site, checked in the report */
    for (int i = 0; i < 3; i++) CHECK(xmalloc(1000) != NULL);
    puts("wrappers ok");
    return 0;
}

/* ------------------------------------------------------------ threads */
static void *stress(void *arg) {
    unsigned s = (unsigned)(uintptr_t)arg * 2654435761u;
    void *keep[64] = {0};
    for (int i = 0; i < 200000; i++) {
        s = s * 1103515245 + 12345;
        int k = (s >> 8) & 63;
        size_t n = (s >> 16) % ((s & 1) ? 64 : 3000) + 1;
        if (keep[k]) {
            allocsite_chunk_t c;
            CHECK(allocsite_lookup(keep[k], &c) == 1 && c.base == keep[k]);
            free(keep[k]);
        }
        keep[k] = (i % 3 == 0) ? xmalloc(n) : malloc(n);
        if (i % 997 == 0) { void **m = ckd_calloc_2d(2, 3, 4); xfree(m[0]); xfree(m); }
    }
    int live = 0;
    for (int k = 0; k < 64; k++) if (keep[k]) live++;
    /* keep 10 per thread, free the rest */
    for (int k = 10; k < 64; k++) { free(keep[k]); keep[k] = 0; }
    (void)live;
    return NULL;
}

NOINLINE static int threads(void) {
    allocsite_totals_t t0 = T();
    pthread_t t[8];
    for (long i = 0; i < 8; i++) CHECK(pthread_create(&t[i], NULL, stress, (void *)(i + 1)) == 0);
    for (int i = 0; i < 8; i++) pthread_join(t[i], NULL);
    allocsite_totals_t t1 = T();
    /* 8 threads x 10 kept chunks (pthread stacks/TLS may add a few) */
    long d = (long)(t1.live_chunks - t0.live_chunks);
    printf("threads live delta %ld calls %lu\n", d, (unsigned long)(t1.calls - t0.calls));
    CHECK(d >= 80 && d <= 90);
    CHECK(t1.calls - t0.calls >= 8 * 200000);
    size_t visited = allocsite_for_each_chunk(NULL, NULL);
    (void)visited;
    puts("threads ok");
    return 0;
}

/* ------------------------------------------------------------ iteration */
static int count_cb(const allocsite_chunk_t *c, void *arg) {
    (void)c;
    ++*(size_t *)arg;
    void *p = malloc(8); /* allowed: the callback may allocate */
    free(p);
    return 0;
}
NOINLINE static int iterate(void) {
    void *p[100];
    for (int i = 0; i < 100; i++) p[i] = malloc(i * 40);
    size_t n = 0;
    size_t v = allocsite_for_each_chunk(count_cb, &n);
    allocsite_totals_t t = T();
    CHECK(v == n && n == t.live_chunks);
    for (int i = 0; i < 100; i++) free(p[i]);
    puts("iterate ok");
    return 0;
}

/* ------------------------------------------------------------ fork */
static void *volatile child_keep[5];
NOINLINE static void child_allocs(void) { for (int i = 0; i < 5; i++) child_keep[i] = malloc(300); }
NOINLINE static int forking(void) {
    void *a = malloc(123);
    fflush(stdout);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        allocsite_chunk_t c;
        if (allocsite_lookup(a, &c) != 1 || c.size != 123) _exit(3);
        child_allocs();
        free(a);
        exit(0); /* the child writes its own report (ALLOCSITE_REPORT with %p) */
    }
    int st;
    CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    allocsite_chunk_t c;
    CHECK(allocsite_lookup(a, &c) == 1 && c.size == 123);
    printf("fork ok child=%d\n", (int)pid);
    return 0;
}

/* fork while other threads allocate */
static volatile int stop_flag;
static void *churn(void *arg) {
    (void)arg;
    while (!stop_flag) { void *p = malloc(64); free(p); }
    return NULL;
}
NOINLINE static int fork_threads(void) {
    pthread_t t[2];
    for (int i = 0; i < 2; i++) pthread_create(&t[i], NULL, churn, NULL);
    for (int k = 0; k < 50; k++) {
        pid_t pid = fork();
        if (pid == 0) {
            for (int i = 0; i < 1000; i++) { void *p = malloc(i); free(p); }
            _exit(0);
        }
        int st;
        CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    }
    stop_flag = 1;
    for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
    puts("fork_threads ok");
    return 0;
}

/* ------------------------------------------------------------ metadata cap */
NOINLINE static int cap(void) {
    enum { N = 200000 };
    static void *p[N];
    for (int i = 0; i < N; i++) p[i] = malloc(16 + (i % 5) * 8);
    allocsite_totals_t t = T();
    printf("cap calls=%lu live=%lu dropped=%lu meta=%lu\n", (unsigned long)t.calls, (unsigned long)t.live_chunks,
           (unsigned long)t.dropped, (unsigned long)t.meta_bytes);
    CHECK(t.dropped > 0 && t.live_chunks < N);
    CHECK(t.live_chunks + t.dropped >= N);
    int found = 0;
    for (int i = 0; i < N; i++) found += allocsite_lookup(p[i], NULL);
    CHECK((uint64_t)found <= t.live_chunks + 10);
    for (int i = 0; i < N; i++) free(p[i]);
    allocsite_totals_t t2 = T();
    CHECK(t2.live_chunks < 10);
    puts("cap ok");
    return 0;
}

/* ------------------------------------------------------------ signals */
static volatile unsigned long handler_allocs;
static void on_prof(int sig) {
    (void)sig;
    void *p = malloc(48);
    allocsite_chunk_t c = {0};
    if (p) allocsite_lookup(p, &c);
    free(p);
    handler_allocs++;
}
NOINLINE static int signals(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_prof;
    sa.sa_flags = SA_RESTART;
    sigaction(SIGPROF, &sa, NULL);
    struct itimerval it = {{0, 20}, {0, 20}};
    setitimer(ITIMER_PROF, &it, NULL);
    allocsite_totals_t t0 = T();
    for (int i = 0; i < 3000000; i++) {
        void *p = malloc(i % 2000);
        void *q = realloc(p, i % 3000 + 1);
        free(q);
    }
    struct itimerval off = {{0, 0}, {0, 0}};
    setitimer(ITIMER_PROF, &off, NULL);
    allocsite_totals_t t1 = T();
    printf("signals ok handler_allocs=%lu live_delta=%ld\n", handler_allocs, (long)(t1.live_chunks - t0.live_chunks));
    CHECK(handler_allocs > 0);
    CHECK((long)(t1.live_chunks - t0.live_chunks) <= 2 && (long)(t1.live_chunks - t0.live_chunks) >= -2);
    return 0;
}

/* ------------------------------------------------------------ suballocator */
struct pool { char *base, *next, *end; };
DESC(d_pool_new, "pool_new", ALLOCSITE_ALLOC, 0, -1, -1, 1)
DESC(d_pool_alloc, "pool_alloc", ALLOCSITE_SUBALLOC, 1, -1, -1, 2)
DESC(d_pool_calloc, "pool_calloc", ALLOCSITE_SUBALLOC, 2, 1, -1, 3)
DESC(d_pool_put, "pool_put", ALLOCSITE_FREE, -1, -1, 1, 2)
DESC(d_pool_destroy, "pool_destroy", ALLOCSITE_FREE, -1, -1, 0, 1)
struct pool *pool_new(size_t cap);
void *pool_alloc(struct pool *p, size_t n);
void *pool_calloc(struct pool *p, size_t k, size_t n);
void pool_put(struct pool *p, void *x);
void pool_destroy(struct pool *p);
__attribute__((used)) struct pool *pool_new_body(size_t cap) {
    struct pool *p = malloc(sizeof *p + cap);
    p->base = p->next = (char *)(p + 1);
    p->end = p->base + cap;
    return p;
}
__attribute__((used)) void *pool_alloc_body(struct pool *p, size_t n) {
    n = (n + 7) & ~(size_t)7;
    if (p->next + n > p->end) return NULL;
    void *r = p->next;
    p->next += n;
    return r;
}
__attribute__((used)) void *pool_calloc_body(struct pool *p, size_t k, size_t n) {
    void *r = pool_alloc_body(p, k * n);
    if (r) memset(r, 0, k * n);
    return r;
}
__attribute__((used)) void pool_put_body(struct pool *p, void *x) { (void)p; (void)x; }
__attribute__((used)) void pool_destroy_body(struct pool *p) { free(p); }
TRAMP(pool_new, d_pool_new, pool_new_body)
TRAMP(pool_alloc, d_pool_alloc, pool_alloc_body)
TRAMP(pool_calloc, d_pool_calloc, pool_calloc_body)
TRAMP(pool_put, d_pool_put, pool_put_body)
TRAMP(pool_destroy, d_pool_destroy, pool_destroy_body)

NOINLINE static int suballoc(void) {
    DESC_INIT(d_pool_new); DESC_INIT(d_pool_alloc); DESC_INIT(d_pool_calloc); DESC_INIT(d_pool_put); DESC_INIT(d_pool_destroy);
    allocsite_totals_t t0 = T();
    struct pool *p = pool_new(100000);
    char *a[100];
    for (int i = 0; i < 100; i++) a[i] = pool_alloc(p, 24 + i);
    char *z = pool_calloc(p, 10, 30);
    allocsite_chunk_t c;
    CHECK(allocsite_lookup(a[7] + 5, &c) == 1 && c.base == a[7] && c.size == 31);
    CHECK(strcmp(c.allocator, "pool_alloc") == 0 && sym_starts(c.site, "suballoc"));
    CHECK(allocsite_lookup(z + 299, &c) == 1 && c.base == z && c.size == 300 && strcmp(c.allocator, "pool_calloc") == 0);
    /* past the pieces: the pool's own chunk */
    CHECK(allocsite_lookup(p->next + 1000, &c) == 1 && c.base == p && strcmp(c.allocator, "pool_new") == 0);
    pool_put(p, a[3]);
    CHECK(allocsite_lookup(a[3], &c) == 1 && c.base == p); /* piece gone, pool chunk remains */
    allocsite_totals_t t1 = T();
    CHECK(t1.calls - t0.calls == 1 && t1.live_chunks - t0.live_chunks == 1); /* heap totals: the pool only */
    pool_destroy(p);
    CHECK(allocsite_lookup(a[50], &c) == 0 || c.base != a[50]);
    /* a second pool keeps 5 pieces live until exit */
    struct pool *q = pool_new(1000);
    for (int i = 0; i < 5; i++) CHECK(pool_alloc(q, 40) != NULL);
    puts("suballoc ok");
    return 0;
}

/* ------------------------------------------------------------ trailers */
/* The runtime keeps each chunk's site in its last 8 usable bytes when glibc's size
 * class leaves them spare, else out of band: the program must be able to use every
 * byte malloc_usable_size promises, chunks the runtime never saw must pass through,
 * and a small overflow that hits a trailer must be counted, not crash. Run once single-threaded and once after a thread existed
 * (readers then go through process_vm_readv). */
extern void *__libc_malloc(size_t);
static void *thread_noop(void *a) { return a; }
/* spans: the runtime serves small requests from its own spans in this round (one
 * thread, ALLOCSITE_HEAP not glibc): objects of 16-byte classes, no trailer */
NOINLINE static void trailer_round(int spans) {
    allocsite_totals_t t0 = T();
    for (size_t n = 0; n < 600; n += (n < 80 ? 1 : 13)) {
        char *p = malloc(n);
        size_t u = malloc_usable_size(p);
        CHECK(u >= n);
        memset(p, 0xA5, u);
        check_chunk(p, n, "malloc");
        char *q = calloc(1, n);
        for (size_t i = 0; i < n; i++) CHECK(q[i] == 0);
        memset(q, 0x5A, malloc_usable_size(q));
        check_chunk(q, n, "calloc");
        void *a = memalign(64, n + 1);
        CHECK(((uintptr_t)a & 63) == 0);
        memset(a, 1, malloc_usable_size(a));
        check_chunk(a, n + 1, "memalign");
        p = realloc(p, n + 40);
        memset(p, 2, malloc_usable_size(p));
        check_chunk(p, n + 40, "realloc");
        p = realloc(p, n / 2 + 1); /* shrinks in place */
        memset(p, 3, malloc_usable_size(p));
        check_chunk(p, n / 2 + 1, "realloc");
        free(p); free(q); free(a);
    }
    allocsite_totals_t t1 = T();
    CHECK(t1.live_chunks == t0.live_chunks && t1.live_bytes == t0.live_bytes);
    /* realloc to 0 is still a free */
    char *z = malloc(50);
    CHECK(realloc(z, 0) == NULL);
    CHECK(T().live_chunks == t0.live_chunks);
    /* a chunk the runtime never saw: unknown, its full usable size, freed harmlessly */
    char *raw = __libc_malloc(40);
    allocsite_chunk_t c;
    CHECK(allocsite_lookup(raw, &c) == 0);
    CHECK(malloc_usable_size(raw) >= 40);
    memset(raw, 7, malloc_usable_size(raw));
    __asm__ volatile("" : : "r"(raw) : "memory");
    free(raw);
    CHECK(T().live_chunks == t0.live_chunks);
    /* an 8-byte overflow past malloc_usable_size lands in the trailer: counted (a
     * 32-byte request gets glibc's 40-byte chunk, with room for one) */
    char *o = malloc(32);
    CHECK(malloc_usable_size(o) == 32);
    /* indexing keeps requests in their glibc size class (24 bytes: a 32-byte chunk; a
     * span object of 32 bytes) */
    char *s24 = malloc(24);
    CHECK(malloc_usable_size(s24) == (spans ? 32 : 24) && allocsite_lookup(s24 + 23, &c) == 1 && c.base == s24 && c.size == 24);
    CHECK(allocsite_lookup(s24 + 24, &c) == 0 || c.base != s24);
    free(s24);
    if (!spans) {
        /* (a span object has no trailer: the overflow would hit its neighbour) */
        memset(o, 0xFF, malloc_usable_size(o) + 8);
        __asm__ volatile("" : : "r"(o) : "memory"); /* (not a dead store before free) */
    }
    free(o);
    /* iteration and lookups of many neighbours */
    enum { K = 2000 };
    static char *v[K];
    for (int i = 0; i < K; i++) v[i] = malloc(i % 300);
    size_t n = 0;
    allocsite_for_each_chunk(count_cb, &n);
    CHECK(n == T().live_chunks);
    for (int i = 0; i < K; i++) {
        size_t m = i % 300;
        CHECK(allocsite_lookup(v[i] + (m ? m - 1 : 0), &c) == 1 && c.base == v[i] && c.size == m);
    }
    for (int i = 0; i < K; i++) free(v[i]);
}
NOINLINE static int trailer(void) {
    const char *heap = getenv("ALLOCSITE_HEAP");
    trailer_round(!heap || strcmp(heap, "glibc") != 0);
    pthread_t th;
    CHECK(pthread_create(&th, NULL, thread_noop, NULL) == 0);
    pthread_join(th, NULL);
    trailer_round(0);
    puts("trailer ok");
    return 0;
}

/* ------------------------------------------------------------ model check */
/* Random malloc/realloc/free against a shadow table: every live chunk must be found
 * from any interior pointer with its exact base and size; counts must agree. */
NOINLINE static int model(void) {
    enum { N = 4096 };
    static char *p[N];
    static size_t sz[N];
    unsigned s = 12345;
    allocsite_totals_t t0 = T();
    long live = 0;
    for (int step = 0; step < 400000; step++) {
        s = s * 1103515245 + 12345;
        int k = (s >> 8) % N;
        unsigned r = s >> 20;
        size_t n = (r & 3) == 0 ? (r % 70000) : (r & 3) == 1 ? (r % 3000) : (r % 300);
        if (!p[k]) {
            p[k] = malloc(n); sz[k] = n; live++;
        } else if (r & 16) {
            p[k] = realloc(p[k], n + 1); sz[k] = n + 1;
        } else {
            free(p[k]); p[k] = NULL; live--;
        }
        if (step % 97 == 0) {
            for (int j = 0; j < 64; j++) {
                int q = (k + j * 61) % N;
                if (!p[q]) continue;
                allocsite_chunk_t c;
                size_t off = sz[q] ? (s >> 3) % sz[q] : 0;
                CHECK(allocsite_lookup(p[q] + off, &c) == 1);
                CHECK(c.base == p[q] && c.size == sz[q]);
            }
        }
    }
    allocsite_totals_t t1 = T();
    CHECK((long)(t1.live_chunks - t0.live_chunks) == live);
    size_t visited = allocsite_for_each_chunk(NULL, NULL);
    (void)visited;
    size_t n = 0;
    allocsite_for_each_chunk(count_cb, &n);
    CHECK(n == t1.live_chunks);
    for (int k = 0; k < N; k++) free(p[k]);
    allocsite_totals_t t2 = T();
    CHECK(t2.live_chunks == t0.live_chunks && t2.live_bytes == t0.live_bytes);
    printf("model ok live=%ld\n", live);
    return 0;
}

/* ------------------------------------------------------------ benchmark */
#include <time.h>
static double now(void) { struct timespec ts; clock_gettime(CLOCK_MONOTONIC, &ts); return ts.tv_sec + ts.tv_nsec * 1e-9; }
NOINLINE static int bench(void) {
    enum { N = 1 << 16 };
    static void *p[N];
    unsigned s = 1;
    double t0 = now();
    for (int r = 0; r < 40; r++) {
        for (int i = 0; i < N; i++) { s = s * 1103515245 + 12345; p[i] = malloc((s >> 16) % 200 + 1); }
        for (int i = 0; i < N; i++) free(p[(i * 7919) & (N - 1)]);
    }
    double t1 = now();
    for (int i = 0; i < N; i++) { s = s * 1103515245 + 12345; p[i] = malloc((s >> 16) % 200 + 1); }
    allocsite_totals_t t = T();
    printf("malloc+free pair %.1f ns; live %lu chunks, meta %lu bytes = %.2f bytes/chunk\n", (t1 - t0) / (40.0 * N) * 1e9,
           (unsigned long)t.live_chunks, (unsigned long)t.meta_bytes, (double)t.meta_bytes / t.live_chunks);
    return 0;
}

int main(int argc, char **argv) {
    DESC_INIT(d_xmalloc); DESC_INIT(d_ckd_calloc); DESC_INIT(d_ckd_2d); DESC_INIT(d_xfree); DESC_INIT(d_xrealloc);
    const char *m = argc > 1 ? argv[1] : "basic";
    if (!strcmp(m, "basic")) return basic();
    if (!strcmp(m, "wrappers")) return wrappers();
    if (!strcmp(m, "threads")) return threads();
    if (!strcmp(m, "iterate")) return iterate();
    if (!strcmp(m, "fork")) return forking();
    if (!strcmp(m, "fork_threads")) return fork_threads();
    if (!strcmp(m, "cap")) return cap();
    if (!strcmp(m, "signals")) return signals();
    if (!strcmp(m, "bench")) return bench();
    if (!strcmp(m, "suballoc")) return suballoc();
    if (!strcmp(m, "model")) return model();
    if (!strcmp(m, "trailer")) return trailer();
    fprintf(stderr, "unknown mode %s\n", m);
    return 2;
}
