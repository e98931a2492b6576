/* Allocates N blocks through one wrapper (N from argv[1]) and prints a checksum: run
 * several times by one shell, the tracer's quiet spell is the program's, not each
 * process's. */
#include <stdio.h>
#include <stdlib.h>

__attribute__((noinline)) void *xalloc(size_t n)
{
    void *p = malloc(n);
    if (!p)
        abort();
    return p;
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 1000;
    unsigned long h = 0;
    for (long i = 0; i < n; i++) {
        char *p = xalloc(16 + (size_t)(i % 64));
        p[0] = (char)i;
        h = h * 31 + (unsigned char)p[0];
        free(p);
    }
    printf("%ld blocks, hash %lx\n", n, h);
    return 0;
}
