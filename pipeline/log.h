/* log.h: logging for the driver and stages (never for kernels or io, which report
 * through qs_err). Rank 0 logs by default; with verbose every rank logs, prefixed by
 * its rank. Lines go to stdout (stderr is kept for the one error line) with the wall time since the logger started.
 *
 * A qs_log is a plain value owned by the caller (no global state).
 */
#ifndef QS_LOG_H
#define QS_LOG_H

#include <stdio.h>

typedef struct qs_log {
    int rank;          /* this process's rank */
    int verbose;       /* 1: every rank logs; 0: rank 0 only */
    int quiet;         /* 1: nothing but errors */
    double t0;         /* qs_log_now() at start */
    FILE *out;         /* stream (stdout when NULL) */
} qs_log;

void qs_log_init(qs_log *lg, int rank, int verbose, int quiet);

/* Informational line. printf-style; a newline is added. */
void qs_log_info(const qs_log *lg, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* Monotonic wall time in seconds. */
double qs_log_now(void);

/* Peak resident set size of this process in bytes (VmHWM), 0 if unknown. */
long long qs_log_peak_rss(void);
/* Resets the peak RSS to the current RSS (Linux: "5" to /proc/self/clear_refs), so a stage
 * can read its own peak; a no-op where unsupported. */
void qs_log_peak_rss_reset(void);

#endif /* QS_LOG_H */
