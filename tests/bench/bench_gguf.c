/* bench_gguf.c: output error and throughput of the GGUF quantizers (docs/quant.md "GGUF").
 *
 * Usage: bench_gguf errors MODEL_DIR RUN_DIR [TYPE...]
 *        bench_gguf speed [--quick]
 * errors: for every decoder layer and linear of MODEL_DIR with the Hessians of a completed
 * calibration (RUN_DIR/calib/layer-NNN.h5), every GGUF type (or the TYPEs given) and every
 * quantizer variant, the relative output error tr(dW H dW^T) / tr(W H W^T) of the written
 * bytes; prints, per type and variant, the mean over the linears and the ratio of summed
 * errors to summed norms. Variants:
 *   rtn          llama.cpp's quantizer without importance (llama-quantize without imatrix)
 *   rtn-imp      llama.cpp's importance path with imp = diag(H) (llama-quantize --imatrix)
 *   gptq         GPTQ on the grid, dynamic parameters, llama.cpp's rule (no importance)
 *   gptq-imp     GPTQ on the grid, dynamic parameters, importance rule with diag(H)
 *   gptq-search  gptq-imp with the K-quants' sub-block codes searched (CHOOSE_SEARCH)
 *   gptq-static  GPTQ, parameters up front (= rtn-imp's), natural order
 *   gptq-act     GPTQ, parameters up front (= rtn-imp's), act-order
 * GPTQ: damp 0.01, B 128, row_block 256 (the pipeline's defaults).
 * speed: weights per CPU second of each quantizer on a 4096 x 4096 layer (--quick: 1024 x
 * 1024) with a random Hessian, one thread, and the plain GPTQ w4g128 for reference.
 * Not a test.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cblas.h>

#include "bench_util.h"
#include "gguf_quant.h"
#include "h5store.h"
#include "hf_model.h"
#include "quant.h"

#define NVAR 7
static const char *k_var[NVAR] = {"rtn",         "rtn-imp",     "gptq",    "gptq-imp",
                                  "gptq-search", "gptq-static", "gptq-act"};
static const char *k_group[] = {"qkv", "o", "gate_up", "down"};
static const qs_gguf_type k_all[] = {QS_GGUF_Q2_K, QS_GGUF_Q3_K, QS_GGUF_Q4_0, QS_GGUF_Q4_1,
                                     QS_GGUF_Q4_K, QS_GGUF_Q5_0, QS_GGUF_Q5_1, QS_GGUF_Q5_K,
                                     QS_GGUF_Q6_K, QS_GGUF_Q8_0};

/* CPU seconds of this process: robust when other processes share the cores (every call
 * here is single-threaded, so on an idle machine it equals wall time). */
static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* One variant of one linear: bytes into y, dequantized into wq. */
static qs_status run_variant(int v, qs_gguf_type t, const qs_gptq_factor *f,
                             const qs_gptq_factor *fa, const float *imp, const float *W,
                             int64_t d_out, int64_t d_in, uint8_t *y, float *wq, qs_err *err) {
    if (v < 2) {
        qs_status st = qs_gguf_quantize_rows(t, W, d_out, d_in, v ? imp : NULL, y, err);
        return st != QS_OK ? st : qs_gguf_dequantize_rows(t, y, d_out, d_in, wq, err);
    }
    qs_gguf_params p;
    qs_gguf_params_default(&p, t);
    p.chooser = v == 2   ? QS_GGUF_CHOOSE_REF
                : v == 4 ? QS_GGUF_CHOOSE_SEARCH
                         : QS_GGUF_CHOOSE_IMATRIX;
    p.static_groups = v >= 5;
    p.act_order = v == 6;
    return qs_gguf_gptq_quantize_rows(v == 6 ? fa : f, &p, imp, W, d_out, 0, d_out, y, wq, err);
}

static int cmd_errors(int argc, char **argv) {
    const char *model_dir = argv[2], *run_dir = argv[3];
    qs_gguf_type types[16];
    int ntypes = 0;
    for (int i = 4; i < argc && ntypes < 16; ++i)
        if (qs_gguf_type_parse(argv[i], &types[ntypes]) == 0 &&
            qs_gguf_quant_supported(types[ntypes]))
            ntypes++;
        else {
            fprintf(stderr, "bench_gguf: unknown block type %s\n", argv[i]);
            return 2;
        }
    if (ntypes == 0) {
        ntypes = (int)(sizeof(k_all) / sizeof(k_all[0]));
        memcpy(types, k_all, sizeof(k_all));
    }
    qs_model m;
    qs_err e = {0};
    if (qs_model_open(&m, model_dir, &e) != QS_OK) goto fail;
    const int nlayers = (int)m.hf.num_hidden_layers;
    /* per type and variant: sum of relative errors, sum of errors, sum of norms, seconds */
    static double rel[16][NVAR], serr[16][NVAR], snorm[16][NVAR], secs[16][NVAR];
    int nlin = 0;
    for (int l = 0; l < nlayers; ++l) {
        char path[4200];
        snprintf(path, sizeof path, "%s/calib/layer-%03d.h5", run_dir, l);
        qs_h5 h;
        memset(&h, 0, sizeof h);
        if (qs_h5_open(&h, path, &e) != QS_OK) goto fail;
        for (int g = 0; g < 4; ++g) {
            int64_t d_out, d_in = 0;
            for (int k = 0; k < QS_LIN_COUNT; ++k) {
                int gk = k <= QS_LIN_V ? 0 : k == QS_LIN_O ? 1 : k == QS_LIN_DOWN ? 3 : 2;
                if (gk == g) qs_linear_dims(&m.hf, (qs_linear_kind)k, &d_out, &d_in);
            }
            float *H = NULL;
            char name[64];
            snprintf(name, sizeof name, "%s/hessian", k_group[g]);
            if (qs_h5_read_n(&h, name, QS_H5_F32, d_in * d_in, (void **)&H, &e) != QS_OK) goto fail;
            float *imp = malloc((size_t)d_in * sizeof(float));
            for (int64_t j = 0; j < d_in; ++j) imp[j] = H[j * d_in + j];
            qs_quant_params qp;
            qs_quant_params_default(&qp);
            qs_gptq_factor f, fa;
            if (qs_gptq_prepare(H, d_in, &qp, &f, &e) != QS_OK) goto fail;
            qp.act_order = 1;
            if (qs_gptq_prepare(H, d_in, &qp, &fa, &e) != QS_OK) goto fail;
            for (int k = 0; k < QS_LIN_COUNT; ++k) {
                int gk = k <= QS_LIN_V ? 0 : k == QS_LIN_O ? 1 : k == QS_LIN_DOWN ? 3 : 2;
                if (gk != g) continue;
                qs_linear_dims(&m.hf, (qs_linear_kind)k, &d_out, &d_in);
                float *W = malloc((size_t)(d_out * d_in) * sizeof(float));
                float *wq = malloc((size_t)(d_out * d_in) * sizeof(float));
                uint8_t *y = malloc((size_t)(d_out * d_in * 2));
                double *er = malloc((size_t)d_out * sizeof(double)),
                       *wn = malloc((size_t)d_out * sizeof(double));
                if (qs_model_read_linear(&m, l, (qs_linear_kind)k, W, &e) != QS_OK) goto fail;
                for (int ti = 0; ti < ntypes; ++ti)
                    for (int v = 0; v < NVAR; ++v) {
                        double t0 = now();
                        if (run_variant(v, types[ti], &f, &fa, imp, W, d_out, d_in, y, wq, &e) !=
                            QS_OK)
                            goto fail;
                        secs[ti][v] += now() - t0;
                        if (qs_quant_error_rows(H, d_in, W, wq, d_out, 256, er, wn, &e) != QS_OK)
                            goto fail;
                        double se = qs_quant_sum(er, d_out), sn = qs_quant_sum(wn, d_out);
                        rel[ti][v] += qs_quant_relative(se, sn);
                        serr[ti][v] += se;
                        snorm[ti][v] += sn;
                    }
                nlin++;
                free(W);
                free(wq);
                free(y);
                free(er);
                free(wn);
            }
            qs_gptq_factor_free(&f);
            qs_gptq_factor_free(&fa);
            free(H);
            free(imp);
        }
        qs_h5_abandon(&h);
    }
    printf("relative output error tr(dW H dW^T) / tr(W H W^T): mean over %d linears "
           "(sum of errors / sum of norms)\n",
           nlin);
    printf("| type | bpw |");
    for (int v = 0; v < NVAR; ++v) printf(" %s |", k_var[v]);
    printf("\n|---|---|");
    for (int v = 0; v < NVAR; ++v) printf("---|");
    printf("\n");
    for (int ti = 0; ti < ntypes; ++ti) {
        const qs_gguf_type t = types[ti];
        printf("| %s | %.4g |", qs_gguf_type_name(t),
               8.0 * (double)qs_gguf_block_bytes(t) / (double)qs_gguf_block_elems(t));
        for (int v = 0; v < NVAR; ++v)
            printf(" %.3g (%.3g) |", rel[ti][v] / nlin, serr[ti][v] / snorm[ti][v]);
        printf("\n");
    }
    printf("CPU seconds over all linears and types:");
    for (int v = 0; v < NVAR; ++v) {
        double s = 0.0;
        for (int ti = 0; ti < ntypes; ++ti) s += secs[ti][v];
        printf(" %s %.2f", k_var[v], s);
    }
    printf("\n");
    qs_model_close(&m);
    return 0;
fail:
    fprintf(stderr, "bench_gguf: %s\n", e.msg);
    return 1;
}

static int cmd_speed(int quick) {
    const int64_t n = quick ? 1024 : 4096, d_out = n, N = 1024;
    float *X = malloc((size_t)(N * n) * 4), *H = malloc((size_t)(n * n) * 4);
    float *W = malloc((size_t)(d_out * n) * 4), *wq = malloc((size_t)(d_out * n) * 4);
    float *imp = malloc((size_t)n * 4);
    uint8_t *y = malloc((size_t)(d_out * n * 2));
    qs_err e = {0};
    for (int64_t i = 0; i < N * n; ++i) X[i] = bench_frand();
    for (int64_t i = 0; i < d_out * n; ++i) W[i] = 0.02f * bench_frand();
    cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, (int)n, (int)N, 2.0f / (float)N, X, (int)n,
                0.0f, H, (int)n);
    for (int64_t i = 0; i < n; ++i) {
        for (int64_t j = 0; j < i; ++j) H[i * n + j] = H[j * n + i];
        imp[i] = H[i * n + i];
    }
    qs_quant_params qp;
    qs_quant_params_default(&qp);
    qs_gptq_factor f, fa;
    double t = now();
    if (qs_gptq_prepare(H, n, &qp, &f, &e) != QS_OK) goto fail;
    const double tprep = now() - t;
    qp.act_order = 1;
    if (qs_gptq_prepare(H, n, &qp, &fa, &e) != QS_OK) goto fail;
    printf("%lld x %lld, 1 thread, CPU time; prepare (shared by all GPTQ variants) %.3f s; "
           "Mweights/s (rtn: quantize + dequantize)\n",
           (long long)d_out, (long long)n, tprep);
    {
        qp.act_order = 0;
        int64_t ng = qs_quant_ngroups(n, qp.group_size);
        uint8_t *codes = malloc((size_t)(d_out * n));
        uint16_t *sc = malloc((size_t)(d_out * ng) * 2);
        int32_t *z = malloc((size_t)(d_out * ng) * 4);
        qs_quant_out o = {codes, sc, z, wq, NULL};
        t = now();
        if (qs_gptq_quantize_rows(&f, &qp, W, d_out, 0, d_out, &o, &e) != QS_OK) goto fail;
        t = now() - t;
        printf("plain GPTQ w4g128 (qs_gptq_quantize_rows): %.3f s, %.2f Mweights/s\n", t,
               (double)(d_out * n) / t / 1e6);
        free(codes);
        free(sc);
        free(z);
    }
    printf("| type |");
    for (int v = 0; v < NVAR; ++v) printf(" %s |", k_var[v]);
    printf("\n|---|");
    for (int v = 0; v < NVAR; ++v) printf("---|");
    printf("\n");
    for (size_t ti = 0; ti < sizeof(k_all) / sizeof(k_all[0]); ++ti) {
        printf("| %s |", qs_gguf_type_name(k_all[ti]));
        for (int v = 0; v < NVAR; ++v) {
            t = now();
            if (run_variant(v, k_all[ti], &f, &fa, imp, W, d_out, n, y, wq, &e) != QS_OK) goto fail;
            t = now() - t;
            printf(" %.2f |", (double)(d_out * n) / t / 1e6);
            fflush(stdout);
        }
        printf("\n");
    }
    qs_gptq_factor_free(&f);
    qs_gptq_factor_free(&fa);
    free(X);
    free(H);
    free(W);
    free(wq);
    free(imp);
    free(y);
    return 0;
fail:
    fprintf(stderr, "bench_gguf: %s\n", e.msg);
    return 1;
}

int main(int argc, char **argv) {
    openblas_set_num_threads(1);
    if (argc >= 4 && strcmp(argv[1], "errors") == 0) return cmd_errors(argc, argv);
    if (argc >= 2 && strcmp(argv[1], "speed") == 0)
        return cmd_speed(argc > 2 && strcmp(argv[2], "--quick") == 0);
    fprintf(stderr, "usage: bench_gguf errors MODEL_DIR RUN_DIR [TYPE...] | speed [--quick]\n");
    return 2;
}
