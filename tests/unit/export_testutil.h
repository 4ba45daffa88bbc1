/* export_testutil.h: helpers shared by the exporter tests (test_gptq_export.c,
 * test_ct_export.c): a deterministic generator (check.h's xorshift32), temporary directories, a
 * source model directory with side files, and random RTN-quantized linears. Header-only
 * (static functions): each test is one translation unit. */
#ifndef QS_EXPORT_TESTUTIL_H
#define QS_EXPORT_TESTUTIL_H

#include <dirent.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "export_items.h"
#include "quant.h"

static uint32_t g_rng = 2024u;
static inline uint32_t rnd(void) { return qs_test_xorshift32(&g_rng); }
static inline float rndf(void) { return (float)(rnd() >> 8) / 16777216.0f * 2.0f - 1.0f; }

/* ---- files ----------------------------------------------------------------------------- */

/* Number of entries of dir (without . and ..); `needle` (may be NULL) counts names
 * containing it into *with. */
static inline int count_entries(const char *dir, const char *needle, int *with) {
    DIR *d = opendir(dir);
    int n = 0;
    if (with) *with = 0;
    if (!d) return -1;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        n++;
        if (needle && with && strstr(e->d_name, needle)) (*with)++;
    }
    closedir(d);
    return n;
}

static inline void make_base(char *base, size_t cap) {
    snprintf(base, cap, "/tmp/qs_export_XXXXXX");
    if (!mkdtemp(base)) {
        perror("mkdtemp");
        exit(1);
    }
}

static const char *k_copied[] = {"tokenizer.json", "tokenizer_config.json",
                                 "generation_config.json", "special_tokens_map.json",
                                 "tokenizer.model"};
static const char *k_not_copied[] = {"notes.txt", "model.safetensors", "pytorch_model.bin",
                                     "model.safetensors.index.json"};

/* A source model directory: config.json, tokenizer files, and files not to copy. */
static inline void make_src(const char *src) {
    char p[512];
    mkdir(src, 0755);
    const char *cfg = "{\"architectures\": [\"LlamaForCausalLM\"], \"model_type\": \"llama\", "
                      "\"hidden_size\": 64, \"rms_norm_eps\": 1e-05, \"torch_dtype\": "
                      "\"bfloat16\", \"quantization_config\": {\"stale\": true}}";
    snprintf(p, sizeof(p), "%s/config.json", src);
    qs_test_write_file(p, cfg, strlen(cfg));
    for (size_t i = 0; i < sizeof(k_copied) / sizeof(k_copied[0]); ++i) {
        char body[128];
        snprintf(body, sizeof(body), "{\"file\": \"%s\", \"x\": %u}\n", k_copied[i], rnd());
        snprintf(p, sizeof(p), "%s/%s", src, k_copied[i]);
        qs_test_write_file(p, body, strlen(body));
    }
    for (size_t i = 0; i < sizeof(k_not_copied) / sizeof(k_not_copied[0]); ++i) {
        snprintf(p, sizeof(p), "%s/%s", src, k_not_copied[i]);
        qs_test_write_file(p, "junk", 4);
    }
}

/* ---- a quantized linear ---------------------------------------------------------------- */

typedef struct tlin {
    int64_t d_out, d_in, G;
    uint8_t *codes;   /* (d_out, d_in) */
    uint16_t *scales; /* (d_out, G) */
    int32_t *zeros;   /* (d_out, G) */
    int32_t *g_idx;   /* (d_in,) */
    float *wq;        /* (d_out, d_in) qshard's dequant */
} tlin;

static inline void tlin_free(tlin *t) {
    free(t->codes);
    free(t->scales);
    free(t->zeros);
    free(t->g_idx);
    free(t->wq);
    memset(t, 0, sizeof(*t));
}

/* RTN-quantizes a random (d_out, d_in) weight. Every 5th row is all positive (an asymmetric
 * zero point of 0, or 1 with zero_min1). desc_act: the columns are quantized in a random
 * order and g_idx[perm[k]] = k / group (the act-order layout). */
static inline void make_linear(int64_t d_out, int64_t d_in, const qs_gptq_scheme *s, int zero_min1,
                        tlin *t) {
    qs_quant_params p;
    qs_quant_params_default(&p);
    p.bits = s->bits;
    p.group_size = s->group_size;
    p.sym = s->sym;
    p.zero_min1 = zero_min1;
    memset(t, 0, sizeof(*t));
    t->d_out = d_out;
    t->d_in = d_in;
    t->G = qs_quant_ngroups(d_in, s->group_size);
    float *W = malloc((size_t)(d_out * d_in) * sizeof(float));  /* (d_out, d_in) */
    float *Wp = malloc((size_t)(d_out * d_in) * sizeof(float)); /* (d_out, d_in) permuted */
    uint8_t *cp = malloc((size_t)(d_out * d_in));               /* (d_out, d_in) permuted */
    int32_t *perm = malloc((size_t)d_in * sizeof(int32_t));     /* (d_in,) */
    t->codes = malloc((size_t)(d_out * d_in));
    t->scales = malloc((size_t)(d_out * t->G) * sizeof(uint16_t));
    t->zeros = malloc((size_t)(d_out * t->G) * sizeof(int32_t));
    t->g_idx = malloc((size_t)d_in * sizeof(int32_t));
    t->wq = malloc((size_t)(d_out * d_in) * sizeof(float));
    for (int64_t r = 0; r < d_out; ++r)
        for (int64_t j = 0; j < d_in; ++j)
            W[r * d_in + j] = r % 5 == 0 ? 0.25f + 0.5f * (rndf() + 1.0f) : rndf();
    for (int64_t j = 0; j < d_in; ++j) perm[j] = (int32_t)j;
    if (s->desc_act)
        for (int64_t j = d_in - 1; j > 0; --j) {
            int64_t k = (int64_t)(rnd() % (uint32_t)(j + 1));
            int32_t tmp = perm[j];
            perm[j] = perm[k];
            perm[k] = tmp;
        }
    for (int64_t r = 0; r < d_out; ++r)
        for (int64_t k = 0; k < d_in; ++k) Wp[r * d_in + k] = W[r * d_in + perm[k]];
    qs_quant_out o = {cp, t->scales, t->zeros, NULL, NULL};
    qs_err e = {0};
    CHECK(qs_rtn_quantize_rows(&p, Wp, d_out, d_in, &o, &e) == QS_OK, "rtn: %s", e.msg);
    for (int64_t r = 0; r < d_out; ++r)
        for (int64_t k = 0; k < d_in; ++k) t->codes[r * d_in + perm[k]] = cp[r * d_in + k];
    for (int64_t k = 0; k < d_in; ++k)
        t->g_idx[perm[k]] = s->group_size < 1 ? 0 : (int32_t)(k / s->group_size);
    qs_quant_dequant_rows(t->codes, t->scales, t->zeros, t->g_idx, d_out, d_in, t->G, t->wq);
    free(W);
    free(Wp);
    free(cp);
    free(perm);
}

#endif /* QS_EXPORT_TESTUTIL_H */
