/* paro — a parallel loop over independent items (see parallel.h). */
#include "parallel.h"

#include <pthread.h> /* pthread_create, pthread_join, pthread_mutex_* */

#define MAX_THREADS 256

typedef struct loop {
    void (*fn)(void *ctx, uint32_t item, int worker);
    void *ctx;
    uint32_t n;
    pthread_mutex_t lock;
    uint32_t next; /* guarded by lock */
} loop;

typedef struct worker {
    loop *lp;
    int id;
} worker;

static void *run_worker(void *p)
{
    worker *w = p;
    loop *lp = w->lp;
    for (;;) {
        pthread_mutex_lock(&lp->lock);
        uint32_t item = lp->next < lp->n ? lp->next++ : lp->n;
        pthread_mutex_unlock(&lp->lock);
        if (item >= lp->n)
            return NULL;
        lp->fn(lp->ctx, item, w->id);
    }
}

void paro_parallel_for(int threads, uint32_t n, void (*fn)(void *ctx, uint32_t item, int worker),
                       void *ctx)
{
    if (threads > MAX_THREADS)
        threads = MAX_THREADS;
    if (threads > (int)n)
        threads = (int)n;
    if (threads < 1)
        threads = 1;
    loop lp = {fn, ctx, n, PTHREAD_MUTEX_INITIALIZER, 0};
    pthread_t tid[MAX_THREADS];
    worker workers[MAX_THREADS];
    int started = 0;
    for (int i = 0; i < threads; i++) {
        workers[i].lp = &lp;
        workers[i].id = i;
    }
    /* Workers 1..threads-1 on new threads, worker 0 on this one; if a thread
     * cannot be made the loop runs on fewer, with the same results. */
    for (int i = 1; i < threads; i++) {
        if (pthread_create(&tid[started], NULL, run_worker, &workers[i]) != 0)
            break;
        started++;
    }
    run_worker(&workers[0]);
    for (int i = 0; i < started; i++)
        pthread_join(tid[i], NULL);
    pthread_mutex_destroy(&lp.lock);
}
