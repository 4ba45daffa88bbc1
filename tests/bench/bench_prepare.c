/* bench_prepare.c: the GPTQ factor (qs_gptq_prepare_pool: one Cholesky and one triangular
 * inverse on fixed tiles, chol_tiled.c) against the LAPACK chain it replaced (spotrf ->
 * spotri -> spotrf on the whole matrix), at 1 and 2 pool threads, as a fraction of the GEMM
 * peak measured in the same run. Not a test.
 *
 * Usage: bench_prepare [--quick] [n ...]   (default n: 4096 11008; --quick: 1024)
 * Peak: best of 3 single-threaded sgemm 2048^3 (P1), and two threads each running one at
 * once (P2, their sum). The Hessian is X^T X / N of random X (N = 2n rows) plus damp 0.01 of
 * the mean diagonal. FLOP: 4/3 n^3 for the chain (potrf 1/3, potri 2/3, potrf 1/3), 2/3 n^3
 * for the tiled factor (potrf 1/3, trtri 1/3); the table also gives the seconds, so the two
 * compare by time whatever the FLOP convention. Also checks that the factor's bytes at 2
 * threads equal those at 1. Single-threaded BLAS inside every task.
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cblas.h>
#include <lapacke.h>

#include "quant.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

enum { PEAK_N = 2048 };

/* Seconds of one sgemm PEAK_N^3 on fresh buffers. */
static void *sgemm_once(void *out) {
    const size_t nn = (size_t)PEAK_N * PEAK_N;
    float *a = malloc(nn * sizeof(float)), *b = malloc(nn * sizeof(float)),
          *c = calloc(nn, sizeof(float));
    for (size_t i = 0; i < nn; ++i) {
        a[i] = (float)(i % 7) * 0.1f;
        b[i] = (float)(i % 5) * 0.1f;
    }
    double best = 1e30;
    for (int r = 0; r < 3; ++r) {
        double t0 = now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, PEAK_N, PEAK_N, PEAK_N, 1.0f, a,
                    PEAK_N, b, PEAK_N, 0.0f, c, PEAK_N);
        double t = now() - t0;
        if (t < best) best = t;
    }
    *(double *)out = best;
    free(a);
    free(b);
    free(c);
    return NULL;
}

/* GFLOP/s of k single-threaded sgemm running at once (their sum). */
static double peak(int k) {
    pthread_t th[2];
    double t[2] = {0, 0};
    for (int i = 0; i < k; ++i) pthread_create(&th[i], NULL, sgemm_once, &t[i]);
    double sum = 0.0;
    for (int i = 0; i < k; ++i) {
        pthread_join(th[i], NULL);
        sum += 2.0 * PEAK_N * PEAK_N * (double)PEAK_N / t[i] / 1e9;
    }
    return sum;
}

static float *make_hessian(int64_t n) {
    const int64_t N = 2 * n;
    float *X = malloc(sizeof(float) * (size_t)(N * n)); // (N, n)
    float *H = malloc(sizeof(float) * (size_t)(n * n)); // (n, n)
    uint64_t s = 88172645463325252ull;
    for (int64_t i = 0; i < N * n; ++i) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        X[i] = (float)((double)(s >> 11) / 9007199254740992.0 - 0.5);
    }
    cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, (int)n, (int)N, 1.0f / (float)N, X,
                (int)n, 0.0f, H, (int)n);
    for (int64_t i = 0; i < n; ++i)
        for (int64_t j = 0; j < i; ++j) H[i * n + j] = H[j * n + i];
    free(X);
    return H;
}

/* Seconds of the LAPACK chain on the damped H (what qs_gptq_prepare ran before). */
static double chain_seconds(const float *H, int64_t n) {
    float *A = malloc(sizeof(float) * (size_t)(n * n)); // (n, n)
    double mean = 0.0;
    for (int64_t i = 0; i < n; ++i) mean += H[i * n + i];
    mean /= (double)n;
    memcpy(A, H, sizeof(float) * (size_t)(n * n));
    for (int64_t i = 0; i < n; ++i) A[i * n + i] += (float)(0.01 * mean);
    double t0 = now();
    LAPACKE_spotrf_work(LAPACK_COL_MAJOR, 'L', (lapack_int)n, A, (lapack_int)n);
    LAPACKE_spotri_work(LAPACK_COL_MAJOR, 'L', (lapack_int)n, A, (lapack_int)n);
    LAPACKE_spotrf_work(LAPACK_COL_MAJOR, 'L', (lapack_int)n, A, (lapack_int)n);
    double t = now() - t0;
    free(A);
    return t;
}

int main(int argc, char **argv) {
    openblas_set_num_threads(1);
    int64_t ns[16], nn = 0;
    for (int i = 1; i < argc && nn < 16; ++i) {
        if (strcmp(argv[i], "--quick") == 0) ns[nn++] = 1024;
        else ns[nn++] = atoll(argv[i]);
    }
    if (nn == 0) {
        ns[nn++] = 4096;
        ns[nn++] = 11008;
    }
    double P1 = peak(1), P2 = peak(2);
    printf("GEMM peak: P1 %.1f GFLOP/s (one thread), P2 %.1f GFLOP/s (two at once)\n", P1, P2);
    printf("| n | LAPACK chain, 1 thread | tiled, 1 thread | tiled, 2 threads | speed-up "
           "1 thread | speed-up 2 threads | bytes 2 = 1 thread |\n|---:|---:|---:|---:|---:|---:|---|\n");
    for (int64_t k = 0; k < nn; ++k) {
        const int64_t n = ns[k];
        float *H = make_hessian(n);
        const double fc = 4.0 / 3.0 * (double)n * n * n, ft = 2.0 / 3.0 * (double)n * n * n;
        double tc = chain_seconds(H, n), tt[3] = {0, 0, 0};
        qs_quant_params p;
        qs_quant_params_default(&p);
        qs_gptq_factor f[3];
        memset(f, 0, sizeof(f));
        int same = 1;
        for (int t = 1; t <= 2; ++t) {
            qs_pool *pool = NULL;
            qs_err e = {0};
            if (qs_pool_create(t, &pool, &e) != QS_OK) return 1;
            double t0 = now();
            if (qs_gptq_prepare_pool(pool, H, n, &p, &f[t], &e) != QS_OK) {
                fprintf(stderr, "bench_prepare: %s\n", e.msg);
                return 1;
            }
            tt[t] = now() - t0;
            qs_pool_free(pool);
        }
        same = memcmp(f[1].U, f[2].U, sizeof(float) * (size_t)(n * n)) == 0;
        printf("| %lld | %.2f s, %.2f P1 | %.2f s, %.2f P1 | %.2f s, %.2f P2 | %.2f | %.2f | %s |\n",
               (long long)n, tc, fc / tc / 1e9 / P1, tt[1], ft / tt[1] / 1e9 / P1, tt[2],
               ft / tt[2] / 1e9 / P2, tc / tt[1], tc / tt[2], same ? "yes" : "NO");
        qs_gptq_factor_free(&f[1]);
        qs_gptq_factor_free(&f[2]);
        free(H);
        if (!same) return 1;
    }
    return 0;
}
