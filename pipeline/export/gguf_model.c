/* gguf_model.c: Llama / Mistral / Qwen2 in llama.cpp's GGUF layout (see gguf_model.h). */
#include "gguf_model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#define ROW_CHUNK_BYTES ((size_t)8 << 20) /* f32 bytes read per piece of a large tensor */

const char *qs_gguf_arch_name(qs_arch arch) { return arch == QS_ARCH_QWEN2 ? "qwen2" : "llama"; }

/* GGUF names of the block tensors, indexed like qs_linear_kind. */
static const char *const k_lin_gguf[QS_LIN_COUNT] = {"attn_q",   "attn_k", "attn_v",
                                                      "attn_output", "ffn_gate", "ffn_up",
                                                      "ffn_down"};

int qs_gguf_tensor_name(const char *hf, char *buf, size_t n) {
    int w = -1;
    if (strcmp(hf, "model.embed_tokens.weight") == 0) w = snprintf(buf, n, "token_embd.weight");
    else if (strcmp(hf, "model.norm.weight") == 0) w = snprintf(buf, n, "output_norm.weight");
    else if (strcmp(hf, "lm_head.weight") == 0) w = snprintf(buf, n, "output.weight");
    else if (strncmp(hf, "model.layers.", 13) == 0) {
        const char *p = hf + 13;
        char *end = NULL;
        if (*p < '0' || *p > '9') return -1;
        long long layer = strtoll(p, &end, 10);
        if (!end || *end != '.') return -1;
        const char *rest = end + 1;
        if (strcmp(rest, "input_layernorm.weight") == 0)
            w = snprintf(buf, n, "blk.%lld.attn_norm.weight", layer);
        else if (strcmp(rest, "post_attention_layernorm.weight") == 0)
            w = snprintf(buf, n, "blk.%lld.ffn_norm.weight", layer);
        else {
            for (int k = 0; k < QS_LIN_COUNT; ++k) {
                const char *ln = qs_linear_name((qs_linear_kind)k);
                size_t l = strlen(ln);
                if (strncmp(rest, ln, l) != 0 || rest[l] != '.') continue;
                const char *suf = rest + l + 1;
                if (strcmp(suf, "weight") == 0 || strcmp(suf, "bias") == 0)
                    w = snprintf(buf, n, "blk.%lld.%s.%s", layer, k_lin_gguf[k], suf);
                break;
            }
        }
    }
    return (w >= 0 && (size_t)w < n) ? 0 : -1;
}

static void add_tensor(qs_gguf_model_tensor *t, int64_t *n, const char *name, const char *hf,
                       int64_t layer, int linear, int bias, int ndim, int64_t d0, int64_t d1,
                       int64_t permute, qs_gguf_type weight_type) {
    qs_gguf_model_tensor *e = &t[(*n)++];
    memset(e, 0, sizeof(*e));
    snprintf(e->name, sizeof(e->name), "%s", name);
    snprintf(e->hf_name, sizeof(e->hf_name), "%s", hf);
    e->layer = layer;
    e->linear = linear;
    e->bias = bias;
    e->ndim = ndim;
    e->shape[0] = d0;
    e->shape[1] = ndim == 2 ? d1 : 0;
    e->permute_head_rows = permute;
    /* the converter: 1-D tensors and *_norm.weight are F32, the rest the output type */
    const size_t nl = strlen(name);
    const int norm = nl > 12 && strcmp(name + nl - 12, "_norm.weight") == 0;
    e->type = (ndim <= 1 || norm) ? QS_GGUF_F32 : weight_type;
}

qs_status qs_gguf_model_tensors(const qs_hf_config *hf, qs_gguf_type weight_type,
                                qs_gguf_model_tensor **out, int64_t *n, qs_err *err) {
    qs_status st = QS_OK;
    qs_gguf_model_tensor *t = NULL;
    int64_t k = 0;
    char name[QS_GGUF_NAME_MAX], hfn[128];
    *out = NULL;
    *n = 0;
    if (!qs_gguf_type_known((int)weight_type))
        QS_THROW(err, QS_ERR_INPUT, "GGUF: unknown weight type %d", (int)weight_type);
    if (hf->num_hidden_layers < 1 || hf->num_hidden_layers > 100000)
        QS_THROW(err, QS_ERR_INPUT, "GGUF: %lld layers", (long long)hf->num_hidden_layers);
    const int64_t per_layer = 2 + 2 * QS_LIN_COUNT;
    const int64_t cap = 4 + per_layer * hf->num_hidden_layers;
    t = qs_calloc((size_t)cap, sizeof(*t), err, "GGUF tensor list");
    if (!t) QS_THROW(err, QS_ERR_RUNTIME, "GGUF tensor list: out of memory");
    const int permute = hf->arch != QS_ARCH_QWEN2;
    const int64_t h = hf->hidden_size;
    if (hf->rope.type == QS_ROPE_LLAMA3)
        add_tensor(t, &k, "rope_freqs.weight", "", -1, -1, 0, 1, hf->head_dim / 2, 0, 0,
                   weight_type);
    add_tensor(t, &k, "token_embd.weight", "model.embed_tokens.weight", -1, -1, 0, 2,
               hf->vocab_size, h, 0, weight_type);
    for (int64_t l = 0; l < hf->num_hidden_layers; ++l) {
        for (int kind = 0; kind < QS_LIN_COUNT; ++kind) {
            if (kind == QS_LIN_Q) {
                snprintf(name, sizeof(name), "blk.%lld.attn_norm.weight", (long long)l);
                qs_norm_tensor_name(hfn, sizeof(hfn), l, QS_NORM_INPUT);
                add_tensor(t, &k, name, hfn, l, -1, 0, 1, h, 0, 0, weight_type);
            }
            if (kind == QS_LIN_GATE) {
                snprintf(name, sizeof(name), "blk.%lld.ffn_norm.weight", (long long)l);
                qs_norm_tensor_name(hfn, sizeof(hfn), l, QS_NORM_POST_ATTN);
                add_tensor(t, &k, name, hfn, l, -1, 0, 1, h, 0, 0, weight_type);
            }
            int64_t d_out, d_in;
            qs_linear_dims(hf, (qs_linear_kind)kind, &d_out, &d_in);
            const int64_t perm =
                (permute && (kind == QS_LIN_Q || kind == QS_LIN_K)) ? hf->head_dim : 0;
            for (int bias = 0; bias <= 1; ++bias) {
                if (bias && !qs_linear_has_bias(hf, (qs_linear_kind)kind)) continue;
                snprintf(name, sizeof(name), "blk.%lld.%s.%s", (long long)l, k_lin_gguf[kind],
                         bias ? "bias" : "weight");
                qs_linear_tensor_name(hfn, sizeof(hfn), l, (qs_linear_kind)kind, bias);
                add_tensor(t, &k, name, hfn, l, kind, bias, bias ? 1 : 2, d_out, d_in, perm,
                           weight_type);
            }
        }
    }
    add_tensor(t, &k, "output_norm.weight", "model.norm.weight", -1, -1, 0, 1, h, 0, 0,
               weight_type);
    if (!hf->tie_word_embeddings)
        add_tensor(t, &k, "output.weight", "lm_head.weight", -1, -1, 0, 2, hf->vocab_size, h, 0,
                   weight_type);
    *out = t;
    *n = k;
    t = NULL;
done:
    free(t);
    return st;
}

void qs_gguf_model_decls(const qs_gguf_model_tensor *t, int64_t n, qs_gguf_tensor_decl *d) {
    for (int64_t i = 0; i < n; ++i) {
        memset(&d[i], 0, sizeof(d[i]));
        d[i].name = t[i].name;
        d[i].type = t[i].type;
        d[i].ndim = t[i].ndim;
        d[i].shape[0] = t[i].shape[0];
        d[i].shape[1] = t[i].shape[1];
    }
}

uint32_t qs_gguf_file_type(const qs_gguf_model_tensor *t, int64_t n) {
    static const struct { qs_gguf_type type; uint32_t ftype; } map[] = {
        {QS_GGUF_F32, 0},   {QS_GGUF_F16, 1},   {QS_GGUF_Q4_0, 2},  {QS_GGUF_Q4_1, 3},
        {QS_GGUF_Q8_0, 7},  {QS_GGUF_Q5_0, 8},  {QS_GGUF_Q5_1, 9},  {QS_GGUF_Q2_K, 10},
        {QS_GGUF_Q3_K, 11}, {QS_GGUF_Q4_K, 14}, {QS_GGUF_Q5_K, 16}, {QS_GGUF_Q6_K, 18},
        {QS_GGUF_BF16, 32}};
    const int nmap = (int)(sizeof(map) / sizeof(map[0]));
    int64_t count[sizeof(map) / sizeof(map[0])] = {0};
    for (int64_t i = 0; i < n; ++i) {
        if (t[i].ndim != 2) continue;
        for (int j = 0; j < nmap; ++j)
            if (map[j].type == t[i].type) count[j] += t[i].shape[0] * t[i].shape[1];
    }
    int best = 0;
    for (int j = 1; j < nmap; ++j)
        if (count[j] > count[best] ||
            (count[j] == count[best] && (int)map[j].type < (int)map[best].type))
            best = j;
    return map[best].ftype;
}

/* general.sampling.* from generation_config.json (gguf-py Metadata.load): key in the file,
 * GGUF key, 'i' i32 / 'f' f32 / 's' string. */
static qs_status add_sampling(qs_gguf_meta *m, const char *model_dir, qs_err *err) {
    static const struct { const char *json, *key; char kind; } k_keys[] = {
        {"sequence", "general.sampling.sequence", 's'},
        {"top_k", "general.sampling.top_k", 'i'},
        {"top_p", "general.sampling.top_p", 'f'},
        {"min_p", "general.sampling.min_p", 'f'},
        {"xtc_probability", "general.sampling.xtc_probability", 'f'},
        {"xtc_threshold", "general.sampling.xtc_threshold", 'f'},
        {"temperature", "general.sampling.temp", 'f'},
        {"penalty_last_n", "general.sampling.penalty_last_n", 'i'},
        {"penalty_repeat", "general.sampling.penalty_repeat", 'f'},
        {"mirostat", "general.sampling.mirostat", 'i'},
        {"mirostat_tau", "general.sampling.mirostat_tau", 'f'},
        {"mirostat_eta", "general.sampling.mirostat_eta", 'f'}};
    qs_status st = QS_OK;
    char path[4096];
    char *text = NULL;
    cJSON *root = NULL;
    FILE *f = NULL;
    snprintf(path, sizeof(path), "%s/generation_config.json", model_dir);
    f = fopen(path, "rb");
    if (!f) goto done; /* none: no sampling keys */
    if (fseek(f, 0, SEEK_END) != 0) goto done;
    long n = ftell(f);
    if (n < 0 || n > (16L << 20)) goto done;
    rewind(f);
    text = malloc((size_t)n + 1);
    if (!text) QS_THROW(err, QS_ERR_RUNTIME, "%s: out of memory", path);
    if (fread(text, 1, (size_t)n, f) != (size_t)n) goto done;
    root = cJSON_ParseWithLength(text, (size_t)n);
    if (!cJSON_IsObject(root)) goto done; /* not valid: skipped, as the converter does */
    for (size_t i = 0; i < sizeof(k_keys) / sizeof(k_keys[0]); ++i) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, k_keys[i].json);
        if (!v || cJSON_IsNull(v)) continue;
        const double d = cJSON_IsNumber(v) ? v->valuedouble : 0.0;
        if (k_keys[i].kind == 's' && cJSON_IsString(v) && v->valuestring[0])
            QS_CHECK(qs_gguf_meta_set_str(m, k_keys[i].key, v->valuestring, err));
        else if (k_keys[i].kind == 'i' && cJSON_IsNumber(v) && d >= -2147483648.0 &&
                 d <= 2147483647.0 && d == (double)(int64_t)d)
            QS_CHECK(qs_gguf_meta_set_i32(m, k_keys[i].key, (int32_t)d, err));
        else if (k_keys[i].kind == 'f' && cJSON_IsNumber(v))
            QS_CHECK(qs_gguf_meta_set_f32(m, k_keys[i].key, (float)d, err));
    }
done:
    if (f) fclose(f);
    free(text);
    cJSON_Delete(root);
    return st;
}

qs_status qs_gguf_meta_add_model(qs_gguf_meta *m, const qs_hf_config *hf, const char *model_dir,
                                 const char *name, uint32_t file_type, qs_err *err) {
    qs_status st = QS_OK;
    const char *arch = qs_gguf_arch_name(hf->arch);
    char key[96];
#define ARCH_KEY(suffix) (snprintf(key, sizeof(key), "%s.%s", arch, suffix), key)
    if (!name || !*name) QS_THROW(err, QS_ERR_INPUT, "GGUF: general.name must not be empty");
    QS_CHECK(qs_gguf_meta_set_str(m, "general.architecture", arch, err));
    QS_CHECK(qs_gguf_meta_set_str(m, "general.type", "model", err));
    if (model_dir) QS_CHECK(add_sampling(m, model_dir, err));
    QS_CHECK(qs_gguf_meta_set_str(m, "general.name", name, err));
    QS_CHECK(qs_gguf_meta_set_u32(m, ARCH_KEY("block_count"), (uint32_t)hf->num_hidden_layers,
                                  err));
    QS_CHECK(qs_gguf_meta_set_u32(m, ARCH_KEY("context_length"),
                                  (uint32_t)hf->max_position_embeddings, err));
    QS_CHECK(qs_gguf_meta_set_u32(m, ARCH_KEY("embedding_length"), (uint32_t)hf->hidden_size,
                                  err));
    QS_CHECK(qs_gguf_meta_set_u32(m, ARCH_KEY("feed_forward_length"),
                                  (uint32_t)hf->intermediate_size, err));
    QS_CHECK(qs_gguf_meta_set_u32(m, ARCH_KEY("attention.head_count"),
                                  (uint32_t)hf->num_attention_heads, err));
    QS_CHECK(qs_gguf_meta_set_u32(m, ARCH_KEY("attention.head_count_kv"),
                                  (uint32_t)hf->num_key_value_heads, err));
    if (hf->rope.type == QS_ROPE_LINEAR) {
        QS_CHECK(qs_gguf_meta_set_str(m, ARCH_KEY("rope.scaling.type"), "linear", err));
        QS_CHECK(qs_gguf_meta_set_f32(m, ARCH_KEY("rope.scaling.factor"), (float)hf->rope.factor,
                                      err));
    }
    QS_CHECK(qs_gguf_meta_set_f32(m, ARCH_KEY("rope.freq_base"), (float)hf->rope.theta, err));
    QS_CHECK(qs_gguf_meta_set_f32(m, ARCH_KEY("attention.layer_norm_rms_epsilon"),
                                  (float)hf->rms_norm_eps, err));
    QS_CHECK(qs_gguf_meta_set_u32(m, ARCH_KEY("attention.key_length"), (uint32_t)hf->head_dim,
                                  err));
    QS_CHECK(qs_gguf_meta_set_u32(m, ARCH_KEY("attention.value_length"), (uint32_t)hf->head_dim,
                                  err));
    if (hf->arch != QS_ARCH_QWEN2) {
        QS_CHECK(qs_gguf_meta_set_u32(m, ARCH_KEY("vocab_size"), (uint32_t)hf->vocab_size, err));
        QS_CHECK(qs_gguf_meta_set_u32(m, ARCH_KEY("rope.dimension_count"), (uint32_t)hf->head_dim,
                                      err));
    }
    QS_CHECK(qs_gguf_meta_set_u32(m, "general.file_type", file_type, err));
    QS_CHECK(qs_gguf_meta_set_u32(m, "general.quantization_version", 2, err));
#undef ARCH_KEY
done:
    return st;
}

void qs_gguf_permute_rows(const void *src, void *dst, int64_t rows, size_t row_bytes,
                          int64_t head_rows) {
    const unsigned char *s = src;
    unsigned char *d = dst;
    const int64_t half = head_rows / 2;
    for (int64_t h0 = 0; h0 < rows; h0 += head_rows)
        for (int64_t i = 0; i < half; ++i)
            for (int64_t j = 0; j < 2; ++j)
                memcpy(d + (size_t)(h0 + 2 * i + j) * row_bytes,
                       s + (size_t)(h0 + j * half + i) * row_bytes, row_bytes);
}

void qs_gguf_rope_freqs(const qs_hf_config *hf, float *out) {
    /* f32 throughout, in the converter's order (LlamaModel.generate_extra_tensors) */
    const int64_t dim = hf->head_dim;
    const float base = (float)hf->rope.theta;
    const float factor = (float)hf->rope.factor;
    const float lo = (float)hf->rope.low_freq_factor;
    const double old_ctx = (double)hf->rope.original_max_position;
    const float lo_wavelen = (float)(old_ctx / hf->rope.low_freq_factor);
    const float hi_wavelen = (float)(old_ctx / hf->rope.high_freq_factor);
    const float span = (float)(hf->rope.high_freq_factor - hf->rope.low_freq_factor);
    const float two_pi = (float)(2.0 * 3.14159265358979323846);
    for (int64_t i = 0; i < dim / 2; ++i) {
        const float expo = (float)(2 * i) / (float)dim;
        const float freq = 1.0f / powf(base, expo);
        const float wavelen = two_pi / freq;
        if (wavelen < hi_wavelen) out[i] = 1.0f;
        else if (wavelen > lo_wavelen) out[i] = factor;
        else {
            const float smooth = ((float)old_ctx / wavelen - lo) / span;
            out[i] = 1.0f / ((1.0f - smooth) / factor + smooth);
        }
    }
}

qs_status qs_gguf_write_tensor_bytes(qs_gguf_file *f, const qs_gguf_layout *L, int64_t t,
                                     const qs_gguf_model_tensor *mt, const void *bytes,
                                     size_t nbytes, qs_err *err) {
    qs_status st = QS_OK;
    unsigned char *tmp = NULL;
    if (t < 0 || t >= L->ntensors || strcmp(L->names[t], mt->name) != 0)
        QS_THROW(err, QS_ERR_INTERNAL, "GGUF: tensor '%s' is not layout entry %lld", mt->name,
                 (long long)t);
    if (nbytes != L->nbytes[t])
        QS_THROW(err, QS_ERR_INPUT, "GGUF tensor '%s': %zu bytes given, %s needs %llu", mt->name,
                 nbytes, qs_gguf_type_name(L->types[t]), (unsigned long long)L->nbytes[t]);
    const void *src = bytes;
    if (mt->permute_head_rows > 0) {
        /* a 2-D tensor permutes its rows, a 1-D one (a bias) its elements */
        int64_t units = L->rows[t];
        size_t unit_bytes = (size_t)L->row_bytes[t];
        if (mt->ndim == 1) {
            if (qs_gguf_block_elems(L->types[t]) != 1)
                QS_THROW(err, QS_ERR_INPUT, "GGUF tensor '%s': a permuted 1-D tensor must have a "
                         "float type, not %s", mt->name, qs_gguf_type_name(L->types[t]));
            units = mt->shape[0];
            unit_bytes = (size_t)(L->row_bytes[t] / (uint64_t)units);
        }
        if (units % mt->permute_head_rows != 0 || mt->permute_head_rows % 2 != 0)
            QS_THROW(err, QS_ERR_INPUT, "GGUF tensor '%s': %lld rows are not whole heads of %lld",
                     mt->name, (long long)units, (long long)mt->permute_head_rows);
        tmp = qs_malloc(nbytes, err, "permuted tensor");
        if (!tmp) QS_THROW(err, QS_ERR_RUNTIME, "GGUF tensor '%s': out of memory", mt->name);
        qs_gguf_permute_rows(bytes, tmp, units, unit_bytes, mt->permute_head_rows);
        src = tmp;
    }
    QS_CHECK(qs_gguf_file_write(f, t, 0, src, nbytes, err));
done:
    free(tmp);
    return st;
}

qs_status qs_gguf_write_checkpoint_tensor(qs_gguf_file *f, const qs_gguf_layout *L,
                                          int64_t t, const qs_model *m,
                                          const qs_gguf_model_tensor *mt, qs_err *err) {
    qs_status st = QS_OK;
    float *x = NULL, *xp = NULL;
    unsigned char *enc = NULL;
    if (t < 0 || t >= L->ntensors || strcmp(L->names[t], mt->name) != 0)
        QS_THROW(err, QS_ERR_INTERNAL, "GGUF: tensor '%s' is not layout entry %lld", mt->name,
                 (long long)t);
    const qs_gguf_type type = L->types[t];
    if (type != QS_GGUF_F32 && type != QS_GGUF_F16 && type != QS_GGUF_BF16)
        QS_THROW(err, QS_ERR_INPUT, "GGUF tensor '%s': type %s needs quantized bytes", mt->name,
                 qs_gguf_type_name(type));
    const int64_t rows = L->rows[t];
    const int64_t cols = mt->ndim == 2 ? mt->shape[1] : mt->shape[0];
    const size_t esz = type == QS_GGUF_F32 ? 4 : 2;
    if (!mt->hf_name[0]) {
        /* generated: rope_freqs */
        x = qs_malloc((size_t)cols * sizeof(float), err, "rope_freqs");
        enc = qs_malloc((size_t)cols * esz, err, "rope_freqs");
        if (!x || !enc) QS_THROW(err, QS_ERR_RUNTIME, "GGUF: out of memory");
        qs_gguf_rope_freqs(&m->hf, x);
        QS_CHECK(qs_gguf_encode_float(type, x, cols, enc, err));
        QS_CHECK(qs_gguf_file_write(f, t, 0, enc, (size_t)cols * esz, err));
        goto done;
    }
    /* rows per piece: whole heads when permuted, about ROW_CHUNK_BYTES of f32 otherwise */
    const int64_t unit = mt->permute_head_rows > 0 ? mt->permute_head_rows : 1;
    const int64_t units = mt->ndim == 2 ? rows : cols; /* a 1-D tensor permutes elements */
    if (units % unit != 0 || (unit > 1 && unit % 2 != 0))
        QS_THROW(err, QS_ERR_INPUT, "GGUF tensor '%s': %lld rows are not whole heads of %lld",
                 mt->name, (long long)units, (long long)unit);
    int64_t chunk = (int64_t)(ROW_CHUNK_BYTES / ((size_t)cols * sizeof(float))) / unit * unit;
    if (mt->ndim == 1 || chunk < unit) chunk = mt->ndim == 1 ? 1 : unit;
    if (chunk > rows) chunk = rows;
    const size_t elems = (size_t)chunk * (size_t)cols;
    x = qs_malloc(elems * sizeof(float), err, "tensor rows");  /* (chunk, cols) as read */
    xp = qs_malloc(elems * sizeof(float), err, "tensor rows"); /* (chunk, cols) permuted */
    enc = qs_malloc(elems * esz, err, "encoded rows");         /* (chunk, cols) encoded */
    if (!x || !xp || !enc)
        QS_THROW(err, QS_ERR_RUNTIME, "GGUF tensor '%s': out of memory", mt->name);
    for (int64_t r0 = 0; r0 < rows; r0 += chunk) {
        const int64_t nr = rows - r0 < chunk ? rows - r0 : chunk;
        if (mt->ndim == 2) QS_CHECK(qs_model_read_rows(m, mt->hf_name, r0, nr, x, err));
        else QS_CHECK(qs_model_read_tensor(m, mt->hf_name, x, cols, err));
        const float *src = x;
        if (mt->permute_head_rows > 0) {
            if (mt->ndim == 2)
                qs_gguf_permute_rows(x, xp, nr, (size_t)cols * sizeof(float), unit);
            else /* a bias: its elements are the rows */
                qs_gguf_permute_rows(x, xp, cols, sizeof(float), unit);
            src = xp;
        }
        QS_CHECK(qs_gguf_encode_float(type, src, nr * cols, enc, err));
        QS_CHECK(qs_gguf_file_write(f, t, (uint64_t)r0 * L->row_bytes[t], enc,
                                    (size_t)(nr * cols) * esz, err));
    }
done:
    free(x);
    free(xp);
    free(enc);
    return st;
}
