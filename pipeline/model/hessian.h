/* hessian.h: input statistics of a linear group for GPTQ: H = 2/N sum_chunks X^T X,
 * per-channel absmax and sum of squares.
 *
 * The unit is a chunk partial. For each chunk (rows, d) in chunk order:
 *   qs_hess_partial(x, rows, d, tile)     one cblas_ssyrk (beta = 0) -> f32 tile (upper)
 *   qs_hess_add(acc, tile, d)             acc (f64, upper) += tile
 *   qs_chan_stats_partial / _add          the same for absmax (max) and sum of squares (f64)
 * and at the end qs_hess_finalize(acc, d, N) scales by 2/N and mirrors the upper triangle.
 * The partial is a pure function of the chunk's rows, and chunk partials are added in
 * chunk order, so the result does not depend on where or on which thread a chunk ran.
 *
 * Accuracy (measured, docs/model.md): one f32 ssyrk over a whole chunk of up to 65536
 * rows stays within 1.3e-7 relative Frobenius of an fp64 Xᵀ X, so no row blocking is
 * done inside a chunk; the f64 accumulation across chunks keeps the total error flat in N.
 *
 * Ownership: all buffers belong to the caller. Single-threaded BLAS by caller contract.
 */
#ifndef QS_MODEL_HESSIAN_H
#define QS_MODEL_HESSIAN_H

#include <stdint.h>

/* tile (d, d) f32, upper triangle (row i, columns j >= i) = x^T x; x (rows, d).
 * The strict lower triangle of tile is not written. rows == 0 gives a zero triangle. */
void qs_hess_partial(const float *x, int64_t rows, int64_t d, float *tile);

/* acc (d, d) f64 upper triangle += tile (d, d) f32 upper triangle. */
void qs_hess_add(double *acc, const float *tile, int64_t d);

/* acc (d, d) f64 upper triangle += part (d, d) f64 upper triangle (for partials that were
 * shipped or summed as f64). */
void qs_hess_add_f64(double *acc, const double *part, int64_t d);

/* acc (d, d): H = (2 / n) * acc on the upper triangle, then mirrored into the lower
 * triangle, giving the full symmetric GPTQ Hessian. n = total rows (tokens) seen. */
void qs_hess_finalize(double *acc, int64_t d, int64_t n);

/* Per-channel statistics of one chunk x (rows, d), overwriting the outputs:
 * absmax (d) = max_r |x[r][c]|, sumsq (d) = sum_r x[r][c]^2 in f64 (row order).
 * A NaN input makes that channel's absmax NaN (and keeps it NaN through qs_chan_stats_add),
 * so callers can detect non-finite activations. */
void qs_chan_stats_partial(const float *x, int64_t rows, int64_t d, float *absmax,
                           double *sumsq);

/* Running statistics (d) updated with a chunk's partial: absmax = max, sumsq += . */
void qs_chan_stats_add(float *absmax, double *sumsq, const float *part_absmax,
                       const double *part_sumsq, int64_t d);

#endif /* QS_MODEL_HESSIAN_H */
