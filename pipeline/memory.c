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

qs_mem_estimate qs_mem_for_rank(const qs_hf_config *hf, const qs_config *cfg, int first,
                                int count) {
    qs_mem_estimate m = {0, 0, 0, 0, 0};
    if (count <= 0) return m;
    int64_t h = hf->hidden_size, in = hf->intermediate_size;
    int64_t q = hf->num_attention_heads * hf->head_dim;
    int64_t kv = hf->num_key_value_heads * hf->head_dim;
    int64_t T = cfg ? cfg->calib.seqlen : 2048;
    int64_t chunk = cfg ? cfg->calib.chunk_samples : 8;
    int64_t rows = chunk * T;
    m.weights = (int64_t)count * qs_layer_params(hf) * 4;
    int64_t largest = h > q ? h : q;
    if (in > largest) largest = in;
    m.hessians = (int64_t)count * (h * h + q * q + h * h + in * in) * 8 + largest * largest * 4;
    /* calibrate/eval (stages/calibrate.c): two chunk buffers, the layer workspace
     * (qs_layer_workspace_bytes: normed input and projection output rows x 2h as well,
     * RoPE tables T x head_dim), the statistics hook's scratch (largest width x 12 B) */
    m.activations = 2 * rows * h * 4 + rows * (2 * h + q + 2 * kv + 2 * in) * 4 + T * T * 4 +
                    T * hf->head_dim * 4 + largest * 12;
    if (first == 0) m.extra += hf->vocab_size * h * 4;
    if (first + count == (int)hf->num_hidden_layers) {
        m.extra += h * 4 + T * hf->vocab_size * 4;
        if (!hf->tie_word_embeddings || first != 0) m.extra += hf->vocab_size * h * 4;
    }
    m.total = m.weights + m.hessians + m.activations + m.extra;
    return m;
}
