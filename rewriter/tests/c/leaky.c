/* allocsite report's leak list: chunks left live at exit from two lines, linked against
 * liballocsite_rt.so directly (as a rewritten program loads it). */
#include <stdlib.h>
#include <string.h>

void *keep[16];
void *volatile tmp[1000];

__attribute__((noinline)) static void dup_names(int n) {
    for (int i = 0; i < n; i++) keep[i] = strdup("name"); /* LEAK-DUP */
}

int main(void) {
    for (int i = 0; i < 1000; i++) tmp[i] = malloc(100);
    for (int i = 0; i < 1000; i++) free(tmp[i]);
    dup_names(5);
    keep[10] = calloc(3, 100); /* LEAK-CALLOC */
    return 0;
}
