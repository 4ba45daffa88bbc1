/* rtn.c: round-to-nearest quantization in natural column groups, and its scalar twin. */
#include <math.h>

#include "quant.h"
#include "quant_internal.h"

qs_status qs_quant_check_finite(const float *W, int64_t nrows, int64_t d_in, int64_t row0,
                                qs_err *err) {
    for (int64_t r = 0; r < nrows; ++r) {
        const float *w = W + r * d_in;
        float acc = 0.0f;
        for (int64_t j = 0; j < d_in; ++j) acc += w[j] * 0.0f; /* NaN iff some w is inf/NaN */
        if (acc == acc) continue;
        for (int64_t j = 0; j < d_in; ++j)
            if (!isfinite(w[j]))
                return QS_FAIL(err, QS_ERR_INPUT, "weight row %lld column %lld is %s",
                               (long long)(row0 + r), (long long)j,
                               isnan(w[j]) ? "NaN" : "infinite");
    }
    return QS_OK;
}

qs_status qs_rtn_quantize_rows(const qs_quant_params *p, const float *W, int64_t nrows,
                               int64_t d_in, qs_quant_out *out, qs_err *err) {
    qs_status st = qs_quant_params_check(p, err);
    if (st != QS_OK) return st;
    st = qs_quant_check_finite(W, nrows, d_in, 0, err);
    if (st != QS_OK) return st;
    const int64_t gs = p->group_size < 1 ? d_in : p->group_size;
    const int64_t ng = qs_quant_ngroups(d_in, p->group_size);
    const float maxq = (float)((1 << p->bits) - 1);
    for (int64_t r = 0; r < nrows; ++r) {
        const float *w = W + r * d_in;     /* (d_in) */
        uint8_t *c = out->codes + r * d_in; /* (d_in) */
        for (int64_t g = 0; g < ng; ++g) {
            int64_t j0 = g * gs, j1 = j0 + gs < d_in ? j0 + gs : d_in;
            float mn = w[j0], mx = w[j0];
            for (int64_t j = j0 + 1; j < j1; ++j) {
                mn = w[j] < mn ? w[j] : mn;
                mx = w[j] > mx ? w[j] : mx;
            }
            uint16_t s16;
            int32_t z;
            if (qs_quant_group_params(p, mn, mx, &s16, &z) != 0)
                return QS_FAIL(err, QS_ERR_INPUT,
                               "weight row %lld group %lld: scale overflows fp16 (max |w| %g)",
                               (long long)r, (long long)g, (double)fmaxf(-mn, mx));
            out->scales[r * ng + g] = s16;
            out->zeros[r * ng + g] = z;
            float s = qs_f16_to_f32(s16), id = s != 0.0f ? 1.0f / s : 0.0f, zf = (float)z;
            for (int64_t j = j0; j < j1; ++j) c[j] = (uint8_t)qs_quant1(w[j], s, id, zf, maxq);
            if (out->wq)
                for (int64_t j = j0; j < j1; ++j) out->wq[r * d_in + j] = qs_dequant1(c[j], s, z);
        }
    }
    return QS_OK;
}

qs_status qs_rtn_quantize_rows_ref(const qs_quant_params *p, const float *W, int64_t nrows,
                                   int64_t d_in, qs_quant_out *out, qs_err *err) {
    qs_status st = qs_quant_params_check(p, err);
    if (st != QS_OK) return st;
    const int64_t ng = qs_quant_ngroups(d_in, p->group_size);
    const int maxq = (1 << p->bits) - 1;
    for (int64_t r = 0; r < nrows; ++r) {
        for (int64_t j = 0; j < d_in; ++j)
            if (!isfinite(W[r * d_in + j]))
                return QS_FAIL(err, QS_ERR_INPUT, "weight row %lld column %lld is not finite",
                               (long long)r, (long long)j);
        /* group parameters: min and max over each group's columns */
        for (int64_t g = 0; g < ng; ++g) {
            float mn = INFINITY, mx = -INFINITY;
            for (int64_t j = 0; j < d_in; ++j) {
                int64_t gj = p->group_size < 1 ? 0 : j / p->group_size;
                if (gj != g) continue;
                float v = W[r * d_in + j];
                if (v < mn) mn = v;
                if (v > mx) mx = v;
            }
            if (qs_quant_group_params(p, mn, mx, &out->scales[r * ng + g], &out->zeros[r * ng + g]))
                return QS_FAIL(err, QS_ERR_INPUT, "weight row %lld group %lld: scale overflows fp16",
                               (long long)r, (long long)g);
        }
        for (int64_t j = 0; j < d_in; ++j) {
            int64_t g = p->group_size < 1 ? 0 : j / p->group_size;
            float s = qs_f16_to_f32(out->scales[r * ng + g]);
            int32_t z = out->zeros[r * ng + g];
            int q = qs_quant1(W[r * d_in + j], s, s != 0.0f ? 1.0f / s : 0.0f, (float)z,
                              (float)maxq);
            out->codes[r * d_in + j] = (uint8_t)q;
            if (out->wq) out->wq[r * d_in + j] = qs_dequant1(q, s, z);
        }
    }
    return QS_OK;
}
