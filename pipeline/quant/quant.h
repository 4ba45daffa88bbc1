/* quant.h: numerics of weight quantization (RTN, GPTQ, dequantization, layer error).
 *
 * Kernels only: pointers, sizes and row ranges in; no MPI, no files, no global state.
 * Conventions (PyTorch's): a weight W is (d_out, d_in) row-major, its Hessian H is
 * (d_in, d_in) row-major and symmetric. The quantizer's layout-neutral output for a row
 * range [r0, r1) of W is
 *   codes  (r1-r0, d_in)    uint8   in [0, 2^bits - 1], natural column order
 *   scales (r1-r0, ngroups) uint16  fp16 bits (round-to-nearest-even), rounded BEFORE codes
 *   zeros  (r1-r0, ngroups) int32   zero points in [0, 2^bits - 1] ([1, ..] with zero_min1)
 *   wq     (r1-r0, d_in)    float   the dequantized weight  scale * (code - zero)
 *   g_idx  (d_in,)          int32   group of each input column
 * with ngroups = ceil(d_in / group_size) (1 for group_size -1). Output pointers point at the
 * first row of the range (callers offset them); the caller allocates and frees all of them.
 * Packing into the GPTQ checkpoint layout is pack.h's job.
 *
 * Determinism: GPTQ rows are independent given H. qs_gptq_quantize_rows processes rows in
 * fixed tiles of params->row_block rows starting at multiples of row_block (relative to row
 * 0 of the layer), with single-threaded BLAS (the caller sets OpenBLAS threads), so splitting
 * a layer's rows into calls at tile boundaries gives the same bytes as one call.
 */
#ifndef QS_QUANT_H
#define QS_QUANT_H

#include <stddef.h>
#include <stdint.h>

#include "half.h" /* qs_f32_to_f16 / qs_f16_to_f32: scales are fp16 bits */
#include "pool.h" /* qs_pool: the tiles of qs_gptq_prepare_pool */
#include "status.h"

#define QS_QUANT_MIN_BITS 2
#define QS_QUANT_MAX_BITS 8
#define QS_QUANT_NAME_MAX 32

/* One quantization candidate and the solver knobs. */
typedef struct qs_quant_params {
    int bits;          /* 2..8 */
    int group_size;    /* -1 (one group per output row over all inputs) or >= 1 */
    int sym;           /* symmetric: scale from max |w|, zero = 2^(bits-1) */
    int act_order;     /* GPTQ: quantize columns by descending diag(H) (desc_act) */
    int static_groups; /* group params from the unpermuted W in natural column groups */
    double damp;       /* GPTQ: fraction of mean diag(H) added to the diagonal (0.01) */
    double damp_max;   /* GPTQ: cap of the automatic x10 raising of damp (1.0) */
    int block_size;    /* GPTQ: lazy column block B (128) */
    int zero_min1;     /* asymmetric zero points kept in [1, 2^bits-1] (GPTQ v1 export) */
    int row_block;     /* GPTQ: rows per fixed solve tile (256) */
} qs_quant_params;

/* Fills the defaults: 4 bits, group 128, asym, no act-order, damp 0.01 .. 1.0, B 128,
 * zero_min1 on (v1 is the default export), row_block 256. */
void qs_quant_params_default(qs_quant_params *p);

/* QS_ERR_INPUT naming the field if a parameter is out of range. */
qs_status qs_quant_params_check(const qs_quant_params *p, qs_err *err);

/* Writes the candidate's name ("w4g128", "w3g-1") into buf (size >= QS_QUANT_NAME_MAX);
 * returns buf. Only bits and group_size take part in the name. */
char *qs_quant_name(const qs_quant_params *p, char *buf, size_t size);

/* Number of groups of a row of d_in columns: ceil(d_in / group_size), 1 for -1. */
int64_t qs_quant_ngroups(int64_t d_in, int group_size);

/* Parameters of one group from the min and max of its values (the GPTQ reference rule:
 * min <= 0 <= max clamp; asym scale = (max-min)/maxq, zero = round(-min/scale); sym scale =
 * 2 max|w| / maxq, zero = (maxq+1)/2). The scale is rounded to fp16 first and the zero is
 * derived from the rounded scale. With zero_min1 an asymmetric zero of 0 becomes 1 and the
 * scale grows to keep max representable. Returns 0, or -1 if the scale overflows fp16. */
int qs_quant_group_params(const qs_quant_params *p, float xmin, float xmax, uint16_t *scale,
                          int32_t *zero);

/* Dequantizes rows through g_idx: wq[r, j] = scale[r, g_idx[j]] * (codes[r, j] - zero[r, g]).
 * Bit-for-bit what the quantizers write to their wq. Shapes as in the file comment. */
void qs_quant_dequant_rows(const uint8_t *codes, const uint16_t *scales, const int32_t *zeros,
                           const int32_t *g_idx, int64_t nrows, int64_t d_in, int64_t ngroups,
                           float *wq);

/* Outputs of a quantizer for rows [r0, r1); every pointer points at row r0 of its array.
 * wq may be NULL (not written). */
typedef struct qs_quant_out {
    uint8_t *codes;   /* (r1-r0, d_in) */
    uint16_t *scales; /* (r1-r0, ngroups) fp16 bits */
    int32_t *zeros;   /* (r1-r0, ngroups) */
    float *wq;        /* (r1-r0, d_in) or NULL */
    double *e1sq;     /* (r1-r0) or NULL; GPTQ only: per row, the sum over columns of the
                         solve's squared scaled errors ((w - q) / U_kk)^2, which is the row's
                         error under the damped H (qs_gptq_error_rows) */
} qs_quant_out;

/* ---- RTN: round-to-nearest in natural column groups (act_order is ignored). ---------- */

/* Quantizes nrows rows of W ((nrows, d_in), row-major). QS_ERR_INPUT on a non-finite
 * weight (naming row and column) or a scale that overflows fp16. g_idx[j] = j / group. */
qs_status qs_rtn_quantize_rows(const qs_quant_params *p, const float *W, int64_t nrows,
                               int64_t d_in, qs_quant_out *out, qs_err *err);
/* Plain scalar twin of qs_rtn_quantize_rows (same bytes). */
qs_status qs_rtn_quantize_rows_ref(const qs_quant_params *p, const float *W, int64_t nrows,
                                   int64_t d_in, qs_quant_out *out, qs_err *err);

/* g_idx of natural column groups: g_idx[j] = j / group_size (0 for -1). (d_in,) */
void qs_quant_g_idx_natural(int64_t d_in, int group_size, int32_t *g_idx);

/* ---- GPTQ (Frantar et al. 2022) ---------------------------------------------------- */

/* How the Hessian was made factorizable. */
typedef struct qs_gptq_info {
    double damp;      /* fraction of mean diag(H) finally used */
    double damp_abs;  /* the value added to the diagonal */
    int nraise;       /* x10 raises of damp before the factorization succeeded */
    int fp64;         /* 1 if the fp32 factorization failed at every damp and fp64 was used */
    int64_t ndead;    /* input channels with H_ii == 0 (set to 1, W[:, i] zeroed) */
} qs_gptq_info;

/* Per-layer state shared by every row tile (and every candidate with the same act_order,
 * damp and damp_max). Owns its arrays; release with qs_gptq_factor_free. */
typedef struct qs_gptq_factor {
    int64_t n;        /* d_in */
    int act_order;    /* as prepared */
    float *U;         /* (n, n) row-major upper Cholesky factor of (H+damp I)^-1 in
                         quantization order (Hinv = U^T U); strictly lower part zero */
    int32_t *perm;    /* (n) position -> column (identity without act_order) */
    uint8_t *dead;    /* (n) 1 where H_ii == 0 (natural column order) */
    qs_gptq_info info;
} qs_gptq_factor;

/* Prepares the factor of H ((n, n), symmetric, not modified; the finite check reads all of
 * it, the factorization only the upper triangle): dead channels, act-order
 * permutation (descending diag(H), ties by index), damping (p->damp, raised x10 up to
 * p->damp_max while the fp32 factorization fails, then the same in fp64). The factor is
 * U = J chol(J A J)^-1 J (J the reversal, A the damped permuted H): one Cholesky and one
 * triangular inverse, in fp32 on fixed tiles run as tasks of `pool` (NULL: the calling
 * thread; the bytes do not depend on the pool's size), in fp64 by LAPACK on the whole matrix.
 * QS_ERR_INPUT if H has a non-finite entry or is not factorizable even at damp_max in fp64.
 * On failure `f` is zeroed (safe to free). BLAS/LAPACK single-threaded (set by the caller).
 * qs_gptq_prepare is qs_gptq_prepare_pool(NULL, ...). */
qs_status qs_gptq_prepare_pool(qs_pool *pool, const float *H, int64_t n,
                               const qs_quant_params *p, qs_gptq_factor *f, qs_err *err);
qs_status qs_gptq_prepare(const float *H, int64_t n, const qs_quant_params *p,
                          qs_gptq_factor *f, qs_err *err);
/* Plain scalar twin (fp64 Cholesky, inverse, Cholesky by the textbook loops). */
qs_status qs_gptq_prepare_ref(const float *H, int64_t n, const qs_quant_params *p,
                              qs_gptq_factor *f, qs_err *err);
/* Releases the factor's arrays and zeroes it (a zeroed factor is fine). */
void qs_gptq_factor_free(qs_gptq_factor *f);

/* g_idx of a GPTQ layer: static groups or no act-order: j / group; act-order: position of
 * column j in the quantization order / group (0 for group -1). (n,) */
void qs_gptq_g_idx(const qs_gptq_factor *f, const qs_quant_params *p, int32_t *g_idx);

/* Quantizes rows [r0, r1) of a (d_out, d_in = f->n) weight; W points at row r0
 * ((r1-r0, d_in) row-major, not modified). r0 must be a multiple of p->row_block and r1 a
 * multiple of it or d_out. Blocked GPTQ: lazy blocks of p->block_size columns with gemm
 * error propagation; group parameters come from the fully updated weights (as the
 * unblocked algorithm). QS_ERR_INPUT on non-finite weights; p->act_order must match f. */
qs_status qs_gptq_quantize_rows(const qs_gptq_factor *f, const qs_quant_params *p,
                                const float *W, int64_t d_out, int64_t r0, int64_t r1,
                                qs_quant_out *out, qs_err *err);
/* Plain scalar twin: the paper's column-by-column loop, no BLAS, no blocks. */
qs_status qs_gptq_quantize_rows_ref(const qs_gptq_factor *f, const qs_quant_params *p,
                                    const float *W, int64_t d_out, int64_t r0, int64_t r1,
                                    qs_quant_out *out, qs_err *err);

/* ---- error of a quantized layer ----------------------------------------------------- */

/* Per-row errors of GPTQ rows from the solve's own sums, without a matrix product. GPTQ
 * keeps W' - Q = Err U (W' the weights with dead inputs zeroed, Err the scaled errors, U the
 * factor, A^-1 = U^T U with A the damped H), so dW A dW^T = |Err_r|^2 = e1sq[r] and the
 * error under H is e1sq[r] - sum over j of (damp_abs + dead_j) (W'_rj - Q_rj)^2 (dead
 * inputs' diagonal is 1 in A, 0 in H). Exact in exact arithmetic; in fp32 the solve's
 * rounding leaves a relative difference of order 1e-5 (test_quant_gptq: at most 1.4e-5
 * over its 252 configurations). Returns 0, or -1
 * when some row's subtracted term exceeds half of e1sq (heavy damping: the difference would
 * lose digits) or a value is not finite: then use qs_quant_error_rows. W, Wq point at the
 * same first row ((nrows, f->n), natural column order). */
int qs_gptq_error_rows(const qs_gptq_factor *f, const float *W, const float *Wq,
                       const double *e1sq, int64_t nrows, double *err_rows);

/* Per-row quadratic forms for rows of a layer: err_rows[r] = dW_r H dW_r^T with
 * dW = W - Wq (Wq NULL: dW = W), and (if wnorm_rows != NULL) wnorm_rows[r] = W_r H W_r^T. W, Wq point at the
 * same first row ((nrows, n)); H is (n, n). Rows are processed with sgemm in fixed tiles of
 * row_tile rows from the given first row, the dot products accumulate in double: call on
 * ranges that start at multiples of row_tile for bytes independent of the split. */
qs_status qs_quant_error_rows(const float *H, int64_t n, const float *W, const float *Wq,
                              int64_t nrows, int64_t row_tile, double *err_rows,
                              double *wnorm_rows, qs_err *err);
/* Plain scalar twin (double loops). */
qs_status qs_quant_error_rows_ref(const float *H, int64_t n, const float *W, const float *Wq,
                                  int64_t nrows, double *err_rows, double *wnorm_rows,
                                  qs_err *err);
/* Sum of v[0..n) in index order (the canonical order of a layer's total). */
double qs_quant_sum(const double *v, int64_t n);
/* err / wnorm, or 0 when wnorm == 0. */
double qs_quant_relative(double err, double wnorm);

#endif /* QS_QUANT_H */
