/* Allocators reached through function pointers: zlib (zmem.c), SQLite (sqmem.c)
 * and Lua (luamem.c) shapes. See fnptr.expect. */
#ifndef FNPTR_H
#define FNPTR_H
#include <stddef.h>

/* ---- zlib: strm->zalloc(strm->opaque, items, size), installed at run time ---- */
typedef void *(*alloc_func)(void *opaque, unsigned items, unsigned size);
typedef void (*free_func)(void *opaque, void *address);
struct zs_state;
typedef struct z_stream_s {
    const unsigned char *next_in;
    unsigned avail_in;
    unsigned long total;
    struct zs_state *state;
    alloc_func zalloc;     /* NULL: zs_init installs zcalloc */
    free_func zfree;       /* NULL: zs_init installs zcfree */
    void *opaque;
} z_stream;
void *zcalloc(void *opaque, unsigned items, unsigned size);
void zcfree(void *opaque, void *ptr);
int zs_init(z_stream *strm);
int zs_window(z_stream *strm, unsigned bits);
void *zs_alloc(z_stream *strm, unsigned items, unsigned size);
void zs_free(z_stream *strm, void *p);
unsigned long zs_feed(z_stream *strm, const unsigned char *in, unsigned n);
int zs_end(z_stream *strm);

/* ---- SQLite: a methods struct, statically initialized, copied into a global ---- */
typedef struct mem_methods {
    void *(*xMalloc)(int);
    void (*xFree)(void *);
    void *(*xRealloc)(void *, int);
    int (*xSize)(void *);
    int (*xRoundup)(int);
    void *pAppData;
} mem_methods;
int sq_config(const mem_methods *m);      /* install methods (whole-struct copy) */
void sq_default(void);                    /* install the default (malloc) methods */
void *sq_malloc(int n);
void sq_free(void *p);
void *sq_realloc(void *p, int n);
int sq_msize(void *p);
int sq_roundup(int n);
int sq_alarm_malloc(int n, void **pp);     /* xMalloc(xRoundup(n)) into *pp */

/* ---- Lua: g->frealloc(ud, ptr, osize, nsize), passed to lua_newstate ---- */
typedef void *(*lua_Alloc)(void *ud, void *ptr, size_t osize, size_t nsize);
typedef struct lua_State lua_State;
lua_State *lua_newstate(lua_Alloc f, void *ud);
lua_State *luaL_newstate(void);
void lua_close(lua_State *L);
void *luaM_malloc_(lua_State *L, size_t size, int tag);
void *luaM_realloc_(lua_State *L, void *block, size_t osize, size_t nsize);
void luaM_free_(lua_State *L, void *block, size_t osize);
long lua_gcdebt(lua_State *L);
/* ---- liblzma / pcre2: an optional allocator passed next to the block ---- */
typedef struct {
    void *(*alloc)(void *opaque, size_t nmemb, size_t size);
    void (*free)(void *opaque, void *ptr);
    void *opaque;
} lz_allocator;
void *lz_alloc(size_t size, const lz_allocator *a);  /* a && a->alloc ? a->alloc(opaque, 1, size) : malloc(size) */
void lz_free(void *ptr, const lz_allocator *a);      /* a && a->free ? a->free(opaque, ptr) : free(ptr) */
#endif
