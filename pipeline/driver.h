/* driver.h: runs the stages in the order it owns over one run directory, with
 * skip-if-done (manifests), agreement on bad input across ranks, signal stops at unit
 * boundaries, and wall time per stage.
 */
#ifndef QS_DRIVER_H
#define QS_DRIVER_H

#include "comm.h"
#include "config.h"
#include "log.h"
#include "pool.h"
#include "status.h"

typedef struct qs_run_opts {
    const char *config_path;
    const char *const *sets;   /* "key.path=value" overrides, in order */
    int nset;
    int resume;                /* continue an existing run directory */
    const char *stop_marker;   /* NULL, or a file written (besides run/stopped.json) when the
                                  run stops durably on a signal */
    int verbose;               /* every rank logs */
    int quiet;
} qs_run_opts;

/* Collective over `comm`. Returns the agreed status (all ranks return the same code and,
 * for errors, the same one-line message in *err). Exits: the caller finalizes and exits
 * with qs_status_exit_code(); QS_ERR_INTERNAL is aborted inside. */
qs_status qs_driver_run(const qs_run_opts *opts, qs_comm *comm, qs_err *err);

/* A rank's threads: the count the config's rule asks for (qs_config_threads), the count its
 * pool runs (capped at the CPUs the rank may run on, qs_pool_fit) and the pool (NULL for one
 * thread; owned: qs_pool_free). */
typedef struct qs_driver_threads {
    int requested;
    int used;
    const char *from; /* where `requested` came from (qs_config_threads) */
    int cpus;         /* qs_pool_cpus_allowed() */
    int online;       /* qs_pool_cpus_online() */
    qs_pool *pool;
} qs_driver_threads;

/* Local: resolves the counts and creates the pool. A bad environment variable is
 * QS_ERR_INPUT (agree on it before anything blocks). */
qs_status qs_driver_threads_make(const qs_config *cfg, qs_driver_threads *t, qs_err *err);

/* Collective over `comm` (after the ranks agreed): rank 0 logs the count and, when some
 * rank runs fewer threads than asked because its launcher bound it to fewer CPUs, one line
 * saying so and how to launch instead. */
void qs_driver_threads_log(const qs_comm *comm, const qs_log *lg, const qs_driver_threads *t);

/* Installs SIGUSR1/SIGTERM/SIGINT handlers that set the stop flag returned by
 * qs_driver_stop_flag() (the one process-wide variable: signal handlers can reach no
 * other state). */
void qs_driver_install_signals(void);
const volatile int *qs_driver_stop_flag(void);

#endif /* QS_DRIVER_H */
