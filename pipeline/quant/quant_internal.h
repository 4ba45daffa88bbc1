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
/* U upper with A^-1 = U^T U (A (n, n) symmetric positive definite), in place of Arev = J A J
 * ((n, n) row-major, both triangles filled: A with both indices reversed, its n^2 elements in
 * reverse order, as the caller writes it), by one Cholesky and one triangular inverse on
 * fixed tiles (chol_tiled.c) run on `pool` (may be NULL). *ok = 0 (and Arev undefined) when
 * A is not numerically positive definite or U has a non-finite entry; QS_ERR_RUNTIME when
 * out of memory. */
qs_status qs_chol_inv_upper_reversed(qs_pool *pool, float *Arev, int64_t n, int *ok,
                                     qs_err *err);
/* Next damp fraction after a failed factorization (x10, capped at damp_max; 0 jumps to
 * damp_max), or -1 when damp_max was already tried. */
double qs_gptq_next_damp(double cur, double damp_max);
/* Argument checks of quantize_rows and its twin (alignment, act_order, finite W). */
qs_status qs_gptq_check_rows(const qs_gptq_factor *f, const qs_quant_params *p,
                             const float *W, int64_t d_out, int64_t r0, int64_t r1,
                             qs_err *err);

/* The grid a GPTQ solve rounds onto: the group rule of quant.h (qs_gptq_plain below) or a
 * GGUF block type (gguf_gptq.c). The solve owns the column loop and the error feedback; the
 * grid owns the parameters. The solve calls
 *   start(level, k, cur)  when it reaches column k (quantization order) that begins a dynamic
 *                         parameter group of length glen[level]: cur (R, len) row-major holds
 *                         the current (fully error-updated) weights of columns [k, k + len),
 *                         len = min(glen[level], n - k); the outer level (1) is started
 *                         before the inner (0) when both begin at k;
 *   column(k, w)          for every column k: w (R) current weights of column k, writes
 *                         codes (R) and the dequantized values dq (R).
 * glen: [0] inner, [1] outer groups (the outer a multiple of the inner), 0 = none. Groups
 * run in quantization order from column 0. Parameters fixed up front are the grid's own
 * business (done before the solve). */
typedef struct qs_gptq_grid qs_gptq_grid;
struct qs_gptq_grid {
    int64_t glen[2];
    qs_status (*start)(qs_gptq_grid *g, int level, int64_t k, const float *cur, int64_t len,
                       int64_t R, int64_t row0, qs_err *err);
    void (*column)(qs_gptq_grid *g, int64_t k, const float *w, int64_t R, uint8_t *codes,
                   float *dq);
};

/* Work buffers of the blocked solve (gptq.c) for tiles of up to R rows. */
typedef struct qs_gptq_work qs_gptq_work;
qs_status qs_gptq_work_alloc(qs_gptq_work **w, int64_t R, int64_t n, int64_t block_size,
                             int64_t max_glen, qs_err *err);
void qs_gptq_work_free(qs_gptq_work *w);

/* The blocked GPTQ solve of one tile of R rows (gptq.c): W (R, n) natural column order (row
 * row0 of the layer first); writes codes (R, n) and, if wq is not NULL, wq (R, n), natural
 * order, and, if e1sq is not NULL, e1sq (R) (qs_quant_out's). Lazy blocks of block_size columns are cut so that every dynamic group starting
 * inside a block ends inside it (its start then sees fully updated weights). */
qs_status qs_gptq_solve_tile(const qs_gptq_factor *f, int64_t block_size, qs_gptq_work *w,
                             qs_gptq_grid *g, const float *W, int64_t R, int64_t row0,
                             uint8_t *codes, float *wq, double *e1sq, qs_err *err);
/* Its scalar twin (gptq_ref.c): column by column over R rows, updates kept in double. */
qs_status qs_gptq_solve_ref(const qs_gptq_factor *f, qs_gptq_grid *g, const float *W,
                            int64_t R, int64_t row0, uint8_t *codes, float *wq, qs_err *err);

/* The group rule of quant.h as a grid (gptq_grid.c). */
typedef struct qs_gptq_plain {
    qs_gptq_grid base;
    const qs_quant_params *p;
    const qs_gptq_factor *f;
    uint16_t *scales; /* (R, ng) output, the tile's first row */
    int32_t *zeros;   /* (R, ng) */
    int64_t ng, gs;
    int dyn;          /* dynamic groups (parameters in the loop) */
    float maxq;
    float *cs, *cid, *cz; /* (R) current group's scale, 1/scale (0 for 0), zero */
    int64_t curg;
} qs_gptq_plain;
/* Sets up the grid for a tile of R rows: W (R, n) natural order (the tile's rows),
 * scales/zeros (R, ng) its outputs, scratch (3 R) floats owned by the caller. Parameters
 * that are known up front (group -1, static groups) are computed here. */
qs_status qs_gptq_plain_init(qs_gptq_plain *g, const qs_gptq_factor *f, const qs_quant_params *p,
                             const float *W, int64_t R, int64_t row0, uint16_t *scales,
                             int32_t *zeros, float *scratch, qs_err *err);
#endif

#endif /* QS_QUANT_INTERNAL_H */
