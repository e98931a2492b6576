/* A plugin whose allocator is a bump pool: it carves 16-byte-aligned pieces out of
 * 4 KiB blocks it gets (through a pointer looked up at run time) when the current
 * block is full, and frees every block at once when destroyed. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include "trace_plugin.h"

struct pool {
    void *(*get)(size_t);
    void (*put)(void *);
    char *block;
    size_t used, cap;
    void *blocks[4096];
    int nblocks;
};

static void *p_create(void)
{
    struct pool *c = calloc(1, sizeof *c);
    c->get = (void *(*)(size_t))dlsym(RTLD_DEFAULT, "malloc");
    c->put = (void (*)(void *))dlsym(RTLD_DEFAULT, "free");
    return c;
}

__attribute__((noinline)) static void *p_alloc(void *vc, size_t n)
{
    struct pool *c = vc;
    size_t need = (n + 15) & ~(size_t)15;
    if (!c->block || c->cap - c->used < need) {
        if (c->nblocks == 4096)
            return NULL;
        c->cap = need > 4096 ? need : 4096;
        c->block = c->get(c->cap);
        if (!c->block)
            return NULL;
        c->blocks[c->nblocks++] = c->block;
        c->used = 0;
    }
    void *r = c->block + c->used;
    c->used += need;
    return r;
}

/* Pieces are given back all at once, by p_destroy. */
static void p_release(void *vc, void *p)
{
    (void)vc;
    (void)p;
}

static void p_destroy(void *vc)
{
    struct pool *c = vc;
    for (int i = 0; i < c->nblocks; i++)
        c->put(c->blocks[i]);
    free(c);
}

const struct plugin_ops plugin_ops = {"pool", p_create, p_alloc, NULL, p_release, p_destroy};
