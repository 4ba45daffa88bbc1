/* gptq_ref.c: the plain scalar twins of gptq.c, written to be obviously right.
 *
 * prepare_ref: textbook Cholesky, triangular inverse and Cholesky again, all in double.
 * solve_ref / quantize_rows_ref: the paper's algorithm column by column over all rows at
 * once: quantize column k on the grid, err = (w - q) / U[k][k], then every later column
 * j -= err * U[k][j]; a dynamic group's parameters at its first column from the (fully
 * updated) weights of the group (the grid, quant_internal.h, is shared with the blocked
 * solve). The updated weights are kept in double (rounded to float where quantized), so the
 * twin is the accurate side of the comparison: the blocked kernel's sgemm rounding is what
 * differs.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "quant.h"
#include "quant_internal.h"

/* Lower Cholesky in place (row-major full matrix A (n, n)); 0 on success. */
static int chol_lower(double *A, int64_t n) {
    for (int64_t j = 0; j < n; ++j) {
        double s = A[j * n + j];
        for (int64_t k = 0; k < j; ++k) s -= A[j * n + k] * A[j * n + k];
        if (!(s > 0.0) || !isfinite(s)) return -1;
        double ljj = sqrt(s);
        A[j * n + j] = ljj;
        for (int64_t i = j + 1; i < n; ++i) {
            double t = A[i * n + j];
            for (int64_t k = 0; k < j; ++k) t -= A[i * n + k] * A[j * n + k];
            A[i * n + j] = t / ljj;
        }
        for (int64_t i = 0; i < j; ++i) A[i * n + j] = 0.0; /* upper part of L is zero */
    }
    return 0;
}

/* U with (L L^T)^-1 = U^T U from the lower factor L ((n, n)); Linv, Hinv are scratch. */
static int inverse_then_upper(const double *L, int64_t n, double *Linv, double *Hinv) {
    memset(Linv, 0, (size_t)(n * n) * sizeof(double));
    for (int64_t c = 0; c < n; ++c) { /* forward substitution: L x = e_c */
        for (int64_t i = c; i < n; ++i) {
            double t = i == c ? 1.0 : 0.0;
            for (int64_t k = c; k < i; ++k) t -= L[i * n + k] * Linv[k * n + c];
            Linv[i * n + c] = t / L[i * n + i];
        }
    }
    for (int64_t i = 0; i < n; ++i) /* Hinv = Linv^T Linv */
        for (int64_t j = 0; j < n; ++j) {
            double t = 0.0;
            for (int64_t k = i > j ? i : j; k < n; ++k) t += Linv[k * n + i] * Linv[k * n + j];
            Hinv[i * n + j] = t;
        }
    return chol_lower(Hinv, n); /* Hinv = L2 L2^T, U = L2^T */
}

qs_status qs_gptq_prepare_ref(const float *H, int64_t n, const qs_quant_params *p,
                              qs_gptq_factor *f, qs_err *err) {
    qs_status st = QS_OK;
    double *diag = NULL, *A = NULL, *B = NULL, *C = NULL;
    memset(f, 0, sizeof(*f));
    if (n < 1) QS_THROW(err, QS_ERR_INPUT, "Hessian: size %lld is out of range", (long long)n);
    diag = qs_malloc((size_t)n * sizeof(double), err, "GPTQ diagonal");
    A = qs_malloc((size_t)(n * n) * sizeof(double), err, "GPTQ ref matrix");
    B = qs_malloc((size_t)(n * n) * sizeof(double), err, "GPTQ ref matrix");
    C = qs_malloc((size_t)(n * n) * sizeof(double), err, "GPTQ ref matrix");
    if (!diag || !A || !B || !C) QS_THROW(err, QS_ERR_RUNTIME, "out of memory");
    double mean;
    QS_CHECK(qs_gptq_prepare_common(H, n, p, f, diag, &mean, err));
    f->U = qs_malloc((size_t)(n * n) * sizeof(float), err, "GPTQ factor");
    if (!f->U) QS_THROW(err, QS_ERR_RUNTIME, "out of memory");
    int nraise = 0;
    for (double frac = p->damp; frac >= 0.0; frac = qs_gptq_next_damp(frac, p->damp_max)) {
        for (int64_t a = 0; a < n; ++a)
            for (int64_t b = 0; b < n; ++b) {
                int64_t pa = f->perm[a], pb = f->perm[b];
                A[a * n + b] = a == b ? diag[pa] + frac * mean
                                      : H[(pa < pb ? pa : pb) * n + (pa < pb ? pb : pa)];
            }
        if (chol_lower(A, n) == 0 && inverse_then_upper(A, n, B, C) == 0) {
            for (int64_t i = 0; i < n; ++i)
                for (int64_t j = 0; j < n; ++j) f->U[i * n + j] = j < i ? 0.0f : (float)C[j * n + i];
            f->info.damp = frac;
            f->info.damp_abs = frac * mean;
            f->info.nraise = nraise;
            f->info.fp64 = 0;
            goto done;
        }
        nraise++;
    }
    QS_THROW(err, QS_ERR_INPUT, "Hessian (%lld x %lld): not positive definite even with damp %g",
             (long long)n, (long long)n, p->damp_max);
done:
    free(diag);
    free(A);
    free(B);
    free(C);
    if (st != QS_OK) qs_gptq_factor_free(f);
    return st;
}

qs_status qs_gptq_solve_ref(const qs_gptq_factor *f, qs_gptq_grid *g, const float *W,
                            int64_t R, int64_t row0, uint8_t *codes, float *wq, qs_err *err) {
    qs_status st = QS_OK;
    const int64_t n = f->n;
    const int64_t maxlen = g->glen[1] > g->glen[0] ? g->glen[1] : g->glen[0] > 0 ? g->glen[0] : 1;
    double *Wc = qs_malloc((size_t)(R * n) * sizeof(double), err, "GPTQ ref weights");
    float *cur = qs_malloc((size_t)(R * (maxlen < n ? maxlen : n)) * sizeof(float), err, "GPTQ ref group");
    float *col = qs_malloc((size_t)(2 * R) * sizeof(float), err, "GPTQ ref column");
    uint8_t *cc = qs_malloc((size_t)R, err, "GPTQ ref codes");
    if (!Wc || !cur || !col || !cc) QS_THROW(err, QS_ERR_RUNTIME, "out of memory");
    float *wcol = col, *qcol = col + R; /* (R) each */
    for (int64_t r = 0; r < R; ++r) /* quantization order, dead inputs zeroed */
        for (int64_t j = 0; j < n; ++j)
            Wc[r * n + j] = f->dead[f->perm[j]] ? 0.0 : W[r * n + f->perm[j]];
    for (int64_t k = 0; k < n; ++k) {
        for (int lv = 1; lv >= 0; --lv) {
            const int64_t gl = g->glen[lv];
            if (gl < 1 || k % gl != 0) continue;
            const int64_t len = k + gl < n ? gl : n - k;
            for (int64_t r = 0; r < R; ++r)
                for (int64_t c = 0; c < len; ++c) cur[r * len + c] = (float)Wc[r * n + k + c];
            QS_CHECK(g->start(g, lv, k, cur, len, R, row0, err));
        }
        for (int64_t r = 0; r < R; ++r) wcol[r] = (float)Wc[r * n + k];
        g->column(g, k, wcol, R, cc, qcol);
        const float d = f->U[k * n + k];
        for (int64_t r = 0; r < R; ++r) {
            codes[r * n + f->perm[k]] = cc[r];
            if (wq) wq[r * n + f->perm[k]] = qcol[r];
            double e = ((double)wcol[r] - (double)qcol[r]) / (double)d;
            for (int64_t j = k + 1; j < n; ++j) Wc[r * n + j] -= e * (double)f->U[k * n + j];
        }
    }
done:
    free(Wc);
    free(cur);
    free(col);
    free(cc);
    return st;
}

qs_status qs_gptq_quantize_rows_ref(const qs_gptq_factor *f, const qs_quant_params *p,
                                    const float *W, int64_t d_out, int64_t r0, int64_t r1,
                                    qs_quant_out *out, qs_err *err) {
    qs_status st = QS_OK;
    float *scratch = NULL;
    QS_CHECK(qs_gptq_check_rows(f, p, W, d_out, r0, r1, err));
    const int64_t R = r1 - r0;
    if (R == 0) goto done;
    scratch = qs_malloc((size_t)(3 * R) * sizeof(float), err, "GPTQ ref group parameters");
    if (!scratch) QS_THROW(err, QS_ERR_RUNTIME, "out of memory");
    qs_gptq_plain g;
    QS_CHECK(qs_gptq_plain_init(&g, f, p, W, R, r0, out->scales, out->zeros, scratch, err));
    QS_CHECK(qs_gptq_solve_ref(f, &g.base, W, R, r0, out->codes, out->wq, err));
done:
    free(scratch);
    return st;
}
