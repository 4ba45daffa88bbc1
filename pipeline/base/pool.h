/* pool.h: a small fixed-size thread pool for the heavy loops of one rank (threads per rank).
 *
 * qs_pool_run(pool, ntasks, fn, ctx) calls fn(ctx, task, worker) once for every task in
 * [0, ntasks) and returns when all have returned. Tasks are fixed tiles chosen by the caller
 * from the data's shape, never from the thread count; which worker runs which task must not
 * matter (a task writes only its own tile, or scratch indexed by `worker`), so results are
 * the same bytes for any thread count. Workers take tasks in index order from a shared
 * counter; the calling thread is worker 0 and the pool's threads are 1 .. threads-1.
 *
 * Errors: every task runs even when another failed; the status and qs_err returned are those
 * of the failing task with the lowest index (the same error for any thread count).
 *
 * A NULL pool runs the tasks in order on the calling thread (worker 0). A pool is not
 * reentrant: a task must not call qs_pool_run on the pool that runs it (QS_ERR_INTERNAL).
 * BLAS stays single-threaded inside a task (the stages set openblas_set_num_threads(1)).
 *
 * Ownership: qs_pool_create allocates the pool and starts its threads; qs_pool_free joins
 * them and frees it (NULL is fine). No global state: the driver (or a command) creates the
 * pool from the resolved `threads` and passes it down in the explicit structs.
 */
#ifndef QS_POOL_H
#define QS_POOL_H

#include <stdint.h>

#include "status.h"

#define QS_POOL_MAX_THREADS 4096

typedef struct qs_pool qs_pool;

/* One task: `task` in [0, ntasks), `worker` in [0, qs_pool_threads(pool)). */
typedef qs_status (*qs_pool_fn)(void *ctx, int64_t task, int worker, qs_err *err);

/* A pool of `threads` workers (1 .. QS_POOL_MAX_THREADS; 1 starts no thread). */
qs_status qs_pool_create(int threads, qs_pool **out, qs_err *err);
void qs_pool_free(qs_pool *pool);

/* The number of CPUs this process may run on: its affinity mask, which the launcher sets
 * (srun --cpus-per-task, mpiexec's binding: Open MPI binds each rank to one core when it
 * starts two or fewer, taskset, a container's cpuset). 0 when it cannot be read. */
int qs_pool_cpus_allowed(void);

/* The machine's online CPUs (0 when unknown). */
int qs_pool_cpus_online(void);

/* The pool size for `requested` threads when the process may run on `allowed` of the
 * machine's `online` CPUs (0 = unknown): `allowed` when the launcher restricted the process
 * (allowed < online) to fewer CPUs than requested, else `requested` (an explicit count on an
 * unrestricted process is kept even above the CPU count: the tests run 3 threads on 2). The
 * results do not depend on the thread count (file comment): the cap changes time only. */
int qs_pool_fit(int requested, int allowed, int online);

/* Zeroes bytes [0, n) of p in 1 MiB pieces as tasks on pool (may be NULL). For fresh
 * buffers: their pages are first touched by writes, spread over the threads, instead of by
 * the first read-modify-write (a read maps the shared zero page and the write then faults
 * again and flushes every thread's TLB). */
qs_status qs_pool_zero(qs_pool *pool, void *p, size_t n, qs_err *err);

/* Number of workers (1 for NULL): the size of per-worker scratch arrays. */
int qs_pool_threads(const qs_pool *pool);

/* Runs every task; see the file comment for the order of errors. */
qs_status qs_pool_run(qs_pool *pool, int64_t ntasks, qs_pool_fn fn, void *ctx, qs_err *err);

#endif /* QS_POOL_H */
