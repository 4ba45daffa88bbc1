/* bench_sgemm.c: single-threaded SGEMM throughput for a fixed wall time, printed as
 * "GFLOPS <value>". bench_calib.py runs one alone and two at once to measure how much two
 * cores share (memory bandwidth, turbo): R = (sum of two concurrent) / (one alone).
 * Usage: bench_sgemm [seconds=5] [n=1024]. Not a test. */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>

#include "log.h"

int main(int argc, char **argv) {
    double secs = argc > 1 ? atof(argv[1]) : 5.0;
    int n = argc > 2 ? atoi(argv[2]) : 1024;
    openblas_set_num_threads(1);
    float *a = malloc(sizeof(float) * (size_t)n * (size_t)n); // (n, n)
    float *b = malloc(sizeof(float) * (size_t)n * (size_t)n); // (n, n)
    float *c = malloc(sizeof(float) * (size_t)n * (size_t)n); // (n, n)
    if (!a || !b || !c) return 1;
    for (size_t i = 0; i < (size_t)n * (size_t)n; ++i) {
        a[i] = (float)(i % 13) * 0.01f;
        b[i] = (float)(i % 7) * 0.02f;
    }
    double t0 = qs_log_now(), t = t0;
    long iters = 0;
    while (t - t0 < secs) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c,
                    n);
        ++iters;
        t = qs_log_now();
    }
    printf("GFLOPS %.2f\n", 2.0 * n * (double)n * n * (double)iters / (t - t0) / 1e9);
    free(a);
    free(b);
    free(c);
    return 0;
}
