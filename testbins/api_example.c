/* api_example.c — the allocsite query API in a few lines.
 * Build: gcc -g api_example.c -I runtime/include -L target/release -lallocsite_rt \
 *            -Wl,-rpath,$PWD/target/release -o api_example
 * (A rewritten program already loads liballocsite_rt.so; only the -l is needed.) */
#include "../runtime/include/allocsite.h"
#include <stdio.h>
#include <stdlib.h>

struct node { struct node *next; int value; char name[20]; };

__attribute__((noinline)) static struct node *make_node(struct node *next, int v) {
    struct node *n = malloc(sizeof *n);
    n->next = next;
    n->value = v;
    return n;
}

static int count_nodes(const allocsite_chunk_t *c, void *arg) {
    if (c->size == sizeof(struct node)) ++*(int *)arg;
    return 0; /* keep going */
}

int main(void) {
    struct node *list = NULL;
    for (int i = 0; i < 5; i++) list = make_node(list, i);

    /* What is this pointer? Any interior pointer works. */
    allocsite_chunk_t c;
    if (allocsite_lookup(&list->next->name[3], &c)) {
        char where[256];
        allocsite_symbolize(c.site, where, sizeof where);
        printf("%p is %zu bytes into a %zu-byte chunk from %s at %s\n", (void *)&list->next->name[3],
               (size_t)((char *)&list->next->name[3] - (char *)c.base), c.size, c.allocator, where);
    }

    int n = 0;
    allocsite_for_each_chunk(count_nodes, &n);
    printf("%d live chunks of node size\n", n);

    if (allocsite_write_report("api-report.json") != 0) perror("allocsite_write_report");
    while (list) { struct node *next = list->next; free(list); list = next; }
    return 0;
}
