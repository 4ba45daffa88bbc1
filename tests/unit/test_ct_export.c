/* test_ct_export.c: the compressed-tensors (pack-quantized) writer, checked by an
 * independent reader.
 *
 * Builds small Llama-shaped models of random RTN-quantized linears (4-bit sym and asym,
 * 8-bit sym; groups 32, 64, 128 and channel (-1); act-order g_idx permutations written as
 * weight_g_idx, static act-order without it; per-layer mixed schemes with q/k/v and gate/up
 * tied; float linears, one of them a whole fused q/k/v group; Qwen2-style biases), exports
 * them one module at a time (sharded and single-file) and runs tests/ref/ct_decode.py, which
 * parses the safetensors by hand, unpacks weight_packed / weight_zero_point from the
 * documented bit layout, dequantizes, compares bit for bit with qshard's qs_quant_dequant_rows,
 * and resolves every module through config_groups / ignore with vLLM's matching rules under
 * HF and fused names (each fused module must resolve directly to its members' one scheme).
 * qshard's own reader (qsource.c, `qshard eval --weights ct`) reads every export back: each
 * linear dequantizes to the same weights bit for bit, float linears have no quantized form,
 * and where a GPTQ export of the same codes exists both readers give identical codes,
 * scales, zero points and g_idx (mixed symmetric and asymmetric schemes included).
 * Then the error paths, each leaving no file behind.
 * Usage: test_ct_export <path of ct_decode.py>. Fails via exit code.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cjson/cJSON.h>

#include "ct_export.h"
#include "gptq_export.h"
#include "qsource.h"
#include "rundir.h"
#include "st_writer.h"
#include "quant.h"

#include "export_testutil.h"

static const char *g_script = NULL;
static const char *g_qshard = NULL; /* the qshard binary: `qshard convert` is checked too */

enum { H = 128, KV = 64, FF = 256, VOCAB = 100, NLAYERS = 6 };

typedef struct titem {
    char name[128];
    int linear;               /* 1 quantized linear, 0 plain tensor */
    int float_of;             /* plain weight of a float linear (module excluded) */
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
    {4, 32, 1, 0}, {4, 128, 0, 0}, {8, -1, 1, 0}, {4, -1, 0, 0}, {8, 32, 1, 0}, {4, 64, 0, 0},
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

/* A linear: quantized with scheme s, or (s == NULL) left in float as a BF16 weight. */
static void add_lin(tmodel *m, int layer, const char *leaf, int64_t d_out, int64_t d_in,
                    const qs_gptq_scheme *s, int bias) {
    char nm[96];
    snprintf(nm, sizeof(nm), "model.layers.%d.%s", layer, leaf);
    if (!s) {
        char w[128];
        snprintf(w, sizeof(w), "%s.weight", nm);
        add_plain(m, w, QS_DTYPE_BF16, 2, d_out, d_in);
        m->items[m->n - 1].float_of = 1;
        return;
    }
    titem *it = &m->items[m->n++];
    memset(it, 0, sizeof(*it));
    snprintf(it->name, sizeof(it->name), "%s", nm);
    it->linear = 1;
    it->d_out = d_out;
    it->d_in = d_in;
    it->s = *s;
    it->bias = bias;
}

/* mixed: per layer, attention (q/k/v), o, gate/up and down take different schemes, layer 1's
 * o_proj and layer 2's q/k/v stay float; otherwise every linear uses `uniform`. */
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
        if (mixed && l == 1) so = NULL;
        if (mixed && l == 2) sa = NULL;
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
    add_plain(m, "lm_head.weight", QS_DTYPE_BF16, 2, VOCAB, H);
}

static uint64_t plain_bytes(const titem *it) {
    return qs_dtype_size(it->dt) * (uint64_t)it->shape[0] *
           (uint64_t)(it->ndim == 2 ? it->shape[1] : 1);
}

/* Shards the exporter should make: the pack-quantized tensors of each linear in order,
 * greedy (tensors never split). */
static int expected_shards(const tmodel *m, int64_t shard_bytes, int static_groups) {
    uint64_t sizes[8 + NLAYERS * 9 * 6], total = 0;
    int n = 0;
    for (int i = 0; i < m->n; ++i) {
        const titem *it = &m->items[i];
        if (!it->linear) {
            sizes[n++] = plain_bytes(it);
            continue;
        }
        const uint64_t b = (uint64_t)it->s.bits;
        const uint64_t G = (uint64_t)qs_quant_ngroups(it->d_in, it->s.group_size);
        sizes[n++] = (uint64_t)it->d_out * ((uint64_t)it->d_in * b / 32) * 4; /* packed */
        sizes[n++] = (uint64_t)it->d_out * G * 2;                             /* scale */
        if (!it->s.sym) sizes[n++] = (uint64_t)it->d_out * b / 32 * G * 4;    /* zero point */
        sizes[n++] = 16;                                                      /* shape */
        if (it->s.desc_act && !static_groups) sizes[n++] = (uint64_t)it->d_in * 4;
        if (it->bias) sizes[n++] = (uint64_t)it->d_out * 2;
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

/* qsource.c reads the compressed-tensors export `out` back: every quantized linear
 * dequantizes to the expected weights (<exp>/m%03d.f32) bit for bit, a float linear has no
 * quantized form, qs_qsource_verify counts every linear; with the GPTQ export of the same
 * codes (gdir), both readers give identical codes, scales, zero points and g_idx. */
static void check_reader(const char *label, const tmodel *m, const char *out, const char *exp,
                         const char *gdir) {
    qs_qsource s, g;
    qs_err e = {0};
    char p[512];
    int64_t nlin = 0, nl = 0, nt = 0;
    memset(&s, 0, sizeof(s));
    memset(&g, 0, sizeof(g));
    int ok = qs_qsource_open_ct(&s, out, &e) == QS_OK;
    CHECK(ok, "%s: open_ct: %s", label, e.msg);
    if (ok && gdir) CHECK(ok = qs_qsource_open_gptq(&g, gdir, &e) == QS_OK, "%s: open_gptq: %s",
                          label, e.msg);
    for (int i = 0; ok && i < m->n; ++i) {
        const titem *it = &m->items[i];
        char mod[128];
        int found = 1;
        if (it->float_of) {
            float one[FF * H];
            snprintf(mod, sizeof(mod), "%.*s", (int)(strlen(it->name) - 7), it->name);
            CHECK(qs_qsource_linear(&s, mod, it->shape[0], it->shape[1], one, &found, &e) ==
                      QS_OK && !found, "%s: float %s read as quantized (%s)", label, mod, e.msg);
        }
        if (!it->linear) continue;
        nlin++;
        const size_t n = (size_t)(it->d_out * it->d_in);
        float *w = malloc(n * sizeof(float)); /* (d_out, d_in) */
        char *want = NULL;
        size_t wn = 0;
        snprintf(p, sizeof(p), "%s/m%03d.f32", exp, i);
        CHECK(qs_read_file(p, &want, &wn, &e) == QS_OK && wn == n * sizeof(float), "%s: %s",
              label, p);
        CHECK(qs_qsource_linear(&s, it->name, it->d_out, it->d_in, w, &found, &e) == QS_OK &&
                  found && want && memcmp(w, want, n * sizeof(float)) == 0,
              "%s: %s read back differs (%s)", label, it->name, e.msg);
        if (gdir) {
            qs_qsource_codes a, b;
            int fa = 0, fb = 0;
            CHECK(qs_qsource_codes_of(&s, it->name, &a, &fa, &e) == QS_OK && fa &&
                      qs_qsource_codes_of(&g, it->name, &b, &fb, &e) == QS_OK && fb,
                  "%s: codes of %s: %s", label, it->name, e.msg);
            const int64_t G = qs_quant_ngroups(it->d_in, it->s.group_size);
            CHECK(fa && fb && a.bits == b.bits && a.group_size == b.group_size &&
                      memcmp(a.codes, b.codes, n) == 0 &&
                      memcmp(a.scales, b.scales, (size_t)(it->d_out * G) * 2) == 0 &&
                      memcmp(a.zeros, b.zeros, (size_t)(it->d_out * G) * 4) == 0 &&
                      memcmp(a.g_idx, b.g_idx, (size_t)it->d_in * 4) == 0,
                  "%s: %s: compressed-tensors and GPTQ codes differ", label, it->name);
            qs_qsource_codes_free(&a);
            qs_qsource_codes_free(&b);
        }
        free(want);
        free(w);
    }
    CHECK(!ok || (qs_qsource_verify(&s, &nl, &nt, &e) == QS_OK && nl == nlin),
          "%s: verify: %lld of %lld linears (%s)", label, (long long)nl, (long long)nlin, e.msg);
    qs_qsource_close(&s);
    qs_qsource_close(&g);
}

/* Exports m to <base>/out streaming one item at a time, writes <base>/expect/ and runs
 * ct_decode.py on it. static_groups: desc_act schemes get natural g_idx and actorder
 * "weight"; otherwise act-order permutations and actorder "group". */
static void run_export(const char *label, const tmodel *m, int64_t shard_bytes,
                       int static_groups, int via_gptq) {
    char base[256], src[300], out[300], exp[300], gdir[300], p[512], cmd[2048];
    qs_err e0 = {0};
    make_base(base, sizeof(base));
    snprintf(src, sizeof(src), "%s/src", base);
    snprintf(out, sizeof(out), "%s/out", base);
    snprintf(exp, sizeof(exp), "%s/expect", base);
    snprintf(gdir, sizeof(gdir), "%s/gptq", base);
    make_src(src);
    mkdir(exp, 0755);

    /* via_gptq (1 = v1, 2 = v2): write a GPTQ export with the same calls, then convert it */
    qs_qexport *gx = NULL;
    qs_qexport_opts go;
    qs_qexport_opts_default(&go);
    go.v2 = via_gptq == 2;
    go.static_groups = static_groups;
    if (via_gptq)
        CHECK(qs_qexport_begin(&gx, &qs_gptq_format, gdir, src, &go, &e0) == QS_OK, "%s: gptq begin: %s",
              label, e0.msg);

    qs_qexport_opts o;
    qs_qexport_opts_default(&o);
    o.shard_bytes = shard_bytes;
    o.static_groups = static_groups;
    qs_qexport *x = NULL;
    qs_err e = {0};
    cJSON *ex = cJSON_CreateObject(), *mods = cJSON_AddObjectToObject(ex, "modules");
    cJSON *tens = cJSON_AddObjectToObject(ex, "tensors");
    cJSON *flt = cJSON_AddArrayToObject(ex, "float_modules");
    if (!via_gptq)
        CHECK(qs_qexport_begin(&x, &qs_ct_format, out, src, &o, &e) == QS_OK, "%s: begin: %s", label, e.msg);
    const int go_on = via_gptq ? gx != NULL : x != NULL;
    for (int i = 0; go_on && i < m->n; ++i) {
        const titem *it = &m->items[i];
        qs_status st = QS_OK;
        if (it->float_of) {
            char mod[128];
            snprintf(mod, sizeof(mod), "%.*s", (int)(strlen(it->name) - 7), it->name);
            st = via_gptq ? qs_qexport_exclude(gx, mod, &e) : qs_qexport_exclude(x, mod, &e);
            cJSON_AddItemToArray(flt, cJSON_CreateString(mod));
        }
        if (st == QS_OK && it->linear)
            st = via_gptq ? qs_qexport_declare_linear(gx, it->name, it->d_out, it->d_in,
                                                          &it->s, it->bias, QS_DTYPE_BF16, &e)
                          : qs_qexport_declare_linear(x, it->name, it->d_out, it->d_in, &it->s,
                                                        it->bias, QS_DTYPE_BF16, &e);
        else if (st == QS_OK)
            st = via_gptq ? qs_qexport_declare_tensor(gx, it->name, it->dt, it->ndim,
                                                          it->shape, &e)
                          : qs_qexport_declare_tensor(x, it->name, it->dt, it->ndim, it->shape,
                                                        &e);
        CHECK(st == QS_OK, "%s: declare %s: %s", label, it->name, e.msg);
    }
    for (int i = 0; go_on && i < m->n && e.code == QS_OK; ++i) {
        const titem *it = &m->items[i];
        if (it->linear) {
            tlin t;
            qs_gptq_scheme made = it->s;
            if (static_groups) made.desc_act = 0; /* static groups: natural g_idx */
            make_linear(it->d_out, it->d_in, &made, via_gptq == 1, &t); /* v1: zero >= 1 */
            uint16_t bias[FF];
            for (int k = 0; k < FF; ++k) bias[k] = (uint16_t)rnd();
            qs_gptq_linear q = {t.codes, t.scales, t.zeros, t.g_idx, it->bias ? bias : NULL};
            CHECK((via_gptq ? qs_qexport_add_linear(gx, it->name, &q, &e)
                            : qs_qexport_add_linear(x, it->name, &q, &e)) == QS_OK,
                  "%s: add %s: %s", label, it->name, e.msg);
            cJSON *j = cJSON_AddObjectToObject(mods, it->name);
            cJSON_AddNumberToObject(j, "bits", it->s.bits);
            cJSON_AddNumberToObject(j, "group_size", it->s.group_size);
            cJSON_AddBoolToObject(j, "sym", it->s.sym);
            if (!it->s.desc_act) cJSON_AddNullToObject(j, "actorder");
            else cJSON_AddStringToObject(j, "actorder", static_groups ? "weight" : "group");
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
            size_t nb = (size_t)plain_bytes(it);
            unsigned char *buf = malloc(nb);
            for (size_t k = 0; k < nb; ++k) buf[k] = (unsigned char)rnd();
            CHECK((via_gptq ? qs_qexport_add_tensor(gx, it->name, buf, nb, &e)
                            : qs_qexport_add_tensor(x, it->name, buf, nb, &e)) == QS_OK,
                  "%s: add %s: %s", label, it->name, e.msg);
            cJSON *j = cJSON_AddObjectToObject(tens, it->name);
            snprintf(p, sizeof(p), "t%03d.bin", i);
            cJSON_AddStringToObject(j, "file", p);
            cJSON_AddStringToObject(j, "dtype", qs_dtype_name(it->dt));
            cJSON *sh = cJSON_AddArrayToObject(j, "shape");
            for (int k = 0; k < it->ndim; ++k)
                cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)it->shape[k]));
            snprintf(p, sizeof(p), "%s/t%03d.bin", exp, i);
            qs_test_write_file(p, buf, nb);
            free(buf);
        }
    }
    if (x && e.code == QS_OK)
        CHECK(qs_qexport_finish(x, &e) == QS_OK, "%s: finish: %s", label, e.msg);
    qs_qexport_free(x);
    if (gx && e.code == QS_OK) {
        int64_t nlin = 0;
        CHECK(qs_qexport_finish(gx, &e) == QS_OK, "%s: gptq finish: %s", label, e.msg);
        CHECK(qs_ct_export_from_gptq(gdir, out, &o, &nlin, &e) == QS_OK, "%s: convert: %s",
              label, e.msg);
        if (g_qshard) {
            /* the CLI writes the same bytes (default shard size: compare single-file runs) */
            snprintf(cmd, sizeof(cmd), "%s convert --to compressed-tensors %s %s/cli > /dev/null"
                     " && cmp -s %s/cli/model.safetensors %s/model.safetensors"
                     " && cmp -s %s/cli/config.json %s/config.json",
                     g_qshard, gdir, base, base, out, base, out);
            if (shard_bytes <= 0) {
                CHECK(system(cmd) == 0, "%s: qshard convert differs from the API", label);
                snprintf(p, sizeof(p), "%s/cli", base);
                qs_test_rm_rf(p);
            }
        }
    }
    qs_qexport_free(gx);

    int nshards = expected_shards(m, shard_bytes, static_groups);
    if (shard_bytes > 0 && shard_bytes < 1000000)
        CHECK(nshards > 2, "%s: the test should make several shards", label);
    cJSON_AddNumberToObject(ex, "nshards", nshards);
    cJSON_AddNumberToObject(ex, "shard_bytes", (double)shard_bytes);
    cJSON_AddStringToObject(ex, "src", src);
    cJSON *ck = cJSON_AddObjectToObject(ex, "config_keys");
    cJSON_AddStringToObject(ck, "model_type", "llama");
    cJSON_AddNumberToObject(ck, "hidden_size", 64);
    cJSON *cp = cJSON_AddArrayToObject(ex, "copied");
    for (size_t i = 0; i < sizeof(k_copied) / sizeof(k_copied[0]); ++i)
        cJSON_AddItemToArray(cp, cJSON_CreateString(k_copied[i]));
    char *text = cJSON_Print(ex);
    snprintf(p, sizeof(p), "%s/expect.json", exp);
    qs_test_write_file(p, text, strlen(text));
    cJSON_free(text);
    cJSON_Delete(ex);

    check_reader(label, m, out, exp, via_gptq ? gdir : NULL);
    int tmp_left = 0;
    CHECK(count_entries(base, ".tmp.", &tmp_left) == (via_gptq ? 4 : 3) && tmp_left == 0,
          "%s: base should hold src, out, expect (and gptq) only", label);
    const char *py = getenv("QS_PYTHON");
    snprintf(cmd, sizeof(cmd), "%s %s %s --expect %s", py && py[0] ? py : "/usr/bin/python3",
             g_script, out, exp);
    int rc = system(cmd);
    CHECK(rc == 0, "%s: ct_decode.py failed (rc %d); kept %s", label, rc, base);
    if (rc == 0) qs_test_rm_rf(base);
}

static void test_exports(void) {
    tmodel m;
    const qs_gptq_scheme w4s128 = {4, 128, 1, 0}, w4a32 = {4, 32, 0, 0}, w8sch = {8, -1, 1, 0};
    const qs_gptq_scheme w4a32act = {4, 32, 0, 1}, w4s64act = {4, 64, 1, 1};
    make_model(&m, 0, &w4s128, 0);
    run_export("uniform w4g128 sym", &m, 0, 0, 0);
    free(m.items);
    make_model(&m, 0, &w4a32, 1);
    run_export("uniform w4g32 asym sharded bias", &m, 30000, 0, 0);
    free(m.items);
    make_model(&m, 0, &w8sch, 0);
    run_export("uniform w8 channel sym", &m, 0, 0, 0);
    free(m.items);
    make_model(&m, 0, &w4a32act, 0);
    run_export("act-order g_idx w4g32 asym", &m, 0, 0, 0);
    run_export("act-order via GPTQ v2", &m, 0, 0, 2);
    free(m.items);
    make_model(&m, 0, &w4s64act, 0);
    run_export("static act-order w4g64 sym", &m, 0, 1, 0);
    run_export("static act-order via GPTQ v1", &m, 0, 1, 1);
    free(m.items);
    make_model(&m, 1, &w4s128, 1);
    run_export("mixed with floats, fused ties, bias, sharded", &m, 40000, 0, 0);
    run_export("mixed with floats single", &m, 0, 0, 0);
    run_export("mixed via GPTQ v1 (dynamic map)", &m, 30000, 0, 1);
    run_export("mixed via GPTQ v2 (dynamic map)", &m, 0, 0, 2);
    free(m.items);
}

/* ---- error paths ----------------------------------------------------------------------- */

static qs_qexport *begin_in(const char *base, int static_groups, qs_err *e) {
    char src[300], out[300];
    snprintf(src, sizeof(src), "%s/src", base);
    snprintf(out, sizeof(out), "%s/out", base);
    if (!qs_test_exists(src)) make_src(src);
    qs_qexport_opts o;
    qs_qexport_opts_default(&o);
    o.static_groups = static_groups;
    qs_qexport *x = NULL;
    CHECK(qs_qexport_begin(&x, &qs_ct_format, out, src, &o, e) == QS_OK, "begin: %s", e->msg);
    return x;
}

static void check_clean(const char *base, const char *what) {
    int tmp = 0;
    int n = count_entries(base, ".tmp.", &tmp);
    CHECK(n == 1 && tmp == 0, "%s: %d entries (%d temporary) left in %s", what, n, tmp, base);
}

/* Declares one linear with `decl` and adds data made with `made`; returns add's status. */
static qs_status one_linear(const char *base, int static_groups, const qs_gptq_scheme *decl,
                            const qs_gptq_scheme *made, int zero_min1, qs_err *e) {
    const char *mod = "model.layers.0.mlp.down_proj";
    qs_qexport *x = begin_in(base, static_groups, e);
    qs_status st = qs_qexport_declare_linear(x, mod, 64, 64, decl, 0, QS_DTYPE_F16, e);
    if (st == QS_OK) {
        tlin t;
        make_linear(64, 64, made, zero_min1, &t);
        qs_gptq_linear q = {t.codes, t.scales, t.zeros, t.g_idx, NULL};
        st = qs_qexport_add_linear(x, mod, &q, e);
        tlin_free(&t);
    }
    qs_qexport_free(x);
    return st;
}

static void test_errors(void) {
    char base[256];
    make_base(base, sizeof(base));
    qs_err e = {0};
    const qs_gptq_scheme w4 = {4, 32, 0, 0}, w4s = {4, 32, 1, 0}, w3 = {3, 32, 1, 0};
    const qs_gptq_scheme w8a = {8, 32, 0, 0}, w2 = {2, 32, 1, 0}, w4act = {4, 32, 0, 1};
    const qs_gptq_scheme w8s = {8, 32, 1, 0};

    /* schemes vLLM does not load here: refused with one line naming the module */
    const qs_gptq_scheme *bad[3] = {&w3, &w8a, &w2};
    for (int k = 0; k < 3; ++k) {
        qs_err_clear(&e);
        qs_qexport *x = begin_in(base, 0, &e);
        CHECK(qs_qexport_declare_linear(x, "model.layers.0.mlp.up_proj", 64, 64, bad[k], 0,
                                          QS_DTYPE_F16, &e) == QS_ERR_INPUT &&
                  strstr(e.msg, "model.layers.0.mlp.up_proj") &&
                  strstr(e.msg, "compressed-tensors") && !strchr(e.msg, '\n'),
              "scheme w%d %s: %s", bad[k]->bits, bad[k]->sym ? "sym" : "asym", e.msg);
        qs_qexport_free(x);
        check_clean(base, "scheme");
    }
    /* shapes without a packed layout */
    qs_err_clear(&e);
    qs_qexport *x = begin_in(base, 0, &e);
    CHECK(qs_qexport_declare_linear(x, "model.layers.0.mlp.up_proj", 100, 64, &w4, 0,
                                      QS_DTYPE_F16, &e) == QS_ERR_INPUT &&
              strstr(e.msg, "up_proj") && strstr(e.msg, "output size"),
          "d_out 100: %s", e.msg);
    qs_err_clear(&e);
    CHECK(qs_qexport_declare_linear(x, "model.layers.0.mlp.gate_proj", 64, 80, &w4, 0,
                                      QS_DTYPE_F16, &e) == QS_ERR_INPUT &&
              strstr(e.msg, "group size"),
          "80 mod 32: %s", e.msg);
    qs_qexport_free(x);
    check_clean(base, "shape");

    /* q and k of one layer with different schemes: vLLM fuses them */
    qs_err_clear(&e);
    x = begin_in(base, 0, &e);
    qs_qexport_declare_linear(x, "model.layers.1.self_attn.q_proj", 64, 64, &w4, 0,
                                QS_DTYPE_F16, &e);
    qs_qexport_declare_linear(x, "model.layers.1.self_attn.k_proj", 32, 64, &w8s, 0,
                                QS_DTYPE_F16, &e);
    CHECK(e.code == QS_OK, "declare: %s", e.msg);
    tlin t;
    make_linear(64, 64, &w4, 0, &t);
    qs_gptq_linear q = {t.codes, t.scales, t.zeros, t.g_idx, NULL};
    CHECK(qs_qexport_add_linear(x, "model.layers.1.self_attn.q_proj", &q, &e) == QS_ERR_INPUT &&
              strstr(e.msg, "model.layers.1.self_attn.k_proj") && strstr(e.msg, "fuses"),
          "fused mismatch: %s", e.msg);
    qs_qexport_free(x);
    check_clean(base, "fused mismatch");
    /* gate float, up quantized */
    qs_err_clear(&e);
    x = begin_in(base, 0, &e);
    qs_qexport_exclude(x, "model.layers.1.mlp.gate_proj", &e);
    qs_qexport_declare_linear(x, "model.layers.1.mlp.up_proj", 64, 64, &w4, 0, QS_DTYPE_F16,
                                &e);
    CHECK(qs_qexport_add_linear(x, "model.layers.1.mlp.up_proj", &q, &e) == QS_ERR_INPUT &&
              strstr(e.msg, "up_proj") && strstr(e.msg, "float"),
          "fused float: %s", e.msg);
    qs_qexport_free(x);
    check_clean(base, "fused float");
    tlin_free(&t);

    /* a symmetric scheme declared for asymmetric data (zero points are not 2^(b-1)) */
    qs_err_clear(&e);
    CHECK(one_linear(base, 0, &w4s, &w4, 0, &e) == QS_ERR_INPUT && strstr(e.msg, "down_proj") &&
              strstr(e.msg, "symmetric"),
          "sym zero: %s", e.msg);
    check_clean(base, "sym zero");
    /* permuted g_idx where none is written: no desc_act, or static groups */
    qs_err_clear(&e);
    CHECK(one_linear(base, 0, &w4, &w4act, 0, &e) == QS_ERR_INPUT &&
              strstr(e.msg, "down_proj") && strstr(e.msg, "desc_act"),
          "g_idx no desc_act: %s", e.msg);
    check_clean(base, "g_idx");
    qs_err_clear(&e);
    CHECK(one_linear(base, 1, &w4act, &w4act, 0, &e) == QS_ERR_INPUT &&
              strstr(e.msg, "static_groups"),
          "g_idx static: %s", e.msg);
    check_clean(base, "g_idx static");
    /* and the good case of the same helper, so the error checks above mean something */
    qs_err_clear(&e);
    CHECK(one_linear(base, 0, &w4act, &w4act, 0, &e) == QS_OK, "act-order ok: %s", e.msg);
    check_clean(base, "unfinished");
    qs_test_rm_rf(base);
}

/* `qshard convert` of a GPTQ export with a 3-bit linear: exit 2, one line naming the module,
 * nothing written; a bad --to is a usage error. */
static void test_cli_errors(void) {
    char base[256], src[300], gdir[300], cmd[2048], p[512];
    make_base(base, sizeof(base));
    snprintf(src, sizeof(src), "%s/src", base);
    snprintf(gdir, sizeof(gdir), "%s/gptq", base);
    make_src(src);
    qs_qexport_opts go;
    qs_qexport_opts_default(&go);
    go.v2 = 1;
    qs_qexport *gx = NULL;
    qs_err e = {0};
    const qs_gptq_scheme w3 = {3, 32, 1, 0};
    tlin t;
    make_linear(64, 64, &w3, 0, &t);
    qs_gptq_linear q = {t.codes, t.scales, t.zeros, t.g_idx, NULL};
    CHECK(qs_qexport_begin(&gx, &qs_gptq_format, gdir, src, &go, &e) == QS_OK &&
              qs_qexport_declare_linear(gx, "model.layers.0.mlp.down_proj", 64, 64, &w3, 0,
                                            QS_DTYPE_F16, &e) == QS_OK &&
              qs_qexport_add_linear(gx, "model.layers.0.mlp.down_proj", &q, &e) == QS_OK &&
              qs_qexport_finish(gx, &e) == QS_OK,
          "w3 gptq export: %s", e.msg);
    qs_qexport_free(gx);
    tlin_free(&t);
    snprintf(p, sizeof(p), "%s/err.txt", base);
    snprintf(cmd, sizeof(cmd), "%s convert --to compressed-tensors %s %s/ct 2> %s; test $? = 2",
             g_qshard, gdir, base, p);
    CHECK(system(cmd) == 0, "convert w3: exit code is not 2");
    char msg[1024] = {0};
    FILE *f = fopen(p, "r");
    size_t n = f ? fread(msg, 1, sizeof(msg) - 1, f) : 0;
    if (f) fclose(f);
    CHECK(n > 0 && strncmp(msg, "qshard: error: model.layers.0.mlp.down_proj: w3g32 sym", 54) == 0 &&
              strchr(msg, '\n') == msg + n - 1,
          "convert w3: stderr '%s'", msg);
    snprintf(p, sizeof(p), "%s/ct", base);
    CHECK(!qs_test_exists(p), "convert w3: output left behind");
    snprintf(cmd, sizeof(cmd), "%s convert --to gguf %s %s/ct 2>&1 | grep -q -- '--to must be'",
             g_qshard, gdir, base);
    CHECK(system(cmd) == 0, "convert --to gguf: not refused as a usage error");
    int tmp = 0;
    CHECK(count_entries(base, ".tmp.", &tmp) == 3 && tmp == 0, "convert: leftovers in %s", base);
    qs_test_rm_rf(base);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s <ct_decode.py>\n", argv[0]);
        return 2;
    }
    g_script = argv[1];
    g_qshard = argc > 2 ? argv[2] : NULL;
    test_errors();
    if (g_qshard) test_cli_errors();
    test_exports();
    return qs_test_finish("test_ct_export");
}
