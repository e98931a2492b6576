/* A plugin whose allocator wraps malloc behind a 16-byte header. The C library's
 * functions are reached through pointers looked up at run time (as a plugin that
 * lets its host choose the backend would), so the wrappers' calls are opaque to a
 * static analysis. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>
#include "trace_plugin.h"

struct ctx {
    void *(*get)(size_t);
    void *(*regrow)(void *, size_t);
    void (*put)(void *);
    size_t live;
};

static void *w_create(void)
{
    struct ctx *c = calloc(1, sizeof *c);
    c->get = (void *(*)(size_t))dlsym(RTLD_DEFAULT, "malloc");
    c->regrow = (void *(*)(void *, size_t))dlsym(RTLD_DEFAULT, "realloc");
    c->put = (void (*)(void *))dlsym(RTLD_DEFAULT, "free");
    return c;
}

__attribute__((noinline)) static void *w_alloc(void *vc, size_t n)
{
    struct ctx *c = vc;
    size_t *h = c->get(n + 16);
    if (!h)
        return NULL;
    h[0] = n;
    c->live += n;
    return h + 2;
}

/* A wrapper of the wrapper the host never calls: only an analysis that knows w_alloc
 * allocates (from a trace) can classify it. */
void *wrap_zalloc(void *vc, size_t n)
{
    void *p = w_alloc(vc, n);
    if (p)
        memset(p, 0, n);
    return p;
}

__attribute__((noinline)) static void *w_resize(void *vc, void *p, size_t n)
{
    struct ctx *c = vc;
    size_t *h = (size_t *)p - 2;
    size_t old = h[0];
    h = c->regrow(h, n + 16);
    if (!h)
        return NULL;
    h[0] = n;
    c->live += n - old;
    return h + 2;
}

__attribute__((noinline)) static void w_release(void *vc, void *p)
{
    struct ctx *c = vc;
    if (!p)
        return;
    size_t *h = (size_t *)p - 2;
    c->live -= h[0];
    c->put(h);
}

static void w_destroy(void *vc)
{
    free(vc);
}

const struct plugin_ops plugin_ops = {"wrap", w_create, w_alloc, w_resize, w_release, w_destroy};
