/* Negatives: each of these calls an allocator or has size-like parameters,
 * and none is an allocation function. See negatives.expect for why. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "notalloc.h"

/* Calls malloc but keeps the pointer in a global; returns an int status. */
static char *cache;
static size_t cache_len;

int cache_init(size_t n)
{
    free(cache);
    cache = malloc(n);
    if (cache == NULL)
        return -1;
    memset(cache, 0, n);
    cache_len = n;
    return 0;
}

/* A void function that ends by storing a fresh block: at -O2 rax still holds
 * malloc's result at the `ret`, so without DWARF (the stripped build) only its
 * callers tell it returns nothing: none of them reads rax after the call. */
void cache_swap(size_t n)
{
    free(cache);
    cache_len = n;
    cache = calloc(n, 1);   /* last: its result is still in rax at the ret */
}

void cache_put(size_t i, char c)
{
    if (i < cache_len)
        cache[i] = c;
}

char cache_get(size_t i)
{
    return i < cache_len ? cache[i] : 0;
}

/* Frees a global, no argument involved. */
void cache_drop(void)
{
    free(cache);
    cache = NULL;
    cache_len = 0;
}

/* Returns a pointer into static storage. */
static char sbuf[256];

char *static_buf(size_t n)
{
    if (n > sizeof sbuf)
        return NULL;
    memset(sbuf, 0, n);
    return sbuf;
}

/* Bumps through a static array: pointers into static storage, not heap. */
static char scratch[1024];
static size_t scratch_used;

char *scratch_take(size_t n)
{
    if (n > sizeof scratch - scratch_used)
        scratch_used = 0;
    char *r = scratch + scratch_used;
    scratch_used += n;
    return r;
}

/* strlen-like: size-ish parameters, size-ish result. */
size_t my_strnlen(const char *s, size_t maxlen)
{
    size_t i = 0;
    while (i < maxlen && s[i] != '\0')
        i++;
    return i;
}

size_t checksum(const void *p, size_t n)
{
    const unsigned char *c = p;
    size_t h = 5381;
    for (size_t i = 0; i < n; i++)
        h = h * 33 + c[i];
    return h;
}

/* Allocates, uses and frees a temporary; returns an int. */
int scratch_sum(size_t n)
{
    int *t = malloc(n * sizeof(int));
    if (t == NULL)
        return -1;
    int s = 0;
    for (size_t i = 0; i < n; i++) {
        t[i] = (int)(i * 3);
        s += t[i];
    }
    free(t);
    return s;
}

/* Mallocs a temporary and frees it before returning; returns its argument. */
char *fill_via_temp(char *dst, size_t n)
{
    char *tmp = malloc(n);
    if (tmp == NULL)
        return NULL;
    for (size_t i = 0; i < n; i++)
        tmp[i] = (char)('A' + i % 26);
    memcpy(dst, tmp, n);
    free(tmp);
    return dst;
}

/* Returns a pointer loaded from an array argument. */
void *first_of(void **arr, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (arr[i] != NULL)
            return arr[i];
    return NULL;
}

/* memcpy returns its first argument: a pointer and a size in, no fresh storage. */
void *copy_into(void *dst, const void *src, size_t n)
{
    return memcpy(dst, src, n);
}

/* Keeps the block in a member of its argument (h->buf, at offset 8) and
 * returns an int status: an initializer, not an allocator. (Were buf the first
 * member, the machine code would be that of `int get_buf(void **out, size_t n)`
 * — an out-parameter allocator — so the member is deliberately not first.) */
int handle_open(struct handle *h, size_t n)
{
    h->buf = malloc(n);
    if (h->buf == NULL)
        return -1;
    h->len = n;
    h->fd = 3;
    return 0;
}

/* Frees memory reached through the argument (h->buf), not the argument. */
void handle_close(struct handle *h)
{
    free(h->buf);
    h->buf = NULL;
    h->len = 0;
}

/* A growable array whose block lives in the struct's FIRST member (git's
 * `list->items`, perl's `my_perl->Istack_sp`): realloc's result is stored at
 * offset 0 of the argument, which looks like `*out = block` until one sees the
 * argument used at other offsets too. Returns a status, not storage. */
int vec_grow(struct vec *v, size_t n)
{
    char **items = realloc(v->items, n * sizeof *items);
    if (items == NULL)
        return -1;
    v->items = items;
    v->alloc = n;
    return 0;
}

/* Takes ownership of s: appends it, or frees it when the array cannot grow.
 * On success the block is kept in an array element, a container, not a free
 * list, so this is no free function either. */
int vec_take(struct vec *v, char *s)
{
    if (v->nr == v->alloc && vec_grow(v, v->alloc * 2 + 4) != 0) {
        free(s);
        return -1;
    }
    v->items[v->nr++] = s;
    return 0;
}

/* The address of the next element, growing the array first when it is full
 * (Lua's allocupvalue): right after the realloc, the result plus a scaled
 * index is an element of the fresh block, not the block. */
char **vec_slot(struct vec *v)
{
    if (v->nr == v->alloc) {
        size_t n = v->alloc * 2 + 4;
        char **items = realloc(v->items, n * sizeof *items);
        if (items == NULL)
            return NULL;
        v->items = items;
        v->alloc = n;
        return &items[v->nr++];
    }
    return &v->items[v->nr++];
}

/* Appends to a list whose header holds its own capacity (SQLite's
 * sqlite3ExprListAppend, sqlite3IdListAppend): grows the list with realloc to
 * a size it reads from the list, and returns the (possibly moved) list. The
 * new size comes from no parameter: the container chooses it, so this is no
 * realloc-kind allocation function; the caller's site is the list append. */
struct plist *plist_push(struct plist *l, void *x)
{
    if (l->n == l->cap) {
        l->cap *= 2;
        struct plist *nl = realloc(l, sizeof *l + (size_t)l->cap * sizeof l->items[0]);
        if (nl == NULL) {
            free(l);
            return NULL;
        }
        l = nl;
    }
    l->items[l->n++] = x;
    return l;
}

/* Holds a reference on a shared object while it works and drops it at the
 * end (SQLite's rtreeUpdate: rtreeReference, then rtreeRelease's
 * `if (--p->nBusy == 0) free`). The test after the decrement is a reference
 * count reaching zero, not a check of the object's state that refuses it: the
 * object is freed only by the last holder, so this is no free function. */
int shared_update(struct shared *o, int v)
{
    o->busy++;
    int old = o->val;
    o->val = v;
    printf("shared: %d -> %d\n", old, v);
    int n = o->busy - 1;
    o->busy = n;
    if (n == 0)
        free(o);
    return old;
}

/* Hands out numbers: a field reached through the argument, advanced by one
 * from its own old value, which is returned, the shape of a bump allocator
 * (`p = pool->used; pool->used += n; return p`). Without DWARF only the step
 * tells them apart: no pool hands out pieces one byte apart. */
long ticket_take(struct tickets *t)
{
    return t->next++;
}

/* Mallocs, links the block into a global list AND returns it: the caller does
 * not own it (registry_clear frees it). Still fresh storage returned, so it is
 * an allocator; listed positively in negatives.expect to show where the line is. */
struct reg { struct reg *next; size_t n; };
static struct reg *registry;
static size_t nreg;

void *registry_add(size_t n)
{
    struct reg *r = malloc(sizeof *r + n);
    if (r == NULL)
        return NULL;
    r->next = registry;
    r->n = n;
    registry = r;
    nreg++;
    return r + 1;
}

size_t registry_count(void)
{
    return nreg;
}

void registry_clear(void)
{
    while (registry != NULL) {
        struct reg *n = registry->next;
        free(registry);
        registry = n;
        nreg--;
    }
}

/* Takes a string to hold (SQLite's sqlite3VdbeMemSetStr): NULL is refused, a
 * string too long for the holder is released, any other is copied and the
 * caller keeps its own. Only the NULL edge of the test excuses a path from
 * releasing s; the copy path neither frees nor keeps it: no free function. */
int holder_set(struct holder *h, char *s, size_t n)
{
    if (s == NULL)
        return -1;
    if (n > h->limit) {
        free(s);
        return -2;
    }
    h->text = malloc(n + 1);
    if (h->text == NULL)
        return -3;
    memcpy(h->text, s, n);
    h->text[n] = '\0';
    return 0;
}

/* Takes ownership of cols (SQLite's sqlite3BeginTrigger): on success the list
 * moves into a fresh trigger that the context keeps, and the local is cleared;
 * the cleanup deletes whatever is still owned. At -O0 the deletion's argument
 * is `cols` or NULL: on the success path it frees nothing, so this is no free. */
void trig_begin(struct parse *ps, const char *name, struct cols *cols)
{
    struct trig *t = NULL;
    if (name == NULL || name[0] == '\0')
        goto cleanup;
    t = malloc(sizeof *t);
    if (t == NULL)
        goto cleanup;
    t->name = name;
    t->cols = cols;
    cols = NULL;
    ps->trig = t;
    ps->ntrig++;
cleanup:
    free(cols);
}

/* Grows w->pages to hold page i and hands that page back through *out (SQLite's
 * walIndexPageRealloc). Only on the failure path does *out get realloc's
 * result, and there it is NULL: no storage comes back through *out. */
int pages_get(struct pages *w, int i, char **out)
{
    if (w->n <= i) {
        char **a = realloc(w->pages, sizeof(char *) * (size_t)(i + 1));
        if (a == NULL) {
            *out = (char *)a;
            return -1;
        }
        memset(&a[w->n], 0, sizeof(char *) * (size_t)(i + 1 - w->n));
        w->pages = a;
        w->n = i + 1;
    }
    *out = w->pages[i];
    return 0;
}

/* A thread-pool task (zstd's COVER_tryParameters): mallocs scratch buffers,
 * works, frees them and, last, the task it was handed. Releasing the task is
 * the end of the job, not what the function is for. */
void scratch_task(void *opaque)
{
    struct task *tk = opaque;
    char *buf = malloc(tk->n);
    long sum = 0;
    if (buf != NULL) {
        memset(buf, 7, tk->n);
        for (size_t i = 0; i < tk->n; i++)
            sum += buf[i];
    }
    *tk->result = sum;
    free(buf);
    free(tk);
}

/* Makes room for `extra` more items (SQLite's sqlite3SrcListEnlarge): the new
 * capacity is computed from the count the list holds, 2 * n + extra. The
 * caller asks for room, not for a size: no realloc function. */
struct plist *plist_reserve(struct plist *l, int extra)
{
    if (l->n + extra > l->cap) {
        int cap = 2 * l->n + extra;
        struct plist *nl = realloc(l, sizeof *l + (size_t)cap * sizeof l->items[0]);
        if (nl == NULL)
            return NULL;
        l = nl;
        l->cap = cap;
    }
    return l;
}

/* Attaches part to w, or deletes it when there is no w (SQLite's
 * sqlite3WindowAssemble / sqlite3WindowAttach). Keeping part in w->part is
 * taking ownership, not caching it: the slot is overwritten, not found empty,
 * and nothing links its old value. No free function. */
void part_attach(struct win *w, struct part *part)
{
    if (w != NULL) {
        w->part = part;
        w->nattach++;
    } else {
        free(part);
    }
}

__attribute__((noinline)) int shared_error(struct shared *o, int v)
{
    printf("shared: error %d\n", v);
    return o->val + v;
}

/* As shared_update, with several paths into the release: gcc tests the
 * decremented count before storing it back (SQLite's rtreeUpdate), and -O0
 * stores it and reads it back from the object to test it. Either way the test
 * is of the counter being written, not of o's state: no free function. */
int shared_work(struct shared *o, int v, int w)
{
    int rc = 0;
    if (o->pad)
        return 5;
    o->busy++;
    if (v > 100) {
        rc = shared_error(o, v);
        goto out;
    }
    for (int i = 0; i < w; i++) {
        if (o->val + i > v) {
            rc = shared_error(o, i);
            goto out;
        }
    }
    if (v < 0) {
        rc = -1;
        goto out;
    }
    o->val += v;
out:
    if (--o->busy == 0)
        free(o);
    return rc;
}
