/* gguf_rtn.c: llama.cpp's quantizers for the GGUF block types, reproduced bit for bit.
 *
 * Written from ggml-quants.c (quantize_row_<type>_ref and the quant_weights path
 * quantize_<type> -> quantize_row_<type>_impl): the same rules, the same float operations
 * in the same order (every sum is accumulated in float in index order, products are
 * evaluated left to right as the C source writes them), so that compiled without
 * floating-point contraction (the house flags; ggml-base's default build on x86-64) they give
 * the same bytes. The fitting helpers:
 *   fit_sym    a symmetric scale (make_qx_quants, rmse_type 1): 19 trial scales around
 *              -nmax / max, weighted least squares
 *   fit_q3     Q3_K's symmetric fit without importance (make_q3_quants with do_rmse)
 *   fit_min    scale and min of an asymmetric block (make_qkx2_quants / make_qkx3_quants,
 *              which agree whenever weights are given, as every caller here does)
 *   fit_grid   a common scale for non-negative values on the grid 0..nmax (make_qp_quants),
 *              how the importance path quantizes the K-quants' sub-block scales
 */
#include <float.h>
#include <math.h>
#include <string.h>

#include "gguf_internal.h"
#include "gguf_quant.h"
#include "quant_internal.h"

#define GROUP_EPS 1e-15f /* llama.cpp's GROUP_MAX_EPS: a block below it is all zero */

static inline int clampi(int v, int lo, int hi) {
    return v < lo ? lo : v > hi ? hi : v;
}

/* The value of x (n) of largest magnitude (the first of equal ones); *amax = its magnitude. */
static float largest_magnitude(int n, const float *x, float *amax) {
    float max = 0.0f;
    *amax = 0.0f;
    for (int i = 0; i < n; ++i) {
        float ax = fabsf(x[i]);
        if (ax > *amax) {
            *amax = ax;
            max = x[i];
        }
    }
    return max;
}

/* 1 with L (n) zeroed when every |x| (n) is below GROUP_EPS (the block quantizes to zero);
 * else 0 and *max = the value of largest magnitude (the symmetric fits start at -nmax / max). */
static int zero_block(int n, const float *x, int8_t *L, float *max) {
    float amax;
    *max = largest_magnitude(n, x, &amax);
    if (amax >= GROUP_EPS) return 0;
    memset(L, 0, (size_t)n);
    return 1;
}

/* The weighted sums of one trial scale of a symmetric fit: codes l = nearest(iscale x) in
 * [-nmax, nmax), *sumlx = sum w x l, *suml2 = sum w l^2 (weights w, or x^2 when w is NULL),
 * accumulated in index order; when L (n) is given it receives l + off. */
static void sym_sums(int n, int nmax, float iscale, const float *x, const float *w, int8_t *L,
                     int off, float *sumlx, float *suml2) {
    *sumlx = *suml2 = 0.0f;
    for (int i = 0; i < n; ++i) {
        int l = clampi(qs_gguf_nearest(iscale * x[i]), -nmax, nmax - 1);
        if (L) L[i] = (int8_t)(l + off);
        float wi = w ? w[i] : x[i] * x[i];
        *sumlx += wi * x[i] * (float)l;
        *suml2 += wi * (float)l * (float)l;
    }
}

/* x (n) -> L (n) in [0, 2 nmax), returns the scale (weights w, or x^2 when w is NULL). */
static float fit_sym(int n, int nmax, const float *x, const float *w, int8_t *L) {
    float max, sumlx, suml2;
    if (zero_block(n, x, L, &max)) return 0.0f;
    sym_sums(n, nmax, -nmax / max, x, w, L, nmax, &sumlx, &suml2);
    float scale = suml2 != 0.0f ? sumlx / suml2 : 0.0f;
    float best = scale * sumlx;
    for (int is = -9; is <= 9; ++is) {
        if (is == 0) continue;
        float iscale = -(nmax + 0.1f * (float)is) / max;
        sym_sums(n, nmax, iscale, x, w, NULL, 0, &sumlx, &suml2);
        if (suml2 > 0.0f && sumlx * sumlx > best * suml2) {
            for (int i = 0; i < n; ++i)
                L[i] = (int8_t)(nmax + clampi(qs_gguf_nearest(iscale * x[i]), -nmax, nmax - 1));
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    return scale;
}

/* Q3_K without importance: start at -nmax / max, then up to 5 passes that move single
 * codes while the weighted (x^2) fit improves. L (n) in [0, 2 nmax). */
static float fit_q3(int n, int nmax, const float *x, int8_t *L) {
    float max, sumlx, suml2;
    if (zero_block(n, x, L, &max)) return 0.0f;
    sym_sums(n, nmax, -nmax / max, x, NULL, L, 0, &sumlx, &suml2);
    for (int pass = 0; pass < 5; ++pass) {
        int changed = 0;
        for (int i = 0; i < n; ++i) {
            float w = x[i] * x[i];
            float slx = sumlx - w * x[i] * (float)L[i];
            if (slx > 0.0f) {
                float sl2 = suml2 - w * (float)L[i] * (float)L[i];
                int nl = clampi(qs_gguf_nearest(x[i] * sl2 / slx), -nmax, nmax - 1);
                if (nl != L[i]) {
                    slx += w * x[i] * (float)nl;
                    sl2 += w * (float)nl * (float)nl;
                    if (sl2 > 0.0f && slx * slx * suml2 > sumlx * sumlx * sl2) {
                        L[i] = (int8_t)nl;
                        sumlx = slx;
                        suml2 = sl2;
                        ++changed;
                    }
                }
            }
        }
        if (!changed) break;
    }
    for (int i = 0; i < n; ++i) L[i] = (int8_t)(L[i] + nmax);
    return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

/* Asymmetric block x (n) with weights w (n): value = scale * L - min. Tries nstep + 1 scales
 * (rmin + rdelta * is + nmax) / (max - min), each refit by weighted least squares, keeps the
 * best (squared or absolute error). Returns the scale; *the_min = the subtracted min >= 0.
 * L (n) in [0, nmax]; Laux (n) scratch. */
static float fit_min(int n, int nmax, const float *x, const float *w, uint8_t *L, float *the_min,
                     uint8_t *Laux, float rmin, float rdelta, int nstep, int use_mad) {
    float min = x[0], max = x[0];
    float sum_w = w[0], sum_x = sum_w * x[0];
    for (int i = 1; i < n; ++i) {
        if (x[i] < min) min = x[i];
        if (x[i] > max) max = x[i];
        sum_w += w[i];
        sum_x += w[i] * x[i];
    }
    if (min > 0.0f) min = 0.0f;
    if (max == min) {
        memset(L, 0, (size_t)n);
        *the_min = -min;
        return 0.0f;
    }
    float iscale = nmax / (max - min);
    float scale = 1.0f / iscale;
    float best_error = 0.0f;
    for (int i = 0; i < n; ++i) {
        L[i] = (uint8_t)clampi(qs_gguf_nearest(iscale * (x[i] - min)), 0, nmax);
        float diff = scale * (float)L[i] + min - x[i];
        diff = use_mad ? fabsf(diff) : diff * diff;
        best_error += w[i] * diff;
    }
    if (nstep < 1) {
        *the_min = -min;
        return scale;
    }
    for (int is = 0; is <= nstep; ++is) {
        iscale = (rmin + rdelta * (float)is + nmax) / (max - min);
        float sum_l = 0.0f, sum_l2 = 0.0f, sum_xl = 0.0f;
        for (int i = 0; i < n; ++i) {
            int l = clampi(qs_gguf_nearest(iscale * (x[i] - min)), 0, nmax);
            Laux[i] = (uint8_t)l;
            sum_l += w[i] * (float)l;
            sum_l2 += w[i] * (float)l * (float)l;
            sum_xl += w[i] * (float)l * x[i];
        }
        float D = sum_w * sum_l2 - sum_l * sum_l;
        if (D > 0.0f) {
            float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
            float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
            if (this_min > 0.0f) {
                this_min = 0.0f;
                this_scale = sum_xl / sum_l2;
            }
            float cur = 0.0f;
            for (int i = 0; i < n; ++i) {
                float diff = this_scale * (float)Laux[i] + this_min - x[i];
                diff = use_mad ? fabsf(diff) : diff * diff;
                cur += w[i] * diff;
            }
            if (cur < best_error) {
                memcpy(L, Laux, (size_t)n);
                best_error = cur;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    *the_min = -min;
    return scale;
}

/* Non-negative values x (n) on the grid scale * L, L in [0, nmax], weights qw (n): the best
 * of 9 trial scales, then up to 5 passes moving single codes. L (n) as uint8 (llama.cpp
 * stores the rounded value into uint8_t). Returns the scale. */
static float fit_grid(int n, int nmax, const float *x, uint8_t *L, const float *qw) {
    float max = 0.0f;
    for (int i = 0; i < n; ++i) max = max > x[i] ? max : x[i];
    if (max < GROUP_EPS) {
        memset(L, 0, (size_t)n);
        return 0.0f;
    }
    float iscale = nmax / max;
    for (int i = 0; i < n; ++i) L[i] = (uint8_t)qs_gguf_nearest(iscale * x[i]);
    float scale = 1.0f / iscale;
    float best_mse = 0.0f;
    for (int i = 0; i < n; ++i) {
        float diff = x[i] - scale * (float)L[i];
        best_mse += qw[i] * diff * diff;
    }
    for (int is = -4; is <= 4; ++is) {
        if (is == 0) continue;
        float iscale_is = (0.1f * (float)is + nmax) / max;
        float scale_is = 1.0f / iscale_is;
        float mse = 0.0f;
        for (int i = 0; i < n; ++i) {
            int l = qs_gguf_nearest(iscale_is * x[i]);
            l = l < nmax ? l : nmax;
            float diff = x[i] - scale_is * (float)l;
            mse += qw[i] * diff * diff;
        }
        if (mse < best_mse) {
            best_mse = mse;
            iscale = iscale_is;
        }
    }
    float sumlx = 0.0f, suml2 = 0.0f;
    for (int i = 0; i < n; ++i) {
        int l = qs_gguf_nearest(iscale * x[i]);
        l = l < nmax ? l : nmax;
        L[i] = (uint8_t)l;
        sumlx += qw[i] * x[i] * (float)l;
        suml2 += qw[i] * (float)l * (float)l;
    }
    for (int pass = 0; pass < 5; ++pass) {
        int changed = 0;
        for (int i = 0; i < n; ++i) {
            float w = qw[i];
            float slx = sumlx - w * x[i] * (float)L[i];
            float sl2 = suml2 - w * (float)L[i] * (float)L[i];
            if (slx > 0.0f && sl2 > 0.0f) {
                int nl = qs_gguf_nearest(x[i] * sl2 / slx);
                nl = nl < nmax ? nl : nmax;
                if (nl != L[i]) {
                    slx += w * x[i] * (float)nl;
                    sl2 += w * (float)nl * (float)nl;
                    if (slx * slx * suml2 > sumlx * sumlx * sl2) {
                        L[i] = (uint8_t)nl;
                        sumlx = slx;
                        suml2 = sl2;
                        ++changed;
                    }
                }
            }
        }
        if (!changed) break;
    }
    return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

float qs_gguf_row_sigma2(const float *x, int64_t n) {
    float s = 0.0f;
    for (int64_t j = 0; j < n; ++j) s += x[j] * x[j];
    return s / (float)n;
}

float qs_gguf_k_sigma2(const qs_gguf_desc *t, const float *x) {
    float s = 0.0f;
    for (int j = 0; j < QS_GGUF_QK_K; ++j) s += x[j] * x[j];
    /* Q2_K: sum/QK_K; Q3_K..Q5_K: 2 sum/QK_K (Q6_K's importance path does not use it) */
    return t->type == QS_GGUF_Q2_K ? s / (float)QS_GGUF_QK_K : 2.0f * s / (float)QS_GGUF_QK_K;
}

/* ---- legacy blocks ------------------------------------------------------------------- */

static void legacy_block(const qs_gguf_desc *t, int rule, const float *x, const float *imp,
                         float sigma2, qs_gguf_blk *b) {
    memset(b, 0, sizeof(*b));
    if (rule == QS_GGUF_RULE_IMP && imp && t->type != QS_GGUF_Q8_0) {
        float w[32];
        for (int j = 0; j < 32; ++j) w[j] = imp[j] * sqrtf(sigma2 + x[j] * x[j]);
        if (t->bias == QS_GGUF_BIAS_NONE) { /* Q4_0, Q5_0 */
            int8_t L[32];
            float d = fit_sym(32, (t->qmax + 1) / 2, x, w, L);
            b->d = qs_f32_to_f16(d);
            for (int j = 0; j < 32; ++j) b->q[j] = (uint8_t)L[j];
        } else { /* Q4_1, Q5_1 */
            uint8_t Laux[32];
            float min;
            float d = fit_min(32, t->qmax, x, w, b->q, &min, Laux, -0.9f, 0.05f, 36, 0);
            b->d = qs_f32_to_f16(d);
            b->dm = qs_f32_to_f16(-min);
        }
        return;
    }
    switch (t->type) {
    case QS_GGUF_Q4_0:
    case QS_GGUF_Q5_0: {
        const int half = (t->qmax + 1) / 2; /* 8 or 16 */
        float amax;
        const float max = largest_magnitude(32, x, &amax);
        const float d = max / (float)-half;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        b->d = qs_f32_to_f16(d);
        const float off = (float)half + 0.5f; /* 8.5f, 16.5f */
        for (int j = 0; j < 32; ++j) {
            int q = (int)(x[j] * id + off); /* truncation, as the int8 cast */
            b->q[j] = (uint8_t)(q < t->qmax ? q : t->qmax);
        }
        break;
    }
    case QS_GGUF_Q4_1:
    case QS_GGUF_Q5_1: {
        float min = FLT_MAX, max = -FLT_MAX;
        for (int j = 0; j < 32; ++j) {
            if (x[j] < min) min = x[j];
            if (x[j] > max) max = x[j];
        }
        const float d = (max - min) / (float)t->qmax;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        b->d = qs_f32_to_f16(d);
        b->dm = qs_f32_to_f16(min);
        for (int j = 0; j < 32; ++j) {
            int q = (int)((x[j] - min) * id + 0.5f);
            b->q[j] = (uint8_t)(q < t->qmax ? q : t->qmax);
        }
        break;
    }
    case QS_GGUF_Q8_0: {
        float amax = 0.0f;
        for (int j = 0; j < 32; ++j) amax = amax > fabsf(x[j]) ? amax : fabsf(x[j]);
        const float d = amax / 127.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        b->d = qs_f32_to_f16(d);
        for (int j = 0; j < 32; ++j) b->q[j] = (uint8_t)((int)roundf(x[j] * id) + 128);
        break;
    }
    default: break;
    }
}

/* ---- K-quants -------------------------------------------------------------------------- */

/* The per-sub-block fit of one sub-block (see qs_gguf_k_fit_sub); L (t->sub) gets the
 * fit's codes in [0, qmax]. */
static void k_fit_sub(const qs_gguf_desc *t, int rule, const float *x, const float *imp,
                      float sigma2, float *scale, float *min, float *sw, uint8_t *L) {
    const int n = t->sub;
    float w[32];
    uint8_t Laux[32];
    int8_t Ls[32];
    const int use_imp = rule == QS_GGUF_RULE_IMP && imp;
    *min = 0.0f;
    if (use_imp && t->type != QS_GGUF_Q6_K)
        for (int l = 0; l < n; ++l) w[l] = imp[l] * sqrtf(sigma2 + x[l] * x[l]);
    float s = 0.0f;
    if (use_imp) {
        const float *ww = t->type == QS_GGUF_Q6_K ? imp : w;
        for (int l = 0; l < n; ++l) s += ww[l];
    }
    *sw = s;
    switch (t->type) {
    case QS_GGUF_Q2_K:
        if (use_imp) {
            *scale = fit_min(16, 3, x, w, L, min, Laux, -0.9f, 0.05f, 36, 0);
        } else {
            for (int l = 0; l < 16; ++l) w[l] = fabsf(x[l]);
            *scale = fit_min(16, 3, x, w, L, min, Laux, -0.5f, 0.1f, 15, 1);
        }
        break;
    case QS_GGUF_Q3_K:
        *scale = use_imp ? fit_sym(16, 4, x, w, Ls) : fit_q3(16, 4, x, Ls);
        for (int l = 0; l < 16; ++l) L[l] = (uint8_t)Ls[l];
        break;
    case QS_GGUF_Q4_K:
    case QS_GGUF_Q5_K:
        if (use_imp) {
            *scale = fit_min(32, t->qmax, x, w, L, min, Laux, -0.9f, 0.05f, 36, 0);
        } else {
            float sum_x2 = 0.0f;
            for (int l = 0; l < 32; ++l) sum_x2 += x[l] * x[l];
            float av_x = sqrtf(sum_x2 / 32.0f);
            for (int l = 0; l < 32; ++l) w[l] = av_x + fabsf(x[l]);
            if (t->type == QS_GGUF_Q4_K)
                *scale = fit_min(32, 15, x, w, L, min, Laux, -1.0f, 0.1f, 20, 0);
            else
                *scale = fit_min(32, 31, x, w, L, min, Laux, -0.5f, 0.1f, 15, 0);
        }
        break;
    case QS_GGUF_Q6_K:
        *scale = fit_sym(16, 32, x, use_imp ? imp : NULL, Ls);
        for (int l = 0; l < 16; ++l) L[l] = (uint8_t)Ls[l];
        break;
    default: *scale = 0.0f; break;
    }
}

void qs_gguf_k_fit_sub(const qs_gguf_desc *t, int rule, const float *x, const float *imp,
                       float stat, float *scale, float *min) {
    float sw;
    uint8_t L[32];
    k_fit_sub(t, rule, x, imp, stat, scale, min, &sw, L);
}

/* d, dmin and the sub-block codes of a super-block x (256), llama.cpp's way; L (256) gets
 * the sub-block fits' codes (kept where a sub-block's scale is 0). */
static void k_block_params(const qs_gguf_desc *t, int rule, const float *x, const float *imp,
                           qs_gguf_blk *b, uint8_t *L) {
    float scales[16], mins[16], sw[16];
    const int ns = t->nsub, use_imp = rule == QS_GGUF_RULE_IMP && imp;
    memset(b, 0, sizeof(*b));
    const float sigma2 = use_imp ? qs_gguf_k_sigma2(t, x) : 0.0f;
    for (int j = 0; j < ns; ++j)
        k_fit_sub(t, rule, x + j * t->sub, imp ? imp + j * t->sub : NULL, sigma2, &scales[j],
                  &mins[j], &sw[j], L + j * t->sub);

    if (t->type == QS_GGUF_Q3_K || t->type == QS_GGUF_Q6_K) { /* signed scales, no mins */
        if (use_imp && t->type == QS_GGUF_Q3_K) {
            int8_t Ls[16];
            float d_block = fit_sym(16, 32, scales, sw, Ls);
            for (int j = 0; j < 16; ++j) b->sc[j] = (int16_t)(Ls[j] - 32);
            b->d = qs_f32_to_f16(d_block);
            return;
        }
        float amax;
        const float max_scale = largest_magnitude(ns, scales, &amax);
        if (t->type == QS_GGUF_Q3_K) {
            if (max_scale != 0.0f) {
                float iscale = -32.0f / max_scale;
                for (int j = 0; j < 16; ++j)
                    b->sc[j] =
                        (int16_t)clampi((int8_t)qs_gguf_nearest(iscale * scales[j]), -32, 31);
                b->d = qs_f32_to_f16(1.0f / iscale);
            } else {
                for (int j = 0; j < 16; ++j) b->sc[j] = -32; /* scale bytes all zero */
                b->d = qs_f32_to_f16(0.0f);
            }
        } else {                    /* Q6_K */
            if (amax < GROUP_EPS) { /* the whole block is zero bytes */
                memset(L, 0, QS_GGUF_QK_K);
                return;
            }
            float iscale = -128.0f / max_scale;
            b->d = qs_f32_to_f16(1.0f / iscale);
            for (int j = 0; j < 16; ++j) {
                int v = qs_gguf_nearest(iscale * scales[j]);
                b->sc[j] = (int16_t)(v < 127 ? v : 127);
            }
        }
        return;
    }

    /* Q2_K, Q4_K, Q5_K: scales and mins on unsigned grids with d, dmin */
    const int top = t->schi; /* 15 or 63 */
    if (use_imp) {
        uint8_t Ls[16], Lm[16];
        float dm = fit_grid(ns, top, scales, Ls, sw);
        float mm = fit_grid(ns, top, mins, Lm, sw);
        for (int j = 0; j < ns; ++j) {
            if (t->type == QS_GGUF_Q2_K) { /* one byte: Ls | Lm << 4 */
                uint8_t byte = (uint8_t)(Ls[j] | (Lm[j] << 4));
                b->sc[j] = byte & 0xF;
                b->mn[j] = byte >> 4;
            } else {
                b->sc[j] = Ls[j] < 63 ? Ls[j] : 63;
                b->mn[j] = Lm[j] < 63 ? Lm[j] : 63;
            }
        }
        b->d = qs_f32_to_f16(dm);
        b->dm = qs_f32_to_f16(mm);
        return;
    }
    float max_scale = 0.0f, max_min = 0.0f;
    for (int j = 0; j < ns; ++j) {
        if (scales[j] > max_scale) max_scale = scales[j];
        if (mins[j] > max_min) max_min = mins[j];
    }
    if (t->type == QS_GGUF_Q2_K) {
        uint8_t byte[16] = {0};
        if (max_scale > 0.0f) {
            float iscale = 15.0f / max_scale;
            for (int j = 0; j < 16; ++j) byte[j] = (uint8_t)qs_gguf_nearest(iscale * scales[j]);
            b->d = qs_f32_to_f16(max_scale / 15.0f);
        } else {
            b->d = qs_f32_to_f16(0.0f);
        }
        if (max_min > 0.0f) {
            float iscale = 15.0f / max_min;
            for (int j = 0; j < 16; ++j)
                byte[j] = (uint8_t)(byte[j] | (qs_gguf_nearest(iscale * mins[j]) << 4));
            b->dm = qs_f32_to_f16(max_min / 15.0f);
        } else {
            b->dm = qs_f32_to_f16(0.0f);
        }
        for (int j = 0; j < 16; ++j) {
            b->sc[j] = byte[j] & 0xF;
            b->mn[j] = byte[j] >> 4;
        }
        return;
    }
    float inv_scale = max_scale > 0.0f ? 63.0f / max_scale : 0.0f;
    float inv_min = max_min > 0.0f ? 63.0f / max_min : 0.0f;
    for (int j = 0; j < ns; ++j) {
        uint8_t ls = (uint8_t)qs_gguf_nearest(inv_scale * scales[j]);
        uint8_t lm = (uint8_t)qs_gguf_nearest(inv_min * mins[j]);
        b->sc[j] = ls < 63 ? ls : 63;
        b->mn[j] = lm < 63 ? lm : 63;
    }
    b->d = qs_f32_to_f16(max_scale / 63.0f);
    b->dm = qs_f32_to_f16(max_min / 63.0f);
}

void qs_gguf_k_params(const qs_gguf_desc *t, int rule, const float *x, const float *imp,
                      qs_gguf_blk *b) {
    uint8_t L[QS_GGUF_QK_K];
    k_block_params(t, rule, x, imp, b, L);
}

void qs_gguf_rtn_block(const qs_gguf_desc *t, int rule, const float *x, const float *imp,
                       float sigma2, qs_gguf_blk *b) {
    if (!t->kquant) {
        legacy_block(t, rule, x, imp, sigma2, b);
        return;
    }
    uint8_t L[QS_GGUF_QK_K];
    k_block_params(t, rule, x, imp, b, L);
    /* requantize against the written (fp16 x code) scales; a sub-block whose scale is 0
     * keeps its fit's codes, as llama.cpp does */
    for (int j = 0; j < t->nsub; ++j) {
        float s, bias;
        qs_gguf_sub_scale(t, b, j, &s, &bias);
        for (int e = j * t->sub; e < (j + 1) * t->sub; ++e)
            b->q[e] = s != 0.0f ? (uint8_t)qs_gguf_code(t, x[e], s, bias) : L[e];
    }
}

/* ---- the row API ------------------------------------------------------------------------ */

qs_status qs_gguf_quantize_rows(qs_gguf_type type, const float *W, int64_t nrows, int64_t n,
                                const float *imp, void *dst, qs_err *err) {
    qs_status st = qs_gguf_check_shape(type, n, err);
    if (st != QS_OK) return st;
    st = qs_quant_check_finite(W, nrows, n, 0, err);
    if (st != QS_OK) return st;
    if (imp)
        for (int64_t j = 0; j < n; ++j)
            if (!(imp[j] >= 0.0f) || !isfinite(imp[j]))
                return QS_FAIL(err, QS_ERR_INPUT,
                               "GGUF importance of column %lld is %g (must be finite and >= 0)",
                               (long long)j, (double)imp[j]);
    const qs_gguf_desc *t = qs_gguf_desc_of(type);
    const int rule = imp ? QS_GGUF_RULE_IMP : QS_GGUF_RULE_REF;
    const int64_t nb = n / t->qk, bb = qs_gguf_block_bytes(type);
    uint8_t *out = (uint8_t *)dst;
    qs_gguf_blk b;
    for (int64_t r = 0; r < nrows; ++r) {
        const float *x = W + r * n; /* (n) */
        const float sigma2 =
            rule == QS_GGUF_RULE_IMP && !t->kquant ? qs_gguf_row_sigma2(x, n) : 0.0f;
        for (int64_t i = 0; i < nb; ++i) {
            qs_gguf_rtn_block(t, rule, x + i * t->qk, imp ? imp + i * t->qk : NULL, sigma2, &b);
            qs_gguf_blk_encode(t, &b, out + (r * nb + i) * bb);
        }
    }
    return QS_OK;
}
