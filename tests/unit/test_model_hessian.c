/* test_model_hessian.c: Hessian (2/N sum X^T X) and channel statistics accumulation
 * against fp64, for N = 32768 tokens and d = 512 channels with outlier channels and
 * non-zero means: chunked (4 x 8192 rows) and one 32768-row chunk, order independence of
 * chunk partials, NaN propagation in absmax, empty chunks; the f32 finalize on a pool
 * (qs_hess_finalize_f32_pool) equals finalize + cast at 1, 2, 3 threads. Fails through the
 * exit code.
 */
#include <cblas.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "hessian.h"

#define N_TOK 32768
#define D 512
#define TOL_HESS_REL 1e-6  /* relative Frobenius error vs fp64 (brief requirement) */
#define TOL_REF_CHECK 1e-12 /* dsyrk reference vs naive fp64 sums on sampled entries */
#define TOL_SUMSQ_REL 1e-12

static uint64_t g_rng = 0x243F6A8885A308D3ULL;
static double urand(void) { /* [0, 1) */
    g_rng ^= g_rng >> 12;
    g_rng ^= g_rng << 25;
    g_rng ^= g_rng >> 27;
    return (double)((g_rng * 0x2545F4914F6CDD1DULL) >> 11) * (1.0 / 9007199254740992.0);
}

/* rel Frobenius error of the full symmetric a vs ref, both (d, d) */
static double rel_frob(const double *a, const double *ref, int64_t d) {
    double num = 0.0, den = 0.0;
    for (int64_t i = 0; i < d * d; ++i) {
        double e = a[i] - ref[i];
        num += e * e;
        den += ref[i] * ref[i];
    }
    return sqrt(num / den);
}

static void accumulate(const float *x, int64_t n, int64_t chunk, double *acc, float *tile) {
    memset(acc, 0, (size_t)D * D * sizeof(double));
    for (int64_t r = 0; r < n; r += chunk) {
        int64_t k = n - r < chunk ? n - r : chunk;
        qs_hess_partial(x + r * D, k, D, tile);
        qs_hess_add(acc, tile, D);
    }
    qs_hess_finalize(acc, D, n);
}

int main(void) {
    float *x = malloc((size_t)N_TOK * D * sizeof(float));      // (N, D)
    double *xd = malloc((size_t)N_TOK * D * sizeof(double));   // (N, D)
    double *ref = calloc((size_t)D * D, sizeof(double));       // (D, D)
    double *acc = calloc((size_t)D * D, sizeof(double));       // (D, D)
    double *acc2 = calloc((size_t)D * D, sizeof(double));      // (D, D)
    float *tile = malloc((size_t)D * D * sizeof(float));       // (D, D)
    float *tiles = malloc((size_t)4 * D * D * sizeof(float));  // (4, D, D)
    if (!x || !xd || !ref || !acc || !acc2 || !tile || !tiles) {
        fprintf(stderr, "out of memory\n");
        return 1;
    }

    /* activations: unit-ish noise, every 37th channel an outlier (x20), a third of the
     * channels with a mean offset, like post-norm hidden states */
    for (int64_t r = 0; r < N_TOK; ++r)
        for (int64_t c = 0; c < D; ++c) {
            double scale = (c % 37 == 0) ? 20.0 : 1.0;
            double mean = (c % 3 == 0) ? 0.7 : 0.0;
            x[r * D + c] = (float)(scale * (mean + (urand() - 0.5) * 3.4));
        }
    for (int64_t i = 0; i < (int64_t)N_TOK * D; ++i) xd[i] = x[i];

    /* fp64 reference: dsyrk on the exact (f64) values, checked against naive sums */
    cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, D, N_TOK, 1.0, xd, D, 0.0, ref, D);
    double worst = 0.0;
    for (int s = 0; s < 64; ++s) {
        int64_t i = (int64_t)(urand() * D), j = (int64_t)(urand() * D);
        if (j < i) {
            int64_t t = i;
            i = j;
            j = t;
        }
        double sum = 0.0;
        for (int64_t r = 0; r < N_TOK; ++r) sum += xd[r * D + i] * xd[r * D + j];
        double e = fabs(sum - ref[i * D + j]) / (fabs(sum) + 1e-300);
        if (e > worst) worst = e;
    }
    CHECK(worst <= TOL_REF_CHECK, "dsyrk reference disagrees with naive sums: %.3g", worst);
    qs_hess_finalize(ref, D, N_TOK);

    /* chunked: 4 chunks of 8192 rows */
    accumulate(x, N_TOK, 8192, acc, tile);
    double e4 = rel_frob(acc, ref, D);
    CHECK(e4 <= TOL_HESS_REL, "4 x 8192 chunks: rel Frobenius err %.3g", e4);
    printf("Hessian N=%d d=%d, 4 chunks x 8192: rel Frobenius err %.3g\n", N_TOK, D, e4);

    /* one chunk of 32768 rows */
    accumulate(x, N_TOK, N_TOK, acc2, tile);
    double e1 = rel_frob(acc2, ref, D);
    CHECK(e1 <= TOL_HESS_REL, "1 x 32768 chunk: rel Frobenius err %.3g", e1);
    printf("Hessian N=%d d=%d, 1 chunk x 32768: rel Frobenius err %.3g\n", N_TOK, D, e1);

    /* symmetry after finalize */
    int sym = 1;
    for (int64_t i = 0; i < D && sym; ++i)
        for (int64_t j = 0; j < i; ++j)
            if (acc[i * D + j] != acc[j * D + i]) {
                sym = 0;
                break;
            }
    CHECK(sym, "finalized Hessian not symmetric");

    /* chunk partials computed out of order (as on other threads/ranks), added in chunk
     * order: identical bits to the sequential run */
    const int order[4] = {2, 0, 3, 1};
    for (int k = 0; k < 4; ++k)
        qs_hess_partial(x + (int64_t)order[k] * 8192 * D, 8192, D,
                        tiles + (size_t)order[k] * D * D);
    memset(acc2, 0, (size_t)D * D * sizeof(double));
    for (int k = 0; k < 4; ++k) qs_hess_add(acc2, tiles + (size_t)k * D * D, D);
    qs_hess_finalize(acc2, D, N_TOK);
    CHECK(memcmp(acc, acc2, (size_t)D * D * sizeof(double)) == 0,
          "out-of-order chunk partials changed the bits");

    /* f64 partial path: same values as the f32 tile path for a single chunk */
    memset(acc2, 0, (size_t)D * D * sizeof(double));
    {
        double *part = ref; /* reuse as scratch: (D, D) */
        memset(part, 0, (size_t)D * D * sizeof(double));
        qs_hess_partial(x, 8192, D, tile);
        qs_hess_add(part, tile, D);
        qs_hess_add_f64(acc2, part, D);
        memset(part, 0, (size_t)D * D * sizeof(double));
        qs_hess_add(part, tile, D);
        int same = memcmp(acc2, part, (size_t)D * D * sizeof(double)) == 0;
        CHECK(same, "qs_hess_add_f64 on a zero accumulator is not a copy");
    }

    /* channel statistics: chunk partials merged in order vs naive */
    {
        float am[D], pam[D];
        double ss[D], pss[D];
        for (int c = 0; c < D; ++c) {
            am[c] = 0.0f;
            ss[c] = 0.0;
        }
        for (int64_t r = 0; r < N_TOK; r += 8192) {
            qs_chan_stats_partial(x + r * D, 8192, D, pam, pss);
            qs_chan_stats_add(am, ss, pam, pss, D);
        }
        int ok_max = 1;
        double worst_ss = 0.0;
        for (int c = 0; c < D; ++c) {
            float m = 0.0f;
            double s = 0.0;
            for (int64_t r = 0; r < N_TOK; ++r) {
                float a = fabsf(x[r * D + c]);
                if (a > m) m = a;
                s += (double)x[r * D + c] * x[r * D + c];
            }
            if (m != am[c]) ok_max = 0;
            double e = fabs(s - ss[c]) / s;
            if (e > worst_ss) worst_ss = e;
        }
        CHECK(ok_max, "absmax differs from naive");
        CHECK(worst_ss <= TOL_SUMSQ_REL, "sum of squares rel err %.3g", worst_ss);

        /* NaN sticks in absmax through partial and merge */
        float xn[2 * 3] = {1.0f, NAN, -2.0f, 3.0f, 0.5f, -4.0f};
        qs_chan_stats_partial(xn, 2, 3, pam, pss);
        CHECK(pam[0] == 3.0f && isnan(pam[1]) && pam[2] == 4.0f, "NaN/absmax partial wrong");
        float run[3] = {5.0f, 1.0f, 1.0f};
        double runs[3] = {0, 0, 0};
        qs_chan_stats_add(run, runs, pam, pss, 3);
        CHECK(run[0] == 5.0f && isnan(run[1]) && run[2] == 4.0f, "NaN/absmax merge wrong");
        pam[1] = 7.0f;
        qs_chan_stats_add(run, runs, pam, pss, 3);
        CHECK(isnan(run[1]), "NaN absmax overwritten by a later chunk");
    }

    /* empty chunk: zero upper triangle */
    for (int64_t i = 0; i < (int64_t)D * D; ++i) tile[i] = 1.0f;
    qs_hess_partial(x, 0, D, tile);
    int zero = 1;
    for (int64_t i = 0; i < D; ++i)
        for (int64_t j = i; j < D; ++j)
            if (tile[i * D + j] != 0.0f) zero = 0;
    CHECK(zero, "empty chunk partial is not zero");

    free(x);
    free(xd);
    free(ref);
    free(acc);
    free(acc2);
    free(tile);
    free(tiles);
    /* the f32 finalize on the pool: d = 600 (three row blocks, the last short), an accumulator
     * whose lower triangle holds garbage (only the upper is read) */
    {
        const int64_t d = 600;
        double *a = malloc(sizeof(double) * (size_t)(d * d));     // (d, d)
        double *fin = malloc(sizeof(double) * (size_t)(d * d));   // (d, d)
        float *want = malloc(sizeof(float) * (size_t)(d * d));    // (d, d)
        float *got = malloc(sizeof(float) * (size_t)(d * d));     // (d, d)
        uint32_t r = 7u;
        for (int64_t i = 0; i < d * d; ++i) {
            r = r * 1664525u + 1013904223u;
            a[i] = ((double)(r >> 8) / 16777216.0 - 0.5) * 1e3;
        }
        memcpy(fin, a, sizeof(double) * (size_t)(d * d));
        qs_hess_finalize(fin, d, 12345);
        for (int64_t i = 0; i < d * d; ++i) want[i] = (float)fin[i];
        for (int t = 1; t <= 3; ++t) {
            qs_pool *pool = NULL;
            qs_err e = {0};
            if (t > 1) CHECK(qs_pool_create(t, &pool, &e) == QS_OK, "pool of %d", t);
            memset(got, 0xff, sizeof(float) * (size_t)(d * d));
            CHECK(qs_hess_finalize_f32_pool(pool, a, d, 12345, got, &e) == QS_OK, "finalize");
            CHECK(memcmp(got, want, sizeof(float) * (size_t)(d * d)) == 0,
                  "f32 finalize on %d thread(s) differs from finalize + cast", t);
            qs_pool_free(pool);
        }
        free(a);
        free(fin);
        free(want);
        free(got);
    }
    return qs_test_finish("test_model_hessian");
}
