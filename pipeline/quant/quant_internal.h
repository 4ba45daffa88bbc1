/* quant_internal.h: the scalar quantize/dequantize steps every quantizer in quant/ uses,
 * so the optimized kernels and their _ref twins round exactly alike. Not a public header. */
#ifndef QS_QUANT_INTERNAL_H
#define QS_QUANT_INTERNAL_H

#include <stdint.h>

#include "status.h"

/* QS_ERR_INPUT naming the first non-finite weight of W ((nrows, d_in)); rows are
 * reported as row0 + r. (rtn.c) */
qs_status qs_quant_check_finite(const float *W, int64_t nrows, int64_t d_in, int64_t row0,
                                qs_err *err);

/* Round to nearest, ties to even, without libm: exact for |x| < 2^22 (larger floats are
 * integers already). Needs -ffp-contract=off and no -ffast-math (the house flags). */
static inline float qs_rne(float x) {
    if (!(x > -4194304.0f && x < 4194304.0f)) return x;
    return (x + 12582912.0f) - 12582912.0f;
}

/* Code of w in a group with fp16-rounded scale s (as float), id = s ? 1/s : 0, zero z:
 * clamp(round(w * id) + z, 0, maxq); an all-zero group (s == 0) gets code 0. */
static inline int qs_quant1(float w, float s, float id, float z, float maxq) {
    if (s == 0.0f) return 0;
    float x = w * id;
    if (x > 1024.0f) x = 1024.0f; /* beyond any code: keeps qs_rne in its exact range */
    if (x < -1024.0f) x = -1024.0f;
    float q = qs_rne(x) + z;
    if (q < 0.0f) q = 0.0f;
    if (q > maxq) q = maxq;
    return (int)q;
}

/* Dequantized value: s * (code - zero); the only formula for w_q in qshard. */
static inline float qs_dequant1(int code, float s, int32_t z) {
    return s * (float)(code - z);
}

/* GPTQ pieces shared by gptq.c and gptq_ref.c (declared with quant.h's types). */
#ifdef QS_QUANT_H
/* First half of prepare: checks, dead channels, act-order permutation. Fills f->n,
 * act_order, perm, dead, info.ndead, and diag ((n), dead fixed to 1, natural order);
 * *mean_diag = mean of that diag. */
qs_status qs_gptq_prepare_common(const float *H, int64_t n, const qs_quant_params *p,
                                 qs_gptq_factor *f, double *diag, double *mean_diag,
                                 qs_err *err);
/* Next damp fraction after a failed factorization (x10, capped at damp_max; 0 jumps to
 * damp_max), or -1 when damp_max was already tried. */
double qs_gptq_next_damp(double cur, double damp_max);
/* Argument checks of quantize_rows and its twin (alignment, act_order, finite W). */
qs_status qs_gptq_check_rows(const qs_gptq_factor *f, const qs_quant_params *p,
                             const float *W, int64_t d_out, int64_t r0, int64_t r1,
                             qs_err *err);
#endif

#endif /* QS_QUANT_INTERNAL_H */
