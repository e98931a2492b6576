/* Free-kind trampolines (hook ABI v4, rewriter tests, tests/rewrite.rs
 * free_kind_fast_path): a hooked free wrapper's call is recorded on the runtime's
 * per-thread stack only when the runtime asks for it (heap checks, the trace); an
 * allocation wrapper's always is. Each wrapper reads the runtime's per-thread
 * `__outermost_allocsite` (found with dlsym: the original program runs without the
 * runtime) while it runs: non-NULL = its call was recorded. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>

static void **outermost;
static int alloc_seen, release_seen;

__attribute__((noinline)) void *my_alloc(size_t n) {
    void *p = malloc(n);
    if (!p) abort();
    alloc_seen += outermost && *outermost;
    return p;
}

__attribute__((noinline)) void my_release(void *p) {
    release_seen += outermost && *outermost;
    free(p);
}

int main(void) {
    outermost = dlsym(RTLD_DEFAULT, "__outermost_allocsite");
    for (int i = 0; i < 10; i++) my_release(my_alloc(16 + i));
    printf("runtime %s, alloc calls recorded %d, release calls recorded %d\n", outermost ? "loaded" : "absent", alloc_seen, release_seen);
    return 0;
}
