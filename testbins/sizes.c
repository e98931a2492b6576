/* Drives sizealloc.c: computed sizes, sizes in the 3rd/4th parameter, int32 and
 * unsigned sizes, out-parameter allocators, a constprop and an isra clone. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "sizealloc.h"

static unsigned sum = 2166136261u;

static void mix(const void *p, size_t n)
{
    const unsigned char *c = p;
    for (size_t i = 0; i < n; i++)
        sum = (sum ^ c[i]) * 16777619u;
}

/* A typed destructor (Lua's freeobj): a switch on the object's kind frees every
 * kind its own way; a kind without a case is no object it is given. */
struct shape { int kind; int n; void *extra; };
void shape_free(struct cache *c, struct shape *s)
{
    switch (s->kind) {
    case 0: free(s); break;
    case 1: tagged_free(s); break;
    case 2: arena_free(s); break;
    case 3: cached_free(c, s, sizeof *s); break;
    case 4: free(s->extra); free(s); break;
    case 5: c->misses++; tagged_free(s); break;
    }
}

static struct shape *shape_make(int kind, struct cache *c)
{
    struct shape *s;
    switch (kind) {
    case 1: case 5: s = tagged_alloc(kind, "shape", sizeof *s); break;
    case 2: s = arena_new(NULL, 0, 1, sizeof *s); break;
    case 3: s = cached_alloc(c, sizeof *s); break;
    default: s = malloc(sizeof *s); break;
    }
    s->kind = kind;
    s->n = kind * 3;
    s->extra = kind == 4 ? malloc(16) : NULL;
    return s;
}

int main(void)
{
    struct rec *r = rec_alloc(10);
    memset(r->items, 0, 10 * sizeof(struct item));   /* padding bytes too: they are checksummed */
    for (unsigned i = 0; i < r->count; i++) {
        r->items[i].weight = i * 0.5;
        r->items[i].id = (int)i;
    }
    mix(r->items, sizeof(struct item) * r->count);

    int *a = arr_alloc(12, sizeof(int));
    for (int i = 0; i < 12; i++) a[i] = i * i;
    mix(a, 12 * sizeof(int));

    short *u = ucalloc(9, sizeof(short));
    mix(u, 9 * sizeof(short));

    char *t = tagged_alloc(7, "seven", 21);
    memset(t, 't', 21);
    mix(t, 21);
    printf("sizes: tagged block belongs to %s\n", tag_name(t));

    char *z = arena_new(&sum, 3, 1, 40);
    mix(z, 40);
    char *nz = arena_new(NULL, 0, 0, 8);
    memset(nz, 'n', 8);
    mix(nz, 8);

    char *i32 = alloc_i32(17);
    memset(i32, 'i', 17);
    mix(i32, 17);
    void *neg = alloc_i32(-1);              /* refused: returns NULL */
    char *u32 = alloc_u32(19u);
    memset(u32, 'u', 19);
    mix(u32, 19);

    void *buf = NULL;
    int st = get_buf(&buf, 33);
    memset(buf, 'b', 33);
    mix(buf, 33);
    char *line = NULL;
    int st2 = make_line(30, &line);
    printf("sizes: get_buf %d make_line %d \"%s\"\n", st, st2, line);

    struct rec *s = rec_small(2), *b = rec_big(3);
    printf("sizes: rec counts %u %u %u\n", r->count, s->count, b->count);
    memset(s->items, 1, s->count * sizeof(struct item));
    memset(b->items, 2, b->count * sizeof(struct item));
    mix(s->items, s->count * sizeof(struct item));
    mix(b->items, b->count * sizeof(struct item));

    struct spec sp = { "spec", 24, 1 };
    char *spa = spec_alloc(&sp);
    mix(spa, 24);

    struct cache cc = { NULL, 0, 0 };
    for (int i = 0; i < 6; i++) {
        char *c1 = cached_alloc(&cc, 8 + (size_t)i * 4);   /* 8..28 bytes; small ones recycle */
        memset(c1, 'c', 8 + (size_t)i * 4);
        mix(c1, 8 + (size_t)i * 4);
        cached_free(&cc, c1, 8 + (size_t)i * 4);
    }
    void **pair = cached_pair(&cc, 24, 12);
    memset(pair[0], 'p', 12);
    mix(pair[0], 12);
    printf("sizes: cache misses %ld, bytes %ld\n", cc.misses, cc.bytes);
    cached_free(&cc, pair[0], 12);
    cached_free(&cc, pair, 24);
    for (int k = 0; k < 6; k++)
        shape_free(&cc, shape_make(k, &cc));
    printf("sizes: shapes freed, cache misses %ld\n", cc.misses);
    int werr[2];
    for (int i = 0; i < 2; i++) {
        struct wfile *w = malloc(sizeof *w);
        w->writing = 1;
        w->err = i ? -6 : 0;
        w->buf = malloc(32);
        wfile_close(&werr[i], w);
        if (werr[i] != 0) {     /* a failed close keeps w */
            free(w->buf);
            free(w);
        }
    }
    printf("sizes: wfile closes %d %d\n", werr[0], werr[1]);
    free(cc.slot);

    char *nm = dup_name("sizes"), *dn = default_name();
    char *fw = NULL;
    if (first_word("first words", &fw) == 0) {
        printf("sizes: first word %s\n", fw);
        free(fw);
    }
    printf("sizes: names %s %s\n", nm, dn);
    free(nm);
    free(dn);

    free(r); free(a); free(u); tagged_free(t); arena_free(z); arena_free(nz);
    free(i32); free(u32); free(buf); free(line); free(s); free(b); free(spa);
    printf("sizes: alloc_i32(-1) %s, checksum %08x\n", neg ? "allocated" : "refused", sum);
    struct nodepool np = { NULL, 0 };
    for (int i = 0; i < 10; i++)
        node_release(&np, malloc(sizeof(struct node)));
    int nfree = np.nfree;
    while (np.free != NULL) {
        struct node *nx = np.free->next;
        free(np.free);
        np.free = nx;
    }
    printf("sizes: node_release kept %d\n", nfree);
    struct span spn = { "spanned text", 7 };
    char *sn = span_node(3, spn);
    printf("sizes: span_node %d %s\n", sn[0], sn + 16);
    free(sn);
    struct ilist il = { 5, { 1, 2, 3, 4, 5 } };
    struct keys *ks = keys_from(&il, 2);
    printf("sizes: keys_from %d keys, first %d\n", ks->n, ks->key[0]);
    free(ks);
    return 0;
}
