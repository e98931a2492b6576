/* Heap checks (issue 12): a write through a pointer after its chunk was freed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct conn { int fd; char name[20]; };

int main(int argc, char **argv)
{
    struct conn *c = malloc(sizeof *c); /* alloc site */
    c->fd = argc;
    strcpy(c->name, "peer");
    struct conn *stale = c;
    printf("%d %s\n", c->fd, c->name);
    free(c); /* free site */
    stale->fd = -1; /* bug: write after free, offset 0 */
    puts("done");
    return 0;
}
