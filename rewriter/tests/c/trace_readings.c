/* Observations that allow more than one reading of a function's roles.
 * z_alloc(opaque, items, size) is always called with size 1 (as bzip2 calls its
 * bzalloc): malloc(items * size) returns `items` bytes, which fits size=items as well
 * as count=items size=size; the code says the latter.
 * make_name(dir, base, extra) is always called with the same strings, so it always
 * returns 14 bytes: a constant size, but from its arguments, not a constructor.
 * drop_lists(ctx, first, n, second) frees first and second, but first is always NULL.
 * new_node(tag) returns 24 bytes whatever tag it gets: a constructor, though a few tags
 * (16, 19, 22) are a small header's length short of 24 and look like its size. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

__attribute__((noinline)) void *z_alloc(void *opaque, int items, int size) {
    (void)opaque;
    return malloc((size_t)items * (size_t)size);
}

__attribute__((noinline)) char *make_name(const char *dir, const char *base, size_t extra) {
    size_t n = strlen(dir) + strlen(base) + extra + 2;
    char *s = malloc(n);
    if (s)
        snprintf(s, n, "%s/%s", dir, base);
    return s;
}

struct node { long tag; struct node *next; long pad; };

__attribute__((noinline)) struct node *new_node(long tag) {
    struct node *n = malloc(sizeof *n);
    if (n) { n->tag = tag; n->next = 0; }
    return n;
}

/* Frees both lists; the workload never has a first one (as SQLite's
 * sqlite3CreateForeignKey(pParse, pFromCol, pTo, pToCol, flags) with one column). */
__attribute__((noinline)) void drop_lists(void *ctx, void *first, long n, void *second) {
    (void)ctx;
    (void)n;
    free(first);
    free(second);
}

/* Called once, with only a pointer: one size proves nothing about its being constant. */
__attribute__((noinline)) char *copy_text(const char *s) {
    char *c = malloc(strlen(s) + 1);
    if (c)
        strcpy(c, s);
    return c;
}

int main(int argc, char **argv) {
    int rounds = argc > 1 ? atoi(argv[1]) : 200;
    unsigned long sum = 0;
    for (int i = 0; i < rounds; i++) {
        char *p = z_alloc(0, 16 + i, 1);
        char *s = make_name("outdir", "file", 1);
        struct node *n = new_node(i * 3 + 1);
        if (!p || !s || !n)
            return 1;
        p[0] = (char)i;
        sum += (unsigned char)p[0] + strlen(s) + (unsigned long)n->tag;
        drop_lists(0, 0, i, p);
        free(s);
        free(n);
    }
    char *c = copy_text(argv[0]);
    printf("%lu %d\n", sum, c != 0);
    free(c);
    return 0;
}
