/* The program `make demo` analyzes, rewrites and runs (out/demo.O2).
 * It allocates a little through each kind of wrapper so the per-site report has
 * something to show, and leaks a few blocks on purpose. */
#include <stdio.h>
#include <string.h>
#include "xalloc.h"
#include "ckd_alloc.h"

struct word { char *text; int count; };

int main(void)
{
    /* xmalloc straight from main: one site per call below. */
    static const char *text[] = { "the", "quick", "brown", "fox", "jumps", "over", "the", "lazy", "dog", "the" };
    int nwords = 0;
    struct word *words = xcalloc(16, sizeof *words);
    for (int i = 0; i < 10; i++) {
        int j = 0;
        while (j < nwords && strcmp(words[j].text, text[i]) != 0)
            j++;
        if (j == nwords) {
            words[j].text = xmalloc(strlen(text[i]) + 1);
            strcpy(words[j].text, text[i]);
            nwords++;
        }
        words[j].count++;
    }
    printf("demo: %d distinct words, \"%s\" seen %d times\n", nwords, words[0].text, words[0].count);

    /* The sphinx3-style nested allocator: __ckd_calloc_2d__ calls __ckd_calloc__
     * and __ckd_malloc__ inside one outer call. */
    float **table = (float **)ckd_calloc_2d(8, 4, sizeof(float));
    for (int r = 0; r < 8; r++)
        for (int c = 0; c < 4; c++)
            table[r][c] = (float)(r * c);
    printf("demo: 8x4 table, table[7][3] = %.1f\n", table[7][3]);

    /* A realloc chain: a log that doubles when full. */
    size_t cap = 8, len = 0;
    char *log = xmalloc(cap);
    for (int i = 0; i < 40; i++) {
        char entry[16];
        int n = snprintf(entry, sizeof entry, "e%d;", i);
        while (len + (size_t)n + 1 > cap)
            log = xrealloc(log, cap *= 2);
        memcpy(log + len, entry, (size_t)n + 1);
        len += (size_t)n;
    }
    printf("demo: log of %zu bytes in a %zu-byte buffer\n", len, cap);

    /* Three wrappers deep, and a block from a 2-byte wrapper. */
    char *deep = buf_alloc(20);
    char *shortw = xmalloc_alias(12);
    memset(deep, 'd', 48);
    memset(shortw, 's', 12);

    /* Freed: the log, the table. Leaked on purpose: the words, deep, shortw. */
    xfree(log);
    ckd_free_2d((void **)table);
    printf("demo: done, %d words and 2 buffers left allocated\n", nwords);
    return 0;
}
