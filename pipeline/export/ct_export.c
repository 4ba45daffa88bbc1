/* ct_export.c: compressed-tensors "pack-quantized" checkpoint (tensors, quantization_config).
 * The directory is export_dir.c's; items, module regexes and fused ties export_items.c's;
 * the bit streams pack.c's. */
#include "ct_export.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "pack.h"
#include "quant.h"

struct qs_ct_export {
    qs_ct_export_opts opts;
    qs_export_core c; /* directory, items, finished: export_items.h */
};

/* What the writer records for a scheme's act-order: "group" writes weight_g_idx. */
typedef enum ct_actorder { CT_ACT_NONE = 0, CT_ACT_WEIGHT = 1, CT_ACT_GROUP = 2 } ct_actorder;

static ct_actorder actorder_of(const qs_ct_export *x, const qs_gptq_scheme *s) {
    if (!s->desc_act) return CT_ACT_NONE;
    return x->opts.static_groups ? CT_ACT_WEIGHT : CT_ACT_GROUP;
}

void qs_ct_export_opts_default(qs_ct_export_opts *o) {
    memset(o, 0, sizeof(*o));
    o->shard_bytes = (int64_t)4 << 30;
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

qs_status qs_ct_export_begin(qs_ct_export **out, const char *dir, const char *src_model_dir,
                             const qs_ct_export_opts *opts, qs_err *err) {
    *out = NULL;
    qs_ct_export *x = qs_calloc(1, sizeof(*x), err, "compressed-tensors exporter");
    if (!x) return QS_FAIL(err, QS_ERR_RUNTIME, "%s: out of memory", dir);
    x->opts = *opts;
    qs_status st = qs_export_core_begin(&x->c, dir, src_model_dir, opts->shard_bytes,
                                        opts->overwrite, err);
    if (st == QS_OK) *out = x;
    else qs_ct_export_free(x);
    return st;
}

qs_status qs_ct_export_declare_linear(qs_ct_export *x, const char *module, int64_t d_out,
                                      int64_t d_in, const qs_gptq_scheme *scheme, int has_bias,
                                      qs_dtype bias_dtype, qs_err *err) {
    qs_status st = QS_OK;
    qs_err why = {0};
    char name[QS_EXPORT_KEY_MAX];
    qs_export_item *it = NULL;
    if (!qs_ct_scheme_supported(scheme, &why)) QS_THROW(err, QS_ERR_INPUT, "%s: %s", module, why.msg);
    /* the same packing units as GPTQ at 4 and 8 bits: whole 32-bit words along both dims */
    if (!qs_pack_can_serve(d_out, d_in, scheme->bits, scheme->group_size, &why))
        QS_THROW(err, QS_ERR_INPUT, "%s: (%lld, %lld) at w%dg%d has no packed layout: %s",
                 module, (long long)d_out, (long long)d_in, scheme->bits, scheme->group_size,
                 why.msg);
    QS_CHECK(qs_export_core_linear_begin(&x->c, module, scheme, d_out, d_in, has_bias, bias_dtype,
                                         32, &it, err));
    const int64_t b = scheme->bits, G = qs_quant_ngroups(d_in, scheme->group_size);
    int64_t sh[2];
    sh[0] = d_out;
    sh[1] = d_in * b / 32;
    snprintf(name, sizeof(name), "%s.weight_packed", module);
    QS_CHECK(qs_export_dir_declare(x->c.d, name, QS_DTYPE_I32, 2, sh, NULL, err));
    sh[0] = d_out;
    sh[1] = G;
    snprintf(name, sizeof(name), "%s.weight_scale", module);
    QS_CHECK(qs_export_dir_declare(x->c.d, name, QS_DTYPE_F16, 2, sh, NULL, err));
    if (!scheme->sym) {
        sh[0] = d_out * b / 32;
        sh[1] = G;
        snprintf(name, sizeof(name), "%s.weight_zero_point", module);
        QS_CHECK(qs_export_dir_declare(x->c.d, name, QS_DTYPE_I32, 2, sh, NULL, err));
    }
    sh[0] = 2;
    snprintf(name, sizeof(name), "%s.weight_shape", module);
    QS_CHECK(qs_export_dir_declare(x->c.d, name, QS_DTYPE_I64, 1, sh, NULL, err));
    if (actorder_of(x, scheme) == CT_ACT_GROUP) {
        sh[0] = d_in;
        snprintf(name, sizeof(name), "%s.weight_g_idx", module);
        QS_CHECK(qs_export_dir_declare(x->c.d, name, QS_DTYPE_I32, 1, sh, NULL, err));
    }
    QS_CHECK(qs_export_core_linear_end(&x->c, module, it, err));
done:
    if (st != QS_OK && it) x->c.items.failed = 1; /* half-declared: the exporter is unusable */
    return st;
}

qs_status qs_ct_export_declare_tensor(qs_ct_export *x, const char *name, qs_dtype dt, int ndim,
                                      const int64_t *shape, qs_err *err) {
    return qs_export_core_declare_tensor(&x->c, name, dt, ndim, shape, err);
}

qs_status qs_ct_export_exclude(qs_ct_export *x, const char *module, qs_err *err) {
    return qs_export_items_exclude(&x->c.items, module, err);
}

/* ---- streaming ----------------------------------------------------------------------- */

qs_status qs_ct_export_add_linear(qs_ct_export *x, const char *module, const qs_gptq_linear *q,
                                  qs_err *err) {
    qs_status st = QS_OK;
    uint32_t *packed = NULL, *zp = NULL, *row = NULL;
    qs_export_item *it = NULL;
    QS_CHECK(qs_export_items_begin_add(&x->c.items, x->c.d, x->c.finished, module, 1, &it, err));
    const qs_gptq_scheme *s = &it->scheme;
    const int64_t d_out = it->d_out, d_in = it->d_in, b = s->bits;
    const int64_t G = qs_quant_ngroups(d_in, s->group_size);
    const int32_t maxq = (1 << s->bits) - 1, zsym = 1 << (s->bits - 1);
    const ct_actorder act = actorder_of(x, s);
    const int64_t wrow = d_in * b / 32, zrows = d_out * b / 32;
    if (it->has_bias != (q->bias != NULL))
        QS_THROW(err, QS_ERR_INPUT, "%s: bias %s but %s declared", module,
                 q->bias ? "given" : "missing", it->has_bias ? "one was" : "none was");
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
    QS_CHECK(qs_export_dir_put(x->c.d, t++, packed, (size_t)(d_out * wrow) * 4, err));
    QS_CHECK(qs_export_dir_put(x->c.d, t++, q->scales, (size_t)(d_out * G) * 2, err));
    if (!s->sym) QS_CHECK(qs_export_dir_put(x->c.d, t++, zp, (size_t)(zrows * G) * 4, err));
    QS_CHECK(qs_export_dir_put(x->c.d, t++, shape, sizeof(shape), err));
    if (act == CT_ACT_GROUP)
        QS_CHECK(qs_export_dir_put(x->c.d, t++, q->g_idx, (size_t)d_in * 4, err));
    if (it->has_bias)
        QS_CHECK(qs_export_dir_put(x->c.d, t, q->bias, (size_t)qs_export_dir_tensor_bytes(x->c.d, t),
                                   err));
    x->c.items.next++;
done:
    if (st != QS_OK && it) x->c.items.failed = 1;
    free(packed);
    free(zp);
    free(row);
    return st;
}

qs_status qs_ct_export_add_tensor(qs_ct_export *x, const char *name, const void *data,
                                  size_t nbytes, qs_err *err) {
    return qs_export_core_add_tensor(&x->c, name, data, nbytes, err);
}

/* ---- quantization_config ------------------------------------------------------------- */

/* The "weights" object of a scheme (compressed-tensors QuantizationArgs). */
static cJSON *weights_json(const qs_ct_export *x, const qs_gptq_scheme *s) {
    static const char *const act_names[] = {NULL, "weight", "group"};
    const ct_actorder act = actorder_of(x, s);
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

static qs_status quant_config(const qs_ct_export *x, cJSON **out, qs_err *err) {
    qs_status st = QS_OK;
    const qs_export_items *its = &x->c.items;
    const char *dir = qs_export_dir_path(x->c.d);
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
        cJSON *g = NULL, *targets = NULL, *w = weights_json(x, &a->scheme);
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

qs_status qs_ct_export_finish(qs_ct_export *x, qs_err *err) {
    qs_status st = QS_OK;
    cJSON *qc = NULL;
    QS_CHECK(qs_export_core_check_complete(&x->c, err));
    QS_CHECK(quant_config(x, &qc, err));
    QS_CHECK(qs_export_core_commit(&x->c, qc, NULL, err));
done:
    if (st != QS_OK) x->c.items.failed = 1;
    cJSON_Delete(qc);
    return st;
}

void qs_ct_export_free(qs_ct_export *x) {
    if (!x) return;
    qs_export_core_free(&x->c);
    free(x);
}
