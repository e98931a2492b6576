// Factories: functions that return `new T`, in a TU of their own.
#include "cxxnode.h"

Shape::~Shape() {}
Circle::~Circle() {}
Square::~Square() {}
double Circle::area() const { return 3.0 * r * r; }   // deterministic, no libm
double Square::area() const { return s * s; }

Node *make_node(int key)
{
    return new Node(key);
}

Shape *make_shape(int kind, double x)
{
    if (kind == 0)
        return new Circle(x);
    return new Square(x);
}

int *make_ints(std::size_t n)
{
    return new int[n]();
}

void free_ints(int *p)
{
    delete[] p;
}

// make_node's exception (Node::operator new throwing std::bad_alloc) passes
// through here on its way to main.
void build_list(List *l, int n)
{
    for (int i = 0; i < n; i++) {
        Node *x = make_node(i);
        x->next = l->head;
        l->head = x;
        l->count++;
    }
}

void free_list(List *l)
{
    while (l->head != nullptr) {
        Node *n = l->head->next;
        delete l->head;
        l->head = n;
        l->count--;
    }
}

// One frame between budget_alloc (which throws) and the catch in run_budget.
void load_chunks(Chunks *c, int n, std::size_t chunk)
{
    for (int i = 0; i < n; i++) {
        c->slot[i] = budget_alloc(chunk);
        c->total += (long)chunk;
    }
}
