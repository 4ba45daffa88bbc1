/* test_model_threads.c: the layer forward, the Hessian partial and the model head on the
 * thread pool (pipeline/model/layer.c, hessian.c). A chunk of 3 sequences x 200 tokens
 * (600 rows: three QS_ROW_TILE tiles, the second and third starting inside a sequence),
 * hidden 320 and intermediate 576 (two and three QS_HESS_BLOCK blocks), GQA 5/1 heads:
 *  - at 1, 2, 3 and 4 threads the layer output, every hook's Hessian partial and channel
 *    statistics, the head's NLL and logits are byte-identical to the NULL pool's;
 *  - the tiled forward agrees with the untiled composition of the kernels (the whole chunk
 *    in one call each: qs_rmsnorm, qs_linear, qs_rope_apply, qs_attention, ...) to 2e-5
 *    relative (it checks the RoPE positions of tiles that start inside a sequence);
 *  - the blocked partial agrees with one ssyrk to 1e-5 relative, and the column-blocked
 *    channel statistics equal qs_chan_stats_partial bit for bit. */
#include <cblas.h>

#include "check.h"
#include "hessian.h"
#include "layer.h"
#include "pool.h"

#define NSEQ 3
#define SEQLEN 200
#define ROWS (NSEQ * SEQLEN)
#define HID 320
#define INTER 576
#define HEADS 5
#define KVH 1
#define HD 64
#define VOCAB 700

typedef struct hook_rec {
    qs_pool *pool;
    float *part[QS_GROUP_COUNT];    /* (d, d) */
    float *absmax[QS_GROUP_COUNT];  /* (d) */
    double *sumsq[QS_GROUP_COUNT];  /* (d) */
} hook_rec;

static qs_status rec_hook(void *vctx, qs_linear_group g, const float *x, int64_t rows,
                          int64_t d, qs_err *err) {
    hook_rec *h = vctx;
    qs_status st = qs_hess_partial_pool(h->pool, x, rows, d, h->part[g], err);
    if (st == QS_OK)
        st = qs_chan_stats_partial_pool(h->pool, x, rows, d, h->absmax[g], h->sumsq[g], err);
    return st;
}

static float *randn(int64_t n, float scale, uint64_t *s) {
    float *p = malloc(sizeof(float) * (size_t)n);
    for (int64_t i = 0; i < n; ++i) p[i] = scale * qs_test_nrand(s);
    return p;
}

static double rel_diff(const float *a, const float *b, int64_t n) {
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; ++i) {
        num += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        den += (double)b[i] * b[i];
    }
    return sqrt(num / (den > 0 ? den : 1));
}

/* The untiled forward: every kernel on the whole chunk. */
static void ref_forward(const qs_layer_weights *w, const qs_model_dims *d, float *x,
                        const float *cos_t, const float *sin_t) {
    const int64_t qd = HEADS * HD, kvd = KVH * HD;
    float *xn = malloc(sizeof(float) * ROWS * HID), *q = malloc(sizeof(float) * ROWS * qd);
    float *k = malloc(sizeof(float) * ROWS * kvd), *v = malloc(sizeof(float) * ROWS * kvd);
    float *sc = malloc(sizeof(float) * SEQLEN * SEQLEN), *p = malloc(sizeof(float) * ROWS * HID);
    float *g = malloc(sizeof(float) * ROWS * INTER), *u = malloc(sizeof(float) * ROWS * INTER);
    qs_rmsnorm(x, w->input_norm, xn, ROWS, HID, (float)d->eps);
    qs_linear(xn, w->q_w, NULL, q, ROWS, HID, qd);
    qs_linear(xn, w->k_w, NULL, k, ROWS, HID, kvd);
    qs_linear(xn, w->v_w, NULL, v, ROWS, HID, kvd);
    qs_rope_apply(q, NSEQ, SEQLEN, HEADS, HD, cos_t, sin_t);
    qs_rope_apply(k, NSEQ, SEQLEN, KVH, HD, cos_t, sin_t);
    qs_attention(q, k, v, NSEQ, SEQLEN, HEADS, KVH, HD, 0, sc);
    qs_linear(q, w->o_w, NULL, p, ROWS, qd, HID);
    qs_add_inplace(x, p, ROWS, HID);
    qs_rmsnorm(x, w->post_norm, xn, ROWS, HID, (float)d->eps);
    qs_linear(xn, w->gate_w, NULL, g, ROWS, HID, INTER);
    qs_linear(xn, w->up_w, NULL, u, ROWS, HID, INTER);
    qs_swiglu(g, u, ROWS * INTER);
    qs_linear(g, w->down_w, NULL, p, ROWS, INTER, HID);
    qs_add_inplace(x, p, ROWS, HID);
    free(xn), free(q), free(k), free(v), free(sc), free(p), free(g), free(u);
}

typedef struct outputs {
    float *x;                      /* (ROWS, HID) layer output */
    hook_rec h;
    double *nll;                   /* (NSEQ, SEQLEN - 1) */
    float *logits;                 /* (ROWS, VOCAB) */
} outputs;

static const int64_t DG[QS_GROUP_COUNT] = {HID, HEADS * HD, HID, INTER};

static void outputs_alloc(outputs *o) {
    memset(o, 0, sizeof(*o));
    o->x = malloc(sizeof(float) * ROWS * HID);
    o->nll = malloc(sizeof(double) * NSEQ * (SEQLEN - 1));
    o->logits = malloc(sizeof(float) * ROWS * VOCAB);
    for (int g = 0; g < QS_GROUP_COUNT; ++g) {
        o->h.part[g] = calloc((size_t)(DG[g] * DG[g]), sizeof(float));
        o->h.absmax[g] = malloc(sizeof(float) * (size_t)DG[g]);
        o->h.sumsq[g] = malloc(sizeof(double) * (size_t)DG[g]);
    }
}

static void outputs_free(outputs *o) {
    free(o->x), free(o->nll), free(o->logits);
    for (int g = 0; g < QS_GROUP_COUNT; ++g)
        free(o->h.part[g]), free(o->h.absmax[g]), free(o->h.sumsq[g]);
}

/* Layer forward with the recording hook, then the head twice (logits tile, all logits). */
static void run(qs_pool *pool, const qs_layer_weights *w, const qs_model_dims *d,
                const float *x0, const float *fnorm, const float *lm, const uint32_t *tok,
                outputs *o) {
    qs_layer_workspace ws;
    qs_err err = {0};
    CHECK(qs_layer_workspace_init(&ws, d, NSEQ, SEQLEN, &err) == QS_OK, "ws: %s", err.msg);
    CHECK(qs_layer_workspace_set_pool(&ws, pool, &err) == QS_OK, "set_pool: %s", err.msg);
    memcpy(o->x, x0, sizeof(float) * ROWS * HID);
    o->h.pool = pool;
    qs_layer_hooks hooks = {rec_hook, &o->h};
    CHECK(qs_layer_forward(w, d, 0, o->x, NSEQ, SEQLEN, &ws, &hooks, &err) == QS_OK,
          "forward: %s", err.msg);
    float *xh = malloc(sizeof(float) * ROWS * HID);
    float *tile = malloc(sizeof(float) * SEQLEN * VOCAB);
    memcpy(xh, o->x, sizeof(float) * ROWS * HID);
    CHECK(qs_model_head(fnorm, lm, d, xh, tok, NSEQ, SEQLEN, tile, NULL, o->nll, pool, &err) ==
              QS_OK, "head: %s", err.msg);
    memcpy(xh, o->x, sizeof(float) * ROWS * HID);
    CHECK(qs_model_head(fnorm, lm, d, xh, tok, NSEQ, SEQLEN, NULL, o->logits, NULL, pool,
                        &err) == QS_OK, "head with logits: %s", err.msg);
    free(xh), free(tile);
    qs_layer_workspace_free(&ws);
}

static int same(const outputs *a, const outputs *b) {
    int ok = memcmp(a->x, b->x, sizeof(float) * ROWS * HID) == 0 &&
             memcmp(a->nll, b->nll, sizeof(double) * NSEQ * (SEQLEN - 1)) == 0 &&
             memcmp(a->logits, b->logits, sizeof(float) * ROWS * VOCAB) == 0;
    for (int g = 0; g < QS_GROUP_COUNT; ++g) {
        const int64_t n = DG[g];
        for (int64_t i = 0; i < n; ++i) /* the upper triangle is the partial */
            ok &= memcmp(a->h.part[g] + i * n + i, b->h.part[g] + i * n + i,
                         sizeof(float) * (size_t)(n - i)) == 0;
        ok &= memcmp(a->h.absmax[g], b->h.absmax[g], sizeof(float) * (size_t)n) == 0 &&
              memcmp(a->h.sumsq[g], b->h.sumsq[g], sizeof(double) * (size_t)n) == 0;
    }
    return ok;
}

int main(void) {
    uint64_t s = 7;
    openblas_set_num_threads(1);
    qs_model_dims d;
    memset(&d, 0, sizeof(d));
    d.hidden = HID, d.inter = INTER, d.heads = HEADS, d.kv_heads = KVH, d.head_dim = HD;
    d.vocab = VOCAB, d.eps = 1e-5, d.rope.theta = 10000.0;
    const int64_t qd = HEADS * HD, kvd = KVH * HD;
    float *in_n = randn(HID, 0.1f, &s), *post_n = randn(HID, 0.1f, &s);
    for (int i = 0; i < HID; ++i) in_n[i] += 1.0f, post_n[i] += 1.0f;
    qs_layer_weights w = {0};
    w.input_norm = in_n, w.post_norm = post_n;
    w.q_w = randn(qd * HID, 0.05f, &s), w.k_w = randn(kvd * HID, 0.05f, &s);
    w.v_w = randn(kvd * HID, 0.05f, &s), w.o_w = randn(HID * qd, 0.05f, &s);
    w.gate_w = randn(INTER * HID, 0.05f, &s), w.up_w = randn(INTER * HID, 0.05f, &s);
    w.down_w = randn(HID * INTER, 0.05f, &s);
    float *x0 = randn(ROWS * HID, 1.0f, &s), *fnorm = randn(HID, 0.1f, &s);
    for (int i = 0; i < HID; ++i) fnorm[i] += 1.0f;
    float *lm = randn(VOCAB * HID, 0.05f, &s);
    uint32_t *tok = malloc(sizeof(uint32_t) * ROWS);
    for (int i = 0; i < ROWS; ++i) tok[i] = (uint32_t)(qs_test_xorshift64(&s) % VOCAB);

    outputs ref, got;
    outputs_alloc(&ref);
    outputs_alloc(&got);
    run(NULL, &w, &d, x0, fnorm, lm, tok, &ref);

    /* the tiled forward vs the untiled composition of the kernels */
    qs_layer_workspace ws;
    qs_err err = {0};
    CHECK(qs_layer_workspace_init(&ws, &d, NSEQ, SEQLEN, &err) == QS_OK, "ws: %s", err.msg);
    float *xr = malloc(sizeof(float) * ROWS * HID);
    memcpy(xr, x0, sizeof(float) * ROWS * HID);
    ref_forward(&w, &d, xr, ws.rope_cos, ws.rope_sin);
    double rd = rel_diff(ref.x, xr, ROWS * HID);
    CHECK(rd < 2e-5, "tiled forward vs untiled kernels: relative difference %.3g", rd);
    qs_layer_workspace_free(&ws);

    /* the blocked partial vs one ssyrk, the column-blocked statistics vs the plain ones */
    float *xs = randn(ROWS * INTER, 1.0f, &s);
    float *t1 = calloc(INTER * INTER, sizeof(float)), *t2 = calloc(INTER * INTER, sizeof(float));
    float *a1 = malloc(sizeof(float) * INTER), *a2 = malloc(sizeof(float) * INTER);
    double *s1 = malloc(sizeof(double) * INTER), *s2 = malloc(sizeof(double) * INTER);
    cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, INTER, ROWS, 1.0f, xs, INTER, 0.0f, t1,
                INTER);
    qs_hess_partial(xs, ROWS, INTER, t2);
    double num = 0, den = 0;
    for (int i = 0; i < INTER; ++i)
        for (int j = i; j < INTER; ++j) {
            double e = (double)t1[i * INTER + j] - t2[i * INTER + j];
            num += e * e, den += (double)t1[i * INTER + j] * t1[i * INTER + j];
        }
    CHECK(sqrt(num / den) < 1e-5, "blocked partial vs ssyrk: %.3g", sqrt(num / den));
    qs_chan_stats_partial(xs, ROWS, INTER, a1, s1);
    CHECK(qs_chan_stats_partial_pool(NULL, xs, ROWS, INTER, a2, s2, &err) == QS_OK, "stats");
    CHECK(!memcmp(a1, a2, sizeof(float) * INTER) && !memcmp(s1, s2, sizeof(double) * INTER),
          "column-blocked statistics equal");

    for (int n = 1; n <= 4; ++n) {
        qs_pool *pool = NULL;
        CHECK(qs_pool_create(n, &pool, &err) == QS_OK, "pool %d: %s", n, err.msg);
        for (int rep = 0; rep < 2; ++rep) {
            run(pool, &w, &d, x0, fnorm, lm, tok, &got);
            CHECK(same(&got, &ref), "%d threads (repeat %d): outputs byte-identical to one thread",
                  n, rep);
        }
        qs_pool_free(pool);
    }
    outputs_free(&ref), outputs_free(&got);
    free(in_n), free(post_n), free((void *)w.q_w), free((void *)w.k_w), free((void *)w.v_w);
    free((void *)w.o_w), free((void *)w.gate_w), free((void *)w.up_w), free((void *)w.down_w);
    free(x0), free(fnorm), free(lm), free(tok), free(xr), free(xs);
    free(t1), free(t2), free(a1), free(a2), free(s1), free(s2);
    return qs_test_finish("test_model_threads");
}
