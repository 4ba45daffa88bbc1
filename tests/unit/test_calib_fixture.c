/* test_calib_fixture.c: the weight loader on the real fixture (../shared/fixtures/tinyllama-a,
 * bf16 weights, fp32 compute): qs_model_open + qs_weights_load_layer/_ends + qs_model_forward
 * on the first 256 tokens of tokens/eval.u32 give logits within 2e-3 max abs of transformers'
 * logits_eval_window0.f32 (256 x 512). Also checks that a wrong shape or missing tensor is a
 * QS_ERR_INPUT naming the tensor.
 * Usage: test_calib_fixture SHARED_DIR [MODEL_DIR]. Skips (77) without it unless
 * QS_REQUIRE_SHARED=1. MODEL_DIR (default SHARED_DIR/fixtures/tinyllama-a) is any model of the
 * fixture's dimensions (vocab 512, untied lm_head) with its own logits_eval_window0.f32, e.g. the
 * deep model of tests/data/make_deep_model.py (tests/study/deep_check.py runs it so). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "hf_model.h"
#include "layer.h"
#include "weights.h"

static int read_all(const char *path, void *buf, size_t n) {
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    size_t got = fread(buf, 1, n, f);
    fclose(f);
    return got == n ? 0 : -1;
}

int main(int argc, char **argv) {
    const char *shared = argc > 1 ? argv[1] : "";
    char dir[4096], path[4200], missing[128]; // path: dir + a file name
    if (argc > 2)
        snprintf(dir, sizeof(dir), "%s", argv[2]);
    else
        snprintf(dir, sizeof(dir), "%s/fixtures/tinyllama-a", shared);
    int need = qs_test_need_dir(dir);
    if (need != 0) return need;
    qs_err err = {0};
    qs_model m;
    qs_model_dims d;
    qs_model_workspace ws;
    qs_ends_f32 ends;
    memset(&m, 0, sizeof(m));
    memset(&ws, 0, sizeof(ws));
    memset(&ends, 0, sizeof(ends));
    enum { T = 256, V = 512 };
    uint32_t *tok = malloc(sizeof(uint32_t) * T);       // (T)
    float *ref = malloc(sizeof(float) * T * V);         // (T, V)
    float *logits = malloc(sizeof(float) * T * V);      // (T, V)
    qs_layer_f32 *lw = NULL;
    qs_layer_weights *lws = NULL;
    if (qs_model_open(&m, dir, &err) != QS_OK) {
        fprintf(stderr, "FAIL: open: %s\n", err.msg);
        return 1;
    }
    qs_model_dims_from_hf(&d, &m.hf);
    if (d.vocab != V) {
        fprintf(stderr, "FAIL: %s: vocab %lld, this test needs %d\n", dir, (long long)d.vocab, V);
        return 1;
    }
    lw = calloc((size_t)d.nlayers, sizeof(*lw));
    lws = calloc((size_t)d.nlayers, sizeof(*lws));
    for (int64_t l = 0; l < d.nlayers; ++l) {
        if (qs_weights_load_layer(&m, &d, (int)l, &lw[l], &err) != QS_OK) {
            fprintf(stderr, "FAIL: layer %lld: %s\n", (long long)l, err.msg);
            return 1;
        }
        lws[l] = lw[l].w;
    }
    if (qs_weights_load_ends(&m, &d, 1, 1, &ends, &err) != QS_OK) {
        fprintf(stderr, "FAIL: ends: %s\n", err.msg);
        return 1;
    }
    CHECK(ends.lm_head != ends.embed, "fixture has an untied lm_head");
    snprintf(path, sizeof(path), "%s/fixtures/tokens/eval.u32", shared);
    if (read_all(path, tok, sizeof(uint32_t) * T) != 0) return 1;
    snprintf(path, sizeof(path), "%s/logits_eval_window0.f32", dir);
    if (read_all(path, ref, sizeof(float) * T * V) != 0) return 1;
    qs_model_weights w = {ends.embed, lws, ends.final_norm, ends.lm_head};
    if (qs_model_workspace_init(&ws, &d, 1, T, &err) != QS_OK ||
        qs_model_forward(&w, &d, tok, 1, T, &ws, logits, NULL, &err) != QS_OK) {
        fprintf(stderr, "FAIL: forward: %s\n", err.msg);
        return 1;
    }
    double maxerr = qs_test_max_abs_diff(logits, ref, (int64_t)T * V); /* NaN propagates */
    printf("logits window 0: max abs error %.3g (tolerance 2e-3)\n", maxerr);
    CHECK(maxerr <= 2e-3, "logits max abs error %g > 2e-3", maxerr);
    /* a layer that does not exist is an input error naming the tensor */
    qs_layer_f32 bad;
    qs_err e2 = {0};
    snprintf(missing, sizeof(missing), "model.layers.%lld.input_layernorm.weight",
             (long long)d.nlayers);
    CHECK(qs_weights_load_layer(&m, &d, (int)d.nlayers, &bad, &e2) == QS_ERR_INPUT &&
              strstr(e2.msg, missing),
          "missing layer: '%s'", e2.msg);
    /* wrong shape from a config that disagrees with the checkpoint */
    qs_model_dims d2 = d;
    d2.inter = d.inter + 1;
    qs_err e3 = {0};
    CHECK(qs_weights_load_layer(&m, &d2, 0, &bad, &e3) == QS_ERR_INPUT &&
              strstr(e3.msg, "mlp.gate_proj.weight"),
          "wrong shape: '%s'", e3.msg);
    for (int64_t l = 0; l < d.nlayers; ++l) qs_layer_f32_free(&lw[l]);
    free(lw);
    free(lws);
    qs_ends_f32_free(&ends);
    qs_model_workspace_free(&ws);
    qs_model_close(&m);
    free(tok);
    free(ref);
    free(logits);
    return qs_test_finish("test_calib_fixture");
}
