/* Allocation hooks kept in a global slot (slotalloc.c), saved and restored by
 * hookslots.c the way programs save and restore signal handlers and allocation
 * hooks. */
#ifndef SLOTALLOC_H
#define SLOTALLOC_H
#include <stddef.h>

typedef void *(*alloc_hook)(size_t);

extern alloc_hook cur_alloc;              /* statically plain_alloc */

void *plain_alloc(size_t n);              /* alloc size=0 */
void *counting_alloc(size_t n);           /* alloc size=0, counts its calls */
void *hook_alloc(size_t n);               /* alloc size=0: cur_alloc(n) */
long counted_allocs(void);

#endif
