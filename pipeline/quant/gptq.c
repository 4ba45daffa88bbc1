/* gptq.c: GPTQ (Frantar et al. 2022) on BLAS/LAPACK.
 *
 * prepare: dead channels, act-order permutation, damped Hessian -> U = chol((H + dI)^-1)
 * (upper, Hinv = U^T U; chol_tiled.c: one Cholesky and one triangular inverse of the
 * reversed matrix on the pool's tiles) with automatic damp raising and an fp64 fallback.
 * quantize_rows: the blocked ("lazy batch") algorithm on fixed row tiles. Per tile the
 * weights are copied in quantization order; each block of B columns is quantized column by
 * column with rank-1 error feedback inside sub-blocks of QS_GPTQ_SUB columns, a small gemm
 * carries a sub-block's errors to the rest of the block, and one gemm per block carries the
 * block's errors to every later column. Block and sub-block ends are cut at group starts
 * that would otherwise see stale weights, so group parameters always come from fully
 * updated weights, exactly as in the column-by-column algorithm (gptq_ref.c).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>
#include <lapacke.h>

#include "quant.h"
#include "quant_internal.h"

#define QS_GPTQ_SUB 16 /* columns per rank-1 sub-block inside a lazy block */

void qs_gptq_factor_free(qs_gptq_factor *f) {
    if (!f) return;
    free(f->U);
    free(f->perm);
    free(f->dead);
    memset(f, 0, sizeof(*f));
}

typedef struct diag_key {
    double d;
    int32_t idx;
} diag_key;

static int cmp_diag_desc(const void *a, const void *b) {
    const diag_key *x = a, *y = b;
    if (x->d > y->d) return -1;
    if (x->d < y->d) return 1;
    return (x->idx > y->idx) - (x->idx < y->idx); /* ties: by index (stable) */
}

qs_status qs_gptq_prepare_common(const float *H, int64_t n, const qs_quant_params *p,
                                 qs_gptq_factor *f, double *diag, double *mean_diag,
                                 qs_err *err) {
    qs_status st = QS_OK;
    diag_key *keys = NULL;
    QS_CHECK(qs_quant_params_check(p, err));
    if (n < 1 || n > 0x7fffffff)
        QS_THROW(err, QS_ERR_INPUT, "Hessian: size %lld is out of range", (long long)n);
    for (int64_t i = 0; i < n * n; ++i)
        if (!isfinite(H[i]))
            QS_THROW(err, QS_ERR_INPUT, "Hessian: entry (%lld, %lld) is not finite",
                     (long long)(i / n), (long long)(i % n));
    f->n = n;
    f->act_order = p->act_order;
    f->perm = qs_malloc((size_t)n * sizeof(int32_t), err, "GPTQ permutation");
    f->dead = qs_calloc((size_t)n, 1, err, "GPTQ dead channels");
    keys = qs_malloc((size_t)n * sizeof(diag_key), err, "GPTQ diagonal");
    if (!f->perm || !f->dead || !keys) QS_THROW(err, QS_ERR_RUNTIME, "out of memory");
    double sum = 0.0;
    for (int64_t i = 0; i < n; ++i) {
        double d = H[i * n + i];
        if (d == 0.0) {
            f->dead[i] = 1;
            f->info.ndead++;
            d = 1.0;
        }
        diag[i] = d;
        sum += d;
        keys[i].d = d;
        keys[i].idx = (int32_t)i;
    }
    *mean_diag = sum / (double)n;
    if (p->act_order) qsort(keys, (size_t)n, sizeof(diag_key), cmp_diag_desc);
    for (int64_t i = 0; i < n; ++i) f->perm[i] = keys[i].idx;
done:
    free(keys);
    return st;
}

double qs_gptq_next_damp(double cur, double damp_max) {
    if (cur >= damp_max) return -1.0;
    double nx = cur > 0.0 ? cur * 10.0 : damp_max;
    return nx > damp_max ? damp_max : nx;
}

/* The permuted, damped Hessian with both indices reversed (J A J, what the factor starts
 * from): A[a][b] = H[perm[n-1-a]][perm[n-1-b]] read from H's upper triangle, the diagonal
 * diag + damp_abs. Rows in tasks of FILL_ROWS; the reads of H in bands of FILL_BAND columns
 * so the transposed ones stay in cache. factor_f64 fills its fp64 copy the same way. */
#define FILL_ROWS 64
#define FILL_BAND 64
typedef struct fill_ctx {
    float *A;                   /* (n, n) out */
    const float *H;             /* (n, n), upper triangle read */
    const qs_gptq_factor *f;
    const double *diag;         /* (n) */
    double damp_abs;
} fill_ctx;

static qs_status fill_task(void *vctx, int64_t t, int worker, qs_err *err) {
    (void)worker;
    (void)err;
    const fill_ctx *c = vctx;
    const int64_t n = c->f->n, a0 = t * FILL_ROWS, a1 = a0 + FILL_ROWS < n ? a0 + FILL_ROWS : n;
    const int32_t *perm = c->f->perm;
    for (int64_t b0 = 0; b0 < n; b0 += FILL_BAND) {
        const int64_t b1 = b0 + FILL_BAND < n ? b0 + FILL_BAND : n;
        for (int64_t a = a0; a < a1; ++a) {
            const int64_t pa = perm[n - 1 - a];
            float *row = c->A + a * n;
            for (int64_t b = b0; b < b1; ++b) {
                const int64_t pb = perm[n - 1 - b];
                row[b] = pa < pb ? c->H[pa * n + pb] : c->H[pb * n + pa];
            }
        }
    }
    for (int64_t a = a0; a < a1; ++a)
        c->A[a * n + a] = (float)(c->diag[perm[n - 1 - a]] + c->damp_abs);
    return QS_OK;
}

/* One fp32 attempt: *ok = 1 with f->U holding the factor (chol_tiled.c, on the pool). */
static qs_status factor_f32(qs_pool *pool, const float *H, qs_gptq_factor *f, const double *diag,
                            double damp_abs, int *ok, qs_err *err) {
    fill_ctx c = {f->U, H, f, diag, damp_abs};
    qs_status st = qs_pool_run(pool, (f->n + FILL_ROWS - 1) / FILL_ROWS, fill_task, &c, err);
    return st == QS_OK ? qs_chol_inv_upper_reversed(pool, f->U, f->n, ok, err) : st;
}

static void reverse64(double *A, int64_t len) {
    for (int64_t a = 0, b = len - 1; a < b; ++a, --b) {
        double t = A[a];
        A[a] = A[b];
        A[b] = t;
    }
}

/* The fp64 fallback, the same factor as chol_tiled.c (U = J chol(J A J)^-1 J) by one LAPACK
 * dpotrf and one dtrtri on the whole matrix; 0 on success. */
static int factor_f64(const float *H, qs_gptq_factor *f, const double *diag, double damp_abs,
                      double *A) {
    const int64_t n = f->n;
    for (int64_t a = 0; a < n; ++a) { /* J A J, as fill_task (the diagonal kept in fp64) */
        const int64_t pa = f->perm[n - 1 - a];
        for (int64_t b = 0; b < n; ++b) {
            const int64_t pb = f->perm[n - 1 - b];
            A[a * n + b] = pa < pb ? H[pa * n + pb] : H[pb * n + pa];
        }
        A[a * n + a] = diag[pa] + damp_abs;
    }
    /* column-major 'U' on the row-major matrix = row-major lower L, then L^-1 in place */
    if (LAPACKE_dpotrf_work(LAPACK_COL_MAJOR, 'U', (lapack_int)n, A, (lapack_int)n) != 0) return -1;
    if (LAPACKE_dtrtri_work(LAPACK_COL_MAJOR, 'U', 'N', (lapack_int)n, A, (lapack_int)n) != 0)
        return -1;
    reverse64(A, n * n);
    for (int64_t i = 0; i < n; ++i) {
        for (int64_t j = 0; j < i; ++j) f->U[i * n + j] = 0.0f;
        for (int64_t j = i; j < n; ++j) {
            float v = (float)A[i * n + j];
            if (!isfinite(v)) return -1;
            f->U[i * n + j] = v;
        }
        if (!(f->U[i * n + i] > 0.0f)) return -1;
    }
    return 0;
}

qs_status qs_gptq_prepare(const float *H, int64_t n, const qs_quant_params *p,
                          qs_gptq_factor *f, qs_err *err) {
    return qs_gptq_prepare_pool(NULL, H, n, p, f, err);
}

qs_status qs_gptq_prepare_pool(qs_pool *pool, const float *H, int64_t n,
                               const qs_quant_params *p, qs_gptq_factor *f, qs_err *err) {
    qs_status st = QS_OK;
    double *diag = NULL, *A64 = NULL;
    memset(f, 0, sizeof(*f));
    if (n < 1) QS_THROW(err, QS_ERR_INPUT, "Hessian: size %lld is out of range", (long long)n);
    diag = qs_malloc((size_t)n * sizeof(double), err, "GPTQ diagonal");
    if (!diag) QS_THROW(err, QS_ERR_RUNTIME, "out of memory");
    double mean;
    QS_CHECK(qs_gptq_prepare_common(H, n, p, f, diag, &mean, err));
    f->U = qs_malloc((size_t)(n * n) * sizeof(float), err, "GPTQ factor");
    if (!f->U) QS_THROW(err, QS_ERR_RUNTIME, "out of memory");
    for (int fp64 = 0; fp64 <= 1; ++fp64) {
        if (fp64) {
            A64 = qs_malloc((size_t)(n * n) * sizeof(double), err, "GPTQ fp64 factor");
            if (!A64) QS_THROW(err, QS_ERR_RUNTIME, "out of memory");
        }
        int nraise = 0;
        for (double frac = p->damp; frac >= 0.0; frac = qs_gptq_next_damp(frac, p->damp_max)) {
            double damp_abs = frac * mean;
            int ok = 0;
            if (fp64) ok = factor_f64(H, f, diag, damp_abs, A64) == 0;
            else QS_CHECK(factor_f32(pool, H, f, diag, damp_abs, &ok, err));
            if (ok) {
                f->info.damp = frac;
                f->info.damp_abs = damp_abs;
                f->info.nraise = nraise;
                f->info.fp64 = fp64;
                goto done;
            }
            nraise++;
        }
    }
    QS_THROW(err, QS_ERR_INPUT,
             "Hessian (%lld x %lld): not positive definite even with damp %g (damp_max) in fp64"
             " (raise quant.damp_max)",
             (long long)n, (long long)n, p->damp_max);
done:
    free(diag);
    free(A64);
    if (st != QS_OK) qs_gptq_factor_free(f);
    return st;
}

void qs_gptq_g_idx(const qs_gptq_factor *f, const qs_quant_params *p, int32_t *g_idx) {
    if (p->group_size < 1 || p->static_groups || !f->act_order) {
        qs_quant_g_idx_natural(f->n, p->group_size, g_idx);
        return;
    }
    for (int64_t k = 0; k < f->n; ++k) g_idx[f->perm[k]] = (int32_t)(k / p->group_size);
}

qs_status qs_gptq_check_rows(const qs_gptq_factor *f, const qs_quant_params *p,
                             const float *W, int64_t d_out, int64_t r0, int64_t r1,
                             qs_err *err) {
    qs_status st = qs_quant_params_check(p, err);
    if (st != QS_OK) return st;
    if (!f || !f->U || f->n < 1)
        return QS_FAIL(err, QS_ERR_INTERNAL, "GPTQ: factor not prepared");
    if (f->act_order != p->act_order)
        return QS_FAIL(err, QS_ERR_INTERNAL, "GPTQ: factor prepared with act_order %d, used with %d",
                       f->act_order, p->act_order);
    if (r0 < 0 || r1 < r0 || r1 > d_out)
        return QS_FAIL(err, QS_ERR_INTERNAL, "GPTQ: row range [%lld, %lld) outside [0, %lld)",
                       (long long)r0, (long long)r1, (long long)d_out);
    if (r0 % p->row_block != 0 || (r1 != d_out && r1 % p->row_block != 0))
        return QS_FAIL(err, QS_ERR_INTERNAL,
                       "GPTQ: row range [%lld, %lld) is not aligned to row_block %d",
                       (long long)r0, (long long)r1, p->row_block);
    return qs_quant_check_finite(W, r1 - r0, f->n, r0, err);
}

/* Work buffers of the blocked solve, for tiles of up to R rows. */
struct qs_gptq_work {
    int64_t R, n, B, maxlen;
    float *Wp;   /* (R, n) weights in quantization order, updated lazily */
    float *W1T;  /* (B, R) current block, transposed: column c is contiguous */
    float *E1T;  /* (B, R) scaled errors of the block, transposed */
    float *QT;   /* (B, R) dequantized block, transposed */
    uint8_t *CT; /* (B, R) codes of the block, transposed */
    float *cur;  /* (R, maxlen) current weights of a group being started */
};

qs_status qs_gptq_work_alloc(qs_gptq_work **out, int64_t R, int64_t n, int64_t block_size,
                             int64_t max_glen, qs_err *err) {
    qs_status st = QS_OK;
    qs_gptq_work *w = qs_calloc(1, sizeof(*w), err, "GPTQ work");
    if (!w) QS_THROW(err, QS_ERR_RUNTIME, "out of memory");
    const int64_t B = block_size < n ? block_size : n;
    const int64_t L = max_glen < 1 ? 1 : max_glen < n ? max_glen : n;
    w->R = R;
    w->n = n;
    w->B = B;
    w->maxlen = L;
    w->Wp = qs_malloc((size_t)(R * n) * sizeof(float), err, "GPTQ tile");
    w->W1T = qs_malloc((size_t)(B * R) * sizeof(float), err, "GPTQ block");
    w->E1T = qs_malloc((size_t)(B * R) * sizeof(float), err, "GPTQ block errors");
    w->QT = qs_malloc((size_t)(B * R) * sizeof(float), err, "GPTQ block output");
    w->CT = qs_malloc((size_t)(B * R), err, "GPTQ block codes");
    w->cur = qs_malloc((size_t)(R * L) * sizeof(float), err, "GPTQ group weights");
    if (!w->Wp || !w->W1T || !w->E1T || !w->QT || !w->CT || !w->cur)
        QS_THROW(err, QS_ERR_RUNTIME, "out of memory");
done:
    if (st != QS_OK) {
        qs_gptq_work_free(w);
        w = NULL;
    }
    *out = w;
    return st;
}

void qs_gptq_work_free(qs_gptq_work *w) {
    if (!w) return;
    free(w->Wp);
    free(w->W1T);
    free(w->E1T);
    free(w->QT);
    free(w->CT);
    free(w->cur);
    free(w);
}

#define QS_T 16 /* transpose tile */

/* dst[c * ldd + r] = src[r * lds + c] for r < rows, c < cols, in QS_T x QS_T tiles. */
static void transpose_in(const float *src, int64_t lds, float *dst, int64_t ldd, int64_t rows,
                         int64_t cols) {
    for (int64_t r0 = 0; r0 < rows; r0 += QS_T)
        for (int64_t c0 = 0; c0 < cols; c0 += QS_T) {
            int64_t r1 = r0 + QS_T < rows ? r0 + QS_T : rows, c1 = c0 + QS_T < cols ? c0 + QS_T : cols;
            for (int64_t r = r0; r < r1; ++r)
                for (int64_t c = c0; c < c1; ++c) dst[c * ldd + r] = src[r * lds + c];
        }
}

/* Block outputs back to natural column order: codes[r * n + perm[i1 + c]] = CT[c * R + r]. */
static void scatter_out(const qs_gptq_work *t, const int32_t *perm, int64_t i1, int64_t nb,
                        int64_t R, int64_t n, uint8_t *codes, float *wq) {
    for (int64_t r0 = 0; r0 < R; r0 += QS_T)
        for (int64_t c0 = 0; c0 < nb; c0 += QS_T) {
            int64_t r1 = r0 + QS_T < R ? r0 + QS_T : R, c1 = c0 + QS_T < nb ? c0 + QS_T : nb;
            for (int64_t r = r0; r < r1; ++r)
                for (int64_t c = c0; c < c1; ++c) {
                    int64_t j = perm[i1 + c];
                    codes[r * n + j] = t->CT[c * R + r];
                    if (wq) wq[r * n + j] = t->QT[c * R + r];
                }
        }
}

/* End of the lazy block starting at i1 (at most i1 + B): cut at the first start of a dynamic
 * group (any level) that begins inside the block but would end after it, until none does. */
static int64_t block_end(const qs_gptq_grid *g, int64_t i1, int64_t B, int64_t n) {
    int64_t i2 = i1 + B < n ? i1 + B : n;
    for (int changed = 1; changed;) {
        changed = 0;
        for (int lv = 1; lv >= 0; --lv) {
            const int64_t gl = g->glen[lv];
            if (gl < 1) continue;
            for (int64_t gp = (i1 / gl + 1) * gl; gp < i2; gp += gl)
                if ((gp + gl < n ? gp + gl : n) > i2) {
                    i2 = gp;
                    changed = 1;
                    break;
                }
        }
    }
    return i2;
}

/* Quantizes one tile of R rows; W, codes, wq point at the tile's first row. */
qs_status qs_gptq_solve_tile(const qs_gptq_factor *f, int64_t block_size, qs_gptq_work *t,
                             qs_gptq_grid *g, const float *W, int64_t R, int64_t row0,
                             uint8_t *codes, float *wq, double *e1sq, qs_err *err) {
    qs_status st = QS_OK;
    const int64_t n = f->n;
    const float *U = f->U;
    float *Wp = t->Wp;
    if (R > t->R || n != t->n)
        return QS_FAIL(err, QS_ERR_INTERNAL, "GPTQ: tile of %lld rows exceeds the work buffers",
                       (long long)R);

    if (e1sq) memset(e1sq, 0, sizeof(double) * (size_t)R);
    /* quantization-order copy with dead channels zeroed */
    for (int64_t r = 0; r < R; ++r)
        for (int64_t k = 0; k < n; ++k) {
            int32_t j = f->perm[k];
            Wp[r * n + k] = f->dead[j] ? 0.0f : W[r * n + j];
        }

    for (int64_t i1 = 0; i1 < n;) {
        const int64_t i2 = block_end(g, i1, block_size, n);
        const int64_t nb = i2 - i1;
        transpose_in(Wp + i1, n, t->W1T, R, R, nb);

        for (int64_t s1 = i1; s1 < i2;) {
            int64_t s2 = s1 + QS_GPTQ_SUB < i2 ? s1 + QS_GPTQ_SUB : i2;
            for (int lv = 0; lv < 2; ++lv) /* group starts begin a sub-block */
                if (g->glen[lv] >= 1) {
                    int64_t gp = (s1 / g->glen[lv] + 1) * g->glen[lv];
                    if (gp < s2) s2 = gp;
                }
            for (int64_t k = s1; k < s2; ++k) {
                const int64_t c = k - i1;
                float *w = t->W1T + c * R; /* (R) column k */
                float *e = t->E1T + c * R; /* (R) */
                for (int lv = 1; lv >= 0; --lv) {
                    const int64_t gl = g->glen[lv];
                    if (gl < 1 || k % gl != 0) continue;
                    /* k == s1 (and k == i1 for groups longer than the block): columns
                     * [k, ge) hold every update from columns < k */
                    const int64_t ge = k + gl < n ? k + gl : n, len = ge - k;
                    for (int64_t r = 0; r < R; ++r)
                        for (int64_t q = k; q < ge; ++q)
                            t->cur[r * len + (q - k)] =
                                q < i2 ? t->W1T[(q - i1) * R + r] : Wp[r * n + q];
                    QS_CHECK(g->start(g, lv, k, t->cur, len, R, row0, err));
                }
                const float d = U[k * n + k];
                float *qt = t->QT + c * R;
                g->column(g, k, w, R, t->CT + c * R, qt);
                for (int64_t r = 0; r < R; ++r) e[r] = (w[r] - qt[r]) / d;
                if (e1sq)
                    for (int64_t r = 0; r < R; ++r) e1sq[r] += (double)e[r] * (double)e[r];
                if (k + 1 < s2) /* rest of the sub-block -= U[k, k+1:s2]^T e^T (rank 1) */
                    cblas_sger(CblasRowMajor, (int)(s2 - k - 1), (int)R, -1.0f, U + k * n + k + 1,
                               1, e, 1, t->W1T + (k + 1 - i1) * R, (int)R);
            }
            if (s2 < i2) /* rest of the block -= U[s1:s2, s2:i2]^T E[s1:s2] */
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)(i2 - s2), (int)R,
                            (int)(s2 - s1), -1.0f, U + s1 * n + s2, (int)n,
                            t->E1T + (s1 - i1) * R, (int)R, 1.0f, t->W1T + (s2 - i1) * R,
                            (int)R);
            s1 = s2;
        }
        scatter_out(t, f->perm, i1, nb, R, n, codes, wq);
        if (i2 < n) /* later columns -= E (R, nb) U[i1:i2, i2:n] */
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)R, (int)(n - i2), (int)nb,
                        -1.0f, t->E1T, (int)R, U + i1 * n + i2, (int)n, 1.0f, Wp + i2, (int)n);
        i1 = i2;
    }
done:
    return st;
}

qs_status qs_gptq_quantize_rows(const qs_gptq_factor *f, const qs_quant_params *p,
                                const float *W, int64_t d_out, int64_t r0, int64_t r1,
                                qs_quant_out *out, qs_err *err) {
    qs_status st = QS_OK;
    qs_gptq_work *t = NULL;
    float *scratch = NULL;
    QS_CHECK(qs_gptq_check_rows(f, p, W, d_out, r0, r1, err));
    if (r1 == r0) goto done;
    const int64_t n = f->n, rb = p->row_block, ng = qs_quant_ngroups(n, p->group_size);
    const int64_t R = r1 - r0 < rb ? r1 - r0 : rb;
    QS_CHECK(qs_gptq_work_alloc(&t, R, n, p->block_size, p->group_size, err));
    scratch = qs_malloc((size_t)(3 * R) * sizeof(float), err, "GPTQ group parameters");
    if (!scratch) QS_THROW(err, QS_ERR_RUNTIME, "out of memory");
    for (int64_t t0 = r0; t0 < r1; t0 += rb) {
        int64_t Rt = r1 - t0 < rb ? r1 - t0 : rb;
        int64_t off = t0 - r0;
        qs_gptq_plain g;
        QS_CHECK(qs_gptq_plain_init(&g, f, p, W + off * n, Rt, t0, out->scales + off * ng,
                                    out->zeros + off * ng, scratch, err));
        QS_CHECK(qs_gptq_solve_tile(f, p->block_size, t, &g.base, W + off * n, Rt, t0,
                                    out->codes + off * n, out->wq ? out->wq + off * n : NULL,
                                    out->e1sq ? out->e1sq + off : NULL, err));
    }
done:
    qs_gptq_work_free(t);
    free(scratch);
    return st;
}

int qs_gptq_error_rows(const qs_gptq_factor *f, const float *W, const float *Wq,
                       const double *e1sq, int64_t nrows, double *err_rows) {
    const int64_t n = f->n;
    const double lam = f->info.damp_abs;
    for (int64_t r = 0; r < nrows; ++r) {
        double sub = 0.0;
        for (int64_t j = 0; j < n; ++j) {
            const double w = f->dead[j] ? 0.0 : (double)W[r * n + j];
            const double dq = w - (double)Wq[r * n + j];
            sub += (lam + (f->dead[j] ? 1.0 : 0.0)) * dq * dq;
        }
        if (!isfinite(e1sq[r]) || !isfinite(sub) || sub > 0.5 * e1sq[r]) return -1;
        err_rows[r] = e1sq[r] - sub;
    }
    return 0;
}
