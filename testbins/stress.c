/* Runtime stress for the rewriter (issue 3): THREADS threads x CALLS wrapper
 * calls each (default 8 x 200000) through xalloc.c's wrappers, with failing
 * allocations (try_malloc of a huge size returns NULL) and longjmp out of an
 * allocator (xmalloc_cb's callback jumps back to a setjmp in the caller).
 *   ./stress [THREADS [CALLS]]
 * Each thread uses its own deterministic random sequence; the summary depends
 * only on THREADS and CALLS, never on addresses or scheduling. Exit 0 when
 * every thread's self-check passed, 1 otherwise. */
#include <pthread.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "xalloc.h"

#define SLOTS 64
#define MAX_THREADS 64

struct slot { unsigned char *p; size_t n; unsigned char seed; };

struct worker {
    int id;
    long calls_target;
    long calls, allocs, frees, reallocs, failed, jumps, bad;
    uint32_t sum;
    uint64_t rng;
    struct slot slots[SLOTS];
};

static uint32_t next(struct worker *w)
{
    /* xorshift64*: deterministic per thread */
    w->rng ^= w->rng >> 12;
    w->rng ^= w->rng << 25;
    w->rng ^= w->rng >> 27;
    return (uint32_t)((w->rng * 2685821657736338717ULL) >> 32);
}

static void fill(struct slot *s, size_t from)
{
    for (size_t i = from; i < s->n; i++)
        s->p[i] = (unsigned char)(s->seed + i);
}

/* Checks the block still holds its pattern and folds it into the checksum. */
static void check(struct worker *w, struct slot *s)
{
    for (size_t i = 0; i < s->n; i++)
        if (s->p[i] != (unsigned char)(s->seed + i)) {
            w->bad++;
            break;
        }
    w->sum = (w->sum ^ (uint32_t)s->n ^ ((uint32_t)s->seed << 16)) * 16777619u;
}

static void release(struct worker *w, struct slot *s)
{
    if (s->p != NULL) {
        check(w, s);
        xfree(s->p);
        w->frees++;
        w->calls++;
        s->p = NULL;
    }
}

/* The callbacks given to xmalloc_cb. */
static __thread void *pending;     /* block handed to bail_cb, freed after the jump */

static void bail_cb(void *p, size_t n, void *env)
{
    (void)n;
    pending = p;
    longjmp(*(jmp_buf *)env, 1);
}

static void zero_cb(void *p, size_t n, void *arg)
{
    (void)arg;
    memset(p, 0, n);
}

/* setjmp lives in its own frame so no local is modified between setjmp and
 * longjmp. Returns 1 when the allocator was left by longjmp. */
static __attribute__((noinline)) int alloc_and_jump(size_t n)
{
    jmp_buf env;
    if (setjmp(env) == 0) {
        xmalloc_cb(n, bail_cb, &env);  /* never returns normally */
        return 0;
    }
    return 1;
}

static void *run(void *arg)
{
    struct worker *w = arg;
    while (w->calls < w->calls_target) {
        uint32_t r = next(w);
        struct slot *s = &w->slots[r % SLOTS];
        unsigned op = (r >> 8) % 16;
        size_t n = 1 + (r >> 12) % 256;
        if (op < 5) {                               /* xmalloc */
            release(w, s);
            s->p = xmalloc(n);
            s->n = n;
            s->seed = (unsigned char)(r >> 20);
            fill(s, 0);
            w->allocs++;
        } else if (op < 8) {                        /* xcalloc, zeroed */
            release(w, s);
            size_t c = 1 + n % 16, z = 1 + (n >> 4) % 16;
            s->p = xcalloc(c, z);
            s->n = c * z;
            for (size_t i = 0; i < s->n; i++)
                if (s->p[i] != 0)
                    w->bad++;
            s->seed = (unsigned char)(r >> 20);
            fill(s, 0);
            w->allocs++;
        } else if (op < 11) {                       /* xrealloc: keeps the prefix */
            size_t keep = s->p ? (s->n < n ? s->n : n) : 0;
            if (s->p != NULL) {
                struct slot t = *s;
                t.n = keep;
                check(w, &t);
            } else {
                s->seed = (unsigned char)(r >> 20);
            }
            s->p = xrealloc(s->p, n);
            s->n = n;
            fill(s, keep);
            w->reallocs++;
        } else if (op < 12) {                       /* free */
            release(w, s);
            continue;
        } else if (op < 13) {                       /* failing allocation */
            void *p = try_malloc(SIZE_MAX / 2 - n);
            if (p == NULL)
                w->failed++;
            else
                free(p);
        } else if (op < 14) {                       /* longjmp out of xmalloc_cb */
            if (alloc_and_jump(n)) {
                xfree(pending);
                pending = NULL;
                w->jumps++;
                w->calls++;                         /* the xfree */
            }
        } else if (op < 15) {                       /* three wrappers deep */
            release(w, s);
            s->p = buf_alloc(n);                    /* 2n + 8 bytes */
            s->n = 2 * n + 8;
            s->seed = (unsigned char)(r >> 20);
            fill(s, 0);
            w->allocs++;
        } else {                                    /* callback that returns */
            release(w, s);
            s->p = xmalloc_cb(n, zero_cb, NULL);
            s->n = n;
            for (size_t i = 0; i < n; i++)
                if (s->p[i] != 0)
                    w->bad++;
            s->seed = (unsigned char)(r >> 20);
            fill(s, 0);
            w->allocs++;
        }
        w->calls++;
    }
    for (int i = 0; i < SLOTS; i++)
        release(w, &w->slots[i]);
    return NULL;
}

int main(int argc, char **argv)
{
    int threads = argc > 1 ? atoi(argv[1]) : 8;
    long calls = argc > 2 ? atol(argv[2]) : 200000;
    if (threads < 1 || threads > MAX_THREADS || calls < 1) {
        fprintf(stderr, "usage: stress [THREADS(1-%d) [CALLS]]\n", MAX_THREADS);
        return 2;
    }
    static struct worker w[MAX_THREADS];
    pthread_t tid[MAX_THREADS];
    for (int i = 0; i < threads; i++) {
        w[i].id = i;
        w[i].calls_target = calls;
        w[i].sum = 2166136261u;
        w[i].rng = 0x9E3779B97F4A7C15ULL * (uint64_t)(i + 1);
        if (pthread_create(&tid[i], NULL, run, &w[i]) != 0) {
            fprintf(stderr, "stress: pthread_create failed\n");
            return 2;
        }
    }
    long bad = 0, total = 0;
    uint32_t sum = 0;
    for (int i = 0; i < threads; i++) {
        pthread_join(tid[i], NULL);
        printf("thread %d: %ld calls, %ld allocs, %ld reallocs, %ld frees, %ld failed, %ld jumps, sum %08x%s\n",
               i, w[i].calls, w[i].allocs, w[i].reallocs, w[i].frees, w[i].failed, w[i].jumps, w[i].sum,
               w[i].bad ? " BAD" : "");
        bad += w[i].bad;
        total += w[i].calls;
        sum = (sum ^ w[i].sum) * 16777619u;
    }
    printf("stress: %d threads, %ld wrapper calls, checksum %08x, %s\n", threads, total, sum, bad ? "FAILED" : "ok");
    return bad ? 1 : 0;
}
