/* bench_hessian.c: accuracy and speed of the Hessian accumulation against the rows per ssyrk
 * (docs/model.md "Row blocking was measured and is not needed"). Not a test.
 *
 * Usage: bench_hessian [--quick]
 * For (N, d) in {(32768, 512), (32768, 1024), (131072, 512)} (--quick: (8192, 256)): random
 * activations (every 37th channel 20x larger, a third of the channels with a mean offset of
 * 0.7: post-norm hidden states with outlier channels), accumulated as the calibrate stage does
 * (`qs_hess_partial`: one f32 ssyrk per block of R rows; `qs_hess_add`: blocks added in f64;
 * `qs_hess_finalize`) for R in {256, 2048, 8192, 16384, 32768, 65536} (R <= N), against an
 * fp64 dsyrk of the same values: relative Frobenius error, and GFLOP/s counting N d (d + 1).
 * Single-threaded BLAS. Prints one Markdown table.
 */
#include <cblas.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "hessian.h"

#define NBLOCKS 6
static const int64_t k_blocks[NBLOCKS] = {256, 2048, 8192, 16384, 32768, 65536};

typedef struct bench_case {
    int64_t n, d;
} bench_case;

static double seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* splitmix64 -> uniform double in [0, 1) */
static double next_unit(uint64_t *state) {
    uint64_t z = (*state += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    z ^= z >> 31;
    return (double)(z >> 11) / 9007199254740992.0;
}

/* || a - ref ||_F / || ref ||_F over the upper triangles (both symmetric after finalize) */
static double frob_rel_upper(const double *a, const double *ref, int64_t d) {
    double err2 = 0.0, ref2 = 0.0;
    for (int64_t i = 0; i < d; ++i)
        for (int64_t j = i; j < d; ++j) {
            const double w = (i == j) ? 1.0 : 2.0, diff = a[i * d + j] - ref[i * d + j];
            err2 += w * diff * diff;
            ref2 += w * ref[i * d + j] * ref[i * d + j];
        }
    return sqrt(err2 / ref2);
}

/* One (N, d): fills the activations, the fp64 reference, then one row per block size.
 * Returns 0, or 1 when out of memory. */
static int bench_one(bench_case c, double err[NBLOCKS], double gflops[NBLOCKS]) {
    const int64_t n = c.n, d = c.d;
    float *fbuf = malloc((size_t)(n * d + d * d) * sizeof(float));       // x, tile
    double *dbuf = calloc((size_t)(n * d + 2 * d * d), sizeof(double));  // xd, ref, acc
    if (!fbuf || !dbuf) {
        free(fbuf);
        free(dbuf);
        return 1;
    }
    float *x = fbuf, *tile = fbuf + n * d;          // (n, d), (d, d)
    double *xd = dbuf, *ref = dbuf + n * d;         // (n, d), (d, d)
    double *acc = ref + d * d;                      // (d, d)
    uint64_t state = 20261203ULL + (uint64_t)(n + d);
    for (int64_t r = 0; r < n; ++r)
        for (int64_t k = 0; k < d; ++k) {
            const double amp = (k % 37 == 0) ? 20.0 : 1.0, off = (k % 3 == 0) ? 0.7 : 0.0;
            x[r * d + k] = (float)(amp * (off + 3.4 * (next_unit(&state) - 0.5)));
            xd[r * d + k] = (double)x[r * d + k];
        }
    cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, (int)d, (int)n, 1.0, xd, (int)d, 0.0,
                ref, (int)d);
    qs_hess_finalize(ref, d, n);
    for (int b = 0; b < NBLOCKS; ++b) {
        err[b] = gflops[b] = -1.0;
        if (k_blocks[b] > n) continue;
        const double t0 = seconds();
        memset(acc, 0, (size_t)(d * d) * sizeof(double));
        for (int64_t r = 0; r < n; r += k_blocks[b]) {
            qs_hess_partial(x + r * d, n - r < k_blocks[b] ? n - r : k_blocks[b], d, tile);
            qs_hess_add(acc, tile, d);
        }
        const double t = seconds() - t0;
        qs_hess_finalize(acc, d, n);
        err[b] = frob_rel_upper(acc, ref, d);
        gflops[b] = (double)n * (double)d * (double)(d + 1) / t / 1e9;
    }
    free(fbuf);
    free(dbuf);
    return 0;
}

int main(int argc, char **argv) {
    if (argc > 2 || (argc == 2 && strcmp(argv[1], "--quick") != 0)) {
        fprintf(stderr, "usage: bench_hessian [--quick]\n");
        return 2;
    }
    const int quick = argc == 2;
    openblas_set_num_threads(1);
    const bench_case full[] = {{32768, 512}, {32768, 1024}, {131072, 512}}, small[] = {{8192, 256}};
    const bench_case *cases = quick ? small : full;
    const int ncases = quick ? 1 : 3;
    double err[3][NBLOCKS], gf[3][NBLOCKS];
    for (int c = 0; c < ncases; ++c)
        if (bench_one(cases[c], err[c], gf[c])) {
            fprintf(stderr, "bench_hessian: out of memory\n");
            return 1;
        }
    printf("| rows per ssyrk |");
    for (int c = 0; c < ncases; ++c) printf(" N=%lld, d=%lld |", (long long)cases[c].n, (long long)cases[c].d);
    printf("\n|---:|");
    for (int c = 0; c < ncases; ++c) printf("---:|");
    printf("\n");
    for (int b = 0; b < NBLOCKS; ++b) {
        printf("| %lld |", (long long)k_blocks[b]);
        for (int c = 0; c < ncases; ++c)
            if (err[c][b] < 0) printf(" — |");
            else printf(" %.2g (%.0f GFLOP/s) |", err[c][b], gf[c][b]);
        printf("\n");
    }
    return 0;
}
