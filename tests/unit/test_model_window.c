/* test_model_window.c: per-layer attention windows against transformers. For every model of
 * tests/data/window/ (tiny random Mistral / Qwen2 checkpoints made by
 * tests/data/make_window_models.py, bf16, windows shorter than the sequence):
 *   - the layer windows qs_model_dims_from_hf builds from config.json equal the windows
 *     transformers applied (expect.json, measured from its attention probabilities);
 *   - qs_model_open + qs_weights_load_layer/_ends + qs_model_forward on tokens.u32 (as a
 *     chunk of two copies of the sequence) give logits within TOL_ABS of transformers'
 *     fp32 logits.f32 in both copies.
 * Usage: test_model_window DATA_DIR (tests/data/window). Missing data is a failure. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "check.h"
#include "hf_model.h"
#include "layer.h"
#include "weights.h"

/* Both sides compute in fp32 from the same bf16 weights; they differ only in summation
 * order (OpenBLAS sgemm vs torch's matmul, double-accumulated RMSNorm mean). Measured:
 * max abs error <= 5e-6 with |logit| <= 17 (docs/model.md). A window one token off, or
 * a layer with the wrong type, moves the logits by > 1e-2 on every case. */
#define TOL_ABS 1e-4


/* The whole file `dir/name` into a new buffer of exactly n bytes, or NULL. Caller frees. */
static void *read_exact(const char *dir, const char *name, size_t n) {
    char path[4200];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *buf = malloc(n + 1);
    size_t got = buf ? fread(buf, 1, n + 1, f) : 0;
    fclose(f);
    if (got != n) {
        free(buf);
        return NULL;
    }
    return buf;
}

/* Max abs difference of both copies of the chunk's logits (2 * T, V) from ref (T, V). */
static double max_err(const float *logits, const float *ref, int T, int64_t V) {
    double m = 0.0;
    for (int s = 0; s < 2; ++s)
        for (int64_t i = 0; i < (int64_t)T * V; ++i) {
            double e = fabs((double)logits[s * T * V + i] - (double)ref[i]);
            if (!(e <= m)) m = e; /* NaN propagates */
        }
    return m;
}

static char *read_text(const char *dir, const char *name) {
    char path[4200];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *buf = calloc(1, 1 << 16);
    size_t got = buf ? fread(buf, 1, (1 << 16) - 1, f) : 0;
    fclose(f);
    if (buf) buf[got] = '\0';
    return buf;
}

static void run_case(const char *data, const char *name) {
    char dir[4096];
    if (snprintf(dir, sizeof(dir), "%s/%s", data, name) >= (int)sizeof(dir)) {
        CHECK(0, "%s: path too long", data);
        return;
    }
    qs_err err = {0};
    qs_model m;
    qs_model_dims d;
    qs_model_workspace ws;
    qs_ends_f32 ends;
    memset(&m, 0, sizeof(m));
    memset(&ws, 0, sizeof(ws));
    memset(&ends, 0, sizeof(ends));
    qs_layer_f32 *lw = NULL;
    qs_layer_weights *lws = NULL;
    uint32_t *tok = NULL;  // (2, T)
    float *ref = NULL;     // (T, V)
    float *logits = NULL;  // (2 * T, V)
    cJSON *ex = NULL;
    char *text = read_text(dir, "expect.json");
    ex = text ? cJSON_Parse(text) : NULL;
    free(text);
    CHECK(ex != NULL, "%s: no readable expect.json", dir);
    if (!ex) return;
    const cJSON *jT = cJSON_GetObjectItemCaseSensitive(ex, "seqlen");
    const cJSON *jV = cJSON_GetObjectItemCaseSensitive(ex, "vocab");
    const cJSON *jw = cJSON_GetObjectItemCaseSensitive(ex, "layer_windows");
    CHECK(cJSON_IsNumber(jT) && cJSON_IsNumber(jV) && cJSON_IsArray(jw), "%s: expect.json keys",
          name);
    if (!cJSON_IsNumber(jT) || !cJSON_IsNumber(jV) || !cJSON_IsArray(jw)) goto done;
    const int T = jT->valueint;
    const int64_t V = jV->valueint;

    if (qs_model_open(&m, dir, &err) != QS_OK) {
        CHECK(0, "%s: open: %s", name, err.msg);
        goto done;
    }
    qs_model_dims_from_hf(&d, &m.hf);
    CHECK(d.vocab == V && cJSON_GetArraySize(jw) == (int)d.nlayers, "%s: vocab/layers", name);
    if (d.vocab != V || cJSON_GetArraySize(jw) != (int)d.nlayers) goto done;
    char got[128] = "", want[128] = "";
    for (int64_t l = 0; l < d.nlayers; ++l) {
        size_t n = strlen(got), k = strlen(want);
        snprintf(got + n, sizeof(got) - n, " %lld", (long long)d.layer_window[l]);
        snprintf(want + k, sizeof(want) - k, " %d", cJSON_GetArrayItem(jw, (int)l)->valueint);
    }
    CHECK(strcmp(got, want) == 0, "%s: layer windows [%s ] != transformers' [%s ]", name, got,
          want);

    const size_t nl = d.nlayers > 0 ? (size_t)d.nlayers : 1;
    lw = calloc(nl, sizeof(*lw));
    lws = calloc(nl, sizeof(*lws));
    for (int64_t l = 0; l < d.nlayers; ++l) {
        if (qs_weights_load_layer(&m, &d, (int)l, &lw[l], &err) != QS_OK) {
            CHECK(0, "%s: layer %lld: %s", name, (long long)l, err.msg);
            goto done;
        }
        lws[l] = lw[l].w;
    }
    if (qs_weights_load_ends(&m, &d, 1, 1, &ends, &err) != QS_OK) {
        CHECK(0, "%s: ends: %s", name, err.msg);
        goto done;
    }
    tok = malloc(sizeof(uint32_t) * 2 * (size_t)T);
    uint32_t *t1 = read_exact(dir, "tokens.u32", sizeof(uint32_t) * (size_t)T);
    ref = read_exact(dir, "logits.f32", sizeof(float) * (size_t)T * (size_t)V);
    CHECK(t1 && ref, "%s: tokens.u32 / logits.f32 missing or of the wrong size", name);
    if (!t1 || !ref) {
        free(t1);
        goto done;
    }
    memcpy(tok, t1, sizeof(uint32_t) * (size_t)T);
    memcpy(tok + T, t1, sizeof(uint32_t) * (size_t)T);
    free(t1);
    logits = malloc(sizeof(float) * 2 * (size_t)T * (size_t)V);
    qs_model_weights w = {ends.embed, lws, ends.final_norm, ends.lm_head};
    if (qs_model_workspace_init(&ws, &d, 2, T, &err) != QS_OK ||
        qs_model_forward(&w, &d, tok, 2, T, &ws, logits, NULL, &err) != QS_OK) {
        CHECK(0, "%s: forward: %s", name, err.msg);
        goto done;
    }
    double maxref = 0.0;
    for (int64_t i = 0; i < (int64_t)T * V; ++i)
        if (fabs((double)ref[i]) > maxref) maxref = fabs((double)ref[i]);
    double maxerr = max_err(logits, ref, T, V);
    printf("%-12s windows [%s ]  logits max abs error %.3g (max |logit| %.3g, tolerance %.0e)\n",
           name, got, maxerr, maxref, TOL_ABS);
    CHECK(maxerr <= TOL_ABS, "%s: logits max abs error %.3g > %g", name, maxerr, TOL_ABS);

    /* The data can catch a wrong window: every one-token shift of the sliding layers'
     * window and every single layer of the other type moves the logits by > 10 x TOL_ABS.
     * (A full layer turned sliding gets the config's window, or 3 for qwen2_off, whose
     * config.json writes sliding_window 3 that transformers ignores.) */
    const int64_t flip = m.hf.sliding_window > 0 ? m.hf.sliding_window : 3;
    double least = HUGE_VAL;
    for (int64_t p = -2; p < d.nlayers; ++p) { /* -2: all W - 1, -1: all W + 1, l: flip l */
        qs_model_dims dp = d;
        int changed = 0;
        for (int64_t l = 0; l < d.nlayers; ++l) {
            int64_t wl = d.layer_window[l];
            if (p == -2 && wl > 1) dp.layer_window[l] = wl - 1;
            if (p == -1 && wl > 0) dp.layer_window[l] = wl + 1;
            if (p == l) dp.layer_window[l] = wl > 0 ? 0 : flip;
            changed |= dp.layer_window[l] != wl;
        }
        if (!changed) continue;
        if (qs_model_forward(&w, &dp, tok, 2, T, &ws, logits, NULL, &err) != QS_OK) {
            CHECK(0, "%s: perturbed forward: %s", name, err.msg);
            goto done;
        }
        double e = max_err(logits, ref, T, V);
        if (p < 0)
            printf("%-12s   windows %s 1: max abs change %.3g\n", name, p == -2 ? "-" : "+", e);
        else
            printf("%-12s   layer %lld flipped: max abs change %.3g\n", name, (long long)p, e);
        if (e < least) least = e;
    }
    CHECK(least > 10 * TOL_ABS, "%s: a wrong window changes the logits by only %.3g", name,
          least);
done:
    if (lw)
        for (int64_t l = 0; l < d.nlayers; ++l) qs_layer_f32_free(&lw[l]);
    free(lw);
    free(lws);
    qs_ends_f32_free(&ends);
    qs_model_workspace_free(&ws);
    qs_model_close(&m);
    free(tok);
    free(ref);
    free(logits);
    cJSON_Delete(ex);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: test_model_window DATA_DIR\n");
        return 2;
    }
    static const char *const cases[] = {"mistral_w5", "qwen2_mwl", "qwen2_types", "qwen2_off"};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); ++i) run_case(argv[1], cases[i]);
    return qs_test_finish("test_model_window");
}
