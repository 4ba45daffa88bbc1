/* bench_blas.c: the BLAS and LAPACK calls qshard makes, timed single-threaded, and whether
 * each gives the same bytes twice and at other tile sub-sizes. One source, two builds: the
 * CMake target bench_blas links the product's OpenBLAS (BLAS and LAPACK); tests/bench/
 * bench_blas.sh also compiles it with -DQS_BLAS_BLIS against Debian's BLIS (BLAS only: the
 * LAPACK calls then come from Debian's reference LAPACK running on BLIS's BLAS). Not a test.
 *
 * Usage: bench_blas [--secs S] [--max-n N]
 *   --secs   time per case (default 2): best of the calls made in that time, at least 2 calls
 *   --max-n  skip the LAPACK cases larger than N (default 11008)
 * Cases (row-major as in the product; rows x cols; GFLOP/s of the nominal flops):
 *   sgemm 2048^3                  the peak reference (bench_gptq's)
 *   forward 1024x4096 . 4096x4096^T, 1024x4096 . 11008x4096^T, 1024x11008 . 4096x11008^T:
 *                                 qs_linear (x W^T), 1024 rows of a chunk at once
 *   hessian X^T X, X 1024x4096 and 1024x11008: qs_hess_partial's 256x256 blocks (ssyrk on
 *                                 the diagonal, sgemm above, upper triangle), flops N d (d+1)
 *   gptq update 256x(n-128)x128, n 4096 and 11008: quantize's per-block sgemm (E^T U)
 *   spotrf, strtri (lower, n 4096 and 11008): GPTQ prepare's LAPACK; at 4096 also spotri
 *                                 (the former prepare's) and strsm n x n (left, lower, n
 *                                 right-hand sides)
 * Stability columns: "twice" = the same call again gives the same bytes; "tiles" = the
 * product's tiling against another: forward 1024 rows in one call vs 4 calls of 256 rows
 * (the product calls 256-row tiles), hessian blocks vs one ssyrk of the whole d, gptq update
 * 256 rows vs 2 calls of 128 rows.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cblas.h>

#include "bench_util.h"
#ifdef QS_BLAS_BLIS
#include <blis.h>
#endif

/* LAPACK (Fortran symbols: OpenBLAS's own, or reference LAPACK on BLIS) */
void spotrf_(const char *uplo, const int *n, float *a, const int *lda, int *info, size_t);
void strtri_(const char *uplo, const char *diag, const int *n, float *a, const int *lda, int *info,
             size_t, size_t);
void spotri_(const char *uplo, const int *n, float *a, const int *lda, int *info, size_t);
#ifndef QS_BLAS_BLIS
void openblas_set_num_threads(int);
char *openblas_get_corename(void);
char *openblas_get_config(void);
#endif

static float *rand_buf(int64_t count) {
    float *a = malloc((size_t)count * sizeof(float));
    if (!a) {
        fprintf(stderr, "bench_blas: out of memory\n");
        exit(1);
    }
    for (int64_t i = 0; i < count; ++i) a[i] = bench_frand();
    return a;
}

/* One case: run(ctx, out) computes into out (count floats); alt(ctx, out) computes the same
 * result another way (NULL: no tiles check). */
typedef struct bench_case {
    const char *name;
    double flops;
    int64_t count;
    void (*run)(void *ctx, float *out);
    void (*alt)(void *ctx, float *out);
    void *ctx;
} bench_case;

static double g_secs = 2.0;

static void time_case(const bench_case *c) {
    float *a = calloc((size_t)c->count, sizeof(float)), *b = calloc((size_t)c->count, sizeof(float));
    if (!a || !b) {
        fprintf(stderr, "bench_blas: out of memory\n");
        exit(1);
    }
    double best = 1e30, t0 = bench_wall();
    int calls = 0;
    while (calls < 2 || bench_wall() - t0 < g_secs) {
        float *o = calls % 2 ? b : a;
        double t = bench_wall();
        c->run(c->ctx, o);
        t = bench_wall() - t;
        best = t < best ? t : best;
        ++calls;
    }
    int twice = memcmp(a, b, (size_t)c->count * sizeof(float)) == 0;
    const char *tiles = "-";
    if (c->alt) {
        c->alt(c->ctx, b);
        tiles = memcmp(a, b, (size_t)c->count * sizeof(float)) == 0 ? "same" : "DIFFER";
    }
    printf("%-34s %9.4f s %8.1f GFLOP/s  twice %-4s  tiles %s\n", c->name, best,
           c->flops / best / 1e9, twice ? "same" : "DIFFER", tiles);
    fflush(stdout);
    free(a);
    free(b);
}

/* ---- sgemm peak and forward: y (rows, d_out) = x (rows, d_in) W^T ---------------------- */
typedef struct gemm_ctx {
    int rows, d_out, d_in;
    const float *x; /* (rows, d_in) */
    const float *w; /* (d_out, d_in) */
} gemm_ctx;

static void gemm_rows(const gemm_ctx *g, int r0, int r1, float *y) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, r1 - r0, g->d_out, g->d_in, 1.0f,
                g->x + (size_t)r0 * g->d_in, g->d_in, g->w, g->d_in, 0.0f,
                y + (size_t)r0 * g->d_out, g->d_out);
}

static void forward_run(void *ctx, float *y) {
    const gemm_ctx *g = ctx;
    gemm_rows(g, 0, g->rows, y);
}

static void forward_tiles(void *ctx, float *y) {
    const gemm_ctx *g = ctx;
    for (int r0 = 0; r0 < g->rows; r0 += 256) gemm_rows(g, r0, r0 + 256 < g->rows ? r0 + 256 : g->rows, y);
}

static void bench_forward(int rows, int d_out, int d_in, const char *name, int tiles) {
    float *x = rand_buf((int64_t)rows * d_in), *w = rand_buf((int64_t)d_out * d_in);
    gemm_ctx g = {rows, d_out, d_in, x, w};
    bench_case c = {name, 2.0 * rows * (double)d_out * d_in, (int64_t)rows * d_out, forward_run,
                    tiles ? forward_tiles : NULL, &g};
    time_case(&c);
    free(x);
    free(w);
}

/* ---- hessian: tile (d, d) upper = X^T X, X (N, d), in 256 x 256 blocks ----------------- */
typedef struct hess_ctx {
    int N, d;
    const float *x; /* (N, d) */
} hess_ctx;

static void hess_blocks(void *ctx, float *t) {
    const hess_ctx *h = ctx;
    const int d = h->d, B = 256;
    for (int i0 = 0; i0 < d; i0 += B)
        for (int j0 = i0; j0 < d; j0 += B) {
            int i1 = i0 + B < d ? i0 + B : d, j1 = j0 + B < d ? j0 + B : d;
            if (i0 == j0)
                cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, i1 - i0, h->N, 1.0f, h->x + i0,
                            d, 0.0f, t + (size_t)i0 * d + j0, d);
            else
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, i1 - i0, j1 - j0, h->N, 1.0f,
                            h->x + i0, d, h->x + j0, d, 0.0f, t + (size_t)i0 * d + j0, d);
        }
}

static void hess_whole(void *ctx, float *t) {
    const hess_ctx *h = ctx;
    cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, h->d, h->N, 1.0f, h->x, h->d, 0.0f, t, h->d);
}

static void bench_hessian(int N, int d, const char *name) {
    float *x = rand_buf((int64_t)N * d);
    hess_ctx h = {N, d, x};
    bench_case c = {name, (double)N * d * (d + 1.0), (int64_t)d * d, hess_blocks, hess_whole, &h};
    time_case(&c);
    free(x);
}

/* ---- gptq update: Wp[:, i2:] (R, n - i2) -= E (R, 128) U[i1:i2, i2:] (128, n - i2) -------- */
typedef struct upd_ctx {
    int R, n;
    const float *E;  /* (128, R): E1T, the block's errors transposed */
    const float *U;  /* (128, n) rows i1..i2 of U */
    const float *W0; /* (R, n) the weights before the update */
} upd_ctx;

static void upd_rows(const upd_ctx *u, int r0, int r1, float *w) {
    const int nb = 128;
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, r1 - r0, u->n - nb, nb, -1.0f, u->E + r0,
                u->R, u->U + nb, u->n, 1.0f, w + (size_t)r0 * u->n + nb, u->n);
}

static void upd_run(void *ctx, float *w) {
    const upd_ctx *u = ctx;
    memcpy(w, u->W0, sizeof(float) * (size_t)u->R * u->n);
    upd_rows(u, 0, u->R, w);
}

static void upd_halves(void *ctx, float *w) {
    const upd_ctx *u = ctx;
    memcpy(w, u->W0, sizeof(float) * (size_t)u->R * u->n);
    upd_rows(u, 0, u->R / 2, w);
    upd_rows(u, u->R / 2, u->R, w);
}

static void bench_update(int n, const char *name) {
    const int R = 256, nb = 128;
    float *E = rand_buf((int64_t)nb * R), *U = rand_buf((int64_t)nb * n), *W0 = rand_buf((int64_t)R * n);
    upd_ctx u = {R, n, E, U, W0};
    bench_case c = {name, 2.0 * R * (double)(n - nb) * nb, (int64_t)R * n, upd_run, upd_halves, &u};
    time_case(&c);
    free(E);
    free(U);
    free(W0);
}

/* ---- prepare's LAPACK on an SPD matrix A = X^T X / N + I, X (n, n) ---------------------- */
typedef struct lap_ctx {
    int n, kind;     /* kind: 0 spotrf, 1 strtri (of the factor), 2 spotri, 3 strsm */
    const float *A;  /* (n, n) SPD */
    const float *L;  /* (n, n) its Cholesky factor (column-major lower) */
    const float *Bm; /* (n, n) right-hand sides for strsm */
} lap_ctx;

static void lap_run(void *ctx, float *out) {
    const lap_ctx *l = ctx;
    const int n = l->n;
    int info = 0;
    memcpy(out, l->kind == 0 ? l->A : l->kind == 3 ? l->Bm : l->L, sizeof(float) * (size_t)n * n);
    if (l->kind == 0) spotrf_("L", &n, out, &n, &info, 1);
    if (l->kind == 1) strtri_("L", "N", &n, out, &n, &info, 1, 1);
    if (l->kind == 2) spotri_("L", &n, out, &n, &info, 1);
    if (l->kind == 3)
        cblas_strsm(CblasColMajor, CblasLeft, CblasLower, CblasNoTrans, CblasNonUnit, n, n, 1.0f,
                    l->L, n, out, n);
    if (info != 0) fprintf(stderr, "bench_blas: LAPACK kind %d info %d\n", l->kind, info);
}

/* Times spotrf, strtri and (kinds < nkinds) spotri, strsm at size n. */
static void bench_lapack(int n, int nkinds) {
    float *X = rand_buf((int64_t)n * n), *A = malloc(sizeof(float) * (size_t)n * n);
    float *L = malloc(sizeof(float) * (size_t)n * n), *Bm = rand_buf((int64_t)n * n);
    if (!A || !L) exit(1);
    cblas_ssyrk(CblasColMajor, CblasLower, CblasTrans, n, n, 1.0f / (float)n, X, n, 0.0f, A, n);
    for (int i = 0; i < n; ++i) A[(size_t)i * n + i] += 1.0f;
    memcpy(L, A, sizeof(float) * (size_t)n * n);
    int info = 0;
    spotrf_("L", &n, L, &n, &info, 1);
    const double n3 = (double)n * n * n;
    const char *names[4] = {"spotrf", "strtri", "spotri", "strsm n x n"};
    const double flops[4] = {n3 / 3, n3 / 3, 2 * n3 / 3, n3};
    for (int k = 0; k < nkinds; ++k) {
        char name[64];
        snprintf(name, sizeof name, "%s n %d", names[k], n);
        lap_ctx l = {n, k, A, L, Bm};
        bench_case c = {name, flops[k], (int64_t)n * n, lap_run, NULL, &l};
        time_case(&c);
    }
    free(X);
    free(A);
    free(L);
    free(Bm);
}

int main(int argc, char **argv) {
    int max_n = 11008;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--secs") == 0) g_secs = atof(argv[i + 1]);
        else if (strcmp(argv[i], "--max-n") == 0) max_n = atoi(argv[i + 1]);
        else {
            fprintf(stderr, "bench_blas: bad option %s (see the file comment)\n", argv[i]);
            return 2;
        }
    }
#ifdef QS_BLAS_BLIS
    bli_init();
    bli_thread_set_num_threads(1);
    printf("BLIS %s, sub-configuration %s, 1 thread\n", bli_info_get_version_str(),
           bli_arch_string(bli_arch_query_id()));
#else
    openblas_set_num_threads(1);
    printf("%s, core %s, 1 thread\n", openblas_get_config(), openblas_get_corename());
#endif
    bench_forward(2048, 2048, 2048, "sgemm 2048^3 (peak)", 0);
    bench_forward(1024, 4096, 4096, "forward 1024x4096 . 4096x4096^T", 1);
    bench_forward(1024, 11008, 4096, "forward 1024x4096 . 11008x4096^T", 1);
    bench_forward(1024, 4096, 11008, "forward 1024x11008 . 4096x11008^T", 1);
    bench_hessian(1024, 4096, "hessian X^T X, X 1024x4096");
    bench_hessian(1024, 11008, "hessian X^T X, X 1024x11008");
    bench_update(4096, "gptq update 256x3968x128");
    bench_update(11008, "gptq update 256x10880x128");
    if (max_n >= 4096) bench_lapack(4096, 4);
    if (max_n >= 11008) bench_lapack(11008, 2);
    return 0;
}
