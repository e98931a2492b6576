/* Drives the sphinx3-style allocators of ckd_alloc.c.
 *   ./nested          normal run, exit 0
 *   ./nested fatal    __ckd_malloc__ fails: FATAL_ERROR message (with nested.c's
 *                     file name and line) on stderr, exit(1) */
#include <stdio.h>
#include <stdint.h>
#include <string.h>
#include "ckd_alloc.h"

static unsigned sum = 2166136261u;

static void mix(const void *p, size_t n)
{
    const unsigned char *c = p;
    for (size_t i = 0; i < n; i++)
        sum = (sum ^ c[i]) * 16777619u;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "fatal") == 0) {
        void *p = ckd_malloc(SIZE_MAX / 2);
        return p != NULL;
    }

    /* A 2-D float matrix, 6 x 5, as sphinx3 allocates its Gaussian tables. */
    float **m = (float **)ckd_calloc_2d(6, 5, sizeof(float));
    for (int i = 0; i < 6; i++)
        for (int j = 0; j < 5; j++)
            m[i][j] = (float)(i * 10 + j);
    mix(m[0], 6 * 5 * sizeof(float));

    /* A 3-D int array, 3 x 4 x 2. */
    int ***t = (int ***)ckd_calloc_3d(3, 4, 2, sizeof(int));
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 4; j++)
            for (int k = 0; k < 2; k++)
                t[i][j][k] = i * 100 + j * 10 + k;
    mix(t[0][0], 3 * 4 * 2 * sizeof(int));

    /* A growing word list through ckd_realloc. */
    int32_t *ids = ckd_calloc(4, sizeof(int32_t));
    int n = 4;
    for (int round = 0; round < 5; round++) {
        ids = ckd_realloc(ids, (size_t)n * 2 * sizeof(int32_t));
        for (int i = n; i < 2 * n; i++)
            ids[i] = i * 3;
        n *= 2;
    }
    mix(ids, (size_t)n * sizeof(int32_t));

    char *name = ckd_malloc(16);
    strcpy(name, "hmm-senone");
    mix(name, strlen(name) + 1);

    printf("nested: m[5][4] = %.1f, t[2][3][1] = %d, ids[%d] = %d, %s\n",
           m[5][4], t[2][3][1], n - 1, ids[n - 1], name);
    ckd_free_2d((void **)m);
    ckd_free_3d((void ***)t);
    ckd_free(ids);
    ckd_free(name);
    printf("nested: checksum %08x\n", sum);
    return 0;
}
