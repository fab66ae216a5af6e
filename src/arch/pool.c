/* pool.c - a fixed-size pthread pool. kvc_pool_run hands fn(arg, ith, nth) to every worker
 * by bumping a generation counter, runs ith = 0 itself and waits for the others. Workers
 * and the waiting caller spin briefly (decode calls this many times per token, so wake-up
 * latency matters) and then sleep on condition variables. */
#include "kernels.h"
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CPU_RELAX() _mm_pause()
#else
#define CPU_RELAX() ((void)0)
#endif

/* Waiting: SPIN_PAUSE iterations of pause (about 10-30 us), then up to SPIN_ITERS in all
 * where each iteration also yields the CPU (so an oversubscribed machine can run the thread
 * being waited for; about 1-2 ms), then sleep on a condition variable. */
#define SPIN_PAUSE 256
#define SPIN_ITERS 2048

/* One iteration of a wait loop. */
static inline void spin_relax(int i) {
    CPU_RELAX();
    if (i >= SPIN_PAUSE) sched_yield();
}

struct kvc_pool;

struct worker {
    struct kvc_pool *pool;
    int ith;
    pthread_t thread;
};

struct kvc_pool {
    int n;                       /* threads including the caller */
    struct worker *workers;      /* n - 1 entries */
    int n_started;               /* workers successfully created */
    /* The task of the current generation; written by the caller only while no worker
     * runs (before the generation bump, which publishes it with release order). */
    kvc_task_fn fn;
    void *arg;
    _Atomic unsigned gen;        /* bumped once per kvc_pool_run */
    _Atomic int stop;            /* set by kvc_pool_free */
    _Atomic int pending;         /* workers that have not finished the current task */
    _Atomic int n_sleeping;      /* workers waiting (or about to wait) on wake */
    _Atomic int caller_sleeping; /* the caller waits (or is about to wait) on done */
    pthread_mutex_t mu;
    pthread_cond_t wake;         /* new generation or stop */
    pthread_cond_t done;         /* pending reached 0 */
};

/* Wait until the generation differs from seen (or stop); returns the new generation. */
static unsigned wait_for_work(struct kvc_pool *p, unsigned seen) {
    for (int i = 0; i < SPIN_ITERS; i++) {
        unsigned g = atomic_load_explicit(&p->gen, memory_order_acquire);
        if (g != seen || atomic_load_explicit(&p->stop, memory_order_acquire)) return g;
        spin_relax(i);
    }
    pthread_mutex_lock(&p->mu);
    /* seq_cst increment then seq_cst load of gen: pairs with the caller's bump-then-check
     * of n_sleeping, so either we see the new generation or the caller sees us asleep. */
    atomic_fetch_add(&p->n_sleeping, 1);
    unsigned g;
    while ((g = atomic_load(&p->gen)) == seen && !atomic_load(&p->stop))
        pthread_cond_wait(&p->wake, &p->mu);
    atomic_fetch_sub(&p->n_sleeping, 1);
    pthread_mutex_unlock(&p->mu);
    return g;
}

static void *worker_main(void *vw) {
    struct worker *w = vw;
    struct kvc_pool *p = w->pool;
    unsigned seen = 0; /* the generation starts at 0 and no task has been posted yet */
    for (;;) {
        seen = wait_for_work(p, seen);
        if (atomic_load_explicit(&p->stop, memory_order_acquire)) break;
        p->fn(p->arg, w->ith, p->n);
        /* The last worker to finish wakes the caller if it went to sleep. */
        if (atomic_fetch_sub(&p->pending, 1) == 1 && atomic_load(&p->caller_sleeping)) {
            pthread_mutex_lock(&p->mu);
            pthread_cond_signal(&p->done);
            pthread_mutex_unlock(&p->mu);
        }
    }
    return NULL;
}

struct kvc_pool *kvc_pool_create(int n_threads) {
    if (n_threads < 1 || n_threads > 1024) return NULL;
    struct kvc_pool *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->n = n_threads;
    atomic_init(&p->gen, 0);
    atomic_init(&p->stop, 0);
    atomic_init(&p->pending, 0);
    atomic_init(&p->n_sleeping, 0);
    atomic_init(&p->caller_sleeping, 0);
    if (pthread_mutex_init(&p->mu, NULL) != 0) { free(p); return NULL; }
    if (pthread_cond_init(&p->wake, NULL) != 0) goto fail_mu;
    if (pthread_cond_init(&p->done, NULL) != 0) goto fail_wake;
    if (n_threads > 1) {
        p->workers = calloc((size_t)n_threads - 1, sizeof *p->workers);
        if (!p->workers) goto fail_done;
        for (int i = 0; i < n_threads - 1; i++) {
            p->workers[i].pool = p;
            p->workers[i].ith = i + 1;
            if (pthread_create(&p->workers[i].thread, NULL, worker_main, &p->workers[i]) != 0) {
                kvc_pool_free(p); /* joins the ones already started */
                return NULL;
            }
            p->n_started++;
        }
    }
    return p;
fail_done:
    pthread_cond_destroy(&p->done);
fail_wake:
    pthread_cond_destroy(&p->wake);
fail_mu:
    pthread_mutex_destroy(&p->mu);
    free(p);
    return NULL;
}

void kvc_pool_free(struct kvc_pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    atomic_store(&p->stop, 1);
    atomic_fetch_add(&p->gen, 1);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->n_started; i++) pthread_join(p->workers[i].thread, NULL);
    pthread_cond_destroy(&p->done);
    pthread_cond_destroy(&p->wake);
    pthread_mutex_destroy(&p->mu);
    free(p->workers);
    free(p);
}

int kvc_pool_size(const struct kvc_pool *p) { return p ? p->n : 1; }

/* Not reentrant: one caller at a time, and fn must not call kvc_pool_run on the same pool. */
void kvc_pool_run(struct kvc_pool *p, kvc_task_fn fn, void *arg) {
    if (!p || p->n == 1) {
        fn(arg, 0, 1);
        return;
    }
    p->fn = fn;
    p->arg = arg;
    atomic_store_explicit(&p->pending, p->n - 1, memory_order_relaxed);
    atomic_fetch_add(&p->gen, 1); /* seq_cst: publishes fn/arg/pending */
    if (atomic_load(&p->n_sleeping) > 0) {
        pthread_mutex_lock(&p->mu);
        pthread_cond_broadcast(&p->wake);
        pthread_mutex_unlock(&p->mu);
    }
    fn(arg, 0, p->n);
    /* Wait for the workers: spin, then sleep on done. */
    for (int i = 0; i < SPIN_ITERS; i++) {
        if (atomic_load_explicit(&p->pending, memory_order_acquire) == 0) return;
        spin_relax(i);
    }
    pthread_mutex_lock(&p->mu);
    atomic_store(&p->caller_sleeping, 1);
    while (atomic_load(&p->pending) != 0) pthread_cond_wait(&p->done, &p->mu);
    atomic_store(&p->caller_sleeping, 0);
    pthread_mutex_unlock(&p->mu);
}
