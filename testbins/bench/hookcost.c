/* Micro-benchmark for the cost of one hooked call (testbins/bench/run).
 *
 * Two loops do the same work, malloc(32) + free, N times:
 *   direct:  calls malloc and free itself;
 *   wrapped: calls the noinline wrappers hc_malloc / hc_free, which the analysis
 *            classifies (alloc size=0, free ptr=0) and the rewriter hooks.
 * In the original program wrapped - direct is the price of two plain calls; in the
 * rewritten one it also holds the entry+exit hooks of two hooked calls. Both loops pay
 * the same for malloc/free themselves (including any C-library interposition by the
 * runtime), so
 *     ns per hooked call = ((wrapped - direct)_rewritten - (wrapped - direct)_original) / 2.
 * Each loop is timed in-process with clock_gettime(CLOCK_MONOTONIC); the best of
 * several rounds is printed, in nanoseconds per iteration.
 *
 * usage: hookcost [iterations] [rounds]
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

__attribute__((noinline)) void *hc_malloc(size_t n)
{
    void *p = malloc(n);
    if (p == NULL) {
        fprintf(stderr, "hookcost: out of memory\n");
        abort();
    }
    return p;
}

__attribute__((noinline)) void hc_free(void *p)
{
    free(p);
}

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* The empty asm makes the pointer escape, so gcc cannot drop the malloc/free pair. */
#define KEEP(p) __asm__ volatile("" : : "r"(p) : "memory")

__attribute__((noinline)) static double loop_direct(long n)
{
    double t0 = now_ns();
    for (long i = 0; i < n; i++) {
        void *p = malloc(32);
        KEEP(p);
        free(p);
    }
    return (now_ns() - t0) / (double)n;
}

__attribute__((noinline)) static double loop_wrapped(long n)
{
    double t0 = now_ns();
    for (long i = 0; i < n; i++) {
        void *p = hc_malloc(32);
        KEEP(p);
        hc_free(p);
    }
    return (now_ns() - t0) / (double)n;
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 2000000;
    int rounds = argc > 2 ? atoi(argv[2]) : 7;
    double best_d = 1e30, best_w = 1e30;
    loop_direct(n / 10);   /* warm up the allocator and the caches */
    loop_wrapped(n / 10);
    for (int r = 0; r < rounds; r++) {
        double d = loop_direct(n);
        double w = loop_wrapped(n);
        if (d < best_d) best_d = d;
        if (w < best_w) best_w = w;
    }
    printf("iterations=%ld rounds=%d hooked_calls_per_iteration=2\n", n, rounds);
    printf("direct_ns_per_iteration=%.3f\n", best_d);
    printf("wrapped_ns_per_iteration=%.3f\n", best_w);
    return 0;
}
