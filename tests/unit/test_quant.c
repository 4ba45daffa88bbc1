/* test_quant.c: shared quantization numerics and RTN: names, the group rule,
 * RTN against its scalar twin, dequantization through g_idx, edge cases (all-zero groups,
 * constant rows, NaN/Inf weights, partial last group, zero_min1). Fails via exit code. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "quant.h"

static uint64_t g_rng = 0x9e3779b97f4a7c15ull;
static float nrand(void) { return qs_test_nrand(&g_rng); }

typedef struct bufs {
    uint8_t *codes;
    uint16_t *scales;
    int32_t *zeros;
    float *wq;
    int32_t *g_idx;
} bufs;

static void bufs_alloc(bufs *b, int64_t rows, int64_t d_in, int64_t ng) {
    b->codes = calloc((size_t)(rows * d_in), 1);
    b->scales = calloc((size_t)(rows * ng), sizeof(uint16_t));
    b->zeros = calloc((size_t)(rows * ng), sizeof(int32_t));
    b->wq = calloc((size_t)(rows * d_in), sizeof(float));
    b->g_idx = calloc((size_t)d_in, sizeof(int32_t));
}
static void bufs_free(bufs *b) {
    free(b->codes);
    free(b->scales);
    free(b->zeros);
    free(b->wq);
    free(b->g_idx);
}
static qs_quant_out as_out(bufs *b) {
    qs_quant_out o = {b->codes, b->scales, b->zeros, b->wq, NULL};
    return o;
}

static void test_params(void) {
    qs_quant_params p;
    qs_quant_params_default(&p);
    char name[QS_QUANT_NAME_MAX];
    CHECK(strcmp(qs_quant_name(&p, name, sizeof name), "w4g128") == 0, "%s", name);
    p.bits = 3;
    p.group_size = -1;
    CHECK(strcmp(qs_quant_name(&p, name, sizeof name), "w3g-1") == 0, "%s", name);
    qs_err e = {0};
    CHECK(qs_quant_params_check(&p, &e) == QS_OK, "%s", e.msg);
    p.bits = 9;
    qs_err_clear(&e);
    CHECK(qs_quant_params_check(&p, &e) == QS_ERR_INPUT && strstr(e.msg, "quant.bits"), "%s", e.msg);
    p.bits = 4;
    p.group_size = 0;
    qs_err_clear(&e);
    CHECK(qs_quant_params_check(&p, &e) == QS_ERR_INPUT && strstr(e.msg, "group_size"), "%s", e.msg);
    CHECK(qs_quant_ngroups(300, 128) == 3, "ngroups");
    CHECK(qs_quant_ngroups(256, 128) == 2, "ngroups");
    CHECK(qs_quant_ngroups(300, -1) == 1, "ngroups -1");
}

static void test_group_rule(void) {
    qs_quant_params p;
    qs_quant_params_default(&p);
    p.zero_min1 = 0;
    uint16_t s;
    int32_t z;
    /* asym: [-1, 2] at 4 bits: scale 0.2, zero round(1/0.2) = 5 */
    CHECK(qs_quant_group_params(&p, -1.0f, 2.0f, &s, &z) == 0, "asym");
    CHECK(s == qs_f32_to_f16(0.2f) && z == 5, "asym scale %g zero %d",
          (double)qs_f16_to_f32(s), z);
    /* min/max are clamped to include 0 */
    CHECK(qs_quant_group_params(&p, 1.0f, 3.0f, &s, &z) == 0 && z == 0 &&
              s == qs_f32_to_f16(0.2f), "min clamp: zero %d", z);
    /* sym: scale = 2 max|w| / maxq, zero 8 */
    p.sym = 1;
    CHECK(qs_quant_group_params(&p, -3.0f, 1.0f, &s, &z) == 0 && z == 8 &&
              s == qs_f32_to_f16(0.4f), "sym zero %d", z);
    /* zero_min1: all-positive group keeps zero 1 and covers max */
    p.sym = 0;
    p.zero_min1 = 1;
    CHECK(qs_quant_group_params(&p, 0.5f, 2.8f, &s, &z) == 0 && z == 1, "zero_min1 zero %d", z);
    CHECK(qs_f16_to_f32(s) * (15 - 1) >= 2.8f * 0.999f, "zero_min1 scale %g too small",
          (double)qs_f16_to_f32(s));
    /* all-zero group: scale 0 */
    CHECK(qs_quant_group_params(&p, 0.0f, 0.0f, &s, &z) == 0 && s == 0, "zero group");
    /* overflowing scale */
    CHECK(qs_quant_group_params(&p, -1e9f, 1e9f, &s, &z) != 0, "overflow not reported");
}

static void check_rtn_case(int bits, int gs, int sym, int zero_min1, int64_t rows, int64_t d_in) {
    qs_quant_params p;
    qs_quant_params_default(&p);
    p.bits = bits;
    p.group_size = gs;
    p.sym = sym;
    p.zero_min1 = zero_min1;
    int64_t ng = qs_quant_ngroups(d_in, gs);
    float *W = malloc((size_t)(rows * d_in) * sizeof(float));
    float *wq2 = malloc((size_t)(rows * d_in) * sizeof(float));
    for (int64_t i = 0; i < rows * d_in; ++i) W[i] = nrand() * (i % 7 == 0 ? 3.0f : 0.5f);
    bufs a, b;
    bufs_alloc(&a, rows, d_in, ng);
    bufs_alloc(&b, rows, d_in, ng);
    qs_quant_out oa = as_out(&a), ob = as_out(&b);
    qs_err e = {0};
    CHECK(qs_rtn_quantize_rows(&p, W, rows, d_in, &oa, &e) == QS_OK, "%s", e.msg);
    CHECK(qs_rtn_quantize_rows_ref(&p, W, rows, d_in, &ob, &e) == QS_OK, "%s", e.msg);
    CHECK(memcmp(a.codes, b.codes, (size_t)(rows * d_in)) == 0, "codes differ b%d g%d", bits, gs);
    CHECK(memcmp(a.scales, b.scales, (size_t)(rows * ng) * 2) == 0, "scales differ");
    CHECK(memcmp(a.zeros, b.zeros, (size_t)(rows * ng) * 4) == 0, "zeros differ");
    CHECK(memcmp(a.wq, b.wq, (size_t)(rows * d_in) * 4) == 0, "wq differ");
    qs_quant_g_idx_natural(d_in, gs, a.g_idx);
    qs_quant_dequant_rows(a.codes, a.scales, a.zeros, a.g_idx, rows, d_in, ng, wq2);
    CHECK(memcmp(a.wq, wq2, (size_t)(rows * d_in) * 4) == 0, "dequant through g_idx differs");
    int maxq = (1 << bits) - 1, bad = 0;
    for (int64_t r = 0; r < rows; ++r)
        for (int64_t j = 0; j < d_in; ++j) {
            int64_t g = gs < 1 ? 0 : j / gs;
            float s = qs_f16_to_f32(a.scales[r * ng + g]);
            int32_t z = a.zeros[r * ng + g];
            if (a.codes[r * d_in + j] > maxq || z < (zero_min1 && !sym ? 1 : 0) || z > maxq) bad++;
            /* inside the representable range the error is at most half a step */
            float w = W[r * d_in + j], lo = s * (float)(0 - z), hi = s * (float)(maxq - z);
            if (w >= lo && w <= hi && fabsf(w - a.wq[r * d_in + j]) > 0.5f * s * 1.001f) bad++;
        }
    CHECK(bad == 0, "%d codes/zeros out of range or errors above half a step (b%d g%d sym%d)",
          bad, bits, gs, sym);
    bufs_free(&a);
    bufs_free(&b);
    free(W);
    free(wq2);
}

static void test_rtn(void) {
    const int gss[] = {-1, 32, 64, 128, 100};
    for (int bits = 2; bits <= 8; ++bits)
        for (size_t gi = 0; gi < sizeof gss / sizeof gss[0]; ++gi)
            for (int sym = 0; sym <= 1; ++sym)
                for (int zm = 0; zm <= 1; ++zm) check_rtn_case(bits, gss[gi], sym, zm, 9, 300);
}

static void test_edge_rows(void) {
    const int64_t rows = 4, d_in = 70, gs = 32, ng = 3;
    float W[4 * 70];
    for (int64_t j = 0; j < d_in; ++j) {
        W[0 * d_in + j] = 0.0f;                      /* all-zero row */
        W[1 * d_in + j] = 0.5f;                      /* constant positive */
        W[2 * d_in + j] = -0.25f;                    /* constant negative */
        W[3 * d_in + j] = j < 32 ? 0.0f : nrand();   /* one all-zero group */
    }
    for (int sym = 0; sym <= 1; ++sym)
        for (int zm = 0; zm <= 1; ++zm) {
            qs_quant_params p;
            qs_quant_params_default(&p);
            p.group_size = (int)gs;
            p.sym = sym;
            p.zero_min1 = zm;
            bufs a;
            bufs_alloc(&a, rows, d_in, ng);
            qs_quant_out o = as_out(&a);
            qs_err e = {0};
            CHECK(qs_rtn_quantize_rows(&p, W, rows, d_in, &o, &e) == QS_OK, "%s", e.msg);
            int bad = 0;
            for (int64_t i = 0; i < rows * d_in; ++i)
                if (!isfinite(a.wq[i])) bad++;
            CHECK(bad == 0, "non-finite dequantized values");
            for (int64_t j = 0; j < d_in; ++j) {
                CHECK(a.codes[j] == 0 && a.wq[j] == 0.0f, "zero row code %d", a.codes[j]);
                /* asym represents a constant exactly up to fp16 rounding of the scale;
                 * sym clips at (maxq-1)/2 steps: within one step */
                float tol1 = sym ? 0.5f * 2.0f / 15.0f * 1.01f : 0.5f * 2e-3f;
                float tol2 = sym ? 0.25f * 2.0f / 15.0f * 1.01f : 0.25f * 2e-3f;
                CHECK(fabsf(a.wq[d_in + j] - 0.5f) <= tol1, "constant row %g",
                      (double)a.wq[d_in + j]);
                CHECK(fabsf(a.wq[2 * d_in + j] + 0.25f) <= tol2, "constant row %g",
                      (double)a.wq[2 * d_in + j]);
                if (j < 32) CHECK(a.codes[3 * d_in + j] == 0 && a.wq[3 * d_in + j] == 0.0f, "zero group");
            }
            CHECK(a.scales[0] == 0 && a.scales[3 * ng] == 0, "zero group scale");
            /* constant rows: one code for the whole row */
            for (int64_t j = 1; j < d_in; ++j)
                CHECK(a.codes[d_in + j] == a.codes[d_in], "constant row codes differ");
            bufs_free(&a);
        }
}

static void test_nonfinite(void) {
    qs_quant_params p;
    qs_quant_params_default(&p);
    float W[2 * 40];
    for (int i = 0; i < 80; ++i) W[i] = nrand();
    bufs a;
    bufs_alloc(&a, 2, 40, 1);
    qs_quant_out o = as_out(&a);
    const float bad[] = {NAN, INFINITY, -INFINITY};
    for (int k = 0; k < 3; ++k) {
        W[40 + 17] = bad[k];
        qs_err e = {0};
        CHECK(qs_rtn_quantize_rows(&p, W, 2, 40, &o, &e) == QS_ERR_INPUT, "bad weight accepted");
        CHECK(strstr(e.msg, "row 1 column 17") != NULL, "message: %s", e.msg);
        qs_err_clear(&e);
        CHECK(qs_rtn_quantize_rows_ref(&p, W, 2, 40, &o, &e) == QS_ERR_INPUT, "ref accepted it");
    }
    bufs_free(&a);
}

int main(void) {
    test_params();
    test_group_rule();
    test_rtn();
    test_edge_rows();
    test_nonfinite();
    return qs_test_finish("test_quant");
}
