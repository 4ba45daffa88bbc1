/* test_gguf_dump.c: helper of tests/ref/gguf_check.py (not a test by itself).
 *
 * Usage: test_gguf_dump DIR
 * Writes, for the rows of gguf_testdata.h (36 x 512) and every GGUF block type T:
 *   DIR/W.f32                  the input (rows, n) float32
 *   DIR/types.txt              one line per type: "T block_elems block_bytes"
 *   DIR/T.<v>.bin, T.<v>.f32   block bytes (rows, row_bytes) and qshard's dequantized floats
 *                              (rows, n) for v in
 *     ref   llama.cpp's quantizer without importance (qs_gguf_quantize_rows, imp NULL)
 *     imp   with importance (gguf_td_importance)
 *     gptq  GPTQ on the grid (dynamic parameters, imatrix chooser with diag(H) of a
 *           correlated Hessian); the floats are the solve's own wq
 *     rand  random bytes (fp16 fields kept finite): every field value of the layout
 * and DIR/meta.txt "rows n". Exit 0 on success.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "gguf_internal.h"
#include "gguf_quant.h"
#include "gguf_testdata.h"

static int write_file(const char *dir, const char *name, const char *ext, const void *buf,
                      size_t bytes) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s%s", dir, name, ext);
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t put = fwrite(buf, 1, bytes, f);
    return (fclose(f) == 0 && put == bytes) ? 0 : -1;
}

/* Byte offsets of the fp16 fields of each block type (ggml-common.h). */
static int fp16_fields(qs_gguf_type t, int off[2]) {
    switch (t) {
    case QS_GGUF_Q4_1:
    case QS_GGUF_Q5_1:
    case QS_GGUF_Q4_K:
    case QS_GGUF_Q5_K:
        off[0] = 0;
        off[1] = 2;
        return 2;
    case QS_GGUF_Q2_K:
        off[0] = 80;
        off[1] = 82;
        return 2;
    case QS_GGUF_Q3_K: off[0] = 108; return 1;
    case QS_GGUF_Q6_K: off[0] = 208; return 1;
    default: off[0] = 0; return 1;
    }
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s DIR\n", argv[0]);
        return 2;
    }
    openblas_set_num_threads(1);
    const char *dir = argv[1];
    const int64_t rows = 36, n = 512;
    static const qs_gguf_type types[] = {QS_GGUF_Q4_0, QS_GGUF_Q4_1, QS_GGUF_Q5_0, QS_GGUF_Q5_1,
                                         QS_GGUF_Q8_0, QS_GGUF_Q2_K, QS_GGUF_Q3_K, QS_GGUF_Q4_K,
                                         QS_GGUF_Q5_K, QS_GGUF_Q6_K};
    float *W = malloc((size_t)(rows * n) * sizeof(float)),
          *Y = malloc((size_t)(rows * n) * sizeof(float));
    float *imp = malloc((size_t)n * sizeof(float)), *H = malloc((size_t)(n * n) * sizeof(float));
    float *X = malloc((size_t)(4 * n * n) * sizeof(float));
    uint8_t *y = malloc((size_t)(rows * n * 2));
    if (!W || !Y || !imp || !H || !X || !y) return 1;
    gguf_td_fill(W, rows, n, 31337u);
    gguf_td_importance(imp, n, 4242u);
    /* a correlated Hessian: 2/N X^T X with a common component */
    uint64_t s = 5u;
    for (int64_t t = 0; t < 4 * n; ++t) {
        float c = gguf_td_bell(&s, 0);
        for (int64_t i = 0; i < n; ++i)
            X[t * n + i] = (0.3f + 0.1f * (float)(i % 11)) * (gguf_td_bell(&s, 0) + 0.6f * c);
    }
    cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, (int)n, (int)(4 * n), 0.5f / (float)n, X,
                (int)n, 0.0f, H, (int)n);
    for (int64_t i = 0; i < n; ++i)
        for (int64_t j = 0; j < i; ++j) H[i * n + j] = H[j * n + i];
    float diag[512];
    for (int64_t j = 0; j < n; ++j) diag[j] = H[j * n + j];
    qs_quant_params qp;
    qs_quant_params_default(&qp);
    qs_gptq_factor f;
    qs_err e = {0};
    if (qs_gptq_prepare(H, n, &qp, &f, &e) != QS_OK) goto fail;

    FILE *tf;
    char path[4096];
    snprintf(path, sizeof path, "%s/types.txt", dir);
    if (!(tf = fopen(path, "w"))) return 1;
    for (size_t ti = 0; ti < sizeof(types) / sizeof(types[0]); ++ti) {
        const qs_gguf_type t = types[ti];
        const char *name = qs_gguf_type_name(t);
        const int64_t rb = qs_gguf_row_bytes(t, n), bytes = rows * rb;
        fprintf(tf, "%s %lld %lld\n", name, (long long)qs_gguf_block_elems(t),
                (long long)qs_gguf_block_bytes(t));
        for (int v = 0; v < 4; ++v) {
            static const char *ext[] = {".ref", ".imp", ".gptq", ".rand"};
            char base[64];
            snprintf(base, sizeof base, "%s%s", name, ext[v]);
            if (v == 0 || v == 1) {
                if (qs_gguf_quantize_rows(t, W, rows, n, v ? imp : NULL, y, &e) != QS_OK) goto fail;
                if (qs_gguf_dequantize_rows(t, y, rows, n, Y, &e) != QS_OK) goto fail;
            } else if (v == 2) {
                qs_gguf_params p;
                qs_gguf_params_default(&p, t);
                if (qs_gguf_gptq_quantize_rows(&f, &p, diag, W, rows, 0, rows, y, Y, &e) != QS_OK)
                    goto fail;
            } else {
                uint64_t r = 77u + (uint64_t)ti;
                for (int64_t i = 0; i < bytes; ++i) y[i] = (uint8_t)(gguf_td_next(&r) >> 56);
                int off[2], nf = fp16_fields(t, off);
                const int64_t bb = qs_gguf_block_bytes(t);
                for (int64_t blk = 0; blk < bytes / bb; ++blk)
                    for (int k = 0; k < nf; ++k) {
                        uint8_t *hi = y + blk * bb + off[k] + 1;         /* exponent bits 10..14 */
                        if ((*hi & 0x7C) == 0x7C) *hi &= (uint8_t)~0x40; /* no Inf/NaN */
                    }
                if (qs_gguf_dequantize_rows(t, y, rows, n, Y, &e) != QS_OK) goto fail;
            }
            if (write_file(dir, base, ".bin", y, (size_t)bytes) ||
                write_file(dir, base, ".f32", Y, (size_t)(rows * n) * sizeof(float)))
                return 1;
        }
    }
    fclose(tf);
    if (write_file(dir, "W", ".f32", W, (size_t)(rows * n) * sizeof(float))) return 1;
    snprintf(path, sizeof path, "%s/meta.txt", dir);
    if (!(tf = fopen(path, "w"))) return 1;
    fprintf(tf, "%lld %lld\n", (long long)rows, (long long)n);
    fclose(tf);
    qs_gptq_factor_free(&f);
    free(W);
    free(Y);
    free(imp);
    free(H);
    free(X);
    free(y);
    return 0;
fail:
    fprintf(stderr, "test_gguf_dump: %s\n", e.msg);
    return 1;
}
