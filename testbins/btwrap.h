/* Allocation wrappers of btalloc (btwrap.c): each prints, from inside the hooked
 * allocator, the caller chain glibc's backtrace() returns. Own TU, so gcc cannot
 * inline them into btalloc.c's callers. */
#ifndef BTWRAP_H
#define BTWRAP_H
#include <stddef.h>

void *bt_alloc(size_t n);        /* alloc size=0: malloc, then print the chain */
void *bt_tail(size_t n);         /* alloc size=0: return bt_alloc(n + 8) — a tail call at -O2 */
void *bt_outer(size_t n);        /* alloc size=0: bt_alloc(n + 16) + 16 — a nested, non-tail call */
void bt_outer_free(void *p);     /* free ptr=0: free(p - 16) */
void print_chain(const char *who);
#endif
