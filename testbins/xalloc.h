/* Allocation wrappers shared by wrappers, stress and demo (xalloc.c).
 * They live in their own translation unit so gcc cannot inline them into callers
 * (no LTO): every call from main's TU is a real call the rewriter can hook. */
#ifndef XALLOC_H
#define XALLOC_H
#include <stddef.h>

void *xmalloc(size_t n);                  /* alloc size=0, exits on failure */
void *xcalloc(size_t n, size_t sz);       /* alloc count=0 size=1, aborts on failure */
void *xrealloc(void *p, size_t n);        /* realloc ptr=0 size=1 */
void xfree(void *p);                      /* free ptr=0 */
void *try_malloc(size_t n);               /* alloc size=0, returns NULL on failure */

/* Wrapper of a wrapper of a wrapper: buf_alloc -> mem_alloc -> xmalloc -> malloc. */
void *mem_alloc(size_t n);
void *buf_alloc(size_t n);

/* Tail-call wrappers. */
void *alloc16(size_t n);                  /* return malloc(n << 4): shl + jmp */
void *plain_malloc(size_t n);             /* return malloc(n): exactly one 5-byte jmp at -O2 */
void *xmalloc_alias(size_t n);            /* one 2-byte jmp rel8 at -O2 (< 5 bytes) */

/* Calls cb(p, n, arg) on the fresh block before returning it; cb may longjmp. */
typedef void alloc_cb(void *p, size_t n, void *arg);
void *xmalloc_cb(size_t n, alloc_cb *cb, void *arg);
#endif
