/* memory.h: the one formula for a rank's memory and a layer's cost. The plan stage
 * prints it per rank before anything runs; later stages extend this function (never
 * copy it) when they add state.
 *
 * Per rank holding decoder layers [first, first + count):
 *   weights     = sum over its layers of the layer's parameters x 4 B (f32 copies)
 *   hessians    = per layer, one f64 accumulator per distinct linear input:
 *                 (hidden^2 [q/k/v] + (heads*head_dim)^2 [o] + hidden^2 [gate/up]
 *                  + inter^2 [down]) x 8 B, plus one f32 partial tile of the largest
 *   activations = two chunk buffers of chunk_samples x seqlen x hidden x 4 B (pipeline in/out)
 *                 + the layer workspace: chunk x seqlen x (2 x hidden + q + k + v
 *                   + 2 x inter) x 4 B, attention scores seqlen^2 x 4 B, RoPE tables
 *                   seqlen x head_dim x 4 B, statistics scratch max(width) x 12 B
 *   extra       = embeddings (vocab x hidden x 4 B) on the first rank of the pipeline,
 *                 final norm + lm_head and one chunk of logits on the last
 * Pure function; no state.
 */
#ifndef QS_MEMORY_H
#define QS_MEMORY_H

#include <stdint.h>

#include "config.h"
#include "io/hf_config.h"

typedef struct qs_mem_estimate {
    int64_t weights;
    int64_t hessians;
    int64_t activations;
    int64_t extra;
    int64_t total;
} qs_mem_estimate;

/* Parameters of decoder layer (any layer: they are all the same shape). */
int64_t qs_layer_params(const qs_hf_config *hf);

/* Relative cost of decoder layer `layer` in the calibration pipeline: forward FLOPs per
 * token plus Hessian accumulation FLOPs; the last layer also pays for the final norm and
 * lm_head (the last rank computes logits for eval), the first for the embedding gather. */
double qs_layer_cost(const qs_hf_config *hf, const qs_config *cfg, int layer);

/* The formula above for a rank owning [first, first + count) of nlayers. count may be 0. */
qs_mem_estimate qs_mem_for_rank(const qs_hf_config *hf, const qs_config *cfg, int first,
                                int count);

#endif /* QS_MEMORY_H */
