#include <stdio.h>
#include <stdlib.h>
void *lib_alloc(size_t n);
char *lib_strdup(const char *s);
void lib_free(void *p);
int main(void) {
    unsigned long sum = 0;
    for (int i = 0; i < 20; i++) { char *p = lib_strdup("hello, library"); sum += (unsigned long)p[i % 14]; lib_free(p); }
    char *z = lib_alloc(100); sum += z[99]; lib_free(z);
    printf("sum=%lu\n", sum);
    return 0;
}
