/* quant.c: what every quantizer shares: parameters, fp16 rounding, the group rule
 * (scale/zero from min/max), dequantization through g_idx. */
#include "quant/quant.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "quant/quant_internal.h"

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

static uint32_t f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof(u));
    return u;
}

static float f32_from_bits(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof(f));
    return f;
}

uint16_t qs_fp16_from_float(float f) {
    uint32_t x = f32_bits(f);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
    uint32_t ax = x & 0x7fffffffu;
    if (ax >= 0x7f800000u) /* inf or NaN (quiet) */
        return (uint16_t)(sign | 0x7c00u | (ax > 0x7f800000u ? 0x200u : 0u));
    if (ax >= 0x47800000u) return (uint16_t)(sign | 0x7c00u); /* >= 65536: inf */
    if (ax < 0x38800000u) {
        /* below the smallest normal 2^-14: a multiple of 2^-24; scaling by 2^24 is exact
         * and the magic constant rounds to nearest even (value < 2^10 << 2^22) */
        float v = f32_from_bits(ax) * 16777216.0f;
        float r = (v + 8388608.0f) - 8388608.0f;
        return (uint16_t)(sign | (uint16_t)r); /* r == 1024 is the smallest normal: right */
    }
    uint32_t mant = ax & 0x7fffffu;
    uint32_t exp = (ax >> 23) - 127u + 15u;
    uint32_t h = (exp << 10) | (mant >> 13);
    uint32_t rem = mant & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) h++; /* may carry into inf: right */
    return (uint16_t)(sign | h);
}

float qs_fp16_to_float(uint16_t h) {
    uint32_t sign = ((uint32_t)h & 0x8000u) << 16;
    uint32_t exp = ((uint32_t)h >> 10) & 0x1fu;
    uint32_t mant = (uint32_t)h & 0x3ffu;
    if (exp == 0) {
        float v = (float)mant * (1.0f / 16777216.0f); /* exact */
        return sign ? -v : v;
    }
    if (exp == 31) return f32_from_bits(sign | 0x7f800000u | (mant << 13));
    return f32_from_bits(sign | ((exp - 15u + 127u) << 23) | (mant << 13));
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
    uint16_t s16 = qs_fp16_from_float(s);
    float sf = qs_fp16_to_float(s16);
    if (!isfinite(sf)) return -1;
    if (!p->sym) {
        float id = sf != 0.0f ? 1.0f / sf : 0.0f;
        float zf = qs_rne(-xmin * id);
        z = zf < 0.0f ? 0 : zf > (float)maxq ? maxq : (int32_t)zf;
        if (p->zero_min1 && z < 1) {
            /* zero 1 represents [-s, (maxq-1) s]: grow s so that max still fits */
            float s1 = xmax / (float)(maxq - 1);
            if (s1 < s) s1 = s;
            s16 = qs_fp16_from_float(s1);
            if (!isfinite(qs_fp16_to_float(s16))) return -1;
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
            wq[r * d_in + j] = qs_dequant1(codes[r * d_in + j], qs_fp16_to_float(sr[g]), zr[g]);
        }
    }
}

void qs_quant_g_idx_natural(int64_t d_in, int group_size, int32_t *g_idx) {
    for (int64_t j = 0; j < d_in; ++j)
        g_idx[j] = group_size < 1 ? 0 : (int32_t)(j / group_size);
}
