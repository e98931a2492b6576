/* A "rewritten" shared library (hand-made trampolines) whose allocators an
 * unmodified program calls: the runtime is loaded as this library's dependency,
 * after libc, so it does not interpose malloc and indexes hooked results itself. */
#include "tramp.h"
#include <stdlib.h>

DESC(d_lib_alloc, "lib_alloc", ALLOCSITE_ALLOC, 0, -1, -1, 1)
DESC(d_lib_zalloc, "lib_zalloc", ALLOCSITE_ALLOC, 0, -1, -1, 1)
DESC(d_lib_realloc, "lib_realloc", ALLOCSITE_REALLOC, 1, -1, 0, 2)
DESC(d_lib_free, "lib_free", ALLOCSITE_FREE, -1, -1, 0, 1)
void *lib_alloc(size_t n);
void *lib_zalloc(size_t n);
void *lib_realloc(void *p, size_t n);
void lib_free(void *p);
__attribute__((used)) void *lib_alloc_body(size_t n) { return malloc(n); }
__attribute__((used)) void *lib_zalloc_body(size_t n) { return calloc(1, n); }
__attribute__((used)) void *lib_realloc_body(void *p, size_t n) { return realloc(p, n); }
__attribute__((used)) void lib_free_body(void *p) { free(p); }
TRAMP(lib_alloc, d_lib_alloc, lib_alloc_body)
TRAMP(lib_zalloc, d_lib_zalloc, lib_zalloc_body)
TRAMP(lib_realloc, d_lib_realloc, lib_realloc_body)
TRAMP(lib_free, d_lib_free, lib_free_body)

__attribute__((constructor)) static void init_descs(void) {
    DESC_INIT(d_lib_alloc); DESC_INIT(d_lib_zalloc); DESC_INIT(d_lib_realloc); DESC_INIT(d_lib_free);
}
