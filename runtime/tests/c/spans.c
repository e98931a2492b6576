/* The runtime's small-object heap (runtime/src/smallheap): requests up to 256 bytes
 * come from the runtime's own spans while the process has one thread, unless
 * ALLOCSITE_HEAP=glibc. Each mode checks one way a program may use such an object
 * (and that it really is one: `in_glibc_heap` is false for it); exit status 0 = pass.
 * Linked directly against liballocsite_rt.so, as a rewritten program loads it. */
#define _GNU_SOURCE
#include "../../include/allocsite.h"
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

/* glibc's main heap (brk) holds every small chunk glibc makes for a single-threaded
 * program; the runtime's spans lie in a mapping of their own. */
extern char end;
static int in_glibc_heap(const void *p) {
    return (uintptr_t)p >= (uintptr_t)&end && (uintptr_t)p < (uintptr_t)sbrk(0);
}
/* a span object: outside glibc's heap, its usable size its 16-byte class */
static int span_object(const void *p, size_t n) {
    return !in_glibc_heap(p) && malloc_usable_size((void *)p) == ((n + 15) & ~(size_t)15);
}

static void fill(void *p, size_t n, unsigned tag) {
    for (size_t i = 0; i < n; i++) ((unsigned char *)p)[i] = (unsigned char)(tag + i);
}
static int same(const void *p, size_t n, unsigned tag) {
    for (size_t i = 0; i < n; i++)
        if (((const unsigned char *)p)[i] != (unsigned char)(tag + i)) return 0;
    return 1;
}

/* ------------------------------------------------------------ calloc after reuse */
NOINLINE static int calloc_reuse(void) {
    for (size_t n = 1; n <= 256; n++) {
        unsigned char *p = malloc(n);
        CHECK(span_object(p, n));
        memset(p, 0xAB, malloc_usable_size(p));
        free(p);
        /* the object just freed is the next one handed out (LIFO): calloc must clear it */
        unsigned char *q = calloc(1, n);
        CHECK(q == p);
        for (size_t i = 0; i < n; i++) CHECK(q[i] == 0);
        free(q);
    }
    puts("calloc ok");
    return 0;
}

/* ------------------------------------------------------------ realloc across heaps */
NOINLINE static int realloc_moves(void) {
    allocsite_totals_t t0 = T();
    allocsite_chunk_t c;
    char *a = malloc(100);
    CHECK(span_object(a, 100));
    fill(a, 100, 1);
    /* span -> glibc */
    char *b = realloc(a, 1000);
    CHECK(b != a && in_glibc_heap(b) && same(b, 100, 1));
    CHECK(allocsite_lookup(b + 999, &c) == 1 && c.base == b && c.size == 1000 && !strcmp(c.allocator, "realloc"));
    CHECK(allocsite_lookup(a, &c) == 0);
    fill(b, 1000, 2);
    /* glibc -> span */
    char *d = realloc(b, 60);
    CHECK(span_object(d, 60) && same(d, 60, 2));
    CHECK(allocsite_lookup(d + 59, &c) == 1 && c.base == d && c.size == 60);
    /* the same class: in place, the record's size follows */
    char *e = realloc(d, 64);
    CHECK(e == d && same(e, 60, 2));
    CHECK(allocsite_lookup(e + 63, &c) == 1 && c.base == e && c.size == 64);
    /* span -> span of another class, growing and shrinking */
    char *f = realloc(e, 200);
    CHECK(span_object(f, 200) && same(f, 60, 2));
    fill(f, 200, 3);
    char *g = realloc(f, 20);
    CHECK(span_object(g, 20) && same(g, 20, 3));
    CHECK(T().live_chunks == t0.live_chunks + 1 && T().live_bytes == t0.live_bytes + 20);
    /* reallocarray and realloc(p, 0) */
    char *h = reallocarray(g, 10, 10);
    CHECK(span_object(h, 100) && same(h, 20, 3));
    CHECK(realloc(h, 0) == NULL);
    CHECK(T().live_chunks == t0.live_chunks && T().live_bytes == t0.live_bytes);
    /* a chunk glibc made before (not through the runtime) becomes a span object */
    extern void *__libc_malloc(size_t);
    char *raw = __libc_malloc(40);
    fill(raw, 40, 4);
    char *r = realloc(raw, 48);
    CHECK(span_object(r, 48) && same(r, 40, 4));
    free(r);
    CHECK(T().live_chunks == t0.live_chunks);
    puts("realloc ok");
    return 0;
}

/* ------------------------------------------------------------ malloc_usable_size */
NOINLINE static int usable(void) {
    allocsite_chunk_t c;
    for (size_t n = 1; n <= 600; n++) {
        char *p = malloc(n);
        size_t u = malloc_usable_size(p);
        CHECK(u >= n);
        if (n <= 256) CHECK(span_object(p, n));
        memset(p, 0x5A, u);
        CHECK(allocsite_lookup(p, &c) == 1 && c.base == p && c.size == n);
        char *s = strndup("abcdefghijklmnopqrstuvwxyz", n % 27);
        CHECK(strlen(s) == n % 27 && malloc_usable_size(s) > n % 27);
        CHECK(allocsite_lookup(s, &c) == 1 && c.size == n % 27 + 1 && !strcmp(c.allocator, "strndup"));
        free(s);
        free(p);
    }
    puts("usable ok");
    return 0;
}

/* ------------------------------------------------------------ frees from threads */
enum { NOBJ = 20000, NTH = 4 };
static char *objs[NOBJ];
static void *free_quarter(void *arg) {
    long k = (long)arg;
    for (int i = k; i < NOBJ; i += NTH) {
        CHECK(same(objs[i], i % 200 + 1, (unsigned)i));
        if (i % 3 == 0) {
            /* a realloc of a span object from another thread: moved to glibc's heap */
            char *q = realloc(objs[i], i % 200 + 300);
            CHECK(q && same(q, i % 200 + 1, (unsigned)i));
            free(q);
        } else {
            free(objs[i]);
        }
        /* and the thread's own chunks (glibc's, now that there are threads) */
        void *m = malloc(i % 100 + 1);
        __asm__ volatile("" : : "r"(m) : "memory"); /* (not elided with the free) */
        free(m);
    }
    return NULL;
}
NOINLINE static int threads(void) {
    allocsite_totals_t t0 = T();
    for (int i = 0; i < NOBJ; i++) {
        objs[i] = malloc(i % 200 + 1);
        CHECK(!in_glibc_heap(objs[i]));
        fill(objs[i], i % 200 + 1, (unsigned)i);
    }
    CHECK(T().live_chunks == t0.live_chunks + NOBJ);
    pthread_t th[NTH];
    for (long k = 0; k < NTH; k++) CHECK(pthread_create(&th[k], NULL, free_quarter, (void *)k) == 0);
    /* meanwhile: lookups of span objects from this thread */
    for (int r = 0; r < 20; r++) {
        allocsite_chunk_t c;
        void *p = malloc(10);
        /* (once there are threads, new small chunks are glibc's again) */
        CHECK(in_glibc_heap(p));
        CHECK(allocsite_lookup(p, &c) == 1 && c.size == 10);
        free(p);
    }
    for (int k = 0; k < NTH; k++) pthread_join(th[k], NULL);
    allocsite_totals_t t1 = T();
    /* (glibc keeps each joined thread's DTV with its cached stack: at most one chunk per
     * thread; the report's per-site counts are checked exactly) */
    if (t1.live_chunks > t0.live_chunks + NTH)
        fprintf(stderr, "live chunks %lu -> %lu\n", (unsigned long)t0.live_chunks, (unsigned long)t1.live_chunks);
    CHECK(t1.live_chunks <= t0.live_chunks + NTH);
    /* the freed objects are gone from the index */
    allocsite_chunk_t c;
    for (int i = 0; i < NOBJ; i += 97) CHECK(allocsite_lookup(objs[i], &c) == 0 || c.base != objs[i] || c.size != (size_t)(i % 200 + 1));
    puts("threads ok");
    return 0;
}

/* ------------------------------------------------------------ fork */
NOINLINE static int forking(void) {
    enum { K = 1000 };
    static char *v[K];
    for (int i = 0; i < K; i++) { v[i] = malloc(i % 250 + 1); fill(v[i], i % 250 + 1, (unsigned)i); }
    CHECK(!in_glibc_heap(v[0]));
    allocsite_totals_t t0 = T();
    fflush(stdout);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        /* the child: the parent's objects are intact and freeable, new ones work */
        for (int i = 0; i < K; i += 2) { CHECK(same(v[i], i % 250 + 1, (unsigned)i)); free(v[i]); }
        static char *w[K];
        for (int r = 0; r < 100; r++) {
            for (int i = 0; i < K; i++) { w[i] = malloc(i % 256 + 1); fill(w[i], i % 256 + 1, (unsigned)(i + r)); }
            for (int i = 0; i < K; i++) { CHECK(!in_glibc_heap(w[i]) && same(w[i], i % 256 + 1, (unsigned)(i + r))); free(w[i]); }
        }
        allocsite_totals_t t1 = T();
        if (t1.live_chunks != t0.live_chunks - K / 2) _exit(3);
        for (int i = 1; i < K; i += 2) CHECK(same(v[i], i % 250 + 1, (unsigned)i));
        exit(0); /* (writes the child's report) */
    }
    int st;
    CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    for (int i = 0; i < K; i++) { CHECK(same(v[i], i % 250 + 1, (unsigned)i)); free(v[i]); }
    printf("fork ok child=%d\n", (int)pid);
    return 0;
}

/* ------------------------------------------------------------ interior pointers */
NOINLINE static int interior(void) {
    allocsite_chunk_t c;
    char *p = malloc(100);
    char *q = malloc(100);
    CHECK(span_object(p, 100) && span_object(q, 100));
    CHECK(allocsite_lookup(p, &c) == 1 && c.base == p && c.size == 100 && !strcmp(c.allocator, "malloc"));
    CHECK(allocsite_lookup(p + 57, &c) == 1 && c.base == p && c.size == 100);
    CHECK(allocsite_lookup(p + 99, &c) == 1 && c.base == p);
    /* the class's 12 spare bytes past the request are not the chunk's */
    CHECK(allocsite_lookup(p + 100, &c) == 0 || c.base != p);
    CHECK(allocsite_lookup(q + 50, &c) == 1 && c.base == q);
    free(p);
    CHECK(allocsite_lookup(p + 57, &c) == 0 || c.base != p);
    CHECK(allocsite_lookup(q + 50, &c) == 1 && c.base == q);
    free(q);
    puts("interior ok");
    return 0;
}

/* ------------------------------------------------------------ leaks and iteration */
static size_t visited, visited_bytes;
static int count_cb(const allocsite_chunk_t *c, void *arg) {
    (void)arg;
    visited++;
    visited_bytes += c->size;
    return 0;
}
NOINLINE static void leak_here(void) {
    for (int i = 0; i < 7; i++) {
        void *p = malloc(40);
        CHECK(span_object(p, 40));
        __asm__ volatile("" : : "r"(p) : "memory");
    }
}
NOINLINE static int leaks(void) {
    leak_here();
    allocsite_totals_t t = T();
    allocsite_for_each_chunk(count_cb, NULL);
    CHECK(visited == t.live_chunks && visited_bytes == t.live_bytes && visited >= 7);
    puts("leaks ok");
    return 0;
}

/* ------------------------------------------------------------ signal handlers */
static volatile unsigned long handler_allocs;
/* Objects a handler made, freed by a later handler: such a free often interrupts the
 * runtime's own work on the spans (it must be deferred, not change the free lists under
 * the interrupted code). A chunk glibc made (a handler that interrupted the runtime gets
 * one) is kept for the end: freeing it in a handler that interrupted glibc itself would
 * break glibc, as in any program. */
enum { RING = 16 };
static char *ring[RING], *kept[1 << 16];
static size_t ring_n[RING], nkept;
static void on_prof(int sig) {
    (void)sig;
    unsigned long h = handler_allocs++;
    unsigned slot = h % RING;
    if (ring[slot]) {
        if (!same(ring[slot], ring_n[slot], slot)) abort();
        if (in_glibc_heap(ring[slot]) || nkept == sizeof kept / sizeof kept[0]) {
            if (nkept < sizeof kept / sizeof kept[0]) kept[nkept++] = ring[slot];
        } else {
            free(ring[slot]);
        }
        ring[slot] = NULL;
    }
    size_t n = h % 200 + 1;
    char *p = malloc(n);
    if (p) {
        fill(p, n, slot);
        ring[slot] = p;
        ring_n[slot] = n;
    }
}
NOINLINE static int signals(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_prof;
    sa.sa_flags = SA_RESTART;
    /* (a real-time timer: high resolution, ~20 000 signals a second, so handlers often
     * interrupt the runtime's own work on the spans) */
    sigaction(SIGALRM, &sa, NULL);
    /* (the totals before the timer starts: the report code allocates from glibc, which a
     * handler's malloc must not interrupt) */
    allocsite_totals_t t0 = T();
    struct itimerval it = {{0, 50}, {0, 50}};
    setitimer(ITIMER_REAL, &it, NULL);
    enum { K = 512 };
    static char *v[K];
    static size_t n[K];
    for (int i = 0; i < 4000000; i++) {
        unsigned k = (unsigned)i * 7919u % K;
        if (v[k]) {
            if (!same(v[k], n[k], (unsigned)k)) { fprintf(stderr, "object %d corrupted at %d\n", k, i); return 1; }
            if (i & 1) { free(v[k]); v[k] = NULL; continue; }
            size_t m = (size_t)(i % 300) + 1;
            char *q = realloc(v[k], m);
            CHECK(q);
            if (!same(q, m < n[k] ? m : n[k], (unsigned)k)) { fprintf(stderr, "realloc lost contents at %d\n", i); return 1; }
            v[k] = q; n[k] = m;
        } else {
            n[k] = (size_t)(i % 256) + 1;
            v[k] = malloc(n[k]);
            CHECK(v[k]);
        }
        fill(v[k], n[k], (unsigned)k);
    }
    struct itimerval off = {{0, 0}, {0, 0}};
    setitimer(ITIMER_REAL, &off, NULL);
    for (int k = 0; k < K; k++) {
        if (v[k]) { CHECK(same(v[k], n[k], (unsigned)k)); free(v[k]); }
    }
    for (int k = 0; k < RING; k++) {
        if (ring[k]) { CHECK(same(ring[k], ring_n[k], (unsigned)k)); free(ring[k]); }
    }
    for (size_t k = 0; k < nkept; k++) free(kept[k]);
    allocsite_totals_t t1 = T();
    printf("signals ok handler_allocs=%lu live_delta=%ld\n", handler_allocs, (long)(t1.live_chunks - t0.live_chunks));
    CHECK(handler_allocs > 100);
    CHECK((long)(t1.live_chunks - t0.live_chunks) <= 2 && (long)(t1.live_chunks - t0.live_chunks) >= -2);
    return 0;
}

/* ------------------------------------------------------------ which heap */
/* "spans" or "glibc": where a single-threaded program's small chunks must be */
NOINLINE static int heap(const char *want) {
    int spans = !strcmp(want, "spans");
    char *p = malloc(24);
    CHECK(in_glibc_heap(p) == !spans);
    CHECK(malloc_usable_size(p) == (spans ? 32 : 24));
    char *s = strdup("hello");
    CHECK(in_glibc_heap(s) == !spans);
    void *c = calloc(3, 8);
    CHECK(in_glibc_heap(c) == !spans);
    free(p); free(s); free(c);
    printf("heap %s ok\n", want);
    return 0;
}

/* ------------------------------------------------------------ bad frees */
/* a double free ("double") or a free of an interior pointer ("interior") of a span
   object: the runtime must abort as glibc would, naming the address */
NOINLINE static int bad_free(const char *how) {
    char *p = malloc(40);
    CHECK(!in_glibc_heap(p));
    printf("bad %p\n", (void *)(!strcmp(how, "double") ? p : p + 8));
    fflush(stdout);
    free(p);
    if (!strcmp(how, "double")) free(p); else free(p + 8);
    printf("not caught\n");
    return 0;
}

/* ------------------------------------------------------------ mallinfo2 */
/* glibc's statistics count span objects: 2000 objects of 100 bytes (112 each) raise
 * the allocated bytes by at least that much, and freeing them takes it back */
NOINLINE static int minfo(void) {
    enum { N = 2000 };
    static char *v[N];
    struct mallinfo2 a = mallinfo2();
    for (int i = 0; i < N; i++) v[i] = malloc(100);
    CHECK(!in_glibc_heap(v[0]) && !in_glibc_heap(v[N - 1]));
    struct mallinfo2 b = mallinfo2();
    CHECK(b.uordblks >= a.uordblks + N * 112);
    CHECK(b.arena >= b.uordblks - a.uordblks);
    struct mallinfo o = mallinfo();
    CHECK((size_t)o.uordblks == (size_t)(int)b.uordblks);
    for (int i = 0; i < N; i++) free(v[i]);
    struct mallinfo2 c = mallinfo2();
    CHECK(c.uordblks + N * 112 <= b.uordblks);
    CHECK(c.fordblks >= a.fordblks);
    printf("mallinfo ok %zu %zu %zu\n", a.uordblks, b.uordblks, c.uordblks);
    return 0;
}

int main(int argc, char **argv) {
    const char *m = argc > 1 ? argv[1] : "calloc";
    if (!strcmp(m, "calloc")) return calloc_reuse();
    if (!strcmp(m, "realloc")) return realloc_moves();
    if (!strcmp(m, "usable")) return usable();
    if (!strcmp(m, "threads")) return threads();
    if (!strcmp(m, "fork")) return forking();
    if (!strcmp(m, "interior")) return interior();
    if (!strcmp(m, "leaks")) return leaks();
    if (!strcmp(m, "signals")) return signals();
    if (!strcmp(m, "heap")) return heap(argc > 2 ? argv[2] : "spans");
    if (!strcmp(m, "mallinfo")) return minfo();
    if (!strcmp(m, "badfree")) return bad_free(argc > 2 ? argv[2] : "double");
    fprintf(stderr, "unknown mode %s\n", m);
    return 2;
}
