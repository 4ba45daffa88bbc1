/* gguf_block.c: the GGUF block types' grids, their byte layouts (unpacked qs_gguf_blk <->
 * bytes, the ggml-common.h layouts), and the dequantizer. */
#include <string.h>

#include "gguf_internal.h"
#include "gguf_quant.h"

/* type, qk, sub, nsub, qmin, qmax, zero, bias, kquant, sclo, schi, mnhi */
static const qs_gguf_desc k_desc[] = {
    {QS_GGUF_Q4_0, 32, 32, 1, 0, 15, 8, QS_GGUF_BIAS_NONE, 0, 0, 0, 0},
    {QS_GGUF_Q4_1, 32, 32, 1, 0, 15, 0, QS_GGUF_BIAS_PLUS, 0, 0, 0, 0},
    {QS_GGUF_Q5_0, 32, 32, 1, 0, 31, 16, QS_GGUF_BIAS_NONE, 0, 0, 0, 0},
    {QS_GGUF_Q5_1, 32, 32, 1, 0, 31, 0, QS_GGUF_BIAS_PLUS, 0, 0, 0, 0},
    /* Q8_0 codes -127..127 (llama.cpp never writes -128; its int8 dot products assume so) */
    {QS_GGUF_Q8_0, 32, 32, 1, 1, 255, 128, QS_GGUF_BIAS_NONE, 0, 0, 0, 0},
    {QS_GGUF_Q2_K, 256, 16, 16, 0, 3, 0, QS_GGUF_BIAS_MINUS, 1, 0, 15, 15},
    {QS_GGUF_Q3_K, 256, 16, 16, 0, 7, 4, QS_GGUF_BIAS_NONE, 1, -32, 31, 0},
    {QS_GGUF_Q4_K, 256, 32, 8, 0, 15, 0, QS_GGUF_BIAS_MINUS, 1, 0, 63, 63},
    {QS_GGUF_Q5_K, 256, 32, 8, 0, 31, 0, QS_GGUF_BIAS_MINUS, 1, 0, 63, 63},
    {QS_GGUF_Q6_K, 256, 16, 16, 0, 63, 32, QS_GGUF_BIAS_NONE, 1, -128, 127, 0},
};

const qs_gguf_desc *qs_gguf_desc_of(qs_gguf_type t) {
    for (size_t i = 0; i < sizeof(k_desc) / sizeof(k_desc[0]); ++i)
        if (k_desc[i].type == t) return &k_desc[i];
    return NULL;
}

int qs_gguf_quant_supported(qs_gguf_type t) {
    return qs_gguf_desc_of(t) != NULL;
}

qs_status qs_gguf_check_shape(qs_gguf_type t, int64_t n, qs_err *err) {
    const qs_gguf_desc *d = qs_gguf_desc_of(t);
    if (!d)
        return QS_FAIL(err, QS_ERR_INPUT, "GGUF type %s (%d) has no block quantizer",
                       qs_gguf_type_name(t), (int)t);
    if (n < 1 || n % d->qk != 0)
        return QS_FAIL(err, QS_ERR_INPUT,
                       "GGUF %s: a row of %lld weights is not a positive multiple of the "
                       "%d-weight block",
                       qs_gguf_type_name(t), (long long)n, d->qk);
    return QS_OK;
}

static void put16(uint8_t *p, uint16_t v) {
    p[0] = (uint8_t)(v & 0xFF);
    p[1] = (uint8_t)(v >> 8);
}
static uint16_t get16(const uint8_t *p) {
    return (uint16_t)(p[0] | (p[1] << 8));
}

/* ---- legacy (32-weight) blocks ---- */

/* 32 codes -> low nibbles (byte j: code j, code j+16 in the high nibble) and, for 5-bit
 * types, the fifth bits as a little-endian u32 (bit j = bit 4 of code j). */
static void put_nibbles(const uint8_t *q, uint8_t *qs, uint8_t *qh) {
    uint32_t h = 0;
    for (int j = 0; j < 16; ++j) {
        qs[j] = (uint8_t)((q[j] & 0x0F) | ((q[j + 16] & 0x0F) << 4));
        h |= (uint32_t)((q[j] >> 4) & 1) << j;
        h |= (uint32_t)((q[j + 16] >> 4) & 1) << (j + 16);
    }
    if (qh)
        for (int i = 0; i < 4; ++i) qh[i] = (uint8_t)(h >> (8 * i));
}

static void get_nibbles(const uint8_t *qs, const uint8_t *qh, uint8_t *q) {
    uint32_t h = 0;
    if (qh)
        for (int i = 0; i < 4; ++i) h |= (uint32_t)qh[i] << (8 * i);
    for (int j = 0; j < 16; ++j) {
        q[j] = (uint8_t)((qs[j] & 0x0F) | (((h >> j) & 1) << 4));
        q[j + 16] = (uint8_t)((qs[j] >> 4) | (((h >> (j + 16)) & 1) << 4));
    }
}

/* ---- K-quant pieces ---- */

/* 2-bit fields of 256 values: value e = 128 h + 32 k + l sits in byte 32 h + l at bit 2 k. */
static void put_2bit(const uint8_t *v, uint8_t *qs) {
    for (int h = 0; h < 2; ++h)
        for (int l = 0; l < 32; ++l) {
            const uint8_t *x = v + 128 * h + l;
            qs[32 * h + l] = (uint8_t)((x[0] & 3) | ((x[32] & 3) << 2) | ((x[64] & 3) << 4) |
                                       ((x[96] & 3) << 6));
        }
}
static void get_2bit(const uint8_t *qs, uint8_t *v) {
    for (int h = 0; h < 2; ++h)
        for (int k = 0; k < 4; ++k)
            for (int l = 0; l < 32; ++l) v[128 * h + 32 * k + l] = (qs[32 * h + l] >> (2 * k)) & 3;
}

/* 8 6-bit scales and 8 6-bit mins in 12 bytes (Q4_K, Q5_K; llama.cpp's get_scale_min_k4). */
static void put_k4_scales(const int16_t *sc, const uint8_t *mn, uint8_t *s) {
    memset(s, 0, 12);
    for (int j = 0; j < 8; ++j) {
        int ls = sc[j] & 63, lm = mn[j] & 63;
        if (j < 4) {
            s[j] |= (uint8_t)ls;
            s[j + 4] |= (uint8_t)lm;
        } else {
            s[j + 4] = (uint8_t)((ls & 0xF) | ((lm & 0xF) << 4));
            s[j - 4] |= (uint8_t)((ls >> 4) << 6);
            s[j] |= (uint8_t)((lm >> 4) << 6);
        }
    }
}
static void get_k4_scales(const uint8_t *s, int16_t *sc, uint8_t *mn) {
    for (int j = 0; j < 8; ++j) {
        if (j < 4) {
            sc[j] = s[j] & 63;
            mn[j] = s[j + 4] & 63;
        } else {
            sc[j] = (int16_t)((s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4));
            mn[j] = (uint8_t)((s[j + 4] >> 4) | ((s[j] >> 6) << 4));
        }
    }
}

/* 16 6-bit values (Q3_K, stored as value + 32): low nibbles in bytes 0..7 (j < 8 low,
 * j >= 8 high nibble of byte j - 8), top two bits in byte 8 + j % 4 at bit 2 (j / 4). */
static void put_q3_scales(const int16_t *sc, uint8_t *s) {
    memset(s, 0, 12);
    for (int j = 0; j < 16; ++j) {
        int v = (sc[j] + 32) & 63;
        if (j < 8)
            s[j] |= (uint8_t)(v & 0xF);
        else
            s[j - 8] |= (uint8_t)((v & 0xF) << 4);
        s[8 + j % 4] |= (uint8_t)((v >> 4) << (2 * (j / 4)));
    }
}
static void get_q3_scales(const uint8_t *s, int16_t *sc) {
    for (int j = 0; j < 16; ++j) {
        int lo = j < 8 ? s[j] & 0xF : s[j - 8] >> 4;
        int hi = (s[8 + j % 4] >> (2 * (j / 4))) & 3;
        sc[j] = (int16_t)((lo | (hi << 4)) - 32);
    }
}

void qs_gguf_blk_encode(const qs_gguf_desc *t, const qs_gguf_blk *b, uint8_t *bytes) {
    switch (t->type) {
    case QS_GGUF_Q4_0: {
        qs_blk_q4_0 *y = (qs_blk_q4_0 *)bytes;
        put16(y->d, b->d);
        put_nibbles(b->q, y->qs, NULL);
        break;
    }
    case QS_GGUF_Q4_1: {
        qs_blk_q4_1 *y = (qs_blk_q4_1 *)bytes;
        put16(y->d, b->d);
        put16(y->m, b->dm);
        put_nibbles(b->q, y->qs, NULL);
        break;
    }
    case QS_GGUF_Q5_0: {
        qs_blk_q5_0 *y = (qs_blk_q5_0 *)bytes;
        put16(y->d, b->d);
        put_nibbles(b->q, y->qs, y->qh);
        break;
    }
    case QS_GGUF_Q5_1: {
        qs_blk_q5_1 *y = (qs_blk_q5_1 *)bytes;
        put16(y->d, b->d);
        put16(y->m, b->dm);
        put_nibbles(b->q, y->qs, y->qh);
        break;
    }
    case QS_GGUF_Q8_0: {
        qs_blk_q8_0 *y = (qs_blk_q8_0 *)bytes;
        put16(y->d, b->d);
        for (int j = 0; j < 32; ++j) y->qs[j] = (uint8_t)(b->q[j] ^ 0x80); /* int8 q - 128 */
        break;
    }
    case QS_GGUF_Q2_K: {
        qs_blk_q2_K *y = (qs_blk_q2_K *)bytes;
        for (int j = 0; j < 16; ++j)
            y->scales[j] = (uint8_t)((b->sc[j] & 0xF) | ((b->mn[j] & 0xF) << 4));
        put_2bit(b->q, y->qs);
        put16(y->d, b->d);
        put16(y->dmin, b->dm);
        break;
    }
    case QS_GGUF_Q3_K: {
        qs_blk_q3_K *y = (qs_blk_q3_K *)bytes;
        memset(y->hmask, 0, sizeof(y->hmask));
        for (int e = 0; e < 256; ++e)
            if (b->q[e] > 3) y->hmask[e % 32] |= (uint8_t)(1u << (e / 32));
        put_2bit(b->q, y->qs);
        put_q3_scales(b->sc, y->scales);
        put16(y->d, b->d);
        break;
    }
    case QS_GGUF_Q4_K: {
        qs_blk_q4_K *y = (qs_blk_q4_K *)bytes;
        put16(y->d, b->d);
        put16(y->dmin, b->dm);
        put_k4_scales(b->sc, b->mn, y->scales);
        for (int c = 0; c < 4; ++c)
            for (int l = 0; l < 32; ++l)
                y->qs[32 * c + l] =
                    (uint8_t)((b->q[64 * c + l] & 0xF) | ((b->q[64 * c + 32 + l] & 0xF) << 4));
        break;
    }
    case QS_GGUF_Q5_K: {
        qs_blk_q5_K *y = (qs_blk_q5_K *)bytes;
        put16(y->d, b->d);
        put16(y->dmin, b->dm);
        put_k4_scales(b->sc, b->mn, y->scales);
        memset(y->qh, 0, sizeof(y->qh));
        for (int c = 0; c < 4; ++c)
            for (int l = 0; l < 32; ++l) {
                int lo = b->q[64 * c + l], hi = b->q[64 * c + 32 + l];
                y->qs[32 * c + l] = (uint8_t)((lo & 0xF) | ((hi & 0xF) << 4));
                y->qh[l] |=
                    (uint8_t)((((lo >> 4) & 1) << (2 * c)) | (((hi >> 4) & 1) << (2 * c + 1)));
            }
        break;
    }
    case QS_GGUF_Q6_K: {
        qs_blk_q6_K *y = (qs_blk_q6_K *)bytes;
        for (int h = 0; h < 2; ++h)
            for (int l = 0; l < 32; ++l) {
                const uint8_t *x = b->q + 128 * h + l;
                y->ql[64 * h + l] = (uint8_t)((x[0] & 0xF) | ((x[64] & 0xF) << 4));
                y->ql[64 * h + l + 32] = (uint8_t)((x[32] & 0xF) | ((x[96] & 0xF) << 4));
                y->qh[32 * h + l] =
                    (uint8_t)(((x[0] >> 4) & 3) | (((x[32] >> 4) & 3) << 2) |
                              (((x[64] >> 4) & 3) << 4) | (((x[96] >> 4) & 3) << 6));
            }
        for (int j = 0; j < 16; ++j) y->scales[j] = (uint8_t)(b->sc[j] & 0xFF); /* int8 bits */
        put16(y->d, b->d);
        break;
    }
    default: break;
    }
}

void qs_gguf_blk_decode(const qs_gguf_desc *t, const uint8_t *bytes, qs_gguf_blk *b) {
    memset(b, 0, sizeof(*b));
    switch (t->type) {
    case QS_GGUF_Q4_0: {
        const qs_blk_q4_0 *x = (const qs_blk_q4_0 *)bytes;
        b->d = get16(x->d);
        get_nibbles(x->qs, NULL, b->q);
        break;
    }
    case QS_GGUF_Q4_1: {
        const qs_blk_q4_1 *x = (const qs_blk_q4_1 *)bytes;
        b->d = get16(x->d);
        b->dm = get16(x->m);
        get_nibbles(x->qs, NULL, b->q);
        break;
    }
    case QS_GGUF_Q5_0: {
        const qs_blk_q5_0 *x = (const qs_blk_q5_0 *)bytes;
        b->d = get16(x->d);
        get_nibbles(x->qs, x->qh, b->q);
        break;
    }
    case QS_GGUF_Q5_1: {
        const qs_blk_q5_1 *x = (const qs_blk_q5_1 *)bytes;
        b->d = get16(x->d);
        b->dm = get16(x->m);
        get_nibbles(x->qs, x->qh, b->q);
        break;
    }
    case QS_GGUF_Q8_0: {
        const qs_blk_q8_0 *x = (const qs_blk_q8_0 *)bytes;
        b->d = get16(x->d);
        for (int j = 0; j < 32; ++j) b->q[j] = (uint8_t)(x->qs[j] ^ 0x80);
        break;
    }
    case QS_GGUF_Q2_K: {
        const qs_blk_q2_K *x = (const qs_blk_q2_K *)bytes;
        for (int j = 0; j < 16; ++j) {
            b->sc[j] = x->scales[j] & 0xF;
            b->mn[j] = x->scales[j] >> 4;
        }
        get_2bit(x->qs, b->q);
        b->d = get16(x->d);
        b->dm = get16(x->dmin);
        break;
    }
    case QS_GGUF_Q3_K: {
        const qs_blk_q3_K *x = (const qs_blk_q3_K *)bytes;
        get_2bit(x->qs, b->q);
        for (int e = 0; e < 256; ++e)
            if (x->hmask[e % 32] & (1u << (e / 32))) b->q[e] |= 4;
        get_q3_scales(x->scales, b->sc);
        b->d = get16(x->d);
        break;
    }
    case QS_GGUF_Q4_K: {
        const qs_blk_q4_K *x = (const qs_blk_q4_K *)bytes;
        b->d = get16(x->d);
        b->dm = get16(x->dmin);
        get_k4_scales(x->scales, b->sc, b->mn);
        for (int c = 0; c < 4; ++c)
            for (int l = 0; l < 32; ++l) {
                b->q[64 * c + l] = x->qs[32 * c + l] & 0xF;
                b->q[64 * c + 32 + l] = x->qs[32 * c + l] >> 4;
            }
        break;
    }
    case QS_GGUF_Q5_K: {
        const qs_blk_q5_K *x = (const qs_blk_q5_K *)bytes;
        b->d = get16(x->d);
        b->dm = get16(x->dmin);
        get_k4_scales(x->scales, b->sc, b->mn);
        for (int c = 0; c < 4; ++c)
            for (int l = 0; l < 32; ++l) {
                b->q[64 * c + l] =
                    (uint8_t)((x->qs[32 * c + l] & 0xF) | (((x->qh[l] >> (2 * c)) & 1) << 4));
                b->q[64 * c + 32 + l] =
                    (uint8_t)((x->qs[32 * c + l] >> 4) | (((x->qh[l] >> (2 * c + 1)) & 1) << 4));
            }
        break;
    }
    case QS_GGUF_Q6_K: {
        const qs_blk_q6_K *x = (const qs_blk_q6_K *)bytes;
        for (int h = 0; h < 2; ++h)
            for (int l = 0; l < 32; ++l) {
                uint8_t *v = b->q + 128 * h + l;
                uint8_t lo0 = x->ql[64 * h + l], lo1 = x->ql[64 * h + l + 32],
                        hi = x->qh[32 * h + l];
                v[0] = (uint8_t)((lo0 & 0xF) | ((hi & 3) << 4));
                v[32] = (uint8_t)((lo1 & 0xF) | (((hi >> 2) & 3) << 4));
                v[64] = (uint8_t)((lo0 >> 4) | (((hi >> 4) & 3) << 4));
                v[96] = (uint8_t)((lo1 >> 4) | (((hi >> 6) & 3) << 4));
            }
        for (int j = 0; j < 16; ++j)
            b->sc[j] = (int16_t)(x->scales[j] < 128 ? x->scales[j] : x->scales[j] - 256);
        b->d = get16(x->d);
        break;
    }
    default: break;
    }
}

qs_status qs_gguf_dequantize_rows(qs_gguf_type type, const void *src, int64_t nrows, int64_t n,
                                  float *out, qs_err *err) {
    qs_status st = qs_gguf_check_shape(type, n, err);
    if (st != QS_OK) return st;
    const qs_gguf_desc *t = qs_gguf_desc_of(type);
    const int64_t nb = n / t->qk, bb = qs_gguf_block_bytes(type);
    const uint8_t *p = (const uint8_t *)src;
    qs_gguf_blk b;
    for (int64_t r = 0; r < nrows; ++r)
        for (int64_t i = 0; i < nb; ++i) {
            qs_gguf_blk_decode(t, p + (r * nb + i) * bb, &b);
            float *y = out + r * n + i * t->qk; /* (qk) */
            for (int j = 0; j < t->nsub; ++j) {
                float s, bias;
                qs_gguf_sub_scale(t, &b, j, &s, &bias);
                for (int e = j * t->sub; e < (j + 1) * t->sub; ++e)
                    y[e] = qs_gguf_deq1(b.q[e], t->zero, s, bias, t->bias);
            }
        }
    return QS_OK;
}
