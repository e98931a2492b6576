// C++ allocation tests: every operator new/delete form, bad_alloc through the shim.
#include "../../include/allocsite.h"
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>
#include <vector>

#define CHECK(c) do { if (!(c)) { std::fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #c); std::exit(1); } } while (0)

static allocsite_totals_t T() { allocsite_totals_t t; allocsite_get_totals(&t); return t; }
static void expect(const void *p, size_t n, const char *alloc) {
    allocsite_chunk_t c;
    CHECK(allocsite_lookup(p, &c) == 1);
    CHECK(c.base == p && c.size == n);
    if (std::strcmp(c.allocator, alloc) != 0) { std::fprintf(stderr, "allocator %s != %s\n", c.allocator, alloc); std::exit(1); }
}
static char *volatile sink;
struct alignas(128) Big { char x[300]; };

int main() {
    allocsite_totals_t t0 = T();
    int *a = new int(5);
    expect(a, sizeof(int), "operator new");
    int *b = new int[10];
    expect(b, 10 * sizeof(int), "operator new[]");
    char *c = new (std::nothrow) char[100];
    expect(c, 100, "operator new[]");
    Big *d = new Big;
    CHECK(((uintptr_t)d & 127) == 0);
    expect(d, sizeof(Big), "operator new");
    Big *e = new Big[3];
    CHECK(((uintptr_t)e & 127) == 0);
    Big *f = new (std::nothrow) Big;
    expect(f, sizeof(Big), "operator new");
    allocsite_totals_t t1 = T();
    CHECK(t1.live_chunks - t0.live_chunks == 6);
    delete a;
    delete[] b;
    delete[] c;
    delete d;
    delete[] e;
    ::operator delete(f, std::align_val_t(alignof(Big)), std::nothrow);
    void *g = ::operator new(50);
    ::operator delete(g, (size_t)50);
    allocsite_totals_t t2 = T();
    CHECK(t2.live_chunks == t0.live_chunks && t2.live_bytes == t0.live_bytes);

    bool thrown = false;
    try {
        volatile size_t huge = (size_t)1 << 62;
        sink = new char[huge];
    } catch (const std::bad_alloc &) {
        thrown = true;
    }
    CHECK(thrown);
    volatile size_t huge2 = (size_t)1 << 62;
    sink = new (std::nothrow) char[huge2];
    CHECK(sink == nullptr);
    allocsite_totals_t t3 = T();
    CHECK(t3.live_chunks == t2.live_chunks);

    std::vector<std::string> v;
    for (int i = 0; i < 1000; i++) v.push_back(std::string(40 + i % 50, 'x'));
    allocsite_chunk_t ch;
    CHECK(allocsite_lookup(v.data() + 10, &ch) == 1 && std::strcmp(ch.allocator, "operator new") == 0);
    std::puts("cxx ok");
    return 0;
}
