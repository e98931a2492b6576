/* Allocators whose size is computed, or passed in unusual positions/types.
 * See sizes.expect. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "sizealloc.h"

#define REC_MAGIC 0x52454331u

struct rec *rec_alloc(size_t n)
{
    struct rec *r = malloc(n * sizeof(struct item) + sizeof(struct rec));
    if (r == NULL) {
        fputs("rec_alloc: out of memory\n", stderr);
        exit(3);
    }
    r->magic = REC_MAGIC;
    r->count = (uint32_t)n;
    return r;
}

/* -O2: imul %rsi,%rdi; jmp malloc@plt */
void *arr_alloc(size_t count, size_t size)
{
    return malloc(count * size);
}

/* zlib passes item counts and sizes as `unsigned`: zero-extended to size_t. */
void *ucalloc(unsigned items, unsigned size)
{
    return calloc(items, size);
}

/* A header in front of the block records who asked; the caller gets the rest. */
struct tag_hdr { const char *name; long tag; };

void *tagged_alloc(int tag, const char *name, size_t n)
{
    struct tag_hdr *h = malloc(sizeof *h + n);
    if (h == NULL)
        return NULL;
    h->name = name;
    h->tag = tag;
    return h + 1;
}

const char *tag_name(const void *p)
{
    return ((const struct tag_hdr *)p - 1)->name;
}

void tagged_free(void *p)
{
    free((struct tag_hdr *)p - 1);
}

struct arena_hdr { void *owner; int flags; int pad; };

void *arena_new(void *owner, int flags, int zero, size_t n)
{
    struct arena_hdr *h = malloc(sizeof *h + n);
    if (h == NULL)
        abort();
    h->owner = owner;
    h->flags = flags;
    if (zero)
        memset(h + 1, 0, n);
    return h + 1;
}

void arena_free(void *p)
{
    free((struct arena_hdr *)p - 1);
}

/* sphinx3-style int32 size: -O2 movslq %edi,%rdi before the call. */
void *alloc_i32(int32_t n)
{
    if (n < 0)
        return NULL;
    return malloc((size_t)n);
}

/* -O2: mov %edi,%edi; jmp malloc@plt */
void *alloc_u32(unsigned n)
{
    return malloc(n);
}

int get_buf(void **out, size_t n)
{
    void *p = malloc(n);
    if (p == NULL)
        return -1;
    *out = p;
    return 0;
}

int make_line(size_t len, char **out)
{
    char *s = malloc(len + 1);
    if (s == NULL)
        return -1;
    memset(s, '-', len);
    s[len] = '\0';
    *out = s;
    return 0;
}

/* A constant-propagation clone: both callers pass the same `magic`, so at -O2
 * gcc emits rec_grow.constprop.0(n) with the constant folded in (n stays in %rdi). */
static __attribute__((noinline)) struct rec *rec_grow(size_t n, uint32_t magic)
{
    struct rec *r = malloc(n * sizeof(struct item) + sizeof(struct rec));
    if (r == NULL)
        abort();
    r->magic = magic;
    r->count = (uint32_t)n;
    return r;
}

struct rec *rec_small(size_t n)
{
    return rec_grow(n + 4, REC_MAGIC);
}

struct rec *rec_big(size_t n)
{
    return rec_grow(n * 8, REC_MAGIC);
}

/* An IPA-SRA clone: alloc_for reads only s->nbytes, so at -O2 gcc emits
 * alloc_for.isra.0(size_t nbytes) and its caller passes the loaded field by
 * value. At -O0, alloc_for(s) gets its size from memory (*s), not from an
 * argument: an allocator without a size role (and so is spec_alloc). */
static __attribute__((noinline)) void *alloc_for(const struct spec *s)
{
    void *p = malloc(s->nbytes);
    if (p == NULL)
        abort();
    return p;
}

void *spec_alloc(const struct spec *s)
{
    void *p = alloc_for(s);
    if (s->zero)
        memset(p, 0, s->nbytes);
    return p;
}

/* A partial-inlining split: the cheap header (reuse the one cached block) is
 * inlined into cached_pair below, and at -O2 gcc moves the rest (malloc path)
 * into cached_alloc.part.0(c, n) — same argument positions. cached_alloc
 * itself stays: header + `jmp cached_alloc.part.0`. The recycled block is
 * loaded through the argument c and handed over (c->slot = NULL). */
void *cached_alloc(struct cache *c, size_t n)
{
    if (n <= 16 && c->slot != NULL) {
        void *p = c->slot;
        c->slot = NULL;
        return p;
    }
    void *p = malloc(n < 16 ? 16 : n);
    if (p == NULL) {
        fprintf(stderr, "cached_alloc: %zu bytes failed\n", n);
        exit(1);
    }
    c->misses++;
    c->bytes += n;
    memset(p, 0, n);
    return p;
}

/* Small blocks go back to the one-slot cache, others to free(). */
void cached_free(struct cache *c, void *p, size_t n)
{
    if (n <= 16 && c->slot == NULL)
        c->slot = p;
    else
        free(p);
}

/* Two blocks: the second is stored in the first, the first is returned. */
void **cached_pair(struct cache *c, size_t a, size_t b)
{
    void **v = cached_alloc(c, a);
    v[0] = cached_alloc(c, b);
    return v;
}

/* strdup-like: the copy is sized by the string, not by an argument: an
 * allocation function without a role, never a constructor. noinline: the call
 * from default_name must survive at -O2. */
__attribute__((noinline)) char *dup_name(const char *s)
{
    char *d = strdup(s);
    if (d == NULL)
        abort();
    return d;
}

/* A constructor: a copy of a literal, its size (8) fixed inside. */
char *default_name(void)
{
    return dup_name("default");
}

/* gcc's partial inlining (ipa-split) cuts bzip2's BZ2_bzWriteClose64 into its
 * entry tests, which stay (and get inlined into callers), and a clone
 * BZ2_bzWriteClose64.part.0 holding the body. The body here carries that
 * clone's name (an asm label) to pin the shape at every optimization level. */
void wfile_close_body(int *err, struct wfile *w) __asm__("wfile_close.part.0");
__attribute__((noinline)) void wfile_close_body(int *err, struct wfile *w)
{
    if (w->err != 0) {          /* an earlier write failed: report it, keep w */
        if (err != NULL)
            *err = w->err;
        return;
    }
    if (err != NULL)
        *err = 0;
    free(w->buf);
    free(w);
}

void wfile_close(int *err, struct wfile *w)
{
    if (w == NULL) {
        if (err != NULL)
            *err = 0;
        return;
    }
    if (!w->writing) {
        if (err != NULL)
            *err = -1;
        return;
    }
    wfile_close_body(err, w);
}

/* Copies the first word of zIn into a fresh string at *pzWord (SQLite's
 * sqlite3Fts5ConfigParseRank): the length is `p - zIn`, a difference of two
 * pointers into zIn, not a size the caller chose. DWARF declares zIn a
 * pointer, so it is no size role, and storage handed back through an
 * out-parameter without a size makes a constructor. */
int first_word(const char *zIn, char **pzWord)
{
    const char *p = zIn;
    while (*p != '\0' && *p != ' ')
        p++;
    char *w = malloc(1 + (size_t)(p - zIn));
    if (w == NULL)
        return -1;
    memcpy(w, zIn, (size_t)(p - zIn));
    w[p - zIn] = '\0';
    *pzWord = w;
    return 0;
}

/* Keeps up to 8 released nodes on a free list (n->next = a->free; a->free = n),
 * frees the rest: the old head linked into the block is a push, a keep that
 * counts as a release, like the one-slot cache of cached_free. */
void node_release(struct nodepool *a, struct node *n)
{
    if (a->nfree < 8) {
        n->next = a->free;
        a->free = n;
        a->nfree++;
    } else {
        free(n);
    }
}

/* A node holding a copy of a token's text (SQLite's tokenExpr(pParse, op,
 * Token t)): its size follows t.n, a member of a struct passed by value in
 * %rdx. DWARF declares two parameters, so position 2 is no parameter of its
 * own and no size role; stripped, nothing tells. */
char *span_node(int op, struct span t)
{
    char *p = malloc(16 + (size_t)t.n + 1);
    if (p == NULL)
        return NULL;
    memset(p, 0, 16);
    p[0] = (char)op;
    memcpy(p + 16, t.z, t.n);
    p[16 + t.n] = '\0';
    return p;
}

/* Keys for the items of l from index start on (SQLite's
 * sqlite3KeyInfoFromExprList): l->n - start of them. The larger start, the
 * smaller the block: start says where to begin, not how much to allocate, so
 * it is no size role (an alloc without a role, sized from l's count). */
struct keys *keys_from(const struct ilist *l, int start)
{
    int n = l->n - start;
    struct keys *k = malloc(sizeof *k + (size_t)n * sizeof k->key[0]);
    if (k == NULL)
        return NULL;
    k->n = n;
    for (int i = 0; i < n; i++)
        k->key[i] = l->item[start + i];
    return k;
}
