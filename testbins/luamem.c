/* Lua 5.4's pattern (lauxlib.c l_alloc, lstate.c lua_newstate, lmem.c luaM_*):
 * one realloc-like function does everything: nsize == 0 frees, ptr == NULL
 * allocates, otherwise resizes. The state is allocated through the user's
 * function and remembers it (g->frealloc = f: a store of a parameter). */
#include <stdio.h>
#include <stdlib.h>
#include "fnptr.h"

#define LUA_TTHREAD 8

typedef struct global_State {
    lua_Alloc frealloc;
    void *ud;
    long GCdebt;
} global_State;

struct lua_State {
    global_State *l_G;
    int status;
};

/* lstate.c's LG: thread and global state in one block, thread first. */
typedef struct LG {
    struct lua_State l;
    global_State g;
} LG;

/* lauxlib.c's l_alloc, verbatim in shape. */
static void *l_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    (void)ud; (void)osize;
    if (nsize == 0) {
        free(ptr);
        return NULL;
    }
    else
        return realloc(ptr, nsize);
}

static void luaD_throw_mem(lua_State *L)
{
    (void)L;
    fputs("not enough memory\n", stderr);
    exit(1);
}

lua_State *lua_newstate(lua_Alloc f, void *ud)
{
    LG *l = (LG *)(*f)(ud, NULL, LUA_TTHREAD, sizeof(LG));
    if (l == NULL)
        return NULL;
    l->l.l_G = &l->g;
    l->l.status = 0;
    l->g.frealloc = f;
    l->g.ud = ud;
    l->g.GCdebt = 0;
    return &l->l;
}

lua_State *luaL_newstate(void)
{
    return lua_newstate(l_alloc, NULL);
}

void lua_close(lua_State *L)
{
    global_State *g = L->l_G;
    (*g->frealloc)(g->ud, (LG *)L, sizeof(LG), 0);
}

void *luaM_realloc_(lua_State *L, void *block, size_t osize, size_t nsize)
{
    global_State *g = L->l_G;
    void *newblock = (*g->frealloc)(g->ud, block, osize, nsize);
    if (newblock == NULL && nsize > 0)
        luaD_throw_mem(L);
    g->GCdebt += (long)nsize - (long)osize;
    return newblock;
}

/* osize carries the object's type tag when block is NULL (Lua 5.4). */
void *luaM_malloc_(lua_State *L, size_t size, int tag)
{
    if (size == 0)
        return NULL;
    global_State *g = L->l_G;
    void *newblock = (*g->frealloc)(g->ud, NULL, tag, size);
    if (newblock == NULL)
        luaD_throw_mem(L);
    g->GCdebt += (long)size;
    return newblock;
}

void luaM_free_(lua_State *L, void *block, size_t osize)
{
    global_State *g = L->l_G;
    (*g->frealloc)(g->ud, block, osize, 0);
    g->GCdebt -= (long)osize;
}

long lua_gcdebt(lua_State *L)
{
    return L->l_G->GCdebt;
}
