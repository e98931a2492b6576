/* The program: calls the shared library's wrappers and the archive's. */
#include <stdio.h>
#include <stddef.h>

void *wrap_alloc(size_t n);
char *wrap_strdup(const char *s);
void wrap_free(void *p);
void *wrap2_array(size_t count, size_t size);

struct point {
    long x, y, z;
};

int main(int argc, char **argv)
{
    struct point *p = wrap_alloc(sizeof *p);
    char *name = wrap_strdup(argc > 1 ? argv[1] : "linkunits");
    struct point *row = wrap2_array(16, sizeof(struct point));
    p->x = 1;
    row[15].z = 2;
    printf("%s %ld %ld\n", name, p->x, row[15].z);
    wrap_free(row);
    wrap_free(name);
    wrap_free(p);
    return 0;
}
