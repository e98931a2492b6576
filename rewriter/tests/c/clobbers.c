/* Which registers a trampoline saves (tests/call_sites.rs
 * trampolines_save_what_callers_may_keep): `bump` is a leaf, so callers compiled with
 * -fipa-ra (gcc's default at -O2) may keep values in the caller-saved registers it
 * leaves alone; `wrap2` reaches malloc's PLT stub through `wrap`, so every caller must
 * assume it clobbers them all. main keeps many values live across the calls. */
#include <stdio.h>
#include <stdlib.h>

static char pool[1 << 20];
static size_t used;

__attribute__((noinline)) void *bump(size_t n) {
    void *p = pool + used;
    used += (n + 15) & ~(size_t)15;
    if (used > sizeof pool) used = 0;
    return p;
}

__attribute__((noinline)) void *wrap(size_t n) { return malloc(n); }

__attribute__((noinline)) void *wrap2(size_t n) { return wrap(n * 2); }

int main(int argc, char **argv) {
    (void)argv;
    unsigned long a = argc, b = 3 * argc, c = 5, d = 7, e = 11, f = 13, g = 17, h = 19;
    for (int i = 0; i < 1000; i++) {
        char *p = bump(16 + i % 64);
        p[0] = (char)i;
        a = a * 31 + b + (unsigned char)p[0];
        b ^= c + i;
        c += d * e;
        d = d * 3 + f;
        e += g ^ h;
        f ^= a >> 3;
        g += b << 1;
        h = h * 7 + c;
        char *q = wrap2(8 + i % 32);
        q[0] = (char)(a ^ h);
        a += (unsigned char)q[0];
        free(q);
    }
    printf("%lu %lu %lu %lu %lu %lu %lu %lu\n", a, b, c, d, e, f, g, h);
    return 0;
}
