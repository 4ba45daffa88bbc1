/* hessian.c: chunk partials of Xᵀ X (f32 ssyrk) accumulated in f64, and per-channel
 * absmax / sum-of-squares statistics. See hessian.h. */
#include "hessian.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

void qs_hess_partial(const float *x, int64_t rows, int64_t d, float *tile) {
    if (rows <= 0) {
        for (int64_t i = 0; i < d; ++i) memset(tile + i * d + i, 0, (size_t)(d - i) * sizeof(float));
        return;
    }
    cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, (int)d, (int)rows, 1.0f, x, (int)d, 0.0f,
                tile, (int)d);
}

void qs_hess_add(double *acc, const float *tile, int64_t d) {
    for (int64_t i = 0; i < d; ++i) {
        double *a = acc + i * d;       // row i
        const float *t = tile + i * d; // row i
        for (int64_t j = i; j < d; ++j) a[j] += (double)t[j];
    }
}

void qs_hess_add_f64(double *acc, const double *part, int64_t d) {
    for (int64_t i = 0; i < d; ++i) {
        double *a = acc + i * d;
        const double *p = part + i * d;
        for (int64_t j = i; j < d; ++j) a[j] += p[j];
    }
}

void qs_hess_finalize(double *acc, int64_t d, int64_t n) {
    const double s = n > 0 ? 2.0 / (double)n : 0.0;
    for (int64_t i = 0; i < d; ++i) {
        for (int64_t j = i; j < d; ++j) {
            double v = acc[i * d + j] * s;
            acc[i * d + j] = v;
            acc[j * d + i] = v;
        }
    }
}

void qs_chan_stats_partial(const float *x, int64_t rows, int64_t d, float *absmax,
                           double *sumsq) {
    for (int64_t c = 0; c < d; ++c) {
        absmax[c] = 0.0f;
        sumsq[c] = 0.0;
    }
    for (int64_t r = 0; r < rows; ++r) {
        const float *xr = x + r * d;  // (d)
        for (int64_t c = 0; c < d; ++c) {
            float a = fabsf(xr[c]);
            if (a > absmax[c] || a != a) absmax[c] = a; /* NaN sticks */
            sumsq[c] += (double)xr[c] * (double)xr[c];
        }
    }
}

void qs_chan_stats_add(float *absmax, double *sumsq, const float *part_absmax,
                       const double *part_sumsq, int64_t d) {
    for (int64_t c = 0; c < d; ++c) {
        float a = part_absmax[c];
        if (a > absmax[c] || a != a) absmax[c] = a; /* NaN sticks */
        sumsq[c] += part_sumsq[c];
    }
}
