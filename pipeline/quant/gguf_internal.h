/* gguf_internal.h: what the GGUF quantizers of quant/ share (not a public header).
 *
 * - The byte layouts of the block types (ggml-common.h), as structs of bytes: fp16 fields
 *   are two little-endian bytes, so the layout does not depend on the host's byte order.
 * - A descriptor per type: the shape of its grid (block, sub-block, code range, offset).
 * - qs_gguf_blk, the unpacked content of one block (what its bytes say), the form every
 *   quantizer here fills and qs_gguf_blk_encode turns into bytes.
 * - The dequantization step, written once so the dequantizer and the GPTQ solve round alike.
 * - The block choosers (gguf_rtn.c): llama.cpp's per-block rules, used by RTN and by the GPTQ
 *   solve to fix a block's parameters.
 */
#ifndef QS_GGUF_INTERNAL_H
#define QS_GGUF_INTERNAL_H

#include <assert.h>
#include <stddef.h>
#include <stdint.h>

#include "gguf_types.h"
#include "half.h"
#include "status.h"

/* ---- byte layouts (ggml-common.h; offsets checked below and in test_gguf_quant) ---- */
typedef struct qs_blk_q4_0 {
    uint8_t d[2];   /* fp16 */
    uint8_t qs[16]; /* byte j: code j (low nibble), code j+16 (high) */
} qs_blk_q4_0;
typedef struct qs_blk_q4_1 {
    uint8_t d[2], m[2];
    uint8_t qs[16];
} qs_blk_q4_1;
typedef struct qs_blk_q5_0 {
    uint8_t d[2];
    uint8_t qh[4];  /* little-endian u32: bit j = bit 4 of code j */
    uint8_t qs[16]; /* low nibbles as Q4_0 */
} qs_blk_q5_0;
typedef struct qs_blk_q5_1 {
    uint8_t d[2], m[2];
    uint8_t qh[4];
    uint8_t qs[16];
} qs_blk_q5_1;
typedef struct qs_blk_q8_0 {
    uint8_t d[2];
    uint8_t qs[32]; /* int8 */
} qs_blk_q8_0;
typedef struct qs_blk_q2_K {
    uint8_t scales[16]; /* sub-block j: scale (low nibble), min (high) */
    uint8_t qs[64];     /* 2-bit codes, 4 per byte (see gguf_block.c) */
    uint8_t d[2], dmin[2];
} qs_blk_q2_K;
typedef struct qs_blk_q3_K {
    uint8_t hmask[32];  /* bit 2 of the codes */
    uint8_t qs[64];     /* low 2 bits */
    uint8_t scales[12]; /* 16 6-bit scales */
    uint8_t d[2];
} qs_blk_q3_K;
typedef struct qs_blk_q4_K {
    uint8_t d[2], dmin[2];
    uint8_t scales[12]; /* 8 6-bit scales and 8 6-bit mins */
    uint8_t qs[128];
} qs_blk_q4_K;
typedef struct qs_blk_q5_K {
    uint8_t d[2], dmin[2];
    uint8_t scales[12];
    uint8_t qh[32];
    uint8_t qs[128];
} qs_blk_q5_K;
typedef struct qs_blk_q6_K {
    uint8_t ql[128];    /* low 4 bits */
    uint8_t qh[64];     /* high 2 bits */
    uint8_t scales[16]; /* int8 */
    uint8_t d[2];
} qs_blk_q6_K;

static_assert(sizeof(qs_blk_q4_0) == 18, "Q4_0 block is 18 bytes");
static_assert(sizeof(qs_blk_q4_1) == 20, "Q4_1 block is 20 bytes");
static_assert(sizeof(qs_blk_q5_0) == 22, "Q5_0 block is 22 bytes");
static_assert(sizeof(qs_blk_q5_1) == 24, "Q5_1 block is 24 bytes");
static_assert(sizeof(qs_blk_q8_0) == 34, "Q8_0 block is 34 bytes");
static_assert(sizeof(qs_blk_q2_K) == 84, "Q2_K block is 84 bytes");
static_assert(sizeof(qs_blk_q3_K) == 110, "Q3_K block is 110 bytes");
static_assert(sizeof(qs_blk_q4_K) == 144, "Q4_K block is 144 bytes");
static_assert(sizeof(qs_blk_q5_K) == 176, "Q5_K block is 176 bytes");
static_assert(sizeof(qs_blk_q6_K) == 210, "Q6_K block is 210 bytes");
static_assert(offsetof(qs_blk_q2_K, d) == 80 && offsetof(qs_blk_q3_K, scales) == 96 &&
                  offsetof(qs_blk_q5_K, qh) == 16 && offsetof(qs_blk_q6_K, scales) == 192,
              "K-quant field offsets");

/* ---- the grid of a type ----------------------------------------------------------- */
typedef enum qs_gguf_bias {
    QS_GGUF_BIAS_NONE = 0, /* w = s (q - z) */
    QS_GGUF_BIAS_PLUS = 1, /* w = s q + m            (Q4_1, Q5_1: m fp16) */
    QS_GGUF_BIAS_MINUS = 2 /* w = s q - dmin mn      (Q2_K, Q4_K, Q5_K) */
} qs_gguf_bias;

typedef struct qs_gguf_desc {
    qs_gguf_type type;
    int qk;   /* weights per block: 32 (legacy) or 256 (K) */
    int sub;  /* weights per scale group: 32 (legacy), 16 (Q2_K, Q3_K, Q6_K), 32 (Q4_K, Q5_K) */
    int nsub; /* qk / sub */
    int qmin; /* code range [qmin, qmax] the quantizers write (Q8_0: 1..255, i.e. -127..127) */
    int qmax;
    int zero; /* code offset z: w = s (q - z) */
    int bias; /* qs_gguf_bias */
    int kquant;
    int sclo, schi; /* K-quants: range of the sub-block scale as a signed value (Q3_K -32..31,
                       Q6_K -128..127, Q2_K 0..15, Q4_K/Q5_K 0..63) */
    int mnhi;       /* K-quants with mins: 15 (Q2_K) or 63 */
} qs_gguf_desc;

/* The descriptor of a supported block type, or NULL. */
const qs_gguf_desc *qs_gguf_desc_of(qs_gguf_type t);

/* One block unpacked: what its bytes say. q[i] is the code of weight i of the block in
 * [0, 2^bits); for K-quants sc[j] is the sub-block scale as a signed value (Q3_K: stored
 * code - 32; Q6_K: the int8) and mn[j] the sub-block min code. */
typedef struct qs_gguf_blk {
    uint16_t d;  /* fp16: d (every type) */
    uint16_t dm; /* fp16: m (Q4_1, Q5_1) or dmin (Q2_K, Q4_K, Q5_K); 0 otherwise */
    int16_t sc[16];
    uint8_t mn[16];
    uint8_t q[256];
} qs_gguf_blk;

void qs_gguf_blk_encode(const qs_gguf_desc *t, const qs_gguf_blk *b, uint8_t *bytes);
void qs_gguf_blk_decode(const qs_gguf_desc *t, const uint8_t *bytes, qs_gguf_blk *b);

/* Scale s and bias term of sub-block j, computed as llama.cpp's dequantizer does:
 * s = d (legacy) or d * sc (K-quants, fp16 d widened to f32, one float multiply);
 * bias: m (PLUS) or dmin * mn (MINUS), 0 otherwise. */
static inline void qs_gguf_scale_of(const qs_gguf_desc *t, uint16_t d16, uint16_t dm16, int sc,
                                    int mn, float *s, float *bias) {
    float d = qs_f16_to_f32(d16);
    *s = t->kquant ? d * (float)sc : d;
    *bias = t->bias == QS_GGUF_BIAS_PLUS    ? qs_f16_to_f32(dm16)
            : t->bias == QS_GGUF_BIAS_MINUS ? qs_f16_to_f32(dm16) * (float)mn
                                            : 0.0f;
}
static inline void qs_gguf_sub_scale(const qs_gguf_desc *t, const qs_gguf_blk *b, int j, float *s,
                                     float *bias) {
    qs_gguf_scale_of(t, b->d, b->dm, b->sc[j], b->mn[j], s, bias);
}

/* The dequantized value of code q (llama.cpp's formula and operation order). */
static inline float qs_gguf_deq1(int q, int zero, float s, float bias, int mode) {
    float v = s * (float)(q - zero);
    if (mode == QS_GGUF_BIAS_PLUS) return v + bias;
    if (mode == QS_GGUF_BIAS_MINUS) return v - bias;
    return v;
}

/* Round half to even of x as an int (llama.cpp's nearest_int); exact for |x| < 2^22.
 * Larger |x| are clamped to +-2^22 first (every caller clamps the result to a small range). */
static inline int qs_gguf_nearest(float x) {
    if (!(x < 4194304.0f)) x = 4194304.0f;
    if (!(x > -4194304.0f)) x = -4194304.0f;
    return (int)((x + 12582912.0f) - 12582912.0f);
}

/* The code of w on the grid (s, bias, zero): nearest_int((w - bias) / s) + zero (for MINUS:
 * (w + dmin mn) / s, the requantization step of llama.cpp's K-quants), clamped to
 * [qmin, qmax]. s == 0: every code gives the same value; returns the zero code (clamped). */
static inline int qs_gguf_code(const qs_gguf_desc *t, float w, float s, float bias) {
    int q;
    if (s == 0.0f) {
        q = t->zero;
    } else {
        float x = t->bias == QS_GGUF_BIAS_PLUS    ? (w - bias) / s
                  : t->bias == QS_GGUF_BIAS_MINUS ? (w + bias) / s
                                                  : w / s;
        q = qs_gguf_nearest(x) + t->zero;
    }
    return q < t->qmin ? t->qmin : q > t->qmax ? t->qmax : q;
}

/* ---- block choosers (gguf_rtn.c) ----------------------------------------------------- */

/* Rules for a block's parameters. */
typedef enum qs_gguf_rule {
    QS_GGUF_RULE_REF = 0, /* llama.cpp without importance (quantize_row_*_ref) */
    QS_GGUF_RULE_IMP = 1  /* llama.cpp with importance (quantize_*_impl, the imatrix path) */
} qs_gguf_rule;

/* llama.cpp's quantization of one block of t->qk weights x (imp: (qk) importances or NULL
 * for RULE_REF; sigma2: the legacy types' row statistic sum(x^2)/n over the whole row,
 * unused by the K-quants which compute theirs per super-block). Fills every field of *b. */
void qs_gguf_rtn_block(const qs_gguf_desc *t, int rule, const float *x, const float *imp,
                       float sigma2, qs_gguf_blk *b);

/* The first half of a K-quant block: llama.cpp's float fit of each sub-block (scale and min,
 * and for RULE_IMP the sub-block weight sums) and then d, dmin and the sub-block codes.
 * Used by the GPTQ solve when it reaches a super-block (d and dmin are what it keeps). */
void qs_gguf_k_params(const qs_gguf_desc *t, int rule, const float *x, const float *imp,
                      qs_gguf_blk *b);

/* Float fit of ONE K-quant sub-block x (t->sub weights) under rule: *scale, *min (min >= 0
 * for types with mins, the value subtracted), as llama.cpp computes them inside a
 * super-block; stat is the super-block statistic the rule needs (RULE_IMP: sigma2 of the
 * super-block from qs_gguf_k_sigma2; RULE_REF: unused). */
void qs_gguf_k_fit_sub(const qs_gguf_desc *t, int rule, const float *x, const float *imp,
                       float stat, float *scale, float *min);
/* sigma2 of a super-block as the K-quant importance path defines it (x: 256 weights). */
float qs_gguf_k_sigma2(const qs_gguf_desc *t, const float *x);

/* Legacy types: llama.cpp's row statistic sigma2 = sum(x^2) / n (importance path). */
float qs_gguf_row_sigma2(const float *x, int64_t n);

#endif /* QS_GGUF_INTERNAL_H */
