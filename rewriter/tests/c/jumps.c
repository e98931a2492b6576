/* Trampoline exits after a longjmp inside the hooked call (tests/call_sites.rs
 * exit_after_longjmp_inside): `outer_alloc`'s classified call of `inner_alloc` never
 * returns (inner jumps back into outer), so inner's entry stays above outer's on the
 * runtime's per-thread stack when outer returns. outer's exit must still take outer's
 * entry off: afterwards no hooked call is active (`__outermost_allocsite` NULL), and
 * the next calls are recorded as usual. The runtime's symbol is found with dlsym (the original program
 * runs without it). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>

static void **outermost;
static jmp_buf env;
static void *volatile kept;
static int inside, after;

__attribute__((noinline)) void *inner_alloc(size_t n, int jump) {
    void *p = malloc(n);
    if (!p) abort();
    if (jump) {
        kept = p;
        longjmp(env, 1);
    }
    return p;
}

__attribute__((noinline)) void *outer_alloc(size_t n) {
    void *p = malloc(n);
    if (!p) abort();
    if (setjmp(env) == 0)
        inner_alloc(24, 1); /* never returns normally */
    inside += outermost && *outermost;
    return p;
}

/* not an allocation function */
__attribute__((noinline)) void plain(void) {
    after += outermost && *outermost;
}

int main(void) {
    outermost = dlsym(RTLD_DEFAULT, "__outermost_allocsite");
    for (int i = 0; i < 5; i++) {
        void *p = outer_alloc(16 + i);
        free(kept);
        plain();
        free(p);
        free(inner_alloc(32, 0));
    }
    printf("runtime %s, recorded inside outer %d, active after outer returned %d\n", outermost ? "loaded" : "absent", inside, after);
    return 0;
}
