/* chol_tiled.c: the factor GPTQ needs, U upper with (A)^-1 = U^T U, from one Cholesky and one
 * triangular inverse, on fixed square tiles run as pool tasks (docs/quant.md "GPTQ").
 *
 * With J the reversal permutation, let L L^T = J A J (lower Cholesky of the reversed matrix)
 * and X = L^-1. Then U = J X J is upper triangular with a positive diagonal and
 * U^T U = J L^-T L^-1 J = J (J A J)^-1 J = A^-1: the unique upper factor of the inverse, the
 * same matrix LAPACK's chain potrf -> potri -> potrf gives, for 2/3 n^3 FLOP instead of
 * 4/3 n^3 and without forming A^-1. Reversing both indices of a row-major (n, n) matrix is
 * reversing its n^2 elements, so J A J and J X J are one in-place reversal each.
 *
 * Tiles are QS_CHOL_TILE square (the last row/column of tiles may be smaller); they depend
 * only on n. Cholesky, right-looking by tile columns k: potrf of the diagonal tile; the
 * panel tiles below it solved (strsm) as pool tasks; the trailing tiles updated
 * (ssyrk / sgemm with the panel) as pool tasks. Inverse, in place by tile columns j from the
 * last: the diagonal tile inverted (strtri); the column's tiles below it, one task per tile
 * row i, X_ij = -(sum over k in (j, i] of X_ik L_kj) X_jj as one sgemm over the tile row's
 * finished columns and one strmm, reading column j of L from a copy. Every tile is written
 * by one task, in the same order of steps for any thread count, and every BLAS call has a
 * shape fixed by (n, tile): the bytes do not depend on the pool's size. The reversals and
 * the final check are pool tasks too (pieces of the matrix; exact operations); GPTQ's
 * prepare writes J A J directly (gptq.c fill_task) and calls qs_chol_inv_upper_reversed.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>
#include <lapacke.h>

#include "pool.h"
#include "quant.h"
#include "quant_internal.h"

#ifndef QS_CHOL_TILE
#define QS_CHOL_TILE 512
#endif

/* Shared state of one factorization's pool tasks. */
typedef struct chol_ctx {
    float *A;       /* (n, n) row-major, the matrix being factored / inverted */
    int64_t n, nt;  /* size, tiles per side */
    int64_t k;      /* current tile column */
    float *panel;   /* (n, QS_CHOL_TILE) copy of the current column of L below its diagonal */
    int64_t *pair;  /* (2 * ntiles^2) (i, j) pairs of the trailing update */
} chol_ctx;

static int64_t tile0(int64_t t) { return t * QS_CHOL_TILE; }
static int64_t tlen(const chol_ctx *c, int64_t t) {
    int64_t e = tile0(t + 1) < c->n ? tile0(t + 1) : c->n;
    return e - tile0(t);
}
static float *tile(const chol_ctx *c, int64_t i, int64_t j) {
    return c->A + tile0(i) * c->n + tile0(j);
}

/* Panel task: A_ik <- A_ik L_kk^-T for tile row i = k + 1 + task. */
static qs_status panel_task(void *vctx, int64_t task, int worker, qs_err *err) {
    (void)worker;
    (void)err;
    const chol_ctx *c = vctx;
    const int64_t i = c->k + 1 + task, k = c->k;
    cblas_strsm(CblasRowMajor, CblasRight, CblasLower, CblasTrans, CblasNonUnit,
                (int)tlen(c, i), (int)tlen(c, k), 1.0f, tile(c, k, k), (int)c->n,
                tile(c, i, k), (int)c->n);
    return QS_OK;
}

/* Trailing task: A_ij -= A_ik A_jk^T for the pair (i, j), j <= i, of this task. */
static qs_status trail_task(void *vctx, int64_t task, int worker, qs_err *err) {
    (void)worker;
    (void)err;
    const chol_ctx *c = vctx;
    const int64_t i = c->pair[2 * task], j = c->pair[2 * task + 1], k = c->k;
    const int n = (int)c->n;
    if (i == j)
        cblas_ssyrk(CblasRowMajor, CblasLower, CblasNoTrans, (int)tlen(c, i), (int)tlen(c, k),
                    -1.0f, tile(c, i, k), n, 1.0f, tile(c, i, i), n);
    else
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)tlen(c, i), (int)tlen(c, j),
                    (int)tlen(c, k), -1.0f, tile(c, i, k), n, tile(c, j, k), n, 1.0f,
                    tile(c, i, j), n);
    return QS_OK;
}

/* Inverse task: tile row i = nt - 1 - task of column k (the longest rows first, so the pool's
 * threads finish a column together): X_ik = -(X_i,(k,i] P_(k,i]) X_kk. */
static qs_status inv_task(void *vctx, int64_t task, int worker, qs_err *err) {
    (void)worker;
    (void)err;
    const chol_ctx *c = vctx;
    const int64_t k = c->k, i = c->nt - 1 - task, n = c->n, nk = tlen(c, k);
    const int64_t c0 = tile0(k + 1), kk = tile0(i) + tlen(c, i) - c0; /* columns (k, i] */
    /* panel rows are rows c0.. of column k's tiles */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)tlen(c, i), (int)nk, (int)kk,
                1.0f, c->A + tile0(i) * n + c0, (int)n, c->panel, QS_CHOL_TILE, 0.0f,
                tile(c, i, k), (int)n);
    cblas_strmm(CblasRowMajor, CblasRight, CblasLower, CblasNoTrans, CblasNonUnit,
                (int)tlen(c, i), (int)nk, -1.0f, tile(c, k, k), (int)n, tile(c, i, k), (int)n);
    return QS_OK;
}

/* Lower Cholesky in place (row-major; the strict upper triangle of every diagonal tile is
 * zeroed, the tiles above the diagonal are left as they were). *ok = 0 when A is not
 * positive definite. */
static qs_status chol_lower(qs_pool *pool, chol_ctx *c, int *ok, qs_err *err) {
    qs_status st = QS_OK;
    *ok = 0;
    for (int64_t k = 0; k < c->nt; ++k) {
        c->k = k;
        const int64_t nk = tlen(c, k);
        /* column-major 'U' on the row-major tile = row-major lower */
        if (LAPACKE_spotrf_work(LAPACK_COL_MAJOR, 'U', (lapack_int)nk, tile(c, k, k),
                                (lapack_int)c->n) != 0)
            return QS_OK;
        const int64_t m = c->nt - k - 1;
        if (m == 0) break;
        QS_CHECK(qs_pool_run(pool, m, panel_task, c, err));
        int64_t np = 0;
        for (int64_t i = k + 1; i < c->nt; ++i)
            for (int64_t j = k + 1; j <= i; ++j) {
                c->pair[2 * np] = i;
                c->pair[2 * np + 1] = j;
                np++;
            }
        QS_CHECK(qs_pool_run(pool, np, trail_task, c, err));
    }
    for (int64_t t = 0; t < c->nt; ++t)
        for (int64_t r = 0; r < tlen(c, t); ++r)
            memset(tile(c, t, t) + r * c->n + r + 1, 0,
                   sizeof(float) * (size_t)(tlen(c, t) - r - 1));
    *ok = 1;
done:
    return st;
}

/* In-place inverse of the lower factor (row-major; diagonal tiles' upper parts are zero).
 * *ok = 0 when a diagonal tile is singular. */
static qs_status inv_lower(qs_pool *pool, chol_ctx *c, int *ok, qs_err *err) {
    qs_status st = QS_OK;
    *ok = 0;
    for (int64_t k = c->nt - 1; k >= 0; --k) {
        c->k = k;
        const int64_t nk = tlen(c, k), m = c->nt - k - 1;
        /* column k of L below the diagonal, before its tiles are overwritten */
        for (int64_t r = tile0(k + 1); r < c->n; ++r)
            memcpy(c->panel + (r - tile0(k + 1)) * QS_CHOL_TILE, c->A + r * c->n + tile0(k),
                   sizeof(float) * (size_t)nk);
        if (LAPACKE_strtri_work(LAPACK_COL_MAJOR, 'U', 'N', (lapack_int)nk, tile(c, k, k),
                                (lapack_int)c->n) != 0)
            return QS_OK;
        if (m > 0) QS_CHECK(qs_pool_run(pool, m, inv_task, c, err));
    }
    *ok = 1;
done:
    return st;
}

/* Reversal of A's len elements (J A J for a row-major square matrix) as pool tasks: task t
 * swaps pieces [t P, (t + 1) P) of the first half with their mirror images. */
#define REV_PIECE ((int64_t)1 << 18)
typedef struct rev_ctx {
    float *A;
    int64_t len;
} rev_ctx;

static qs_status reverse_task(void *vctx, int64_t t, int worker, qs_err *err) {
    (void)worker;
    (void)err;
    const rev_ctx *r = vctx;
    const int64_t half = r->len / 2, a0 = t * REV_PIECE;
    const int64_t a1 = a0 + REV_PIECE < half ? a0 + REV_PIECE : half;
    for (int64_t a = a0, b = r->len - 1 - a0; a < a1; ++a, --b) {
        float x = r->A[a];
        r->A[a] = r->A[b];
        r->A[b] = x;
    }
    return QS_OK;
}

static qs_status reverse(qs_pool *pool, float *A, int64_t len, qs_err *err) {
    rev_ctx r = {A, len};
    return qs_pool_run(pool, (len / 2 + REV_PIECE - 1) / REV_PIECE, reverse_task, &r, err);
}

/* Rows [t R, (t + 1) R) of U: the strict lower part zeroed; bad[t] = 1 when an entry is not
 * finite or a diagonal entry is not positive. */
#define FIN_ROWS 64
typedef struct fin_ctx {
    float *A;
    int64_t n;
    unsigned char *bad; /* (tasks) */
} fin_ctx;

static qs_status finish_task(void *vctx, int64_t t, int worker, qs_err *err) {
    (void)worker;
    (void)err;
    const fin_ctx *f = vctx;
    const int64_t n = f->n, i1 = (t + 1) * FIN_ROWS < n ? (t + 1) * FIN_ROWS : n;
    for (int64_t i = t * FIN_ROWS; i < i1; ++i) {
        float *row = f->A + i * n;
        memset(row, 0, sizeof(float) * (size_t)i);
        for (int64_t j = i; j < n; ++j)
            if (!isfinite(row[j])) f->bad[t] = 1;
        if (!(row[i] > 0.0f)) f->bad[t] = 1;
    }
    return QS_OK;
}

qs_status qs_chol_inv_upper_reversed(qs_pool *pool, float *A, int64_t n, int *ok,
                                     qs_err *err) {
    qs_status st = QS_OK;
    chol_ctx c;
    unsigned char *bad = NULL; /* (row blocks) of the final check */
    memset(&c, 0, sizeof(c));
    *ok = 0;
    c.A = A;
    c.n = n;
    c.nt = (n + QS_CHOL_TILE - 1) / QS_CHOL_TILE;
    c.panel = qs_malloc(sizeof(float) * (size_t)(n * QS_CHOL_TILE), err, "Cholesky panel");
    c.pair = qs_malloc(sizeof(int64_t) * (size_t)(2 * c.nt * c.nt + 2), err, "Cholesky tiles");
    if (!c.panel || !c.pair) QS_THROW(err, QS_ERR_RUNTIME, "out of memory");
    QS_CHECK(chol_lower(pool, &c, ok, err));
    if (!*ok) goto done;
    QS_CHECK(inv_lower(pool, &c, ok, err));
    if (!*ok) goto done;
    QS_CHECK(reverse(pool, A, n * n, err)); /* U = J X J: upper */
    const int64_t nfin = (n + FIN_ROWS - 1) / FIN_ROWS;
    bad = qs_calloc((size_t)nfin, 1, err, "factor check");
    if (!bad) QS_THROW(err, QS_ERR_RUNTIME, "out of memory");
    fin_ctx fc = {A, n, bad};
    QS_CHECK(qs_pool_run(pool, nfin, finish_task, &fc, err));
    for (int64_t t = 0; t < nfin; ++t)
        if (bad[t]) *ok = 0;
done:
    free(bad);
    free(c.panel);
    free(c.pair);
    return st;
}
