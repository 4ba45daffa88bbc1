/* gptq_factor.c: GPTQ prepare's factorization on the rank's thread pool: a blocked
 * Cholesky factorization A = L L^T followed by a blocked triangular inverse L^-1, in place,
 * in fixed square blocks of QS_GPTQ_NB. Each step's BLAS calls on blocks (the panel's strsm,
 * the trailing update's ssyrk/sgemm, the inverse's strmm/sgemm/strsm) are the pool's tasks;
 * the small diagonal blocks (spotrf, strtri) run on the calling thread. A block is always
 * computed by one call sequence fixed by n and QS_GPTQ_NB, never by the thread count, so the
 * result is the same bytes for any number of threads (BLAS single-threaded in each task).
 * Flops: n^3/3 + n^3/3, as LAPACK's spotrf + strtri.
 *
 * Layout: A is row-major (n, n); only its lower triangle is read and written (the strict
 * upper part is left as it was). A row-major lower block is a column-major upper one, so the
 * diagonal blocks use LAPACK's column-major 'U' routines on the same memory.
 */
#include <stdlib.h>
#include <string.h>

#include <cblas.h>
#include <lapacke.h>

#include "quant.h"
#include "quant_internal.h"

#define QS_GPTQ_NB 512 /* block size of the pooled factorization */

/* One step of either phase: the block column k (first row/column k0, width w). */
typedef struct fac_step {
    float *A;       /* (n, n) row-major, lower triangle */
    float *S;       /* (n, NB) the inverse's panel scratch, row i at S + i * NB */
    int64_t n, k0, w;
} fac_step;

static int64_t blk_end(int64_t n, int64_t b) {
    int64_t e = (b + 1) * QS_GPTQ_NB;
    return e < n ? e : n;
}

/* Cholesky panel: block row i (below k) of column k: L_ik = A_ik L_kk^-T. */
static qs_status chol_panel_task(void *vctx, int64_t t, int worker, qs_err *err) {
    (void)worker;
    (void)err;
    const fac_step *s = vctx;
    const int64_t n = s->n, i0 = s->k0 + s->w + t * QS_GPTQ_NB, i1 = blk_end(n, i0 / QS_GPTQ_NB);
    cblas_strsm(CblasRowMajor, CblasRight, CblasLower, CblasTrans, CblasNonUnit, (int)(i1 - i0),
                (int)s->w, 1.0f, s->A + s->k0 * n + s->k0, (int)n, s->A + i0 * n + s->k0, (int)n);
    return QS_OK;
}

/* Trailing update tile (bi, bj), bj <= bi, of the blocks after k: A_ij -= L_ik L_jk^T. */
static qs_status chol_update_task(void *vctx, int64_t t, int worker, qs_err *err) {
    (void)worker;
    (void)err;
    const fac_step *s = vctx;
    const int64_t n = s->n, first = (s->k0 + s->w) / QS_GPTQ_NB;
    int64_t bi = 0;
    while (t > bi) t -= ++bi; /* t -> (bi, bj) in row-major order of the lower block triangle */
    const int64_t bj = t;
    const int64_t i0 = (first + bi) * QS_GPTQ_NB, i1 = blk_end(n, first + bi);
    const int64_t j0 = (first + bj) * QS_GPTQ_NB, j1 = blk_end(n, first + bj);
    const float *Li = s->A + i0 * n + s->k0, *Lj = s->A + j0 * n + s->k0; // (., w), ld n
    if (bi == bj)
        cblas_ssyrk(CblasRowMajor, CblasLower, CblasNoTrans, (int)(i1 - i0), (int)s->w, -1.0f, Li,
                    (int)n, 1.0f, s->A + i0 * n + i0, (int)n);
    else
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)(i1 - i0), (int)(j1 - j0),
                    (int)s->w, -1.0f, Li, (int)n, Lj, (int)n, 1.0f, s->A + i0 * n + j0, (int)n);
    return QS_OK;
}

/* Inverse panel: block row i (below k) of column k into the scratch,
 * S_i = -(M_ii L_ik + sum_{k < m < i} M_im L_mk) L_kk^-1, where the blocks right of column k
 * already hold M = L^-1 and column k still holds L. */
static qs_status inv_panel_task(void *vctx, int64_t t, int worker, qs_err *err) {
    (void)worker;
    (void)err;
    const fac_step *s = vctx;
    const int64_t n = s->n, w = s->w, i0 = s->k0 + w + t * QS_GPTQ_NB;
    const int64_t ib = blk_end(n, i0 / QS_GPTQ_NB) - i0;
    float *Si = s->S + i0 * QS_GPTQ_NB; /* (ib, w), ld NB */
    for (int64_t r = 0; r < ib; ++r)
        memcpy(Si + r * QS_GPTQ_NB, s->A + (i0 + r) * n + s->k0, sizeof(float) * (size_t)w);
    cblas_strmm(CblasRowMajor, CblasLeft, CblasLower, CblasNoTrans, CblasNonUnit, (int)ib, (int)w,
                1.0f, s->A + i0 * n + i0, (int)n, Si, QS_GPTQ_NB);
    for (int64_t m0 = s->k0 + w; m0 < i0; m0 += QS_GPTQ_NB)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)ib, (int)w,
                    (int)(blk_end(n, m0 / QS_GPTQ_NB) - m0), 1.0f, s->A + i0 * n + m0, (int)n,
                    s->A + m0 * n + s->k0, (int)n, 1.0f, Si, QS_GPTQ_NB);
    cblas_strsm(CblasRowMajor, CblasRight, CblasLower, CblasNoTrans, CblasNonUnit, (int)ib, (int)w,
                -1.0f, s->A + s->k0 * n + s->k0, (int)n, Si, QS_GPTQ_NB);
    return QS_OK;
}

/* A = L L^T in place; 0, 1 if not positive definite, -1 on a pool error (err set). */
static int chol_blocked(qs_pool *pool, fac_step *s, qs_err *err) {
    const int64_t n = s->n;
    for (s->k0 = 0; s->k0 < n; s->k0 += QS_GPTQ_NB) {
        s->w = blk_end(n, s->k0 / QS_GPTQ_NB) - s->k0;
        float *Akk = s->A + s->k0 * n + s->k0;
        if (LAPACKE_spotrf_work(LAPACK_COL_MAJOR, 'U', (lapack_int)s->w, Akk, (lapack_int)n) != 0)
            return 1;
        const int64_t rest = (n - s->k0 - s->w + QS_GPTQ_NB - 1) / QS_GPTQ_NB; /* blocks below */
        if (rest == 0) break;
        if (qs_pool_run(pool, rest, chol_panel_task, s, err) != QS_OK ||
            qs_pool_run(pool, rest * (rest + 1) / 2, chol_update_task, s, err) != QS_OK)
            return -1;
    }
    return 0;
}

/* L -> L^-1 in place, block columns from the last; -1 on a pool error (err set), 1 if a
 * diagonal block is singular. */
static int inverse_blocked(qs_pool *pool, fac_step *s, qs_err *err) {
    const int64_t n = s->n, nb = (n + QS_GPTQ_NB - 1) / QS_GPTQ_NB;
    for (int64_t k = nb - 1; k >= 0; --k) {
        s->k0 = k * QS_GPTQ_NB;
        s->w = blk_end(n, k) - s->k0;
        const int64_t rest = nb - 1 - k;
        if (rest > 0 && qs_pool_run(pool, rest, inv_panel_task, s, err) != QS_OK) return -1;
        for (int64_t i = s->k0 + s->w; i < n; ++i) /* the panel's rows back into column k */
            memcpy(s->A + i * n + s->k0, s->S + i * QS_GPTQ_NB, sizeof(float) * (size_t)s->w);
        if (LAPACKE_strtri_work(LAPACK_COL_MAJOR, 'U', 'N', (lapack_int)s->w,
                                s->A + s->k0 * n + s->k0, (lapack_int)n) != 0)
            return 1;
    }
    return 0;
}

int qs_gptq_chol_inverse(qs_pool *pool, float *A, int64_t n, qs_err *err) {
    fac_step s = {A, NULL, n, 0, 0};
    int rc = chol_blocked(pool, &s, err);
    if (rc != 0) return rc;
    s.S = qs_malloc(sizeof(float) * (size_t)n * QS_GPTQ_NB, err, "GPTQ inverse panel");
    if (!s.S) return -1;
    rc = inverse_blocked(pool, &s, err);
    free(s.S);
    return rc;
}
