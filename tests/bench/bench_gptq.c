/* bench_gptq.c: GPTQ throughput against this machine's single-thread SGEMM peak.
 *
 * Usage: bench_gptq [--quick]   (--quick skips the 4096-wide shapes)
 *        bench_gptq --shape DOUTxDIN [--shape ...] [--rows N] [--threads T] [--reps R]
 *                   [--dir DIR] [--zero-min1 0|1] [--row-block R] [--bound]
 * Peak: best of several 2048^3 sgemm calls. GPTQ: w4g128 (asym, B 128, row_block 256) on
 * Llama-7B shapes (4096x4096, gate/up 11008x4096) and tinyllama-a shapes; GFLOP/s count
 * 2*d_out*d_in^2 (the nominal GPTQ cost). Prints one line per shape; not a test.
 * With --shape: only those shapes, X of N rows (--rows, default 2048), prepare
 * (qs_gptq_prepare_pool) and the quantize step on a pool of T threads, the latter in pieces
 * of row_block rows (as reconstruct runs them), best of R repetitions. --dir DIR: the Hessian and W of
 * a shape are read from DIR/DOUTxDIN.{H,W}.f32 when present, else made and written there,
 * and the dequantized result goes to DIR/DOUTxDIN.wq<T>.f32 (raw little-endian float32,
 * row-major (n, n), (d_out, n), (d_out, n)); tests/bench/bench_gptq_ref.py uses these to run
 * the reference GPTQ on the same input. --zero-min1 0 keeps zero points in [0, 15] as the
 * reference does (default 1, the product's default). --row-block R: pieces of R rows
 * (quant.row_block; default 256).
 * --bound (with --shape, one thread): instead of qshard's GPTQ, a lower bound on the time of
 * any blocked GPTQ of the shape built from this machine's BLAS/LAPACK (docs/performance.md
 * "How close 3x is"), as the sum of three parts that every such implementation does:
 *   factor   the damped H's factor by LAPACK on the whole matrix (spotrf + strtri, 2/3 n^3,
 *            the fastest route to U measured here), and (for the strict bound) the same
 *            FLOPs at S when that is faster, S = the fastest sgemm rate seen in this process
 *            (the 2048^3 peak or the best of the update calls below);
 *   updates  the lazy-batch updates W[:, i2:] -= E U[i1:i2, i2:] as the exact sgemm calls of
 *            row tiles of R rows and blocks of B columns (nothing else run), for R in
 *            {256, 512, 1024} and B in {128, 256, 512}, plus the updates inside blocks
 *            (d_out n (B - 1) FLOPs) counted at S; the fastest (R, B);
 *   round    rounding every weight onto its group's grid once (qs_rtn_quantize_rows: group
 *            min/max, scale, code, dequantized value; GPTQ does this and more per weight).
 * Prints each part (best of --reps) and two bounds: "measured" (factor by LAPACK) and
 * "strict" (factor at S if faster).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cblas.h>
#include <lapacke.h>

#include "bench_util.h"
#include "pool.h"
#include "quant.h"

static double sgemm_peak(void) {
    const int n = 2048;
    float *A = malloc((size_t)n * n * 4), *B = malloc((size_t)n * n * 4), *C = malloc((size_t)n * n * 4);
    for (size_t i = 0; i < (size_t)n * n; ++i) {
        A[i] = bench_frand();
        B[i] = bench_frand();
    }
    double best = 1e30;
    for (int rep = 0; rep < 4; ++rep) {
        double t = bench_wall();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, A, n, B, n, 0.0f, C, n);
        t = bench_wall() - t;
        if (t < best) best = t;
    }
    free(A);
    free(B);
    free(C);
    return 2.0 * n * (double)n * n / best / 1e9;
}

/* What one run of bench_shape does (the options). */
typedef struct bench_opts {
    int64_t rows;    /* token rows N of X; 0: the default rule of the fixed table */
    int threads;     /* pool threads of prepare and quantize */
    int reps;        /* best of */
    int zero_min1;   /* qs_quant_params.zero_min1 */
    int row_block;   /* qs_quant_params.row_block (0: the default, 256) */
    const char *dir; /* NULL, or where H, W (in) and wq (out) live */
} bench_opts;

/* Reads or writes count floats of DIR/DOUTxDIN.NAME.f32; 0 on success. A missing file on
 * read returns 1 (the caller makes the data); any other failure -1. */
static int f32_file(const bench_opts *o, int64_t d_out, int64_t n, const char *name, float *a,
                    int64_t count, int write) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%lldx%lld.%s.f32", o->dir, (long long)d_out, (long long)n,
             name);
    FILE *fp = fopen(path, write ? "wb" : "rb");
    if (!fp) return write ? -1 : 1;
    size_t got = write ? fwrite(a, 4, (size_t)count, fp) : fread(a, 4, (size_t)count, fp);
    int bad = fclose(fp) != 0 || got != (size_t)count;
    if (bad) fprintf(stderr, "bench_gptq: %s: short %s\n", path, write ? "write" : "read");
    return bad ? -1 : 0;
}

/* H = 2/N X^T X (full, symmetric) and W of a shape: from o->dir when there, else made from
 * the generator (and written to o->dir if set). 0 on success. */
static int make_input(const bench_opts *o, int64_t d_out, int64_t n, float *H, float *W) {
    if (o->dir) {
        int a = f32_file(o, d_out, n, "H", H, n * n, 0);
        int b = a == 0 ? f32_file(o, d_out, n, "W", W, d_out * n, 0) : a;
        if (a < 0 || b < 0) return -1;
        if (a == 0 && b == 0) return 0;
    }
    const int64_t N = o->rows > 0 ? o->rows : n < 1024 ? 2 * n : 1024; /* calibration rows */
    float *X = malloc((size_t)(N * n) * 4); // (N, n)
    if (!X) return -1;
    for (int64_t i = 0; i < N * n; ++i) X[i] = bench_frand();
    for (int64_t i = 0; i < d_out * n; ++i) W[i] = 0.02f * bench_frand();
    cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, (int)n, (int)N, 2.0f / (float)N, X, (int)n,
                0.0f, H, (int)n);
    free(X);
    for (int64_t i = 0; i < n; ++i)
        for (int64_t j = 0; j < i; ++j) H[i * n + j] = H[j * n + i];
    if (o->dir && (f32_file(o, d_out, n, "H", H, n * n, 1) || f32_file(o, d_out, n, "W", W, d_out * n, 1)))
        return -1;
    return 0;
}

/* The quantize step as pieces of row_block rows on the pool (reconstruct's pieces). */
typedef struct piece_run {
    const qs_gptq_factor *f;
    const qs_quant_params *p;
    const float *W; /* (d_out, n) */
    int64_t d_out, ng;
    qs_quant_out o; /* whole-layer outputs */
} piece_run;

static qs_status piece_task(void *vctx, int64_t t, int worker, qs_err *err) {
    (void)worker;
    const piece_run *r = vctx;
    const int64_t n = r->f->n, rb = r->p->row_block, r0 = t * rb;
    const int64_t r1 = r0 + rb < r->d_out ? r0 + rb : r->d_out;
    qs_quant_out o = {r->o.codes + r0 * n, r->o.scales + r0 * r->ng, r->o.zeros + r0 * r->ng,
                      r->o.wq + r0 * n, NULL};
    return qs_gptq_quantize_rows(r->f, r->p, r->W + r0 * n, r->d_out, r0, r1, &o, err);
}

/* Times one shape; returns 0 on success. */
static int bench_shape(int64_t d_out, int64_t n, double peak, const bench_opts *o,
                       qs_pool *pool) {
    int rc = 1;
    float *H = malloc((size_t)(n * n) * 4);                        // (n, n)
    float *W = malloc((size_t)(d_out * n) * 4);                    // (d_out, n)
    float *wq = malloc((size_t)(d_out * n) * 4);                   // (d_out, n)
    qs_quant_params p;
    qs_quant_params_default(&p);
    p.zero_min1 = o->zero_min1;
    if (o->row_block > 0) p.row_block = o->row_block;
    int64_t ng = qs_quant_ngroups(n, p.group_size);
    uint8_t *codes = malloc((size_t)(d_out * n));                  // (d_out, n)
    uint16_t *sc = malloc((size_t)(d_out * ng) * 2);               // (d_out, ng)
    int32_t *z = malloc((size_t)(d_out * ng) * 4);                 // (d_out, ng)
    qs_gptq_factor f;
    memset(&f, 0, sizeof f);
    qs_err e = {0};
    if (!H || !W || !wq || !codes || !sc || !z || make_input(o, d_out, n, H, W)) {
        fprintf(stderr, "bench_gptq: input of %lld x %lld failed\n", (long long)d_out,
                (long long)n);
        goto done;
    }
    double tprep = 1e30, tq = 1e30;
    for (int rep = 0; rep < o->reps; ++rep) {
        qs_gptq_factor_free(&f);
        double t = bench_wall();
        if (qs_gptq_prepare_pool(pool, H, n, &p, &f, &e) != QS_OK) goto fail;
        t = bench_wall() - t;
        tprep = t < tprep ? t : tprep;
        piece_run r = {&f, &p, W, d_out, ng, {codes, sc, z, wq, NULL}};
        t = bench_wall();
        if (qs_pool_run(pool, (d_out + p.row_block - 1) / p.row_block, piece_task, &r, &e) != QS_OK)
            goto fail;
        t = bench_wall() - t;
        tq = t < tq ? t : tq;
    }
    if (o->dir) {
        char name[32];
        snprintf(name, sizeof name, "wq%d", o->threads);
        if (f32_file(o, d_out, n, name, wq, d_out * n, 1)) goto done;
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
    free(H);
    free(W);
    free(wq);
    free(codes);
    free(sc);
    free(z);
    return rc;
}

/* Time of the lazy-batch sgemm calls of a solve of d_out rows in row tiles of R and blocks of
 * B (the calls of qs_gptq_solve_tile between blocks, on buffers of the same shapes). */
static double lazy_updates(int64_t d_out, int64_t n, int64_t R, int64_t B, const float *U,
                           float *Wp, const float *E) {
    double t = bench_wall();
    for (int64_t r0 = 0; r0 < d_out; r0 += R) {
        const int64_t Rt = d_out - r0 < R ? d_out - r0 : R;
        for (int64_t i1 = 0; i1 < n; i1 += B) {
            const int64_t i2 = i1 + B < n ? i1 + B : n;
            if (i2 < n)
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)Rt, (int)(n - i2),
                            (int)(i2 - i1), -1.0f, E, (int)Rt, U + i1 * n + i2, (int)n, 1.0f,
                            Wp + i2, (int)n);
        }
    }
    return bench_wall() - t;
}

/* --bound for one shape (see the file comment); 0 on success. */
static int bound_shape(int64_t d_out, int64_t n, double peak, const bench_opts *o) {
    int rc = 1;
    float *H = malloc((size_t)(n * n) * 4);        // (n, n)
    float *A = malloc((size_t)(n * n) * 4);        // (n, n) damped H, then its factor
    float *W = malloc((size_t)(d_out * n) * 4);    // (d_out, n)
    float *Wp = malloc((size_t)(1024 * n) * 4);    // (1024, n) one row tile
    float *E = malloc((size_t)(512 * 1024) * 4);   // (512, 1024) one block's errors
    float *wq = malloc((size_t)(d_out * n) * 4);   // (d_out, n)
    qs_quant_params p;
    qs_quant_params_default(&p);
    p.zero_min1 = o->zero_min1;
    const int64_t ng = qs_quant_ngroups(n, p.group_size);
    uint8_t *codes = malloc((size_t)(d_out * n)); // (d_out, n)
    uint16_t *sc = malloc((size_t)(d_out * ng) * 2); // (d_out, ng)
    int32_t *z = malloc((size_t)(d_out * ng) * 4);   // (d_out, ng)
    if (!H || !A || !W || !Wp || !E || !wq || !codes || !sc || !z ||
        make_input(o, d_out, n, H, W)) {
        fprintf(stderr, "bench_gptq: input of %lld x %lld failed\n", (long long)d_out,
                (long long)n);
        goto done;
    }
    double mean = 0.0;
    for (int64_t i = 0; i < n; ++i) mean += H[i * n + i];
    mean /= (double)n;
    double tf = 1e30;
    for (int rep = 0; rep < o->reps; ++rep) {
        memcpy(A, H, (size_t)(n * n) * 4);
        for (int64_t i = 0; i < n; ++i) A[i * n + i] += (float)(0.01 * mean);
        double t = bench_wall();
        if (LAPACKE_spotrf_work(LAPACK_COL_MAJOR, 'U', (lapack_int)n, A, (lapack_int)n) != 0 ||
            LAPACKE_strtri_work(LAPACK_COL_MAJOR, 'U', 'N', (lapack_int)n, A, (lapack_int)n) != 0) {
            fprintf(stderr, "bench_gptq: %lld x %lld: the damped H does not factor\n",
                    (long long)d_out, (long long)n);
            goto done;
        }
        t = bench_wall() - t;
        tf = t < tf ? t : tf;
    }
    for (int64_t i = 0; i < 1024 * n; ++i) Wp[i] = 0.02f * bench_frand();
    for (int64_t i = 0; i < 512 * 1024; ++i) E[i] = 0.01f * bench_frand();
    const int64_t Rs[3] = {256, 512, 1024}, Bs[3] = {128, 256, 512};
    double tl[3][3], pk = peak; /* pk: the fastest sgemm rate seen in this process */
    for (int i = 0; i < 3; ++i)
        for (int j = 0; j < 3; ++j) {
            tl[i][j] = 1e30;
            for (int rep = 0; rep < o->reps; ++rep) {
                double t = lazy_updates(d_out, n, Rs[i], Bs[j], A, Wp, E);
                tl[i][j] = t < tl[i][j] ? t : tl[i][j];
            }
            double g = (double)d_out * (double)(n - Bs[j]) * (double)n / tl[i][j] / 1e9;
            pk = g > pk ? g : pk;
        }
    double tu = 1e30, tlazy = 0.0;
    int64_t bestR = 0, bestB = 0;
    for (int i = 0; i < 3; ++i)
        for (int j = 0; j < 3; ++j) {
            double total = tl[i][j] + (double)d_out * (double)n * (double)(Bs[j] - 1) / (pk * 1e9);
            printf("  updates R %4lld B %3lld: lazy sgemms %.3f s + inside blocks at %.1f GFLOP/s "
                   "%.3f s\n",
                   (long long)Rs[i], (long long)Bs[j], tl[i][j], pk, total - tl[i][j]);
            if (total < tu) {
                tu = total;
                tlazy = tl[i][j];
                bestR = Rs[i];
                bestB = Bs[j];
            }
        }
    double tr = 1e30;
    qs_quant_out out = {codes, sc, z, wq, NULL};
    qs_err e = {0};
    for (int rep = 0; rep < o->reps; ++rep) {
        double t = bench_wall();
        if (qs_rtn_quantize_rows(&p, W, d_out, n, &out, &e) != QS_OK) {
            fprintf(stderr, "bench_gptq: %s\n", e.msg);
            goto done;
        }
        t = bench_wall() - t;
        tr = t < tr ? t : tr;
    }
    const double ff = 2.0 / 3.0 * (double)n * (double)n * (double)n;
    const double tfp = ff / (pk * 1e9) < tf ? ff / (pk * 1e9) : tf;
    printf("%6lld x %-5lld  factor %.3f s (%.1f GFLOP/s; at %.1f %.3f s)  updates %.3f s (R %lld, "
           "B %lld: sgemms %.3f s, %.1f GFLOP/s)  round %.3f s\n",
           (long long)d_out, (long long)n, tf, ff / tf / 1e9, pk, tfp, tu, (long long)bestR,
           (long long)bestB, tlazy,
           (double)d_out * (double)(n - bestB) * (double)n / tlazy / 1e9, tr);
    printf("%6lld x %-5lld  bound measured %.3f s  strict %.3f s\n", (long long)d_out,
           (long long)n, tf + tu + tr, tfp + tu + tr);
    fflush(stdout);
    rc = 0;
done:
    free(H);
    free(A);
    free(W);
    free(Wp);
    free(E);
    free(wq);
    free(codes);
    free(sc);
    free(z);
    return rc;
}

/* The fixed table (no --shape): tinyllama-a shapes, then the Llama-7B ones. */
static int bench_table(int quick, double peak) {
    bench_opts o = {0, 1, 5, 1, 0, NULL};
    /* tinyllama-a: q/o 256x256, k/v 128x256, gate/up 768x256, down 256x768 */
    const int64_t tiny[][2] = {{256, 256}, {128, 256}, {768, 256}, {256, 768}};
    for (size_t i = 0; i < sizeof tiny / sizeof tiny[0]; ++i)
        if (bench_shape(tiny[i][0], tiny[i][1], peak, &o, NULL)) return 1;
    o.reps = 1;
    if (!quick) {
        if (bench_shape(4096, 4096, peak, &o, NULL)) return 1;
        if (bench_shape(11008, 4096, peak, &o, NULL)) return 1;
    }
    return 0;
}

int main(int argc, char **argv) {
    enum { MAXS = 16 };
    int64_t shapes[MAXS][2]; /* (d_out, d_in) of each --shape */
    int nshapes = 0, quick = 0, bound = 0;
    bench_opts o = {2048, 1, 1, 1, 0, NULL};
    for (int i = 1; i < argc; ++i) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        long long x, y;
        if (strcmp(a, "--quick") == 0) {
            quick = 1;
            continue;
        }
        if (strcmp(a, "--bound") == 0) {
            bound = 1;
            continue;
        }
        if (!v) {
            fprintf(stderr, "bench_gptq: %s needs a value (see the file comment)\n", a);
            return 2;
        }
        ++i;
        if (strcmp(a, "--shape") == 0 && nshapes < MAXS && sscanf(v, "%lldx%lld", &x, &y) == 2 &&
            x > 0 && y > 0) {
            shapes[nshapes][0] = x;
            shapes[nshapes++][1] = y;
        } else if (strcmp(a, "--rows") == 0 && atoll(v) > 0) {
            o.rows = atoll(v);
        } else if (strcmp(a, "--threads") == 0 && atoi(v) > 0) {
            o.threads = atoi(v);
        } else if (strcmp(a, "--reps") == 0 && atoi(v) > 0) {
            o.reps = atoi(v);
        } else if (strcmp(a, "--row-block") == 0) {
            o.row_block = atoi(v);
        } else if (strcmp(a, "--zero-min1") == 0) {
            o.zero_min1 = atoi(v) != 0;
        } else if (strcmp(a, "--dir") == 0) {
            o.dir = v;
        } else {
            fprintf(stderr, "bench_gptq: bad option %s %s (see the file comment)\n", a, v);
            return 2;
        }
    }
    if (bound && nshapes == 0) {
        fprintf(stderr, "bench_gptq: --bound needs --shape (see the file comment)\n");
        return 2;
    }
    openblas_set_num_threads(1);
    double peak = sgemm_peak();
    printf("sgemm 2048^3 single thread: %.1f GFLOP/s (peak)\n", peak);
    if (nshapes == 0) {
        printf("GPTQ w4g128 asym, B 128, row_block 256, 1 thread; GFLOP/s = 2 d_out d_in^2 / time\n");
        return bench_table(quick, peak);
    }
    if (bound) {
        printf("lower bound of a blocked GPTQ w4g128 on this BLAS, 1 thread, best of %d\n",
               o.reps);
        int rc = 0;
        for (int i = 0; i < nshapes && rc == 0; ++i)
            rc = bound_shape(shapes[i][0], shapes[i][1], peak, &o);
        return rc;
    }
    printf("GPTQ w4g128 asym, B 128, row_block %d, zero_min1 %d, X rows %lld, quantize on %d "
           "thread(s), best of %d; GFLOP/s = 2 d_out d_in^2 / time\n",
           o.row_block > 0 ? o.row_block : 256, o.zero_min1, (long long)o.rows, o.threads,
           o.reps);
    qs_pool *pool = NULL;
    qs_err e = {0};
    if (qs_pool_create(o.threads, &pool, &e) != QS_OK) {
        fprintf(stderr, "bench_gptq: %s\n", e.msg);
        return 1;
    }
    int rc = 0;
    for (int i = 0; i < nshapes && rc == 0; ++i)
        rc = bench_shape(shapes[i][0], shapes[i][1], peak, &o, pool);
    qs_pool_free(pool);
    return rc;
}
