/* The shape of SPEC 482.sphinx3's libutil/ckd_alloc.h: every allocation goes
 * through macros that add the caller's file and line; failures are fatal. */
#ifndef CKD_ALLOC_H
#define CKD_ALLOC_H
#include <stddef.h>
#include <stdint.h>
typedef int32_t int32;

void *__ckd_calloc__(size_t n, size_t size, const char *caller_file, int caller_line);
void *__ckd_malloc__(size_t size, const char *caller_file, int caller_line);
void *__ckd_realloc__(void *ptr, size_t new_size, const char *caller_file, int caller_line);
void ckd_free(void *ptr);
void **__ckd_calloc_2d__(int32 d1, int32 d2, int32 elemsize, const char *caller_file, int32 caller_line);
void ***__ckd_calloc_3d__(int32 d1, int32 d2, int32 d3, int32 elemsize, const char *caller_file, int32 caller_line);
void ckd_free_2d(void **ptr);
void ckd_free_3d(void ***ptr);

#define ckd_calloc(n, sz)          __ckd_calloc__((n), (sz), __FILE__, __LINE__)
#define ckd_malloc(sz)             __ckd_malloc__((sz), __FILE__, __LINE__)
#define ckd_realloc(ptr, sz)       __ckd_realloc__((ptr), (sz), __FILE__, __LINE__)
#define ckd_calloc_2d(d1, d2, sz)  __ckd_calloc_2d__((d1), (d2), (sz), __FILE__, __LINE__)
#define ckd_calloc_3d(d1, d2, d3, sz) __ckd_calloc_3d__((d1), (d2), (d3), (sz), __FILE__, __LINE__)
#endif
