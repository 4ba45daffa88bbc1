/* gguf_dequant.c: a test driver of qshard's GGUF reader (pipeline/export/gguf_read.c) for
 * tests/gguf/test_gguf_pipeline.py. Not part of qshard's command line.
 *
 *   gguf_dequant FILE.gguf OUT_DIR
 *     Writes OUT_DIR/<tensor name>.f32 for every tensor of the file: its values as qshard's
 *     eval reads them (qs_gguf_reader_f32: blocks dequantized, F16/BF16 widened, llama q/k
 *     rows un-permuted), little-endian f32, row-major in Hugging Face order. Prints one line
 *     "<name> <type> <rows> <cols>" per tensor.
 * Errors: one line "qshard: error: <msg>" on stderr, exit 2 (bad input) or 1.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf_read.h"

int main(int argc, char **argv) {
    qs_gguf_reader r;
    qs_err err = {0};
    qs_status st = QS_OK;
    float *buf = NULL;
    memset(&r, 0, sizeof(r));
    if (argc != 3) {
        fprintf(stderr, "usage: gguf_dequant FILE.gguf OUT_DIR\n");
        return 2;
    }
    st = qs_gguf_reader_open(&r, argv[1], &err);
    for (int64_t i = 0; i < r.ntensors && st == QS_OK; ++i) {
        const qs_gguf_rtensor *t = &r.t[i];
        const int64_t cols = t->shape[t->ndim - 1], n = t->rows * cols;
        char path[4400];
        buf = malloc(sizeof(float) * (size_t)n); // (rows, cols)
        if (!buf) {
            st = QS_FAIL(&err, QS_ERR_RUNTIME, "out of memory (%s)", t->name);
            break;
        }
        st = qs_gguf_reader_f32(&r, i, buf, n, &err);
        snprintf(path, sizeof(path), "%s/%s.f32", argv[2], t->name);
        FILE *f = st == QS_OK ? fopen(path, "wb") : NULL;
        if (st == QS_OK && (!f || fwrite(buf, sizeof(float), (size_t)n, f) != (size_t)n))
            st = QS_FAIL(&err, QS_ERR_RUNTIME, "%s: cannot write", path);
        if (f && fclose(f) != 0 && st == QS_OK)
            st = QS_FAIL(&err, QS_ERR_RUNTIME, "%s: cannot write", path);
        if (st == QS_OK)
            printf("%s %s %lld %lld\n", t->name, qs_gguf_type_name(t->type), (long long)t->rows,
                   (long long)cols);
        free(buf);
        buf = NULL;
    }
    qs_gguf_reader_close(&r);
    if (st != QS_OK) {
        fprintf(stderr, "qshard: error: %s\n", err.msg);
        return st == QS_ERR_INPUT ? 2 : 1;
    }
    return 0;
}
