#include <stdio.h>
#include <stdlib.h>
#include <string.h>
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t m);
void xfree(void *p);
void *wrap_tail(size_t n);
void *alloc7(int a, int b, int c, int d, int e, size_t n, long tag);
void *scaled_alloc(double scale, size_t n);
unsigned long bump_many(unsigned k);

int main(int argc, char **argv) {
    unsigned long sum = 0;
    for (int i = 0; i < 50; i++) {
        char *s = xmalloc(32 + i);
        snprintf(s, 32, "item %d", i);
        sum += strlen(s) * (unsigned)i;
        int *v = xcalloc(i + 1, sizeof(int));
        v[i] = i * i;
        sum += (unsigned)v[i];
        xfree(v);
        xfree(s);
    }
    char *t = wrap_tail(10);
    strcpy(t, "tail");
    char *q = alloc7(1, 2, 3, 4, 5, 64, 424242L);
    double d = 2.5;
    char *r = scaled_alloc(d, 8);
    memset(r, 'x', 19);
    r[19] = 0;
    printf("sum=%lu tail=%s seven=%s scaled=%s bump=%lu\n", sum, t, q, r, bump_many(1000));
    fprintf(stderr, "argc=%d\n", argc);
    if (argc > 1 && !strcmp(argv[1], "oom")) xmalloc((size_t)-1 / 2);
    if (argc > 1 && !strcmp(argv[1], "maps")) {
        FILE *m = fopen("/proc/self/maps", "r");
        int c;
        while (m && (c = fgetc(m)) != EOF) putchar(c);
    }
    xfree(t); xfree(q); xfree(r);
    return 3;
}
