/* Heap checks (issue 12): a read of memory malloc never initialised; poisoning makes
 * the value visible (0xa5 bytes), memcheck flags the branch on it. */
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv)
{
    unsigned *counts = malloc(4 * sizeof *counts); /* alloc site */
    for (int i = 1; i < 4; i++)
        counts[i] = i * argc;
    if (counts[0] != 0) /* bug: counts[0] was never set */
        printf("counts[0] = %08x\n", counts[0]);
    else
        puts("counts[0] = 0");
    free(counts);
    return 0;
}
