/* allocsite_get_type: the type of a chunk's innermost site, from the site -> type
 * table `allocsite cc` embeds. Link with -lallocsite_rt (the query API). */
#include "../../runtime/include/allocsite.h"
#include <stdio.h>
#include <stdlib.h>

struct point {
    long x, y, z;
};

struct vec {
    size_t n;
    double v[];
};

__attribute__((noinline)) static struct vec *vec_new(size_t n)
{
    struct vec *w = malloc(sizeof *w + n * sizeof w->v[0]);
    w->n = n;
    return w;
}

static const char *type_of(const void *p)
{
    const char *t = allocsite_get_type(p);
    return t ? t : "(none)";
}

int main(void)
{
    struct point *p = malloc(sizeof *p);
    struct point *row = calloc(8, sizeof *row);
    struct vec *w = vec_new(5);
    int local;
    printf("p: %s\nrow: %s\nw: %s\nlocal: %s\n", type_of(p), type_of(&row[3].y), type_of(w), type_of(&local));
    free(w);
    free(row);
    free(p);
    return 0;
}
