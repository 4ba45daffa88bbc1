/* hessian.c: chunk partials of Xᵀ X (f32 ssyrk and sgemm on fixed square blocks, one pool
 * task each) accumulated in f64, and per-channel absmax / sum-of-squares statistics. See
 * hessian.h. */
#include "hessian.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

/* One partial's blocks (the pool's tasks read it). */
typedef struct hess_blocks {
    const float *x;  /* (rows, d) */
    int64_t rows, d, nb;
    float *tile;     /* (d, d) upper triangle written */
    float *absmax;   /* (d) channel statistics (qs_chan_stats_partial_pool) */
    double *sumsq;   /* (d) */
} hess_blocks;

/* Block task t -> (bi, bj), bi <= bj, in row-major order of the upper block triangle. */
static qs_status hess_block_task(void *vctx, int64_t t, int worker, qs_err *err) {
    (void)worker;
    (void)err;
    const hess_blocks *h = vctx;
    int64_t bi = 0;
    while (t >= h->nb - bi) t -= h->nb - bi++;
    const int64_t bj = bi + t, d = h->d;
    const int64_t i0 = bi * QS_HESS_BLOCK, i1 = i0 + QS_HESS_BLOCK < d ? i0 + QS_HESS_BLOCK : d;
    const int64_t j0 = bj * QS_HESS_BLOCK, j1 = j0 + QS_HESS_BLOCK < d ? j0 + QS_HESS_BLOCK : d;
    float *out = h->tile + i0 * d + j0; // (i1 - i0, j1 - j0), ld d
    if (h->rows <= 0) {
        for (int64_t i = i0; i < i1; ++i) {
            const int64_t c0 = bi == bj ? i : j0;
            memset(h->tile + i * d + c0, 0, (size_t)(j1 - c0) * sizeof(float));
        }
    } else if (bi == bj) {
        cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, (int)(i1 - i0), (int)h->rows, 1.0f,
                    h->x + i0, (int)d, 0.0f, out, (int)d);
    } else {
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)(i1 - i0), (int)(j1 - j0),
                    (int)h->rows, 1.0f, h->x + i0, (int)d, h->x + j0, (int)d, 0.0f, out,
                    (int)d);
    }
    return QS_OK;
}

qs_status qs_hess_partial_pool(qs_pool *pool, const float *x, int64_t rows, int64_t d,
                               float *tile, qs_err *err) {
    const int64_t nb = (d + QS_HESS_BLOCK - 1) / QS_HESS_BLOCK;
    hess_blocks h = {x, rows, d, nb, tile, NULL, NULL};
    return qs_pool_run(pool, nb * (nb + 1) / 2, hess_block_task, &h, err);
}

void qs_hess_partial(const float *x, int64_t rows, int64_t d, float *tile) {
    (void)qs_hess_partial_pool(NULL, x, rows, d, tile, NULL); /* its tasks cannot fail */
}

void qs_hess_add(double *acc, const float *tile, int64_t d) {
    for (int64_t i = 0; i < d; ++i) {
        double *a = acc + i * d;       // row i
        const float *t = tile + i * d; // row i
        for (int64_t j = i; j < d; ++j) a[j] += (double)t[j];
    }
}

typedef struct hess_add_rows {
    double *acc;       /* (d, d) */
    const float *tile; /* (d, d) */
    int64_t d;
} hess_add_rows;

static qs_status hess_add_task(void *vctx, int64_t t, int worker, qs_err *err) {
    (void)worker;
    (void)err;
    const hess_add_rows *h = vctx;
    const int64_t d = h->d, i0 = t * QS_HESS_BLOCK;
    const int64_t i1 = i0 + QS_HESS_BLOCK < d ? i0 + QS_HESS_BLOCK : d;
    for (int64_t i = i0; i < i1; ++i) {
        double *a = h->acc + i * d;       // row i
        const float *s = h->tile + i * d; // row i
        for (int64_t j = i; j < d; ++j) a[j] += (double)s[j];
    }
    return QS_OK;
}

qs_status qs_hess_add_pool(qs_pool *pool, double *acc, const float *tile, int64_t d,
                           qs_err *err) {
    hess_add_rows h = {acc, tile, d};
    return qs_pool_run(pool, (d + QS_HESS_BLOCK - 1) / QS_HESS_BLOCK, hess_add_task, &h, err);
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

/* Rows [i0, i1) of the finalized f32 Hessian: out[i][j] = (float)(s * acc[min][max]). */
typedef struct hess_final_rows {
    const double *acc; /* (d, d) upper triangle */
    float *out;        /* (d, d) */
    int64_t d;
    double s;
} hess_final_rows;

static qs_status hess_final_task(void *vctx, int64_t t, int worker, qs_err *err) {
    const hess_final_rows *h = vctx;
    const int64_t d = h->d, i0 = t * QS_HESS_BLOCK;
    const int64_t i1 = i0 + QS_HESS_BLOCK < d ? i0 + QS_HESS_BLOCK : d;
    (void)worker;
    (void)err;
    /* the lower part reads columns of acc: in bands of 64 of its rows, which stay cached */
    for (int64_t j0 = 0; j0 < i1; j0 += 64) {
        const int64_t j1 = j0 + 64 < i1 ? j0 + 64 : i1;
        for (int64_t i = i0; i < i1; ++i)
            for (int64_t j = j0; j < j1 && j < i; ++j)
                h->out[i * d + j] = (float)(h->acc[j * d + i] * h->s);
    }
    for (int64_t i = i0; i < i1; ++i)
        for (int64_t j = i; j < d; ++j) h->out[i * d + j] = (float)(h->acc[i * d + j] * h->s);
    return QS_OK;
}

qs_status qs_hess_finalize_f32_pool(qs_pool *pool, const double *acc, int64_t d, int64_t n,
                                    float *out, qs_err *err) {
    hess_final_rows h = {acc, out, d, n > 0 ? 2.0 / (double)n : 0.0};
    return qs_pool_run(pool, (d + QS_HESS_BLOCK - 1) / QS_HESS_BLOCK, hess_final_task, &h, err);
}

/* Columns [c0, c1) of the channel statistics. */
static void chan_stats_cols(const float *x, int64_t rows, int64_t d, int64_t c0, int64_t c1,
                            float *absmax, double *sumsq) {
    for (int64_t c = c0; c < c1; ++c) {
        absmax[c] = 0.0f;
        sumsq[c] = 0.0;
    }
    for (int64_t r = 0; r < rows; ++r) {
        const float *xr = x + r * d;  // (d)
        for (int64_t c = c0; c < c1; ++c) {
            float a = fabsf(xr[c]);
            if (a > absmax[c] || a != a) absmax[c] = a; /* NaN sticks */
            sumsq[c] += (double)xr[c] * (double)xr[c];
        }
    }
}

void qs_chan_stats_partial(const float *x, int64_t rows, int64_t d, float *absmax,
                           double *sumsq) {
    chan_stats_cols(x, rows, d, 0, d, absmax, sumsq);
}

static qs_status chan_stats_task(void *vctx, int64_t t, int worker, qs_err *err) {
    (void)worker;
    (void)err;
    const hess_blocks *h = vctx;
    const int64_t c0 = t * QS_HESS_BLOCK;
    const int64_t c1 = c0 + QS_HESS_BLOCK < h->d ? c0 + QS_HESS_BLOCK : h->d;
    chan_stats_cols(h->x, h->rows, h->d, c0, c1, h->absmax, h->sumsq);
    return QS_OK;
}

qs_status qs_chan_stats_partial_pool(qs_pool *pool, const float *x, int64_t rows, int64_t d,
                                     float *absmax, double *sumsq, qs_err *err) {
    hess_blocks h = {x, rows, d, 0, NULL, absmax, sumsq};
    return qs_pool_run(pool, (d + QS_HESS_BLOCK - 1) / QS_HESS_BLOCK, chan_stats_task, &h, err);
}

void qs_chan_stats_add(float *absmax, double *sumsq, const float *part_absmax,
                       const double *part_sumsq, int64_t d) {
    for (int64_t c = 0; c < d; ++c) {
        float a = part_absmax[c];
        if (a > absmax[c] || a != a) absmax[c] = a; /* NaN sticks */
        sumsq[c] += part_sumsq[c];
    }
}
