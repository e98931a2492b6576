/* Calls into steplib.c's library (tests/gdb.rs step_through_call_site_trampolines). */
#include <stdio.h>
int lib_sum(int n);
int main(void)
{
    printf("%d\n", lib_sum(10));
    return 0;
}
