/* btalloc's wrappers: backtrace() called inside a (hooked) allocator.
 *
 * print_chain() names every frame glibc's backtrace() returns through dladdr()
 * (the program is linked with -rdynamic, so its global functions are in .dynsym
 * and named even in the stripped build) and prints only the names of this
 * program's own functions in the KNOWN list: libc's frames and anything else
 * without a known name — a rewritten program's trampolines, which have names in
 * .symtab only — are left out, so the rewritten program must print exactly the
 * original's chain. A chain cut short (unwinding that stops at a trampoline)
 * loses level2/level1/main and differs. Prints names only, never addresses. */
#define _GNU_SOURCE /* dladdr */
#include "btwrap.h"
#include <dlfcn.h>
#include <execinfo.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Not bt_tail: at -O2 it tail-calls bt_alloc and has no frame left (check.sh wants
 * every variant to print what -O0 prints); the chain runs through its trampoline
 * all the same. */
static const char *const KNOWN[] = {
    "print_chain", "bt_alloc", "bt_outer",
    "level1", "level2", "tail_level1", "tail_level2", "nested_level1", "nested_level2",
    "main",
};

__attribute__((noinline)) void print_chain(const char *who) {
    void *pcs[64];
    int n = backtrace(pcs, 64);
    printf("%s:", who);
    int shown = 0;
    for (int i = 0; i < n; i++) {
        Dl_info info;
        /* A return address may be one past a call ending its function: look
         * up the call instruction's last byte. */
        if (!dladdr((char *)pcs[i] - 1, &info) || !info.dli_sname)
            continue;
        for (size_t k = 0; k < sizeof KNOWN / sizeof *KNOWN; k++) {
            if (strcmp(info.dli_sname, KNOWN[k]) == 0) {
                printf(" %s", info.dli_sname);
                shown++;
                break;
            }
        }
    }
    printf(" (%d)\n", shown);
    fflush(stdout);
}

__attribute__((noinline)) void *bt_alloc(size_t n) {
    void *p = malloc(n);
    if (!p)
        abort();
    print_chain("bt_alloc");
    memset(p, 0x5a, n);
    return p;
}

/* At -O2: `add $8,%rdi; jmp bt_alloc`: its frame is gone when bt_alloc runs. */
__attribute__((noinline)) void *bt_tail(size_t n) {
    return bt_alloc(n + 8);
}

/* A wrapper of a wrapper whose call is not a tail call (the result is adjusted). */
__attribute__((noinline)) void *bt_outer(size_t n) {
    char *p = bt_alloc(n + 16);
    p[0] = 1;
    return p + 16;
}

__attribute__((noinline)) void bt_outer_free(void *p) {
    free((char *)p - 16);
}
