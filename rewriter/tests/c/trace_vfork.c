/* vfork + exec: runs PROG ARGS… through vfork/execv, then reports its status. */
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    if (argc < 2)
        return 2;
    fflush(stdout);
    pid_t p = vfork();
    if (p == 0) {
        execv(argv[1], argv + 1);
        _exit(127);
    }
    int st;
    waitpid(p, &st, 0);
    printf("child exited %d\n", WIFEXITED(st) ? WEXITSTATUS(st) : -1);
    return 0;
}
