/* Heap checks (issue 12): bad frees. argv[1]: "double" (the same free site twice,
 * through the xfree wrapper), "twice" (two different free sites), "interior" (a
 * pointer into a chunk), "stack" (a stack address). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void *xmalloc(size_t n);
void xfree(void *p);

__attribute__((noinline)) static void drop(char *p)
{
    xfree(p); /* free site */
}

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "double";
    char *p = xmalloc(48); /* alloc site */
    memset(p, 'x', 48);
    char local[32];
    if (!strcmp(mode, "double")) {
        for (int i = 0; i < argc; i++) /* argc == 2: two rounds, one call site */
            drop(p); /* bug: the second round frees p again, same site */
    } else if (!strcmp(mode, "twice")) {
        drop(p);
        xfree(p); /* bug: second free, another site */
    } else if (!strcmp(mode, "interior")) {
        free(p + 16); /* bug: interior pointer */
    } else if (!strcmp(mode, "stack")) {
        snprintf(local, sizeof local, "%s", mode);
        free(local); /* bug: stack address */
    }
    puts("done");
    return 0;
}
