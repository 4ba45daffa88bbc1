/* bench_gptq.c: GPTQ throughput against this machine's single-thread SGEMM peak.
 *
 * Usage: bench_gptq [--quick]   (--quick skips the 4096-wide shapes)
 * Peak: best of several 2048^3 sgemm calls. GPTQ: w4g128 (asym, B 128, row_block 256) on
 * Llama-7B shapes (4096x4096, gate/up 11008x4096) and tinyllama-a shapes; GFLOP/s count
 * 2*d_out*d_in^2 (the nominal GPTQ cost). Prints one line per shape; not a test.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cblas.h>

#include "quant.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static uint64_t g_rng = 88172645463325252ull;
static float frand(void) { /* uniform in [-1, 1) */
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return (float)((double)(g_rng >> 11) * (2.0 / 9007199254740992.0) - 1.0);
}

static double sgemm_peak(void) {
    const int n = 2048;
    float *A = malloc((size_t)n * n * 4), *B = malloc((size_t)n * n * 4), *C = malloc((size_t)n * n * 4);
    for (size_t i = 0; i < (size_t)n * n; ++i) {
        A[i] = frand();
        B[i] = frand();
    }
    double best = 1e30;
    for (int rep = 0; rep < 4; ++rep) {
        double t = now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, A, n, B, n, 0.0f, C, n);
        t = now() - t;
        if (t < best) best = t;
    }
    free(A);
    free(B);
    free(C);
    return 2.0 * n * (double)n * n / best / 1e9;
}

/* Times one shape; returns 0 on success. */
static int bench_shape(int64_t d_out, int64_t n, double peak, int reps) {
    int rc = 1;
    const int64_t N = n < 1024 ? 2 * n : 1024; /* token rows of the calibration stand-in */
    float *X = malloc((size_t)(N * n) * 4), *H = malloc((size_t)(n * n) * 4);
    float *W = malloc((size_t)(d_out * n) * 4), *wq = malloc((size_t)(d_out * n) * 4);
    qs_quant_params p;
    qs_quant_params_default(&p);
    int64_t ng = qs_quant_ngroups(n, p.group_size);
    uint8_t *codes = malloc((size_t)(d_out * n));
    uint16_t *sc = malloc((size_t)(d_out * ng) * 2);
    int32_t *z = malloc((size_t)(d_out * ng) * 4);
    qs_gptq_factor f;
    memset(&f, 0, sizeof f);
    qs_err e = {0};
    for (int64_t i = 0; i < N * n; ++i) X[i] = frand();
    for (int64_t i = 0; i < d_out * n; ++i) W[i] = 0.02f * frand();
    cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, (int)n, (int)N, 2.0f / (float)N, X, (int)n,
                0.0f, H, (int)n);
    for (int64_t i = 0; i < n; ++i)
        for (int64_t j = 0; j < i; ++j) H[i * n + j] = H[j * n + i];
    double tprep = 1e30, tq = 1e30;
    for (int rep = 0; rep < reps; ++rep) {
        qs_gptq_factor_free(&f);
        double t = now();
        if (qs_gptq_prepare(H, n, &p, &f, &e) != QS_OK) goto fail;
        t = now() - t;
        tprep = t < tprep ? t : tprep;
        qs_quant_out o = {codes, sc, z, wq};
        t = now();
        if (qs_gptq_quantize_rows(&f, &p, W, d_out, 0, d_out, &o, &e) != QS_OK) goto fail;
        t = now() - t;
        tq = t < tq ? t : tq;
    }
    double flops = 2.0 * (double)d_out * (double)n * (double)n;
    double g = flops / tq / 1e9, gt = flops / (tq + tprep) / 1e9;
    printf("%6lld x %-5lld  prepare %8.3f s  quantize %8.3f s  %7.1f GFLOP/s (%.2f of peak)"
           "  with prepare %7.1f GFLOP/s (%.2f)\n",
           (long long)d_out, (long long)n, tprep, tq, g, g / peak, gt, gt / peak);
    fflush(stdout);
    rc = 0;
    goto done;
fail:
    fprintf(stderr, "bench_gptq: %s\n", e.msg);
done:
    qs_gptq_factor_free(&f);
    free(X);
    free(H);
    free(W);
    free(wq);
    free(codes);
    free(sc);
    free(z);
    return rc;
}

int main(int argc, char **argv) {
    int quick = argc > 1 && strcmp(argv[1], "--quick") == 0;
    openblas_set_num_threads(1);
    double peak = sgemm_peak();
    printf("sgemm 2048^3 single thread: %.1f GFLOP/s (peak)\n", peak);
    printf("GPTQ w4g128 asym, B 128, row_block 256, 1 thread; GFLOP/s = 2 d_out d_in^2 / time\n");
    /* tinyllama-a: q/o 256x256, k/v 128x256, gate/up 768x256, down 256x768 */
    const int64_t tiny[][2] = {{256, 256}, {128, 256}, {768, 256}, {256, 768}};
    for (size_t i = 0; i < sizeof tiny / sizeof tiny[0]; ++i)
        if (bench_shape(tiny[i][0], tiny[i][1], peak, 5)) return 1;
    if (!quick) {
        if (bench_shape(4096, 4096, peak, 1)) return 1;
        if (bench_shape(11008, 4096, peak, 1)) return 1;
    }
    return 0;
}
