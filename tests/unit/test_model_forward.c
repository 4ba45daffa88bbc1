/* test_model_forward.c: the fp32 decoder (layer forward, hooks, full model, NLL) against the
 * independent numpy reference tests/ref/forward_ref.py on small random models:
 * Llama GQA, Mistral sliding window, Qwen2 q/k/v biases (tied embeddings), and odd shapes
 * (head_dim != hidden / heads, odd seqlen, llama3 and linear RoPE scaling, o/MLP biases).
 *
 * Usage: test_model_forward PATH/forward_ref.py   (python from env QS_PYTHON, default
 * /usr/bin/python3). Fails through the exit code.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "hessian.h"
#include "layer.h"

#define TOL_ABS 1e-4      /* layer outputs, hook inputs, logits (values are O(1)) */
#define TOL_NLL 1e-4      /* per-position NLL */
#define TOL_HESS_REL 1e-5 /* Hessian from hook inputs vs fp64 from the reference's inputs */

/* deterministic uniform [-1, 1) */
static uint64_t g_rng = 0x9E3779B97F4A7C15ULL;
static float urand(void) {
    g_rng ^= g_rng >> 12;
    g_rng ^= g_rng << 25;
    g_rng ^= g_rng >> 27;
    uint64_t r = g_rng * 0x2545F4914F6CDD1DULL;
    return (float)((double)(r >> 11) * (1.0 / 9007199254740992.0) * 2.0 - 1.0);
}

typedef struct tcase {
    const char *name;
    qs_model_dims d;
    int nseq, seqlen, tied;
} tcase;

/* All buffers of one random model (owned here). */
typedef struct tmodel {
    float *embed, *final_norm, *lm_head;   /* (V, H), (H), (V, H) */
    float *lw[8][16];                      /* per layer: the 16 qs_layer_weights fields */
    qs_layer_weights layers[8];
} tmodel;

static const char *k_field[16] = {"input_norm", "q_w",  "q_b",    "k_w",    "k_b",  "v_w",
                                  "v_b",        "o_w",  "o_b",    "post_norm", "gate_w",
                                  "gate_b",     "up_w", "up_b",   "down_w", "down_b"};

static float *rand_buf(int64_t n, float scale, float offset) {
    float *p = malloc((size_t)n * sizeof(float));
    if (!p) abort();
    for (int64_t i = 0; i < n; ++i) p[i] = offset + scale * urand();
    return p;
}

static int write_file(const char *dir, const char *name, const void *p, size_t bytes) {
    char path[1024];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t w = fwrite(p, 1, bytes, f);
    return (fclose(f) == 0 && w == bytes) ? 0 : -1;
}

static float *read_file(const char *dir, const char *name, size_t bytes) {
    char path[1024];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    float *p = malloc(bytes ? bytes : 1);
    if (p && fread(p, 1, bytes, f) != bytes) {
        free(p);
        p = NULL;
    }
    fclose(f);
    return p;
}

static void make_model(tmodel *m, const tcase *c, const char *dir) {
    const qs_model_dims *d = &c->d;
    const int64_t H = d->hidden, Ni = d->inter, V = d->vocab;
    const int64_t qd = d->heads * d->head_dim, kvd = d->kv_heads * d->head_dim;
    memset(m, 0, sizeof(*m));
    m->embed = rand_buf(V * H, 1.0f, 0.0f);
    m->final_norm = rand_buf(H, 0.2f, 1.0f);
    m->lm_head = c->tied ? m->embed : rand_buf(V * H, 2.0f / sqrtf((float)H), 0.0f);
    write_file(dir, "embed.f32", m->embed, (size_t)(V * H) * 4);
    write_file(dir, "final_norm.f32", m->final_norm, (size_t)H * 4);
    if (!c->tied) write_file(dir, "lm_head.f32", m->lm_head, (size_t)(V * H) * 4);
    for (int64_t l = 0; l < d->nlayers; ++l) {
        /* sizes of the 16 fields, in k_field order; 0 = absent */
        int64_t n[16] = {H,
                         qd * H, d->qkv_bias ? qd : 0,
                         kvd * H, d->qkv_bias ? kvd : 0,
                         kvd * H, d->qkv_bias ? kvd : 0,
                         H * qd, d->o_bias ? H : 0,
                         H,
                         Ni * H, d->mlp_bias ? Ni : 0,
                         Ni * H, d->mlp_bias ? Ni : 0,
                         H * Ni, d->mlp_bias ? H : 0};
        int64_t fan_in[16] = {0, H, 0, H, 0, H, 0, qd, 0, 0, H, 0, H, 0, Ni, 0};
        for (int f = 0; f < 16; ++f) {
            if (!n[f]) continue;
            float scale, offset = 0.0f;
            if (f == 0 || f == 9) { /* norms */
                scale = 0.2f;
                offset = 1.0f;
            } else if (fan_in[f]) { /* weights; q/k larger so attention is not uniform */
                scale = (f == 1 || f == 3 ? 3.0f : 1.5f) / sqrtf((float)fan_in[f]);
            } else { /* biases */
                scale = 0.2f;
            }
            m->lw[l][f] = rand_buf(n[f], scale, offset);
            char name[64];
            snprintf(name, sizeof(name), "layer%lld.%s.f32", (long long)l, k_field[f]);
            write_file(dir, name, m->lw[l][f], (size_t)n[f] * 4);
        }
        qs_layer_weights *w = &m->layers[l];
        float **p = m->lw[l];
        w->input_norm = p[0];
        w->q_w = p[1];
        w->q_b = p[2];
        w->k_w = p[3];
        w->k_b = p[4];
        w->v_w = p[5];
        w->v_b = p[6];
        w->o_w = p[7];
        w->o_b = p[8];
        w->post_norm = p[9];
        w->gate_w = p[10];
        w->gate_b = p[11];
        w->up_w = p[12];
        w->up_b = p[13];
        w->down_w = p[14];
        w->down_b = p[15];
    }
}

static void free_model(tmodel *m, const tcase *c) {
    free(m->embed);
    free(m->final_norm);
    if (!c->tied) free(m->lm_head);
    for (int l = 0; l < 8; ++l)
        for (int f = 0; f < 16; ++f) free(m->lw[l][f]);
}

static void write_spec(const tcase *c, const char *dir) {
    const qs_model_dims *d = &c->d;
    const char *rt = d->rope.scaling == QS_ROPE_SCALING_LINEAR   ? "linear"
                     : d->rope.scaling == QS_ROPE_SCALING_LLAMA3 ? "llama3"
                                                                 : "default";
    char path[1024], wins[256] = "";
    for (int64_t l = 0; l < d->nlayers; ++l) {
        size_t n = strlen(wins);
        snprintf(wins + n, sizeof(wins) - n, "%s%lld", l ? ", " : "",
                 (long long)d->layer_window[l]);
    }
    snprintf(path, sizeof(path), "%s/spec.json", dir);
    FILE *f = fopen(path, "w");
    if (!f) return;
    fprintf(f,
            "{\"hidden\": %lld, \"inter\": %lld, \"heads\": %lld, \"kv_heads\": %lld, "
            "\"head_dim\": %lld, \"vocab\": %lld, \"nlayers\": %lld, \"eps\": %.17g, "
            "\"layer_windows\": [%s], \"qkv_bias\": %d, \"o_bias\": %d, \"mlp_bias\": %d, "
            "\"tied\": %d, \"nseq\": %d, \"seqlen\": %d, \"rope\": {\"type\": \"%s\", "
            "\"theta\": %.17g, \"factor\": %.17g, \"low_freq_factor\": %.17g, "
            "\"high_freq_factor\": %.17g, \"original_max_position_embeddings\": %lld}}\n",
            (long long)d->hidden, (long long)d->inter, (long long)d->heads,
            (long long)d->kv_heads, (long long)d->head_dim, (long long)d->vocab,
            (long long)d->nlayers, d->eps, wins, d->qkv_bias, d->o_bias,
            d->mlp_bias, c->tied, c->nseq, c->seqlen, rt, d->rope.theta, d->rope.factor,
            d->rope.low_freq_factor, d->rope.high_freq_factor,
            (long long)d->rope.original_max_position);
    fclose(f);
}

/* Hook context: copies each group's input and accumulates its Hessian like calibrate. */
typedef struct hook_ctx {
    float *copy[QS_GROUP_COUNT];  /* (rows, d_in) */
    int64_t rows[QS_GROUP_COUNT], din[QS_GROUP_COUNT];
    double *hacc[QS_GROUP_COUNT]; /* (d_in, d_in) */
    int calls;
} hook_ctx;

static qs_status hook_fn(void *vctx, qs_linear_group g, const float *x, int64_t rows,
                         int64_t d_in, qs_err *err) {
    hook_ctx *h = vctx;
    if (h->calls != (int)g)
        return QS_FAIL(err, QS_ERR_INTERNAL, "hook: group %d arrived as call %d", (int)g,
                       h->calls);
    h->calls++;
    h->rows[g] = rows;
    h->din[g] = d_in;
    h->copy[g] = malloc((size_t)(rows * d_in) * sizeof(float));
    h->hacc[g] = calloc((size_t)(d_in * d_in), sizeof(double));
    float *tile = malloc((size_t)(d_in * d_in) * sizeof(float));
    if (!h->copy[g] || !h->hacc[g] || !tile) {
        free(tile);
        return QS_FAIL(err, QS_ERR_RUNTIME, "hook: out of memory");
    }
    memcpy(h->copy[g], x, (size_t)(rows * d_in) * sizeof(float));
    /* two chunk partials (first half, rest) added in order, as calibrate would */
    int64_t r0 = rows / 2;
    qs_hess_partial(x, r0, d_in, tile);
    qs_hess_add(h->hacc[g], tile, d_in);
    qs_hess_partial(x + r0 * d_in, rows - r0, d_in, tile);
    qs_hess_add(h->hacc[g], tile, d_in);
    qs_hess_finalize(h->hacc[g], d_in, rows);
    free(tile);
    return QS_OK;
}

static void run_case(const tcase *c, const char *script, const char *python) {
    const qs_model_dims *d = &c->d;
    const int64_t rows = (int64_t)c->nseq * c->seqlen, H = d->hidden, V = d->vocab;
    char dir[512];
    tmodel m;
    hook_ctx hk;
    memset(&hk, 0, sizeof(hk));
    qs_model_workspace ws;
    memset(&ws, 0, sizeof(ws));
    qs_err err = {0};
    float *x_in = NULL, *x = NULL, *x2 = NULL, *logits = NULL, *ref = NULL;
    double *nll = NULL, *ref_nll = NULL;
    uint32_t *tokens = NULL;

    qs_test_tmpdir(dir, sizeof(dir), "test_model");
    make_model(&m, c, dir);
    write_spec(c, dir);
    x_in = rand_buf(rows * H, 1.0f, 0.0f);
    tokens = malloc((size_t)rows * sizeof(uint32_t));
    for (int64_t i = 0; i < rows; ++i) tokens[i] = (uint32_t)((urand() + 1.0f) * 0.5f * (float)V) % (uint32_t)V;
    write_file(dir, "x_in.f32", x_in, (size_t)(rows * H) * 4);
    write_file(dir, "tokens.u32", tokens, (size_t)rows * 4);

    char cmd[2048];
    snprintf(cmd, sizeof(cmd), "'%s' '%s' '%s'", python, script, dir);
    int rc = system(cmd);
    CHECK(rc == 0, "%s: reference failed (%d): %s", c->name, rc, cmd);
    if (rc != 0) goto done;

    /* layer 0 with hooks */
    qs_status st = qs_model_workspace_init(&ws, d, c->nseq, c->seqlen, &err);
    CHECK(st == QS_OK, "%s: workspace: %s", c->name, err.msg);
    if (st != QS_OK) goto done;
    x = malloc((size_t)(rows * H) * sizeof(float));
    x2 = malloc((size_t)(rows * H) * sizeof(float));
    memcpy(x, x_in, (size_t)(rows * H) * sizeof(float));
    memcpy(x2, x_in, (size_t)(rows * H) * sizeof(float));
    qs_layer_hooks hooks = {hook_fn, &hk};
    st = qs_layer_forward(&m.layers[0], d, 0, x, c->nseq, c->seqlen, &ws.layer, &hooks, &err);
    CHECK(st == QS_OK && hk.calls == 4, "%s: layer forward: %s (%d hook calls)", c->name,
          err.msg, hk.calls);
    ref = read_file(dir, "ref_layer_out.f32", (size_t)(rows * H) * 4);
    CHECK(ref != NULL, "%s: no ref_layer_out", c->name);
    if (ref) {
        double e = qs_test_max_abs_diff(x, ref, rows * H);
        CHECK(e <= TOL_ABS, "%s: layer output max abs err %.3g", c->name, e);
        printf("%-12s layer out   max abs err %.3g\n", c->name, e);
    }
    free(ref);
    ref = NULL;

    /* determinism: same chunk again (no hooks) gives the same bits */
    st = qs_layer_forward(&m.layers[0], d, 0, x2, c->nseq, c->seqlen, &ws.layer, NULL, &err);
    CHECK(st == QS_OK && memcmp(x, x2, (size_t)(rows * H) * sizeof(float)) == 0,
          "%s: layer forward not bitwise repeatable", c->name);

    /* hook inputs and the Hessians accumulated from them */
    const int64_t din[4] = {H, d->heads * d->head_dim, H, d->inter};
    for (int g = 0; g < 4 && hk.calls == 4; ++g) {
        char name[64];
        snprintf(name, sizeof(name), "ref_hook_%d.f32", g);
        CHECK(hk.rows[g] == rows && hk.din[g] == din[g], "%s: hook %d shape (%lld, %lld)",
              c->name, g, (long long)hk.rows[g], (long long)hk.din[g]);
        ref = read_file(dir, name, (size_t)(rows * din[g]) * 4);
        CHECK(ref != NULL, "%s: no %s", c->name, name);
        if (!ref) continue;
        double e = qs_test_max_abs_diff(hk.copy[g], ref, rows * din[g]);
        CHECK(e <= TOL_ABS, "%s: hook %d input max abs err %.3g", c->name, g, e);
        /* H_ref = 2/N X^T X in f64 from the reference's inputs */
        double num = 0.0, den = 0.0;
        for (int64_t i = 0; i < din[g]; ++i)
            for (int64_t j = 0; j < din[g]; ++j) {
                double s = 0.0;
                for (int64_t r = 0; r < rows; ++r)
                    s += (double)ref[r * din[g] + i] * (double)ref[r * din[g] + j];
                s *= 2.0 / (double)rows;
                double diff = hk.hacc[g][i * din[g] + j] - s;
                num += diff * diff;
                den += s * s;
            }
        double rel = sqrt(num / den);
        CHECK(rel <= TOL_HESS_REL, "%s: hook %d Hessian rel err %.3g", c->name, g, rel);
        printf("%-12s hook %d      max abs err %.3g, Hessian rel err %.3g\n", c->name, g, e,
               rel);
        free(ref);
        ref = NULL;
    }

    /* full model */
    qs_model_weights mw = {m.embed, m.layers, m.final_norm, m.lm_head};
    logits = malloc((size_t)(rows * V) * sizeof(float));
    nll = malloc((size_t)(c->nseq * (c->seqlen - 1)) * sizeof(double));
    st = qs_model_forward(&mw, d, tokens, c->nseq, c->seqlen, &ws, logits, nll, &err);
    CHECK(st == QS_OK, "%s: model forward: %s", c->name, err.msg);
    ref = read_file(dir, "ref_logits.f32", (size_t)(rows * V) * 4);
    ref_nll = (double *)read_file(dir, "ref_nll.f64", (size_t)(c->nseq * (c->seqlen - 1)) * 8);
    CHECK(ref && ref_nll, "%s: no ref logits / nll", c->name);
    if (st == QS_OK && ref && ref_nll) {
        double e = qs_test_max_abs_diff(logits, ref, rows * V);
        CHECK(e <= TOL_ABS, "%s: logits max abs err %.3g", c->name, e);
        double en = 0.0;
        for (int64_t i = 0; i < (int64_t)c->nseq * (c->seqlen - 1); ++i) {
            double t = fabs(nll[i] - ref_nll[i]);
            if (!(t <= en)) en = t;
        }
        CHECK(en <= TOL_NLL, "%s: nll max abs err %.3g", c->name, en);
        printf("%-12s logits      max abs err %.3g, nll max abs err %.3g\n", c->name, e, en);
    }
    /* logits = NULL path (tile) gives the same NLL bits */
    double *nll2 = malloc((size_t)(c->nseq * (c->seqlen - 1)) * sizeof(double));
    st = qs_model_forward(&mw, d, tokens, c->nseq, c->seqlen, &ws, NULL, nll2, &err);
    CHECK(st == QS_OK && memcmp(nll, nll2, (size_t)(c->nseq * (c->seqlen - 1)) * 8) == 0,
          "%s: nll differs without logits output", c->name);
    free(nll2);

done:
    for (int g = 0; g < QS_GROUP_COUNT; ++g) {
        free(hk.copy[g]);
        free(hk.hacc[g]);
    }
    qs_model_workspace_free(&ws);
    free_model(&m, c);
    free(x_in);
    free(x);
    free(x2);
    free(logits);
    free(nll);
    free(ref);
    free(ref_nll);
    free(tokens);
    qs_test_rm_rf(dir);
}

static qs_model_dims base_dims(int64_t H, int64_t Ni, int64_t heads, int64_t kv, int64_t hd,
                               int64_t V, int64_t L) {
    qs_model_dims d;
    memset(&d, 0, sizeof(d));
    d.hidden = H;
    d.inter = Ni;
    d.heads = heads;
    d.kv_heads = kv;
    d.head_dim = hd;
    d.vocab = V;
    d.nlayers = L;
    d.eps = 1e-5;
    d.rope.scaling = QS_ROPE_SCALING_NONE;
    d.rope.theta = 10000.0;
    return d;
}

/* Error paths: bad token ids and bad dims are QS_ERR_INPUT with a message. */
static void test_errors(void) {
    qs_err err = {0};
    qs_model_dims d = base_dims(16, 32, 4, 3, 4, 10, 1);
    CHECK(qs_model_dims_check(&d, &err) == QS_ERR_INPUT && strstr(err.msg, "num_key_value_heads"),
          "heads %% kv_heads not rejected: %s", err.msg);
    qs_err_clear(&err);
    d = base_dims(16, 32, 4, 2, 5, 10, 1);
    CHECK(qs_model_dims_check(&d, &err) == QS_ERR_INPUT && strstr(err.msg, "head_dim"),
          "odd head_dim not rejected: %s", err.msg);
    qs_err_clear(&err);
    float embed[4 * 2] = {0};
    float x[2 * 2];
    uint32_t tok[2] = {1, 4};
    CHECK(qs_embed_gather(embed, 4, 2, tok, 2, x, &err) == QS_ERR_INPUT &&
              strstr(err.msg, "token id 4"),
          "out-of-range token not rejected: %s", err.msg);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s PATH/forward_ref.py\n", argv[0]);
        return 2;
    }
    const char *python = getenv("QS_PYTHON");
    if (!python || !*python) python = "/usr/bin/python3";
    if (access(python, X_OK) != 0) {
        fprintf(stderr, "python %s not found\n", python);
        return 1;
    }
    test_errors();

    tcase cases[5];
    memset(cases, 0, sizeof(cases));
    /* Llama with GQA */
    cases[0].name = "llama_gqa";
    cases[0].d = base_dims(64, 160, 4, 2, 16, 97, 2);
    cases[0].nseq = 2;
    cases[0].seqlen = 37;
    /* Mistral: sliding window smaller than seqlen */
    cases[1].name = "mistral_swa";
    cases[1].d = base_dims(64, 128, 8, 2, 8, 61, 2);
    cases[1].d.rope.theta = 1e6;
    cases[1].d.layer_window[0] = cases[1].d.layer_window[1] = 8;
    cases[1].nseq = 2;
    cases[1].seqlen = 41;
    /* Qwen2: q/k/v biases, tied embeddings, eps 1e-6; layer 0 full, layer 1 window 5 */
    cases[2].name = "qwen2_bias";
    cases[2].d = base_dims(48, 136, 6, 2, 8, 83, 2);
    cases[2].d.rope.theta = 1e6;
    cases[2].d.eps = 1e-6;
    cases[2].d.qkv_bias = 1;
    cases[2].tied = 1;
    cases[2].d.layer_window[1] = 5;
    cases[2].nseq = 1;
    cases[2].seqlen = 33;
    /* odd: head_dim 24 != 80 / 4, llama3 RoPE with all three frequency bands, o/MLP biases */
    cases[3].name = "odd_llama3";
    cases[3].d = base_dims(80, 216, 4, 2, 24, 101, 2);
    cases[3].d.rope.scaling = QS_ROPE_SCALING_LLAMA3;
    cases[3].d.rope.factor = 8.0;
    cases[3].d.rope.low_freq_factor = 1.0;
    cases[3].d.rope.high_freq_factor = 4.0;
    cases[3].d.rope.original_max_position = 64;
    cases[3].d.o_bias = 1;
    cases[3].d.mlp_bias = 1;
    cases[3].nseq = 3;
    cases[3].seqlen = 53;
    /* odd: linear RoPE scaling, kv_heads 1, head_dim 20 != 32 / 2, attention biases */
    cases[4].name = "linear_rope";
    cases[4].d = base_dims(32, 88, 2, 1, 20, 71, 3);
    cases[4].d.rope.scaling = QS_ROPE_SCALING_LINEAR;
    cases[4].d.rope.factor = 4.0;
    cases[4].d.qkv_bias = 1;
    cases[4].d.o_bias = 1;
    cases[4].nseq = 1;
    cases[4].seqlen = 67;

    for (int i = 0; i < 5; ++i) run_case(&cases[i], argv[1], python);
    return qs_test_finish("test_model_forward");
}
