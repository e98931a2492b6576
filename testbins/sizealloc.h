/* Size arithmetic and argument positions (sizealloc.c). */
#ifndef SIZEALLOC_H
#define SIZEALLOC_H
#include <stddef.h>
#include <stdint.h>

struct item { double weight; int id; };          /* 16 bytes */
struct rec { uint32_t magic; uint32_t count; struct item items[]; };  /* header: 8 bytes */
struct spec { const char *what; size_t nbytes; int zero; };

struct rec *rec_alloc(size_t n);                 /* n * sizeof(struct item) + sizeof(struct rec) */
void *arr_alloc(size_t count, size_t size);      /* malloc(count * size) */
void *ucalloc(unsigned items, unsigned size);    /* calloc with unsigned (zlib-like) sizes */
void *tagged_alloc(int tag, const char *name, size_t n);           /* size in the 3rd parameter */
void *arena_new(void *owner, int flags, int zero, size_t n);       /* size in the 4th parameter */
void *alloc_i32(int32_t n);                      /* int32 size (sign-extended) */
void *alloc_u32(unsigned n);                     /* unsigned size (zero-extended) */
int get_buf(void **out, size_t n);               /* out-parameter allocator, returns status */
int make_line(size_t len, char **out);           /* out-parameter second, size first */
struct rec *rec_small(size_t n);                 /* → rec_grow.constprop.0 at -O2 */
struct rec *rec_big(size_t n);
void *spec_alloc(const struct spec *s); /* → alloc_for.isra.0 at -O2 */
struct cache { void *slot; long misses, bytes; };
void *cached_alloc(struct cache *c, size_t n);   /* → cached_alloc.part.0 at -O2 */
void cached_free(struct cache *c, void *p, size_t n);
void **cached_pair(struct cache *c, size_t a, size_t b);  /* a >= sizeof(void *) */
const char *tag_name(const void *p);
void tagged_free(void *p);
void arena_free(void *p);
char *dup_name(const char *s);                   /* strdup(s): sized by the string */
char *default_name(void);                        /* dup_name("default"): a constructor */
struct wfile { int writing; int err; char *buf; };
void wfile_close(int *err, struct wfile *w);     /* entry tests, then wfile_close.part.0 */
int first_word(const char *zIn, char **pzWord);  /* copies zIn's first word to *pzWord */
struct node { struct node *next; long v; };
struct nodepool { struct node *free; int nfree; };
void node_release(struct nodepool *a, struct node *n);   /* free list of 8, then free */
struct span { const char *z; unsigned n; };
char *span_node(int op, struct span t);          /* 16-byte header + a copy of t's text */
struct ilist { int n; int item[16]; };
struct keys { int n; int key[]; };
struct keys *keys_from(const struct ilist *l, int start);   /* l->n - start keys */
#endif
