/* layer.h: one decoder layer (and the whole model) forward in fp32, with statistics hooks.
 *
 * A chunk is nseq sequences of seqlen tokens, rows = nseq * seqlen, laid out sequence after
 * sequence; every sequence starts at position 0. The forward works on fixed tiles: row
 * tiles of QS_ROW_TILE rows from row 0 of the chunk (norms, linears as one sgemm per tile,
 * RoPE, SwiGLU, residual adds) and one (sequence, head) per attention tile (seqlen x seqlen
 * scores). Tiles run on the workspace's thread pool (qs_layer_workspace_set_pool; none =
 * one thread) with single-threaded BLAS; a tile's bits depend only on its inputs, so the
 * output does not depend on the thread count. Different chunks may also run on different
 * threads with separate workspaces.
 *
 * Ownership: weights are borrowed f32 pointers (the caller keeps them alive); a workspace
 * owns its buffers (qs_layer_workspace_free / qs_model_workspace_free release them and
 * are safe on a zeroed struct).
 */
#ifndef QS_MODEL_LAYER_H
#define QS_MODEL_LAYER_H

#include <stddef.h>
#include <stdint.h>

#include "kernels.h"
#include "pool.h"
#include "status.h"

struct qs_hf_config;

/* Rows per fixed tile of the forward (norms, linears, element-wise ops). */
#define QS_ROW_TILE 256

/* Upper bound on the number of decoder layers (per-layer windows are stored inline). */
#define QS_MODEL_MAX_LAYERS 1024

/* Shapes and hyper-parameters of a decoder (filled from config.json by the caller). */
typedef struct qs_model_dims {
    int64_t hidden;         /* hidden_size */
    int64_t inter;          /* intermediate_size */
    int64_t heads;          /* num_attention_heads */
    int64_t kv_heads;       /* num_key_value_heads; heads % kv_heads == 0 */
    int64_t head_dim;       /* even; may differ from hidden / heads */
    int64_t vocab;          /* vocab_size (full-model functions only) */
    int64_t nlayers;        /* num_hidden_layers (full-model functions only) */
    double eps;             /* rms_norm_eps */
    qs_rope_params rope;
    /* (nlayers) attention window of each layer: 0 = full causal; W > 0 = query i sees
     * keys j with 0 <= i - j < W (itself and W - 1 before it). Entries past nlayers are
     * unused; layer-only callers (nlayers 0) use entry 0. */
    int64_t layer_window[QS_MODEL_MAX_LAYERS];
    int qkv_bias;           /* q/k/v biases present (Qwen2) */
    int o_bias;             /* o_proj bias present */
    int mlp_bias;           /* gate/up/down biases present */
} qs_model_dims;

/* One layer's weights: borrowed f32 pointers in Hugging Face layout (out, in).
 * q_dim = heads * head_dim, kv_dim = kv_heads * head_dim. Biases are read only when
 * the matching dims flag is set (then they must be non-NULL). */
typedef struct qs_layer_weights {
    const float *input_norm; /* (hidden) input_layernorm.weight */
    const float *q_w;        /* (q_dim, hidden) */
    const float *q_b;        /* (q_dim) if qkv_bias */
    const float *k_w;        /* (kv_dim, hidden) */
    const float *k_b;        /* (kv_dim) if qkv_bias */
    const float *v_w;        /* (kv_dim, hidden) */
    const float *v_b;        /* (kv_dim) if qkv_bias */
    const float *o_w;        /* (hidden, q_dim) */
    const float *o_b;        /* (hidden) if o_bias */
    const float *post_norm;  /* (hidden) post_attention_layernorm.weight */
    const float *gate_w;     /* (inter, hidden) */
    const float *gate_b;     /* (inter) if mlp_bias */
    const float *up_w;       /* (inter, hidden) */
    const float *up_b;       /* (inter) if mlp_bias */
    const float *down_w;     /* (hidden, inter) */
    const float *down_b;     /* (hidden) if mlp_bias */
} qs_layer_weights;

/* The whole model: borrowed pointers. lm_head may equal embed (tied embeddings). */
typedef struct qs_model_weights {
    const float *embed;             /* (vocab, hidden) */
    const qs_layer_weights *layers; /* (nlayers) */
    const float *final_norm;        /* (hidden) */
    const float *lm_head;           /* (vocab, hidden) */
} qs_model_weights;

/* The linear groups of a layer; linears in a group share their input (and Hessian). */
typedef enum qs_linear_group {
    QS_GROUP_QKV = 0,     /* q/k/v_proj input: input_layernorm(x), d_in = hidden */
    QS_GROUP_O = 1,       /* o_proj input: attention output, d_in = heads * head_dim */
    QS_GROUP_GATE_UP = 2, /* gate/up_proj input: post_attention_layernorm(h), d_in = hidden */
    QS_GROUP_DOWN = 3,    /* down_proj input: silu(gate) * up, d_in = inter */
    QS_GROUP_COUNT = 4
} qs_linear_group;

/* Receives the input activations x (rows, d_in) of one linear group, valid only during
 * the call (it points into the workspace). Returning non-QS_OK stops the forward pass,
 * which returns that status; the hook fills err. */
typedef qs_status (*qs_layer_hook_fn)(void *ctx, qs_linear_group group, const float *x,
                                      int64_t rows, int64_t d_in, qs_err *err);

typedef struct qs_layer_hooks {
    qs_layer_hook_fn fn; /* NULL = no hook */
    void *ctx;
} qs_layer_hooks;

/* Scratch for qs_layer_forward, sized for chunks of up to max_nseq x max_seqlen tokens. */
typedef struct qs_layer_workspace {
    int64_t max_rows;   /* max_nseq * max_seqlen */
    int64_t max_seqlen;
    int64_t hidden, inter, q_dim, kv_dim, head_dim; /* the dims it was made for */
    float *xn;      /* (max_rows, hidden) normed input of q/k/v and of gate/up */
    float *q;       /* (max_rows, q_dim) queries, then attention output */
    float *k;       /* (max_rows, kv_dim) */
    float *v;       /* (max_rows, kv_dim) */
    float *scores;  /* (threads, max_seqlen, max_seqlen) one score tile per worker */
    float *gate;    /* (max_rows, inter) gate, then silu(gate) * up */
    float *up;      /* (max_rows, inter) */
    float *proj;    /* (max_rows, hidden) o_proj / down_proj output */
    float *rope_cos; /* (max_seqlen, head_dim / 2) */
    float *rope_sin; /* (max_seqlen, head_dim / 2) */
    qs_pool *pool;   /* borrowed, may be NULL (one thread): runs the tiles */
} qs_layer_workspace;

/* Fills dims from a parsed config.json (rope, biases, per-layer windows included). */
void qs_model_dims_from_hf(qs_model_dims *d, const struct qs_hf_config *cfg);

/* Checks dims for the kernels: positive sizes, even head_dim, heads % kv_heads == 0,
 * eps > 0, theta > 0, rope factors sane, 0 <= nlayers <= QS_MODEL_MAX_LAYERS, layer
 * windows >= 0. QS_ERR_INPUT naming the key on failure. */
qs_status qs_model_dims_check(const qs_model_dims *d, qs_err *err);

/* Bytes a layer workspace for (max_nseq, max_seqlen) allocates. */
size_t qs_layer_workspace_bytes(const qs_model_dims *d, int max_nseq, int max_seqlen);

/* Allocates a workspace for chunks up to max_nseq x max_seqlen and fills the RoPE table.
 * On failure ws is left freeable. */
qs_status qs_layer_workspace_init(qs_layer_workspace *ws, const qs_model_dims *d, int max_nseq,
                                  int max_seqlen, qs_err *err);
void qs_layer_workspace_free(qs_layer_workspace *ws);

/* Runs the workspace's forward tiles on pool (borrowed; NULL = one thread): grows the score
 * scratch to one (max_seqlen, max_seqlen) tile per worker. The bits do not change. */
qs_status qs_layer_workspace_set_pool(qs_layer_workspace *ws, qs_pool *pool, qs_err *err);

/* Decoder layer `layer` (0-based index in the model; it selects the attention window
 * d->layer_window[layer]) on a chunk, in place:
 *   x (nseq * seqlen, hidden): the residual stream in, the layer output out.
 * h = x + o_proj(attn(rope(q(n1)), rope(k(n1)), v(n1))), n1 = input_norm(x);
 * x = h + down(silu(gate(n2)) * up(n2)), n2 = post_norm(h).
 * hooks (may be NULL) sees each group's input in the order QKV, O, GATE_UP, DOWN.
 * ws must come from qs_layer_workspace_init with the same dims and nseq * seqlen <=
 * max_rows, seqlen <= max_seqlen; layer < max(nlayers, 1) (else QS_ERR_INTERNAL). */
qs_status qs_layer_forward(const qs_layer_weights *w, const qs_model_dims *d, int layer,
                           float *x, int nseq, int seqlen, qs_layer_workspace *ws,
                           const qs_layer_hooks *hooks, qs_err *err);

/* Workspace for the whole-model functions: a layer workspace plus the residual stream. */
typedef struct qs_model_workspace {
    qs_layer_workspace layer;
    float *x;      /* (max_rows, hidden) */
    float *logits; /* (max_seqlen, vocab) one sequence's logits */
} qs_model_workspace;

qs_status qs_model_workspace_init(qs_model_workspace *ws, const qs_model_dims *d,
                                  int max_nseq, int max_seqlen, qs_err *err);
void qs_model_workspace_free(qs_model_workspace *ws);

/* Final norm, lm_head and NLL on the residual stream of a chunk (the tail of the model,
 * usable by a pipeline whose layers live elsewhere):
 *   x (nseq * seqlen, hidden): last layer's output; overwritten by final_norm(x).
 *   tokens (nseq, seqlen): the chunk's token ids (targets are tokens[t + 1]).
 *   logits_tile: scratch (seqlen, vocab), used when logits is NULL.
 *   logits (nseq * seqlen, vocab) or NULL: all logits.
 *   nll (nseq, seqlen - 1) or NULL: nll[s][t] = -log p(tokens[s][t + 1] | tokens[s][..t]).
 *   pool: may be NULL (one thread).
 * lm_head runs one sgemm per (sequence, row tile of QS_ROW_TILE rows) (tile x hidden x
 * vocab), the tiles on pool; without logits, worker w uses rows [w, w + 1) x QS_ROW_TILE of
 * logits_tile, so the tiles run on one thread when threads x QS_ROW_TILE > seqlen (the
 * same bits either way). A token id >= vocab is the lowest such tile's QS_ERR_INPUT. */
qs_status qs_model_head(const float *final_norm, const float *lm_head, const qs_model_dims *d,
                        float *x, const uint32_t *tokens, int nseq, int seqlen,
                        float *logits_tile, float *logits, double *nll, qs_pool *pool,
                        qs_err *err);

/* Whole model on a chunk: embedding -> layers -> final norm -> lm_head -> NLL.
 *   tokens (nseq, seqlen); logits (nseq * seqlen, vocab) or NULL;
 *   nll (nseq, seqlen - 1) or NULL (see qs_model_head).
 * Token ids >= vocab are QS_ERR_INPUT. */
qs_status qs_model_forward(const qs_model_weights *w, const qs_model_dims *d,
                           const uint32_t *tokens, int nseq, int seqlen, qs_model_workspace *ws,
                           float *logits, double *nll, qs_err *err);

#endif /* QS_MODEL_LAYER_H */
