/* test_model_io.c: synthetic models (determinism, layouts, dtypes, archs) through
 * qs_model_open; the broken-model suite written by tests/data/make_bad_models.py (each must
 * be a one-line QS_ERR_INPUT naming the file and the cause); and the real fixture.
 * Uses only the qs_synth API that `qshard synth-model` uses (options, write, tokens).
 * Usage: test_model_io [--bad CASES_DIR] [--shared SHARED_DIR]
 *   --shared runs only the fixture check and exits 77 when the fixture is absent
 *   (unless QS_REQUIRE_SHARED=1). */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "check.h"
#include "half.h"
#include "hf_model.h"
#include "synth.h"

/* numpy on the fixture bytes: layer-0 q_proj (bf16 -> f64) sum, sum of squares, ends */
#define QS_FIXTURE_QSUM (-4.540222520008683)
#define QS_FIXTURE_QSUMSQ 216.9313720395301
#define QS_FIXTURE_Q0 (-0.00080108642578125f)
#define QS_FIXTURE_QLAST (-0.01556396484375f)

static char g_tmp[512];

static void sub(char *out, size_t n, const char *name) { snprintf(out, n, "%s/%s", g_tmp, name); }

static int contains_ci(const char *hay, const char *needle) {
    size_t n = strlen(needle);
    for (const char *p = hay; *p; ++p) {
        size_t i = 0;
        while (i < n && p[i] && tolower((unsigned char)p[i]) == tolower((unsigned char)needle[i]))
            ++i;
        if (i == n) return 1;
    }
    return n == 0;
}

/* The config synth-model documents for `o` (defaults resolved), for comparison. */
static void expected_config(const qs_synth_opts *o, qs_hf_config *c) {
    memset(c, 0, sizeof(*c));
    c->hidden_size = o->hidden;
    c->intermediate_size = o->intermediate ? o->intermediate : (8 * o->hidden + 191) / 192 * 64;
    c->num_attention_heads = o->heads ? o->heads : (o->hidden / 64 > 0 ? o->hidden / 64 : 1);
    c->num_key_value_heads = o->kv_heads ? o->kv_heads : c->num_attention_heads;
    c->head_dim = o->head_dim ? o->head_dim : o->hidden / c->num_attention_heads;
    c->qkv_bias = o->arch == QS_ARCH_QWEN2;
    c->tie_word_embeddings = o->tie_embeddings;
    c->sliding_window = o->arch == QS_ARCH_MISTRAL ? o->sliding_window : 0;
}

/* Writes a model with `o`, opens it and checks structure, counts and value statistics. */
static void check_synth(const qs_synth_opts *o, const char *label) {
    char dir[600];
    sub(dir, sizeof(dir), label);
    qs_err err = {0};
    qs_model m;
    memset(&m, 0, sizeof(m));
    qs_hf_config want;
    expected_config(o, &want);
    qs_status st = qs_synth_write(o, dir, &err);
    CHECK(st == QS_OK, "%s: synth: %s", label, err.msg);
    if (st != QS_OK) return;
    st = qs_model_open(&m, dir, &err);
    CHECK(st == QS_OK, "%s: open: %s", label, err.msg);
    if (st != QS_OK) return;
    const qs_hf_config *h = &m.hf;
    CHECK(h->arch == o->arch, "%s", label);
    CHECK(h->hidden_size == want.hidden_size && h->intermediate_size == want.intermediate_size,
          "%s: sizes", label);
    CHECK(h->num_attention_heads == want.num_attention_heads &&
              h->num_key_value_heads == want.num_key_value_heads && h->head_dim == want.head_dim,
          "%s: heads %lld/%lld/%lld", label, (long long)h->num_attention_heads,
          (long long)h->num_key_value_heads, (long long)h->head_dim);
    CHECK(h->qkv_bias == want.qkv_bias && h->o_bias == want.o_bias, "%s: bias", label);
    CHECK(h->tie_word_embeddings == want.tie_word_embeddings, "%s: tie", label);
    CHECK(h->sliding_window == want.sliding_window, "%s: window %lld", label,
          (long long)h->sliding_window);
    CHECK(m.ckpt.nshards == (int)o->shards, "%s: %d shards", label, m.ckpt.nshards);
    CHECK(m.n_unused == 0, "%s: %lld unused", label, (long long)m.n_unused);
    int64_t pc = qs_model_param_count(&m);
    CHECK(pc == qs_hf_config_param_count(h), "%s: params %lld vs %lld", label, (long long)pc,
          (long long)qs_hf_config_param_count(h));
    int64_t total = 0;
    for (int64_t i = 0; i < m.ckpt.nentries; ++i)
        total += qs_st_numel(qs_ckpt_find(&m.ckpt, m.ckpt.entries[i].name));
    CHECK(total == pc, "%s: header total %lld vs %lld", label, (long long)total, (long long)pc);

    /* every linear: std close to 1/sqrt(d_in) (outlier columns x4 raise it a little) */
    for (int k = 0; k < QS_LIN_COUNT; ++k) {
        int64_t d_out = 0, d_in = 0;
        qs_linear_dims(h, (qs_linear_kind)k, &d_out, &d_in);
        float *w = malloc((size_t)(d_out * d_in) * sizeof(float)); /* (d_out, d_in) */
        float *r = malloc((size_t)(2 * d_in) * sizeof(float));     /* (2, d_in) */
        st = qs_model_read_linear(&m, h->num_hidden_layers - 1, (qs_linear_kind)k, w, &err);
        CHECK(st == QS_OK, "%s: read: %s", label, err.msg);
        double ss = 0;
        for (int64_t i = 0; i < d_out * d_in; ++i) ss += (double)w[i] * w[i];
        double ratio = sqrt(ss / (double)(d_out * d_in)) * sqrt((double)d_in);
        CHECK(ratio > 0.8 && ratio < 2.5, "%s: %s std ratio %g", label,
              qs_linear_name((qs_linear_kind)k), ratio);
        if (d_out >= 3) {
            st = qs_model_read_linear_rows(&m, 0, (qs_linear_kind)k, 1, 2, r, &err);
            float *w0 = malloc((size_t)(d_out * d_in) * sizeof(float));
            st = st == QS_OK ? qs_model_read_linear(&m, 0, (qs_linear_kind)k, w0, &err) : st;
            CHECK(st == QS_OK && memcmp(r, w0 + d_in, (size_t)(2 * d_in) * sizeof(float)) == 0,
                  "%s: rows", label);
            free(w0);
        }
        if (qs_linear_has_bias(h, (qs_linear_kind)k)) {
            CHECK(qs_model_read_bias(&m, 0, (qs_linear_kind)k, r, &err) == QS_OK, "%s: bias %s",
                  label, err.msg);
        }
        free(w);
        free(r);
    }
    float *g = malloc((size_t)h->hidden_size * sizeof(float)); /* (hidden,) */
    CHECK(qs_model_read_norm(&m, 0, QS_NORM_POST_ATTN, g, &err) == QS_OK, "%s", err.msg);
    double mean = 0;
    for (int64_t i = 0; i < h->hidden_size; ++i) mean += g[i];
    mean /= (double)h->hidden_size;
    CHECK(mean > 0.8 && mean < 1.5, "%s: norm mean %g", label, mean);
    free(g);
    float *e = malloc((size_t)(3 * h->hidden_size) * sizeof(float)); /* (3, hidden) */
    CHECK(qs_model_read_rows(&m, qs_model_lm_head_name(&m), h->vocab_size - 3, 3, e, &err) ==
              QS_OK,
          "%s: %s", label, err.msg);
    free(e);
    qs_model_close(&m);
}

static void test_synth_models(void) {
    qs_synth_opts o;
    qs_synth_opts_default(&o);
    o.layers = 2, o.hidden = 64, o.heads = 4, o.kv_heads = 2, o.vocab = 96, o.seed = 7;
    check_synth(&o, "llama_bf16");
    o.dtype = QS_DTYPE_F16, o.shards = 3;
    check_synth(&o, "llama_f16_3shards");
    o.dtype = QS_DTYPE_F32, o.shards = 1, o.tie_embeddings = 1, o.head_dim = 32;
    check_synth(&o, "llama_f32_tied_hd32");
    qs_synth_opts_default(&o);
    o.arch = QS_ARCH_MISTRAL, o.layers = 1, o.hidden = 128, o.kv_heads = 1, o.vocab = 64;
    o.sliding_window = 16;
    check_synth(&o, "mistral_window");
    qs_synth_opts_default(&o);
    o.arch = QS_ARCH_QWEN2, o.layers = 2, o.hidden = 64, o.heads = 2, o.vocab = 64, o.shards = 2;
    o.intermediate = 96;
    check_synth(&o, "qwen2_2shards");

    /* inconsistent options are input errors */
    qs_err err = {0};
    char dir[600];
    sub(dir, sizeof(dir), "inconsistent");
    qs_synth_opts_default(&o);
    o.hidden = 64, o.heads = 3;
    CHECK(qs_synth_write(&o, dir, &err) == QS_ERR_INPUT, "hidden %% heads");
    qs_err_clear(&err);
    o.heads = 4, o.kv_heads = 3;
    CHECK(qs_synth_write(&o, dir, &err) == QS_ERR_INPUT, "heads %% kv");
}

/* Equal options -> equal bytes; seeds matter; f32 and bf16 carry the same values; shard
 * count does not change values; a re-write in the other layout removes the stale file. */
static void test_synth_determinism(void) {
    qs_synth_opts o;
    qs_err err = {0};
    char a[600], b[600], pa[700], pb[700];
    qs_synth_opts_default(&o);
    o.layers = 2, o.hidden = 64, o.heads = 2, o.vocab = 64, o.seed = 11, o.shards = 2;
    sub(a, sizeof(a), "det_a");
    sub(b, sizeof(b), "det_b");
    CHECK(qs_synth_write(&o, a, &err) == QS_OK, "%s", err.msg);
    CHECK(qs_synth_write(&o, b, &err) == QS_OK, "%s", err.msg);
    CHECK(qs_synth_write_tokens(&o, a, 1000, &err) == QS_OK, "%s", err.msg);
    CHECK(qs_synth_write_tokens(&o, b, 1000, &err) == QS_OK, "%s", err.msg);
    const char *files[] = {"config.json", "model.safetensors.index.json",
                           "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors",
                           "tokens.u32"};
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); ++i) {
        snprintf(pa, sizeof(pa), "%s/%s", a, files[i]);
        snprintf(pb, sizeof(pb), "%s/%s", b, files[i]);
        CHECK(qs_test_files_equal(pa, pb), "%s differs between equal runs", files[i]);
    }
    /* tokens in range */
    {
        snprintf(pa, sizeof(pa), "%s/tokens.u32", a);
        FILE *f = fopen(pa, "rb");
        unsigned char buf[4000];
        size_t n = f ? fread(buf, 1, sizeof(buf), f) : 0;
        if (f) fclose(f);
        CHECK(n == 4000, "tokens size %zu", n);
        int ok = 1;
        for (size_t i = 0; i + 3 < n; i += 4) {
            uint32_t id = (uint32_t)buf[i] | (uint32_t)buf[i + 1] << 8 |
                          (uint32_t)buf[i + 2] << 16 | (uint32_t)buf[i + 3] << 24;
            if (id >= 64) ok = 0;
        }
        CHECK(ok, "token ids");
    }
    /* another seed changes the weights */
    o.seed = 12;
    CHECK(qs_synth_write(&o, b, &err) == QS_OK, "%s", err.msg);
    snprintf(pa, sizeof(pa), "%s/model-00002-of-00002.safetensors", a);
    snprintf(pb, sizeof(pb), "%s/model-00002-of-00002.safetensors", b);
    CHECK(!qs_test_files_equal(pa, pb), "seed has no effect");

    /* f32 single file vs bf16 sharded, same seed: bf16 = round(f32) elementwise; the
     * single file written over the sharded one is what a reader now opens */
    o.seed = 11, o.shards = 1, o.dtype = QS_DTYPE_F32;
    CHECK(qs_synth_write(&o, b, &err) == QS_OK, "%s", err.msg);
    qs_model ma, mb;
    memset(&ma, 0, sizeof(ma));
    memset(&mb, 0, sizeof(mb));
    CHECK(qs_model_open(&ma, a, &err) == QS_OK, "%s", err.msg);
    CHECK(qs_model_open(&mb, b, &err) == QS_OK, "%s", err.msg);
    if (err.code == QS_OK) {
        CHECK(mb.ckpt.nshards == 1, "single file after rewrite");
        int64_t d_out = 0, d_in = 0;
        qs_linear_dims(&ma.hf, QS_LIN_DOWN, &d_out, &d_in);
        size_t n = (size_t)(d_out * d_in);
        float *wa = malloc(n * sizeof(float)), *wb = malloc(n * sizeof(float)); /* (d_out, d_in) */
        CHECK(qs_model_read_linear(&ma, 1, QS_LIN_DOWN, wa, &err) == QS_OK, "%s", err.msg);
        CHECK(qs_model_read_linear(&mb, 1, QS_LIN_DOWN, wb, &err) == QS_OK, "%s", err.msg);
        size_t bad = 0;
        for (size_t i = 0; i < n; ++i)
            if (qs_f32_bits(wa[i]) != qs_f32_bits(qs_bf16_to_f32(qs_f32_to_bf16(wb[i])))) ++bad;
        CHECK(bad == 0, "%zu bf16 values differ from round(f32)", bad);
        free(wa);
        free(wb);
    }
    qs_model_close(&ma);
    qs_model_close(&mb);
}

/* Every case of make_bad_models.py: QS_ERR_INPUT naming the file and the cause. */
static void test_bad_cases(const char *dir) {
    char path[1024];
    snprintf(path, sizeof(path), "%s/cases.json", dir);
    FILE *f = fopen(path, "rb");
    CHECK(f != NULL, "cannot open %s (run io_make_bad_models first)", path);
    if (!f) return;
    char *text = malloc(1 << 20);
    size_t n = fread(text, 1, (1 << 20) - 1, f);
    fclose(f);
    text[n] = '\0';
    cJSON *cases = cJSON_Parse(text);
    free(text);
    CHECK(cJSON_IsArray(cases) && cJSON_GetArraySize(cases) >= 22, "cases.json: %d cases",
          cJSON_GetArraySize(cases));
    int count = 0;
    for (const cJSON *c = cases ? cases->child : NULL; c; c = c->next) {
        const char *name = cJSON_GetObjectItem(c, "name")->valuestring;
        const char *d = cJSON_GetObjectItem(c, "dir")->valuestring;
        const char *ef = cJSON_GetObjectItem(c, "expect_file")->valuestring;
        const char *es = cJSON_GetObjectItem(c, "expect_substr")->valuestring;
        char mdir[1024];
        if (d[0] == '/') snprintf(mdir, sizeof(mdir), "%s", d);
        else snprintf(mdir, sizeof(mdir), "%s/%s", dir, d);
        qs_err err = {0};
        qs_model m;
        qs_status st = qs_model_open(&m, mdir, &err);
        CHECK(st == QS_ERR_INPUT, "%s: status %d (%s)", name, (int)st, err.msg);
        CHECK(strstr(err.msg, ef) != NULL, "%s: message lacks file '%s': %s", name, ef, err.msg);
        CHECK(contains_ci(err.msg, es), "%s: message lacks '%s': %s", name, es, err.msg);
        CHECK(strchr(err.msg, '\n') == NULL, "%s: multi-line message", name);
        CHECK(m.dir == NULL && m.ckpt.shards == NULL, "%s: model not closed on failure", name);
        qs_model_close(&m);
        if (getenv("QS_VERBOSE")) printf("%-32s %s\n", name, err.msg);
        ++count;
    }
    printf("bad models: %d cases checked\n", count);
    cJSON_Delete(cases);
}

/* The real fixture: architecture, sizes, parameter count and exact values. */
static int test_shared(const char *shared) {
    char dir[1024];
    snprintf(dir, sizeof(dir), "%s/fixtures/tinyllama-a", shared);
    int need = qs_test_need_dir(dir);
    if (need != 0) return need;
    qs_err err = {0};
    qs_model m;
    qs_status st = qs_model_open(&m, dir, &err);
    CHECK(st == QS_OK, "open fixture: %s", err.msg);
    if (st != QS_OK) return 1;
    const qs_hf_config *h = &m.hf;
    CHECK(strcmp(h->architecture, "LlamaForCausalLM") == 0 && h->arch == QS_ARCH_LLAMA, "arch");
    CHECK(h->num_hidden_layers == 4 && h->hidden_size == 256 && h->intermediate_size == 768,
          "dims");
    CHECK(h->num_attention_heads == 4 && h->num_key_value_heads == 2 && h->head_dim == 64,
          "heads");
    CHECK(h->vocab_size == 512 && !h->tie_word_embeddings && h->rms_norm_eps == 1e-5, "vocab");
    CHECK(h->rope.type == QS_ROPE_DEFAULT && h->rope.theta == 10000.0, "rope");
    CHECK(strcmp(h->torch_dtype, "bfloat16") == 0, "dtype '%s'", h->torch_dtype);
    CHECK(qs_model_param_count(&m) == 3410176, "params %lld",
          (long long)qs_model_param_count(&m));
    CHECK(qs_hf_config_param_count(h) == 3410176, "config params");
    CHECK(m.ckpt.nshards == 1 && m.ckpt.nentries == 39 && m.n_unused == 0, "tensors");
    /* exact values checked against numpy on the same bytes (see reference below) */
    float *w = malloc(256 * 256 * sizeof(float)); /* (256, 256) q_proj of layer 0 */
    CHECK(qs_model_read_linear(&m, 0, QS_LIN_Q, w, &err) == QS_OK, "%s", err.msg);
    double s = 0, s2 = 0;
    for (int i = 0; i < 256 * 256; ++i) s += w[i], s2 += (double)w[i] * w[i];
    printf("fixture q_proj[0]: sum %.9g sumsq %.9g w[0] %.9g w[last] %.9g\n", s, s2, w[0],
           w[256 * 256 - 1]);
    CHECK(fabs(s - QS_FIXTURE_QSUM) < 1e-6 && fabs(s2 - QS_FIXTURE_QSUMSQ) < 1e-6,
          "q_proj sums %.12g %.12g", s, s2);
    CHECK(w[0] == QS_FIXTURE_Q0 && w[256 * 256 - 1] == QS_FIXTURE_QLAST, "q_proj ends");
    free(w);
    qs_model_close(&m);
    return qs_test_finish("test_model_io --shared");
}

int main(int argc, char **argv) {
    const char *bad = NULL, *shared = NULL;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--bad") == 0) bad = argv[i + 1];
        else if (strcmp(argv[i], "--shared") == 0) shared = argv[i + 1];
    }
    if (shared) return test_shared(shared);
    qs_test_tmpdir(g_tmp, sizeof(g_tmp), "model_io");
    test_synth_models();
    test_synth_determinism();
    if (bad) test_bad_cases(bad);
    qs_test_rm_rf(g_tmp);
    return qs_test_finish("test_model_io");
}
