/* ct_export.c: the compressed-tensors "pack-quantized" format of the checkpoint writer
 * (qexport.h): the tensors of a quantized linear, their packing (bit streams: pack.c) and
 * the quantization_config. The directory, items and the rest are qexport.c's. */
#include "ct_export.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "pack.h"
#include "quant.h"

/* What the writer records for a scheme's act-order: "group" writes weight_g_idx. */
typedef enum ct_actorder { CT_ACT_NONE = 0, CT_ACT_WEIGHT = 1, CT_ACT_GROUP = 2 } ct_actorder;

static ct_actorder actorder_of(const qs_qexport_opts *o, const qs_gptq_scheme *s) {
    if (!s->desc_act) return CT_ACT_NONE;
    return o->static_groups ? CT_ACT_WEIGHT : CT_ACT_GROUP;
}

int qs_ct_scheme_supported(const qs_gptq_scheme *s, qs_err *why) {
    /* vLLM CompressedTensorsWNA16 + its kernels: symmetric uint4b8 / uint8b128 and
     * asymmetric uint4 are served on GPU (Marlin takes zero points at 4 bits only); the CPU
     * kernel takes uint4 and uint4b8. Nothing else is worth writing. */
    if ((s->bits == 4) || (s->bits == 8 && s->sym)) return 1;
    if (why)
        QS_FAIL(why, QS_ERR_INPUT, "w%dg%d %s: the compressed-tensors export takes 4-bit "
                "symmetric or asymmetric and 8-bit symmetric schemes (what vLLM loads)",
                s->bits, s->group_size, s->sym ? "sym" : "asym");
    return 0;
}

qs_status qs_ct_linear_bytes(int64_t d_out, int64_t d_in, const qs_gptq_scheme *scheme,
                             int static_groups, int64_t *bytes, qs_err *err) {
    qs_err why = {0};
    *bytes = -1;
    if (!qs_ct_scheme_supported(scheme, &why)) return QS_FAIL(err, QS_ERR_INPUT, "%s", why.msg);
    if (!qs_pack_can_serve(d_out, d_in, scheme->bits, scheme->group_size, &why))
        return QS_FAIL(err, QS_ERR_INPUT, "(%lld, %lld) at w%dg%d has no packed layout: %s",
                       (long long)d_out, (long long)d_in, scheme->bits, scheme->group_size,
                       why.msg);
    const int64_t b = scheme->bits, G = qs_quant_ngroups(d_in, scheme->group_size);
    int64_t n = d_out * (d_in * b / 32) * 4 + d_out * G * 2 + 2 * 8;
    if (!scheme->sym) n += (d_out * b / 32) * G * 4;
    if (scheme->desc_act && !static_groups) n += d_in * 4;
    *bytes = n;
    return QS_OK;
}

/* ---- declarations -------------------------------------------------------------------- */

static qs_status ct_check(const char *module, int64_t d_out, int64_t d_in,
                          const qs_gptq_scheme *s, const qs_qexport_opts *o, qs_err *err) {
    int64_t bytes = 0;
    qs_err why = {0};
    if (qs_ct_linear_bytes(d_out, d_in, s, o->static_groups, &bytes, &why) != QS_OK)
        return QS_FAIL(err, why.code, "%s: %s", module, why.msg);
    return QS_OK;
}

/* weight_packed (O, I*b/32) I32, weight_scale (O, G) F16, weight_zero_point (O*b/32, G) I32
 * if asymmetric, weight_shape (2,) I64, weight_g_idx (I,) I32 with actorder "group" */
static int ct_parts(int64_t d_out, int64_t d_in, const qs_gptq_scheme *s,
                    const qs_qexport_opts *o, qs_qexport_part *out) {
    const int64_t b = s->bits, G = qs_quant_ngroups(d_in, s->group_size);
    int n = 0;
    out[n++] = (qs_qexport_part){"weight_packed", QS_DTYPE_I32, 2, {d_out, d_in * b / 32}};
    out[n++] = (qs_qexport_part){"weight_scale", QS_DTYPE_F16, 2, {d_out, G}};
    if (!s->sym)
        out[n++] = (qs_qexport_part){"weight_zero_point", QS_DTYPE_I32, 2, {d_out * b / 32, G}};
    out[n++] = (qs_qexport_part){"weight_shape", QS_DTYPE_I64, 1, {2, 0}};
    if (actorder_of(o, s) == CT_ACT_GROUP)
        out[n++] = (qs_qexport_part){"weight_g_idx", QS_DTYPE_I32, 1, {d_in, 0}};
    return n;
}

/* ---- streaming ----------------------------------------------------------------------- */

static qs_status ct_put(qs_export_dir *d, const qs_export_item *it, const qs_gptq_linear *q,
                        const qs_qexport_opts *o, qs_err *err) {
    qs_status st = QS_OK;
    uint32_t *packed = NULL, *zp = NULL, *row = NULL;
    const char *module = it->name;
    const qs_gptq_scheme *s = &it->scheme;
    const int64_t d_out = it->d_out, d_in = it->d_in, b = s->bits;
    const int64_t G = qs_quant_ngroups(d_in, s->group_size);
    const int32_t maxq = (1 << s->bits) - 1, zsym = 1 << (s->bits - 1);
    const ct_actorder act = actorder_of(o, s);
    const int64_t wrow = d_in * b / 32, zrows = d_out * b / 32;
    for (int64_t j = 0; j < d_in; ++j)
        if (q->g_idx[j] < 0 || q->g_idx[j] >= G)
            QS_THROW(err, QS_ERR_INPUT, "%s: g_idx[%lld] = %d is outside [0, %lld)", module,
                     (long long)j, q->g_idx[j], (long long)G);
    if (act != CT_ACT_GROUP && !qs_export_g_idx_natural(q->g_idx, d_in, s->group_size))
        QS_THROW(err, QS_ERR_INPUT,
                 "%s: g_idx is not the natural grouping but no weight_g_idx is written (%s)",
                 module, act == CT_ACT_WEIGHT ? "static_groups" : "desc_act is false");
    packed = qs_calloc((size_t)(d_out * wrow), sizeof(uint32_t), err, "weight_packed");
    zp = s->sym ? NULL : qs_calloc((size_t)(zrows * G), sizeof(uint32_t), err, "zero points");
    row = qs_malloc((size_t)(d_in > d_out ? d_in : d_out) * sizeof(uint32_t), err, "pack row");
    if (!packed || (!s->sym && !zp) || !row)
        QS_THROW(err, QS_ERR_RUNTIME, "%s: out of memory packing", module);
    /* weight_packed (O, I*b/32): row o is the stream of its I codes */
    for (int64_t o = 0; o < d_out; ++o) {
        for (int64_t j = 0; j < d_in; ++j) {
            const uint8_t c = q->codes[o * d_in + j];
            if (c > maxq)
                QS_THROW(err, QS_ERR_INPUT, "%s: code %d at (%lld, %lld) exceeds %d bits", module,
                         c, (long long)o, (long long)j, s->bits);
            row[j] = c;
        }
        qs_pack_stream(row, d_in, s->bits, packed + o * wrow, 1);
    }
    /* zero points: asymmetric -> weight_zero_point (O*b/32, G), column g the stream of its O
     * zeros; symmetric -> none stored, and the data must have the implied zero 2^(b-1) */
    for (int64_t g = 0; g < G; ++g) {
        for (int64_t o = 0; o < d_out; ++o) {
            const int32_t z = q->zeros[o * G + g];
            if (s->sym && z != zsym)
                QS_THROW(err, QS_ERR_INPUT,
                         "%s: symmetric scheme but zero point %d at (%lld, %lld) is not %d",
                         module, z, (long long)o, (long long)g, zsym);
            if (z < 0 || z > maxq)
                QS_THROW(err, QS_ERR_INPUT, "%s: zero point %d at (%lld, %lld) outside [0, %d]",
                         module, z, (long long)o, (long long)g, maxq);
            row[o] = (uint32_t)z;
        }
        if (!s->sym) qs_pack_stream(row, d_out, s->bits, zp + g, G);
    }
    const int64_t shape[2] = {d_out, d_in};
    int64_t t = it->t0;
    QS_CHECK(qs_export_dir_put(d, t++, packed, (size_t)(d_out * wrow) * 4, err));
    QS_CHECK(qs_export_dir_put(d, t++, q->scales, (size_t)(d_out * G) * 2, err));
    if (!s->sym) QS_CHECK(qs_export_dir_put(d, t++, zp, (size_t)(zrows * G) * 4, err));
    QS_CHECK(qs_export_dir_put(d, t++, shape, sizeof(shape), err));
    if (act == CT_ACT_GROUP) QS_CHECK(qs_export_dir_put(d, t, q->g_idx, (size_t)d_in * 4, err));
done:
    free(packed);
    free(zp);
    free(row);
    return st;
}

/* ---- quantization_config ------------------------------------------------------------- */

/* The "weights" object of a scheme (compressed-tensors QuantizationArgs). */
static cJSON *weights_json(const qs_qexport_opts *opts, const qs_gptq_scheme *s) {
    static const char *const act_names[] = {NULL, "weight", "group"};
    const ct_actorder act = actorder_of(opts, s);
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    int ok = cJSON_AddNumberToObject(o, "num_bits", s->bits) &&
             cJSON_AddStringToObject(o, "type", "int") &&
             cJSON_AddBoolToObject(o, "symmetric", s->sym) &&
             cJSON_AddStringToObject(o, "strategy", s->group_size > 0 ? "group" : "channel") &&
             (s->group_size > 0 ? cJSON_AddNumberToObject(o, "group_size", s->group_size) != NULL
                                : cJSON_AddNullToObject(o, "group_size") != NULL) &&
             (act == CT_ACT_NONE ? cJSON_AddNullToObject(o, "actorder") != NULL
                                 : cJSON_AddStringToObject(o, "actorder", act_names[act]) != NULL) &&
             cJSON_AddBoolToObject(o, "dynamic", 0) &&
             cJSON_AddNullToObject(o, "block_structure");
    if (!ok) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

static qs_status ct_config(const qs_export_items *its, const char *dir,
                           const qs_qexport_opts *opts, cJSON **out, qs_err *err) {
    qs_status st = QS_OK;
    cJSON *o = cJSON_CreateObject(), *groups = NULL, *ign = NULL;
    char key[QS_EXPORT_KEY_MAX];
    *out = NULL;
    if (!o) QS_THROW(err, QS_ERR_RUNTIME, "%s: out of memory (config)", dir);
    int ok = cJSON_AddStringToObject(o, "quant_method", "compressed-tensors") &&
             cJSON_AddStringToObject(o, "format", "pack-quantized") &&
             cJSON_AddStringToObject(o, "quantization_status", "compressed") &&
             (groups = cJSON_AddObjectToObject(o, "config_groups")) != NULL &&
             (ign = cJSON_AddArrayToObject(o, "ignore")) != NULL &&
             cJSON_AddNullToObject(o, "kv_cache_scheme") &&
             cJSON_AddNullToObject(o, "global_compression_ratio");
    if (!ok) QS_THROW(err, QS_ERR_RUNTIME, "%s: out of memory (config)", dir);
    /* one group per distinct scheme, in order of first use; targets: each module regex once */
    int ngroups = 0;
    for (int64_t i = 0; i < its->n; ++i) {
        const qs_export_item *a = &its->v[i];
        if (!a->linear) continue;
        int64_t first = i;
        for (int64_t j = 0; j < i; ++j)
            if (its->v[j].linear && qs_export_scheme_eq(&its->v[j].scheme, &a->scheme)) {
                first = j;
                break;
            }
        if (first != i) continue;
        cJSON *g = NULL, *targets = NULL, *w = weights_json(opts, &a->scheme);
        char gname[32];
        snprintf(gname, sizeof(gname), "group_%d", ngroups++);
        ok = w && (g = cJSON_AddObjectToObject(groups, gname)) != NULL &&
             (targets = cJSON_AddArrayToObject(g, "targets")) != NULL;
        if (!ok) {
            cJSON_Delete(w);
            QS_THROW(err, QS_ERR_RUNTIME, "%s: out of memory (config)", dir);
        }
        cJSON_AddItemToObject(g, "weights", w);
        if (!cJSON_AddNullToObject(g, "input_activations") ||
            !cJSON_AddNullToObject(g, "output_activations") ||
            !cJSON_AddStringToObject(g, "format", "pack-quantized"))
            QS_THROW(err, QS_ERR_RUNTIME, "%s: out of memory (config)", dir);
        for (int64_t j = i; j < its->n; ++j) {
            const qs_export_item *c = &its->v[j];
            if (!c->linear || !qs_export_scheme_eq(&c->scheme, &a->scheme)) continue;
            int seen = 0; /* a fused group's regex is listed once */
            for (int64_t k = i; k < j && !seen; ++k)
                seen = its->v[k].linear && strcmp(its->v[k].regex, c->regex) == 0;
            if (seen) continue;
            snprintf(key, sizeof(key), "re:%s", c->regex);
            cJSON *t = cJSON_CreateString(key);
            if (!t) QS_THROW(err, QS_ERR_RUNTIME, "%s: out of memory (config)", dir);
            cJSON_AddItemToArray(targets, t);
        }
    }
    if (ngroups == 0) QS_THROW(err, QS_ERR_INPUT, "%s: no quantized linear to export", dir);
    /* ignore: lm_head (llm-compressor's convention; true unless it is quantized) and every
     * float linear */
    if (!qs_export_items_lm_head(its)) {
        cJSON *t = cJSON_CreateString("lm_head");
        if (!t) QS_THROW(err, QS_ERR_RUNTIME, "%s: out of memory (config)", dir);
        cJSON_AddItemToArray(ign, t);
    }
    for (int64_t k = 0; k < its->nexcl; ++k) {
        snprintf(key, sizeof(key), "re:%s", its->excl[k]);
        cJSON *t = cJSON_CreateString(key);
        if (!t) QS_THROW(err, QS_ERR_RUNTIME, "%s: out of memory (config)", dir);
        cJSON_AddItemToArray(ign, t);
    }
    *out = o;
    o = NULL;
done:
    cJSON_Delete(o);
    return st;
}

const qs_qexport_format qs_ct_format = {
    .name = "compressed-tensors",
    .suffix_room = 32, /* ".weight_zero_point" ... ".bias" */
    .side_json = NULL,
    .check = ct_check,
    .parts = ct_parts,
    .put = ct_put,
    .config = ct_config,
};
