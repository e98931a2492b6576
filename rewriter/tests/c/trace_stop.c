/* Job control through the tracer: the parent stops its child with SIGSTOP, sees it
 * stopped (waitpid WUNTRACED), continues it (WCONTINUED), and ends it with SIGTERM.
 * With an argument FILE it first writes its pid there and waits to be stopped and
 * continued from outside (it counts the SIGCONTs it gets). */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t conts;
static void on_cont(int s) { (void)s; conts++; }

int main(int argc, char **argv)
{
    if (argc > 1) {
        signal(SIGCONT, on_cont);
        FILE *f = fopen(argv[1], "w");
        fprintf(f, "%d\n", (int)getpid());
        fclose(f);
        struct timespec ts = {0, 10 * 1000 * 1000};
        for (int i = 0; i < 3000 && !conts; i++)
            nanosleep(&ts, NULL);
        printf("external stop/cont: %s\n", conts ? "continued" : "never continued");
    }
    pid_t c = fork();
    if (c == 0) {
        struct timespec ts = {0, 1000 * 1000};
        for (;;) {
            char *p = malloc(64);
            free(p);
            nanosleep(&ts, NULL);
        }
    }
    int st;
    kill(c, SIGSTOP);
    waitpid(c, &st, WUNTRACED);
    printf("stopped: %d sig %s\n", WIFSTOPPED(st), strsignal(WSTOPSIG(st)));
    kill(c, SIGCONT);
    waitpid(c, &st, WCONTINUED);
    printf("continued: %d\n", WIFCONTINUED(st));
    kill(c, SIGTERM);
    waitpid(c, &st, 0);
    printf("terminated: %d sig %s\n", WIFSIGNALED(st), strsignal(WTERMSIG(st)));
    return 0;
}
