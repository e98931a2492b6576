// C++ allocation shapes: a class-specific operator new/delete, factories, a
// polymorphic hierarchy (deleting destructors), and an allocator that throws.
#ifndef CXXNODE_H
#define CXXNODE_H
#include <cstddef>
#include <exception>

struct Node {
    int key;
    Node *next;
    explicit Node(int k) : key(k), next(nullptr) {}
    static void *operator new(std::size_t sz);   // _ZN4NodenwEm
    static void operator delete(void *p);        // _ZN4NodedlEPv
    static long live;
    static long fail_at;                         // > 0: the fail_at-th next allocation throws
};

struct Shape {
    virtual ~Shape();                            // out of line: vtables live in factory.cc
    virtual double area() const = 0;
};

struct Circle : Shape {
    double r;
    explicit Circle(double r_) : r(r_) {}
    ~Circle() override;
    double area() const override;
};

struct Square : Shape {
    double s;
    explicit Square(double s_) : s(s_) {}
    ~Square() override;
    double area() const override;
};

struct OutOfBudget : std::exception {
    std::size_t asked;
    explicit OutOfBudget(std::size_t n) : asked(n) {}
    const char *what() const noexcept override;
};

void *budget_alloc(std::size_t n);               // _Z12budget_allocm: throws OutOfBudget
void budget_free(void *p, std::size_t n);        // _Z11budget_freePvm
void budget_set(std::size_t n);
std::size_t budget_left();

Node *make_node(int key);                        // factory: new Node(key)
Shape *make_shape(int kind, double x);           // factory: new Circle / new Square
int *make_ints(std::size_t n);                   // new int[n]()
void free_ints(int *p);                          // delete[] p
// Containers that keep what they allocate in a member that is NOT the first one
// (a first member would make `c->head = p` the machine code of an out-parameter
// allocator `*out = p`).
struct List { long count; Node *head; };
struct Chunks { long total; void *slot[16]; };
void build_list(List *l, int n);                 // make_node n times (exceptions pass through)
void free_list(List *l);
void load_chunks(Chunks *c, int n, std::size_t chunk);  // budget_alloc n times
#endif
