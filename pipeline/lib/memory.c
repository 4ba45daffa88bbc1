/* memory.c: per-rank memory formula and per-layer cost model (see memory.h). */
#include "memory.h"

#include <stdlib.h>

#include "candidates.h"

/* The cost of layer `layer`; head: with the final norm and lm_head on the last layer. */
static double layer_cost(const qs_hf_config *hf, const qs_config *cfg, int layer, int head) {
    double h = (double)hf->hidden_size, in = (double)hf->intermediate_size;
    double q = (double)(hf->num_attention_heads * hf->head_dim);
    double T = cfg ? (double)cfg->calib.seqlen : 2048.0;
    double lin = 2.0 * (double)qs_hf_config_layer_params(hf);   /* matmul FLOPs per token */
    double attn = 2.0 * 2.0 * q * T * 0.5;                      /* QK^T and PV, causal */
    double hess = h * h + q * q + h * h + in * in;              /* syrk: d^2 per token (x2/2) */
    double c = lin + attn + hess;
    if (layer == 0) c += h;                                     /* embedding gather */
    if (head && layer == (int)hf->num_hidden_layers - 1)
        c += 2.0 * h * (double)hf->vocab_size + h;              /* final norm + lm_head */
    return c;
}

double qs_layer_cost(const qs_hf_config *hf, const qs_config *cfg, int layer) {
    return layer_cost(hf, cfg, layer, 1);
}

double qs_layer_cost_calibrate(const qs_hf_config *hf, const qs_config *cfg, int layer) {
    return layer_cost(hf, cfg, layer, 0);
}

/* Threads per rank by the config's rule (docs/config.md `threads`: the environment when it
 * is 0); 1 for a bad variable (the driver refuses it before anything runs). */
static int64_t mem_threads(const qs_config *cfg) {
    int n = 1;
    const char *from = NULL;
    qs_err e = {0};
    if (qs_config_threads(cfg ? cfg->threads : 0, getenv("SLURM_CPUS_PER_TASK"),
                          getenv("OMP_NUM_THREADS"), &n, &from, &e) != QS_OK)
        n = 1;
    return n;
}

/* Layer pipeline buffers of calibrate and eval for chunks of `rows` = chunk x T tokens:
 * two chunk buffers (pipeline in/out) and the layer workspace (qs_layer_workspace_init:
 * normed input, q, k, v, gate, up, projection output; scores T x T per thread
 * (qs_layer_workspace_set_pool); RoPE tables). */
static int64_t pipeline_bytes(const qs_hf_config *hf, int64_t rows, int64_t T, int64_t nthr) {
    int64_t h = hf->hidden_size, in = hf->intermediate_size;
    int64_t q = hf->num_attention_heads * hf->head_dim;
    int64_t kv = hf->num_key_value_heads * hf->head_dim;
    return 2 * rows * h * 4 + rows * (2 * h + q + 2 * kv + 2 * in) * 4 + nthr * T * T * 4 +
           T * hf->head_dim * 4;
}

/* Bytes of one (linear, candidate) result of d_out rows: codes 1 B/weight, fp16 scales and
 * i32 zeros per group, g_idx, three f64 per-row values (stages/reconstruct.c lc_res). */
static int64_t result_bytes(int64_t d_out, int64_t d_in, int group_size) {
    int64_t G = group_size > 0 ? (d_in + group_size - 1) / group_size : 1;
    return d_out * d_in + d_out * G * 6 + d_in * 4 + d_out * 24;
}

/* The reconstruct stage (stages/reconstruct.c), pass 0 (every candidate; the final pass
 * holds one candidate per linear, never more). */
static qs_mem_estimate reconstruct_bytes(const qs_hf_config *hf, const qs_config *cfg, int rank,
                                         int nranks, int count) {
    qs_mem_estimate m = {0, 0, 0, 0, 0};
    int64_t h = hf->hidden_size, in = hf->intermediate_size, V = hf->vocab_size;
    int64_t q = hf->num_attention_heads * hf->head_dim;
    int64_t kv = hf->num_key_value_heads * hf->head_dim;
    int64_t d_out[7] = {q, kv, kv, h, in, in, h}, d_in[7] = {h, h, h, q, h, h, in};
    int64_t rb = cfg ? cfg->quant.row_block : 256, B = cfg ? cfg->quant.block_size : 128;
    int gptq = cfg ? cfg->quant.method == QS_METHOD_GPTQ : 1;
    int quantized = cfg ? cfg->reconstruct.inputs == QS_INPUTS_QUANTIZED : 1;
    int P = nranks > 0 ? nranks : 1;
    int64_t res = 0, lin_max = 0, din_max = h > q ? h : q;
    if (in > din_max) din_max = in;
    qs_cands cs;
    qs_err e = {0};
    if (qs_cands_from_config(cfg, &cs, &e) != QS_OK) /* a bad grid is refused elsewhere */
        qs_cands_from_config(NULL, &cs, &e);
    for (int k = 0; k < 7; ++k) {
        for (int c = 0; c < cs.n; ++c) {
            const int t = qs_cand_gguf_type(&cs, c);
            /* a GGUF candidate keeps its blocks (d_out, row_bytes) and the per-row values */
            if (cs.kind[c] == QS_CAND_GGUF && qs_gguf_row_bytes((qs_gguf_type)t, d_in[k]) > 0)
                res += d_out[k] * qs_gguf_row_bytes((qs_gguf_type)t, d_in[k]) + d_out[k] * 24;
            else
                res += result_bytes(d_out[k], d_in[k], cs.p[c].group_size);
        }
        if (d_out[k] * d_in[k] > lin_max) lin_max = d_out[k] * d_in[k];
    }
    /* one piece's solve (solve_piece): its dequantized rows (f32) + the largest of the GPTQ
     * row tile with its column-block buffers, the error tiles (2 x (2R, d_in) f32), the RTN
     * baseline's codes/scales/zeros with the error tiles of one (R, d_in). A piece is a row
     * block in both modes; R = rows = min(d_out, row_block). One per thread; a rank that
     * does not write the layer also holds SOLVE_BATCH (4) pieces' results per thread in
     * flight (stages/reconstruct.c seq_solve_mine). The GPTQ factor's tile panel
     * (d_in x 512 f32, chol_tiled.c) lives only while a factor is prepared, before any
     * solve, and is smaller than one piece's scratch (>= 16 R d_in B): not counted apart. */
    const int64_t nthr = mem_threads(cfg);
    int64_t scratch = 0, piece = 0;
    for (int k = 0; k < 7; ++k) {
        int64_t rows = rb < d_out[k] ? rb : d_out[k];
        for (int c = 0; c < cs.n; ++c) {
            int64_t pb = result_bytes(rows, d_in[k], cs.p[c].group_size);
            if (pb > piece) piece = pb;
        }
        int64_t R = rows < rb ? rows : rb, n = d_in[k], G = 1; /* most groups of a candidate */
        for (int c = 0; c < cs.n; ++c) {
            int64_t ng = qs_quant_ngroups(n, cs.p[c].group_size);
            if (ng > G) G = ng;
        }
        int64_t t1 = R * n * 4 + B * R * 13 + 24 * R, t2 = 16 * R * n;
        int64_t t3 = rows * n + rows * G * 6 + 8 * R * n;
        int64_t peak = t1 > t2 ? t1 : t2;
        if (t3 > peak) peak = t3;
        if (rows * n * 4 + peak > scratch) scratch = rows * n * 4 + peak;
    }
    scratch *= nthr;
    int64_t hsq = 2 * h * h + q * q + in * in; /* sum of d_g^2 over the four groups */
    if (quantized) {
        int64_t T = cfg ? cfg->calib.seqlen : 2048, S = cfg ? cfg->calib.nsamples : 128;
        int64_t CS = cfg && cfg->calib.chunk_samples > 0 ? cfg->calib.chunk_samples : 8;
        int64_t nchunks = (S + CS - 1) / CS, rows = 0;
        for (int64_t c = rank; c < nchunks; c += P) rows += (S - c * CS < CS ? S - c * CS : CS) * T;
        /* the float layer and its quantized copy */
        m.weights = 2 * qs_hf_config_layer_params(hf) * 4;
        /* one chunk's partials, the final H and the GPTQ factor per group (f32); rank 0's
         * f64 accumulators */
        m.hessians = hsq * 4 * (gptq ? 3 : 2) + (rank == 0 ? hsq * 8 : 0);
        /* this rank's chunks' activations, one chunk copy, the layer workspace */
        m.activations = rows * h * 4 + CS * T * h * 4 +
                        pipeline_bytes(hf, CS * T, T, nthr) - 2 * CS * T * h * 4;
        /* the writer (a layer's plan owner) holds the whole layer's results; any other rank
         * its packed pieces (about 1/P of them) */
        m.extra = (count > 0 ? res : res / P + 4 * nthr * piece) + scratch;
        /* before the first layer: the embeddings while the windows are embedded */
        int64_t start = rows * h * 4 + (rows > 0 ? V * h * 4 : 0);
        int64_t loop = m.weights + m.hessians + m.activations + m.extra;
        if (start > loop) m.extra += start - loop;
    } else {
        /* per job: one linear's f32 weight, the group's Hessian and factor, the solve
         * scratch; beside them the results of the groups this rank solved (about one
         * layer's). After the solves (job buffers freed) the writer also receives the rest
         * of the layer it writes: that phase counts only when it is larger. */
        int64_t dmax = din_max;
        m.weights = lin_max * 4;
        m.hessians = dmax * dmax * 4 * (gptq ? 2 : 1);
        m.activations = 0;
        m.extra = res + scratch;
        int64_t job = m.weights + m.hessians + scratch;
        if (P > 1 && res > job) m.extra += res - job;
    }
    m.total = m.weights + m.hessians + m.activations + m.extra;
    return m;
}

qs_mem_estimate qs_mem_for_stage(const qs_hf_config *hf, const qs_config *cfg, int rank,
                                 int nranks, int first, int count, qs_mem_stage stage) {
    qs_mem_estimate m = {0, 0, 0, 0, 0};
    if (stage == QS_MEM_RECONSTRUCT) return reconstruct_bytes(hf, cfg, rank, nranks, count);
    if (count <= 0) return m;
    int64_t h = hf->hidden_size, in = hf->intermediate_size, V = hf->vocab_size;
    int64_t q = hf->num_attention_heads * hf->head_dim;
    int64_t chunk = cfg ? cfg->calib.chunk_samples : 8;
    int is_first = first == 0, is_last = first + count == (int)hf->num_hidden_layers;
    int64_t largest = h > q ? h : q;
    if (in > largest) largest = in;
    m.weights = (int64_t)count * qs_hf_config_layer_params(hf) * 4;
    if (stage == QS_MEM_CALIBRATE || stage == QS_MEM_CALIBRATE_REPLICA) {
        /* stages/calibrate.c: replica 0: f64 accumulators + one f32 tile (also the f32
         * staging buffer when the layer files are written); a replica > 0: one chunk's
         * partials per layer in flight to replica 0 (f32 tiles, absmax f32, sumsq f64). The
         * pipeline buffers, the statistics hook's scratch (largest width x 12 B), embeddings
         * on the first rank of each pipeline. The bf16 pages of the mapped checkpoint are
         * dropped once converted (weights.c). */
        int64_t T = cfg ? cfg->calib.seqlen : 2048;
        int64_t sq = h * h + q * q + h * h + in * in;
        if (stage == QS_MEM_CALIBRATE)
            m.hessians = (int64_t)count * sq * 8 + largest * largest * 4;
        else
            m.hessians = (int64_t)count * (sq * 4 + (h + q + h + in) * 12);
        m.activations = pipeline_bytes(hf, chunk * T, T, mem_threads(cfg)) + largest * 12;
        m.extra = is_first ? V * h * 4 : 0;
    } else {
        /* stages/eval.c: windows of eval.seqlen; the last rank also holds the final norm,
         * lm_head (the embeddings when tied), one window of logits and a chunk's NLL. */
        int64_t T = cfg && cfg->eval.seqlen > 1 ? cfg->eval.seqlen : 2048;
        m.activations = pipeline_bytes(hf, chunk * T, T, mem_threads(cfg));
        if (is_first || (is_last && hf->tie_word_embeddings)) m.extra += V * h * 4;
        if (is_last) {
            m.extra += h * 4 + T * V * 4 + chunk * (T - 1) * 8;
            if (!hf->tie_word_embeddings) m.extra += V * h * 4;
        }
    }
    m.total = m.weights + m.hessians + m.activations + m.extra;
    return m;
}

qs_mem_estimate qs_mem_for_rank(const qs_hf_config *hf, const qs_config *cfg, int rank,
                                int nranks, int first, int count, const qs_mem_calib *calib) {
    /* calibrate computes only for reconstruct's float inputs (stages/calibrate.c) */
    qs_mem_estimate m =
        qs_mem_for_stage(hf, cfg, rank, nranks, first, count, QS_MEM_RECONSTRUCT);
    if (!cfg || cfg->reconstruct.inputs == QS_INPUTS_FLOAT) {
        const qs_mem_calib one = {first, count, 0}, *cr = calib ? calib : &one;
        qs_mem_estimate c =
            qs_mem_for_stage(hf, cfg, rank, nranks, cr->first, cr->count,
                             cr->replica > 0 ? QS_MEM_CALIBRATE_REPLICA : QS_MEM_CALIBRATE);
        if (c.total > m.total) m = c;
    }
    const qs_token_source esrc = cfg ? qs_config_eval_source(cfg) : (qs_token_source){0};
    if (cfg && qs_token_source_given(&esrc)) {
        qs_mem_estimate e = qs_mem_for_stage(hf, cfg, rank, nranks, first, count, QS_MEM_EVAL);
        if (e.total > m.total) m = e;
    }
    return m;
}
