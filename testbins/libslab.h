/* libslab: a small size-class allocator in a shared library (libslab.c). */
#ifndef LIBSLAB_H
#define LIBSLAB_H
#include <stddef.h>
void *slab_alloc(size_t n);               /* alloc size=0 */
void *slab_calloc(size_t count, size_t size); /* alloc count=0 size=1 */
void *slab_zalloc(size_t n);              /* alloc size=0 (tail call to slab_calloc) */
void *slab_realloc(void *p, size_t n);    /* realloc ptr=0 size=1 */
void slab_free(void *p);                  /* free ptr=0 */
size_t slab_usable(const void *p);        /* not an allocator */
unsigned long slab_live(void);            /* not an allocator */
#endif
