/* test_quant_gptq.c: GPTQ kernels against their scalar twins and their contracts:
 * blocked vs column-by-column (codes >= 99.9% equal, errors within 1e-4 relative),
 * LAPACK factor vs textbook factor, bit-identical output when rows are split at tile
 * boundaries, act-order/static-group g_idx semantics and dequantization through g_idx,
 * damping raised on an indefinite Hessian, fp64 fallback, dead channels, bad inputs,
 * the error kernel vs its twin. Fails via exit code. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>
#include <lapacke.h>

#include "check.h"
#include "quant.h"

static int64_t g_same = 0, g_total = 0; /* codes compared with the twin, over all cases */
static double g_worst = 1.0;             /* the lowest agreement of one case, and its name */
static char g_worst_what[128] = "";
static double g_id_worst = 0.0; /* largest relative per-row difference, identity vs product */

/* named tolerances */
#define CODE_AGREEMENT 0.999 /* fraction of codes the blocked kernel shares with its twin,
                                over all configurations */
#define CODE_AGREEMENT_CASE 0.995 /* the same, in every configuration: float32 GPTQ is
                                     chaotic, one rounding flip near a half step changes the
                                     errors fed to the rest of its row (see docs/quant.md) */
#define ERR_REL_TOL 1e-4     /* relative difference of layer errors, blocked vs twin */
#define ID_REL_TOL 1e-4      /* per-row error from the solve's sums (qs_gptq_error_rows) vs
                                the matrix product, relative to the row's error */

static uint64_t g_rng = 0x243f6a8885a308d3ull;
static float nrand(void) { return qs_test_nrand(&g_rng); }

/* H = 2/N X^T X for N token rows of correlated inputs with varied channel scales. (n, n) */
static float *make_hessian(int64_t n, int64_t N) {
    float *X = malloc((size_t)(N * n) * sizeof(float));
    float *H = malloc((size_t)(n * n) * sizeof(float));
    for (int64_t t = 0; t < N; ++t) {
        float common = nrand();
        for (int64_t i = 0; i < n; ++i)
            X[t * n + i] = (0.3f + (float)(i % 13) * 0.15f) * (nrand() + 0.5f * common);
    }
    cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, (int)n, (int)N, 2.0f / (float)N, X,
                (int)n, 0.0f, H, (int)n);
    for (int64_t i = 0; i < n; ++i)
        for (int64_t j = 0; j < i; ++j) H[i * n + j] = H[j * n + i];
    free(X);
    return H;
}

static float *make_weights(int64_t rows, int64_t n) {
    float *W = malloc((size_t)(rows * n) * sizeof(float));
    for (int64_t i = 0; i < rows * n; ++i) W[i] = 0.05f * nrand() * (i % 11 == 0 ? 4.0f : 1.0f);
    return W;
}

typedef struct bufs {
    uint8_t *codes;
    uint16_t *scales;
    int32_t *zeros;
    float *wq;
    int32_t *g_idx;
} bufs;

static void bufs_alloc(bufs *b, int64_t rows, int64_t d_in, int64_t ng) {
    b->codes = calloc((size_t)(rows * d_in), 1);
    b->scales = calloc((size_t)(rows * ng), sizeof(uint16_t));
    b->zeros = calloc((size_t)(rows * ng), sizeof(int32_t));
    b->wq = calloc((size_t)(rows * d_in), sizeof(float));
    b->g_idx = calloc((size_t)d_in, sizeof(int32_t));
}
static void bufs_free(bufs *b) {
    free(b->codes);
    free(b->scales);
    free(b->zeros);
    free(b->wq);
    free(b->g_idx);
}
static qs_quant_out as_out(bufs *b, int64_t row, int64_t d_in, int64_t ng) {
    qs_quant_out o = {b->codes + row * d_in, b->scales + row * ng, b->zeros + row * ng,
                      b->wq + row * d_in, NULL};
    return o;
}

static double layer_error(const float *H, int64_t n, const float *W, const float *wq,
                          int64_t rows, double *rel) {
    double *e = malloc((size_t)rows * sizeof(double)), *a = malloc((size_t)rows * sizeof(double));
    qs_err err = {0};
    CHECK(qs_quant_error_rows(H, n, W, wq, rows, 32, e, a, &err) == QS_OK, "%s", err.msg);
    double s = qs_quant_sum(e, rows);
    if (rel) *rel = qs_quant_relative(s, qs_quant_sum(a, rows));
    free(e);
    free(a);
    return s;
}

/* Blocked GPTQ vs its twin on one configuration; returns the blocked error. */
static double check_case(const float *H, const float *W, int64_t rows, int64_t n,
                         const qs_quant_params *p, const char *what) {
    int64_t ng = qs_quant_ngroups(n, p->group_size);
    qs_gptq_factor f;
    qs_err e = {0};
    bufs a, b;
    bufs_alloc(&a, rows, n, ng);
    bufs_alloc(&b, rows, n, ng);
    qs_quant_out oa = as_out(&a, 0, n, ng), ob = as_out(&b, 0, n, ng);
    double ea = 0.0;
    double *e1 = malloc(sizeof(double) * (size_t)rows), *eid = malloc(sizeof(double) * (size_t)rows),
           *emm = malloc(sizeof(double) * (size_t)rows); // (rows) each
    oa.e1sq = e1;
    CHECK(qs_gptq_prepare(H, n, p, &f, &e) == QS_OK, "%s: %s", what, e.msg);
    CHECK(qs_gptq_quantize_rows(&f, p, W, rows, 0, rows, &oa, &e) == QS_OK, "%s: %s", what, e.msg);
    /* the error from the solve's own sums equals the matrix product's, row by row */
    CHECK(qs_gptq_error_rows(&f, W, a.wq, e1, rows, eid) == 0, "%s: identity refused", what);
    CHECK(qs_quant_error_rows(H, n, W, a.wq, rows, 32, emm, NULL, &e) == QS_OK, "%s", e.msg);
    for (int64_t r = 0; r < rows; ++r) {
        double rel = fabs(eid[r] - emm[r]) / fmax(emm[r], 1e-30);
        CHECK(rel <= ID_REL_TOL, "%s: row %lld error %.9g from the solve, %.9g by product", what,
              (long long)r, eid[r], emm[r]);
        if (rel > g_id_worst) g_id_worst = rel;
    }
    free(e1);
    free(eid);
    free(emm);
    CHECK(qs_gptq_quantize_rows_ref(&f, p, W, rows, 0, rows, &ob, &e) == QS_OK, "%s: %s", what,
          e.msg);
    int64_t same = 0;
    for (int64_t i = 0; i < rows * n; ++i) same += a.codes[i] == b.codes[i];
    double agree = (double)same / (double)(rows * n);
    CHECK(agree >= CODE_AGREEMENT_CASE, "%s: codes agree on %.5f only", what, agree);
    g_same += same;
    g_total += rows * n;
    if (agree < g_worst) {
        g_worst = agree;
        snprintf(g_worst_what, sizeof g_worst_what, "%s", what);
    }
    ea = layer_error(H, n, W, a.wq, rows, NULL);
    double eb = layer_error(H, n, W, b.wq, rows, NULL);
    CHECK_NEAR(ea, eb, ERR_REL_TOL * fabs(eb), "%s: error vs twin", what);
    /* dequantization through g_idx is bit-for-bit the quantizer's wq */
    float *wq2 = malloc((size_t)(rows * n) * sizeof(float));
    qs_gptq_g_idx(&f, p, a.g_idx);
    qs_quant_dequant_rows(a.codes, a.scales, a.zeros, a.g_idx, rows, n, ng, wq2);
    CHECK(memcmp(wq2, a.wq, (size_t)(rows * n) * sizeof(float)) == 0, "%s: dequant differs", what);
    qs_quant_dequant_rows(b.codes, b.scales, b.zeros, a.g_idx, rows, n, ng, wq2);
    CHECK(memcmp(wq2, b.wq, (size_t)(rows * n) * sizeof(float)) == 0, "%s: ref dequant differs",
          what);
    int maxq = (1 << p->bits) - 1, bad = 0;
    for (int64_t i = 0; i < rows * n; ++i) bad += a.codes[i] > maxq || !isfinite(a.wq[i]);
    for (int64_t i = 0; i < rows * ng; ++i)
        bad += a.zeros[i] < (p->zero_min1 && !p->sym ? 1 : 0) || a.zeros[i] > maxq;
    CHECK(bad == 0, "%s: %d values out of range", what, bad);
    free(wq2);
    bufs_free(&a);
    bufs_free(&b);
    qs_gptq_factor_free(&f);
    return ea;
}

static void test_against_twin(void) {
    const int64_t rows = 40, n = 200; /* 200 = 3 groups of 64 + a partial group of 8 */
    float *H = make_hessian(n, 600), *W = make_weights(rows, n);
    const int gss[] = {-1, 32, 64, 50, 128};
    const int bss[] = {128, 32, 24};
    int ncase = 0;
    for (int bits = 2; bits <= 8; ++bits)
        for (size_t gi = 0; gi < sizeof gss / sizeof gss[0]; ++gi)
            for (int flags = 0; flags < 8; ++flags) {
                qs_quant_params p;
                qs_quant_params_default(&p);
                p.bits = bits;
                p.group_size = gss[gi];
                p.sym = flags & 1;
                p.act_order = (flags >> 1) & 1;
                p.static_groups = (flags >> 2) & 1;
                p.zero_min1 = (bits + flags) & 1;
                p.block_size = bss[(bits + gi) % 3];
                p.row_block = 16;
                if (p.static_groups && p.group_size < 1) continue;
                char what[128];
                snprintf(what, sizeof what, "b%d g%d sym%d act%d static%d B%d", bits, p.group_size,
                         p.sym, p.act_order, p.static_groups, p.block_size);
                check_case(H, W, rows, n, &p, what);
                ncase++;
            }
    CHECK(ncase > 200, "only %d cases", ncase);
    double pooled = (double)g_same / (double)g_total;
    CHECK(pooled >= CODE_AGREEMENT, "codes agree on %.5f over all cases", pooled);
    printf("blocked vs twin: %d cases, codes agree on %.6f; worst case %s: %.6f\n", ncase,
           pooled, g_worst_what, g_worst);
    printf("row errors from the solve's sums vs the matrix product: largest relative "
           "difference %.3g\n", g_id_worst);
    free(H);
    free(W);
}

/* The LAPACK chain the factor used before chol_tiled.c (spotrf -> spotri -> spotrf of the
 * permuted damped matrix, column-major on the symmetric buffer): only to print how far each
 * is from the fp64 twin. A (n, n) holds the damped matrix; 0 on success. */
static int old_chain(float *A, int64_t n) {
    if (LAPACKE_spotrf_work(LAPACK_COL_MAJOR, 'L', (lapack_int)n, A, (lapack_int)n) != 0) return -1;
    if (LAPACKE_spotri_work(LAPACK_COL_MAJOR, 'L', (lapack_int)n, A, (lapack_int)n) != 0) return -1;
    if (LAPACKE_spotrf_work(LAPACK_COL_MAJOR, 'L', (lapack_int)n, A, (lapack_int)n) != 0) return -1;
    for (int64_t i = 0; i < n; ++i)
        for (int64_t j = 0; j < i; ++j) A[i * n + j] = 0.0f;
    return 0;
}

static double max_abs_diff(const float *a, const float *b, int64_t len, double *mx) {
    double d = 0.0;
    *mx = 0.0;
    for (int64_t i = 0; i < len; ++i) {
        *mx = fmax(*mx, fabs((double)b[i]));
        d = fmax(d, fabs((double)a[i] - (double)b[i]));
    }
    return d;
}

/* The tiled factor over several tiles (the last one partial): close to the fp64 twin (and
 * closer than the old LAPACK chain), the same bytes with no pool and with pools of 1-4
 * threads, with and without act-order. */
static void test_factor_tiles(void) {
    const int64_t n = 1100; /* tiles of 512: 512, 512, 76 */
    float *H = make_hessian(n, 2400);
    for (int act = 0; act <= 1; ++act) {
        qs_quant_params p;
        qs_quant_params_default(&p);
        p.act_order = act;
        qs_gptq_factor a, b, c;
        qs_err e = {0};
        CHECK(qs_gptq_prepare(H, n, &p, &a, &e) == QS_OK, "%s", e.msg);
        CHECK(qs_gptq_prepare_ref(H, n, &p, &b, &e) == QS_OK, "%s", e.msg);
        double mx, d = max_abs_diff(a.U, b.U, n * n, &mx);
        CHECK(d <= 1e-4 * mx, "tiled factor differs from twin by %g (max %g)", d, mx);
        CHECK(a.info.nraise == 0 && a.info.fp64 == 0, "info");
        /* the old chain on the same damped, permuted matrix */
        float *A = malloc(sizeof(float) * (size_t)(n * n));
        double mean = 0.0;
        for (int64_t i = 0; i < n; ++i) mean += H[i * n + i];
        mean /= (double)n;
        for (int64_t x = 0; x < n; ++x)
            for (int64_t y = 0; y < n; ++y) {
                int64_t px = a.perm[x], py = a.perm[y];
                A[x * n + y] = x == y ? (float)(H[px * n + px] + 0.01 * mean) : H[px * n + py];
            }
        double mo, dold = old_chain(A, n) == 0 ? max_abs_diff(A, b.U, n * n, &mo) : INFINITY;
        printf("factor n %lld act %d: max |U - U_fp64| tiled %.3g, LAPACK chain %.3g "
               "(max |U| %.3g)\n",
               (long long)n, act, d, dold, mx);
        free(A);
        for (int t = 1; t <= 4; ++t) {
            qs_pool *pool = NULL;
            CHECK(qs_pool_create(t, &pool, &e) == QS_OK, "%s", e.msg);
            CHECK(qs_gptq_prepare_pool(pool, H, n, &p, &c, &e) == QS_OK, "%s", e.msg);
            CHECK(memcmp(a.U, c.U, sizeof(float) * (size_t)(n * n)) == 0,
                  "factor at %d threads differs from no pool", t);
            qs_gptq_factor_free(&c);
            qs_pool_free(pool);
        }
        qs_gptq_factor_free(&a);
        qs_gptq_factor_free(&b);
    }
    free(H);
}

static void test_factor_twin(void) {
    const int64_t n = 96;
    float *H = make_hessian(n, 300);
    for (int act = 0; act <= 1; ++act) {
        qs_quant_params p;
        qs_quant_params_default(&p);
        p.act_order = act;
        qs_gptq_factor a, b;
        qs_err e = {0};
        CHECK(qs_gptq_prepare(H, n, &p, &a, &e) == QS_OK, "%s", e.msg);
        CHECK(qs_gptq_prepare_ref(H, n, &p, &b, &e) == QS_OK, "%s", e.msg);
        double mx = 0.0, d = 0.0;
        for (int64_t i = 0; i < n * n; ++i) {
            mx = fmax(mx, fabs((double)b.U[i]));
            d = fmax(d, fabs((double)a.U[i] - (double)b.U[i]));
        }
        CHECK(d <= 1e-3 * mx, "factor differs from twin by %g (max %g)", d, mx);
        CHECK(memcmp(a.perm, b.perm, (size_t)n * 4) == 0, "perm differs");
        CHECK(a.info.nraise == 0 && a.info.fp64 == 0 && a.info.damp == 0.01, "info");
        qs_gptq_factor_free(&a);
        qs_gptq_factor_free(&b);
    }
    free(H);
}

/* GPTQ beats RTN on the proxy objective it minimizes. */
static void test_better_than_rtn(void) {
    const int64_t rows = 64, n = 256;
    float *H = make_hessian(n, 1024), *W = make_weights(rows, n);
    for (int bits = 3; bits <= 4; ++bits) {
        qs_quant_params p;
        qs_quant_params_default(&p);
        p.bits = bits;
        int64_t ng = qs_quant_ngroups(n, p.group_size);
        bufs a;
        bufs_alloc(&a, rows, n, ng);
        qs_quant_out o = as_out(&a, 0, n, ng);
        qs_err e = {0};
        CHECK(qs_rtn_quantize_rows(&p, W, rows, n, &o, &e) == QS_OK, "%s", e.msg);
        double rel_rtn, rel_gptq;
        double er = layer_error(H, n, W, a.wq, rows, &rel_rtn);
        double eg = check_case(H, W, rows, n, &p, "gptq vs rtn");
        rel_gptq = eg * rel_rtn / er; /* same W, same tr(W H W^T) */
        CHECK(eg < 0.8 * er, "%d bits: GPTQ error %g not below RTN %g", bits, eg, er);
        CHECK(rel_gptq > 0.0 && rel_gptq < rel_rtn, "relative errors %g %g", rel_gptq, rel_rtn);
        bufs_free(&a);
    }
    free(H);
    free(W);
}

/* Splitting the rows into calls at tile boundaries changes no byte. */
static void test_row_split(void) {
    const int64_t rows = 70, n = 160;
    float *H = make_hessian(n, 400), *W = make_weights(rows, n);
    for (int act = 0; act <= 1; ++act) {
        qs_quant_params p;
        qs_quant_params_default(&p);
        p.group_size = 32;
        p.act_order = act;
        p.row_block = 16;
        p.block_size = 64;
        int64_t ng = qs_quant_ngroups(n, p.group_size);
        qs_gptq_factor f;
        qs_err e = {0};
        CHECK(qs_gptq_prepare(H, n, &p, &f, &e) == QS_OK, "%s", e.msg);
        bufs a, b;
        bufs_alloc(&a, rows, n, ng);
        bufs_alloc(&b, rows, n, ng);
        qs_quant_out oa = as_out(&a, 0, n, ng);
        CHECK(qs_gptq_quantize_rows(&f, &p, W, rows, 0, rows, &oa, &e) == QS_OK, "%s", e.msg);
        const int64_t cuts[] = {0, 32, 48, 64, 70};
        for (int c = 0; c + 1 < 5; ++c) {
            qs_quant_out ob = as_out(&b, cuts[c], n, ng);
            CHECK(qs_gptq_quantize_rows(&f, &p, W + cuts[c] * n, rows, cuts[c], cuts[c + 1], &ob,
                                        &e) == QS_OK, "%s", e.msg);
        }
        CHECK(memcmp(a.codes, b.codes, (size_t)(rows * n)) == 0, "codes depend on the split");
        CHECK(memcmp(a.scales, b.scales, (size_t)(rows * ng) * 2) == 0, "scales depend on split");
        CHECK(memcmp(a.zeros, b.zeros, (size_t)(rows * ng) * 4) == 0, "zeros depend on split");
        CHECK(memcmp(a.wq, b.wq, (size_t)(rows * n) * 4) == 0, "wq depends on the split");
        /* the error kernel: per-row values independent of the split too */
        double *e1 = malloc(rows * sizeof(double)), *e2 = malloc(rows * sizeof(double));
        CHECK(qs_quant_error_rows(H, n, W, a.wq, rows, 16, e1, NULL, &e) == QS_OK, "%s", e.msg);
        CHECK(qs_quant_error_rows(H, n, W, a.wq, 32, 16, e2, NULL, &e) == QS_OK, "%s", e.msg);
        CHECK(qs_quant_error_rows(H, n, W + 32 * n, a.wq + 32 * n, rows - 32, 16, e2 + 32, NULL,
                                  &e) == QS_OK, "%s", e.msg);
        CHECK(memcmp(e1, e2, rows * sizeof(double)) == 0, "error depends on the split");
        /* a range not aligned to row_block is refused */
        qs_err e3 = {0};
        qs_quant_out ob = as_out(&b, 8, n, ng);
        CHECK(qs_gptq_quantize_rows(&f, &p, W + 8 * n, rows, 8, 40, &ob, &e3) != QS_OK,
              "misaligned range accepted");
        free(e1);
        free(e2);
        bufs_free(&a);
        bufs_free(&b);
        qs_gptq_factor_free(&f);
    }
    free(H);
    free(W);
}

static void test_g_idx(void) {
    const int64_t rows = 8, n = 96;
    float *H = make_hessian(n, 300), *W = make_weights(rows, n);
    /* ties on the diagonal: columns 5 and 3 get the same largest value, 7 a smaller one */
    H[5 * n + 5] = H[3 * n + 3] = 1000.0f;
    H[7 * n + 7] = 500.0f;
    qs_quant_params p;
    qs_quant_params_default(&p);
    p.group_size = 32;
    p.act_order = 1;
    qs_gptq_factor f;
    qs_err e = {0};
    CHECK(qs_gptq_prepare(H, n, &p, &f, &e) == QS_OK, "%s", e.msg);
    CHECK(f.perm[0] == 3 && f.perm[1] == 5 && f.perm[2] == 7, "perm starts %d %d %d", f.perm[0],
          f.perm[1], f.perm[2]);
    int sorted = 1;
    for (int64_t k = 1; k < n; ++k) {
        float a = H[f.perm[k - 1] * n + f.perm[k - 1]], b = H[f.perm[k] * n + f.perm[k]];
        if (a < b || (a == b && f.perm[k - 1] > f.perm[k])) sorted = 0;
    }
    CHECK(sorted, "permutation is not by descending diag with index ties");
    int32_t *g = malloc((size_t)n * sizeof(int32_t));
    qs_gptq_g_idx(&f, &p, g);
    for (int64_t k = 0; k < n; ++k) CHECK(g[f.perm[k]] == k / 32, "act-order g_idx");
    CHECK(g[3] == 0 && g[5] == 0 && g[7] == 0, "first columns quantized in group 0");
    p.static_groups = 1;
    qs_gptq_g_idx(&f, &p, g);
    for (int64_t j = 0; j < n; ++j) CHECK(g[j] == j / 32, "static g_idx");
    /* static groups: params equal RTN's natural groups (computed up front from W) */
    int64_t ng = 3;
    bufs a, r;
    bufs_alloc(&a, rows, n, ng);
    bufs_alloc(&r, rows, n, ng);
    qs_quant_out oa = as_out(&a, 0, n, ng), orr = as_out(&r, 0, n, ng);
    CHECK(qs_gptq_quantize_rows(&f, &p, W, rows, 0, rows, &oa, &e) == QS_OK, "%s", e.msg);
    CHECK(qs_rtn_quantize_rows(&p, W, rows, n, &orr, &e) == QS_OK, "%s", e.msg);
    CHECK(memcmp(a.scales, r.scales, (size_t)(rows * ng) * 2) == 0, "static scales != up-front");
    CHECK(memcmp(a.zeros, r.zeros, (size_t)(rows * ng) * 4) == 0, "static zeros != up-front");
    bufs_free(&a);
    bufs_free(&r);
    free(g);
    qs_gptq_factor_free(&f);
    free(H);
    free(W);
}

static void test_damping(void) {
    /* indefinite: 2x2 blocks [[1, 3], [3, 1]] (eigenvalues -2, 4): PD from damp 2 */
    const int64_t n = 8;
    float H[64] = {0};
    for (int64_t i = 0; i < n; i += 2) {
        H[i * n + i] = H[(i + 1) * n + i + 1] = 1.0f;
        H[i * n + i + 1] = H[(i + 1) * n + i] = 3.0f;
    }
    qs_quant_params p;
    qs_quant_params_default(&p);
    p.group_size = -1;
    p.damp_max = 10.0;
    qs_gptq_factor f;
    qs_err e = {0};
    CHECK(qs_gptq_prepare(H, n, &p, &f, &e) == QS_OK, "%s", e.msg);
    CHECK(f.info.nraise == 3 && fabs(f.info.damp - 10.0) < 1e-12 && f.info.fp64 == 0,
          "raises %d damp %g fp64 %d", f.info.nraise, f.info.damp, f.info.fp64);
    {
        /* damping 10 x mean diag dominates A: the error from the solve's sums would be a
         * difference of nearly equal terms, so it is refused (the caller takes the product) */
        float *W = make_weights(4, n);
        bufs a;
        bufs_alloc(&a, 4, n, 1);
        qs_quant_out o = as_out(&a, 0, n, 1);
        double e1[4], ed[4];
        o.e1sq = e1;
        CHECK(qs_gptq_quantize_rows(&f, &p, W, 4, 0, 4, &o, &e) == QS_OK, "%s", e.msg);
        CHECK(qs_gptq_error_rows(&f, W, a.wq, e1, 4, ed) == -1,
              "error from the solve's sums accepted under damping 10");
        bufs_free(&a);
        free(W);
    }
    qs_gptq_factor_free(&f);
    /* with damp_max 1 it cannot be factorized: a clear input error */
    p.damp_max = 1.0;
    qs_err_clear(&e);
    CHECK(qs_gptq_prepare(H, n, &p, &f, &e) == QS_ERR_INPUT && strstr(e.msg, "positive definite"),
          "%s", e.msg);
    CHECK(f.U == NULL, "factor not released");
    /* singular (rank 1), damp 0: raised to damp_max in one jump */
    for (int64_t i = 0; i < n; ++i)
        for (int64_t j = 0; j < n; ++j) H[i * n + j] = 1.0f;
    p.damp = 0.0;
    p.damp_max = 0.1;
    qs_err_clear(&e);
    CHECK(qs_gptq_prepare(H, n, &p, &f, &e) == QS_OK, "%s", e.msg);
    CHECK(f.info.nraise >= 1 && f.info.damp == 0.1 && f.info.damp_abs > 0.0, "raises %d damp %g",
          f.info.nraise, f.info.damp);
    qs_gptq_factor_free(&f);
    /* a tiny pivot (1e-40) stays inside fp32: the factor holds 1/sqrt(1e-40) = 1e20, never
     * the inverse's 1e40 (the LAPACK chain potri formed before chol_tiled.c overflowed) */
    memset(H, 0, sizeof H);
    for (int64_t i = 0; i < n; ++i) H[i * n + i] = i == 3 ? 1e-40f : 1.0f;
    p.damp = 0.0;
    p.damp_max = 0.0;
    qs_err_clear(&e);
    CHECK(qs_gptq_prepare(H, n, &p, &f, &e) == QS_OK, "%s", e.msg);
    CHECK(f.info.fp64 == 0 && f.info.nraise == 0 && f.U[3 * n + 3] > 9e19f &&
              f.U[3 * n + 3] < 1.1e20f,
          "fp64 %d raises %d", f.info.fp64, f.info.nraise);
    qs_gptq_factor_free(&f);
    /* fp32 rounds a positive pivot to 0, fp64 does not: the fallback is used and recorded.
     * Blocks [[b, a], [a, 1]] are factored reversed, [[1, a], [a, b]]: the pivot b - a*a
     * with a = 1 + 2049 * 2^-23 and b = fl32(a*a) (rounded up) is 0 in fp32 and
     * b - a*a = 2^-24 - 4097 * 2^-46 > 0 in fp64 (a*a is exact in double). */
    memset(H, 0, sizeof H);
    const float a = 1.0f + 2049.0f * 0x1p-23f;
    const volatile float a2 = a * a; /* rounded to fp32 */
    for (int64_t i = 0; i < n; i += 2) {
        H[i * n + i] = a2;
        H[(i + 1) * n + i + 1] = 1.0f;
        H[i * n + i + 1] = H[(i + 1) * n + i] = a;
    }
    CHECK((double)a2 > (double)a * (double)a, "a*a not rounded up");
    qs_err_clear(&e);
    CHECK(qs_gptq_prepare(H, n, &p, &f, &e) == QS_OK, "%s", e.msg);
    CHECK(f.info.fp64 == 1 && f.info.nraise == 0 && f.info.damp == 0.0, "fp64 %d raises %d",
          f.info.fp64, f.info.nraise);
    qs_gptq_factor_free(&f);
}

static void test_dead_and_bad(void) {
    const int64_t rows = 16, n = 64;
    float *H = make_hessian(n, 200), *W = make_weights(rows, n);
    for (int64_t j = 0; j < n; ++j) H[9 * n + j] = H[j * n + 9] = 0.0f; /* dead input 9 */
    for (int64_t r = 0; r < 4; ++r)
        for (int64_t j = 0; j < n; ++j) W[r * n + j] = 0.0f; /* all-zero rows */
    qs_quant_params p;
    qs_quant_params_default(&p);
    p.group_size = 32;
    p.act_order = 1;
    qs_gptq_factor f;
    qs_err e = {0};
    CHECK(qs_gptq_prepare(H, n, &p, &f, &e) == QS_OK, "%s", e.msg);
    CHECK(f.info.ndead == 1 && f.dead[9] == 1, "dead channels %lld", (long long)f.info.ndead);
    bufs a;
    bufs_alloc(&a, rows, n, 2);
    qs_quant_out o = as_out(&a, 0, n, 2);
    CHECK(qs_gptq_quantize_rows(&f, &p, W, rows, 0, rows, &o, &e) == QS_OK, "%s", e.msg);
    int bad = 0;
    for (int64_t r = 0; r < rows; ++r) {
        bad += a.wq[r * n + 9] != 0.0f;
        for (int64_t j = 0; j < n; ++j) {
            bad += !isfinite(a.wq[r * n + j]);
            if (r < 4) bad += a.codes[r * n + j] != 0 || a.wq[r * n + j] != 0.0f;
        }
    }
    CHECK(bad == 0, "%d bad values (dead column or zero rows)", bad);
    /* non-finite inputs are input errors */
    W[5 * n + 7] = NAN;
    qs_err_clear(&e);
    CHECK(qs_gptq_quantize_rows(&f, &p, W, rows, 0, rows, &o, &e) == QS_ERR_INPUT &&
              strstr(e.msg, "row 5 column 7"), "%s", e.msg);
    qs_err_clear(&e);
    CHECK(qs_gptq_quantize_rows_ref(&f, &p, W, rows, 0, rows, &o, &e) == QS_ERR_INPUT, "%s", e.msg);
    qs_gptq_factor_free(&f);
    H[2 * n + 3] = INFINITY;
    qs_err_clear(&e);
    CHECK(qs_gptq_prepare(H, n, &p, &f, &e) == QS_ERR_INPUT && strstr(e.msg, "Hessian"), "%s",
          e.msg);
    bufs_free(&a);
    free(H);
    free(W);
}

static void test_error_twin(void) {
    const int64_t rows = 37, n = 90;
    float *H = make_hessian(n, 300), *W = make_weights(rows, n), *Q = make_weights(rows, n);
    for (int64_t i = 0; i < rows * n; ++i) Q[i] = W[i] + 0.1f * Q[i];
    double e1[37], a1[37], e2[37], a2[37];
    qs_err e = {0};
    CHECK(qs_quant_error_rows(H, n, W, Q, rows, 8, e1, a1, &e) == QS_OK, "%s", e.msg);
    CHECK(qs_quant_error_rows_ref(H, n, W, Q, rows, e2, a2, &e) == QS_OK, "%s", e.msg);
    for (int64_t r = 0; r < rows; ++r) {
        CHECK_NEAR(e1[r], e2[r], ERR_REL_TOL * e2[r], "row %lld error", (long long)r);
        CHECK_NEAR(a1[r], a2[r], ERR_REL_TOL * a2[r], "row %lld norm", (long long)r);
    }
    CHECK(qs_quant_relative(1.0, 0.0) == 0.0, "relative of zero norm");
    free(H);
    free(W);
    free(Q);
}

int main(void) {
    openblas_set_num_threads(1);
    test_factor_twin();
    test_against_twin();
    test_better_than_rtn();
    test_row_split();
    test_g_idx();
    test_damping();
    test_dead_and_bad();
    test_error_twin();
    test_factor_tiles();
    return qs_test_finish("test_quant_gptq");
}
