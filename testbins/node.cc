// The allocation TU of cxxalloc: Node's class-specific operator new/delete and
// the budget allocator that throws. See cxxalloc.expect.
#include <cstdlib>
#include <new>
#include "cxxnode.h"

long Node::live;
long Node::fail_at;

void *Node::operator new(std::size_t sz)
{
    if (fail_at > 0 && --fail_at == 0)
        throw std::bad_alloc();
    void *p = std::malloc(sz);
    if (p == nullptr)
        throw std::bad_alloc();
    ++live;
    return p;
}

void Node::operator delete(void *p)
{
    if (p != nullptr) {
        --live;
        std::free(p);
    }
}

static std::size_t budget;

const char *OutOfBudget::what() const noexcept
{
    return "out of budget";
}

// Throws (a custom exception) instead of returning NULL; callers two frames up
// catch it. The exception passes through the hooked frame of budget_alloc.
void *budget_alloc(std::size_t n)
{
    if (n > budget)
        throw OutOfBudget(n);
    budget -= n;
    return ::operator new(n);
}

void budget_free(void *p, std::size_t n)
{
    budget += n;
    ::operator delete(p);
}

void budget_set(std::size_t n)
{
    budget = n;
}

std::size_t budget_left()
{
    return budget;
}
