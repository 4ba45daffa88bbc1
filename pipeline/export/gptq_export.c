/* gptq_export.c: Hugging Face GPTQ checkpoint directory (tensors, quantization_config). The
 * directory itself (shards, index, config.json, side files) is export_dir.c's; items, module
 * regexes and fused ties are export_items.c's. */
#include "gptq_export.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "pack.h"
#include "quant.h"
#include "st_writer.h"

struct qs_gptq_export {
    qs_gptq_export_opts opts;
    qs_export_core c; /* directory, items, finished: export_items.h */
};

void qs_gptq_export_opts_default(qs_gptq_export_opts *o) {
    memset(o, 0, sizeof(*o));
    o->shard_bytes = (int64_t)4 << 30;
    o->v2 = 0;
    o->static_groups = 0;
    o->true_sequential = 1;
    o->damp_percent = 0.01;
    o->overwrite = 0;
}

/* ---- declarations -------------------------------------------------------------------- */

qs_status qs_gptq_export_begin(qs_gptq_export **out, const char *dir, const char *src_model_dir,
                               const qs_gptq_export_opts *opts, qs_err *err) {
    *out = NULL;
    qs_gptq_export *x = qs_calloc(1, sizeof(*x), err, "GPTQ exporter");
    if (!x) return QS_FAIL(err, QS_ERR_RUNTIME, "%s: out of memory", dir);
    x->opts = *opts;
    qs_status st = qs_export_core_begin(&x->c, dir, src_model_dir, opts->shard_bytes,
                                        opts->overwrite, err);
    if (st == QS_OK) *out = x;
    else qs_gptq_export_free(x);
    return st;
}

qs_status qs_gptq_export_declare_linear(qs_gptq_export *x, const char *module, int64_t d_out,
                                        int64_t d_in, const qs_gptq_scheme *scheme, int has_bias,
                                        qs_dtype bias_dtype, qs_err *err) {
    qs_status st = QS_OK;
    qs_err why = {0};
    char name[QS_EXPORT_KEY_MAX];
    qs_export_item *it = NULL;
    if (!qs_pack_can_serve(d_out, d_in, scheme->bits, scheme->group_size, &why))
        QS_THROW(err, QS_ERR_INPUT, "%s: (%lld, %lld) at w%dg%d has no GPTQ layout: %s", module,
                 (long long)d_out, (long long)d_in, scheme->bits, scheme->group_size, why.msg);
    QS_CHECK(qs_export_core_linear_begin(&x->c, module, scheme, d_out, d_in, has_bias, bias_dtype,
                                         16, &it, err));
    const int64_t b = scheme->bits, G = qs_quant_ngroups(d_in, scheme->group_size);
    int64_t sh[2];
    sh[0] = d_in * b / 32;
    sh[1] = d_out;
    snprintf(name, sizeof(name), "%s.qweight", module);
    QS_CHECK(qs_export_dir_declare(x->c.d, name, QS_DTYPE_I32, 2, sh, NULL, err));
    sh[0] = G;
    sh[1] = d_out * b / 32;
    snprintf(name, sizeof(name), "%s.qzeros", module);
    QS_CHECK(qs_export_dir_declare(x->c.d, name, QS_DTYPE_I32, 2, sh, NULL, err));
    sh[0] = G;
    sh[1] = d_out;
    snprintf(name, sizeof(name), "%s.scales", module);
    QS_CHECK(qs_export_dir_declare(x->c.d, name, QS_DTYPE_F16, 2, sh, NULL, err));
    sh[0] = d_in;
    snprintf(name, sizeof(name), "%s.g_idx", module);
    QS_CHECK(qs_export_dir_declare(x->c.d, name, QS_DTYPE_I32, 1, sh, NULL, err));
    QS_CHECK(qs_export_core_linear_end(&x->c, module, it, err));
done:
    if (st != QS_OK && it) x->c.items.failed = 1; /* half-declared: the exporter is unusable */
    return st;
}

qs_status qs_gptq_export_declare_tensor(qs_gptq_export *x, const char *name, qs_dtype dt,
                                        int ndim, const int64_t *shape, qs_err *err) {
    return qs_export_core_declare_tensor(&x->c, name, dt, ndim, shape, err);
}

qs_status qs_gptq_export_exclude(qs_gptq_export *x, const char *module, qs_err *err) {
    return qs_export_items_exclude(&x->c.items, module, err);
}

uint64_t qs_gptq_export_data_bytes(const qs_gptq_export *x) {
    return qs_export_dir_data_bytes(x->c.d);
}

/* ---- streaming ----------------------------------------------------------------------- */

qs_status qs_gptq_export_add_linear(qs_gptq_export *x, const char *module,
                                    const qs_gptq_linear *q, qs_err *err) {
    qs_status st = QS_OK;
    int32_t *qweight = NULL, *qzeros = NULL, *g_idx = NULL;
    uint16_t *scales = NULL;
    qs_export_item *it = NULL;
    qs_err pe = {0};
    qs_pack_bytes sz;
    QS_CHECK(qs_export_items_begin_add(&x->c.items, x->c.d, x->c.finished, module, 1, &it, err));
    const qs_gptq_scheme *s = &it->scheme;
    const int64_t d_out = it->d_out, d_in = it->d_in;
    if (it->has_bias != (q->bias != NULL))
        QS_THROW(err, QS_ERR_INPUT, "%s: bias %s but %s declared", module,
                 q->bias ? "given" : "missing", it->has_bias ? "one was" : "none was");
    if (!s->desc_act) {
        for (int64_t j = 0; j < d_in; ++j)
            if (q->g_idx[j] != (s->group_size < 1 ? 0 : (int32_t)(j / s->group_size)))
                QS_THROW(err, QS_ERR_INPUT,
                         "%s: g_idx[%lld] = %d is not the natural group but desc_act is false "
                         "(loaders would ignore g_idx)",
                         module, (long long)j, q->g_idx[j]);
    }
    if (qs_pack_sizes(d_out, d_in, s->bits, s->group_size, &sz, &pe) != QS_OK)
        QS_THROW(err, pe.code, "%s: %s", module, pe.msg);
    qweight = qs_malloc((size_t)sz.qweight, err, "qweight");  /* (d_in*b/32, d_out) */
    qzeros = qs_malloc((size_t)sz.qzeros, err, "qzeros");     /* (G, d_out*b/32) */
    scales = qs_malloc((size_t)sz.scales, err, "scales");     /* (G, d_out) */
    g_idx = qs_malloc((size_t)sz.g_idx, err, "g_idx");        /* (d_in,) */
    if (!qweight || !qzeros || !scales || !g_idx)
        QS_THROW(err, QS_ERR_RUNTIME, "%s: out of memory packing %lld bytes", module,
                 (long long)sz.total);
    if (qs_pack_gptq(q->codes, q->scales, q->zeros, q->g_idx, d_out, d_in, s->bits,
                     s->group_size, !x->opts.v2, qweight, qzeros, scales, g_idx, &pe) != QS_OK)
        QS_THROW(err, pe.code, "%s: %s", module, pe.msg);
    const int64_t t = it->t0;
    QS_CHECK(qs_export_dir_put(x->c.d, t + 0, qweight, (size_t)sz.qweight, err));
    QS_CHECK(qs_export_dir_put(x->c.d, t + 1, qzeros, (size_t)sz.qzeros, err));
    QS_CHECK(qs_export_dir_put(x->c.d, t + 2, scales, (size_t)sz.scales, err));
    QS_CHECK(qs_export_dir_put(x->c.d, t + 3, g_idx, (size_t)sz.g_idx, err));
    if (it->has_bias)
        QS_CHECK(qs_export_dir_put(x->c.d, t + 4, q->bias,
                                   (size_t)qs_export_dir_tensor_bytes(x->c.d, t + 4), err));
    x->c.items.next++;
done:
    if (st != QS_OK && it) x->c.items.failed = 1;
    free(qweight);
    free(qzeros);
    free(scales);
    free(g_idx);
    return st;
}

qs_status qs_gptq_export_add_tensor(qs_gptq_export *x, const char *name, const void *data,
                                    size_t nbytes, qs_err *err) {
    return qs_export_core_add_tensor(&x->c, name, data, nbytes, err);
}

/* ---- quantization_config ------------------------------------------------------------- */

int qs_gptq_scheme_marlin(const qs_gptq_scheme *s) {
    /* vLLM gptq_marlin.py TYPE_MAP keys and marlin_utils' supported group sizes */
    const int gs_ok = s->group_size == -1 || s->group_size == 32 || s->group_size == 64 ||
                      s->group_size == 128;
    return (s->bits == 4 || s->bits == 8) && s->sym && gs_ok;
}

static cJSON *scheme_json(const qs_gptq_scheme *s) {
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    if (!cJSON_AddNumberToObject(o, "bits", s->bits) ||
        !cJSON_AddNumberToObject(o, "group_size", s->group_size) ||
        !cJSON_AddBoolToObject(o, "desc_act", s->desc_act) ||
        !cJSON_AddBoolToObject(o, "sym", s->sym)) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

/* The quantization_config object (also the body of quantize_config.json). */
static qs_status quant_config(const qs_gptq_export *x, cJSON **out, qs_err *err) {
    const qs_export_items *its = &x->c.items;
    const char *dir = qs_export_dir_path(x->c.d);
    qs_status st = QS_OK;
    cJSON *o = NULL;
    *out = NULL;
    /* Top-level scheme. vLLM picks its kernel from the top-level fields alone
     * (GPTQMarlinConfig.override_quantization_method -> is_gptq_marlin_compatible, vLLM
     * vllm/model_executor/layers/quantization/gptq_marlin.py): bits/sym in {(4, true),
     * (8, true)} and a Marlin group size select gptq_marlin, whose per-module config
     * (TYPE_MAP[(bits, sym)]) rejects any other `dynamic` scheme. So when some linear is
     * not Marlin-servable, the top level must not be either: it is then the most used
     * scheme among the non-Marlin ones, and vLLM takes its gptq path, which loads every
     * scheme of the allocation. Otherwise: the most used scheme (ties: first declared). */
    int all_marlin = 1;
    for (int64_t i = 0; i < its->n; ++i)
        if (its->v[i].linear && !qs_gptq_scheme_marlin(&its->v[i].scheme)) all_marlin = 0;
    const qs_export_item *top = NULL;
    int64_t top_count = 0, nlin = 0;
    for (int64_t i = 0; i < its->n; ++i) {
        const qs_export_item *a = &its->v[i];
        if (!a->linear) continue;
        nlin++;
        if (!all_marlin && qs_gptq_scheme_marlin(&a->scheme)) continue;
        int64_t c = 0;
        for (int64_t j = 0; j < its->n; ++j)
            if (its->v[j].linear && qs_export_scheme_eq(&a->scheme, &its->v[j].scheme)) c++;
        if (c > top_count) {
            top = a;
            top_count = c;
        }
    }

    if (!top) QS_THROW(err, QS_ERR_INPUT, "%s: no quantized linear to export", dir);
    o = cJSON_CreateObject();
    if (!o) QS_THROW(err, QS_ERR_RUNTIME, "%s: out of memory (config)", dir);
    /* vLLM and GPTQModel read "lm_head": is lm_head a GPTQ linear? */
    const int lm_head = qs_export_items_lm_head(its);
    int ok = cJSON_AddNumberToObject(o, "bits", top->scheme.bits) &&
             cJSON_AddNumberToObject(o, "group_size", top->scheme.group_size) &&
             cJSON_AddBoolToObject(o, "desc_act", top->scheme.desc_act) &&
             cJSON_AddBoolToObject(o, "sym", top->scheme.sym) &&
             cJSON_AddBoolToObject(o, "static_groups", x->opts.static_groups) &&
             cJSON_AddBoolToObject(o, "true_sequential", x->opts.true_sequential) &&
             cJSON_AddNumberToObject(o, "damp_percent", x->opts.damp_percent) &&
             cJSON_AddBoolToObject(o, "lm_head", lm_head) &&
             cJSON_AddStringToObject(o, "quant_method", "gptq") &&
             cJSON_AddStringToObject(o, "checkpoint_format", x->opts.v2 ? "gptq_v2" : "gptq");
    if (!ok) QS_THROW(err, QS_ERR_RUNTIME, "%s: out of memory (config)", dir);
    if (top_count < nlin || its->nexcl > 0) {
        /* mixed: one key per module or fused group, so every module resolves explicitly;
         * float modules first as "-:" keys (loaders then leave them unquantized) */
        cJSON *dyn = cJSON_AddObjectToObject(o, "dynamic");
        if (!dyn) QS_THROW(err, QS_ERR_RUNTIME, "%s: out of memory (config)", dir);
        for (int64_t k = 0; k < its->nexcl; ++k) {
            char key[QS_EXPORT_KEY_MAX];
            cJSON *v = cJSON_CreateObject();
            if (!v) QS_THROW(err, QS_ERR_RUNTIME, "%s: out of memory (config)", dir);
            snprintf(key, sizeof(key), "-:%s", its->excl[k]);
            cJSON_AddItemToObject(dyn, key, v);
        }
        for (int64_t i = 0; i < its->n; ++i) {
            const qs_export_item *a = &its->v[i];
            char key[QS_EXPORT_KEY_MAX];
            if (!a->linear) continue;
            snprintf(key, sizeof(key), "+:%s", a->regex);
            if (cJSON_GetObjectItemCaseSensitive(dyn, key)) continue;
            cJSON *v = scheme_json(&a->scheme);
            if (!v) QS_THROW(err, QS_ERR_RUNTIME, "%s: out of memory (config)", dir);
            cJSON_AddItemToObject(dyn, key, v);
        }
    }
    *out = o;
    o = NULL;
done:
    cJSON_Delete(o);
    return st;
}

qs_status qs_gptq_export_finish(qs_gptq_export *x, qs_err *err) {
    qs_status st = QS_OK;
    cJSON *qc = NULL;
    QS_CHECK(qs_export_core_check_complete(&x->c, err));
    QS_CHECK(quant_config(x, &qc, err));
    QS_CHECK(qs_export_core_commit(&x->c, qc, "quantize_config.json", err));
done:
    if (st != QS_OK) x->c.items.failed = 1;
    cJSON_Delete(qc);
    return st;
}

void qs_gptq_export_free(qs_gptq_export *x) {
    if (!x) return;
    qs_export_core_free(&x->c);
    free(x);
}
