/* Heap checks on the runtime's small-object heap (tests/check_spans.rs): each mode makes
 * one kind of heap bug (or a clean workload) that the checks must report the same way
 * whether the chunk is a span object or glibc's (ALLOCSITE_HEAP=glibc). The program
 * prints where each chunk of interest lives ("at LABEL SIZE spans|glibc"), so the test
 * can tell whether the spans served it; the finding itself is read from the report.
 * Built with -O0: every call keeps its own line (no tail calls, no merged calls), and the
 * markers in the comments name the lines the findings must give.
 * Linked directly against liballocsite_rt.so, as a rewritten program loads it. */
#define _GNU_SOURCE
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define CHECK(c) do { if (!(c)) { fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #c); exit(1); } } while (0)
#define NOINLINE __attribute__((noinline))

/* glibc's main heap (brk) holds every small chunk glibc makes for a single-threaded
 * program (the same test as spans.c); the spans lie in a mapping of their own. */
extern char end;
static int in_glibc_heap(const void *p) {
    return (uintptr_t)p >= (uintptr_t)&end && (uintptr_t)p < (uintptr_t)sbrk(0);
}
/* (a thread's chunks come from an mmap'd glibc arena: neither brk nor a span; the test
 * only reads "at" lines printed while the process has one thread, and "at mt-…" lines,
 * where it only requires "not spans": see threads()) */
static void where(const char *label, const void *p, size_t n) {
    printf("at %s %zu %s\n", label, n, in_glibc_heap(p) ? "glibc" : "spans");
}

static void fill(void *p, size_t n, unsigned tag) {
    for (size_t i = 0; i < n; i++) ((unsigned char *)p)[i] = (unsigned char)(tag + i);
}
static int same(const void *p, size_t n, unsigned tag) {
    for (size_t i = 0; i < n; i++)
        if (((const unsigned char *)p)[i] != (unsigned char)(tag + i)) return 0;
    return 1;
}
static int all(const void *p, size_t from, size_t to, unsigned char b) {
    for (size_t i = from; i < to; i++)
        if (((const unsigned char *)p)[i] != b) return 0;
    return 1;
}

/* Chunks freed after the one under test, to push it out of the quarantine: small ones
 * (span-sized) and large ones (glibc's), about 320 KiB of usable size in all — five
 * times the 64 KiB quarantine, eighty times 4 KiB. Made before the chunk under test
 * is freed, so that nothing is allocated between its free and its check (it cannot be
 * handed out again). */
enum { NSMALL = 1000, NLARGE = 200 };
static char *others[NSMALL + NLARGE];
static void make_others(void) {
    for (int i = 0; i < NSMALL + NLARGE; i++) {
        size_t n = i < NSMALL ? 100 : 1000;
        others[i] = malloc(n);
        fill(others[i], n, (unsigned)i);
    }
}
static void free_others(void) {
    for (int i = 0; i < NSMALL + NLARGE; i++) {
        CHECK(same(others[i], i < NSMALL ? 100 : 1000, (unsigned)i));
        free(others[i]); /* @churn-free */
    }
}

/* ------------------------------------------------------------ 1. off-by-one */
/* One byte past the requested size, then free (found at the free), or never freed
 * (found at exit, the canary of a live chunk). */
static char *kept_live;
NOINLINE static int obo(size_t n, int at_exit) {
    char *p = malloc(n); /* @obo-alloc */
    where("obo", p, n);
    p[n] = 'A';
    if (at_exit) {
        kept_live = p;
        puts("obo left live");
        return 0;
    }
    free(p); /* @obo-free */
    puts("obo not caught");
    return 0;
}

/* ------------------------------------------------------------ 2. write after free */
/* A byte written into a freed (quarantined) chunk: found as it leaves the quarantine
 * (the frees of the other chunks push it out), or at exit while still quarantined. */
NOINLINE static int uaf(size_t n, int at_exit) {
    if (!at_exit) make_others();
    char *p = malloc(n); /* @uaf-alloc */
    where("uaf", p, n);
    fill(p, n, 7);
    free(p); /* @uaf-free */
    p[n / 2] = 'W';
    if (at_exit) {
        puts("uaf left quarantined");
        return 0;
    }
    free_others();
    puts("uaf not caught");
    return 0;
}

/* ------------------------------------------------------------ 3. double free */
NOINLINE static void release(char *p) {
    free(p); /* @df-free */
}
/* Freed by release(), then freed again by release() (the same free site) or by main's
 * own call (another), while the chunk is still quarantined ("held") or after the frees
 * of the other chunks pushed it out of the quarantine ("left"). Nothing is allocated
 * between the two frees, so the chunk cannot have been handed out again: its freed
 * trailer (or the spans' record of it) is what the second free finds. A live chunk of
 * the same size made just before keeps the memory around it in use (a span that empties
 * may give its pages back, as glibc merges a free chunk into its neighbours: either
 * forgets what the first free left — not what this test is about). */
NOINLINE static int dfree(size_t n, int same_site, int left) {
    if (left) make_others();
    char *neighbour = malloc(n);
    char *p = malloc(n); /* @df-alloc */
    where("dfree", p, n);
    release(p);
    if (left) free_others();
    if (same_site) release(p);
    else free(p); /* @df-free-elsewhere */
    puts("dfree not caught");
    free(neighbour);
    return 0;
}

/* ------------------------------------------------------------ 4. interior, not heap */
NOINLINE static int interior(size_t n) {
    char *p = malloc(n); /* @int-alloc */
    where("interior", p, n);
    free(p + 8); /* @int-free */
    puts("interior not caught");
    return 0;
}
NOINLINE static int stack_free(void) {
    char buf[64];
    char *volatile q = buf + 16; /* (hidden from the compiler's free-of-non-heap warning) */
    buf[0] = 1;
    free(q); /* @stack-free */
    puts("stack not caught");
    return 0;
}

/* ------------------------------------------------------------ 5. realloc */
static unsigned char POISON = 0xa5;
/* Grow and shrink one chunk through the sizes' classes and across the 248-byte limit
 * of the spans: the contents stay, the grown part holds the poison; at the end an
 * overflow past the last (shrunk) size is found at the free. */
NOINLINE static int reallocs(void) {
    char *p = malloc(20); /* @re-first */
    where("re-20", p, 20);
    fill(p, 20, 1);
    /* 20 -> 24: glibc's chunk has room (in place), a span object the same class */
    p = realloc(p, 24);
    where("re-24", p, 24);
    CHECK(same(p, 20, 1) && all(p, 20, 24, POISON));
    fill(p, 24, 2);
    /* 24 -> 30: the same 16-byte class of the spans (24 and 30 bytes, with the 16-byte
     * pad, both round up to 48); glibc's chunk (40 usable) is too small: moved */
    p = realloc(p, 30);
    where("re-30", p, 30);
    CHECK(same(p, 24, 2) && all(p, 24, 30, POISON));
    fill(p, 30, 3);
    /* across classes */
    p = realloc(p, 100);
    where("re-100", p, 100);
    CHECK(same(p, 30, 3) && all(p, 30, 100, POISON));
    fill(p, 100, 4);
    /* shrink */
    p = realloc(p, 50);
    where("re-50", p, 50);
    CHECK(same(p, 50, 4));
    /* up to the largest span request, then past it (glibc's), then back */
    p = realloc(p, 248);
    where("re-248", p, 248);
    CHECK(same(p, 50, 4) && all(p, 50, 248, POISON));
    fill(p, 248, 5);
    p = realloc(p, 1000);
    where("re-1000", p, 1000);
    CHECK(same(p, 248, 5) && all(p, 248, 1000, POISON));
    fill(p, 1000, 6);
    p = realloc(p, 200);
    where("re-200", p, 200);
    CHECK(same(p, 200, 6));
    p = realloc(p, 249);
    where("re-249", p, 249);
    CHECK(same(p, 200, 6) && all(p, 200, 249, POISON));
    p = realloc(p, 120); /* @re-last */
    where("re-120", p, 120);
    CHECK(same(p, 120, 6));
    /* malloc_usable_size follows (the canary: exactly the request) */
    CHECK(malloc_usable_size(p) >= 120);
    p[120] = 'R';
    free(p); /* @re-last-free */
    puts("realloc not caught");
    return 0;
}

/* An overflow found when realloc moves the chunk (its canary is checked as it goes). */
NOINLINE static int realloc_obo(size_t n) {
    char *p = malloc(n); /* @reobo-alloc */
    where("reobo", p, n);
    p[n] = 'Q';
    p = realloc(p, 2000); /* @reobo-realloc */
    puts("realloc-obo not caught");
    return 0;
}

/* realloc of a freed pointer: freed by a realloc at the same site ("same"), or by free
 * ("elsewhere"). */
NOINLINE static char *regrow(char *p, size_t n) {
    return realloc(p, n); /* @re-grow */
}
NOINLINE static int refree(size_t n, int same_site) {
    char *p = malloc(n); /* @refree-alloc */
    where("refree", p, n);
    fill(p, n, 9);
    if (same_site) {
        char *q = regrow(p, n + 500); /* moves: p is freed by the realloc */
        CHECK(q != p && same(q, n, 9));
        regrow(p, n + 600);
    } else {
        free(p); /* @refree-free */
        p = realloc(p, n + 600); /* @refree-realloc */
    }
    puts("refree not caught");
    return 0;
}

/* ------------------------------------------------------------ 6. fail=warn */
/* Several bugs in one run: each reported, the bad frees skipped, the program goes on
 * allocating and freeing (and exits 0). */
NOINLINE static int warn_run(void) {
    char *a = malloc(24); /* @warn-obo-alloc */
    where("warn-obo", a, 24);
    a[24] = 'B';
    free(a); /* @warn-obo-free */
    char *b = malloc(40); /* @warn-df-alloc */
    where("warn-df", b, 40);
    free(b); /* @warn-df-free */
    free(b); /* @warn-df-again */
    char *c = malloc(40); /* @warn-int-alloc */
    where("warn-int", c, 40);
    fill(c, 40, 11);
    free(c + 8); /* @warn-int-free */
    /* skipped: c is still live and whole */
    CHECK(same(c, 40, 11));
    char buf[32];
    char *volatile s = buf;
    buf[0] = 0;
    free(s); /* @warn-stack-free */
    char *d = malloc(249); /* @warn-uaf-alloc */
    where("warn-uaf", d, 249);
    free(d); /* @warn-uaf-free */
    d[3] = 'U'; /* found at exit: the quarantine (16 MiB) still holds it */
    /* goes on */
    unsigned long sum = 0;
    for (int r = 0; r < 20000; r++) {
        size_t n = (size_t)(r % 300) + 1;
        char *p = malloc(n);
        fill(p, n, (unsigned)r);
        CHECK(same(p, n, (unsigned)r));
        sum += (unsigned char)p[n - 1];
        free(p);
    }
    free(c);
    printf("warn went on %lu\n", sum);
    return 0;
}

/* ------------------------------------------------------------ 7. fresh memory */
/* malloc under poison: every byte the poison; calloc: zeros (also on memory freed just
 * before: with no quarantine it is handed out again); malloc_usable_size at least the
 * request. Argument: whether poison is on. */
NOINLINE static int fresh(int poison) {
    for (size_t n = 1; n <= 400; n++) {
        unsigned char *p = malloc(n);
        if (n == 1 || n == 24 || n == 248 || n == 249 || n == 300) where("fresh-malloc", p, n);
        if (poison) CHECK(all(p, 0, n, POISON));
        CHECK(malloc_usable_size(p) >= n);
        memset(p, 0x77, n);
        free(p);
        unsigned char *q = calloc(1, n);
        if (n == 1 || n == 24 || n == 248 || n == 249 || n == 300) where("fresh-calloc", q, n);
        CHECK(all(q, 0, n, 0));
        CHECK(malloc_usable_size(q) >= n);
        memset(q, 0x66, n);
        free(q);
        unsigned char *r = calloc(n, 3);
        CHECK(all(r, 0, 3 * n, 0));
        free(r);
    }
    puts("fresh ok");
    return 0;
}

/* ------------------------------------------------------------ 8. threads */
enum { NOBJ = 2000 };
static char *objs[NOBJ];
static size_t objn(int i) { return (size_t)(i * 7) % 248 + 1; }
NOINLINE static void drop_obj(char *p) {
    free(p); /* @th-free */
}
/* The second thread: frees (or reallocs, then frees) the even objects made by main
 * while it had one thread — clean — then frees object 0 again: a double free. */
static void *second(void *arg) {
    (void)arg;
    for (int i = 0; i < NOBJ; i += 2) {
        CHECK(same(objs[i], objn(i), (unsigned)i));
        if (i % 6 == 2) {
            char *q = realloc(objs[i], objn(i) + 100);
            CHECK(q && same(q, objn(i), (unsigned)i));
            free(q);
        } else {
            drop_obj(objs[i]);
        }
    }
    drop_obj(objs[0]);
    return NULL;
}
NOINLINE static int threads(void) {
    for (int i = 0; i < NOBJ; i++) {
        objs[i] = malloc(objn(i)); /* @th-alloc */
        if (i < 3) where("th-obj", objs[i], objn(i));
        fill(objs[i], objn(i), (unsigned)i);
    }
    pthread_t t;
    CHECK(pthread_create(&t, NULL, second, NULL) == 0);
    CHECK(pthread_join(t, NULL) == 0);
    /* threads have existed: new chunks come from glibc */
    char *n1 = malloc(24), *n2 = malloc(200);
    printf("at mt-new 24 %s\n", in_glibc_heap(n1) ? "glibc" : "spans?");
    printf("at mt-new 200 %s\n", in_glibc_heap(n2) ? "glibc" : "spans?");
    /* the odd objects, made before the thread, freed by main now (clean) */
    for (int i = 1; i < NOBJ; i += 2) {
        CHECK(same(objs[i], objn(i), (unsigned)i));
        free(objs[i]);
    }
    free(n1);
    free(n2);
    puts("threads ok");
    return 0;
}

/* ------------------------------------------------------------ 10. threads, stress */
/* Span objects made by main, then freed, realloc'd (in place or moved to glibc) and
 * checked by 4 threads at once while each also makes and frees glibc chunks of its own;
 * run with a small quarantine, so that batches leave (and give span objects back under
 * the spans' lock) on one thread while the others retire objects; one thread forks in
 * the middle (the child allocates, frees and exits). Clean: no finding, no deadlock. */
enum { MT_THREADS = 4, MT_OBJ = 40000 };
static char *mt_objs[MT_OBJ];
static size_t mtn(int i) { return (size_t)(i * 13) % 248 + 1; }
static void *mt_worker(void *arg) {
    long t = (long)arg;
    for (int i = (int)t; i < MT_OBJ; i += MT_THREADS) {
        size_t n = mtn(i);
        CHECK(same(mt_objs[i], n, (unsigned)i));
        if (i % 5 == 1) {
            /* grow (a move to glibc's heap: threads exist) or shrink (in place or a move) */
            size_t m = i % 2 ? n + 40 : (n + 1) / 2;
            char *q = realloc(mt_objs[i], m);
            CHECK(q && same(q, n < m ? n : m, (unsigned)i));
            free(q);
        } else {
            free(mt_objs[i]);
        }
        char *g = malloc(n + 16);
        CHECK(g != NULL);
        memset(g, (int)i, n + 16);
        free(g);
        if (t == 1 && i == MT_OBJ / 2 + 1) {
            pid_t c = fork();
            CHECK(c >= 0);
            if (c == 0) {
                for (int k = 0; k < 1000; k++) free(malloc((size_t)k % 300 + 1));
                _exit(0);
            }
            int st = 0;
            CHECK(waitpid(c, &st, 0) == c && WIFEXITED(st) && WEXITSTATUS(st) == 0);
        }
    }
    return NULL;
}
NOINLINE static int mtstress(void) {
    for (int i = 0; i < MT_OBJ; i++) {
        mt_objs[i] = malloc(mtn(i));
        CHECK(mt_objs[i] != NULL);
        fill(mt_objs[i], mtn(i), (unsigned)i);
    }
    where("mts-obj", mt_objs[0], mtn(0));
    pthread_t th[MT_THREADS];
    for (long t = 0; t < MT_THREADS; t++) CHECK(pthread_create(&th[t], NULL, mt_worker, (void *)t) == 0);
    for (int t = 0; t < MT_THREADS; t++) CHECK(pthread_join(th[t], NULL) == 0);
    puts("mtstress ok");
    return 0;
}

/* ------------------------------------------------------------ 9. stress */
/* Random malloc, calloc, realloc and free of 1..400 bytes, every byte verified; the
 * output depends only on the sequence (no addresses), so both heaps print the same. */
NOINLINE static int stress(long ops) {
    enum { SLOTS = 2048 };
    static unsigned char *slot[SLOTS];
    static size_t len[SLOTS];
    static unsigned tag[SLOTS];
    uint64_t x = 0x9e3779b97f4a7c15ull;
    unsigned long mallocs = 0, callocs = 0, reallocs = 0, frees = 0, sum = 0, small_spans = 0, small_glibc = 0;
    for (long op = 0; op < ops; op++) {
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        int k = (int)(x % SLOTS);
        size_t n = (size_t)((x >> 16) % 400) + 1;
        unsigned what = (unsigned)((x >> 40) % 10);
        unsigned t = (unsigned)(x >> 48);
        if (!slot[k]) {
            if (what < 2) {
                slot[k] = calloc(1, n);
                CHECK(all(slot[k], 0, n, 0));
                callocs++;
            } else {
                slot[k] = malloc(n);
                CHECK(all(slot[k], 0, n, POISON));
                mallocs++;
            }
            if (n <= 248) {
                if (in_glibc_heap(slot[k])) small_glibc++; else small_spans++;
            }
            CHECK(malloc_usable_size(slot[k]) >= n);
            len[k] = n; tag[k] = t;
            fill(slot[k], n, t);
        } else if (what < 4) {
            CHECK(same(slot[k], len[k], tag[k]));
            unsigned char *q = realloc(slot[k], n);
            CHECK(q);
            size_t keep = n < len[k] ? n : len[k];
            CHECK(same(q, keep, tag[k]));
            if (n > keep) CHECK(all(q, keep, n, POISON));
            sum += q[keep - 1];
            slot[k] = q; len[k] = n; tag[k] = t;
            fill(q, n, t);
            reallocs++;
        } else {
            CHECK(same(slot[k], len[k], tag[k]));
            sum += slot[k][len[k] - 1];
            free(slot[k]);
            slot[k] = NULL;
            frees++;
        }
    }
    for (int k = 0; k < SLOTS; k++)
        if (slot[k]) { CHECK(same(slot[k], len[k], tag[k])); free(slot[k]); }
    printf("stress ops=%ld mallocs=%lu callocs=%lu reallocs=%lu frees=%lu sum=%lu\n", ops, mallocs, callocs, reallocs, frees, sum);
    printf("placed small spans=%lu glibc=%lu\n", small_spans, small_glibc);
    return 0;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IONBF, 0); /* (lines printed before an abort are kept) */
    const char *m = argc > 1 ? argv[1] : "";
    const char *a2 = argc > 2 ? argv[2] : "";
    const char *a3 = argc > 3 ? argv[3] : "";
    size_t n = (size_t)strtoul(a2, NULL, 10);
    if (!strcmp(m, "obo")) return obo(n, 0);
    if (!strcmp(m, "obo-exit")) return obo(n, 1);
    if (!strcmp(m, "uaf")) return uaf(n, 0);
    if (!strcmp(m, "uaf-exit")) return uaf(n, 1);
    if (!strcmp(m, "dfree-same")) return dfree(n, 1, !strcmp(a3, "left"));
    if (!strcmp(m, "dfree-elsewhere")) return dfree(n, 0, !strcmp(a3, "left"));
    if (!strcmp(m, "interior")) return interior(n);
    if (!strcmp(m, "stack")) return stack_free();
    if (!strcmp(m, "realloc")) return reallocs();
    if (!strcmp(m, "realloc-obo")) return realloc_obo(n);
    if (!strcmp(m, "refree-same")) return refree(n, 1);
    if (!strcmp(m, "refree-elsewhere")) return refree(n, 0);
    if (!strcmp(m, "warn")) return warn_run();
    if (!strcmp(m, "fresh")) return fresh(!strcmp(a2, "poison"));
    if (!strcmp(m, "threads")) return threads();
    if (!strcmp(m, "stress")) return stress(strtol(a2, NULL, 10));
    if (!strcmp(m, "mtstress")) return mtstress();
    fprintf(stderr, "unknown mode %s\n", m);
    return 2;
}
