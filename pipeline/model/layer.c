/* layer.c: the decoder layer forward (with statistics hooks), its workspace, and the
 * whole-model convenience (embedding -> layers -> norm -> logits -> NLL). */
#include "layer.h"

#include <stdlib.h>
#include <string.h>

qs_status qs_model_dims_check(const qs_model_dims *d, qs_err *err) {
#define QS_DIM_POS(field, key)                                                               \
    if (d->field <= 0)                                                                       \
        return QS_FAIL(err, QS_ERR_INPUT, "model dims: %s must be positive, got %lld", key, \
                       (long long)d->field);
    QS_DIM_POS(hidden, "hidden_size")
    QS_DIM_POS(inter, "intermediate_size")
    QS_DIM_POS(heads, "num_attention_heads")
    QS_DIM_POS(kv_heads, "num_key_value_heads")
    QS_DIM_POS(head_dim, "head_dim")
#undef QS_DIM_POS
    if (d->head_dim % 2 != 0)
        return QS_FAIL(err, QS_ERR_INPUT, "model dims: head_dim must be even for RoPE, got %lld",
                       (long long)d->head_dim);
    if (d->heads % d->kv_heads != 0)
        return QS_FAIL(err, QS_ERR_INPUT,
                       "model dims: num_attention_heads %lld is not a multiple of "
                       "num_key_value_heads %lld",
                       (long long)d->heads, (long long)d->kv_heads);
    if (!(d->eps > 0.0))
        return QS_FAIL(err, QS_ERR_INPUT, "model dims: rms_norm_eps must be positive, got %g",
                       d->eps);
    if (!(d->rope.theta > 0.0))
        return QS_FAIL(err, QS_ERR_INPUT, "model dims: rope_theta must be positive, got %g",
                       d->rope.theta);
    if (d->nlayers < 0 || d->nlayers > QS_MODEL_MAX_LAYERS)
        return QS_FAIL(err, QS_ERR_INPUT,
                       "model dims: num_hidden_layers must be in [0, %d], got %lld",
                       QS_MODEL_MAX_LAYERS, (long long)d->nlayers);
    for (int64_t l = 0; l < (d->nlayers > 0 ? d->nlayers : 1); ++l)
        if (d->layer_window[l] < 0)
            return QS_FAIL(err, QS_ERR_INPUT,
                           "model dims: sliding_window of layer %lld must be >= 0, got %lld",
                           (long long)l, (long long)d->layer_window[l]);
    if (d->rope.scaling == QS_ROPE_SCALING_LINEAR || d->rope.scaling == QS_ROPE_SCALING_LLAMA3) {
        if (!(d->rope.factor > 0.0))
            return QS_FAIL(err, QS_ERR_INPUT,
                           "model dims: rope_scaling.factor must be positive, got %g",
                           d->rope.factor);
    }
    if (d->rope.scaling == QS_ROPE_SCALING_LLAMA3) {
        if (!(d->rope.low_freq_factor > 0.0) ||
            !(d->rope.high_freq_factor > d->rope.low_freq_factor))
            return QS_FAIL(err, QS_ERR_INPUT,
                           "model dims: rope_scaling needs 0 < low_freq_factor < "
                           "high_freq_factor, got %g and %g",
                           d->rope.low_freq_factor, d->rope.high_freq_factor);
        if (d->rope.original_max_position <= 0)
            return QS_FAIL(err, QS_ERR_INPUT,
                           "model dims: rope_scaling.original_max_position_embeddings must be "
                           "positive, got %lld",
                           (long long)d->rope.original_max_position);
    }
    return QS_OK;
}

size_t qs_layer_workspace_bytes(const qs_model_dims *d, int max_nseq, int max_seqlen) {
    size_t rows = (size_t)max_nseq * (size_t)max_seqlen;
    size_t q_dim = (size_t)(d->heads * d->head_dim), kv_dim = (size_t)(d->kv_heads * d->head_dim);
    size_t n = rows * ((size_t)d->hidden * 2 + q_dim + 2 * kv_dim + 2 * (size_t)d->inter) +
               (size_t)max_seqlen * (size_t)max_seqlen +
               2 * (size_t)max_seqlen * (size_t)(d->head_dim / 2);
    return n * sizeof(float);
}

void qs_layer_workspace_free(qs_layer_workspace *ws) {
    if (!ws) return;
    free(ws->xn);
    free(ws->q);
    free(ws->k);
    free(ws->v);
    free(ws->scores);
    free(ws->gate);
    free(ws->up);
    free(ws->proj);
    free(ws->rope_cos);
    free(ws->rope_sin);
    memset(ws, 0, sizeof(*ws));
}

qs_status qs_layer_workspace_init(qs_layer_workspace *ws, const qs_model_dims *d, int max_nseq,
                                  int max_seqlen, qs_err *err) {
    qs_status st = QS_OK;
    float *inv_freq = NULL;  // (head_dim / 2)
    memset(ws, 0, sizeof(*ws));
    QS_CHECK(qs_model_dims_check(d, err));
    if (max_nseq <= 0 || max_seqlen <= 0)
        QS_THROW(err, QS_ERR_INTERNAL, "layer workspace: chunk %d x %d is empty", max_nseq,
                 max_seqlen);
    ws->max_rows = (int64_t)max_nseq * max_seqlen;
    ws->max_seqlen = max_seqlen;
    ws->hidden = d->hidden;
    ws->inter = d->inter;
    ws->q_dim = d->heads * d->head_dim;
    ws->kv_dim = d->kv_heads * d->head_dim;
    ws->head_dim = d->head_dim;
    const size_t rows = (size_t)ws->max_rows, half = (size_t)(d->head_dim / 2);
    const size_t f = sizeof(float);
    if (!(ws->xn = qs_malloc(rows * (size_t)ws->hidden * f, err, "layer workspace xn")) ||
        !(ws->q = qs_malloc(rows * (size_t)ws->q_dim * f, err, "layer workspace q")) ||
        !(ws->k = qs_malloc(rows * (size_t)ws->kv_dim * f, err, "layer workspace k")) ||
        !(ws->v = qs_malloc(rows * (size_t)ws->kv_dim * f, err, "layer workspace v")) ||
        !(ws->scores = qs_malloc((size_t)max_seqlen * (size_t)max_seqlen * f, err,
                                 "layer workspace scores")) ||
        !(ws->gate = qs_malloc(rows * (size_t)ws->inter * f, err, "layer workspace gate")) ||
        !(ws->up = qs_malloc(rows * (size_t)ws->inter * f, err, "layer workspace up")) ||
        !(ws->proj = qs_malloc(rows * (size_t)ws->hidden * f, err, "layer workspace proj")) ||
        !(ws->rope_cos = qs_malloc((size_t)max_seqlen * half * f, err, "rope cos table")) ||
        !(ws->rope_sin = qs_malloc((size_t)max_seqlen * half * f, err, "rope sin table")) ||
        !(inv_freq = qs_malloc(half * f, err, "rope inv_freq"))) {
        st = QS_ERR_RUNTIME;
        goto done;
    }
    qs_rope_inv_freq(&d->rope, d->head_dim, inv_freq);
    qs_rope_table(inv_freq, (int64_t)half, max_seqlen, ws->rope_cos, ws->rope_sin);
done:
    free(inv_freq);
    if (st != QS_OK) qs_layer_workspace_free(ws);
    return st;
}

static qs_status call_hook(const qs_layer_hooks *hooks, qs_linear_group g, const float *x,
                           int64_t rows, int64_t d_in, qs_err *err) {
    if (!hooks || !hooks->fn) return QS_OK;
    qs_status st = hooks->fn(hooks->ctx, g, x, rows, d_in, err);
    if (st != QS_OK && err && err->code == QS_OK)
        QS_FAIL(err, st, "layer hook for group %d failed without a message", (int)g);
    return st;
}

qs_status qs_layer_workspace_set_pool(qs_layer_workspace *ws, qs_pool *pool, qs_err *err) {
    const size_t tile = (size_t)ws->max_seqlen * (size_t)ws->max_seqlen;
    float *sc = qs_malloc(tile * (size_t)qs_pool_threads(pool) * sizeof(float), err,
                          "attention scores per thread");
    if (!sc) return QS_ERR_RUNTIME;
    free(ws->scores);
    ws->scores = sc;
    ws->pool = pool;
    return QS_OK;
}

/* The phases of a forward; each runs its tiles on the pool between the hooks. */
typedef enum fwd_phase {
    PH_NORM1,   /* row tile: xn = input_norm(x) */
    PH_QKV,     /* row tile: q, k, v = linears of xn, RoPE on q and k */
    PH_ATTN,    /* (sequence, head) tile: attention, in place on q */
    PH_O_NORM2, /* row tile: x += o_proj(q); xn = post_norm(x) */
    PH_GATE_UP, /* row tile: gate = silu(gate_proj(xn)) * up_proj(xn) */
    PH_DOWN     /* row tile: x += down_proj(gate) */
} fwd_phase;

typedef struct fwd_tiles {
    const qs_layer_weights *w;
    const qs_model_dims *d;
    qs_layer_workspace *ws;
    float *x;              /* (rows, hidden) the residual stream */
    int64_t rows, seqlen, window;
    fwd_phase phase;
} fwd_tiles;

static qs_status fwd_task(void *vctx, int64_t task, int worker, qs_err *err) {
    (void)err;
    const fwd_tiles *f = vctx;
    const qs_layer_weights *w = f->w;
    const qs_model_dims *d = f->d;
    qs_layer_workspace *ws = f->ws;
    const int64_t H = d->hidden, Ni = d->inter, hd = d->head_dim;
    const int64_t qd = d->heads * hd, kvd = d->kv_heads * hd;
    const float eps = (float)d->eps;
    if (f->phase == PH_ATTN) {
        float *scores = ws->scores + (size_t)worker * (size_t)(ws->max_seqlen * ws->max_seqlen);
        qs_attention_head(ws->q, ws->k, ws->v, task / d->heads, task % d->heads, f->seqlen,
                          d->heads, d->kv_heads, hd, f->window, scores);
        return QS_OK;
    }
    const int64_t r0 = task * QS_ROW_TILE;
    const int64_t R = f->rows - r0 < QS_ROW_TILE ? f->rows - r0 : QS_ROW_TILE;
    float *x = f->x + r0 * H;       // (R, H)
    float *xn = ws->xn + r0 * H;    // (R, H)
    float *q = ws->q + r0 * qd;     // (R, qd)
    float *proj = ws->proj + r0 * H; // (R, H)
    float *gate = ws->gate + r0 * Ni; // (R, Ni)
    switch (f->phase) {
    case PH_NORM1:
        qs_rmsnorm(x, w->input_norm, xn, R, H, eps);
        break;
    case PH_QKV: {
        float *k = ws->k + r0 * kvd, *v = ws->v + r0 * kvd; // (R, kvd)
        qs_linear(xn, w->q_w, d->qkv_bias ? w->q_b : NULL, q, R, H, qd);
        qs_linear(xn, w->k_w, d->qkv_bias ? w->k_b : NULL, k, R, H, kvd);
        qs_linear(xn, w->v_w, d->qkv_bias ? w->v_b : NULL, v, R, H, kvd);
        qs_rope_apply_rows(q, r0, R, f->seqlen, d->heads, hd, ws->rope_cos, ws->rope_sin);
        qs_rope_apply_rows(k, r0, R, f->seqlen, d->kv_heads, hd, ws->rope_cos, ws->rope_sin);
        break;
    }
    case PH_O_NORM2:
        qs_linear(q, w->o_w, d->o_bias ? w->o_b : NULL, proj, R, qd, H);
        qs_add_inplace(x, proj, R, H);
        qs_rmsnorm(x, w->post_norm, xn, R, H, eps);
        break;
    case PH_GATE_UP: {
        float *up = ws->up + r0 * Ni; // (R, Ni)
        qs_linear(xn, w->gate_w, d->mlp_bias ? w->gate_b : NULL, gate, R, H, Ni);
        qs_linear(xn, w->up_w, d->mlp_bias ? w->up_b : NULL, up, R, H, Ni);
        qs_swiglu(gate, up, R * Ni);
        break;
    }
    case PH_DOWN:
        qs_linear(gate, w->down_w, d->mlp_bias ? w->down_b : NULL, proj, R, Ni, H);
        qs_add_inplace(x, proj, R, H);
        break;
    case PH_ATTN:
        break;
    }
    return QS_OK;
}

/* Runs one phase's tiles on the workspace's pool. */
static qs_status fwd_phase_run(fwd_tiles *f, fwd_phase ph, int64_t nseq, qs_err *err) {
    f->phase = ph;
    const int64_t ntiles = ph == PH_ATTN ? nseq * f->d->heads
                                         : (f->rows + QS_ROW_TILE - 1) / QS_ROW_TILE;
    return qs_pool_run(f->ws->pool, ntiles, fwd_task, f, err);
}

qs_status qs_layer_forward(const qs_layer_weights *w, const qs_model_dims *d, int layer,
                           float *x, int nseq, int seqlen, qs_layer_workspace *ws,
                           const qs_layer_hooks *hooks, qs_err *err) {
    qs_status st = QS_OK;
    const int64_t rows = (int64_t)nseq * seqlen;
    const int64_t H = d->hidden, Ni = d->inter;
    const int64_t qd = d->heads * d->head_dim, kvd = d->kv_heads * d->head_dim;
    QS_ASSERT(err, nseq > 0 && seqlen > 0);
    QS_ASSERT(err, layer >= 0 && layer < (d->nlayers > 0 ? d->nlayers : 1) &&
                       layer < QS_MODEL_MAX_LAYERS);
    QS_ASSERT(err, rows <= ws->max_rows && seqlen <= ws->max_seqlen);
    QS_ASSERT(err, ws->hidden == H && ws->inter == Ni && ws->q_dim == qd && ws->kv_dim == kvd &&
                       ws->head_dim == d->head_dim);
    QS_ASSERT(err, w->input_norm && w->q_w && w->k_w && w->v_w && w->o_w && w->post_norm &&
                       w->gate_w && w->up_w && w->down_w);
    QS_ASSERT(err, !d->qkv_bias || (w->q_b && w->k_b && w->v_b));
    QS_ASSERT(err, !d->o_bias || w->o_b);
    QS_ASSERT(err, !d->mlp_bias || (w->gate_b && w->up_b && w->down_b));
    fwd_tiles f = {w, d, ws, x, rows, seqlen, d->layer_window[layer], PH_NORM1};

    /* attention block */
    QS_CHECK(fwd_phase_run(&f, PH_NORM1, nseq, err));
    QS_CHECK(call_hook(hooks, QS_GROUP_QKV, ws->xn, rows, H, err));
    QS_CHECK(fwd_phase_run(&f, PH_QKV, nseq, err));
    QS_CHECK(fwd_phase_run(&f, PH_ATTN, nseq, err));
    QS_CHECK(call_hook(hooks, QS_GROUP_O, ws->q, rows, qd, err));
    /* o_proj and the residual, then the MLP block's norm */
    QS_CHECK(fwd_phase_run(&f, PH_O_NORM2, nseq, err));
    QS_CHECK(call_hook(hooks, QS_GROUP_GATE_UP, ws->xn, rows, H, err));
    QS_CHECK(fwd_phase_run(&f, PH_GATE_UP, nseq, err));
    QS_CHECK(call_hook(hooks, QS_GROUP_DOWN, ws->gate, rows, Ni, err));
    QS_CHECK(fwd_phase_run(&f, PH_DOWN, nseq, err));
done:
    return st;
}

void qs_model_workspace_free(qs_model_workspace *ws) {
    if (!ws) return;
    qs_layer_workspace_free(&ws->layer);
    free(ws->x);
    free(ws->logits);
    memset(ws, 0, sizeof(*ws));
}

qs_status qs_model_workspace_init(qs_model_workspace *ws, const qs_model_dims *d,
                                  int max_nseq, int max_seqlen, qs_err *err) {
    qs_status st = QS_OK;
    memset(ws, 0, sizeof(*ws));
    if (d->vocab <= 0)
        QS_THROW(err, QS_ERR_INPUT, "model dims: vocab_size must be positive, got %lld",
                 (long long)d->vocab);
    QS_CHECK(qs_layer_workspace_init(&ws->layer, d, max_nseq, max_seqlen, err));
    ws->x = qs_malloc((size_t)ws->layer.max_rows * (size_t)d->hidden * sizeof(float), err,
                      "model workspace residual");
    ws->logits = ws->x ? qs_malloc((size_t)max_seqlen * (size_t)d->vocab * sizeof(float), err,
                                   "model workspace logits")
                       : NULL;
    if (!ws->x || !ws->logits) st = QS_ERR_RUNTIME;
done:
    if (st != QS_OK) qs_model_workspace_free(ws);
    return st;
}

/* One head's tiles: (sequence, row tile of QS_ROW_TILE rows) each. */
typedef struct head_tiles {
    const float *lm_head; /* (vocab, hidden) */
    const qs_model_dims *d;
    const float *x;       /* (nseq * seqlen, hidden) normed */
    const uint32_t *tokens;
    int64_t seqlen, per_seq; /* row tiles per sequence */
    float *logits_tile;   /* (seqlen, vocab): worker w's tile at rows w * QS_ROW_TILE */
    float *logits;        /* (nseq * seqlen, vocab) or NULL */
    double *nll;          /* (nseq, seqlen - 1) or NULL */
} head_tiles;

static qs_status head_task(void *vctx, int64_t task, int worker, qs_err *err) {
    const head_tiles *h = vctx;
    const int64_t H = h->d->hidden, V = h->d->vocab, T = h->seqlen;
    const int64_t s = task / h->per_seq, t0 = (task % h->per_seq) * QS_ROW_TILE;
    const int64_t R = T - t0 < QS_ROW_TILE ? T - t0 : QS_ROW_TILE;
    const uint32_t *tok = h->tokens + s * T;  // (seqlen)
    float *lg = h->logits ? h->logits + (s * T + t0) * V  // (R, vocab)
                          : h->logits_tile + (int64_t)worker * QS_ROW_TILE * V;
    qs_linear(h->x + (s * T + t0) * H, h->lm_head, NULL, lg, R, H, V);
    if (!h->nll) return QS_OK;
    for (int64_t t = t0; t < t0 + R && t + 1 < T; ++t) {
        if ((int64_t)tok[t + 1] >= V)
            return QS_FAIL(err, QS_ERR_INPUT,
                           "token id %u at index %lld is out of range for vocab size %lld",
                           (unsigned)tok[t + 1], (long long)(s * T + t + 1), (long long)V);
        h->nll[s * (T - 1) + t] = qs_nll_row(lg + (t - t0) * V, V, tok[t + 1]);
    }
    return QS_OK;
}

qs_status qs_model_head(const float *final_norm, const float *lm_head, const qs_model_dims *d,
                        float *x, const uint32_t *tokens, int nseq, int seqlen,
                        float *logits_tile, float *logits, double *nll, qs_pool *pool,
                        qs_err *err) {
    qs_status st = QS_OK;
    const int64_t H = d->hidden, V = d->vocab;
    QS_ASSERT(err, nseq > 0 && seqlen > 0 && V > 0);
    QS_ASSERT(err, logits || logits_tile);
    qs_rmsnorm(x, final_norm, x, (int64_t)nseq * seqlen, H, (float)d->eps);
    const int64_t per_seq = (seqlen + QS_ROW_TILE - 1) / QS_ROW_TILE;
    head_tiles ht = {lm_head, d, x, tokens, seqlen, per_seq, logits_tile, logits, nll};
    /* without logits, each worker needs its own QS_ROW_TILE rows of logits_tile */
    if (!logits && (int64_t)qs_pool_threads(pool) * QS_ROW_TILE > seqlen) pool = NULL;
    QS_CHECK(qs_pool_run(pool, (int64_t)nseq * per_seq, head_task, &ht, err));
done:
    return st;
}

qs_status qs_model_forward(const qs_model_weights *w, const qs_model_dims *d,
                           const uint32_t *tokens, int nseq, int seqlen, qs_model_workspace *ws,
                           float *logits, double *nll, qs_err *err) {
    qs_status st = QS_OK;
    const int64_t rows = (int64_t)nseq * seqlen;
    QS_ASSERT(err, w->embed && w->final_norm && w->lm_head && (d->nlayers == 0 || w->layers));
    QS_ASSERT(err, ws->x && rows <= ws->layer.max_rows && seqlen <= ws->layer.max_seqlen);
    QS_CHECK(qs_embed_gather(w->embed, d->vocab, d->hidden, tokens, rows, ws->x, err));
    for (int64_t l = 0; l < d->nlayers; ++l)
        QS_CHECK(qs_layer_forward(&w->layers[l], d, (int)l, ws->x, nseq, seqlen, &ws->layer, NULL,
                                  err));
    QS_CHECK(qs_model_head(w->final_norm, w->lm_head, d, ws->x, tokens, nseq, seqlen, ws->logits,
                           logits, nll, ws->layer.pool, err));
done:
    return st;
}
