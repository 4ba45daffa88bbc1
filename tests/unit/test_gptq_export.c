/* test_gptq_export.c: the GPTQ checkpoint writer, checked by an independent reader.
 *
 * Builds small Llama-shaped models of random RTN-quantized linears (2, 3, 4, 8 bits, sym and
 * asym, natural and act-order g_idx permutations, per-layer mixed schemes), exports them
 * (v1 and v2, sharded and single-file, with and without biases) one module at a time, and
 * runs tests/ref/gptq_decode.py, which parses the safetensors by hand, unpacks, dequantizes
 * and compares bit for bit with qshard's own qs_quant_dequant_rows, and resolves every module
 * through the "dynamic" map under HF and vLLM names. Then the error paths: shapes without a
 * layout, fused groups with different schemes, order and byte-count mistakes, v1 zero 0,
 * a full disk (RLIMIT_FSIZE) -- each leaving no file behind.
 * Usage: test_gptq_export <path of gptq_decode.py>. Fails via exit code.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "check.h"
#include "gptq_export.h"
#include "st_writer.h"
#include "pack.h"
#include "quant.h"

#include "export_testutil.h"

static const char *g_script = NULL;

/* ---- a small model --------------------------------------------------------------------- */

enum { H = 64, KV = 32, FF = 96, VOCAB = 100, NLAYERS = 12 };

typedef struct titem {
    char name[128];
    int linear;
    int64_t d_out, d_in;      /* linear */
    qs_gptq_scheme s;         /* linear */
    int bias;                 /* linear */
    qs_dtype dt;              /* plain tensor */
    int ndim;
    int64_t shape[2];
} titem;

typedef struct tmodel {
    titem *items;
    int n;
} tmodel;

static const qs_gptq_scheme k_schemes[] = {
    {4, 32, 1, 0}, {3, 32, 0, 1}, {8, -1, 1, 1}, {2, 16, 0, 0},
    {4, 16, 0, 1}, {8, 32, 0, 0}, {3, -1, 1, 0}, {2, 32, 1, 1},
};
#define NSCHEMES ((int)(sizeof(k_schemes) / sizeof(k_schemes[0])))

static void add_plain(tmodel *m, const char *name, qs_dtype dt, int ndim, int64_t a, int64_t b) {
    titem *it = &m->items[m->n++];
    memset(it, 0, sizeof(*it));
    snprintf(it->name, sizeof(it->name), "%s", name);
    it->dt = dt;
    it->ndim = ndim;
    it->shape[0] = a;
    it->shape[1] = b;
}

static void add_lin(tmodel *m, int layer, const char *leaf, int64_t d_out, int64_t d_in,
                    const qs_gptq_scheme *s, int bias) {
    titem *it = &m->items[m->n++];
    memset(it, 0, sizeof(*it));
    snprintf(it->name, sizeof(it->name), "model.layers.%d.%s", layer, leaf);
    it->linear = 1;
    it->d_out = d_out;
    it->d_in = d_in;
    it->s = *s;
    it->bias = bias;
}

/* mixed: per layer, attention (q/k/v), o, gate/up and down take different schemes;
 * otherwise every linear uses `uniform`. bias: Qwen2-style q/k/v biases (BF16). */
static void make_model(tmodel *m, int mixed, const qs_gptq_scheme *uniform, int bias) {
    m->items = calloc(8 + NLAYERS * 9, sizeof(titem));
    m->n = 0;
    char nm[128];
    add_plain(m, "model.embed_tokens.weight", QS_DTYPE_BF16, 2, VOCAB, H);
    for (int l = 0; l < NLAYERS; ++l) {
        const qs_gptq_scheme *sa = mixed ? &k_schemes[l % NSCHEMES] : uniform;
        const qs_gptq_scheme *so = mixed ? &k_schemes[(l + 1) % NSCHEMES] : uniform;
        const qs_gptq_scheme *sg = mixed ? &k_schemes[(l + 2) % NSCHEMES] : uniform;
        const qs_gptq_scheme *sd = mixed ? &k_schemes[(l + 5) % NSCHEMES] : uniform;
        snprintf(nm, sizeof(nm), "model.layers.%d.input_layernorm.weight", l);
        add_plain(m, nm, QS_DTYPE_F32, 1, H, 0);
        add_lin(m, l, "self_attn.q_proj", H, H, sa, bias);
        add_lin(m, l, "self_attn.k_proj", KV, H, sa, bias);
        add_lin(m, l, "self_attn.v_proj", KV, H, sa, bias);
        add_lin(m, l, "self_attn.o_proj", H, H, so, 0);
        snprintf(nm, sizeof(nm), "model.layers.%d.post_attention_layernorm.weight", l);
        add_plain(m, nm, QS_DTYPE_F32, 1, H, 0);
        add_lin(m, l, "mlp.gate_proj", FF, H, sg, 0);
        add_lin(m, l, "mlp.up_proj", FF, H, sg, 0);
        add_lin(m, l, "mlp.down_proj", H, FF, sd, 0);
    }
    add_plain(m, "model.norm.weight", QS_DTYPE_F32, 1, H, 0);
    add_plain(m, "model.odd_f16", QS_DTYPE_F16, 1, 7, 0); /* odd byte count: no alignment */
    add_plain(m, "lm_head.weight", QS_DTYPE_BF16, 2, VOCAB, H);
}

static size_t dtype_bytes(qs_dtype dt) { return qs_dtype_size(dt); }

/* Shards the exporter should make: greedy in declared order (tensors never split). */
static int expected_shards(const tmodel *m, int64_t shard_bytes) {
    uint64_t sizes[8 + NLAYERS * 9 * 5];
    int n = 0;
    uint64_t total = 0;
    for (int i = 0; i < m->n; ++i) {
        const titem *it = &m->items[i];
        if (it->linear) {
            qs_pack_bytes pb;
            qs_err e = {0};
            qs_pack_sizes(it->d_out, it->d_in, it->s.bits, it->s.group_size, &pb, &e);
            sizes[n++] = (uint64_t)pb.qweight;
            sizes[n++] = (uint64_t)pb.qzeros;
            sizes[n++] = (uint64_t)pb.scales;
            sizes[n++] = (uint64_t)pb.g_idx;
            if (it->bias) sizes[n++] = (uint64_t)it->d_out * 2;
        } else {
            sizes[n++] = dtype_bytes(it->dt) * (uint64_t)it->shape[0] *
                         (uint64_t)(it->ndim == 2 ? it->shape[1] : 1);
        }
    }
    for (int i = 0; i < n; ++i) total += sizes[i];
    if (shard_bytes <= 0 || total <= (uint64_t)shard_bytes) return 1;
    int shards = 1;
    uint64_t acc = 0;
    for (int i = 0; i < n; ++i) {
        if (acc > 0 && acc + sizes[i] > (uint64_t)shard_bytes) {
            shards++;
            acc = 0;
        }
        acc += sizes[i];
    }
    return shards;
}

/* Exports model m to <base>/out (source <base>/src) streaming one item at a time, writes
 * <base>/expect/ and runs gptq_decode.py on it. */
static void run_export(const char *label, const tmodel *m, int v2, int64_t shard_bytes,
                       int mixed) {
    char base[256], src[300], out[300], exp[300], p[512], cmd[2048];
    qs_test_tmpdir(base, sizeof(base), "gptq_export");
    snprintf(src, sizeof(src), "%s/src", base);
    snprintf(out, sizeof(out), "%s/out", base);
    snprintf(exp, sizeof(exp), "%s/expect", base);
    make_src(src);
    mkdir(exp, 0755);

    qs_qexport_opts o;
    qs_qexport_opts_default(&o);
    o.shard_bytes = shard_bytes;
    o.v2 = v2;
    qs_qexport *x = NULL;
    qs_err e = {0};
    cJSON *ex = cJSON_CreateObject(), *mods = cJSON_AddObjectToObject(ex, "modules");
    cJSON *tens = cJSON_AddObjectToObject(ex, "tensors");
    CHECK(qs_qexport_begin(&x, &qs_gptq_format, out, src, &o, &e) == QS_OK, "%s: begin: %s", label, e.msg);
    for (int i = 0; x && i < m->n; ++i) {
        const titem *it = &m->items[i];
        qs_status st = it->linear
                           ? qs_qexport_declare_linear(x, it->name, it->d_out, it->d_in,
                                                           &it->s, it->bias, QS_DTYPE_BF16, &e)
                           : qs_qexport_declare_tensor(x, it->name, it->dt, it->ndim,
                                                           it->shape, &e);
        CHECK(st == QS_OK, "%s: declare %s: %s", label, it->name, e.msg);
    }
    /* stream: each linear is made, written and freed before the next */
    for (int i = 0; x && i < m->n && e.code == QS_OK; ++i) {
        const titem *it = &m->items[i];
        if (it->linear) {
            tlin t;
            make_linear(it->d_out, it->d_in, &it->s, !v2, &t);
            uint16_t bias[H];
            for (int k = 0; k < H; ++k) bias[k] = (uint16_t)rnd();
            qs_gptq_linear q = {t.codes, t.scales, t.zeros, t.g_idx, it->bias ? bias : NULL};
            CHECK(qs_qexport_add_linear(x, it->name, &q, &e) == QS_OK, "%s: add %s: %s",
                  label, it->name, e.msg);
            cJSON *j = cJSON_AddObjectToObject(mods, it->name);
            cJSON_AddNumberToObject(j, "bits", it->s.bits);
            cJSON_AddNumberToObject(j, "group_size", it->s.group_size);
            cJSON_AddBoolToObject(j, "sym", it->s.sym);
            cJSON_AddBoolToObject(j, "desc_act", it->s.desc_act);
            cJSON_AddNumberToObject(j, "d_out", (double)it->d_out);
            cJSON_AddNumberToObject(j, "d_in", (double)it->d_in);
            snprintf(p, sizeof(p), "m%03d.f32", i);
            cJSON_AddStringToObject(j, "file", p);
            snprintf(p, sizeof(p), "%s/m%03d.f32", exp, i);
            qs_test_write_file(p, t.wq, (size_t)(it->d_out * it->d_in) * sizeof(float));
            if (it->bias) {
                snprintf(p, sizeof(p), "b%03d.bin", i);
                cJSON_AddStringToObject(j, "bias_file", p);
                cJSON_AddStringToObject(j, "bias_dtype", "BF16");
                snprintf(p, sizeof(p), "%s/b%03d.bin", exp, i);
                qs_test_write_file(p, bias, (size_t)it->d_out * 2);
            }
            tlin_free(&t);
        } else {
            size_t nb = dtype_bytes(it->dt) * (size_t)it->shape[0] *
                        (size_t)(it->ndim == 2 ? it->shape[1] : 1);
            unsigned char *buf = malloc(nb);
            for (size_t k = 0; k < nb; ++k) buf[k] = (unsigned char)rnd();
            CHECK(qs_qexport_add_tensor(x, it->name, buf, nb, &e) == QS_OK, "%s: add %s: %s",
                  label, it->name, e.msg);
            cJSON *j = cJSON_AddObjectToObject(tens, it->name);
            snprintf(p, sizeof(p), "t%03d.bin", i);
            cJSON_AddStringToObject(j, "file", p);
            cJSON_AddStringToObject(j, "dtype", qs_dtype_name(it->dt));
            cJSON *sh = cJSON_AddArrayToObject(j, "shape");
            for (int d = 0; d < it->ndim; ++d)
                cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)it->shape[d]));
            snprintf(p, sizeof(p), "%s/t%03d.bin", exp, i);
            qs_test_write_file(p, buf, nb);
            free(buf);
        }
    }
    if (x && e.code == QS_OK)
        CHECK(qs_qexport_finish(x, &e) == QS_OK, "%s: finish: %s", label, e.msg);
    qs_qexport_free(x);

    int nshards = expected_shards(m, shard_bytes);
    if (shard_bytes > 0 && shard_bytes < 1000000)
        CHECK(nshards > 2, "%s: the test should make several shards", label);
    cJSON_AddBoolToObject(ex, "v2", v2);
    cJSON_AddNumberToObject(ex, "nshards", nshards);
    cJSON_AddNumberToObject(ex, "shard_bytes", (double)shard_bytes);
    cJSON_AddBoolToObject(ex, "mixed", mixed);
    cJSON_AddStringToObject(ex, "src", src);
    cJSON *ck = cJSON_AddObjectToObject(ex, "config_keys");
    cJSON_AddStringToObject(ck, "model_type", "llama");
    cJSON_AddNumberToObject(ck, "hidden_size", 64);
    cJSON_AddNumberToObject(ck, "rms_norm_eps", 1e-05);
    cJSON *cp = cJSON_AddArrayToObject(ex, "copied");
    for (size_t i = 0; i < sizeof(k_copied) / sizeof(k_copied[0]); ++i)
        cJSON_AddItemToArray(cp, cJSON_CreateString(k_copied[i]));
    cJSON *ncp = cJSON_AddArrayToObject(ex, "not_copied");
    for (size_t i = 0; i < sizeof(k_not_copied) / sizeof(k_not_copied[0]); ++i)
        cJSON_AddItemToArray(ncp, cJSON_CreateString(k_not_copied[i]));
    char *text = cJSON_Print(ex);
    snprintf(p, sizeof(p), "%s/expect.json", exp);
    qs_test_write_file(p, text, strlen(text));
    cJSON_free(text);
    cJSON_Delete(ex);

    CHECK(qs_test_count_entries(base, NULL) == 3 && qs_test_count_entries(base, ".tmp.") == 0,
          "%s: base should hold src, out, expect only", label);
    const char *py = getenv("QS_PYTHON");
    snprintf(cmd, sizeof(cmd), "%s %s %s --expect %s", py && py[0] ? py : "/usr/bin/python3",
             g_script, out, exp);
    int rc = system(cmd);
    CHECK(rc == 0, "%s: gptq_decode.py failed (rc %d); kept %s", label, rc, base);
    if (rc == 0) qs_test_rm_rf(base);
}

static void test_exports(void) {
    tmodel m;
    const qs_gptq_scheme u4 = {4, 32, 0, 0};
    make_model(&m, 1, &u4, 1);
    run_export("mixed v1 sharded bias", &m, 0, 24000, 1);
    run_export("mixed v2 single bias", &m, 1, 0, 1);
    free(m.items);
    make_model(&m, 1, &u4, 0);
    run_export("mixed v1 single", &m, 0, (int64_t)1 << 30, 1);
    run_export("mixed v2 sharded", &m, 1, 16000, 1);
    free(m.items);
    /* mostly Marlin-servable (4-bit sym) with one 3-bit linear: the top-level fields must
     * not select vLLM's gptq_marlin path, which cannot load the 3-bit module
     * (gptq_decode.py mirrors vLLM's choice and fails the export otherwise) */
    const qs_gptq_scheme u4s = {4, 32, 1, 0}, w3s = {3, 32, 1, 0};
    make_model(&m, 0, &u4s, 0);
    for (int i = m.n - 1; i >= 0; --i)
        if (m.items[i].linear && strstr(m.items[i].name, "down_proj")) {
            m.items[i].s = w3s;
            break;
        }
    run_export("marlin majority + one w3", &m, 0, 0, 1);
    free(m.items);
    const int bits[4] = {2, 3, 4, 8};
    for (int k = 0; k < 4; ++k) {
        qs_gptq_scheme s = {bits[k], k == 2 ? -1 : 32, k % 2, k / 2 == 0};
        char label[64];
        snprintf(label, sizeof(label), "uniform w%d", bits[k]);
        make_model(&m, 0, &s, k % 2);
        run_export(label, &m, k % 2, k < 2 ? 20000 : 0, 0);
        free(m.items);
    }
}

/* ---- error paths ----------------------------------------------------------------------- */

static qs_qexport *begin_in(const char *base, qs_err *e) {
    char src[300], out[300];
    snprintf(src, sizeof(src), "%s/src", base);
    snprintf(out, sizeof(out), "%s/out", base);
    if (!qs_test_exists(src)) make_src(src);
    qs_qexport_opts o;
    qs_qexport_opts_default(&o);
    qs_qexport *x = NULL;
    CHECK(qs_qexport_begin(&x, &qs_gptq_format, out, src, &o, e) == QS_OK, "begin: %s", e->msg);
    return x;
}

/* After a failed export only src remains in base. */
static void check_clean(const char *base, const char *what) {
    int n = qs_test_count_entries(base, NULL), tmp = qs_test_count_entries(base, ".tmp.");
    CHECK(n == 1 && tmp == 0, "%s: %d entries (%d temporary) left in %s", what, n, tmp, base);
}

static void test_errors(void) {
    char base[256], p[512];
    qs_test_tmpdir(base, sizeof(base), "gptq_export");
    qs_err e = {0};
    const qs_gptq_scheme w4 = {4, 32, 0, 0}, w3 = {3, 32, 0, 0}, w5 = {5, 32, 0, 0};
    const qs_gptq_scheme w4act = {4, 32, 0, 1};

    /* shapes without a GPTQ layout are refused naming the module */
    qs_qexport *x = begin_in(base, &e);
    CHECK(qs_qexport_declare_linear(x, "model.layers.0.mlp.up_proj", 100, 64, &w4, 0,
                                        QS_DTYPE_F16, &e) == QS_ERR_INPUT &&
              strstr(e.msg, "model.layers.0.mlp.up_proj") && strstr(e.msg, "output size"),
          "d_out 100: %s", e.msg);
    qs_err_clear(&e);
    CHECK(qs_qexport_declare_linear(x, "model.layers.0.mlp.down_proj", 64, 96, &w5, 0,
                                        QS_DTYPE_F16, &e) == QS_ERR_INPUT &&
              strstr(e.msg, "down_proj") && strstr(e.msg, "5 bits"),
          "5 bits: %s", e.msg);
    qs_err_clear(&e);
    CHECK(qs_qexport_declare_linear(x, "model.layers.0.mlp.gate_proj", 64, 80, &w4, 0,
                                        QS_DTYPE_F16, &e) == QS_ERR_INPUT &&
              strstr(e.msg, "group size"),
          "80 mod 32: %s", e.msg);
    qs_qexport_free(x);
    check_clean(base, "unpackable");

    /* q and k of one layer with different schemes: vLLM fuses them */
    qs_err_clear(&e);
    x = begin_in(base, &e);
    qs_qexport_declare_linear(x, "model.layers.1.self_attn.q_proj", 64, 64, &w4, 0,
                                  QS_DTYPE_F16, &e);
    qs_qexport_declare_linear(x, "model.layers.1.self_attn.k_proj", 32, 64, &w3, 0,
                                  QS_DTYPE_F16, &e);
    qs_qexport_declare_linear(x, "model.layers.11.self_attn.v_proj", 32, 64, &w3, 0,
                                  QS_DTYPE_F16, &e);
    CHECK(e.code == QS_OK, "declare: %s", e.msg);
    tlin t;
    make_linear(64, 64, &w4, 1, &t);
    qs_gptq_linear q = {t.codes, t.scales, t.zeros, t.g_idx, NULL};
    CHECK(qs_qexport_add_linear(x, "model.layers.1.self_attn.q_proj", &q, &e) ==
                  QS_ERR_INPUT &&
              strstr(e.msg, "model.layers.1.self_attn.k_proj") && strstr(e.msg, "fuses"),
          "fused mismatch: %s", e.msg);
    qs_qexport_free(x);
    check_clean(base, "fused mismatch");

    /* order: items must come in the declared order; byte counts must match */
    qs_err_clear(&e);
    x = begin_in(base, &e);
    int64_t sh[1] = {64};
    qs_qexport_declare_tensor(x, "a.weight", QS_DTYPE_F32, 1, sh, &e);
    qs_qexport_declare_linear(x, "model.layers.0.self_attn.o_proj", 64, 64, &w4, 0,
                                  QS_DTYPE_F16, &e);
    CHECK(qs_qexport_add_linear(x, "model.layers.0.self_attn.o_proj", &q, &e) ==
                  QS_ERR_INPUT && strstr(e.msg, "a.weight"),
          "order: %s", e.msg);
    qs_qexport_free(x);
    check_clean(base, "order");
    qs_err_clear(&e);
    x = begin_in(base, &e);
    qs_qexport_declare_tensor(x, "a.weight", QS_DTYPE_F32, 1, sh, &e);
    float buf[64] = {0};
    CHECK(qs_qexport_add_tensor(x, "a.weight", buf, 100, &e) == QS_ERR_INPUT &&
              strstr(e.msg, "a.weight"),
          "byte count: %s", e.msg);
    qs_qexport_free(x);
    check_clean(base, "byte count");

    /* finish before everything was written */
    qs_err_clear(&e);
    x = begin_in(base, &e);
    qs_qexport_declare_linear(x, "model.layers.0.self_attn.o_proj", 64, 64, &w4, 0,
                                  QS_DTYPE_F16, &e);
    qs_qexport_declare_tensor(x, "a.weight", QS_DTYPE_F32, 1, sh, &e);
    CHECK(qs_qexport_add_linear(x, "model.layers.0.self_attn.o_proj", &q, &e) == QS_OK,
          "%s", e.msg);
    CHECK(qs_qexport_finish(x, &e) == QS_ERR_INPUT && strstr(e.msg, "a.weight"),
          "incomplete finish: %s", e.msg);
    qs_qexport_free(x);
    check_clean(base, "incomplete");

    /* desc_act false with a permuted g_idx */
    qs_err_clear(&e);
    tlin ta;
    make_linear(64, 64, &w4act, 1, &ta);
    x = begin_in(base, &e);
    qs_qexport_declare_linear(x, "model.layers.2.mlp.down_proj", 64, 64, &w4, 0,
                                  QS_DTYPE_F16, &e);
    qs_gptq_linear qa = {ta.codes, ta.scales, ta.zeros, ta.g_idx, NULL};
    CHECK(qs_qexport_add_linear(x, "model.layers.2.mlp.down_proj", &qa, &e) ==
                  QS_ERR_INPUT && strstr(e.msg, "down_proj") && strstr(e.msg, "desc_act"),
          "g_idx: %s", e.msg);
    qs_qexport_free(x);
    check_clean(base, "g_idx");
    tlin_free(&ta);

    /* v1 cannot store an asymmetric zero point of 0 */
    qs_err_clear(&e);
    tlin tz;
    make_linear(64, 64, &w4, 0, &tz); /* zero_min1 off: rows 0, 5, ... have zero 0 */
    x = begin_in(base, &e);
    qs_qexport_declare_linear(x, "model.layers.3.mlp.up_proj", 64, 64, &w4, 0,
                                  QS_DTYPE_F16, &e);
    qs_gptq_linear qz = {tz.codes, tz.scales, tz.zeros, tz.g_idx, NULL};
    CHECK(qs_qexport_add_linear(x, "model.layers.3.mlp.up_proj", &qz, &e) == QS_ERR_INPUT &&
              strstr(e.msg, "up_proj") && strstr(e.msg, "zero"),
          "v1 zero 0: %s", e.msg);
    qs_qexport_free(x);
    check_clean(base, "v1 zero");
    tlin_free(&tz);

    /* a missing source config.json: finish fails, nothing left */
    qs_err_clear(&e);
    x = begin_in(base, &e);
    snprintf(p, sizeof(p), "%s/src/config.json", base);
    char saved[300];
    snprintf(saved, sizeof(saved), "%s/config.saved", base);
    rename(p, saved);
    qs_qexport_declare_linear(x, "model.layers.0.self_attn.o_proj", 64, 64, &w4, 0,
                                  QS_DTYPE_F16, &e);
    qs_qexport_add_linear(x, "model.layers.0.self_attn.o_proj", &q, &e);
    CHECK(qs_qexport_finish(x, &e) == QS_ERR_INPUT && strstr(e.msg, "config.json"),
          "no config: %s", e.msg);
    qs_qexport_free(x);
    rename(saved, p);
    check_clean(base, "no config");

    /* an existing output directory: refused, then replaced with overwrite */
    qs_err_clear(&e);
    char out[300], src[300];
    snprintf(out, sizeof(out), "%s/out", base);
    snprintf(src, sizeof(src), "%s/src", base);
    mkdir(out, 0755);
    snprintf(p, sizeof(p), "%s/stale.txt", out);
    qs_test_write_file(p, "old", 3);
    qs_qexport_opts o;
    qs_qexport_opts_default(&o);
    x = NULL;
    CHECK(qs_qexport_begin(&x, &qs_gptq_format, out, src, &o, &e) == QS_ERR_INPUT && strstr(e.msg, "exists"),
          "exists: %s", e.msg);
    qs_qexport_free(x);
    qs_err_clear(&e);
    o.overwrite = 1;
    x = NULL;
    CHECK(qs_qexport_begin(&x, &qs_gptq_format, out, src, &o, &e) == QS_OK, "%s", e.msg);
    qs_qexport_declare_linear(x, "model.layers.0.self_attn.o_proj", 64, 64, &w4, 0,
                                  QS_DTYPE_F16, &e);
    qs_qexport_add_linear(x, "model.layers.0.self_attn.o_proj", &q, &e);
    CHECK(qs_qexport_finish(x, &e) == QS_OK, "overwrite: %s", e.msg);
    qs_qexport_free(x);
    snprintf(p, sizeof(p), "%s/model.safetensors", out);
    CHECK(qs_test_exists(p), "overwrite: no model.safetensors");
    snprintf(p, sizeof(p), "%s/stale.txt", out);
    CHECK(!qs_test_exists(p), "overwrite: old file kept");
    CHECK(qs_test_count_entries(base, NULL) == 2, "overwrite: leftovers in %s", base);
    tlin_free(&t);
    qs_test_rm_rf(base);
}

static void test_st_writer(void) {
    char base[256], path[512], tmp[600];
    qs_test_tmpdir(base, sizeof(base), "gptq_export");
    snprintf(path, sizeof(path), "%s/x.safetensors", base);
    snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid());
    qs_err e = {0};
    qs_st_writer *w = NULL;
    int64_t s2[2] = {3, 5}, s1[1] = {4};
    float a[15];
    int32_t b[4] = {1, 2, 3, 4};
    for (int i = 0; i < 15; ++i) a[i] = (float)i;

    /* a good file, streamed in pieces; check the exact header bytes */
    CHECK(qs_st_writer_open(&w, path, 1, &e) == QS_OK, "%s", e.msg);
    qs_st_writer_declare(w, "a", QS_DTYPE_F32, 2, s2, &e);
    qs_st_writer_declare(w, "b\"q", QS_DTYPE_I32, 1, s1, &e);
    CHECK(qs_st_writer_declare(w, "a", QS_DTYPE_F32, 1, s1, &e) == QS_ERR_INPUT, "duplicate");
    qs_err_clear(&e);
    CHECK(qs_st_writer_data_bytes(w) == 76, "data bytes %llu",
          (unsigned long long)qs_st_writer_data_bytes(w));
    CHECK(qs_st_writer_begin(w, &e) == QS_OK, "%s", e.msg);
    CHECK(!qs_test_exists(path) && qs_test_exists(tmp), "temporary name while writing");
    qs_st_writer_put(w, "a", a, 20, &e);
    qs_st_writer_put(w, "a", a + 5, 40, &e);
    qs_st_writer_put(w, "b\"q", b, 16, &e);
    CHECK(qs_st_writer_finish(w, &e) == QS_OK, "%s", e.msg);
    qs_st_writer_free(w);
    CHECK(qs_test_exists(path) && !qs_test_exists(tmp), "renamed");
    FILE *f = fopen(path, "rb");
    unsigned char hdr[256] = {0};
    size_t got = f ? fread(hdr, 1, sizeof(hdr), f) : 0;
    if (f) fclose(f);
    uint64_t hl = 0;
    for (int k = 0; k < 8; ++k) hl |= (uint64_t)hdr[k] << (8 * k);
    const char *want = "{\"__metadata__\":{\"format\":\"pt\"},\"a\":{\"dtype\":\"F32\",\"shape\":[3,5],"
                       "\"data_offsets\":[0,60]},\"b\\\"q\":{\"dtype\":\"I32\",\"shape\":[4],"
                       "\"data_offsets\":[60,76]}}";
    CHECK(hl % 8 == 0 && hl >= strlen(want) && hl < strlen(want) + 8, "header length %llu",
          (unsigned long long)hl);
    CHECK(got == 8 + hl + 76 && memcmp(hdr + 8, want, strlen(want)) == 0, "header bytes");
    for (uint64_t k = 8 + strlen(want); k < 8 + hl; ++k) CHECK(hdr[k] == ' ', "padding");
    CHECK(memcmp(hdr + 8 + hl, a, 60) == 0 && memcmp(hdr + 8 + hl + 60, b, 16) == 0, "data");
    remove(path);

    /* mistakes abandon the temporary file */
    w = NULL;
    qs_st_writer_open(&w, path, 0, &e);
    qs_st_writer_declare(w, "a", QS_DTYPE_F32, 2, s2, &e);
    qs_st_writer_declare(w, "b", QS_DTYPE_I32, 1, s1, &e);
    qs_st_writer_begin(w, &e);
    CHECK(qs_st_writer_put(w, "b", b, 16, &e) == QS_ERR_INPUT && strstr(e.msg, "'a'"),
          "order: %s", e.msg);
    qs_st_writer_free(w);
    CHECK(qs_test_count_entries(base, NULL) == 0, "order: file left");
    qs_err_clear(&e);
    qs_st_writer_open(&w, path, 0, &e);
    qs_st_writer_declare(w, "a", QS_DTYPE_F32, 2, s2, &e);
    qs_st_writer_begin(w, &e);
    CHECK(qs_st_writer_put(w, "a", a, 64, &e) == QS_ERR_INPUT && strstr(e.msg, "x.safetensors"),
          "overflow: %s", e.msg);
    qs_st_writer_free(w);
    qs_err_clear(&e);
    qs_st_writer_open(&w, path, 0, &e);
    qs_st_writer_declare(w, "a", QS_DTYPE_F32, 2, s2, &e);
    qs_st_writer_begin(w, &e);
    qs_st_writer_put(w, "a", a, 40, &e);
    CHECK(qs_st_writer_finish(w, &e) == QS_ERR_INPUT && strstr(e.msg, "incomplete"),
          "incomplete: %s", e.msg);
    qs_st_writer_free(w);
    CHECK(qs_test_count_entries(base, NULL) == 0, "incomplete: file left");

    /* a full disk (file size limit): a runtime error naming the file, nothing left */
    qs_err_clear(&e);
    struct rlimit old, lim;
    getrlimit(RLIMIT_FSIZE, &old);
    signal(SIGXFSZ, SIG_IGN);
    lim = old;
    lim.rlim_cur = 4096;
    CHECK(setrlimit(RLIMIT_FSIZE, &lim) == 0, "setrlimit");
    int64_t big[1] = {100000};
    float *zero = calloc(100000, sizeof(float));
    qs_st_writer_open(&w, path, 1, &e);
    qs_st_writer_declare(w, "big", QS_DTYPE_F32, 1, big, &e);
    qs_st_writer_begin(w, &e);
    qs_status st = qs_st_writer_put(w, "big", zero, 100000 * sizeof(float), &e);
    setrlimit(RLIMIT_FSIZE, &old);
    signal(SIGXFSZ, SIG_DFL);
    CHECK(st == QS_ERR_RUNTIME && strstr(e.msg, "x.safetensors"), "disk full: %s", e.msg);
    qs_st_writer_free(w);
    free(zero);
    CHECK(qs_test_count_entries(base, NULL) == 0, "disk full: file left");
    qs_test_rm_rf(base);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s <gptq_decode.py>\n", argv[0]);
        return 2;
    }
    g_script = argv[1];
    test_st_writer();
    test_errors();
    test_exports();
    return qs_test_finish("test_gptq_export");
}
