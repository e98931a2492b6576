/* Creates and joins N threads (default 50); each allocates and frees. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

static void *work(void *arg)
{
    long k = (long)arg, sum = 0;
    for (int i = 0; i < 20; i++) {
        long *v = malloc((size_t)(i + 1) * sizeof *v);
        for (int j = 0; j <= i; j++)
            v[j] = k + j;
        sum += v[i];
        free(v);
    }
    return (void *)sum;
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 50;
    pthread_t *t = malloc(n * sizeof *t);
    for (long i = 0; i < n; i++)
        if (pthread_create(&t[i], NULL, work, (void *)i) != 0)
            return 1;
    long total = 0;
    for (int i = 0; i < n; i++) {
        void *r;
        pthread_join(t[i], &r);
        total += (long)r;
    }
    printf("threads %d, total %ld\n", n, total);
    free(t);
    return 0;
}
