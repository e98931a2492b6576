/* A function split by the compiler into a hot part and a `.cold` fragment, as gcc -O2
 * splits python3.11's Py_Main: the fragment has an FDE of its own, so it looks like a
 * function when an allocator hit is unwound through it, but it is reached by a jump,
 * with its function's frame in place: [rsp] there is a local (here the name being
 * tagged, a heap string), not a return address. A tracer that takes the fragment for a
 * function plants a "return" breakpoint at that heap address, and the program sees its
 * string's first byte changed ("UTF-8" -> "\xccTF-8", python3's "unknown encoding").
 *
 * `tag` is written in assembly so that the local sits at [rsp] whatever the compiler;
 * its CFI is what gcc emits for a `.cold` fragment (its first row: CFA = rsp+32). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Returns a fresh 64-byte block on the rare path, NULL otherwise. */
char *tag(char *name, int rare);
__asm__(
    "    .text\n"
    "    .globl tag\n"
    "    .type tag, @function\n"
    "tag:\n"
    "    .cfi_startproc\n"
    "    subq $24, %rsp\n"
    "    .cfi_def_cfa_offset 32\n"
    "    movq %rdi, (%rsp)\n"
    "    testl %esi, %esi\n"
    "    jne tag.cold\n"
    "    xorl %eax, %eax\n"
    ".Ltag_out:\n"
    "    addq $24, %rsp\n"
    "    .cfi_def_cfa_offset 8\n"
    "    ret\n"
    "    .cfi_endproc\n"
    "    .size tag, .-tag\n"
    "    .section .text.unlikely,\"ax\",@progbits\n"
    "    .type tag.cold, @function\n"
    "tag.cold:\n"
    "    .cfi_startproc\n"
    "    .cfi_def_cfa_offset 32\n"
    "    movl $64, %edi\n"
    "    call malloc@PLT\n"
    "    jmp .Ltag_out\n"
    "    .cfi_endproc\n"
    "    .size tag.cold, .-tag.cold\n"
    "    .text\n");

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 100;
    long changed = 0;
    for (long i = 0; i < n; i++) {
        char *name = malloc(16);
        if (!name)
            return 1;
        strcpy(name, "UTF-8");
        char *t = tag(name, 1);
        if (strcmp(name, "UTF-8") != 0) {
            if (!changed)
                printf("name changed: %02x%s\n", (unsigned char)name[0], name + 1);
            changed++;
        }
        free(t);
        free(name);
    }
    printf("%ld calls, %ld names changed\n", n, changed);
    return 0;
}
