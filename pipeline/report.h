/* report.h: what a run records about itself for people: run/timings.json (wall, busy and
 * CPU seconds per stage and per rank, every attempt of a resumed run) and run/report.md with
 * SVG plots in run/report/ (docs/slurm.md "Run report").
 *
 * The report reads only files of the run directory (config.resolved.yaml, plan/plan.json,
 * timings.json, recon/ and final/ layer-NNN.h5 tables, search/allocation.json,
 * search/pareto.csv, eval*.json); a section whose inputs are missing says "not run". The
 * section "Dead columns and damping (GPTQ)" (lib/recon_notes.h) lists a table only when a
 * layer file records dead input columns, raised damping or the fp64 fallback. It can be rebuilt at any
 * time with `qshard report RUN_DIR`.
 *
 * timings.json:
 *   { "format": "qshard-timings-1", "total_s": <sum of the attempts' total_s>,
 *     "attempts": [ { "ranks": N, "resume": 0|1, "status": "done"|"stopped"|"failed",
 *                     "total_s": x, "peak_rss_bytes": [per rank],
 *                     "stages": [ { "name": "calibrate", "status": "done", "wall_s": x,
 *                                   "ranks": [ { "wall_s": x, "busy_s": x|null,
 *                                                "cpu_s": x, "threads": n } ],
 *                                   "skipped": { "what": "layer solves", "count": N,
 *                                                "of": N, "why": "..." } } ],
 *                     "warnings": [ "calib: ... reads the same tokens 2.0 times ..." ] } ] }
 * wall_s of a stage is rank 0's; busy_s is the compute time the stage measured on that rank
 * (null when the stage does not measure it); cpu_s is the process CPU time (MPI's busy
 * polling counts as CPU time); threads is the number of threads the rank ran the stage's heavy
 * loops on (the resolved `threads`, docs/slurm.md). "warnings" (only when there are any): what
 * the input checks found worth a warning but not a refusal, one sentence each; report.md lists
 * them under "Warnings". "skipped" (only when the stage left work out because no
 * output needs it, stages/stage.h qs_stage_skip): what, how many of how many, and why. An attempt killed outright (kill -9) leaves no entry.
 *
 * Ownership: qs_timings is a plain value (fixed arrays) owned by the driver.
 */
#ifndef QS_REPORT_H
#define QS_REPORT_H

#include "comm.h"
#include "rundir.h"
#include "status.h"

#define QS_TIMINGS_MAX 16

typedef struct qs_timing {
    char name[32];
    qs_status status;  /* QS_OK done, QS_STOPPED, other = failed */
    double wall_s;
    double busy_s;     /* 0 = not measured by the stage */
    double cpu_s;
    int threads;       /* threads of the rank's pool (1 without one) */
    char skip_what[64];    /* "" = nothing skipped */
    int64_t skip_count, skip_of;
    char skip_why[256];
} qs_timing;

#define QS_TIMINGS_WARN_MAX 512
#define QS_TIMINGS_NWARN 4

typedef struct qs_timings {
    int n;
    qs_timing st[QS_TIMINGS_MAX];
    int nwarn;
    char warn[QS_TIMINGS_NWARN][QS_TIMINGS_WARN_MAX]; /* (nwarn) warnings of this attempt */
    double t_start;    /* qs_log_now() when the driver started */
    int resume;
    long long peak_rss; /* the largest VmHWM read at a stage's end (reconstruct resets the
                           high-water mark at its start for its own record, so the
                           attempt's peak is the maximum over the stages) */
} qs_timings;

void qs_timings_init(qs_timings *t, int resume);
/* Records one stage (ignored beyond QS_TIMINGS_MAX) and the process's peak RSS so far. */
void qs_timings_add(qs_timings *t, const char *name, qs_status status, double wall_s,
                    double busy_s, double cpu_s);
/* Annotates the last recorded stage: it ran on `threads` threads on this rank. */
void qs_timings_threads(qs_timings *t, int threads);
/* Annotates the last recorded stage: it skipped `count` of `of` `what` because `why`
 * (rank 0's record is written). No-op when count <= 0 or nothing is recorded. */
void qs_timings_skip(qs_timings *t, const char *what, int64_t count, int64_t of,
                     const char *why);
/* Records a warning of this attempt (rank 0's are written; ignored beyond
 * QS_TIMINGS_NWARN). */
void qs_timings_warn(qs_timings *t, const char *text);
/* Collective: gathers every rank's timings to rank 0, which appends this attempt to
 * run/timings.json (temp -> rename). `run_status` is the run's agreed status. */
qs_status qs_timings_write(const qs_timings *t, qs_status run_status, const qs_comm *comm,
                           const qs_rundir *rd, qs_err *err);

/* Writes run_dir/report.md and run_dir/report/{bits_per_layer,error_per_layer,pareto}.svg
 * (plots whose data is missing are not written). Local (rank 0 or a serial command).
 * QS_ERR_INPUT when run_dir holds no run (no run.json); unreadable optional inputs are
 * reported in the text, not errors. */
qs_status qs_report_write(const char *run_dir, qs_err *err);

/* Splits one CSV line in place into at most `max` fields (RFC 4180 quotes: "" inside a
 * quoted field is a quote); stops at the end of the line (NUL, '\n' or '\r'). Returns the
 * number of fields; out[i] point into `line`. Shared by the report and `qshard collect`. */
int qs_csv_split(char *line, char **out, int max);

/* One run's headline numbers, read from its directory (for `qshard collect`). */
typedef struct qs_run_summary {
    char status[16];     /* "done" | "failed" | "missing" (not started or not finished) */
    double size_bytes;   /* < 0 unknown: allocation total_bytes, or a one-candidate run's
                            summed GPTQ payload from the recon tables */
    double bpw;          /* < 0 unknown */
    double ppl;          /* < 0 unknown: quantized eval (eval*.json with weights != float) */
    double ppl_float;    /* < 0 unknown */
    double time_s;       /* < 0 unknown: timings.json total_s over all attempts */
} qs_run_summary;

/* Never fails: what cannot be read stays unknown. */
void qs_run_summary_read(const char *run_dir, qs_run_summary *s);
#endif /* QS_REPORT_H */
