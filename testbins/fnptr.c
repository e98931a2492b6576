/* Drives the function-pointer allocators: zlib-style streams with the default
 * and with a user allocator, SQLite-style methods (default, then a counting set
 * installed at run time), Lua-style states (l_alloc and a counting allocator). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "fnptr.h"

static unsigned sum = 2166136261u;

static void mix(const void *p, size_t n)
{
    const unsigned char *c = p;
    for (size_t i = 0; i < n; i++)
        sum = (sum ^ c[i]) * 16777619u;
}

/* ---- user allocators, installed at run time ---- */
struct zcount { long allocs, frees; };

static void *my_zalloc(void *opaque, unsigned items, unsigned size)
{
    ((struct zcount *)opaque)->allocs++;
    return calloc(items, size);
}

static void my_zfree(void *opaque, void *ptr)
{
    ((struct zcount *)opaque)->frees++;
    free(ptr);
}

static void *my_lzalloc(void *opaque, size_t nmemb, size_t size)
{
    ((struct zcount *)opaque)->allocs++;
    return calloc(nmemb, size);
}

static void my_lzfree(void *opaque, void *ptr)
{
    ((struct zcount *)opaque)->frees++;
    free(ptr);
}

static long sq_count;

static void *cnt_malloc(int n)
{
    sq_count++;
    return malloc((size_t)n);
}

static void cnt_free(void *p)
{
    sq_count--;
    free(p);
}

static void *cnt_realloc(void *p, int n)
{
    return realloc(p, (size_t)n);
}

static int cnt_size(void *p)
{
    (void)p;
    return 0;       /* not tracked */
}

static int cnt_roundup(int n)
{
    return n;
}

static const mem_methods counting = { cnt_malloc, cnt_free, cnt_realloc, cnt_size, cnt_roundup, 0 };

static void *count_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    long *live = ud;
    (void)osize;
    if (nsize == 0) {
        if (ptr)
            --*live;
        free(ptr);
        return NULL;
    }
    if (ptr == NULL)
        ++*live;
    return realloc(ptr, nsize);
}

static void run_zlib(z_stream *strm, const char *name)
{
    static const unsigned char text[] = "function pointers all the way down";
    if (zs_init(strm) != 0 || zs_window(strm, 6) != 0) {
        printf("%s: init failed\n", name);
        return;
    }
    unsigned long a = 0;
    for (int i = 0; i < 10; i++)
        a = zs_feed(strm, text, sizeof text - 1);
    unsigned short *tab = zs_alloc(strm, 12, sizeof(unsigned short));
    for (int i = 0; i < 12; i++)
        tab[i] = (unsigned short)(i * 1000 + a % 1000);
    mix(tab, 12 * sizeof(unsigned short));
    zs_free(strm, tab);
    printf("%s: %lu bytes, adler %lu\n", name, strm->total, a);
    zs_end(strm);
}

static void run_sqlite(const char *name)
{
    char *s = sq_malloc(13);
    memcpy(s, "select 1;", 10);
    s = sq_realloc(s, 40);
    strcat(s, " select 2;");
    mix(s, strlen(s));
    int r = sq_roundup(13);
    printf("%s: \"%s\" roundup(13)=%d\n", name, s, r);
    sq_free(s);
    void *q = 0;
    int rc = sq_alarm_malloc(21, &q);
    printf("%s: alarm malloc rc=%d %s\n", name, rc, q ? "block" : "NULL");
    sq_free(q);
    s = sq_realloc(NULL, 5);         /* realloc(NULL) allocates */
    s = sq_realloc(s, 0);            /* realloc to 0 frees */
    printf("%s: realloc(p, 0) -> %s\n", name, s ? "block" : "NULL");
}

static void run_lua(lua_State *L, const char *name)
{
    double *v = luaM_malloc_(L, 4 * sizeof(double), 5);
    for (int i = 0; i < 4; i++)
        v[i] = i * 1.25;
    v = luaM_realloc_(L, v, 4 * sizeof(double), 16 * sizeof(double));
    for (int i = 4; i < 16; i++)
        v[i] = i * 2.5;
    mix(v, 16 * sizeof(double));
    printf("%s: v[15] = %.2f, GC debt %ld\n", name, v[15], lua_gcdebt(L));
    luaM_free_(L, v, 16 * sizeof(double));
    printf("%s: GC debt after free %ld\n", name, lua_gcdebt(L));
}

int main(void)
{
    z_stream d;
    memset(&d, 0, sizeof d);                 /* zalloc NULL: zs_init installs zcalloc */
    run_zlib(&d, "zlib default");
    struct zcount zc = { 0, 0 };
    z_stream u;
    memset(&u, 0, sizeof u);
    u.zalloc = my_zalloc;                    /* installed by a store at run time */
    u.zfree = my_zfree;
    u.opaque = &zc;
    run_zlib(&u, "zlib user");
    printf("zlib user: %ld allocs, %ld frees\n", zc.allocs, zc.frees);

    sq_default();
    run_sqlite("sqlite default");
    sq_config(&counting);
    run_sqlite("sqlite counting");
    printf("sqlite counting: %ld live\n", sq_count);

    lua_State *L = luaL_newstate();
    run_lua(L, "lua l_alloc");
    lua_close(L);
    long live = 0;
    L = lua_newstate(count_alloc, &live);
    run_lua(L, "lua count_alloc");
    lua_close(L);
    printf("lua count_alloc: %ld live, checksum %08x\n", live, sum);

    /* liblzma style: without an allocator, then with the counting one. */
    struct zcount lzc = { 0, 0 };
    lz_allocator lza = { my_lzalloc, my_lzfree, &lzc };
    for (int i = 0; i < 2; i++) {
        const lz_allocator *a = i ? &lza : NULL;
        char *b = lz_alloc(40, a);
        memset(b, 'l', 40);
        mix(b, 40);
        lz_free(b, a);
    }
    printf("lz: %ld allocs, %ld frees through the allocator, checksum %08x\n", lzc.allocs, lzc.frees, sum);
    return 0;
}
