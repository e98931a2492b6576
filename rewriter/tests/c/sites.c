/* Call sites of allocation functions for hook ABI v3 (rewriter tests, tests/sites.rs):
 * pass-through calls direct (call and tail jmp) and indirect, classified calls of a
 * local allocation function, of interposed imports (malloc, strdup: mark stubs) and of
 * imports the runtime does not interpose (getline, asprintf: import trampolines). */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

__attribute__((noinline)) void *xmalloc(size_t n) {
    void *p = malloc(n);              /* pass-through (size from size) */
    if (!p) { fputs("out of memory\n", stderr); exit(2); }
    return p;
}

/* pass-through, a direct call that is not a tail call */
__attribute__((noinline)) void *xmalloc_hdr(size_t n) {
    long *p = xmalloc(n + 8);
    p[0] = (long)n;
    return p + 1;
}

/* pass-through tail call at -O2 (`add rdi,16; jmp xmalloc`) */
__attribute__((noinline)) void *wrap_tail(size_t n) { return xmalloc(n + 16); }

/* pass-through through a function pointer */
void *(*volatile g_alloc)(size_t) = xmalloc;
__attribute__((noinline)) void *via_ptr(size_t n) {
    void *p = g_alloc(n);
    if (!p) abort();
    return p;
}

/* pass-through tail call through a function pointer at -O2 (`jmp [rip+g_alloc]`) */
__attribute__((noinline)) void *via_ptr_tail(size_t n) { return g_alloc(n + 1); }

/* nine more pass-through calls through the pointer: xmalloc's trampoline looks them
 * up in its descriptor's table (more than it compares inline) */
#define PTW(k) \
    __attribute__((noinline)) void *ptw##k(size_t n) { void *p = g_alloc(n); if (!p) abort(); return p; }
PTW(0) PTW(1) PTW(2) PTW(3) PTW(4) PTW(5) PTW(6) PTW(7) PTW(8)
static void *(*const ptws[])(size_t) = {ptw0, ptw1, ptw2, ptw3, ptw4, ptw5, ptw6, ptw7, ptw8};

/* classified: the size is fixed here */
__attribute__((noinline)) void *make_node(void) {
    void *p = xmalloc(48);
    memset(p, 0, 48);
    return p;
}

int main(int argc, char **argv) {
    unsigned long sum = 0;
    void *keep[64];
    int k = 0;
    for (int i = 0; i < 10; i++) {
        char *a = xmalloc_hdr(10 + i);
        char *b = wrap_tail(20 + i);
        char *c = via_ptr(30 + i);
        char *d = make_node();
        char *t = via_ptr_tail(40 + i);
        free(ptws[i % 9](50 + i));
        char *e = malloc(100 + i);               /* classified, marked */
        char *s = strdup(argc > 5 ? argv[1] : "a string to copy"); /* classified, marked */
        sum += (unsigned long)strlen(s) + (unsigned long)(a != b) + (unsigned long)(c != d) + (unsigned long)(e != 0);
        free(a - 8); free(b); free(c); free(e); free(t);
        keep[k++] = d;
        keep[k++] = s;
    }
    /* imports the runtime does not interpose */
    char *line = NULL;
    size_t cap = 0;
    FILE *f = fmemopen("first line\nsecond line\n", 23, "r");
    while (f && getline(&line, &cap, f) > 0)
        sum += strlen(line);
    if (f) fclose(f);
    char *msg = NULL;
    if (asprintf(&msg, "%s-%d-%d-%d-%d-%d-%d-%d", "many", 1, 2, 3, 4, 5, 6, 7) < 0) return 1;
    printf("%s %lu %s", msg, sum, line);
    free(msg);
    free(line);
    for (int i = 0; i < k; i++) free(keep[i]);
    return 0;
}
