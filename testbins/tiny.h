#ifndef TINY_H
#define TINY_H
#include <stddef.h>
void *tiny_new(size_t n);     /* alloc size=0 */
void *tiny_alias(size_t n);   /* alloc size=0; 2 bytes at -O2, no padding after */
void tiny_release(void *p);   /* free ptr=0; a 5-byte `jmp free@plt` at -O2 */
#endif
