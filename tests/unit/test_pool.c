/* test_pool.c: the thread pool (pipeline/base/pool.c): every task runs exactly once at
 * 1, 2, 3 and 8 threads and on a NULL pool; worker indices stay below the thread count;
 * per-worker scratch gives the same results for any thread count; the lowest failing
 * task's error is reported whatever the thread count and every other task still runs;
 * a task that calls the pool again is an internal error; many runs on one pool; bad
 * thread counts; qs_pool_zero; the pool size for the CPUs a launcher allows
 * (qs_pool_fit). */
#include "check.h"
#include "pool.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define NT 1000

typedef struct count_ctx {
    atomic_int hits[NT];       /* (NT) times each task ran */
    int threads;
    atomic_int bad_worker;
    double out[NT];            /* (NT) a per-task result computed with worker scratch */
    double scratch[16][64];    /* (threads, 64) per-worker scratch */
    int64_t fail_from;         /* tasks >= fail_from with an odd index fail */
    qs_pool *self;             /* reentrancy probe: the pool running the task */
} count_ctx;

static qs_status count_task(void *vctx, int64_t t, int worker, qs_err *err) {
    count_ctx *c = vctx;
    atomic_fetch_add(&c->hits[t], 1);
    if (worker < 0 || worker >= c->threads) atomic_fetch_add(&c->bad_worker, 1);
    double *s = c->scratch[worker];
    for (int i = 0; i < 64; ++i) s[i] = (double)(t * 64 + i) * 0.5;
    double sum = 0.0;
    for (int i = 0; i < 64; ++i) sum += s[i] * s[i];
    c->out[t] = sum;
    if (c->self) /* reentrant: refused */
        return qs_pool_run(c->self, 1, count_task, c, err) == QS_OK ? QS_OK : QS_ERR_RUNTIME;
    if (t >= c->fail_from && t % 2 == 1)
        return QS_FAIL(err, QS_ERR_INPUT, "task %lld failed", (long long)t);
    return QS_OK;
}

static void run_case(qs_pool *pool, int threads, int64_t fail_from, const double *want) {
    static count_ctx c;
    memset(&c, 0, sizeof(c));
    c.threads = threads;
    c.fail_from = fail_from;
    qs_err err = {0};
    qs_status st = qs_pool_run(pool, NT, count_task, &c, &err);
    int once = 1;
    for (int t = 0; t < NT; ++t) once &= atomic_load(&c.hits[t]) == 1;
    CHECK(once, "every task ran exactly once at %d threads", threads);
    CHECK(atomic_load(&c.bad_worker) == 0, "worker index in range at %d threads", threads);
    if (want) CHECK(memcmp(c.out, want, sizeof(c.out)) == 0, "same results at %d threads", threads);
    if (fail_from >= NT) {
        CHECK(st == QS_OK && err.code == QS_OK, "no error at %d threads", threads);
    } else {
        char msg[64];
        snprintf(msg, sizeof(msg), "task %lld failed", (long long)(fail_from | 1));
        CHECK(st == QS_ERR_INPUT && err.code == QS_ERR_INPUT && strcmp(err.msg, msg) == 0,
              "lowest failing task at %d threads: %s", threads, err.msg);
    }
}

int main(void) {
    static double want[NT];
    static count_ctx ref;
    qs_err err = {0};
    /* the reference: a NULL pool (in order on this thread) */
    memset(&ref, 0, sizeof(ref));
    ref.threads = 1;
    ref.fail_from = NT;
    CHECK(qs_pool_run(NULL, NT, count_task, &ref, &err) == QS_OK, "NULL pool");
    memcpy(want, ref.out, sizeof(want));
    CHECK(qs_pool_threads(NULL) == 1, "NULL pool has one worker");
    run_case(NULL, 1, 601, want);

    const int counts[] = {1, 2, 3, 8};
    for (size_t i = 0; i < sizeof(counts) / sizeof(counts[0]); ++i) {
        qs_pool *pool = NULL;
        memset(&err, 0, sizeof(err));
        CHECK(qs_pool_create(counts[i], &pool, &err) == QS_OK, "create %d: %s", counts[i], err.msg);
        if (!pool) continue;
        CHECK(qs_pool_threads(pool) == counts[i], "threads %d", counts[i]);
        for (int rep = 0; rep < 50; ++rep) run_case(pool, counts[i], NT, want);
        run_case(pool, counts[i], 0, want);   /* task 1 is the lowest failure */
        run_case(pool, counts[i], 777, want); /* task 777 */
        run_case(pool, counts[i], NT, want);  /* the pool still works after a failure */
        memset(&err, 0, sizeof(err));
        CHECK(qs_pool_run(pool, 0, count_task, &ref, &err) == QS_OK, "no tasks");
        /* a task calling its own pool: an internal error, not a deadlock */
        if (counts[i] > 1) {
            static count_ctx c;
            memset(&c, 0, sizeof(c));
            c.threads = counts[i];
            c.fail_from = NT;
            c.self = pool;
            memset(&err, 0, sizeof(err));
            CHECK(qs_pool_run(pool, 4, count_task, &c, &err) == QS_ERR_RUNTIME,
                  "reentrant run refused at %d threads", counts[i]);
        }
        qs_pool_free(pool);
    }
    qs_pool *pool = NULL;
    memset(&err, 0, sizeof(err));
    CHECK(qs_pool_create(0, &pool, &err) == QS_ERR_INPUT && !pool, "0 threads refused");
    CHECK(strcmp(err.msg, "threads: 0 is out of range (1..4096)") == 0, "message: %s", err.msg);
    qs_pool_free(NULL);

    /* zeroing in pieces: every byte, a short last piece, any thread count */
    for (int t = 1; t <= 3; ++t) {
        const size_t n = ((size_t)7 << 19) + 5; /* 3.5 MiB + 5 B */
        unsigned char *b = malloc(n);
        qs_pool *zp = NULL;
        memset(&err, 0, sizeof(err));
        if (t > 1) CHECK(qs_pool_create(t, &zp, &err) == QS_OK, "pool %d", t);
        memset(b, 0xff, n);
        CHECK(qs_pool_zero(zp, b, n, &err) == QS_OK, "zero at %d threads", t);
        size_t bad = 0;
        for (size_t i = 0; i < n; ++i) bad += b[i] != 0;
        CHECK(bad == 0, "zero at %d threads: %zu bytes left", t, bad);
        qs_pool_free(zp);
        free(b);
    }

    /* the CPUs a rank may use: a launcher's binding caps the pool, the machine's count does
     * not (an explicit 3 threads on 2 unrestricted CPUs stays 3) */
    CHECK(qs_pool_fit(8, 1, 64) == 1, "bound to 1 of 64 CPUs: 1 thread");
    CHECK(qs_pool_fit(8, 8, 64) == 8, "8 of 64 CPUs, 8 threads: 8");
    CHECK(qs_pool_fit(16, 8, 64) == 8, "8 of 64 CPUs, 16 threads: 8");
    CHECK(qs_pool_fit(2, 8, 64) == 2, "fewer threads than allowed CPUs: as asked");
    CHECK(qs_pool_fit(3, 2, 2) == 3, "every CPU allowed: the count as asked");
    CHECK(qs_pool_fit(4, 0, 64) == 4 && qs_pool_fit(4, 1, 0) == 4, "unknown counts: as asked");
    int allowed = qs_pool_cpus_allowed(), online = qs_pool_cpus_online();
    CHECK(allowed >= 1 && online >= 1 && allowed <= online, "cpus allowed %d, online %d",
          allowed, online);
    return qs_test_finish("test_pool");
}
