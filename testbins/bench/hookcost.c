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
 * A second pair isolates the hooks' own bookkeeping from the C library's allocator
 * and the heap index: hc_take / hc_give hand out slots of a static array (the bench
 * declares them allocators with `--alloc-fns "hc_take(Z)p" --free-fns "hc_give(P)"`,
 * so they are hooked), and plain_take / plain_give are the same code, never hooked:
 *     ns per hooked call (bookkeeping only) = ((hooked - plain)_rewritten - (hooked - plain)_original) / 2.
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

static char slots[64][32];
static unsigned next_slot;

/* The asm keeps gcc from treating the two pairs as one function (identical code
 * folding) and from seeing through them. */
__attribute__((noipa)) void *hc_take(size_t n)
{
    __asm__ volatile("" : "+r"(n));
    return n <= 32 ? slots[next_slot++ & 63] : NULL;
}

__attribute__((noipa)) void hc_give(void *p)
{
    __asm__ volatile("" : : "r"(p) : "memory");
}

__attribute__((noipa)) void *plain_take(size_t n)
{
    __asm__ volatile("" : "+r"(n));
    return n <= 32 ? slots[next_slot++ & 63] : NULL;
}

__attribute__((noipa)) void plain_give(void *p)
{
    __asm__ volatile("" : : "r"(p) : "memory");
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

__attribute__((noipa)) static double loop_plain(long n)
{
    double t0 = now_ns();
    for (long i = 0; i < n; i++) {
        void *p = plain_take(32);
        KEEP(p);
        plain_give(p);
    }
    return (now_ns() - t0) / (double)n;
}

__attribute__((noipa)) static double loop_hooked(long n)
{
    double t0 = now_ns();
    for (long i = 0; i < n; i++) {
        void *p = hc_take(32);
        KEEP(p);
        hc_give(p);
    }
    return (now_ns() - t0) / (double)n;
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 2000000;
    int rounds = argc > 2 ? atoi(argv[2]) : 7;
    double best_d = 1e30, best_w = 1e30, best_p = 1e30, best_h = 1e30;
    loop_direct(n / 10);   /* warm up the allocator and the caches */
    loop_wrapped(n / 10);
    loop_plain(n / 10);
    loop_hooked(n / 10);
    for (int r = 0; r < rounds; r++) {
        double d = loop_direct(n);
        double w = loop_wrapped(n);
        double p = loop_plain(n);
        double h = loop_hooked(n);
        if (d < best_d) best_d = d;
        if (w < best_w) best_w = w;
        if (p < best_p) best_p = p;
        if (h < best_h) best_h = h;
    }
    printf("iterations=%ld rounds=%d hooked_calls_per_iteration=2\n", n, rounds);
    printf("direct_ns_per_iteration=%.3f\n", best_d);
    printf("wrapped_ns_per_iteration=%.3f\n", best_w);
    printf("plain_ns_per_iteration=%.3f\n", best_p);
    printf("hooked_ns_per_iteration=%.3f\n", best_h);
    return 0;
}
