/* The table a plugin exports as `plugin_ops`: the host allocates only through it. */
#include <stddef.h>

struct plugin_ops {
    const char *name;
    void *(*create)(void);
    void *(*alloc)(void *ctx, size_t n);
    void *(*resize)(void *ctx, void *p, size_t n); /* may be NULL */
    void (*release)(void *ctx, void *p);
    void (*destroy)(void *ctx);
};
