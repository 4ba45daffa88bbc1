/* gptq_ref.c: the plain scalar twins of gptq.c, written to be obviously right.
 *
 * prepare_ref: textbook Cholesky, triangular inverse and Cholesky again, all in double.
 * quantize_rows_ref: the paper's algorithm column by column over all rows at once: quantize
 * column k, err = (w - q) / U[k][k], then every later column j -= err * U[k][j]; group
 * parameters at a group's first column from the (fully updated) weights of the group. The
 * updated weights are kept in double (rounded to float where quantized), so the twin is
 * the accurate side of the comparison: the blocked kernel's sgemm rounding is what differs.
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

/* Parameters of group g for every row from columns [c0, c1) of Mf or (as floats) of Md
 * ((R, ld); exactly one is non-NULL). */
static qs_status ref_group(const qs_quant_params *p, const float *Mf, const double *Md,
                           int64_t R, int64_t ld,
                           int64_t c0, int64_t c1, int64_t g, int64_t ng, qs_quant_out *out,
                           qs_err *err) {
    for (int64_t r = 0; r < R; ++r) {
        float mn = INFINITY, mx = -INFINITY;
        for (int64_t c = c0; c < c1; ++c) {
            float v = Mf ? Mf[r * ld + c] : (float)Md[r * ld + c];
            if (v < mn) mn = v;
            if (v > mx) mx = v;
        }
        if (qs_quant_group_params(p, mn, mx, &out->scales[r * ng + g], &out->zeros[r * ng + g]))
            return QS_FAIL(err, QS_ERR_INPUT, "weight row %lld group %lld: scale overflows fp16",
                           (long long)r, (long long)g);
    }
    return QS_OK;
}

qs_status qs_gptq_quantize_rows_ref(const qs_gptq_factor *f, const qs_quant_params *p,
                                    const float *W, int64_t d_out, int64_t r0, int64_t r1,
                                    qs_quant_out *out, qs_err *err) {
    qs_status st = QS_OK;
    double *Wc = NULL;
    float *Wn = NULL;
    QS_CHECK(qs_gptq_check_rows(f, p, W, d_out, r0, r1, err));
    const int64_t n = f->n, R = r1 - r0, ng = qs_quant_ngroups(n, p->group_size);
    const int64_t gs = p->group_size < 1 ? n : p->group_size;
    const int maxq = (1 << p->bits) - 1;
    if (R == 0) goto done;
    Wc = qs_malloc((size_t)(R * n) * sizeof(double), err, "GPTQ ref weights");
    Wn = qs_malloc((size_t)(R * n) * sizeof(float), err, "GPTQ ref weights");
    if (!Wc || !Wn) QS_THROW(err, QS_ERR_RUNTIME, "out of memory");
    for (int64_t r = 0; r < R; ++r)
        for (int64_t j = 0; j < n; ++j) {
            Wn[r * n + j] = f->dead[j] ? 0.0f : W[r * n + j];          /* natural order */
            Wc[r * n + j] = f->dead[f->perm[j]] ? 0.0 : W[r * n + f->perm[j]]; /* quant order */
        }
    int dyn = p->group_size >= 1 && !p->static_groups;
    if (!dyn)
        for (int64_t g = 0; g < ng; ++g)
            QS_CHECK(ref_group(p, Wn, NULL, R, n, g * gs, g * gs + gs < n ? g * gs + gs : n, g, ng, out,
                               err));
    for (int64_t k = 0; k < n; ++k) {
        int64_t g = dyn ? k / gs : p->group_size < 1 ? 0 : f->perm[k] / gs;
        if (dyn && k % gs == 0)
            QS_CHECK(ref_group(p, NULL, Wc, R, n, k, k + gs < n ? k + gs : n, g, ng, out, err));
        const float d = f->U[k * n + k];
        for (int64_t r = 0; r < R; ++r) {
            float s = qs_f16_to_f32(out->scales[r * ng + g]);
            int32_t z = out->zeros[r * ng + g];
            float w = (float)Wc[r * n + k];
            int q = qs_quant1(w, s, s != 0.0f ? 1.0f / s : 0.0f, (float)z, (float)maxq);
            float dq = qs_dequant1(q, s, z);
            out->codes[r * n + f->perm[k]] = (uint8_t)q;
            if (out->wq) out->wq[r * n + f->perm[k]] = dq;
            double e = ((double)w - (double)dq) / (double)d;
            for (int64_t j = k + 1; j < n; ++j) Wc[r * n + j] -= e * (double)f->U[k * n + j];
        }
    }
done:
    free(Wc);
    free(Wn);
    return st;
}
