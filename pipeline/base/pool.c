/* pool.c: the fixed-size pthread pool of pool.h (a shared task counter, a generation
 * number per run, the lowest failing task's error) and the CPUs it may use. */
#define _GNU_SOURCE 1 /* sched_getaffinity, CPU_COUNT */
#include "pool.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct qs_pool {
    int threads;               /* workers, the caller included */
    pthread_t *tid;            /* (threads - 1) */
    int started;               /* threads started (for a partial create) */
    pthread_mutex_t mu;
    pthread_cond_t wake;       /* a new run (or the end) for the pool's threads */
    pthread_cond_t idle;       /* the last pool thread finished the run */
    uint64_t gen;              /* run number */
    int busy;                  /* pool threads still in the current run */
    int quit;
    int running;               /* a run is in progress (reentrancy check) */
    /* the current run */
    qs_pool_fn fn;
    void *ctx;
    int64_t ntasks;
    atomic_llong next;         /* next task to take */
    int64_t err_task;          /* lowest failing task (ntasks: none) */
    qs_status err_st;
    qs_err err;
};

/* Takes tasks until none is left; keeps the lowest failing task's error. */
static void work(qs_pool *p, int worker) {
    qs_err e;
    for (;;) {
        const int64_t t = (int64_t)atomic_fetch_add(&p->next, 1);
        if (t >= p->ntasks) break;
        qs_err_clear(&e);
        qs_status st = p->fn(p->ctx, t, worker, &e);
        if (st == QS_OK) continue;
        pthread_mutex_lock(&p->mu);
        if (t < p->err_task) {
            p->err_task = t;
            p->err_st = st;
            p->err = e;
        }
        pthread_mutex_unlock(&p->mu);
    }
}

typedef struct worker_arg {
    qs_pool *pool;
    int worker;
} worker_arg;

static void *worker_main(void *arg) {
    worker_arg a = *(worker_arg *)arg;
    free(arg);
    qs_pool *p = a.pool;
    uint64_t seen = 0;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->quit && p->gen == seen) pthread_cond_wait(&p->wake, &p->mu);
        if (p->quit) break;
        seen = p->gen;
        pthread_mutex_unlock(&p->mu);
        work(p, a.worker);
        pthread_mutex_lock(&p->mu);
        if (--p->busy == 0) pthread_cond_signal(&p->idle);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

qs_status qs_pool_create(int threads, qs_pool **out, qs_err *err) {
    qs_status st = QS_OK;
    qs_pool *p = NULL;
    *out = NULL;
    if (threads < 1 || threads > QS_POOL_MAX_THREADS)
        QS_THROW(err, QS_ERR_INPUT, "threads: %d is out of range (1..%d)", threads,
                 QS_POOL_MAX_THREADS);
    p = qs_calloc(1, sizeof(*p), err, "thread pool");
    if (!p) QS_THROW(err, QS_ERR_RUNTIME, "out of memory (thread pool)");
    p->threads = threads;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->wake, NULL);
    pthread_cond_init(&p->idle, NULL);
    if (threads > 1) {
        p->tid = qs_calloc((size_t)(threads - 1), sizeof(pthread_t), err, "thread ids");
        if (!p->tid) QS_THROW(err, QS_ERR_RUNTIME, "out of memory (thread pool)");
    }
    for (int i = 1; i < threads; ++i) {
        worker_arg *a = malloc(sizeof(*a));
        if (!a) QS_THROW(err, QS_ERR_RUNTIME, "out of memory (thread pool)");
        *a = (worker_arg){p, i};
        int rc = pthread_create(&p->tid[i - 1], NULL, worker_main, a);
        if (rc != 0) {
            free(a);
            QS_THROW(err, QS_ERR_RUNTIME, "threads: cannot start thread %d of %d (error %d)", i,
                     threads, rc);
        }
        p->started = i;
    }
    *out = p;
    p = NULL;
done:
    qs_pool_free(p);
    return st;
}

void qs_pool_free(qs_pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    p->quit = 1;
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->started; ++i) pthread_join(p->tid[i], NULL);
    pthread_cond_destroy(&p->wake);
    pthread_cond_destroy(&p->idle);
    pthread_mutex_destroy(&p->mu);
    free(p->tid);
    free(p);
}

int qs_pool_threads(const qs_pool *p) { return p ? p->threads : 1; }

qs_status qs_pool_run(qs_pool *p, int64_t ntasks, qs_pool_fn fn, void *ctx, qs_err *err) {
    if (ntasks <= 0) return QS_OK;
    if (!p) { /* in order on this thread; every task runs, the first failure is kept */
        qs_status first = QS_OK;
        for (int64_t t = 0; t < ntasks; ++t) {
            qs_err e;
            qs_err_clear(&e);
            qs_status st = fn(ctx, t, 0, &e);
            if (st != QS_OK && first == QS_OK) {
                first = st;
                if (err && err->code == QS_OK) *err = e;
            }
        }
        return first;
    }
    pthread_mutex_lock(&p->mu);
    if (p->running) {
        pthread_mutex_unlock(&p->mu);
        return QS_FAIL(err, QS_ERR_INTERNAL, "internal error: qs_pool_run called from a task");
    }
    p->running = 1;
    p->fn = fn;
    p->ctx = ctx;
    p->ntasks = ntasks;
    atomic_store(&p->next, 0);
    p->err_task = ntasks;
    p->err_st = QS_OK;
    p->busy = p->threads - 1;
    ++p->gen;
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    work(p, 0);
    pthread_mutex_lock(&p->mu);
    while (p->busy > 0) pthread_cond_wait(&p->idle, &p->mu);
    qs_status st = p->err_st;
    if (st != QS_OK && err && err->code == QS_OK) *err = p->err;
    p->running = 0;
    pthread_mutex_unlock(&p->mu);
    return st;
}

int qs_pool_cpus_allowed(void) {
    /* a dynamic set, doubled while the kernel's mask is wider (EINVAL: more than the size's
     * CPUs possible, e.g. > 1024 with a plain cpu_set_t) */
    for (int ncpu = 1024; ncpu <= 1 << 20; ncpu *= 2) {
        cpu_set_t *set = CPU_ALLOC(ncpu);
        if (!set) return 0;
        const size_t size = CPU_ALLOC_SIZE(ncpu);
        CPU_ZERO_S(size, set);
        int rc = sched_getaffinity(0, size, set), einval = rc != 0 && errno == EINVAL;
        int count = rc == 0 ? CPU_COUNT_S(size, set) : 0;
        CPU_FREE(set);
        if (!einval) return count;
    }
    return 0;
}

int qs_pool_cpus_online(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 && n < 1 << 20 ? (int)n : 0;
}

int qs_pool_fit(int requested, int allowed, int online) {
    return allowed > 0 && online > 0 && allowed < online && allowed < requested ? allowed
                                                                               : requested;
}

typedef struct zero_ctx {
    unsigned char *p;
    size_t n;
} zero_ctx;

#define ZERO_PIECE ((size_t)1 << 20)

static qs_status zero_task(void *vctx, int64_t t, int worker, qs_err *err) {
    const zero_ctx *z = vctx;
    const size_t a = (size_t)t * ZERO_PIECE;
    (void)worker;
    (void)err;
    memset(z->p + a, 0, z->n - a < ZERO_PIECE ? z->n - a : ZERO_PIECE);
    return QS_OK;
}

qs_status qs_pool_zero(qs_pool *pool, void *p, size_t n, qs_err *err) {
    zero_ctx z = {p, n};
    return qs_pool_run(pool, (int64_t)((n + ZERO_PIECE - 1) / ZERO_PIECE), zero_task, &z, err);
}
