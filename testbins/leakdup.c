/* The leak of a ptrace-based build recorder (issue 10): before every exec attempt the
 * path is copied by a strdup helper that gcc inlines into main at -O2 (static inline, same
 * TU). Each failed execv leaks the copy: the first three stay in a table (still reachable),
 * the rest are dropped (definitely lost). main also calls strdup directly: those copies
 * are freed, except one kept to the end. The oracle test (rewriter/tests/oracle.rs)
 * compares the report's leak at the marked line with valgrind's.
 *   ./leakdup    exit 0 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char *kept[3];
static int nkept;
static char *last_arg;

static inline char *save_path(const char *path)
{
    return strdup(path);
}

int main(int argc, char **argv)
{
    (void)argc;
    char path[128];
    char *args[] = {"tool", NULL};
    int failed = 0;
    for (int i = 0; i < 11; i++) {
        snprintf(path, sizeof path, "/nonexistent/allocsite-leakdup/%d/tool", i);
        char *copy = save_path(path); /* leak site */
        if (execv(copy, args) < 0) {
            failed++;
            if (nkept < 3)
                kept[nkept++] = copy;
        }
    }
    for (int i = 0; i < 5; i++) {
        char *s = strdup(argv[0]);
        if (last_arg)
            free(last_arg);
        last_arg = s;
    }
    printf("leakdup: %d failed execs, %d copies kept, the last one %zu bytes\n", failed, nkept, nkept ? strlen(kept[nkept - 1]) : 0);
    return last_arg == NULL;
}
