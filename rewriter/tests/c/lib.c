/* A shared library with an allocator, and a program using it (tests rewriting a .so). */
#include <stdlib.h>
#include <string.h>
void *lib_alloc(size_t n) { void *p = malloc(n); if (p) memset(p, 0, n); return p; }
char *lib_strdup(const char *s) { size_t n = strlen(s) + 1; char *p = lib_alloc(n); memcpy(p, s, n); return p; }
void lib_free(void *p) { free(p); }
