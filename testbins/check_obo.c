/* Heap checks (issue 12): the classic off-by-one, strcpy into malloc(strlen(s)). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

__attribute__((noinline)) static char *copy(const char *s)
{
    char *p = malloc(strlen(s)); /* alloc site */
    strcpy(p, s); /* bug: the terminating NUL lands one past the end */
    return p;
}

int main(int argc, char **argv)
{
    char *p = copy(argc > 5 ? argv[1] : "hello, world");
    printf("%s\n", p);
    free(p); /* free site */
    return 0;
}
