#ifndef EDGE_H
#define EDGE_H
#include <stddef.h>
/* Launch-pad edge cases for the rewriter (edge.c). */
extern int (*alloc_reclaim)(size_t n);
void *retry_alloc(size_t n);              /* alloc size=0; retries via alloc_reclaim */
void *pad_alloc(size_t n);                /* alloc size=0; -O2: a loop branches back to the entry */
extern unsigned long pad_steps;
void *pad_count_alloc(size_t n);          /* alloc size=0; -O2: a loop branches to entry + 2 */
void *tracked_alloc(size_t n, const char *file, int line, const char *func,
                    int flags, int zero, void *owner);   /* alloc size=0; 7th argument on the stack */
const void *tracked_owner(const void *p);
const char *tracked_func(const void *p);
void tracked_free(void *p);               /* free ptr=0 */
void *maybe_alloc(size_t n);              /* alloc size=0; -O2: test; je; jmp malloc; xor; ret */
void wrappers_fatal(const char *fmt, ...); /* wrappers.c: prints, exit(3); not declared noreturn */
void *die_alloc(size_t n);                /* alloc size=0; NULL → wrappers_fatal, then a dead jmp back */
#endif
