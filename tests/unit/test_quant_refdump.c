/* test_quant_refdump.c: helper of tests/ref/gptq_ref.py (not a test by itself).
 *
 * Usage: test_quant_refdump DIR d_out d_in bits group sym act_order static zero_min1
 *                           block_size row_block damp
 * Reads DIR/W.f32 ((d_out, d_in) row-major) and DIR/H.f32 ((d_in, d_in)), runs the blocked
 * GPTQ and its scalar twin, and writes DIR/{codes,wq,scales,zeros}_{opt,ref}.bin, g_idx.bin,
 * perm.bin and info.txt ("damp nraise fp64 ndead err_opt err_ref wnorm"). Exit 0 on success.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "quant.h"

static int read_file(const char *dir, const char *name, void *buf, size_t bytes) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    size_t got = fread(buf, 1, bytes, f);
    fclose(f);
    return got == bytes ? 0 : -1;
}

static int write_file(const char *dir, const char *name, const void *buf, size_t bytes) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t put = fwrite(buf, 1, bytes, f);
    return (fclose(f) == 0 && put == bytes) ? 0 : -1;
}

int main(int argc, char **argv) {
    if (argc != 13) {
        fprintf(stderr, "usage: %s DIR d_out d_in bits group sym act static zero_min1 B "
                        "row_block damp\n", argv[0]);
        return 2;
    }
    openblas_set_num_threads(1);
    const char *dir = argv[1];
    int64_t d_out = atoll(argv[2]), n = atoll(argv[3]);
    qs_quant_params p;
    qs_quant_params_default(&p);
    p.bits = atoi(argv[4]);
    p.group_size = atoi(argv[5]);
    p.sym = atoi(argv[6]);
    p.act_order = atoi(argv[7]);
    p.static_groups = atoi(argv[8]);
    p.zero_min1 = atoi(argv[9]);
    p.block_size = atoi(argv[10]);
    p.row_block = atoi(argv[11]);
    p.damp = atof(argv[12]);
    int64_t ng = qs_quant_ngroups(n, p.group_size);
    int rc = 1;
    qs_err e = {0};
    qs_gptq_factor f;
    memset(&f, 0, sizeof f);
    float *W = malloc((size_t)(d_out * n) * 4), *H = malloc((size_t)(n * n) * 4);
    uint8_t *codes[2] = {malloc((size_t)(d_out * n)), malloc((size_t)(d_out * n))};
    float *wq[2] = {malloc((size_t)(d_out * n) * 4), malloc((size_t)(d_out * n) * 4)};
    uint16_t *sc[2] = {malloc((size_t)(d_out * ng) * 2), malloc((size_t)(d_out * ng) * 2)};
    int32_t *z[2] = {malloc((size_t)(d_out * ng) * 4), malloc((size_t)(d_out * ng) * 4)};
    int32_t *g = malloc((size_t)n * 4);
    double *er = malloc((size_t)d_out * 8), *wn = malloc((size_t)d_out * 8), err2[2] = {0, 0};
    if (read_file(dir, "W.f32", W, (size_t)(d_out * n) * 4) ||
        read_file(dir, "H.f32", H, (size_t)(n * n) * 4)) {
        fprintf(stderr, "%s: cannot read W.f32 / H.f32\n", dir);
        goto done;
    }
    if (qs_gptq_prepare(H, n, &p, &f, &e) != QS_OK) goto fail;
    for (int k = 0; k < 2; ++k) {
        qs_quant_out o = {codes[k], sc[k], z[k], wq[k], NULL};
        qs_status st = k == 0 ? qs_gptq_quantize_rows(&f, &p, W, d_out, 0, d_out, &o, &e)
                              : qs_gptq_quantize_rows_ref(&f, &p, W, d_out, 0, d_out, &o, &e);
        if (st != QS_OK) goto fail;
        if (qs_quant_error_rows(H, n, W, wq[k], d_out, 64, er, wn, &e) != QS_OK) goto fail;
        err2[k] = qs_quant_sum(er, d_out);
    }
    qs_gptq_g_idx(&f, &p, g);
    const char *sfx[2] = {"opt", "ref"};
    for (int k = 0; k < 2; ++k) {
        char name[64];
        snprintf(name, sizeof name, "codes_%s.bin", sfx[k]);
        if (write_file(dir, name, codes[k], (size_t)(d_out * n))) goto wfail;
        snprintf(name, sizeof name, "wq_%s.bin", sfx[k]);
        if (write_file(dir, name, wq[k], (size_t)(d_out * n) * 4)) goto wfail;
        snprintf(name, sizeof name, "scales_%s.bin", sfx[k]);
        if (write_file(dir, name, sc[k], (size_t)(d_out * ng) * 2)) goto wfail;
        snprintf(name, sizeof name, "zeros_%s.bin", sfx[k]);
        if (write_file(dir, name, z[k], (size_t)(d_out * ng) * 4)) goto wfail;
    }
    if (write_file(dir, "g_idx.bin", g, (size_t)n * 4) ||
        write_file(dir, "perm.bin", f.perm, (size_t)n * 4))
        goto wfail;
    char info[256];
    int len = snprintf(info, sizeof info, "%.17g %d %d %lld %.17g %.17g %.17g\n", f.info.damp,
                       f.info.nraise, f.info.fp64, (long long)f.info.ndead, err2[0], err2[1],
                       qs_quant_sum(wn, d_out));
    if (write_file(dir, "info.txt", info, (size_t)len)) goto wfail;
    rc = 0;
    goto done;
wfail:
    fprintf(stderr, "%s: cannot write outputs\n", dir);
    goto done;
fail:
    fprintf(stderr, "qshard: error: %s\n", e.msg);
done:
    qs_gptq_factor_free(&f);
    free(W);
    free(H);
    for (int k = 0; k < 2; ++k) {
        free(codes[k]);
        free(wq[k]);
        free(sc[k]);
        free(z[k]);
    }
    free(g);
    free(er);
    free(wn);
    return rc;
}
