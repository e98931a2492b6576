/* Unmodified program using libhooked.so (see libhooked.c). */
#include <stdio.h>
#include <stdlib.h>
void *lib_alloc(size_t n);
void *lib_zalloc(size_t n);
void *lib_realloc(void *p, size_t n);
void lib_free(void *p);
int main(void) {
    void *keep[4];
    for (int i = 0; i < 10; i++) {
        void *p = lib_alloc(100);
        void *q = lib_zalloc(50);
        p = lib_realloc(p, 300);
        lib_free(p);
        lib_free(q);
    }
    for (int i = 0; i < 4; i++) keep[i] = lib_alloc(1000);
    printf("libuser ok %p\n", keep[0]);
    return 0;
}
