/* Loads the plugin named by argv[1] and allocates only through its table: which
 * allocator runs is decided at run time, through function pointers read from a
 * dlopen'ed module, so no static analysis of this program can name it. */
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>
#include "trace_plugin.h"

#define N 400

int main(int argc, char **argv)
{
    if (argc < 2)
        return 2;
    void *h = dlopen(argv[1], RTLD_NOW);
    if (!h) {
        fprintf(stderr, "%s\n", dlerror());
        return 1;
    }
    const struct plugin_ops *ops = dlsym(h, "plugin_ops");
    if (!ops)
        return 1;
    void *ctx = ops->create();
    unsigned char *p[N];
    size_t sz[N];
    unsigned long sum = 0;
    for (int i = 0; i < N; i++) {
        sz[i] = 16 + (size_t)(i * 37) % 500;
        p[i] = ops->alloc(ctx, sz[i]);
        memset(p[i], i & 0xff, sz[i]);
        if (ops->resize && i % 3 == 0) {
            sz[i] += 40 + i % 7;
            p[i] = ops->resize(ctx, p[i], sz[i]);
            memset(p[i], (i + 1) & 0xff, sz[i]);
        }
        if (i % 2 == 1) {
            for (size_t j = 0; j < sz[i - 1]; j++)
                sum = sum * 31 + p[i - 1][j];
            ops->release(ctx, p[i - 1]);
            p[i - 1] = NULL;
        }
    }
    for (int i = 0; i < N; i++)
        if (p[i]) {
            sum += p[i][sz[i] - 1];
            ops->release(ctx, p[i]);
        }
    ops->destroy(ctx);
    printf("plugin %s: %d allocations, checksum %lx\n", ops->name, N, sum);
    dlclose(h);
    return 0;
}
