/* kernels.h: the fp32 building blocks of a Llama/Mistral/Qwen2 decoder forward pass.
 *
 * Plain functions over pointers, sizes and row counts; no MPI, no files, no allocation,
 * no global state. Matrices are row-major; a linear layer's weight has Hugging Face's
 * (d_out, d_in) layout. "rows" is always nseq * seqlen tokens of a chunk, laid out
 * sequence after sequence. To work on a row range, offset the pointers.
 *
 * Numerics follow Hugging Face's fp32 path (see docs/model.md): RMSNorm as
 * weight * (x * rsqrt(mean(x^2) + eps)), RoPE in the rotate-half convention with f32
 * inverse frequencies and f32 angles, softmax in f32 with the max subtracted.
 *
 * Determinism: every BLAS call is single-threaded by contract of the caller
 * (OPENBLAS_NUM_THREADS=1 or openblas_set_num_threads(1)) and its shape depends only on
 * the arguments, so equal inputs give equal bits whatever the caller's thread layout.
 */
#ifndef QS_MODEL_KERNELS_H
#define QS_MODEL_KERNELS_H

#include <stdint.h>

#include "status.h"

/* RoPE frequency scaling (Hugging Face rope_type). */
typedef enum qs_rope_scaling {
    QS_ROPE_SCALING_NONE = 0,   /* "default" */
    QS_ROPE_SCALING_LINEAR = 1, /* inv_freq / factor */
    QS_ROPE_SCALING_LLAMA3 = 2  /* Llama 3.1 low/high frequency interpolation */
} qs_rope_scaling;

typedef struct qs_rope_params {
    qs_rope_scaling scaling;
    double theta;                  /* base, e.g. 10000 */
    double factor;                 /* linear, llama3 */
    double low_freq_factor;        /* llama3 */
    double high_freq_factor;       /* llama3 */
    int64_t original_max_position; /* llama3: original_max_position_embeddings */
} qs_rope_params;

/* y (rows, d) = weight (d) * (x * rsqrt(mean(x^2) + eps)) row by row; y may alias x.
 * The mean of squares is summed in double, then rounded to f32 like HF's f32 mean. */
void qs_rmsnorm(const float *x, const float *weight, float *y, int64_t rows, int64_t d,
                float eps);

/* inv_freq (head_dim / 2) for RoPE, computed in f32 exactly as Hugging Face's
 * _compute_{default,linear_scaling,llama3}_rope_parameters (dim = head_dim). */
void qs_rope_inv_freq(const qs_rope_params *p, int64_t head_dim, float *inv_freq);

/* cos_t, sin_t (npos, half) for positions 0..npos-1: angle = f32(pos * inv_freq[i]),
 * then cos/sin of that f32 angle rounded to f32 (HF's emb = cat(freqs, freqs)). */
void qs_rope_table(const float *inv_freq, int64_t half, int64_t npos, float *cos_t,
                   float *sin_t);

/* Rotate-half RoPE in place on x (nseq * seqlen, nheads * head_dim): token t of each
 * sequence has position t. cos_t, sin_t (>= seqlen, head_dim / 2) from qs_rope_table. */
void qs_rope_apply(float *x, int64_t nseq, int64_t seqlen, int64_t nheads, int64_t head_dim,
                   const float *cos_t, const float *sin_t);

/* qs_rope_apply on rows [r0, r0 + nrows) of a chunk of sequences of seqlen tokens: x points
 * at row r0 (nrows, nheads * head_dim); row r has position r % seqlen. The same bits as
 * qs_rope_apply on those rows. */
void qs_rope_apply_rows(float *x, int64_t r0, int64_t nrows, int64_t seqlen, int64_t nheads,
                        int64_t head_dim, const float *cos_t, const float *sin_t);

/* y (rows, d_out) = x (rows, d_in) * w^T + b, w (d_out, d_in), b (d_out) or NULL.
 * One sgemm over all rows. y must not alias x. */
void qs_linear(const float *x, const float *w, const float *b, float *y, int64_t rows,
               int64_t d_in, int64_t d_out);

/* Grouped-query causal attention, in place on q.
 *   q (nseq * seqlen, heads * head_dim): RoPE'd queries in, attention output out
 *     (the input of o_proj; head h's output overwrites head h's queries).
 *   k, v (nseq * seqlen, kv_heads * head_dim); query head h uses kv head
 *     h / (heads / kv_heads) (HF repeat_kv).
 *   window: 0 = full causal; else position i attends to j with 0 <= i - j < window.
 *   scores: scratch (seqlen, seqlen).
 * Per (sequence, head): S = (Q K^T) * head_dim^-0.5 by sgemm, masked f32 softmax,
 * O = P V by sgemm. heads % kv_heads must be 0. */
void qs_attention(float *q, const float *k, const float *v, int64_t nseq, int64_t seqlen,
                  int64_t heads, int64_t kv_heads, int64_t head_dim, int64_t window,
                  float *scores);

/* One (sequence s, head h) tile of qs_attention (the same calls, the same bits); scores
 * (seqlen, seqlen) scratch. Tiles of different (s, h) touch disjoint parts of q. */
void qs_attention_head(float *q, const float *k, const float *v, int64_t s, int64_t h,
                       int64_t seqlen, int64_t heads, int64_t kv_heads, int64_t head_dim,
                       int64_t window, float *scores);

/* gate (n) = silu(gate) * up (n), silu(x) = x / (1 + exp(-x)) in f32. */
void qs_swiglu(float *gate, const float *up, int64_t n);

/* x (rows, d) += y (rows, d). */
void qs_add_inplace(float *x, const float *y, int64_t rows, int64_t d);

/* x (n, hidden) = embed rows of tokens (n); embed (vocab, hidden).
 * A token id >= vocab is QS_ERR_INPUT naming the id and its index. */
qs_status qs_embed_gather(const float *embed, int64_t vocab, int64_t hidden,
                          const uint32_t *tokens, int64_t n, float *x, qs_err *err);

/* -log softmax(logits)[target] for one row of logits (vocab), in double
 * (max-subtracted log-sum-exp). target must be < vocab. */
double qs_nll_row(const float *logits, int64_t vocab, uint32_t target);

#endif /* QS_MODEL_KERNELS_H */
