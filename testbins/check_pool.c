/* Heap checks (issue 12) on a pool suballocator: pieces from poolalloc.c's pool_alloc,
 * given back to an objpool's free list (rewritten with --free-fns "obj_put(pP)" so
 * that obj_put is the pool's free). argv[1]: "double"
 * (the same piece put back twice from one site), "interior" (a pointer inside a piece),
 * "never" (a pointer into the arena the pool never handed out), "uaf" (a read after
 * the piece went back: the free pattern shows), "overflow" (an off-by-one strcpy into
 * a piece of strlen bytes, found as it goes back), "overflow-live" (the same, found at
 * exit: the piece stays live), "uaf-write" (a write into a piece after it went back,
 * found when the pool's block is freed), "uaf-write-live" (the same, found at exit). */
#include <stdio.h>
#include <string.h>
#include "poolalloc.h"

__attribute__((noinline)) static void give_back(struct objpool *op, void *o)
{
    obj_put(op, o); /* sub-free site */
}

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "double";
    struct objpool op = { pool_new(4096), 64, NULL };
    char *a = pool_alloc(op.arena, 64); /* piece site */
    char *b = pool_alloc(op.arena, 64);
    memset(a, 'a', 64);
    memset(b, 'b', 64);
    if (!strcmp(mode, "double")) {
        for (int i = 0; i < argc; i++) /* argc == 2: two rounds, one call site */
            give_back(&op, a); /* bug: the second round puts a back again */
    } else if (!strcmp(mode, "interior")) {
        give_back(&op, a + 8); /* bug: inside a piece */
    } else if (!strcmp(mode, "never")) {
        give_back(&op, b + 1024); /* bug: arena memory the pool never handed out */
    } else if (!strncmp(mode, "overflow", 8)) {
        char *s = pool_alloc(op.arena, strlen(mode)); /* strcpy piece */
        strcpy(s, mode); /* bug: the terminator goes one byte past the piece */
        if (!strcmp(mode, "overflow-live")) {
            puts(s);
            return 0; /* the pool stays: its piece is checked at exit */
        }
        give_back(&op, s); /* sub-free of the overflowed piece */
    } else if (!strncmp(mode, "uaf-write", 9)) {
        give_back(&op, a); /* sub-free before the write */
        a[40] = 'w'; /* bug: write after sub-free */
        if (!strcmp(mode, "uaf-write-live"))
            return 0; /* the pool's block stays: checked at exit */
    } else if (!strcmp(mode, "uaf")) {
        give_back(&op, b);
        printf("b[40] = %02x\n", (unsigned char)b[40]); /* bug: read after sub-free */
    }
    puts("done");
    pool_destroy(op.arena);
    return 0;
}
