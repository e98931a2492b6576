/* N (default 10000) failing execve calls, in two phases: after the first phase it
 * says "phase 1" and waits for a line on stdin (so a test can read the tracer's
 * memory), then runs the rest and says "phase 2", and waits again. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 10000;
    int first = n / 10, fails = 0;
    char *args[] = {"/nonexistent/allocsite-trace-test", NULL};
    char line[64];
    for (int i = 0; i < n; i++) {
        if (i == first) {
            printf("phase 1: %d failures\n", fails);
            fflush(stdout);
            if (!fgets(line, sizeof line, stdin))
                return 3;
        }
        if (execve(args[0], args, NULL) < 0)
            fails++;
    }
    printf("phase 2: %d failures\n", fails);
    fflush(stdout);
    if (!fgets(line, sizeof line, stdin))
        return 3;
    return 0;
}
