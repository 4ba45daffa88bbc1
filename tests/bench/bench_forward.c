/* bench_forward.c: throughput of the fp32 layer forward and the calibrate-style Hessian
 * accumulation, as a fraction of the single-thread SGEMM peak measured in the same run.
 *
 * Usage: bench_forward [hidden ...]   (default: 1024 2048). Single-threaded BLAS.
 * For each hidden size: a synthetic Llama layer (intermediate ~2.75 x hidden, head_dim 64,
 * kv_heads = heads / 2) on a chunk of 4 x 512 tokens; reports forward-only and
 * forward + Hessian (ssyrk partial + f64 add + channel stats for the 4 linear groups)
 * times, tokens/s, GFLOP/s and fraction of peak. Numbers are recorded in docs/model.md.
 */
#include <cblas.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "hessian.h"
#include "layer.h"

#define NSEQ 4
#define SEQLEN 512
#define REPS 3

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static uint64_t g_rng = 0x0123456789ABCDEFULL;
static float urand(void) {
    g_rng ^= g_rng >> 12;
    g_rng ^= g_rng << 25;
    g_rng ^= g_rng >> 27;
    return (float)((double)((g_rng * 0x2545F4914F6CDD1DULL) >> 11) *
                   (1.0 / 9007199254740992.0) * 2.0 - 1.0);
}

static float *rand_buf(int64_t n, float scale, float offset) {
    float *p = malloc((size_t)n * sizeof(float));
    if (!p) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    for (int64_t i = 0; i < n; ++i) p[i] = offset + scale * urand();
    return p;
}

/* best-of-REPS single-thread sgemm GFLOP/s on an (m, k) x (k, n) problem */
static double sgemm_peak(int m, int n, int k) {
    float *a = rand_buf((int64_t)m * k, 1.0f, 0.0f), *b = rand_buf((int64_t)n * k, 1.0f, 0.0f);
    float *c = malloc((size_t)m * n * sizeof(float));
    double best = 1e30;
    for (int r = 0; r < REPS + 1; ++r) {
        double t0 = now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, k, 1.0f, a, k, b, k, 0.0f, c,
                    n);
        double t = now() - t0;
        if (r > 0 && t < best) best = t; /* first run warms up */
    }
    free(a);
    free(b);
    free(c);
    return 2.0 * m * n * k / best * 1e-9;
}

/* calibrate-style hook: Hessian partial + f64 add + channel stats per group */
typedef struct hess_ctx {
    float *tile[QS_GROUP_COUNT];
    double *acc[QS_GROUP_COUNT];
    float *absmax[QS_GROUP_COUNT], *pabsmax;
    double *sumsq[QS_GROUP_COUNT], *psumsq;
    double t_hess;
} hess_ctx;

static qs_status hess_hook(void *vctx, qs_linear_group g, const float *x, int64_t rows,
                           int64_t d_in, qs_err *err) {
    (void)err;
    hess_ctx *h = vctx;
    double t0 = now();
    qs_hess_partial(x, rows, d_in, h->tile[g]);
    qs_hess_add(h->acc[g], h->tile[g], d_in);
    qs_chan_stats_partial(x, rows, d_in, h->pabsmax, h->psumsq);
    qs_chan_stats_add(h->absmax[g], h->sumsq[g], h->pabsmax, h->psumsq, d_in);
    h->t_hess += now() - t0;
    return QS_OK;
}

static int bench(int64_t hidden, double peak) {
    qs_model_dims d;
    memset(&d, 0, sizeof(d));
    d.hidden = hidden;
    d.inter = (hidden * 11 / 4 + 127) / 128 * 128; /* ~2.75x, multiple of 128 */
    d.head_dim = 64;
    d.heads = hidden / 64;
    d.kv_heads = d.heads / 2;
    d.eps = 1e-5;
    d.rope.theta = 10000.0;
    const int64_t H = d.hidden, Ni = d.inter, qd = d.heads * d.head_dim,
                  kvd = d.kv_heads * d.head_dim, rows = (int64_t)NSEQ * SEQLEN;
    float *bufs[9];
    bufs[0] = rand_buf(H, 0.1f, 1.0f);
    bufs[1] = rand_buf(qd * H, 1.0f / sqrtf((float)H), 0.0f);
    bufs[2] = rand_buf(kvd * H, 1.0f / sqrtf((float)H), 0.0f);
    bufs[3] = rand_buf(kvd * H, 1.0f / sqrtf((float)H), 0.0f);
    bufs[4] = rand_buf(H * qd, 1.0f / sqrtf((float)qd), 0.0f);
    bufs[5] = rand_buf(H, 0.1f, 1.0f);
    bufs[6] = rand_buf(Ni * H, 1.0f / sqrtf((float)H), 0.0f);
    bufs[7] = rand_buf(Ni * H, 1.0f / sqrtf((float)H), 0.0f);
    bufs[8] = rand_buf(H * Ni, 1.0f / sqrtf((float)Ni), 0.0f);
    qs_layer_weights w;
    memset(&w, 0, sizeof(w));
    w.input_norm = bufs[0];
    w.q_w = bufs[1];
    w.k_w = bufs[2];
    w.v_w = bufs[3];
    w.o_w = bufs[4];
    w.post_norm = bufs[5];
    w.gate_w = bufs[6];
    w.up_w = bufs[7];
    w.down_w = bufs[8];

    float *x0 = rand_buf(rows * H, 1.0f, 0.0f);  // (rows, H)
    float *x = malloc((size_t)(rows * H) * sizeof(float));
    qs_layer_workspace ws;
    qs_err err = {0};
    if (qs_layer_workspace_init(&ws, &d, NSEQ, SEQLEN, &err) != QS_OK || !x) {
        fprintf(stderr, "bench: %s\n", err.msg);
        return 1;
    }
    const int64_t din[QS_GROUP_COUNT] = {H, qd, H, Ni};
    hess_ctx hc;
    memset(&hc, 0, sizeof(hc));
    hc.pabsmax = malloc((size_t)Ni * sizeof(float));
    hc.psumsq = malloc((size_t)Ni * sizeof(double));
    for (int g = 0; g < QS_GROUP_COUNT; ++g) {
        hc.tile[g] = malloc((size_t)(din[g] * din[g]) * sizeof(float));
        hc.acc[g] = calloc((size_t)(din[g] * din[g]), sizeof(double));
        hc.absmax[g] = calloc((size_t)din[g], sizeof(float));
        hc.sumsq[g] = calloc((size_t)din[g], sizeof(double));
    }

    /* executed flops (attention counted as computed: full seqlen x seqlen per head) */
    double f_lin = 2.0 * rows * (double)(H * qd + 2 * H * kvd + qd * H + 3 * H * Ni);
    double f_att = (double)NSEQ * d.heads * 2.0 * 2.0 * SEQLEN * SEQLEN * d.head_dim;
    double f_hess = 0.0;
    for (int g = 0; g < QS_GROUP_COUNT; ++g) f_hess += (double)rows * din[g] * (din[g] + 1);

    double t_fwd = 1e30, t_all = 1e30, t_h = 1e30;
    for (int r = 0; r < REPS + 1; ++r) {
        memcpy(x, x0, (size_t)(rows * H) * sizeof(float));
        double t0 = now();
        if (qs_layer_forward(&w, &d, 0, x, NSEQ, SEQLEN, &ws, NULL, &err) != QS_OK) return 1;
        double t = now() - t0;
        if (r > 0 && t < t_fwd) t_fwd = t;

        memcpy(x, x0, (size_t)(rows * H) * sizeof(float));
        qs_layer_hooks hooks = {hess_hook, &hc};
        hc.t_hess = 0.0;
        t0 = now();
        if (qs_layer_forward(&w, &d, 0, x, NSEQ, SEQLEN, &ws, &hooks, &err) != QS_OK) return 1;
        t = now() - t0;
        if (r > 0 && t < t_all) t_all = t;
        if (r > 0 && hc.t_hess < t_h) t_h = hc.t_hess;
    }
    double gf_fwd = (f_lin + f_att) / t_fwd * 1e-9;
    double gf_h = f_hess / t_h * 1e-9;
    double gf_all = (f_lin + f_att + f_hess) / t_all * 1e-9;
    printf("hidden %lld inter %lld heads %lld kv %lld chunk %dx%d (%lld tokens)\n",
           (long long)H, (long long)Ni, (long long)d.heads, (long long)d.kv_heads, NSEQ, SEQLEN,
           (long long)rows);
    printf("  forward only       %8.1f ms  %9.0f tok/s/layer  %6.1f GFLOP/s  %.2f of peak\n",
           t_fwd * 1e3, rows / t_fwd, gf_fwd, gf_fwd / peak);
    printf("  Hessian (4 groups) %8.1f ms  %22s  %6.1f GFLOP/s  %.2f of peak\n", t_h * 1e3, "",
           gf_h, gf_h / peak);
    printf("  forward + Hessian  %8.1f ms  %9.0f tok/s/layer  %6.1f GFLOP/s  %.2f of peak\n",
           t_all * 1e3, rows / t_all, gf_all, gf_all / peak);
    printf("  flops per layer: linear %.2f G, attention %.2f G (half masked), Hessian %.2f G\n",
           f_lin * 1e-9, f_att * 1e-9, f_hess * 1e-9);

    qs_layer_workspace_free(&ws);
    for (int g = 0; g < QS_GROUP_COUNT; ++g) {
        free(hc.tile[g]);
        free(hc.acc[g]);
        free(hc.absmax[g]);
        free(hc.sumsq[g]);
    }
    free(hc.pabsmax);
    free(hc.psumsq);
    for (int i = 0; i < 9; ++i) free(bufs[i]);
    free(x0);
    free(x);
    return 0;
}

int main(int argc, char **argv) {
    openblas_set_num_threads(1);
    double peak = sgemm_peak(2048, 2048, 2048);
    printf("single-thread SGEMM peak (2048^3, best of %d): %.1f GFLOP/s\n", REPS, peak);
    int rc = 0;
    if (argc > 1) {
        for (int i = 1; i < argc && rc == 0; ++i) rc = bench(atoll(argv[i]), peak);
    } else {
        rc = bench(1024, peak);
        if (rc == 0) rc = bench(2048, peak);
    }
    return rc;
}
