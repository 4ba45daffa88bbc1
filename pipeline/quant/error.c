/* error.c: the error of a quantized layer, tr(dW H dW^T) row by row (and tr(W H W^T) for
 * the relative error), with sgemm on fixed row tiles and double accumulation. */
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "quant.h"

qs_status qs_quant_error_rows(const float *H, int64_t n, const float *W, const float *Wq,
                              int64_t nrows, int64_t row_tile, double *err_rows,
                              double *wnorm_rows, qs_err *err) {
    qs_status st = QS_OK;
    float *X = NULL, *T = NULL;
    if (n < 1 || row_tile < 1 || nrows < 0)
        QS_THROW(err, QS_ERR_INTERNAL, "error: bad sizes n %lld row_tile %lld nrows %lld",
                 (long long)n, (long long)row_tile, (long long)nrows);
    const int64_t R = nrows < row_tile ? nrows : row_tile;
    if (R == 0) goto done;
    const int64_t m = wnorm_rows ? 2 : 1; /* stacked [dW; W] */
    X = qs_malloc((size_t)(m * R * n) * sizeof(float), err, "error tile"); /* (m*R, n) */
    T = qs_malloc((size_t)(m * R * n) * sizeof(float), err, "error tile"); /* (m*R, n) */
    if (!X || !T) QS_THROW(err, QS_ERR_RUNTIME, "out of memory");
    for (int64_t t0 = 0; t0 < nrows; t0 += row_tile) {
        const int64_t Rt = nrows - t0 < row_tile ? nrows - t0 : row_tile;
        for (int64_t r = 0; r < Rt; ++r)
            for (int64_t j = 0; j < n; ++j)
                X[r * n + j] = W[(t0 + r) * n + j] - (Wq ? Wq[(t0 + r) * n + j] : 0.0f);
        if (wnorm_rows) memcpy(X + Rt * n, W + t0 * n, (size_t)(Rt * n) * sizeof(float));
        /* T = X H: one sgemm per tile, shape fixed by (Rt, n) */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)(m * Rt), (int)n, (int)n,
                    1.0f, X, (int)n, H, (int)n, 0.0f, T, (int)n);
        for (int64_t r = 0; r < m * Rt; ++r) {
            double acc = 0.0;
            for (int64_t j = 0; j < n; ++j) acc += (double)T[r * n + j] * (double)X[r * n + j];
            if (r < Rt) err_rows[t0 + r] = acc;
            else wnorm_rows[t0 + r - Rt] = acc;
        }
    }
done:
    free(X);
    free(T);
    return st;
}

qs_status qs_quant_error_rows_ref(const float *H, int64_t n, const float *W, const float *Wq,
                                  int64_t nrows, double *err_rows, double *wnorm_rows,
                                  qs_err *err) {
    (void)err;
    for (int64_t r = 0; r < nrows; ++r) {
        const float *w = W + r * n, *q = Wq + r * n;
        double e = 0.0, a = 0.0;
        for (int64_t i = 0; i < n; ++i) {
            double di = (double)w[i] - (double)q[i];
            double te = 0.0, ta = 0.0;
            for (int64_t j = 0; j < n; ++j) {
                te += (double)H[i * n + j] * ((double)w[j] - (double)q[j]);
                ta += (double)H[i * n + j] * (double)w[j];
            }
            e += di * te;
            a += (double)w[i] * ta;
        }
        err_rows[r] = e;
        if (wnorm_rows) wnorm_rows[r] = a;
    }
    return QS_OK;
}

double qs_quant_sum(const double *v, int64_t n) {
    double s = 0.0;
    for (int64_t i = 0; i < n; ++i) s += v[i];
    return s;
}

double qs_quant_relative(double err, double wnorm) {
    return wnorm != 0.0 ? err / wnorm : 0.0;
}
