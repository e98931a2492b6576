/* Reads standard input, prints its line and byte counts and a checksum. */
#include <stdio.h>
#include <stdlib.h>

int main(void)
{
    size_t cap = 16, len = 0, lines = 0;
    unsigned long h = 5381;
    char *buf = malloc(cap);
    int c;
    while ((c = getchar()) != EOF) {
        if (len == cap)
            buf = realloc(buf, cap *= 2);
        buf[len++] = (char)c;
        h = h * 33 + (unsigned char)c;
        lines += c == '\n';
    }
    printf("%zu lines, %zu bytes, hash %lx\n", lines, len, h);
    free(buf);
    return 0;
}
