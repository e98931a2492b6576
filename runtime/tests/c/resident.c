/* Resident memory of the runtime itself (runtime/tests/layout.rs): allocate, grow and
 * free like an allocation-heavy program, then print the Rss of every mapping of
 * liballocsite_rt.so and libgcc_s from /proc/self/smaps as "NAME PERMS KIB". */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(void) {
    enum { N = 100000 };
    static void *p[N];
    for (int r = 0; r < 3; r++) {
        for (int i = 0; i < N; i++) p[i] = malloc(16 + (i * 7 + r) % 200);
        for (int i = 0; i < N; i += 2) p[i] = realloc(p[i], 300 + i % 100);
        for (int i = 0; i < N; i += 3) { free(p[i]); p[i] = calloc(1, 24); }
        for (int i = 0; i < N; i++) free(p[i]);
    }
    FILE *f = fopen("/proc/self/smaps", "r");
    if (!f) return 1;
    char line[512], name[256] = "", perms[8] = "";
    while (fgets(line, sizeof line, f)) {
        unsigned long lo, hi, kib;
        char path[256] = "";
        if (sscanf(line, "%lx-%lx %7s %*s %*s %*s %255s", &lo, &hi, perms, path) >= 3 && strchr(line, '-') < strchr(line, ' ')) {
            const char *b = strrchr(path, '/');
            snprintf(name, sizeof name, "%s", b ? b + 1 : path);
        } else if (sscanf(line, "Rss: %lu kB", &kib) == 1 && (strstr(name, "liballocsite_rt") || strstr(name, "libgcc_s"))) {
            printf("%s %s %lu\n", name, perms, kib);
        }
    }
    return 0;
}
