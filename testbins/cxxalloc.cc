// Drives the C++ allocators: class-specific new/delete, factories, deleting
// destructors, and exceptions thrown by hooked allocators and caught two frames
// up. Output is deterministic; exit status 0.
#include <cstdio>
#include <new>
#include "cxxnode.h"

static void run_budget(std::size_t budget, int n, std::size_t chunk)
{
    Chunks c = {};
    budget_set(budget);
    try {
        load_chunks(&c, n, chunk);                        // → budget_alloc, may throw
        std::printf("cxxalloc: loaded %ld bytes, %zu left\n", c.total, budget_left());
    } catch (const OutOfBudget &e) {
        std::printf("cxxalloc: caught \"%s\" asking %zu after %ld bytes, %zu left\n", e.what(), e.asked,
                    c.total, budget_left());
    }
    for (int i = 0; i < n; i++)
        if (c.slot[i] != nullptr)
            budget_free(c.slot[i], chunk);
}

int main()
{
    List list = { 0, nullptr };
    build_list(&list, 10);
    long sum = 0;
    for (Node *x = list.head; x != nullptr; x = x->next)
        sum += x->key;
    std::printf("cxxalloc: list sum %ld, live nodes %ld\n", sum, Node::live);
    free_list(&list);

    Node::fail_at = 4;                      // the 4th Node allocation throws
    try {
        build_list(&list, 10);              // main → build_list → make_node → Node::operator new
        std::printf("cxxalloc: unexpected success\n");
    } catch (const std::bad_alloc &) {
        std::printf("cxxalloc: caught bad_alloc with %ld nodes built, live nodes %ld\n", list.count, Node::live);
    }
    free_list(&list);

    Shape *s[4];
    for (int i = 0; i < 4; i++)
        s[i] = make_shape(i % 2, 1.5 + i);
    double area = 0;
    for (int i = 0; i < 4; i++)
        area += s[i]->area();
    for (int i = 0; i < 4; i++)
        delete s[i];                        // virtual deleting destructor
    std::printf("cxxalloc: total area %.3f\n", area);

    int *v = make_ints(50);
    long t = 0;
    for (int i = 0; i < 50; i++) {
        v[i] += i;
        t += v[i];
    }
    free_ints(v);
    std::printf("cxxalloc: ints sum %ld\n", t);

    run_budget(1000, 8, 100);               // fits
    run_budget(1000, 8, 200);               // the 6th chunk throws OutOfBudget
    return 0;
}
