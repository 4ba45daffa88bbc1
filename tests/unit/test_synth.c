/* test_synth.c: synthetic models and tokens. For every architecture and dtype, with 1 and 3
 * shards: the files exist, every safetensors header is valid (parsed here independently of
 * the reader), tensor names and shapes match the config, the index agrees with the shards;
 * equal options give identical bytes, a pinned SHA-256 guards cross-machine determinism;
 * value statistics are as documented; errors name the file; tokens have the right size and
 * range. (The f32 -> f16/bf16 encoders the models are written with: test_half.c.) */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "half.h"
#include "synth.h"
#include "sha256.h"

/* SHA-256 of model.safetensors for llama, 1 layer, hidden 64, vocab 32, bf16, seed 7 */
#define QS_SYNTH_PINNED_SHA "cdd60d82eb6b48dcc706283e399e95947c6283da53474ef47b48892dd65979f7"

static cJSON *read_json(const char *path) {
    size_t n;
    unsigned char *p = qs_test_read_file(path, &n);
    if (!p) return NULL;
    cJSON *j = cJSON_Parse((const char *)p);
    free(p);
    return j;
}

static int64_t jint(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNumber(v) ? (int64_t)v->valuedouble : -1;
}

/* Validates one safetensors file like a strict reader would; adds name -> [file, shape...]
 * to `seen` (duplicates across files are a failure). Returns the tensor count or -1. */
static int check_st_file(const char *path, const char *fname, const char *dtype, cJSON *seen) {
    size_t n;
    unsigned char *p = qs_test_read_file(path, &n);
    int count = -1;
    cJSON *h = NULL;
    CHECK(p != NULL, "%s: unreadable", path);
    if (!p) return -1;
    CHECK(n >= 8, "%s: shorter than 8 bytes", path);
    if (n < 8) goto done;
    uint64_t hl = 0;
    for (int b = 0; b < 8; ++b) hl |= (uint64_t)p[b] << (8 * b);
    CHECK(hl + 8 <= n, "%s: header length %llu beyond file", path, (unsigned long long)hl);
    CHECK((hl + 8) % 8 == 0, "%s: data start not 8-aligned", path);
    if (hl + 8 > n) goto done;
    h = cJSON_ParseWithLength((const char *)p + 8, (size_t)hl);
    CHECK(cJSON_IsObject(h), "%s: header is not a JSON object", path);
    if (!cJSON_IsObject(h)) goto done;
    for (uint64_t i = 0; i < hl; ++i) CHECK(p[8 + i] >= 0x20, "%s: control byte in header", path);
    const cJSON *meta = cJSON_GetObjectItemCaseSensitive(h, "__metadata__");
    CHECK(meta && cJSON_IsString(cJSON_GetObjectItemCaseSensitive(meta, "format")),
          "%s: no __metadata__.format", path);
    uint64_t expect_off = 0, data = n - 8 - hl;
    size_t es = strcmp(dtype, "F32") == 0 ? 4 : 2;
    count = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, h) {
        if (strcmp(e->string, "__metadata__") == 0) continue;
        const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
        const cJSON *sh = cJSON_GetObjectItemCaseSensitive(e, "shape");
        const cJSON *of = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
        CHECK(cJSON_IsString(dt) && strcmp(dt->valuestring, dtype) == 0, "%s: %s dtype", path,
              e->string);
        CHECK(cJSON_IsArray(sh) && cJSON_IsArray(of) && cJSON_GetArraySize(of) == 2,
              "%s: %s shape/offsets", path, e->string);
        if (!cJSON_IsArray(sh) || !cJSON_IsArray(of) || cJSON_GetArraySize(of) != 2) continue;
        uint64_t numel = 1;
        cJSON *rec = cJSON_CreateArray();
        cJSON_AddItemToArray(rec, cJSON_CreateString(fname));
        const cJSON *d;
        cJSON_ArrayForEach(d, sh) {
            numel *= (uint64_t)d->valuedouble;
            cJSON_AddItemToArray(rec, cJSON_CreateNumber(d->valuedouble));
        }
        uint64_t b0 = (uint64_t)cJSON_GetArrayItem(of, 0)->valuedouble;
        uint64_t b1 = (uint64_t)cJSON_GetArrayItem(of, 1)->valuedouble;
        CHECK(b0 == expect_off, "%s: %s starts at %llu, want %llu (header order = data order)",
              path, e->string, (unsigned long long)b0, (unsigned long long)expect_off);
        CHECK(b1 - b0 == numel * es, "%s: %s byte length", path, e->string);
        expect_off = b1;
        CHECK(!cJSON_GetObjectItemCaseSensitive(seen, e->string), "%s: %s seen twice", path,
              e->string);
        cJSON_AddItemToObject(seen, e->string, rec);
        ++count;
    }
    CHECK(expect_off == data, "%s: data ends at %llu, file data is %llu bytes", path,
          (unsigned long long)expect_off, (unsigned long long)data);
done:
    cJSON_Delete(h);
    free(p);
    return count;
}

typedef struct expect_tensor {
    char name[96];
    int64_t shape[2];
    int ndim;
} expect_tensor;

static int expected_tensors(const qs_synth_opts *o, int64_t h, int64_t inter, int64_t q,
                            int64_t kv, int64_t vocab, expect_tensor *t) {
    int n = 0;
#define ADD(r, c, ...)                                              \
    do {                                                            \
        snprintf(t[n].name, sizeof t[n].name, __VA_ARGS__);         \
        t[n].shape[0] = (r);                                        \
        t[n].shape[1] = (c);                                        \
        t[n].ndim = (c) ? 2 : 1;                                    \
        ++n;                                                        \
    } while (0)
    ADD(vocab, h, "model.embed_tokens.weight");
    for (long long l = 0; l < o->layers; ++l) {
        ADD(h, 0, "model.layers.%lld.input_layernorm.weight", l);
        ADD(q, h, "model.layers.%lld.self_attn.q_proj.weight", l);
        ADD(kv, h, "model.layers.%lld.self_attn.k_proj.weight", l);
        ADD(kv, h, "model.layers.%lld.self_attn.v_proj.weight", l);
        if (o->arch == QS_ARCH_QWEN2) {
            ADD(q, 0, "model.layers.%lld.self_attn.q_proj.bias", l);
            ADD(kv, 0, "model.layers.%lld.self_attn.k_proj.bias", l);
            ADD(kv, 0, "model.layers.%lld.self_attn.v_proj.bias", l);
        }
        ADD(h, q, "model.layers.%lld.self_attn.o_proj.weight", l);
        ADD(h, 0, "model.layers.%lld.post_attention_layernorm.weight", l);
        ADD(inter, h, "model.layers.%lld.mlp.gate_proj.weight", l);
        ADD(inter, h, "model.layers.%lld.mlp.up_proj.weight", l);
        ADD(h, inter, "model.layers.%lld.mlp.down_proj.weight", l);
    }
    ADD(h, 0, "model.norm.weight");
    if (!o->tie_embeddings) ADD(vocab, h, "lm_head.weight");
#undef ADD
    return n;
}

/* Checks a written model directory against the options. */
static void check_model(const qs_synth_opts *o, const char *dir) {
    char path[1024], fname[128];
    const char *dts = o->dtype == QS_DTYPE_F32 ? "F32" : o->dtype == QS_DTYPE_F16 ? "F16" : "BF16";
    snprintf(path, sizeof path, "%s/config.json", dir);
    cJSON *cfg = read_json(path);
    CHECK(cfg != NULL, "%s: missing or invalid", path);
    if (!cfg) return;
    const char *arch = o->arch == QS_ARCH_MISTRAL ? "MistralForCausalLM"
                     : o->arch == QS_ARCH_QWEN2   ? "Qwen2ForCausalLM"
                                                  : "LlamaForCausalLM";
    const cJSON *archs = cJSON_GetObjectItemCaseSensitive(cfg, "architectures");
    CHECK(cJSON_IsArray(archs) && cJSON_IsString(cJSON_GetArrayItem(archs, 0)) &&
              strcmp(cJSON_GetArrayItem(archs, 0)->valuestring, arch) == 0,
          "%s: architectures", path);
    int64_t h = jint(cfg, "hidden_size"), inter = jint(cfg, "intermediate_size");
    int64_t heads = jint(cfg, "num_attention_heads"), kvh = jint(cfg, "num_key_value_heads");
    int64_t hd = jint(cfg, "head_dim"), vocab = jint(cfg, "vocab_size");
    CHECK(h == o->hidden && jint(cfg, "num_hidden_layers") == o->layers && vocab == o->vocab,
          "%s: sizes", path);
    CHECK(heads > 0 && kvh > 0 && heads % kvh == 0 && hd > 0, "%s: heads", path);
    CHECK(cJSON_IsBool(cJSON_GetObjectItemCaseSensitive(cfg, "tie_word_embeddings")) &&
              cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(cfg, "tie_word_embeddings")) ==
                  (o->tie_embeddings != 0),
          "%s: tie_word_embeddings", path);
    const cJSON *td = cJSON_GetObjectItemCaseSensitive(cfg, "torch_dtype");
    const char *tds = o->dtype == QS_DTYPE_F32 ? "float32" : o->dtype == QS_DTYPE_F16 ? "float16"
                                                                                      : "bfloat16";
    CHECK(cJSON_IsString(td) && strcmp(td->valuestring, tds) == 0, "%s: torch_dtype", path);
    if (o->arch == QS_ARCH_MISTRAL) {
        const cJSON *sw = cJSON_GetObjectItemCaseSensitive(cfg, "sliding_window");
        CHECK(o->sliding_window ? jint(cfg, "sliding_window") == o->sliding_window
                                : cJSON_IsNull(sw),
              "%s: sliding_window", path);
    }
    cJSON *seen = cJSON_CreateObject();
    int total = 0;
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    if (o->shards == 1) {
        CHECK(!qs_test_exists(path), "%s: index must not exist for one shard", path);
        snprintf(path, sizeof path, "%s/model.safetensors", dir);
        total = check_st_file(path, "model.safetensors", dts, seen);
    } else {
        cJSON *idx = read_json(path);
        CHECK(idx != NULL, "%s: missing or invalid", path);
        snprintf(path, sizeof path, "%s/model.safetensors", dir);
        CHECK(!qs_test_exists(path), "%s: must not exist when sharded", path);
        uint64_t bytes = 0;
        for (long long k = 1; k <= o->shards; ++k) {
            snprintf(fname, sizeof fname, "model-%05lld-of-%05lld.safetensors", k, o->shards);
            snprintf(path, sizeof path, "%s/%s", dir, fname);
            int c = check_st_file(path, fname, dts, seen);
            CHECK(c >= 1, "%s: shard has no tensors", path);
            total += c;
            size_t sz;
            unsigned char *p = qs_test_read_file(path, &sz);
            if (p && sz >= 8) {
                uint64_t hl = 0;
                for (int b = 0; b < 8; ++b) hl |= (uint64_t)p[b] << (8 * b);
                bytes += sz - 8 - hl;
            }
            free(p);
        }
        const cJSON *wm = cJSON_GetObjectItemCaseSensitive(idx, "weight_map");
        const cJSON *md = cJSON_GetObjectItemCaseSensitive(idx, "metadata");
        CHECK(jint(md, "total_size") == (int64_t)bytes, "index total_size %lld, data %llu",
              (long long)jint(md, "total_size"), (unsigned long long)bytes);
        CHECK(cJSON_GetArraySize(wm) == cJSON_GetArraySize(seen), "index has %d names, shards %d",
              cJSON_GetArraySize(wm), cJSON_GetArraySize(seen));
        const cJSON *e;
        cJSON_ArrayForEach(e, wm) {
            const cJSON *rec = cJSON_GetObjectItemCaseSensitive(seen, e->string);
            CHECK(rec && cJSON_IsString(e) &&
                      strcmp(cJSON_GetArrayItem(rec, 0)->valuestring, e->valuestring) == 0,
                  "index maps %s to the wrong shard", e->string);
        }
        cJSON_Delete(idx);
    }
    static expect_tensor exp[4096];
    int ne = expected_tensors(o, h, inter, heads * hd, kvh * hd, vocab, exp);
    CHECK(total == ne, "%s: %d tensors, want %d", dir, total, ne);
    for (int i = 0; i < ne; ++i) {
        const cJSON *rec = cJSON_GetObjectItemCaseSensitive(seen, exp[i].name);
        CHECK(rec != NULL, "%s: missing tensor %s", dir, exp[i].name);
        if (!rec) continue;
        CHECK(cJSON_GetArraySize(rec) == 1 + exp[i].ndim, "%s: %s ndim", dir, exp[i].name);
        for (int k = 0; k < exp[i].ndim; ++k)
            CHECK((int64_t)cJSON_GetArrayItem(rec, 1 + k)->valuedouble == exp[i].shape[k],
                  "%s: %s shape[%d]", dir, exp[i].name, k);
    }
    cJSON_Delete(seen);
    cJSON_Delete(cfg);
}

/* Decoders for the statistics check and the encoder round trips. */
static void test_values(const char *root) {
    /* statistics of one f32 model: linear std ~ 1/sqrt(d_in) with outlier columns,
     * norms ~ 1, biases small, no NaN */
    char dir[1024], path[1100];
    snprintf(dir, sizeof dir, "%s/values", root);
    qs_synth_opts o;
    qs_synth_opts_default(&o);
    o.arch = QS_ARCH_QWEN2;
    o.dtype = QS_DTYPE_F32;
    o.layers = 1;
    o.hidden = 256;
    o.vocab = 64;
    qs_err err = {0};
    CHECK(qs_synth_write(&o, dir, &err) == QS_OK, "values write: %s", err.msg);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    size_t n;
    unsigned char *p = qs_test_read_file(path, &n);
    CHECK(p != NULL, "values model");
    if (!p) return;
    uint64_t hl = 0;
    for (int b = 0; b < 8; ++b) hl |= (uint64_t)p[b] << (8 * b);
    cJSON *h = cJSON_ParseWithLength((const char *)p + 8, (size_t)hl);
    const unsigned char *data = p + 8 + hl;
    const char *names[] = {"model.layers.0.mlp.gate_proj.weight",
                           "model.layers.0.self_attn.q_proj.weight",
                           "model.layers.0.mlp.down_proj.weight",
                           "model.layers.0.input_layernorm.weight",
                           "model.layers.0.self_attn.q_proj.bias", "model.embed_tokens.weight"};
    for (int t = 0; t < 6; ++t) {
        const cJSON *e = cJSON_GetObjectItemCaseSensitive(h, names[t]);
        CHECK(e != NULL, "values: %s missing", names[t]);
        if (!e) continue;
        const cJSON *sh = cJSON_GetObjectItemCaseSensitive(e, "shape");
        const cJSON *of = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
        int64_t rows = (int64_t)cJSON_GetArrayItem(sh, 0)->valuedouble;
        int64_t cols = cJSON_GetArraySize(sh) > 1 ? (int64_t)cJSON_GetArrayItem(sh, 1)->valuedouble : 1;
        const float *v = (const float *)(const void *)(data + (uint64_t)cJSON_GetArrayItem(of, 0)->valuedouble);
        double s = 0, s2 = 0, colmax = 0, colmin = 1e30;
        int bad = 0;
        for (int64_t i = 0; i < rows * cols; ++i) {
            float x;
            memcpy(&x, &v[i], 4);
            if (!isfinite(x)) ++bad;
            s += x;
            s2 += (double)x * x;
        }
        double mean = s / (double)(rows * cols), sd = sqrt(s2 / (double)(rows * cols) - mean * mean);
        CHECK(bad == 0, "values: %s has %d non-finite", names[t], bad);
        if (t < 3) {
            double want = 1.0 / sqrt((double)cols);
            CHECK(sd > 0.9 * want && sd < 2.5 * want, "values: %s std %g, want ~%g", names[t], sd, want);
            CHECK(fabs(mean) < 0.2 * want, "values: %s mean %g", names[t], mean);
            for (int64_t c = 0; c < cols; ++c) {
                double a = 0;
                for (int64_t r = 0; r < rows; ++r) {
                    float x;
                    memcpy(&x, &v[r * cols + c], 4);
                    a += (double)x * x;
                }
                a = sqrt(a / (double)rows);
                if (a > colmax) colmax = a;
                if (a < colmin) colmin = a;
            }
            CHECK(colmax > 4.0 * colmin, "values: %s has no outlier column (max %g min %g)",
                  names[t], colmax, colmin);
        } else if (t == 3) {
            CHECK(fabs(mean - 1.0) < 0.02 && sd > 0.03 && sd < 0.08, "values: norm mean %g sd %g", mean, sd);
        } else if (t == 4) {
            CHECK(fabs(mean) < 0.01 && sd > 0.01 && sd < 0.04, "values: bias mean %g sd %g", mean, sd);
        } else {
            CHECK(fabs(mean) < 0.05 && sd > 0.9 && sd < 1.1, "values: embed mean %g sd %g", mean, sd);
        }
    }
    cJSON_Delete(h);
    free(p);
}

static void test_tokens(const char *root) {
    char dir[1024], path[1100], dir2[1024], path2[1100];
    snprintf(dir, sizeof dir, "%s/tok", root);
    snprintf(dir2, sizeof dir2, "%s/tok2", root);
    qs_synth_opts o;
    qs_synth_opts_default(&o);
    o.vocab = 1000;
    qs_err err = {0};
    int64_t n = 70000; /* more than one block */
    CHECK(qs_synth_write_tokens(&o, dir, n, &err) == QS_OK, "tokens: %s", err.msg);
    snprintf(path, sizeof path, "%s/tokens.u32", dir);
    size_t len;
    unsigned char *p = qs_test_read_file(path, &len);
    CHECK(p && len == (size_t)n * 4, "tokens: size %zu, want %lld", len, (long long)n * 4);
    int hist[1000] = {0};
    if (p && len == (size_t)n * 4) {
        for (int64_t i = 0; i < n; ++i) {
            uint32_t id = (uint32_t)p[4 * i] | (uint32_t)p[4 * i + 1] << 8 |
                          (uint32_t)p[4 * i + 2] << 16 | (uint32_t)p[4 * i + 3] << 24;
            CHECK(id < 1000, "tokens: id %u at %lld", id, (long long)i);
            if (id < 1000) ++hist[id];
        }
        int used = 0;
        for (int i = 0; i < 1000; ++i) used += hist[i] > 0;
        CHECK(used > 990, "tokens: only %d distinct ids", used);
    }
    free(p);
    CHECK(qs_synth_write_tokens(&o, dir2, n, &err) == QS_OK, "tokens 2: %s", err.msg);
    snprintf(path2, sizeof path2, "%s/tokens.u32", dir2);
    CHECK(qs_test_files_equal(path, path2), "tokens: not deterministic");
    o.seed = 1;
    CHECK(qs_synth_write_tokens(&o, dir2, n, &err) == QS_OK, "tokens 3: %s", err.msg);
    CHECK(!qs_test_files_equal(path, path2), "tokens: seed has no effect");
    CHECK(qs_test_count_entries(dir, ".tmp.") == 0 && qs_test_count_entries(dir2, ".tmp.") == 0,
          "tokens: temp files left");
    qs_err e2 = {0};
    CHECK(qs_synth_write_tokens(&o, dir, 0, &e2) == QS_ERR_INPUT, "tokens: n = 0 accepted");
}

static void test_errors(const char *root) {
    char path[1024], sub[1100];
    qs_synth_opts o;
    qs_synth_opts_default(&o);
    o.hidden = 64;
    o.vocab = 32;
    /* out_dir below a regular file */
    snprintf(path, sizeof path, "%s/plainfile", root);
    FILE *f = fopen(path, "w");
    if (f) fclose(f);
    snprintf(sub, sizeof sub, "%s/model", path);
    qs_err err = {0};
    CHECK(qs_synth_write(&o, sub, &err) == QS_ERR_RUNTIME, "write under a file: %d", err.code);
    CHECK(strstr(err.msg, "plainfile") != NULL, "error does not name the path: %s", err.msg);
    CHECK(strchr(err.msg, '\n') == NULL, "error has a newline");
    /* a write that fails mid-file (file size limit, like a full disk): the message names
     * the file, no temp file is left behind, the old file is untouched */
    {
        char dir[1100], st[1200];
        snprintf(dir, sizeof dir, "%s/fsize", root);
        qs_synth_opts big = o;
        big.hidden = 64;
        big.vocab = 512;
        qs_err e0 = {0};
        CHECK(qs_synth_write(&big, dir, &e0) == QS_OK, "fsize first write: %s", e0.msg);
        snprintf(st, sizeof st, "%s/model.safetensors", dir);
        size_t before = 0;
        unsigned char *old = qs_test_read_file(st, &before);
        struct rlimit lim, saved;
        getrlimit(RLIMIT_FSIZE, &saved);
        lim = saved;
        lim.rlim_cur = 20000;
        void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
        if (setrlimit(RLIMIT_FSIZE, &lim) == 0) {
            qs_err ef = {0};
            big.seed = 5;
            qs_status s = qs_synth_write(&big, dir, &ef);
            setrlimit(RLIMIT_FSIZE, &saved);
            CHECK(s == QS_ERR_RUNTIME, "fsize: status %d (%s)", s, ef.msg);
            CHECK(strstr(ef.msg, "model.safetensors") != NULL, "fsize: message %s", ef.msg);
            CHECK(qs_test_count_entries(dir, ".tmp.") == 0, "fsize: temp file left");
            size_t after = 0;
            unsigned char *now = qs_test_read_file(st, &after);
            CHECK(old && now && before == after && memcmp(old, now, after) == 0,
                  "fsize: the previous model.safetensors changed");
            free(now);
        }
        signal(SIGXFSZ, prev);
        free(old);
    }
    /* inconsistent options */
    qs_err e1 = {0};
    o.hidden = 100;
    o.heads = 3;
    snprintf(sub, sizeof sub, "%s/bad1", root);
    CHECK(qs_synth_write(&o, sub, &e1) == QS_ERR_INPUT && strstr(e1.msg, "heads"),
          "hidden %% heads: %s", e1.msg);
    qs_err e2 = {0};
    o.hidden = 64;
    o.heads = 4;
    o.kv_heads = 3;
    CHECK(qs_synth_write(&o, sub, &e2) == QS_ERR_INPUT && strstr(e2.msg, "kv_heads"),
          "heads %% kv: %s", e2.msg);
    qs_err e3 = {0};
    o.kv_heads = 0;
    o.shards = 1000;
    CHECK(qs_synth_write(&o, sub, &e3) == QS_ERR_INPUT && strstr(e3.msg, "shards"),
          "too many shards: %s", e3.msg);
    qs_err e4 = {0};
    o.shards = 1;
    o.sliding_window = 16;
    CHECK(qs_synth_write(&o, sub, &e4) == QS_ERR_INPUT, "window on llama: %s", e4.msg);
    CHECK(!qs_test_exists(sub), "a failed validation created the directory");
    /* parse helpers */
    qs_arch a = QS_ARCH_LLAMA;
    qs_dtype d = QS_DTYPE_F32;
    CHECK(qs_synth_parse_arch("qwen2", &a) == QS_OK && a == QS_ARCH_QWEN2, "parse qwen2");
    CHECK(qs_synth_parse_arch("mistral", &a) == QS_OK && a == QS_ARCH_MISTRAL, "parse mistral");
    CHECK(qs_synth_parse_arch("gpt2", &a) == QS_ERR_INPUT && a == QS_ARCH_MISTRAL, "parse gpt2");
    CHECK(qs_synth_parse_dtype("bf16", &d) == QS_OK && d == QS_DTYPE_BF16, "parse bf16");
    CHECK(qs_synth_parse_dtype("f16", &d) == QS_OK && d == QS_DTYPE_F16, "parse f16");
    CHECK(qs_synth_parse_dtype("f32", &d) == QS_OK && d == QS_DTYPE_F32, "parse f32");
    CHECK(qs_synth_parse_dtype("f64", &d) == QS_ERR_INPUT && d == QS_DTYPE_F32, "parse f64");
}

static void test_defaults(const char *root) {
    qs_synth_opts o;
    qs_synth_opts_default(&o);
    CHECK(o.arch == QS_ARCH_LLAMA && o.layers == 2 && o.hidden == 256 && o.vocab == 512 &&
              o.dtype == QS_DTYPE_BF16 && o.shards == 1 && o.seed == 0 && !o.tie_embeddings &&
              o.intermediate == 0 && o.heads == 0 && o.kv_heads == 0 && o.head_dim == 0 &&
              o.sliding_window == 0,
          "defaults");
    char dir[1024], path[1100];
    snprintf(dir, sizeof dir, "%s/defaults/a/b", root); /* mkdir -p */
    qs_err err = {0};
    CHECK(qs_synth_write(&o, dir, &err) == QS_OK, "defaults write: %s", err.msg);
    snprintf(path, sizeof path, "%s/config.json", dir);
    cJSON *c = read_json(path);
    CHECK(jint(c, "intermediate_size") == 704 && jint(c, "num_attention_heads") == 4 &&
              jint(c, "num_key_value_heads") == 4 && jint(c, "head_dim") == 64,
          "derived sizes");
    cJSON_Delete(c);
    check_model(&o, dir);
    /* pinned bytes: a change in generation, rounding or layout shows up here */
    o.layers = 1;
    o.hidden = 64;
    o.vocab = 32;
    o.seed = 7;
    snprintf(dir, sizeof dir, "%s/pinned", root);
    CHECK(qs_synth_write(&o, dir, &err) == QS_OK, "pinned write: %s", err.msg);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    size_t n;
    unsigned char *p = qs_test_read_file(path, &n);
    char hex[65] = {0};
    if (p) qs_sha256_hex(p, n, hex);
    free(p);
    const char *want = QS_SYNTH_PINNED_SHA;
    CHECK(strcmp(hex, want) == 0, "pinned sha256 %s, want %s", hex, want);
}

int main(void) {
    char root[256];
    qs_test_tmpdir(root, sizeof(root), "synth");
    const qs_arch archs[] = {QS_ARCH_LLAMA, QS_ARCH_MISTRAL, QS_ARCH_QWEN2};
    const qs_dtype dts[] = {QS_DTYPE_BF16, QS_DTYPE_F16, QS_DTYPE_F32};
    const long long shards[] = {1, 3};
    char dir[512], dir2[512], fa[1024], fb[1024];
    for (int a = 0; a < 3; ++a)
        for (int d = 0; d < 3; ++d)
            for (int s = 0; s < 2; ++s) {
                qs_synth_opts o;
                qs_synth_opts_default(&o);
                o.arch = archs[a];
                o.dtype = dts[d];
                o.shards = shards[s];
                o.layers = 2;
                o.hidden = 64;
                o.heads = 4;
                o.kv_heads = 2;
                o.intermediate = 96;
                o.vocab = 80;
                o.seed = 3;
                o.tie_embeddings = (a + d) % 2;
                if (o.arch == QS_ARCH_MISTRAL && s == 1) o.sliding_window = 32;
                snprintf(dir, sizeof dir, "%s/m_%d_%d_%d", root, a, d, s);
                snprintf(dir2, sizeof dir2, "%s/m_%d_%d_%d_again", root, a, d, s);
                qs_err err = {0};
                CHECK(qs_synth_write(&o, dir, &err) == QS_OK, "%s: %s", dir, err.msg);
                qs_err err2 = {0};
                CHECK(qs_synth_write(&o, dir2, &err2) == QS_OK, "%s: %s", dir2, err2.msg);
                check_model(&o, dir);
                CHECK(qs_test_count_entries(dir, ".tmp.") == 0, "%s: temp files left", dir);
                DIR *dd = opendir(dir);
                struct dirent *e;
                int nfiles = 0;
                while (dd && (e = readdir(dd))) {
                    if (e->d_name[0] == '.') continue;
                    ++nfiles;
                    snprintf(fa, sizeof fa, "%s/%s", dir, e->d_name);
                    snprintf(fb, sizeof fb, "%s/%s", dir2, e->d_name);
                    CHECK(qs_test_files_equal(fa, fb), "%s differs between two equal writes", fa);
                }
                if (dd) closedir(dd);
                CHECK(nfiles == (s ? 5 : 2), "%s: %d files", dir, nfiles);
            }
    /* the seed matters; rewriting a sharded dir as one file drops the stale index */
    {
        qs_synth_opts o;
        qs_synth_opts_default(&o);
        o.hidden = 64;
        o.vocab = 40;
        o.layers = 1;
        o.shards = 2;
        qs_err err = {0};
        snprintf(dir, sizeof dir, "%s/seed0", root);
        snprintf(dir2, sizeof dir2, "%s/seed1", root);
        CHECK(qs_synth_write(&o, dir, &err) == QS_OK, "seed0: %s", err.msg);
        o.seed = 1;
        CHECK(qs_synth_write(&o, dir2, &err) == QS_OK, "seed1: %s", err.msg);
        snprintf(fa, sizeof fa, "%s/model-00001-of-00002.safetensors", dir);
        snprintf(fb, sizeof fb, "%s/model-00001-of-00002.safetensors", dir2);
        CHECK(!qs_test_files_equal(fa, fb), "seed has no effect");
        o.shards = 1;
        CHECK(qs_synth_write(&o, dir, &err) == QS_OK, "rewrite: %s", err.msg);
        check_model(&o, dir);
    }
    test_values(root);
    test_tokens(root);
    test_errors(root);
    test_defaults(root);
    if (qs_test_failures == 0) qs_test_rm_rf(root);
    else fprintf(stderr, "kept %s\n", root);
    return qs_test_finish("test_synth");
}
