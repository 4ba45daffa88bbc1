/* log.h: logging for the driver and stages (never for kernels or io, which report
 * through qs_err). Rank 0 logs by default; with verbose every rank logs, prefixed by
 * its rank. Lines go to stdout (stderr is kept for the one error line) with the wall time since the logger started.
 *
 * A qs_log is a plain value owned by the caller (no global state).
 */
#ifndef QS_LOG_H
#define QS_LOG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef struct qs_log {
    int rank;          /* this process's rank */
    int verbose;       /* 1: every rank logs; 0: rank 0 only */
    int quiet;         /* 1: nothing but errors */
    double t0;         /* qs_log_now() at start */
    FILE *out;         /* stream (stdout when NULL) */
    int tty;           /* stdout is a terminal: progress lines overwrite each other (\r) */
} qs_log;

void qs_log_init(qs_log *lg, int rank, int verbose, int quiet);

/* Informational line. printf-style; a newline is added. */
void qs_log_info(const qs_log *lg, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* Progress of one stage with an ETA, printed by rank 0 only (nothing on other ranks, with
 * --quiet, or when the pointer is NULL: stages call it unconditionally). One line per step
 * when stdout is not a terminal (Slurm logs); on a terminal each step overwrites the last
 * with \r. Under an MPI launcher (mpirun gives ranks pseudo-terminals even when its own
 * output goes to a file) lines are always used; env QSHARD_PROGRESS=tty|lines overrides. A line reads
 *   [qshard   12.34s] calibrate: layer 3/32 (chunk 5/16) 42% elapsed 1m02s ETA 1m25s
 * The ETA extrapolates the rate of the units done in this process (a resumed stage starts
 * at `done0`, which does not count as work done now).
 * Ownership: a plain value; the driver owns one and hands stages a pointer (borrowed log). */
typedef struct qs_progress {
    const qs_log *log;   /* borrowed */
    char stage[32];      /* prefix, e.g. "calibrate" */
    int64_t total;       /* units of the stage (0 = not started) */
    int64_t done0;       /* units already done when this process started the stage */
    int64_t done;        /* units done so far */
    double t0;           /* qs_log_now() at qs_progress_start */
} qs_progress;

/* The driver, before each stage: names it and starts the clock (total unknown yet). */
void qs_progress_start(qs_progress *p, const qs_log *lg, const char *stage);
/* The stage, once it knows its work: `total` units of which `done0` are already done. */
void qs_progress_begin(qs_progress *p, int64_t total, int64_t done0);
/* The stage, at a unit boundary: `done` units are finished; `fmt` describes the position
 * ("layer 3/32 (chunk 5/16)"); the percentage, elapsed time and ETA are appended. */
void qs_progress_step(qs_progress *p, int64_t done, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
/* Formats seconds as "42s", "1m02s" or "2h03m" into buf (n >= 16); returns buf. */
const char *qs_progress_fmt_time(double s, char *buf, size_t n);

/* Monotonic wall time in seconds. */
double qs_log_now(void);

/* CPU time of this process in seconds (all threads). */
double qs_log_cpu_now(void);

/* Peak resident set size of this process in bytes (VmHWM), 0 if unknown. */
long long qs_log_peak_rss(void);
/* Resets the peak RSS to the current RSS (Linux: "5" to /proc/self/clear_refs), so a stage
 * can read its own peak; a no-op where unsupported. */
void qs_log_peak_rss_reset(void);

#endif /* QS_LOG_H */
