/* Functions that look like allocators but are not (notalloc.c). */
#ifndef NOTALLOC_H
#define NOTALLOC_H
#include <stddef.h>
int cache_init(size_t n);
void cache_swap(size_t n);
void cache_put(size_t i, char c);
char cache_get(size_t i);
void cache_drop(void);
char *static_buf(size_t n);
char *scratch_take(size_t n);
size_t my_strnlen(const char *s, size_t maxlen);
size_t checksum(const void *p, size_t n);
int scratch_sum(size_t n);
char *fill_via_temp(char *dst, size_t n);
void *first_of(void **arr, size_t n);
void *copy_into(void *dst, const void *src, size_t n);
struct handle { size_t len; char *buf; int fd; };
int handle_open(struct handle *h, size_t n);
void handle_close(struct handle *h);
struct vec { char **items; size_t nr, alloc; };
int vec_grow(struct vec *v, size_t n);
int vec_take(struct vec *v, char *s);
char **vec_slot(struct vec *v);       /* the next element, after growing the array */
struct plist { int n, cap; void *items[]; };
struct shared { long pad; int busy; int val; };
int shared_update(struct shared *o, int v);   /* holds a reference while it works, drops it */
int shared_error(struct shared *o, int v);
int shared_work(struct shared *o, int v, int w);   /* shared_update with several paths to the drop */
struct plist *plist_push(struct plist *l, void *x);   /* appends, growing the list to a size it reads from it */
struct tickets { const char *name; long next; };
long ticket_take(struct tickets *t);
void *registry_add(size_t n);
size_t registry_count(void);
void registry_clear(void);
struct holder {
    char *text;
    size_t limit;
};
int holder_set(struct holder *h, char *s, size_t n);
struct cols { int n; };
struct trig { const char *name; struct cols *cols; };
struct parse { int ntrig; struct trig *trig; };
void trig_begin(struct parse *ps, const char *name, struct cols *cols);   /* takes cols over */
struct pages { int n; char **pages; };
int pages_get(struct pages *w, int i, char **out);
struct task { size_t n; long *result; };
void scratch_task(void *opaque);       /* a pool job: scratch buffers, then frees its task */
struct plist *plist_reserve(struct plist *l, int extra);   /* room for extra more items */
struct part { int v; };
struct win { struct part *part; int nattach; };
void part_attach(struct win *w, struct part *part);   /* attach to w, or delete */

#endif
