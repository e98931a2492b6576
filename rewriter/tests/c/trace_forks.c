/* Forks N children (default 100); each allocates, exits with its index; the parent
 * reaps them in order and prints what it saw. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 100;
    pid_t *kids = calloc(n, sizeof *kids);
    for (int i = 0; i < n; i++) {
        pid_t p = fork();
        if (p == 0) {
            char *s = malloc(32 + i);
            memset(s, 'a' + i % 26, 31 + i);
            s[31 + i] = 0;
            _exit(i % 200);
        }
        kids[i] = p;
    }
    long sum = 0;
    for (int i = 0; i < n; i++) {
        int st;
        if (waitpid(kids[i], &st, 0) != kids[i] || !WIFEXITED(st))
            return 1;
        sum += WEXITSTATUS(st);
    }
    printf("children %d, exit codes sum %ld\n", n, sum);
    free(kids);
    return 7;
}
