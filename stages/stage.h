/* stage.h: the one signature every stage shares, and the context the driver hands it.
 * A stage is glue: it reads its inputs from the run directory, calls io/, model/,
 * quant/, talks to other ranks through mpi/, writes its outputs (temp -> rename) and
 * its manifest last. Stages never call each other; the driver owns the order.
 *
 * Ownership: the context only borrows; the driver owns everything it points to.
 */
#ifndef QS_STAGE_H
#define QS_STAGE_H

#include "config.h"
#include "hf_model.h"
#include "log.h"
#include "comm.h"
#include "rundir.h"
#include "status.h"

typedef struct qs_stage_ctx {
    const qs_config *cfg;
    const qs_comm *comm;
    const qs_rundir *rd;
    const qs_model *model;      /* opened and validated by the driver on every rank */
    const qs_log *log;
    char config_hash[65];       /* of the resolved config without runtime keys */
    char model_hash[65];        /* fingerprint: config.json + safetensors headers + sizes */
    const volatile int *stop;   /* set (by the driver's signal handler) to request a stop */
    qs_progress *progress;      /* driver-owned, may be NULL: qs_progress_begin/step at unit
                                   boundaries (rank 0 prints, with ETA) */
    double *busy;               /* driver-owned, may be NULL: a stage may add this rank's
                                   compute seconds (timings.json "busy_s") */
} qs_stage_ctx;

/* Per-invocation arguments (a stage may run twice, e.g. reconstruct before/after search). */
typedef struct qs_stage_args {
    int pass;                   /* 0 = measure, 1 = final (reconstruct) */
} qs_stage_args;

/* Every stage: collective over ctx->comm. Returns QS_OK, QS_STOPPED (everything completed
 * is durable) or an error agreed by all ranks; failures where ranks may be blocked abort. */
typedef qs_status (*qs_stage_fn)(const qs_stage_ctx *ctx, const qs_stage_args *args,
                                 qs_err *err);

qs_status qs_stage_plan_run(const qs_stage_ctx *ctx, const qs_stage_args *args, qs_err *err);

/* Calibrate (stages/calibrate.c, docs/calibrate.md): fp32 forward of the calibration
 * windows, per layer and linear group the Hessian, absmax and mean square ->
 * run/calib/layer-NNN.h5 + manifest; checkpoints in run/calib/ckpt/. */
qs_status qs_stage_calibrate_run(const qs_stage_ctx *ctx, const qs_stage_args *args,
                                 qs_err *err);

/* Reconstruct (stages/reconstruct.c, docs/reconstruct.md). args->pass 0 (measure): every
 * linear x candidate quantized (GPTQ or RTN) on float (calib/ Hessians) or quantized
 * (sequential) inputs -> run/recon/layer-NNN.h5 (codes, scales, zeros, g_idx, error table)
 * + manifest. args->pass 1 (final): the allocation of run/search/allocation.json; quantized
 * inputs: sequential GPTQ again with each linear's allocated candidate -> run/final/
 * layer-NNN.h5 + manifest; float inputs: only final/manifest.json (recon/ holds the
 * results). Both resume at the first layer without a finished file. */
qs_status qs_stage_reconstruct_run(const qs_stage_ctx *ctx, const qs_stage_args *args,
                                   qs_err *err);

/* Search (stages/search.c, docs/search.md): the candidate tables of run/recon/ -> one
 * candidate per linear minimising the objective under the byte budget (exact multiple-choice
 * knapsack) -> run/search/{allocation.json, allocation.md, pareto.csv, summary.json} +
 * manifest. Objective sensitivity first runs per-layer probes through qs_eval_run. */
qs_status qs_stage_search_run(const qs_stage_ctx *ctx, const qs_stage_args *args, qs_err *err);

/* Eval (stages/eval.c): perplexity on eval.tokens, written to run/eval.json. */
typedef enum qs_eval_source {
    QS_EVAL_SRC_FLOAT = 0, /* the unquantized checkpoint */
    QS_EVAL_SRC_RECON = 1, /* one candidate's dequantized weights from run/recon/ (uniform) */
    QS_EVAL_SRC_ALLOC = 2, /* per-linear candidates of `alloc` (borrowed) from run/<dir>/ */
    QS_EVAL_SRC_FINAL = 3, /* the run's allocation (search/allocation.json): from final/
                              (reconstruct.inputs quantized) or recon/ (float) */
    QS_EVAL_SRC_H5 = 4,    /* the written HDF5 shards (run/out/, docs/write.md) */
    QS_EVAL_SRC_GPTQ = 5   /* a GPTQ export directory (gptq_dir; "" = run/export) */
} qs_eval_source;

#define QS_EVAL_NAME_MAX 32 /* = QS_QUANT_NAME_MAX */

/* Where eval takes its weights from (a plain value). */
struct qs_alloc;
typedef struct qs_eval_weights {
    qs_eval_source source;
    char candidate[QS_EVAL_NAME_MAX]; /* QS_EVAL_SRC_RECON: e.g. "w4g128" */
    const struct qs_alloc *alloc;     /* QS_EVAL_SRC_ALLOC: borrowed, "" names stay float */
    char dir[16];                     /* QS_EVAL_SRC_ALLOC: "recon" or "final" */
    char out_rel[64];                 /* result file in the run dir ("" = "eval.json") */
    char alloc_path[QS_PATH_MAX];     /* QS_EVAL_SRC_ALLOC with alloc NULL: read this file
                                         (--weights alloc:PATH); dir from reconstruct.inputs */
    char gptq_dir[QS_PATH_MAX];       /* QS_EVAL_SRC_GPTQ: export directory ("" = run/export) */
} qs_eval_weights;

/* The float source as an expression (qs_eval_weights w = QS_EVAL_FLOAT;). */
#define QS_EVAL_FLOAT ((qs_eval_weights){QS_EVAL_SRC_FLOAT, {0}, NULL, {0}, {0}, {0}, {0}})

typedef struct qs_eval_result {
    double ppl;       /* exp(nll_sum / tokens) */
    double nll_sum;   /* summed in window order in double */
    int64_t tokens;   /* predictions: windows x (seqlen - 1) */
    int64_t windows;
    int64_t seqlen;
} qs_eval_result;

/* Parses a --weights value: "float", "final", "recon:CANDIDATE" (e.g. recon:w4g128),
 * "alloc:PATH.json" (an allocation file, qshard-allocation-1), "h5" (run/out/ shards),
 * "gptq" or "gptq:DIR" (a GPTQ export); anything else is a QS_ERR_INPUT saying what exists. */
qs_status qs_eval_parse_weights(const char *s, qs_eval_weights *out, qs_err *err);
/* Collective: evaluates and writes run/eval.json (rank 0); *res on every rank. */
qs_status qs_eval_run(const qs_stage_ctx *ctx, qs_eval_weights which, qs_eval_result *res,
                      qs_err *err);
/* Writes the --weights spelling of w into buf ("float", "recon:w4g128"); returns buf. */
const char *qs_eval_weights_name(const qs_eval_weights *w, char *buf, size_t n);
/* Write (stages/write.c, docs/write.md): the run's allocation (search/allocation.json) from
 * final/ or recon/ -> run/out/ parallel HDF5 shards + index.json, run/export/ GPTQ
 * checkpoint (output.gptq_export), out/manifest.json last. Nothing to do without an
 * allocation. */
qs_status qs_stage_write_run(const qs_stage_ctx *ctx, const qs_stage_args *args, qs_err *err);

/* `qshard verify DIR` (serial): DIR is a run directory (out/manifest.json checksums, shard
 * shapes, and run/export when present) or a GPTQ export (index, shapes, schemes). A
 * mismatch is QS_ERR_INPUT naming the file; `summary` (n bytes) gets one line per check. */
qs_status qs_write_verify(const char *dir, char *summary, size_t n, qs_err *err);

/* The driver's eval stage: qs_eval_run with float weights. */
qs_status qs_stage_eval_run(const qs_stage_ctx *ctx, const qs_stage_args *args, qs_err *err);

#endif /* QS_STAGE_H */
