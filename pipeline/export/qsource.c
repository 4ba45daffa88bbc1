/* qsource.c: quantized linears read back from run/out/ HDF5 shards, a GPTQ or a
 * compressed-tensors export, or a GGUF file. */
#include "qsource.h"

#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "gguf_model.h"
#include "gguf_quant.h"
#include "h5store.h"
#include "half.h"
#include "pack.h"
#include "quant.h"
#include "rundir.h"

static char *dup_str(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

/* <dir>/<name> parsed as JSON into *root (NULL when the text is not JSON: the caller's
 * checks of its content then fail); path receives the file's path for messages. */
static qs_status read_json(const char *dir, const char *name, char *path, size_t n,
                           cJSON **root, qs_err *err) {
    char *text = NULL;
    *root = NULL;
    snprintf(path, n, "%s/%s", dir, name);
    qs_status st = qs_read_file(path, &text, NULL, err);
    if (st != QS_OK) return st;
    *root = cJSON_Parse(text);
    free(text);
    return QS_OK;
}

void qs_qsource_close(qs_qsource *s) {
    for (int64_t i = 0; i < s->n; ++i) {
        free(s->names[i]);
        free(s->files[i]);
    }
    free(s->names);
    free(s->files);
    for (int i = 0; i < s->ndyn; ++i) free(s->dyn[i].pattern);
    free(s->dyn);
    qs_ckpt_close(&s->ck);
    qs_gguf_reader_close(&s->gr);
    memset(s, 0, sizeof(*s));
}

/* Every open starts here: s cleared, s->dir = dir. */
static void open_begin(qs_qsource *s, const char *dir) {
    memset(s, 0, sizeof(*s));
    snprintf(s->dir, sizeof(s->dir), "%s", dir);
}

/* config.json's quantization_config (*qc) when its quant_method is `method`; else
 * QS_ERR_INPUT naming the file. */
static qs_status quant_config(const cJSON *root, const char *path, const char *method,
                              const cJSON **qc, qs_err *err) {
    *qc = cJSON_GetObjectItemCaseSensitive(root, "quantization_config");
    const cJSON *qm = cJSON_GetObjectItemCaseSensitive(*qc, "quant_method");
    if (!cJSON_IsObject(*qc) || !cJSON_IsString(qm) || strcmp(qm->valuestring, method) != 0)
        return QS_FAIL(err, QS_ERR_INPUT, "%s: no quantization_config with quant_method %s",
                       path, method);
    return QS_OK;
}

/* The open of a source described by the JSON file dir/name: open_begin, then `parse` of the
 * parsed file (path: its file name, for messages) — of its quantization_config when `method`
 * is given (a checkpoint's config.json), which must name that quant_method; on an error s is
 * closed. */
static qs_status open_json(qs_qsource *s, const char *dir, const char *name, const char *method,
                           qs_status (*parse)(qs_qsource *s, const cJSON *root,
                                              const char *path, qs_err *err),
                           qs_err *err) {
    char path[4200];
    cJSON *root = NULL;
    const cJSON *obj = NULL;
    open_begin(s, dir);
    qs_status st = read_json(dir, name, path, sizeof(path), &root, err);
    obj = root;
    if (st == QS_OK && method) st = quant_config(root, path, method, &obj, err);
    if (st == QS_OK) st = parse(s, obj, path, err);
    cJSON_Delete(root);
    if (st != QS_OK) qs_qsource_close(s);
    return st;
}

qs_status qs_qsource_open_gguf(qs_qsource *s, const char *path, qs_err *err) {
    open_begin(s, path);
    s->gguf = 1;
    return qs_gguf_reader_open(&s->gr, path, err);
}

/* GGUF: Hugging Face tensor `name` as f32 into out (count); *found = 0 when the file has
 * no such tensor (e.g. output.weight of tied embeddings). */
static qs_status gguf_tensor(const qs_qsource *s, const char *name, float *out, int64_t count,
                             int *found, qs_err *err) {
    char gn[QS_GGUF_NAME_MAX];
    *found = 0;
    if (qs_gguf_tensor_name(name, gn, sizeof(gn)) != 0) return QS_OK;
    const int64_t i = qs_gguf_reader_find(&s->gr, gn);
    if (i < 0) return QS_OK;
    qs_status st = qs_gguf_reader_f32(&s->gr, i, out, count, err);
    *found = st == QS_OK;
    return st;
}

/* out/index.json: the shard file of every tensor */
static qs_status parse_h5_index(qs_qsource *s, const cJSON *root, const char *path, qs_err *err) {
    qs_status st = QS_OK;
    const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(root, "format");
    const cJSON *wm = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
    if (!cJSON_IsString(fmt) || strcmp(fmt->valuestring, "qshard-shards-1") != 0 ||
        !cJSON_IsObject(wm))
        QS_THROW(err, QS_ERR_INPUT, "%s: not a qshard shard index (format qshard-shards-1)",
                 path);
    int64_t n = cJSON_GetArraySize(wm);
    s->names = calloc((size_t)(n ? n : 1), sizeof(char *));
    s->files = calloc((size_t)(n ? n : 1), sizeof(char *));
    if (!s->names || !s->files) QS_THROW(err, QS_ERR_RUNTIME, "%s: out of memory", path);
    const cJSON *e;
    cJSON_ArrayForEach(e, wm) {
        if (!cJSON_IsString(e) || strchr(e->valuestring, '/') || e->valuestring[0] == '.')
            QS_THROW(err, QS_ERR_INPUT, "%s: weight_map entry '%s' is not a shard file name",
                     path, e->string);
        s->names[s->n] = dup_str(e->string);
        s->files[s->n] = dup_str(e->valuestring);
        s->n++;
        if (!s->names[s->n - 1] || !s->files[s->n - 1])
            QS_THROW(err, QS_ERR_RUNTIME, "%s: out of memory", path);
    }
done:
    return st;
}

qs_status qs_qsource_open_h5(qs_qsource *s, const char *out_dir, qs_err *err) {
    return open_json(s, out_dir, "index.json", NULL, parse_h5_index, err);
}

static int json_int(const cJSON *o, const char *k, int dflt) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    if (cJSON_IsBool(v)) return cJSON_IsTrue(v);
    if (cJSON_IsNumber(v)) return (int)v->valuedouble;
    return dflt;
}

/* config.json's quantization_config: the top-level scheme and the dynamic map */
static qs_status parse_gptq_config(qs_qsource *s, const cJSON *qc, const char *path,
                                   qs_err *err) {
    qs_status st = QS_OK;
    s->gptq = 1;
    s->bits = json_int(qc, "bits", 0);
    s->group_size = json_int(qc, "group_size", -1);
    s->sym = json_int(qc, "sym", 1);
    s->desc_act = json_int(qc, "desc_act", 0);
    s->static_groups = json_int(qc, "static_groups", 0);
    const cJSON *cf = cJSON_GetObjectItemCaseSensitive(qc, "checkpoint_format");
    s->v2 = cJSON_IsString(cf) && strcmp(cf->valuestring, "gptq_v2") == 0;
    if (cJSON_IsString(cf) && !s->v2 && strcmp(cf->valuestring, "gptq") != 0)
        QS_THROW(err, QS_ERR_INPUT, "%s: checkpoint_format '%s' (expected gptq or gptq_v2)", path,
                 cf->valuestring);
    if (!qs_pack_unit(s->bits))
        QS_THROW(err, QS_ERR_INPUT, "%s: quantization_config bits %d has no GPTQ layout", path,
                 s->bits);
    const cJSON *dyn = cJSON_GetObjectItemCaseSensitive(qc, "dynamic");
    if (cJSON_IsObject(dyn)) {
        int n = cJSON_GetArraySize(dyn);
        s->dyn = calloc((size_t)(n ? n : 1), sizeof(*s->dyn));
        if (!s->dyn) QS_THROW(err, QS_ERR_RUNTIME, "%s: out of memory", path);
        const cJSON *e;
        cJSON_ArrayForEach(e, dyn) {
            qs_qsource_dyn *d = &s->dyn[s->ndyn++];
            const char *k = e->string;
            d->negative = strncmp(k, "-:", 2) == 0;
            if (strncmp(k, "-:", 2) == 0 || strncmp(k, "+:", 2) == 0) k += 2;
            d->pattern = dup_str(k);
            if (!d->pattern) QS_THROW(err, QS_ERR_RUNTIME, "%s: out of memory", path);
            regex_t re;
            if (regcomp(&re, d->pattern, REG_EXTENDED | REG_NOSUB) != 0)
                QS_THROW(err, QS_ERR_INPUT, "%s: dynamic key '%s' is not a regex this reader "
                         "understands", path, e->string);
            regfree(&re);
            d->bits = json_int(e, "bits", -2);
            d->group_size = json_int(e, "group_size", -2);
            d->sym = json_int(e, "sym", -2);
            d->desc_act = json_int(e, "desc_act", -2);
        }
    }
    QS_CHECK(qs_ckpt_open(&s->ck, s->dir, err));
done:
    return st;
}

qs_status qs_qsource_open_gptq(qs_qsource *s, const char *dir, qs_err *err) {
    return open_json(s, dir, "config.json", "gptq", parse_gptq_config, err);
}

/* A config group's "weights" (compressed-tensors QuantizationArgs) as a scheme: integer
 * weights by group or channel; desc_act = an actorder is given. */
static qs_status ct_weights(const cJSON *w, const char *path, const char *group,
                            qs_gptq_scheme *sc, qs_err *err) {
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(w, "type");
    const cJSON *strat = cJSON_GetObjectItemCaseSensitive(w, "strategy");
    const cJSON *act = cJSON_GetObjectItemCaseSensitive(w, "actorder");
    const int channel = cJSON_IsString(strat) && strcmp(strat->valuestring, "channel") == 0;
    if (!cJSON_IsObject(w) || !cJSON_IsString(type) || strcmp(type->valuestring, "int") != 0 ||
        !(channel || (cJSON_IsString(strat) && strcmp(strat->valuestring, "group") == 0)))
        return QS_FAIL(err, QS_ERR_INPUT, "%s: config group %s: weights are not integer by "
                       "group or channel (what qshard writes and reads)", path, group);
    sc->bits = json_int(w, "num_bits", 0);
    sc->sym = json_int(w, "symmetric", 1);
    sc->group_size = channel ? -1 : json_int(w, "group_size", 0);
    sc->desc_act = act != NULL && !cJSON_IsNull(act) && !cJSON_IsFalse(act);
    if (!qs_pack_unit(sc->bits) || sc->group_size == 0)
        return QS_FAIL(err, QS_ERR_INPUT, "%s: config group %s: num_bits %d / group_size %d "
                       "have no packed layout", path, group, sc->bits, sc->group_size);
    return QS_OK;
}

/* One ignore entry (negative) or target of scheme sc as the next dyn entry: "re:X" is the
 * regex X, anything else the exact module name. */
static qs_status ct_entry(qs_qsource *s, const cJSON *v, int negative, const qs_gptq_scheme *sc,
                          const char *path, qs_err *err) {
    if (!cJSON_IsString(v))
        return QS_FAIL(err, QS_ERR_INPUT, "%s: a config_groups target or ignore entry is not a "
                       "string", path);
    qs_qsource_dyn *d = &s->dyn[s->ndyn++];
    const char *k = v->valuestring;
    d->exact = strncmp(k, "re:", 3) != 0;
    d->negative = negative;
    d->pattern = dup_str(d->exact ? k : k + 3);
    if (!d->pattern) return QS_FAIL(err, QS_ERR_RUNTIME, "%s: out of memory", path);
    regex_t re;
    if (!d->exact && regcomp(&re, d->pattern, REG_EXTENDED | REG_NOSUB) != 0)
        return QS_FAIL(err, QS_ERR_INPUT, "%s: target '%s' is not a regex this reader "
                       "understands", path, k);
    if (!d->exact) regfree(&re);
    d->bits = sc->bits;
    d->group_size = sc->group_size;
    d->sym = sc->sym;
    d->desc_act = sc->desc_act;
    return QS_OK;
}

/* config.json's compressed-tensors quantization_config: ignore, then config_groups */
static qs_status parse_ct_config(qs_qsource *s, const cJSON *qc, const char *path,
                                 qs_err *err) {
    qs_status st = QS_OK;
    s->ct = 1;
    const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(qc, "format");
    const cJSON *groups = cJSON_GetObjectItemCaseSensitive(qc, "config_groups");
    const cJSON *ign = cJSON_GetObjectItemCaseSensitive(qc, "ignore");
    if (!cJSON_IsString(fmt) || strcmp(fmt->valuestring, "pack-quantized") != 0 ||
        !cJSON_IsObject(groups))
        QS_THROW(err, QS_ERR_INPUT, "%s: compressed-tensors format '%s' without config_groups "
                 "(qshard reads pack-quantized)", path,
                 cJSON_IsString(fmt) ? fmt->valuestring : "?");
    int n = cJSON_IsArray(ign) ? cJSON_GetArraySize(ign) : 0;
    const cJSON *g, *v;
    cJSON_ArrayForEach(g, groups) n += cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(g, "targets"));
    s->dyn = calloc((size_t)(n ? n : 1), sizeof(*s->dyn));
    if (!s->dyn) QS_THROW(err, QS_ERR_RUNTIME, "%s: out of memory", path);
    const qs_gptq_scheme none = {0, 0, 0, 0};
    if (cJSON_IsArray(ign))
        cJSON_ArrayForEach(v, ign) QS_CHECK(ct_entry(s, v, 1, &none, path, err));
    cJSON_ArrayForEach(g, groups) {
        qs_gptq_scheme sc;
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(g, "targets");
        QS_CHECK(ct_weights(cJSON_GetObjectItemCaseSensitive(g, "weights"), path, g->string,
                            &sc, err));
        if (!cJSON_IsArray(t))
            QS_THROW(err, QS_ERR_INPUT, "%s: config group %s has no targets list", path,
                     g->string);
        cJSON_ArrayForEach(v, t) QS_CHECK(ct_entry(s, v, 0, &sc, path, err));
    }
    QS_CHECK(qs_ckpt_open(&s->ck, s->dir, err));
done:
    return st;
}

qs_status qs_qsource_open_ct(qs_qsource *s, const char *dir, qs_err *err) {
    return open_json(s, dir, "config.json", "compressed-tensors", parse_ct_config, err);
}

/* Python re.match: a match that starts at 0. */
static int match_start(const char *pattern, const char *s) {
    regex_t re;
    regmatch_t m;
    if (regcomp(&re, pattern, REG_EXTENDED) != 0) return 0;
    int ok = regexec(&re, s, 1, &m, 0) == 0 && m.rm_so == 0;
    if (!ok && regexec(&re, s, 1, &m, 0) == 0) {
        /* leftmost match not at 0: try anchoring explicitly */
        regfree(&re);
        size_t n = strlen(pattern) + 8;
        char *p = malloc(n);
        if (!p) return 0;
        snprintf(p, n, "^(%s)", pattern);
        ok = regcomp(&re, p, REG_EXTENDED | REG_NOSUB) == 0 && regexec(&re, s, 0, NULL, 0) == 0;
        free(p);
    }
    regfree(&re);
    return ok;
}

void qs_qsource_scheme_of(const qs_qsource *s, const char *module, int *quantized,
                          qs_gptq_scheme *out) {
    *quantized = 1;
    out->bits = s->bits;
    out->group_size = s->group_size;
    out->sym = s->sym;
    out->desc_act = s->desc_act;
    for (int i = 0; i < s->ndyn; ++i) {
        const qs_qsource_dyn *d = &s->dyn[i];
        if (d->exact ? strcmp(d->pattern, module) != 0 : !match_start(d->pattern, module))
            continue;
        if (d->negative) {
            *quantized = 0;
        } else {
            if (d->bits != -2) out->bits = d->bits;
            if (d->group_size != -2) out->group_size = d->group_size;
            if (d->sym != -2) out->sym = d->sym;
            if (d->desc_act != -2) out->desc_act = d->desc_act;
        }
        return;
    }
}

void qs_qsource_scheme(const qs_qsource *s, const char *module, int *quantized, int *bits,
                       int *group_size) {
    qs_gptq_scheme sc;
    qs_qsource_scheme_of(s, module, quantized, &sc);
    *bits = sc.bits;
    *group_size = sc.group_size;
}

/* Index of `name` in the shard index, -1 if absent. */
static int64_t find_name(const qs_qsource *s, const char *name) {
    for (int64_t i = 0; i < s->n; ++i)
        if (strcmp(s->names[i], name) == 0) return i;
    return -1;
}

/* Reads `name` and checks its shape is exactly dims[0..ndim). */
static qs_status read_shaped(qs_h5 *h, const char *name, qs_h5_type type, int ndim,
                             const int64_t *want, void **data, qs_err *err) {
    int nd = 0;
    int64_t dims[8];
    qs_status st = qs_h5_read(h, name, type, &nd, dims, data, err);
    if (st != QS_OK) return st;
    int ok = nd == ndim;
    for (int i = 0; ok && i < nd; ++i) ok = dims[i] == want[i];
    if (!ok) {
        free(*data);
        *data = NULL;
        char a[96], b[96];
        qs_shape_str(dims, nd, a, sizeof(a));
        qs_shape_str(want, ndim, b, sizeof(b));
        return QS_FAIL(err, QS_ERR_INPUT, "%s: dataset %s has shape %s, expected %s", h->path,
                       name, a, b);
    }
    return QS_OK;
}

/* The four GPTQ arrays of one linear, in the export's layout. */
typedef struct packed4 {
    int32_t *qweight;  /* (d_in*b/32, d_out) */
    int32_t *qzeros;   /* (G, d_out*b/32) */
    uint16_t *scales;  /* (G, d_out) fp16 bits */
    int32_t *g_idx;    /* (d_in,) */
    int bits, group_size, v1;
} packed4;

static void packed4_free(packed4 *p) {
    free(p->qweight);
    free(p->qzeros);
    free(p->scales);
    free(p->g_idx);
    memset(p, 0, sizeof(*p));
}

/* The attributes d_out, d_in of `module` in a layer file; a dim given as -1 is taken from
 * them, any other must equal them (QS_ERR_INPUT naming the file and module). */
static qs_status h5_dims(qs_h5 *h, const char *module, int64_t *d_out, int64_t *d_in,
                         qs_err *err) {
    int64_t a_out = 0, a_in = 0;
    qs_status st = QS_OK;
    QS_CHECK(qs_h5_read_attr_i64(h, module, "d_out", &a_out, err));
    QS_CHECK(qs_h5_read_attr_i64(h, module, "d_in", &a_in, err));
    if (*d_out < 0) *d_out = a_out;
    if (*d_in < 0) *d_in = a_in;
    if (a_out != *d_out || a_in != *d_in)
        QS_THROW(err, QS_ERR_INPUT, "%s: %s is (%lld, %lld), the model expects (%lld, %lld)",
                 h->path, module, (long long)a_out, (long long)a_in, (long long)*d_out,
                 (long long)*d_in);
done:
    return st;
}

/* HDF5: reads the group `module` of an open shard, checking shapes against its attributes.
 * *d_out_io / *d_in_io < 0: taken from the attributes. */
static qs_status h5_packed(qs_h5 *h, const char *module, int64_t *d_out_io, int64_t *d_in_io,
                           packed4 *p, qs_err *err) {
    qs_status st = QS_OK;
    int64_t bits = 0, group = 0, v2 = 0;
    int64_t d_out = *d_out_io, d_in = *d_in_io;
    char name[1100];
    qs_pack_bytes sz;
    qs_err pe = {0};
    memset(p, 0, sizeof(*p));
    QS_CHECK(qs_h5_read_attr_i64(h, module, "bits", &bits, err));
    QS_CHECK(qs_h5_read_attr_i64(h, module, "group_size", &group, err));
    QS_CHECK(qs_h5_read_attr_i64(h, module, "v2", &v2, err));
    QS_CHECK(h5_dims(h, module, &d_out, &d_in, err));
    if (qs_pack_sizes(d_out, d_in, (int)bits, (int)group, &sz, &pe) != QS_OK)
        QS_THROW(err, QS_ERR_INPUT, "%s: %s: %s", h->path, module, pe.msg);
    const int64_t G = qs_quant_ngroups(d_in, (int)group);
    int64_t s_qw[2] = {d_in * bits / 32, d_out}, s_qz[2] = {G, d_out * bits / 32},
            s_sc[2] = {G, d_out}, s_gi[1] = {d_in};
    snprintf(name, sizeof(name), "%s/qweight", module);
    QS_CHECK(read_shaped(h, name, QS_H5_I32, 2, s_qw, (void **)&p->qweight, err));
    snprintf(name, sizeof(name), "%s/qzeros", module);
    QS_CHECK(read_shaped(h, name, QS_H5_I32, 2, s_qz, (void **)&p->qzeros, err));
    snprintf(name, sizeof(name), "%s/scales", module);
    QS_CHECK(read_shaped(h, name, QS_H5_U16, 2, s_sc, (void **)&p->scales, err));
    snprintf(name, sizeof(name), "%s/g_idx", module);
    QS_CHECK(read_shaped(h, name, QS_H5_I32, 1, s_gi, (void **)&p->g_idx, err));
    p->bits = (int)bits;
    p->group_size = (int)group;
    p->v1 = !v2;
    *d_out_io = d_out;
    *d_in_io = d_in;
done:
    if (st != QS_OK) packed4_free(p);
    return st;
}

/* Checkpoint tensor <module>.<suffix> copied into *out (malloc'ed) after checking its dtype
 * and shape (nd dims of want); QS_ERR_INPUT naming the file, the tensor and the scheme
 * (w<bits>g<group>) on a mismatch or when it is missing. */
static qs_status ck_take(const qs_qsource *s, const char *module, const char *suffix,
                         qs_dtype dt, int nd, const int64_t *want, int bits, int group,
                         void **out, qs_err *err) {
    char name[1100];
    snprintf(name, sizeof(name), "%s.%s", module, suffix);
    const qs_st_tensor *t = qs_ckpt_find(&s->ck, name);
    if (!t) return QS_FAIL(err, QS_ERR_INPUT, "%s: tensor %s is missing", s->dir, name);
    int ok = t->dtype == dt && t->ndim == nd;
    for (int k = 0; ok && k < nd; ++k) ok = t->shape[k] == want[k];
    if (!ok) {
        char a[96], b[96];
        qs_shape_str(t->shape, t->ndim, a, sizeof(a));
        qs_shape_str(want, nd, b, sizeof(b));
        return QS_FAIL(err, QS_ERR_INPUT, "%s: %s %s %s, expected %s %s for w%dg%d",
                       qs_ckpt_file_of(&s->ck, name), name, qs_dtype_name(t->dtype), a,
                       qs_dtype_name(dt), b, bits, group);
    }
    *out = malloc(t->nbytes ? t->nbytes : 1);
    if (!*out) return QS_FAIL(err, QS_ERR_RUNTIME, "%s: out of memory", name);
    memcpy(*out, t->data, t->nbytes);
    return QS_OK;
}

/* The scheme of a checkpoint's quantized linear `module` (whose tensor `first` exists);
 * QS_ERR_INPUT when the config leaves it unquantized or names no scheme for it. */
static qs_status ck_scheme(const qs_qsource *s, const char *module, const char *first,
                           qs_gptq_scheme *sc, qs_err *err) {
    char name[1100];
    int quantized = 1;
    qs_qsource_scheme_of(s, module, &quantized, sc);
    snprintf(name, sizeof(name), "%s.%s", module, first);
    if (!quantized || sc->bits == 0)
        return QS_FAIL(err, QS_ERR_INPUT, "%s: %s has %s tensors but %s",
                       qs_ckpt_file_of(&s->ck, name), module, s->ct ? "packed" : "GPTQ",
                       !quantized ? (s->ct ? "the ignore list names it"
                                           : "the dynamic map excludes it")
                                  : "no config_groups target names it");
    return QS_OK;
}

/* GPTQ export: the four tensors of `module` (copied), shapes and dtypes checked. *found = 0
 * when there is no <module>.qweight. d_out / d_in < 0: taken from the tensors. */
static qs_status gptq_packed(const qs_qsource *s, const char *module, int64_t *d_out_io,
                             int64_t *d_in_io, packed4 *p, int *found, qs_err *err) {
    qs_status st = QS_OK;
    char name[1100];
    qs_gptq_scheme sc;
    memset(p, 0, sizeof(*p));
    *found = 0;
    snprintf(name, sizeof(name), "%s.qweight", module);
    const qs_st_tensor *qw = qs_ckpt_find(&s->ck, name);
    if (!qw) return QS_OK;
    snprintf(name, sizeof(name), "%s.g_idx", module);
    const qs_st_tensor *gi = qs_ckpt_find(&s->ck, name);
    if (!gi) QS_THROW(err, QS_ERR_INPUT, "%s: tensor %s is missing", s->dir, name);
    const char *file = qs_ckpt_file_of(&s->ck, qw->name);
    QS_CHECK(ck_scheme(s, module, "qweight", &sc, err));
    const int bits = sc.bits, group = sc.group_size;
    if (qw->ndim != 2 || gi->ndim != 1)
        QS_THROW(err, QS_ERR_INPUT, "%s: %s.qweight / g_idx have the wrong rank", file, module);
    int64_t d_out = *d_out_io >= 0 ? *d_out_io : qw->shape[1];
    int64_t d_in = *d_in_io >= 0 ? *d_in_io : gi->shape[0];
    qs_pack_bytes sz;
    qs_err pe = {0};
    if (qs_pack_sizes(d_out, d_in, bits, group, &sz, &pe) != QS_OK)
        QS_THROW(err, QS_ERR_INPUT, "%s: %s: %s", file, module, pe.msg);
    const int64_t G = qs_quant_ngroups(d_in, group);
    const int64_t s_qw[2] = {d_in * bits / 32, d_out}, s_qz[2] = {G, d_out * bits / 32},
                  s_sc[2] = {G, d_out}, s_gi[1] = {d_in};
    QS_CHECK(ck_take(s, module, "qweight", QS_DTYPE_I32, 2, s_qw, bits, group,
                     (void **)&p->qweight, err));
    QS_CHECK(ck_take(s, module, "qzeros", QS_DTYPE_I32, 2, s_qz, bits, group,
                     (void **)&p->qzeros, err));
    QS_CHECK(ck_take(s, module, "scales", QS_DTYPE_F16, 2, s_sc, bits, group,
                     (void **)&p->scales, err));
    QS_CHECK(ck_take(s, module, "g_idx", QS_DTYPE_I32, 1, s_gi, bits, group,
                     (void **)&p->g_idx, err));
    p->bits = bits;
    p->group_size = group;
    p->v1 = !s->v2;
    *d_out_io = d_out;
    *d_in_io = d_in;
    *found = 1;
done:
    if (st != QS_OK) packed4_free(p);
    return st;
}

/* Unpacks into the layout-neutral arrays of c (allocated here; freed by qs_qsource_codes_free). */
static qs_status unpack(const packed4 *p, const char *what, int64_t d_out, int64_t d_in,
                        qs_qsource_codes *c, qs_err *err) {
    qs_status st = QS_OK;
    const int64_t G = qs_quant_ngroups(d_in, p->group_size);
    qs_err pe = {0};
    memset(c, 0, sizeof(*c));
    c->codes = malloc((size_t)(d_out * d_in));                       /* (d_out, d_in) */
    c->scales = malloc(sizeof(uint16_t) * (size_t)(d_out * G));      /* (d_out, G) */
    c->zeros = malloc(sizeof(int32_t) * (size_t)(d_out * G));        /* (d_out, G) */
    c->g_idx = malloc(sizeof(int32_t) * (size_t)d_in);               /* (d_in,) */
    if (!c->codes || !c->scales || !c->zeros || !c->g_idx)
        QS_THROW(err, QS_ERR_RUNTIME, "%s: out of memory", what);
    if (qs_unpack_gptq(p->qweight, p->qzeros, p->scales, p->g_idx, d_out, d_in, p->bits,
                       p->group_size, p->v1, c->codes, c->scales, c->zeros, c->g_idx,
                       &pe) != QS_OK)
        QS_THROW(err, QS_ERR_INPUT, "%s: %s", what, pe.msg);
    c->d_out = d_out;
    c->d_in = d_in;
    c->bits = p->bits;
    c->group_size = p->group_size;
done:
    if (st != QS_OK) qs_qsource_codes_free(c);
    return st;
}

void qs_qsource_codes_free(qs_qsource_codes *c) {
    free(c->codes);
    free(c->scales);
    free(c->zeros);
    free(c->g_idx);
    memset(c, 0, sizeof(*c));
}

/* The weight of codes c into w (d_out, d_in) (nothing when w is NULL: a check only). */
static void codes_dequant(const qs_qsource_codes *c, float *w) {
    if (w)
        qs_quant_dequant_rows(c->codes, c->scales, c->zeros, c->g_idx, c->d_out, c->d_in,
                              qs_quant_ngroups(c->d_in, c->group_size), w);
}

/* Unpacks + dequantizes into w (d_out, d_in), or only checks (w = NULL). */
static qs_status dequant(const packed4 *p, const char *what, int64_t d_out, int64_t d_in,
                         float *w, qs_err *err) {
    qs_qsource_codes c;
    qs_status st = unpack(p, what, d_out, d_in, &c, err);
    if (st == QS_OK) codes_dequant(&c, w);
    qs_qsource_codes_free(&c);
    return st;
}

/* compressed-tensors export: the tensors of `module` unpacked into c (allocated here):
 * weight_packed rows are the streams of their codes, weight_zero_point columns the streams
 * of their zero points (symmetric: the implied 2^(b-1)), g_idx the weight_g_idx or the
 * natural grouping. *found = 0 when there is no <module>.weight_packed; d_out / d_in < 0:
 * taken from weight_shape, else checked against it. */
static qs_status ct_codes(const qs_qsource *s, const char *module, int64_t d_out,
                          int64_t d_in, qs_qsource_codes *c, int *found, qs_err *err) {
    qs_status st = QS_OK;
    char name[1100];
    qs_gptq_scheme sc;
    int64_t *shape = NULL;   /* (2,) [O, I] */
    uint32_t *packed = NULL; /* (d_out, d_in*b/32) weight_packed */
    uint32_t *zp = NULL;     /* (d_out*b/32, G) weight_zero_point, asymmetric only */
    uint32_t *row = NULL;    /* (max(d_in, d_out),) one unpacked stream */
    int32_t *gi = NULL;      /* (d_in,) weight_g_idx when written */
    qs_err why = {0};
    memset(c, 0, sizeof(*c));
    *found = 0;
    snprintf(name, sizeof(name), "%s.weight_packed", module);
    if (!qs_ckpt_find(&s->ck, name)) return QS_OK;
    const char *file = qs_ckpt_file_of(&s->ck, name);
    QS_CHECK(ck_scheme(s, module, "weight_packed", &sc, err));
    const int b = sc.bits, group = sc.group_size;
    const int64_t two = 2;
    QS_CHECK(ck_take(s, module, "weight_shape", QS_DTYPE_I64, 1, &two, b, group,
                     (void **)&shape, err));
    if ((d_out >= 0 && shape[0] != d_out) || (d_in >= 0 && shape[1] != d_in))
        QS_THROW(err, QS_ERR_INPUT, "%s: %s is (%lld, %lld), the model expects (%lld, %lld)",
                 file, module, (long long)shape[0], (long long)shape[1], (long long)d_out,
                 (long long)d_in);
    d_out = shape[0];
    d_in = shape[1];
    if (!qs_pack_can_serve(d_out, d_in, b, group, &why))
        QS_THROW(err, QS_ERR_INPUT, "%s: %s: %s", file, module, why.msg);
    const int64_t G = qs_quant_ngroups(d_in, group), wrow = d_in * b / 32;
    const int64_t s_wp[2] = {d_out, wrow}, s_sc[2] = {d_out, G}, s_zp[2] = {d_out * b / 32, G};
    QS_CHECK(ck_take(s, module, "weight_packed", QS_DTYPE_I32, 2, s_wp, b, group,
                     (void **)&packed, err));
    QS_CHECK(ck_take(s, module, "weight_scale", QS_DTYPE_F16, 2, s_sc, b, group,
                     (void **)&c->scales, err));               /* (d_out, G): as is */
    if (!sc.sym)
        QS_CHECK(ck_take(s, module, "weight_zero_point", QS_DTYPE_I32, 2, s_zp, b, group,
                         (void **)&zp, err));
    snprintf(name, sizeof(name), "%s.weight_g_idx", module);
    if (qs_ckpt_find(&s->ck, name))
        QS_CHECK(ck_take(s, module, "weight_g_idx", QS_DTYPE_I32, 1, &d_in, b, group,
                         (void **)&gi, err));
    c->codes = malloc((size_t)(d_out * d_in));                       /* (d_out, d_in) */
    c->zeros = malloc(sizeof(int32_t) * (size_t)(d_out * G));        /* (d_out, G) */
    c->g_idx = malloc(sizeof(int32_t) * (size_t)d_in);               /* (d_in,) */
    row = malloc(sizeof(uint32_t) * (size_t)(d_in > d_out ? d_in : d_out));
    if (!c->codes || !c->zeros || !c->g_idx || !row)
        QS_THROW(err, QS_ERR_RUNTIME, "%s: %s: out of memory", file, module);
    for (int64_t o = 0; o < d_out; ++o) {
        qs_unpack_stream(packed + o * wrow, d_in, b, 1, row);
        for (int64_t j = 0; j < d_in; ++j) c->codes[o * d_in + j] = (uint8_t)row[j];
    }
    for (int64_t g = 0; g < G; ++g) {
        if (zp) qs_unpack_stream(zp + g, d_out, b, G, row);
        for (int64_t o = 0; o < d_out; ++o)
            c->zeros[o * G + g] = zp ? (int32_t)row[o] : 1 << (b - 1);
    }
    for (int64_t j = 0; j < d_in; ++j) {
        c->g_idx[j] = gi ? gi[j] : group > 0 ? (int32_t)(j / group) : 0;
        if (c->g_idx[j] < 0 || c->g_idx[j] >= G)
            QS_THROW(err, QS_ERR_INPUT, "%s: %s.weight_g_idx[%lld] = %d is outside [0, %lld)",
                     file, module, (long long)j, c->g_idx[j], (long long)G);
    }
    c->d_out = d_out;
    c->d_in = d_in;
    c->bits = b;
    c->group_size = group;
    *found = 1;
done:
    if (st != QS_OK) qs_qsource_codes_free(c);
    free(shape);
    free(packed);
    free(zp);
    free(row);
    free(gi);
    return st;
}

/* GPTQ or compressed-tensors export: the codes of `module` (d_out / d_in < 0: from the
 * tensors); *found = 0 when the export holds no quantized form of it. */
static qs_status ckpt_codes(const qs_qsource *s, const char *module, int64_t d_out,
                            int64_t d_in, qs_qsource_codes *c, int *found, qs_err *err) {
    qs_status st = QS_OK;
    packed4 p;
    char name[1100], what[9000];
    memset(c, 0, sizeof(*c));
    memset(&p, 0, sizeof(p));
    *found = 0;
    if (s->ct) return ct_codes(s, module, d_out, d_in, c, found, err);
    if (!s->gptq)
        QS_THROW(err, QS_ERR_INTERNAL, "%s: codes are read from GPTQ and compressed-tensors "
                 "exports only", s->dir);
    QS_CHECK(gptq_packed(s, module, &d_out, &d_in, &p, found, err));
    if (!*found) goto done;
    snprintf(name, sizeof(name), "%s.qweight", module);
    snprintf(what, sizeof(what), "%s: %s", qs_ckpt_file_of(&s->ck, name), module);
    st = unpack(&p, what, d_out, d_in, c, err);
    if (st != QS_OK) *found = 0;
done:
    packed4_free(&p);
    return st;
}

qs_status qs_qsource_codes_of(const qs_qsource *s, const char *module, qs_qsource_codes *c,
                              int *found, qs_err *err) {
    return ckpt_codes(s, module, -1, -1, c, found, err);
}

/* HDF5: the linear `module` of an open shard dequantized into w (d_out, d_in), or only
 * checked (w = NULL). d_out / d_in < 0: taken from the shard's attributes. */
static qs_status h5_linear(qs_h5 *h, const char *module, int64_t d_out, int64_t d_in, float *w,
                           qs_err *err) {
    qs_status st = QS_OK;
    packed4 p;
    char what[9000];
    int64_t gt = -1;
    qs_err probe = {0};
    uint8_t *blocks = NULL;
    memset(&p, 0, sizeof(p));
    if (qs_h5_read_attr_i64(h, module, "gguf_type_id", &gt, &probe) == QS_OK) {
        /* a GGUF candidate's linear: <module>/blocks (d_out, row_bytes) */
        char name[1100];
        QS_CHECK(h5_dims(h, module, &d_out, &d_in, err));
        const int64_t rb = qs_gguf_type_known((int)gt) && qs_gguf_quant_supported((qs_gguf_type)gt)
                               ? qs_gguf_row_bytes((qs_gguf_type)gt, d_in)
                               : -1;
        if (rb <= 0)
            QS_THROW(err, QS_ERR_INPUT, "%s: %s: GGUF type %lld cannot hold %lld inputs", h->path,
                     module, (long long)gt, (long long)d_in);
        int64_t shape[2] = {d_out, rb};
        snprintf(name, sizeof(name), "%s/blocks", module);
        QS_CHECK(read_shaped(h, name, QS_H5_U8, 2, shape, (void **)&blocks, err));
        if (w) QS_CHECK(qs_gguf_dequantize_rows((qs_gguf_type)gt, blocks, d_out, d_in, w, err));
        goto done;
    }
    QS_CHECK(h5_packed(h, module, &d_out, &d_in, &p, err));
    snprintf(what, sizeof(what), "%s: %s", h->path, module);
    QS_CHECK(dequant(&p, what, d_out, d_in, w, err));
done:
    packed4_free(&p);
    free(blocks);
    return st;
}

/* GPTQ or compressed-tensors export: the linear `module` dequantized into w (d_out, d_in),
 * or only checked (w = NULL); *found = 0 when the export holds no quantized form of it.
 * d_out / d_in < 0: taken from the tensors. */
static qs_status ckpt_linear(const qs_qsource *s, const char *module, int64_t d_out,
                             int64_t d_in, float *w, int *found, qs_err *err) {
    qs_qsource_codes c;
    qs_status st = ckpt_codes(s, module, d_out, d_in, &c, found, err);
    if (st == QS_OK && *found) codes_dequant(&c, w);
    qs_qsource_codes_free(&c);
    return st;
}

qs_status qs_qsource_linear(const qs_qsource *s, const char *module, int64_t d_out,
                            int64_t d_in, float *w, int *found, qs_err *err) {
    qs_status st = QS_OK;
    qs_h5 h;
    memset(&h, 0, sizeof(h));
    h.file = -1;
    *found = 0;
    if (s->gguf) {
        char hf[1100], gn[QS_GGUF_NAME_MAX];
        snprintf(hf, sizeof(hf), "%s.weight", module);
        const int64_t i = qs_gguf_tensor_name(hf, gn, sizeof(gn)) == 0
                              ? qs_gguf_reader_find(&s->gr, gn)
                              : -1;
        if (i < 0) goto done;
        const qs_gguf_rtensor *t = &s->gr.t[i];
        if (t->ndim != 2 || t->shape[0] != d_out || t->shape[1] != d_in)
            QS_THROW(err, QS_ERR_INPUT, "%s: %s is not (%lld, %lld)", s->dir, gn,
                     (long long)d_out, (long long)d_in);
        QS_CHECK(qs_gguf_reader_f32(&s->gr, i, w, d_out * d_in, err));
        *found = 1;
    } else if (s->gptq || s->ct) {
        QS_CHECK(ckpt_linear(s, module, d_out, d_in, w, found, err));
    } else {
        int64_t i = find_name(s, module);
        if (i < 0) goto done;
        char path[4400];
        snprintf(path, sizeof(path), "%s/%s", s->dir, s->files[i]);
        QS_CHECK(qs_h5_open(&h, path, err));
        QS_CHECK(h5_linear(&h, module, d_out, d_in, w, err));
        *found = 1;
    }
done:
    if (st != QS_OK) *found = 0;
    qs_h5_abandon(&h);
    return st;
}

qs_status qs_qsource_tensor(const qs_qsource *s, const char *name, float *out, int64_t count,
                            int *found, qs_err *err) {
    qs_status st = QS_OK;
    qs_h5 h;
    void *raw = NULL;
    memset(&h, 0, sizeof(h));
    h.file = -1;
    *found = 0;
    if (s->gguf) return gguf_tensor(s, name, out, count, found, err);
    if (s->gptq || s->ct) {
        const qs_st_tensor *t = qs_ckpt_find(&s->ck, name);
        if (!t) return QS_OK;
        if (qs_st_numel(t) != count)
            return QS_FAIL(err, QS_ERR_INPUT, "%s: tensor %s has %lld elements, expected %lld",
                           qs_ckpt_file_of(&s->ck, name), name, (long long)qs_st_numel(t),
                           (long long)count);
        st = qs_ckpt_read_f32(&s->ck, t, 0, count, out, err);
        *found = st == QS_OK;
        return st;
    }
    int64_t i = find_name(s, name), dt = 0, dims[8], n = 1;
    int nd = 0;
    char path[4400];
    if (i < 0) return QS_OK;
    snprintf(path, sizeof(path), "%s/%s", s->dir, s->files[i]);
    QS_CHECK(qs_h5_open(&h, path, err));
    QS_CHECK(qs_h5_read_attr_i64(&h, name, "st_dtype", &dt, err));
    if (dt != QS_DTYPE_F32 && dt != QS_DTYPE_F16 && dt != QS_DTYPE_BF16)
        QS_THROW(err, QS_ERR_INPUT, "%s: %s is not a float tensor", path, name);
    QS_CHECK(qs_h5_read(&h, name, dt == QS_DTYPE_F32 ? QS_H5_F32 : QS_H5_U16, &nd, dims, &raw, err));
    for (int k = 0; k < nd; ++k) n *= dims[k];
    if (n != count)
        QS_THROW(err, QS_ERR_INPUT, "%s: %s has %lld elements, expected %lld", path, name,
                 (long long)n, (long long)count);
    if (dt == QS_DTYPE_F32) memcpy(out, raw, sizeof(float) * (size_t)count);
    else if (dt == QS_DTYPE_BF16) qs_bf16_to_f32_n(raw, out, (size_t)count);
    else qs_f16_to_f32_n(raw, out, (size_t)count);
    *found = 1;
done:
    free(raw);
    qs_h5_abandon(&h);
    return st;
}

qs_status qs_qsource_verify(const qs_qsource *s, int64_t *nlinears, int64_t *ntensors,
                            qs_err *err) {
    qs_status st = QS_OK;
    qs_h5 h;
    memset(&h, 0, sizeof(h));
    h.file = -1;
    *nlinears = *ntensors = 0;
    if (s->gguf) { /* every tensor decoded (blocks dequantized, q/k un-permuted) */
        for (int64_t i = 0; i < s->gr.ntensors; ++i) {
            const qs_gguf_rtensor *t = &s->gr.t[i];
            const int64_t numel = t->rows * t->shape[t->ndim - 1];
            float *w = qs_malloc(sizeof(float) * (size_t)numel, err, "GGUF tensor");
            if (!w) QS_THROW(err, QS_ERR_RUNTIME, "out of memory (%s)", t->name);
            st = qs_gguf_reader_f32(&s->gr, i, w, numel, err);
            free(w);
            if (st != QS_OK) goto done;
            if (qs_gguf_quant_supported(t->type)) (*nlinears)++;
            else (*ntensors)++;
        }
        goto done;
    }
    if (s->gptq || s->ct) {
        const char *suffix = s->ct ? ".weight_packed" : ".qweight";
        const size_t k = strlen(suffix);
        for (int64_t e = 0; e < s->ck.nentries; ++e) {
            const char *n = s->ck.entries[e].name;
            size_t len = strlen(n);
            (*ntensors)++;
            if (len <= k || strcmp(n + len - k, suffix) != 0) continue;
            char module[1024];
            snprintf(module, sizeof(module), "%.*s", (int)(len - k), n);
            int found = 0;
            QS_CHECK(ckpt_linear(s, module, -1, -1, NULL, &found, err));
            (*nlinears)++;
        }
        goto done;
    }
    for (int64_t i = 0; i < s->n; ++i) {
        char path[4400];
        snprintf(path, sizeof(path), "%s/%s", s->dir, s->files[i]);
        QS_CHECK(qs_h5_open(&h, path, err));
        int64_t bits = 0;
        qs_err probe = {0};
        if (qs_h5_read_attr_i64(&h, s->names[i], "bits", &bits, &probe) == QS_OK ||
            qs_h5_read_attr_i64(&h, s->names[i], "gguf_type_id", &bits, &probe) == QS_OK) {
            QS_CHECK(h5_linear(&h, s->names[i], -1, -1, NULL, err));
            (*nlinears)++;
        } else {
            int64_t dt = 0;
            QS_CHECK(qs_h5_read_attr_i64(&h, s->names[i], "st_dtype", &dt, err));
            if (dt < QS_DTYPE_F32 || dt > QS_DTYPE_I32)
                QS_THROW(err, QS_ERR_INPUT, "%s: %s has st_dtype %lld", path, s->names[i],
                         (long long)dt);
            (*ntensors)++;
        }
        qs_h5_abandon(&h);
    }
done:
    qs_h5_abandon(&h);
    return st;
}
