/* test_model_kernels.c: properties of the single kernels that the end-to-end reference test
 * cannot pin down by itself: RoPE frequency bands (llama3, linear) against closed forms in
 * double, RoPE as a rotation, the GQA head -> kv head mapping and the sliding window edge
 * in attention, RMSNorm, SwiGLU and NLL on known values, contract checks of the layer.
 * Fails through the exit code.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "kernels.h"
#include "layer.h"

#define TOL_REL_F32 2e-6 /* f32 op-by-op vs double closed form */

static void test_rope_freqs(void) {
    enum { HD = 128, HALF = HD / 2 };
    float def[HALF], lin[HALF], l3[HALF];
    qs_rope_params p;
    memset(&p, 0, sizeof(p));
    p.theta = 500000.0;
    qs_rope_inv_freq(&p, HD, def);
    for (int i = 0; i < HALF; ++i) {
        double want = 1.0 / pow(500000.0, (double)(2 * i) / HD);
        CHECK_NEAR(def[i], want, TOL_REL_F32 * want, "default inv_freq[%d]", i);
    }
    p.scaling = QS_ROPE_SCALING_LINEAR;
    p.factor = 4.0;
    qs_rope_inv_freq(&p, HD, lin);
    for (int i = 0; i < HALF; ++i)
        CHECK(lin[i] == def[i] / 4.0f, "linear inv_freq[%d] not default / factor", i);

    /* Llama 3.1 8B parameters: factor 8, low 1, high 4, original 8192 */
    p.scaling = QS_ROPE_SCALING_LLAMA3;
    p.factor = 8.0;
    p.low_freq_factor = 1.0;
    p.high_freq_factor = 4.0;
    p.original_max_position = 8192;
    qs_rope_inv_freq(&p, HD, l3);
    int n_high = 0, n_mid = 0, n_low = 0;
    for (int i = 0; i < HALF; ++i) {
        double f = 1.0 / pow(500000.0, (double)(2 * i) / HD);
        double wl = 2.0 * 3.14159265358979323846 / f;
        double want;
        if (wl < 8192.0 / 4.0) {
            want = f;
            n_high++;
        } else if (wl > 8192.0 / 1.0) {
            want = f / 8.0;
            n_low++;
        } else {
            double s = (8192.0 / wl - 1.0) / (4.0 - 1.0);
            want = (1.0 - s) * f / 8.0 + s * f;
            n_mid++;
        }
        CHECK_NEAR(l3[i], want, 4 * TOL_REL_F32 * want, "llama3 inv_freq[%d]", i);
    }
    CHECK(n_high > 0 && n_mid > 0 && n_low > 0, "llama3 bands not all exercised (%d %d %d)",
          n_high, n_mid, n_low);
}

static void test_rope_apply(void) {
    enum { HD = 16, HALF = HD / 2, T = 9, NH = 3 };
    float inv[HALF], c[T * HALF], s[T * HALF];
    qs_rope_params p;
    memset(&p, 0, sizeof(p));
    p.theta = 10000.0;
    qs_rope_inv_freq(&p, HD, inv);
    qs_rope_table(inv, HALF, T, c, s);
    float x[T * NH * HD], x0[T * NH * HD];
    for (int i = 0; i < T * NH * HD; ++i) x0[i] = x[i] = (float)sin(0.37 * i + 0.1);
    qs_rope_apply(x, 1, T, NH, HD, c, s);
    /* position 0 is the identity; every (i, i + half) pair keeps its norm */
    CHECK(memcmp(x, x0, NH * HD * sizeof(float)) == 0, "RoPE at position 0 is not identity");
    double worst = 0.0;
    for (int t = 0; t < T; ++t)
        for (int h = 0; h < NH; ++h)
            for (int i = 0; i < HALF; ++i) {
                const float *a = x + (t * NH + h) * HD, *b = x0 + (t * NH + h) * HD;
                double n1 = (double)a[i] * a[i] + (double)a[i + HALF] * a[i + HALF];
                double n0 = (double)b[i] * b[i] + (double)b[i + HALF] * b[i + HALF];
                double e = fabs(n1 - n0) / (n0 + 1e-30);
                if (e > worst) worst = e;
            }
    CHECK(worst <= 1e-6, "RoPE changes pair norms (rel %.3g)", worst);
    /* position 1, pair 0: angle inv[0] = 1 */
    const float *r1 = x + NH * HD, *o1 = x0 + NH * HD;
    double want = o1[0] * cos(1.0) - o1[HALF] * sin(1.0);
    CHECK_NEAR(r1[0], want, 1e-6, "RoPE rotate-half sign/convention");
}

static void test_attention(void) {
    enum { T = 7, H = 4, KV = 2, HD = 4 };
    float q[T * H * HD], k[T * KV * HD], v[T * KV * HD], sc[T * T];
    for (int i = 0; i < T * H * HD; ++i) q[i] = (float)cos(0.3 * i);
    for (int i = 0; i < T * KV * HD; ++i) {
        k[i] = (float)sin(0.7 * i);
        v[i] = (float)(i % 11) - 5.0f;
    }
    /* window 1: each position sees only itself -> output = own v of kv head h / 2, exactly */
    qs_attention(q, k, v, 1, T, H, KV, HD, 1, sc);
    int ok = 1;
    for (int t = 0; t < T; ++t)
        for (int h = 0; h < H; ++h)
            for (int e = 0; e < HD; ++e)
                if (q[(t * H + h) * HD + e] != v[(t * KV + h / 2) * HD + e]) ok = 0;
    CHECK(ok, "attention with window 1 is not the own value row (GQA mapping)");

    /* window 3 vs full causal differ only from position 3 on */
    float qa[T * H * HD], qb[T * H * HD];
    for (int i = 0; i < T * H * HD; ++i) qa[i] = qb[i] = (float)cos(0.3 * i);
    qs_attention(qa, k, v, 1, T, H, KV, HD, 3, sc);
    qs_attention(qb, k, v, 1, T, H, KV, HD, 0, sc);
    CHECK(memcmp(qa, qb, 3 * H * HD * sizeof(float)) == 0,
          "window 3 changed positions < 3");
    CHECK(memcmp(qa + 3 * H * HD, qb + 3 * H * HD, (T - 3) * H * HD * sizeof(float)) != 0,
          "window 3 did not change positions >= 3");
    /* position 0 of full causal attends to itself only */
    ok = 1;
    for (int h = 0; h < H; ++h)
        for (int e = 0; e < HD; ++e)
            if (qb[h * HD + e] != v[(h / 2) * HD + e]) ok = 0;
    CHECK(ok, "causal position 0 is not its own value row");
}

static void test_small_kernels(void) {
    float x[2 * 4] = {2, 2, 2, 2, 1, -1, 1, -1}, w[4] = {1, 2, 3, 4}, y[8];
    qs_rmsnorm(x, w, y, 2, 4, 1e-5f);
    double r0 = 2.0 / sqrt(4.0 + 1e-5), r1 = 1.0 / sqrt(1.0 + 1e-5);
    CHECK(fabs(y[3] - 4 * r0) < 1e-6 && fabs(y[5] + 2 * r1) < 1e-6, "rmsnorm values");

    float g[3] = {0.0f, 1.0f, -30.0f}, u[3] = {5.0f, 2.0f, 1.0f};
    qs_swiglu(g, u, 3);
    CHECK(g[0] == 0.0f && fabs(g[1] - 2.0 / (1.0 + exp(-1.0))) < 1e-6 && fabs(g[2]) < 1e-10,
          "swiglu values");

    float lg[5] = {0, 0, 0, 0, 0};
    CHECK(fabs(qs_nll_row(lg, 5, 3) - log(5.0)) < 1e-12, "nll of uniform logits");
    float lg2[3] = {1000.0f, 0.0f, 0.0f};
    CHECK(fabs(qs_nll_row(lg2, 3, 0)) < 1e-12 && fabs(qs_nll_row(lg2, 3, 1) - 1000.0) < 1e-9,
          "nll not stable for large logits");
}

static void test_contracts(void) {
    qs_model_dims d;
    memset(&d, 0, sizeof(d));
    d.hidden = 8;
    d.inter = 16;
    d.heads = 2;
    d.kv_heads = 1;
    d.head_dim = 4;
    d.vocab = 10;
    d.eps = 1e-5;
    d.rope.theta = 10000.0;
    qs_layer_workspace ws;
    qs_err err = {0};
    CHECK(qs_layer_workspace_init(&ws, &d, 2, 5, &err) == QS_OK, "workspace: %s", err.msg);
    float wbuf[16 * 8] = {0}, xb[3 * 6 * 8] = {0};
    qs_layer_weights w = {wbuf, wbuf, NULL, wbuf, NULL, wbuf, NULL, wbuf, NULL,
                          wbuf, wbuf, NULL, wbuf, NULL, wbuf, NULL};
    /* seqlen beyond the workspace is an internal error, not a crash */
    CHECK(qs_layer_forward(&w, &d, 0, xb, 1, 6, &ws, NULL, &err) == QS_ERR_INTERNAL,
          "oversized chunk accepted");
    qs_err_clear(&err);
    /* bias flag without a bias pointer */
    d.qkv_bias = 1;
    CHECK(qs_layer_forward(&w, &d, 0, xb, 1, 5, &ws, NULL, &err) == QS_ERR_INTERNAL,
          "missing bias accepted");
    d.qkv_bias = 0;
    qs_err_clear(&err);
    CHECK(qs_layer_forward(&w, &d, 0, xb, 2, 5, &ws, NULL, &err) == QS_OK, "valid call: %s",
          err.msg);
    qs_layer_workspace_free(&ws);
    qs_layer_workspace_free(&ws); /* safe twice (zeroed) */

    /* out-of-range target token in the head */
    float x[2 * 8] = {0}, lt[2 * 10];
    double nll[1];
    uint32_t tok[2] = {1, 10};
    float fn[8] = {1, 1, 1, 1, 1, 1, 1, 1}, lm[10 * 8] = {0};
    qs_err_clear(&err);
    CHECK(qs_model_head(fn, lm, &d, x, tok, 1, 2, lt, NULL, nll, NULL, &err) == QS_ERR_INPUT &&
              strstr(err.msg, "token id 10"),
          "out-of-range target accepted: %s", err.msg);
}

int main(void) {
    test_rope_freqs();
    test_rope_apply();
    test_attention();
    test_small_kernels();
    test_contracts();
    return qs_test_finish("test_model_kernels");
}
