/* quant.c: what every quantizer shares: parameters, fp16 rounding, the group rule
 * (scale/zero from min/max), dequantization through g_idx. */
#include "quant.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "quant_internal.h"

void qs_quant_params_default(qs_quant_params *p) {
    memset(p, 0, sizeof(*p));
    p->bits = 4;
    p->group_size = 128;
    p->sym = 0;
    p->act_order = 0;
    p->static_groups = 0;
    p->damp = 0.01;
    p->damp_max = 1.0;
    p->block_size = 128;
    p->zero_min1 = 1;
    p->row_block = 256;
}

qs_status qs_quant_params_check(const qs_quant_params *p, qs_err *err) {
    if (p->bits < QS_QUANT_MIN_BITS || p->bits > QS_QUANT_MAX_BITS)
        return QS_FAIL(err, QS_ERR_INPUT, "quant.bits: %d is outside [%d, %d]", p->bits,
                       QS_QUANT_MIN_BITS, QS_QUANT_MAX_BITS);
    if (p->group_size != -1 && p->group_size < 1)
        return QS_FAIL(err, QS_ERR_INPUT, "quant.group_size: %d is neither -1 nor >= 1",
                       p->group_size);
    if (!(p->damp >= 0.0) || !isfinite(p->damp))
        return QS_FAIL(err, QS_ERR_INPUT, "quant.damp: %g is not a finite value >= 0", p->damp);
    if (!(p->damp_max >= p->damp) || !isfinite(p->damp_max))
        return QS_FAIL(err, QS_ERR_INPUT, "quant.damp_max: %g is below quant.damp %g",
                       p->damp_max, p->damp);
    if (p->block_size < 1)
        return QS_FAIL(err, QS_ERR_INPUT, "quant.block_size: %d is not >= 1", p->block_size);
    if (p->row_block < 1)
        return QS_FAIL(err, QS_ERR_INPUT, "quant.row_block: %d is not >= 1", p->row_block);
    return QS_OK;
}

char *qs_quant_name(const qs_quant_params *p, char *buf, size_t size) {
    if (size == 0) return buf;
    snprintf(buf, size, "w%dg%d", p->bits, p->group_size < 1 ? -1 : p->group_size);
    return buf;
}

int64_t qs_quant_ngroups(int64_t d_in, int group_size) {
    if (group_size < 1 || d_in <= 0) return d_in > 0 ? 1 : 0;
    return (d_in + group_size - 1) / group_size;
}

int qs_quant_group_params(const qs_quant_params *p, float xmin, float xmax, uint16_t *scale,
                          int32_t *zero) {
    int maxq = (1 << p->bits) - 1;
    if (xmin > 0.0f) xmin = 0.0f;
    if (xmax < 0.0f) xmax = 0.0f;
    float s;
    int32_t z;
    if (p->sym) {
        float amax = -xmin > xmax ? -xmin : xmax;
        s = 2.0f * amax / (float)maxq;
        z = (maxq + 1) / 2;
    } else {
        s = (xmax - xmin) / (float)maxq;
        z = 0;
    }
    uint16_t s16 = qs_f32_to_f16(s);
    float sf = qs_f16_to_f32(s16);
    if (!isfinite(sf)) return -1;
    if (!p->sym) {
        float id = sf != 0.0f ? 1.0f / sf : 0.0f;
        float zf = qs_rne(-xmin * id);
        z = zf < 0.0f ? 0 : zf > (float)maxq ? maxq : (int32_t)zf;
        if (p->zero_min1 && z < 1) {
            /* zero 1 represents [-s, (maxq-1) s]: grow s so that max still fits */
            float s1 = xmax / (float)(maxq - 1);
            if (s1 < s) s1 = s;
            s16 = qs_f32_to_f16(s1);
            if (!isfinite(qs_f16_to_f32(s16))) return -1;
            z = 1;
        }
    }
    *scale = s16;
    *zero = z;
    return 0;
}

void qs_quant_dequant_rows(const uint8_t *codes, const uint16_t *scales, const int32_t *zeros,
                           const int32_t *g_idx, int64_t nrows, int64_t d_in, int64_t ngroups,
                           float *wq) {
    for (int64_t r = 0; r < nrows; ++r) {
        const uint16_t *sr = scales + r * ngroups;
        const int32_t *zr = zeros + r * ngroups;
        for (int64_t j = 0; j < d_in; ++j) {
            int32_t g = g_idx[j];
            wq[r * d_in + j] = qs_dequant1(codes[r * d_in + j], qs_f16_to_f32(sr[g]), zr[g]);
        }
    }
}

void qs_quant_g_idx_natural(int64_t d_in, int group_size, int32_t *g_idx) {
    for (int64_t j = 0; j < d_in; ++j)
        g_idx[j] = group_size < 1 ? 0 : (int32_t)(j / group_size);
}
