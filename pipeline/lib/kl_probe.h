/* kl_probe.h: KL divergence of quantized allocations from the float model on a few
 * calibration windows: the measured objective of the search (search.objective: kl) and its
 * refinement (search.refine), docs/search.md.
 *
 * qs_kl_open runs the float model once over the windows through the layer pipeline
 * (mpi/layerpipe) and keeps, on each rank, the input of each of its layers (the float
 * residual stream entering that layer) and, on the last rank, the float next-token
 * log-probabilities. qs_kl_measure evaluates an allocation: the pipeline starts at the first
 * layer the allocation quantizes, from that layer's cached float input, so the layers before
 * it are not rerun; the last rank sums KL(p_float || p_quant) over every prediction
 * (positions 0..T-2 of each window) in window order in double, and the mean per prediction
 * reaches every rank. A layer's weights are rebuilt (float copy + the allocation's
 * dequantized candidates from run/<dir>/layer-NNN.h5) only when its row of the allocation
 * changed since the last call. Bytes of the result do not depend on the rank count.
 *
 * Memory per rank (f32): 2 x its layers' weights (float + working copy) + its layers x
 * windows x seqlen x hidden (cached inputs) + on the last rank windows x (seqlen - 1) x
 * vocab (float log-probabilities) + seqlen x vocab (one window's logits) + the layer
 * workspace of calib.chunk_samples windows.
 *
 * Ownership: qs_kl_probe owns everything it allocates; env's pointers are borrowed and must
 * outlive it. qs_kl_close is safe on a zeroed value.
 */
#ifndef QS_KL_PROBE_H
#define QS_KL_PROBE_H

#include <stdint.h>

#include "alloc.h"
#include "evaluator.h"
#include "layer_plan.h"
#include "layerpipe.h"
#include "layer.h"
#include "tokens.h"
#include "weights.h"

typedef struct qs_kl_probe {
    qs_eval_env env;           /* a copy; its pointers borrowed */
    char dir[16];              /* "recon" or "final": where candidates are read */
    qs_model_dims d;
    qs_plan plan;
    qs_tokens tok;
    int64_t nwin;              /* windows */
    int first_layer, nown;     /* this rank's layers [first_layer, first_layer + nown) */
    qs_layer_f32 *lwf;         /* (nown) float weights */
    qs_layer_f32 *lww;         /* (nown) working copies: float + the current candidates */
    char (*cur)[QS_LIN_COUNT][QS_QUANT_NAME_MAX]; /* (nown) candidates now in lww */
    qs_ends_f32 ends;          /* embeddings (owner of layer 0), norm + head (last owner) */
    qs_layer_workspace ws;
    float *xin;                /* (nown, nwin, seqlen, hidden) float input of each own layer */
    float *lpf;                /* (nwin, seqlen - 1, vocab) float log-probs, last owner */
    float *logits;             /* (seqlen, vocab) one window, last owner */
    uint32_t *ids;             /* (chunk, seqlen) */
    int32_t *ids32;            /* (seqlen) */
    int start;                 /* the layer the current pass starts at */
    int float_pass;            /* 1 while qs_kl_open's float pass runs */
    double kl_sum;             /* last owner: the current pass's sum, window order */
} qs_kl_probe;

/* Collective: sets up the probe on env's windows (env->src, seqlen, max_windows) and runs
 * the float pass. dir: "recon" or "final". Bad input (token file, windows) is agreed and
 * returned before any rank blocks. */
qs_status qs_kl_open(qs_kl_probe *p, const qs_eval_env *env, const char *dir, qs_err *err);

/* Collective: *kl = mean KL(p_float || p_alloc) per prediction on every rank; al's "" names
 * stay float (an all-float allocation gives 0 without a pass). A missing candidate dataset
 * is agreed and returned. */
qs_status qs_kl_measure(qs_kl_probe *p, const qs_alloc *al, double *kl, qs_err *err);

/* Predictions per pass: windows x (seqlen - 1). */
int64_t qs_kl_predictions(const qs_kl_probe *p);

void qs_kl_close(qs_kl_probe *p);

#endif /* QS_KL_PROBE_H */
