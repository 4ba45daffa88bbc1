/* hessian.h: input statistics of a linear group for GPTQ: H = 2/N sum_chunks X^T X,
 * per-channel absmax and sum of squares.
 *
 * The unit is a chunk partial. For each chunk (rows, d) in chunk order:
 *   qs_hess_partial(x, rows, d, tile)     f32 tile (upper) = x^T x over all rows of the chunk,
 *                                         in fixed square blocks of QS_HESS_BLOCK columns
 *                                         (ssyrk on the diagonal, sgemm above; one pool task
 *                                         each with qs_hess_partial_pool)
 *   qs_hess_add(acc, tile, d)             acc (f64, upper) += tile
 *   qs_chan_stats_partial / _add          the same for absmax (max) and sum of squares (f64)
 * and at the end qs_hess_finalize(acc, d, N) scales by 2/N and mirrors the upper triangle
 * (the stages use qs_hess_finalize_f32_pool: the same values rounded to f32, on the pool).
 * The partial is a pure function of the chunk's rows, and chunk partials are added in
 * chunk order, so the result does not depend on where or on which thread a chunk ran.
 *
 * Accuracy (measured, docs/model.md): one f32 ssyrk over a whole chunk of up to 65536
 * rows stays within 1.3e-7 relative Frobenius of an fp64 Xᵀ X, so no row blocking is
 * done inside a chunk (the blocks split the output, not the sum over rows); the f64
 * accumulation across chunks keeps the total error flat in N.
 *
 * Threads: the blocks of the partial and the column blocks of the channel statistics are
 * disjoint pieces of the output, each computed whole by one task, so the bytes do not
 * depend on the pool's thread count (NULL pool: the same tasks in order).
 *
 * Ownership: all buffers belong to the caller. Single-threaded BLAS by caller contract.
 */
#ifndef QS_MODEL_HESSIAN_H
#define QS_MODEL_HESSIAN_H

#include <stdint.h>

#include "pool.h"
#include "status.h"

/* Columns per square block of a Hessian partial. */
#define QS_HESS_BLOCK 256

/* tile (d, d) f32, upper triangle (row i, columns j >= i) = x^T x; x (rows, d).
 * The strict lower triangle of tile is not written. rows == 0 gives a zero triangle. */
void qs_hess_partial(const float *x, int64_t rows, int64_t d, float *tile);

/* qs_hess_partial with its blocks as tasks on pool (may be NULL); the same bytes. */
qs_status qs_hess_partial_pool(qs_pool *pool, const float *x, int64_t rows, int64_t d,
                               float *tile, qs_err *err);

/* acc (d, d) f64 upper triangle += tile (d, d) f32 upper triangle. */
void qs_hess_add(double *acc, const float *tile, int64_t d);

/* qs_hess_add with rows of the triangle in blocks of QS_HESS_BLOCK as tasks on pool (may be
 * NULL); element-wise, so the same bytes. */
qs_status qs_hess_add_pool(qs_pool *pool, double *acc, const float *tile, int64_t d,
                           qs_err *err);

/* acc (d, d) f64 upper triangle += part (d, d) f64 upper triangle (for partials that were
 * shipped or summed as f64). */
void qs_hess_add_f64(double *acc, const double *part, int64_t d);

/* acc (d, d): H = (2 / n) * acc on the upper triangle, then mirrored into the lower
 * triangle, giving the full symmetric GPTQ Hessian. n = total rows (tokens) seen. */
void qs_hess_finalize(double *acc, int64_t d, int64_t n);

/* out (d, d) f32 = the full symmetric H of qs_hess_finalize rounded to f32, read from acc's
 * upper triangle (acc is not changed), rows in blocks of QS_HESS_BLOCK as tasks on pool (may
 * be NULL): the same bytes as qs_hess_finalize followed by a (float) cast, for any thread
 * count. */
qs_status qs_hess_finalize_f32_pool(qs_pool *pool, const double *acc, int64_t d, int64_t n,
                                    float *out, qs_err *err);

/* Per-channel statistics of one chunk x (rows, d), overwriting the outputs:
 * absmax (d) = max_r |x[r][c]|, sumsq (d) = sum_r x[r][c]^2 in f64 (row order).
 * A NaN input makes that channel's absmax NaN (and keeps it NaN through qs_chan_stats_add),
 * so callers can detect non-finite activations. */
void qs_chan_stats_partial(const float *x, int64_t rows, int64_t d, float *absmax,
                           double *sumsq);

/* qs_chan_stats_partial over column blocks of QS_HESS_BLOCK as tasks on pool (may be
 * NULL); the same bytes. */
qs_status qs_chan_stats_partial_pool(qs_pool *pool, const float *x, int64_t rows, int64_t d,
                                     float *absmax, double *sumsq, qs_err *err);

/* Running statistics (d) updated with a chunk's partial: absmax = max, sumsq += . */
void qs_chan_stats_add(float *absmax, double *sumsq, const float *part_absmax,
                       const double *part_sumsq, int64_t d);

#endif /* QS_MODEL_HESSIAN_H */
