/* memory.c: per-rank memory formula and per-layer cost model (see memory.h). */
#include "memory.h"

int64_t qs_layer_params(const qs_hf_config *hf) {
    int64_t h = hf->hidden_size, i = hf->intermediate_size;
    int64_t q = hf->num_attention_heads * hf->head_dim;
    int64_t kv = hf->num_key_value_heads * hf->head_dim;
    int64_t p = h * q + 2 * h * kv + q * h + 3 * h * i + 2 * h;
    if (hf->qkv_bias) p += q + 2 * kv;
    if (hf->o_bias) p += h;
    if (hf->mlp_bias) p += 2 * i + h;
    return p;
}

double qs_layer_cost(const qs_hf_config *hf, const qs_config *cfg, int layer) {
    double h = (double)hf->hidden_size, in = (double)hf->intermediate_size;
    double q = (double)(hf->num_attention_heads * hf->head_dim);
    double T = cfg ? (double)cfg->calib.seqlen : 2048.0;
    double lin = 2.0 * (double)qs_layer_params(hf);             /* matmul FLOPs per token */
    double attn = 2.0 * 2.0 * q * T * 0.5;                      /* QK^T and PV, causal */
    double hess = h * h + q * q + h * h + in * in;              /* syrk: d^2 per token (x2/2) */
    double c = lin + attn + hess;
    if (layer == 0) c += h;                                     /* embedding gather */
    if (layer == (int)hf->num_hidden_layers - 1)
        c += 2.0 * h * (double)hf->vocab_size + h;              /* final norm + lm_head */
    return c;
}

/* Layer pipeline buffers of calibrate and eval for chunks of `rows` = chunk x T tokens:
 * two chunk buffers (pipeline in/out) and the layer workspace (qs_layer_workspace_init:
 * normed input, q, k, v, gate, up, projection output; scores T x T; RoPE tables). */
static int64_t pipeline_bytes(const qs_hf_config *hf, int64_t rows, int64_t T) {
    int64_t h = hf->hidden_size, in = hf->intermediate_size;
    int64_t q = hf->num_attention_heads * hf->head_dim;
    int64_t kv = hf->num_key_value_heads * hf->head_dim;
    return 2 * rows * h * 4 + rows * (2 * h + q + 2 * kv + 2 * in) * 4 + T * T * 4 +
           T * hf->head_dim * 4;
}

qs_mem_estimate qs_mem_for_stage(const qs_hf_config *hf, const qs_config *cfg, int first,
                                 int count, qs_mem_stage stage) {
    qs_mem_estimate m = {0, 0, 0, 0, 0};
    if (count <= 0) return m;
    int64_t h = hf->hidden_size, in = hf->intermediate_size, V = hf->vocab_size;
    int64_t q = hf->num_attention_heads * hf->head_dim;
    int64_t chunk = cfg ? cfg->calib.chunk_samples : 8;
    int is_first = first == 0, is_last = first + count == (int)hf->num_hidden_layers;
    int64_t largest = h > q ? h : q;
    if (in > largest) largest = in;
    m.weights = (int64_t)count * qs_layer_params(hf) * 4;
    if (stage == QS_MEM_CALIBRATE) {
        /* stages/calibrate.c: f64 accumulators + one f32 tile (also the f32 staging buffer
         * when the layer files are written), the pipeline buffers, the statistics hook's
         * scratch (largest width x 12 B), embeddings on the first rank. The bf16 pages of
         * the mapped checkpoint are dropped once converted (weights.c). */
        int64_t T = cfg ? cfg->calib.seqlen : 2048;
        m.hessians = (int64_t)count * (h * h + q * q + h * h + in * in) * 8 + largest * largest * 4;
        m.activations = pipeline_bytes(hf, chunk * T, T) + largest * 12;
        m.extra = is_first ? V * h * 4 : 0;
    } else {
        /* stages/eval.c: windows of eval.seqlen; the last rank also holds the final norm,
         * lm_head (the embeddings when tied), one window of logits and a chunk's NLL. */
        int64_t T = cfg && cfg->eval.seqlen > 1 ? cfg->eval.seqlen : 2048;
        m.activations = pipeline_bytes(hf, chunk * T, T);
        if (is_first || (is_last && hf->tie_word_embeddings)) m.extra += V * h * 4;
        if (is_last) {
            m.extra += h * 4 + T * V * 4 + chunk * (T - 1) * 8;
            if (!hf->tie_word_embeddings) m.extra += V * h * 4;
        }
    }
    m.total = m.weights + m.hessians + m.activations + m.extra;
    return m;
}

qs_mem_estimate qs_mem_for_rank(const qs_hf_config *hf, const qs_config *cfg, int first,
                                int count) {
    qs_mem_estimate m = qs_mem_for_stage(hf, cfg, first, count, QS_MEM_CALIBRATE);
    if (cfg && cfg->eval.tokens && cfg->eval.tokens[0]) {
        qs_mem_estimate e = qs_mem_for_stage(hf, cfg, first, count, QS_MEM_EVAL);
        if (e.total > m.total) m = e;
    }
    return m;
}
