/* Test helper: hand-made descriptors and trampolines of the same shape as the
 * rewriter's (runtime/README.md): save argument registers, call __allocsite_enter
 * through a pointer slot, call the body on a 16-byte aligned stack, call
 * __allocsite_exit with rax, return. */
#include "../../include/allocsite.h"
#include <stdint.h>

void *allocsite_enter_slot = (void *)__allocsite_enter;
void *allocsite_exit_slot = (void *)__allocsite_exit;

#define DESC(var, fname, kind_, size_, count_, ptr_, nargs_)                             \
    struct allocsite_fn var = {ALLOCSITE_FN_MAGIC, kind_, size_, count_, ptr_, -1, nargs_, 0, 0, 0, 0, 0, 0, 0, 0}; \
    static const char var##_name[] = fname;
#define DESC_INIT(var) (var.name_rel = (int64_t)((uintptr_t)var##_name - (uintptr_t)&var))

#define TRAMP(name, desc, body)                                                  \
    __asm__(".intel_syntax noprefix\n"                                         \
            ".text\n.globl " #name "\n.type " #name ",@function\n" #name ":\n" \
            "  sub rsp, 56\n"                                                  \
            "  mov [rsp], rdi\n  mov [rsp+8], rsi\n  mov [rsp+16], rdx\n"      \
            "  mov [rsp+24], rcx\n  mov [rsp+32], r8\n  mov [rsp+40], r9\n"    \
            "  lea rdi, [rip+" #desc "]\n  mov rsi, [rsp+56]\n"               \
            "  mov rdx, rsp\n  lea rcx, [rsp+56]\n"                            \
            "  call [rip+allocsite_enter_slot]\n"                              \
            "  mov rdi, [rsp]\n  mov rsi, [rsp+8]\n  mov rdx, [rsp+16]\n"      \
            "  mov rcx, [rsp+24]\n  mov r8, [rsp+32]\n  mov r9, [rsp+40]\n"    \
            "  call " #body "\n"                                               \
            "  mov [rsp], rax\n  mov [rsp+8], rdx\n"                           \
            "  lea rdi, [rip+" #desc "]\n  mov rsi, rax\n  lea rdx, [rsp+56]\n" \
            "  call [rip+allocsite_exit_slot]\n"                               \
            "  mov rax, [rsp]\n  mov rdx, [rsp+8]\n"                           \
            "  add rsp, 56\n  ret\n"                                           \
            ".size " #name ", .-" #name "\n"                                   \
            ".att_syntax\n");
