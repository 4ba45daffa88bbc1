/* memory.h: the one formula for a rank's memory and a layer's cost. The plan stage
 * prints it per rank before anything runs; later stages extend this function (never
 * copy it) when they add state.
 *
 * A rank's memory is the peak over the stages it runs; the parts returned are those of
 * the stage that sets it (they sum to total). Per rank holding decoder layers
 * [first, first + count):
 *   calibrate
 *     weights     = its layers' parameters x 4 B (f32 copies; the bf16 pages of the mapped
 *                   checkpoint are dropped once converted, weights.c)
 *     hessians    = per layer, one f64 accumulator per distinct linear input:
 *                   (hidden^2 [q/k/v] + (heads*head_dim)^2 [o] + hidden^2 [gate/up]
 *                    + inter^2 [down]) x 8 B, plus one f32 tile of the largest (the syrk
 *                   partial; reused as the f32 staging buffer when the layer files are
 *                   written, so HDF5 writes add nothing)
 *     activations = two chunk buffers of chunk_samples x seqlen x hidden x 4 B (pipeline
 *                   in/out) + the layer workspace: chunk x seqlen x (2 x hidden + q + k + v
 *                   + 2 x inter) x 4 B, attention scores seqlen^2 x 4 B per thread, RoPE tables
 *                   seqlen x head_dim x 4 B, statistics scratch max(width) x 12 B
 *     extra       = embeddings (vocab x hidden x 4 B) on the first rank of the pipeline
 *     In calibrate's 2-D schedule (layer_plan.h: S pipeline stages x D replicas) a rank
 *     holds its stage's layers; only replica 0 holds the f64 accumulators and the tile. A
 *     rank of replica d > 0 (QS_MEM_CALIBRATE_REPLICA) keeps one chunk's partials per layer
 *     in flight to replica 0 instead: hessians = its layers x ((hidden^2 + (heads*head_dim)^2
 *     + hidden^2 + inter^2) x 4 B + (2 hidden + heads*head_dim + inter) x 12 B) (f32 tiles,
 *     absmax f32, sum of squares f64); stage 0 of every replica holds the embeddings.
 *   eval (only when eval.tokens is set; windows of eval.seqlen)
 *     weights, activations as above without the statistics scratch, no hessians;
 *     extra = embeddings on the first rank; on the last: final norm, lm_head (the
 *     embeddings when tied), logits eval.seqlen x vocab x 4 B, NLL chunk x seqlen x 8 B
 *     (the previous formula charged lm_head + logits to calibrate too, which never
 *     loads them)
 *   reconstruct (pass 0, every candidate; docs/reconstruct.md "Memory"). R = the results of
 *   one layer: per linear and candidate d_out x d_in x 1 B codes + d_out x groups x 6 B
 *   (fp16 scales, i32 zeros) + d_in x 4 B g_idx + d_out x 24 B row errors; scratch = one
 *   piece's solve per thread, the largest over the linears of rows x d_in x 4 B (dequantized
 *   rows) + max(GPTQ tile R x d_in x 4 B + block buffers, error tiles 16 x R x d_in B, RTN
 *   baseline rows x d_in x 1 B + 8 x R x d_in B) with R = rows = min(d_out, row_block)
 *   (pieces are row blocks in both modes); threads = the resolved `threads`;
 *   S_H = 2 hidden^2 + (heads*head_dim)^2 + inter^2
 *     inputs quantized (rank r of P; chunk c on rank c mod P):
 *       weights     = 2 x params_per_layer x 4 B (the float layer and its quantized copy)
 *       hessians    = S_H x 4 B x 3 (one chunk's partials, H, GPTQ factors; x 2 for rtn)
 *                     + on rank 0 S_H x 8 B (the f64 accumulators)
 *       activations = rows_r x hidden x 4 B (this rank's chunks) + one chunk copy
 *                     + the layer workspace (as calibrate's, without the in/out buffers)
 *       extra       = R on a rank that owns layers (it writes them), R / P + 4 x threads
 *                     pieces' results (in flight) otherwise, + scratch; plus whatever the embedding phase at the start (rows_r x
 *                     hidden x 4 B + vocab x hidden x 4 B) exceeds the layer phase by
 *     inputs float:
 *       weights = the largest linear x 4 B, hessians = max d_in^2 x 4 B x 2 (H, factor),
 *       extra = R (the groups it solves, about one layer's) + scratch; with P > 1 plus
 *       max(0, R - weights - hessians - scratch) (the layer it writes, received after the
 *       solves freed their buffers)
 *   The final pass holds at most one candidate per linear, so pass 0 bounds it.
 * Not counted: the per-process baseline (MPI, OpenBLAS buffers, HDF5, libc: ~constant,
 * measured by tests/bench/mem_check.py) and, on a resume only, one transient
 * f64 (d, d) copy while a checkpoint is read (h5store allocates).
 * cfg NULL: seqlen 2048, chunk 8, nsamples 128, one candidate w4g128, quantized inputs,
 * no eval.
 * Pure function; no state.
 */
#ifndef QS_MEMORY_H
#define QS_MEMORY_H

#include <stdint.h>

#include "config.h"
#include "hf_config.h"

typedef struct qs_mem_estimate {
    int64_t weights;
    int64_t hessians;
    int64_t activations;
    int64_t extra;
    int64_t total;
} qs_mem_estimate;

/* Relative cost of decoder layer `layer` in the calibration pipeline: forward FLOPs per
 * token plus Hessian accumulation FLOPs; the last layer also pays for the final norm and
 * lm_head (the last rank computes logits for eval), the first for the embedding gather. */
double qs_layer_cost(const qs_hf_config *hf, const qs_config *cfg, int layer);

/* qs_layer_cost without the final norm and lm_head, which calibrate never computes: the
 * cost of calibrate's 2-D schedule (layer_plan.h). */
double qs_layer_cost_calibrate(const qs_hf_config *hf, const qs_config *cfg, int layer);

/* The stages the formula knows (later stages add theirs). */
typedef enum qs_mem_stage {
    QS_MEM_CALIBRATE = 0,
    QS_MEM_EVAL = 1,
    QS_MEM_RECONSTRUCT = 2,
    QS_MEM_CALIBRATE_REPLICA = 3 /* calibrate on a replica > 0: partials in flight, no f64 */
} qs_mem_stage;

/* A rank's part of calibrate's 2-D schedule: the layers [first, first + count) of its
 * stage (count 0: idle in calibrate) and its replica (0 accumulates). */
typedef struct qs_mem_calib {
    int first, count, replica;
} qs_mem_calib;

/* One stage's part of the formula above for rank `rank` of `nranks` owning plan layers
 * [first, first + count). count may be 0 (calibrate/eval: all zero; reconstruct still
 * works on every rank). */
qs_mem_estimate qs_mem_for_stage(const qs_hf_config *hf, const qs_config *cfg, int rank,
                                 int nranks, int first, int count, qs_mem_stage stage);

/* The rank's peak: the largest qs_mem_for_stage over the stages `qshard run` runs with cfg
 * (calibrate, reconstruct, eval only when eval.tokens is set). This is what the plan
 * records and prints. calib: the rank's calibrate role (NULL: layers [first, first +
 * count) on replica 0, the 1-D schedule). */
qs_mem_estimate qs_mem_for_rank(const qs_hf_config *hf, const qs_config *cfg, int rank,
                                int nranks, int first, int count, const qs_mem_calib *calib);

#endif /* QS_MEMORY_H */
