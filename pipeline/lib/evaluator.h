/* evaluator.h: perplexity of the model from any weight source, through the layer pipeline.
 *
 * Protocol (the fixtures'): consecutive non-overlapping windows of `seqlen` tokens from
 * token 0 (remainder dropped, at most max_windows), each window predicts tokens 1..T-1,
 * ppl = exp(sum NLL / count). Layers are split over ranks as the plan of this rank count
 * (qs_plan_compute); chunks of calib.chunk_samples windows flow rank to rank
 * (mpi/layerpipe); the first rank embeds, the last applies final norm + lm_head + NLL and
 * sums the NLL in window order in double, so the result is the same at any rank count.
 *
 * A weight source only changes how a rank fills its layers' f32 buffers: the float
 * checkpoint, one candidate of run/recon/ (uniform), an allocation over run/recon/ or
 * run/final/, the run's searched allocation, the written HDF5 shards, a GPTQ export or a
 * GGUF file (norms, biases, embeddings and head as written, for the last three).
 *
 * Used by the eval stage, the search stage's sensitivity probes and `qshard eval`.
 * Ownership: every pointer in qs_eval_env and qs_eval_weights is borrowed.
 */
#ifndef QS_EVALUATOR_H
#define QS_EVALUATOR_H

#include <stdint.h>

#include "alloc.h"
#include "comm.h"
#include "config.h"
#include "hf_model.h"
#include "log.h"
#include "pool.h"
#include "rundir.h"
#include "status.h"

typedef enum qs_eval_source {
    QS_EVAL_SRC_FLOAT = 0, /* the unquantized checkpoint */
    QS_EVAL_SRC_RECON = 1, /* one candidate's dequantized weights from run/recon/ (uniform) */
    QS_EVAL_SRC_ALLOC = 2, /* per-linear candidates of `alloc` (borrowed) from run/<dir>/ */
    QS_EVAL_SRC_FINAL = 3, /* the run's allocation (search/allocation.json): from final/
                              (reconstruct.inputs quantized) or recon/ (float) */
    QS_EVAL_SRC_H5 = 4,    /* the written HDF5 shards (run/out/, docs/write.md) */
    QS_EVAL_SRC_GPTQ = 5,  /* a GPTQ export directory (export_dir; "" = run/export) */
    QS_EVAL_SRC_GGUF = 6,  /* a GGUF file (gguf_file; "" = run/gguf/model.gguf): the weights
                              llama.cpp loads (blocks dequantized as it does, q/k un-permuted) */
    QS_EVAL_SRC_CT = 7     /* a compressed-tensors export (export_dir; "" = run/export-ct) */
} qs_eval_source;

#define QS_EVAL_NAME_MAX 32 /* = QS_QUANT_NAME_MAX */

/* Where eval takes its weights from (a plain value). */
typedef struct qs_eval_weights {
    qs_eval_source source;
    char candidate[QS_EVAL_NAME_MAX]; /* QS_EVAL_SRC_RECON: e.g. "w4g128" */
    const qs_alloc *alloc;            /* QS_EVAL_SRC_ALLOC: borrowed, "" names stay float */
    char dir[16];                     /* QS_EVAL_SRC_ALLOC: "recon" or "final" */
    char alloc_path[QS_PATH_MAX];     /* QS_EVAL_SRC_ALLOC with alloc NULL: read this file
                                         (--weights alloc:PATH); dir from reconstruct.inputs */
    char export_dir[QS_PATH_MAX];     /* QS_EVAL_SRC_GPTQ / CT: export directory ("" = run/export,
                                         run/export-ct) */
    char gguf_file[QS_PATH_MAX];      /* QS_EVAL_SRC_GGUF: the file ("" = run/gguf/model.gguf) */
} qs_eval_weights;

/* The float source as an expression (qs_eval_weights w = QS_EVAL_FLOAT;). */
#define QS_EVAL_FLOAT ((qs_eval_weights){QS_EVAL_SRC_FLOAT, {0}, NULL, {0}, {0}, {0}, {0}})

/* What an evaluation runs on and with (all borrowed). */
typedef struct qs_eval_env {
    const qs_config *cfg;     /* calib.chunk_samples, reconstruct.inputs, the plan's costs */
    const qs_comm *comm;
    const qs_rundir *rd;      /* the run directory the recon/final/h5/gptq sources read */
    const qs_model *model;    /* the float checkpoint (opened on every rank) */
    const qs_log *log;        /* may be NULL: no log line */
    qs_progress *progress;    /* may be NULL: no progress lines */
    qs_token_source src;      /* the token ids: a file or text (config.h) */
    int64_t seqlen;           /* window length T >= 2 */
    int64_t max_windows;      /* 0 = every whole window of the file */
    qs_pool *pool;            /* may be NULL (one thread): the layer forward's tiles */
} qs_eval_env;

/* The windows of eval.*: tokens, seqlen and max_windows from cfg->eval. */
void qs_eval_env_for_eval(qs_eval_env *env, const qs_config *cfg);

typedef struct qs_eval_result {
    double ppl;       /* exp(nll_sum / tokens) */
    double nll_sum;   /* summed in window order in double */
    int64_t tokens;   /* predictions: windows x (seqlen - 1) */
    int64_t windows;
    int64_t seqlen;
} qs_eval_result;

/* Parses a --weights value: "float", "final", "recon:CANDIDATE" (e.g. recon:w4g128,
 * recon:Q4_K), "alloc:PATH.json" (an allocation file, qshard-allocation-1), "h5" (run/out/
 * shards), "gptq" or "gptq:DIR" (a GPTQ export), "ct" or "ct:DIR" (a compressed-tensors
 * export), "gguf" or "gguf:FILE" (a GGUF file);
 * anything else is a QS_ERR_INPUT saying what exists. */
qs_status qs_eval_parse_weights(const char *s, qs_eval_weights *out, qs_err *err);

/* Writes the --weights spelling of w into buf ("float", "recon:w4g128"); returns buf. */
const char *qs_eval_weights_name(const qs_eval_weights *w, char *buf, size_t n);

/* Collective: the perplexity of `which` on env's windows; *res on every rank. Bad input
 * (missing token file or source, too few tokens) is agreed and returned before any rank
 * blocks; a failure inside the pipeline aborts all ranks. */
qs_status qs_eval_perplexity(const qs_eval_env *env, const qs_eval_weights *which,
                             qs_eval_result *res, qs_err *err);

/* Collective: rank 0 writes res as JSON {"weights", "ppl", "nll_sum", "tokens", "windows",
 * "seqlen", "tokens_file"} to `rel` in env->rd (parent directories made), durably. */
qs_status qs_eval_write_json(const qs_eval_env *env, const qs_eval_weights *which,
                             const qs_eval_result *res, const char *rel, qs_err *err);

#endif /* QS_EVALUATOR_H */
