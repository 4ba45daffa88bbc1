/* common.h: the steps several stages share, written once: the calibration windows and
 * their hash, the plan of this run read back, chunk partials of several ranks added in
 * chunk order, memory and busy-time diagnostics, the test knobs that stop a stage after n
 * units and hold a rank at a named point. (The unit helpers of stage.h live in common.c.)
 *
 * Ownership: qs_stage_windows owns its token mapping and offsets
 * (qs_stage_windows_close releases them; safe on a zeroed value). qs_stage_part and
 * qs_stage_sums borrow the caller's buffers.
 */
#ifndef QS_STAGE_COMMON_H
#define QS_STAGE_COMMON_H

#include <stdint.h>

#include "layer_plan.h"
#include "memory.h"
#include "stage.h"
#include "tokens.h"

/* The calibration windows of calib.*: the token file, the chosen start offsets and the
 * SHA-256 of their content (seqlen, then every window's token ids as u32 LE): the identity
 * of what calibrate and the sequential reconstruct see. */
typedef struct qs_stage_windows {
    qs_tokens tok;
    int64_t *offs;   /* (nsamples) start offsets into tok */
    int64_t nsamples;
    int64_t seqlen;
    char hash[65];
} qs_stage_windows;

/* Local: opens calib.tokens and draws the windows (QS_ERR_INPUT naming the file or key
 * for a missing file, a bad offset, non-positive sizes). `why` completes the message when
 * calib.tokens is unset (e.g. "calibrate"). */
qs_status qs_stage_windows_open(const qs_stage_ctx *ctx, const char *why,
                                qs_stage_windows *w, qs_err *err);
void qs_stage_windows_close(qs_stage_windows *w);

/* Local: the inputs from outside the run directory that the stages of a run will read,
 * checked before any stage runs (a bad one is exit 2 at once, not after hours): the
 * calibration windows (token file, offsets, lengths), and with eval.tokens set at least one
 * whole evaluation window. When calibration reads the same tokens many times (windows x
 * seqlen above the file's length) it logs a warning and fills `warning` (n bytes; "" = no
 * warning), which the driver records in timings.json and the report. */
qs_status qs_stages_check_inputs(const qs_stage_ctx *ctx, char *warning, size_t n,
                                 qs_err *err);

/* Local: run/plan/plan.json, checked against this run's rank and layer counts. */
qs_status qs_stage_plan_read(const qs_stage_ctx *ctx, qs_plan *plan, qs_err *err);

/* One linear group's input statistics of width d: a chunk partial (hess: f32 Hessian tile,
 * upper triangle meaningful; absmax, sumsq per channel, both NULL when not kept) or, with
 * f64 hess, the running sums they are added into (pipeline/model/hessian.h). */
typedef struct qs_stage_part {
    int64_t d;
    float *hess;    /* (d, d) */
    float *absmax;  /* (d) or NULL */
    double *sumsq;  /* (d) or NULL */
} qs_stage_part;
typedef struct qs_stage_sums {
    double *hess;   /* (d, d) f64, upper triangle */
    float *absmax;  /* (d) or NULL */
    double *sumsq;  /* (d) or NULL */
} qs_stage_sums;

/* Messages of one partial on its way to rank 0: the Hessian tile, absmax, sumsq. */
#define QS_STAGE_ROUND_MSGS 3

/* One round of chunk partials added in chunk order on rank 0 of comm, so that partials
 * computed on several ranks give the bytes of one rank adding every chunk in order (the
 * quantized-input reconstruct's rounds over all ranks, calibrate's replicas of a stage).
 * Rank r < nhave holds the partial of the round's r-th chunk in *part; rank 0 adds its own
 * into *sums, then receives rank 1's into *part (overwriting it) and adds it, and so on.
 * Only the Hessian's upper triangle travels (qs_comm_isend_upper: a sender's part->hess is
 * packed in place, so its (d, d) layout is lost until the next partial is written).
 * Ranks 1..nhave-1 send theirs and ignore sums (may be NULL): blocking sends when reqs is
 * NULL; with reqs (QS_STAGE_ROUND_MSGS requests) nonblocking ones, which the caller completes
 * with qs_stage_round_wait before it writes part's buffers again. Ranks >= nhave do nothing.
 * Every rank < nhave passes the same d and the same choice of statistics. No collective:
 * ranks that call this in the same order of groups cannot deadlock. A failed add on rank 0
 * still receives the rest of the round, then returns the failure. */
qs_status qs_stage_round_add(const qs_comm *comm, int nhave, qs_pool *pool, qs_stage_part *part,
                             const qs_stage_sums *sums, qs_comm_req *reqs, qs_err *err);

/* Completes the sends qs_stage_round_add started into reqs (QS_STAGE_ROUND_MSGS; zeroed
 * requests return at once). */
void qs_stage_round_wait(const qs_comm *comm, qs_comm_req *reqs);

/* SHA-256 of a file of the run directory (rel), QS_ERR_INPUT "missing; <hint>" when absent. */
qs_status qs_stage_hash_rel(const qs_stage_ctx *ctx, const char *rel, const char *hint,
                            char hex[65], qs_err *err);

/* Diagnostics, not an output (outside every manifest; differs per rank count and run):
 * every rank writes <dir>/rss/rank-NNN.json {"rank", "nranks", "first", "count",
 * "start_rss_bytes" (RSS when the stage's work began), "peak_rss_bytes" (VmHWM since the
 * last reset), "formula_bytes" (the stage's part of qs_mem_for_stage), "seconds"} and logs
 * the same line. Read by tests/bench/mem_check.py. A failure only logs. */
void qs_stage_rss_report(const qs_stage_ctx *ctx, qs_mem_stage stage, int first, int count,
                         long long start_rss, double seconds);

/* Work left out (docs/design.md "Work that is skipped"): records it in ctx->skipped (the
 * driver writes it to timings.json) and logs "LABEL: skipped COUNT of OF WHAT: WHY".
 * Call with the same values on every rank. Nothing is recorded when count is 0. */
void qs_stage_skipped(const qs_stage_ctx *ctx, const char *label, const char *what,
                      int64_t count, int64_t of, const char *why);

/* 1 when the debug knob QS_NO_SKIP (environment; a comma-separated list of "calibrate",
 * "probes", "final", or "all") asks to do the work named `what` although nothing needs it,
 * for comparisons with the skipping run (tests, tests/bench/bench_skips.py). */
int qs_stage_no_skip(const char *what);

/* Collective: logs every rank's busy seconds (rank 0) and adds them to ctx->busy. */
qs_status qs_stage_report_busy(const qs_stage_ctx *ctx, double busy, qs_err *err);

/* Test knob: the value of environment variable `name` (e.g. QS_TEST_STOP_AFTER_LAYERS):
 * raise the stop flag once that many units were done by this process; 0 when unset. */
int qs_stage_stop_after(const char *name);

/* Test knob of the fault matrix (tests/faults): with QS_TEST_HOLD=DIR:POINT and
 * QS_TEST_HOLD_DIR=MARKS in the environment, a rank that reaches POINT of the stage whose
 * folder is DIR ("plan", "calib", "recon", "search", "final", "out", "eval") creates the
 * file MARKS/DIR.POINT.RANK and waits while that file exists and no stop signal has come,
 * so that a test can kill -9 a rank, fill the disk or signal the launcher at a known point.
 * POINT is "start" (the driver, before the stage's run, on every rank), "unit" (after this
 * rank recorded a finished unit), "checkpoint" (calibrate, after a durable checkpoint) or
 * "shard" (write, after each output shard is closed, on every rank).
 * Nothing happens when the knob is unset or names another place. Local. */
void qs_stage_test_hold(const qs_stage_ctx *ctx, const char *point);

#endif /* QS_STAGE_COMMON_H */
