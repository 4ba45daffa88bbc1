/* gptq_export.c: the GPTQ format of the checkpoint writer (qexport.h): the tensors of a
 * quantized linear, their packing (pack.c) and the quantization_config. The directory, items
 * and the rest of the writer are qexport.c's. */
#include "gptq_export.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "pack.h"
#include "quant.h"
#include "st_writer.h"

/* ---- declarations -------------------------------------------------------------------- */

static qs_status gptq_check(const char *module, int64_t d_out, int64_t d_in,
                            const qs_gptq_scheme *s, const qs_qexport_opts *o, qs_err *err) {
    qs_err why = {0};
    (void)o;
    if (!qs_pack_can_serve(d_out, d_in, s->bits, s->group_size, &why))
        return QS_FAIL(err, QS_ERR_INPUT, "%s: (%lld, %lld) at w%dg%d has no GPTQ layout: %s",
                       module, (long long)d_out, (long long)d_in, s->bits, s->group_size,
                       why.msg);
    return QS_OK;
}

/* qweight (d_in*b/32, d_out) I32, qzeros (G, d_out*b/32) I32, scales (G, d_out) F16,
 * g_idx (d_in,) I32 */
static int gptq_parts(int64_t d_out, int64_t d_in, const qs_gptq_scheme *s,
                      const qs_qexport_opts *o, qs_qexport_part *out) {
    const int64_t b = s->bits, G = qs_quant_ngroups(d_in, s->group_size);
    (void)o;
    out[0] = (qs_qexport_part){"qweight", QS_DTYPE_I32, 2, {d_in * b / 32, d_out}};
    out[1] = (qs_qexport_part){"qzeros", QS_DTYPE_I32, 2, {G, d_out * b / 32}};
    out[2] = (qs_qexport_part){"scales", QS_DTYPE_F16, 2, {G, d_out}};
    out[3] = (qs_qexport_part){"g_idx", QS_DTYPE_I32, 1, {d_in, 0}};
    return 4;
}

/* ---- packing ------------------------------------------------------------------------- */

static qs_status gptq_put(qs_export_dir *d, const qs_export_item *it, const qs_gptq_linear *q,
                          const qs_qexport_opts *o, qs_err *err) {
    qs_status st = QS_OK;
    int32_t *qweight = NULL, *qzeros = NULL, *g_idx = NULL;
    uint16_t *scales = NULL;
    qs_err pe = {0};
    qs_pack_bytes sz;
    const char *module = it->name;
    const qs_gptq_scheme *s = &it->scheme;
    const int64_t d_out = it->d_out, d_in = it->d_in;
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
                     s->group_size, !o->v2, qweight, qzeros, scales, g_idx, &pe) != QS_OK)
        QS_THROW(err, pe.code, "%s: %s", module, pe.msg);
    const int64_t t = it->t0;
    QS_CHECK(qs_export_dir_put(d, t + 0, qweight, (size_t)sz.qweight, err));
    QS_CHECK(qs_export_dir_put(d, t + 1, qzeros, (size_t)sz.qzeros, err));
    QS_CHECK(qs_export_dir_put(d, t + 2, scales, (size_t)sz.scales, err));
    QS_CHECK(qs_export_dir_put(d, t + 3, g_idx, (size_t)sz.g_idx, err));
done:
    free(qweight);
    free(qzeros);
    free(scales);
    free(g_idx);
    return st;
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
static qs_status gptq_config(const qs_export_items *its, const char *dir,
                             const qs_qexport_opts *opts, cJSON **out, qs_err *err) {
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
             cJSON_AddBoolToObject(o, "static_groups", opts->static_groups) &&
             cJSON_AddBoolToObject(o, "true_sequential", opts->true_sequential) &&
             cJSON_AddNumberToObject(o, "damp_percent", opts->damp_percent) &&
             cJSON_AddBoolToObject(o, "lm_head", lm_head) &&
             cJSON_AddStringToObject(o, "quant_method", "gptq") &&
             cJSON_AddStringToObject(o, "checkpoint_format", opts->v2 ? "gptq_v2" : "gptq");
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

const qs_qexport_format qs_gptq_format = {
    .name = "GPTQ",
    .suffix_room = 16, /* ".qweight" ... ".bias" */
    .side_json = "quantize_config.json",
    .check = gptq_check,
    .parts = gptq_parts,
    .put = gptq_put,
    .config = gptq_config,
};
