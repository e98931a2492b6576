/* btalloc: glibc backtrace() inside a hooked allocator returns the full caller
 * chain (see btwrap.c). main → level1 → level2 → bt_alloc; main → tail_level1 →
 * tail_level2 → bt_tail ⇒ bt_alloc (tail call at -O2); main → nested_level1 →
 * nested_level2 → bt_outer → bt_alloc. The levels use the block after the call,
 * so none is a tail call. Output: one chain per allocation and a checksum. */
#include "btwrap.h"
#include <stdio.h>
#include <stdlib.h>

__attribute__((noinline)) int level2(size_t n) {
    unsigned char *p = bt_alloc(n);
    int s = p[0] + p[n - 1];
    free(p);
    return s + 1;
}

__attribute__((noinline)) int level1(size_t n) {
    return level2(n) + 1;
}

__attribute__((noinline)) int tail_level2(size_t n) {
    unsigned char *p = bt_tail(n);
    int s = p[0] + p[n + 7];
    free(p);
    return s + 2;
}

__attribute__((noinline)) int tail_level1(size_t n) {
    return tail_level2(n) + 2;
}

__attribute__((noinline)) int nested_level2(size_t n) {
    unsigned char *p = bt_outer(n);
    int s = p[0] + p[n - 1];
    bt_outer_free(p);
    return s + 3;
}

__attribute__((noinline)) int nested_level1(size_t n) {
    return nested_level2(n) + 3;
}

int main(void) {
    int sum = 0;
    sum += level1(24);
    sum += tail_level1(40);
    sum += nested_level1(56);
    printf("sum %d\n", sum);
    return 0;
}
