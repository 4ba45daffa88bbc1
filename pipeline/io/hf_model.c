/* model.c: open a model directory and check every tensor the architecture needs; read
 * weights as f32 (see model.h). */
#include "hf_model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NAME_MAX_LEN 256

static const char *const LIN_NAMES[QS_LIN_COUNT] = {
    "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
    "mlp.gate_proj",    "mlp.up_proj",      "mlp.down_proj"};

const char *qs_linear_name(qs_linear_kind k) {
    return (k >= 0 && k < QS_LIN_COUNT) ? LIN_NAMES[k] : "?";
}

const char *qs_linear_short_name(qs_linear_kind k) {
    const char *n = qs_linear_name(k);
    const char *dot = strchr(n, '.');
    return dot ? dot + 1 : n;
}

void qs_linear_dims(const qs_hf_config *hf, qs_linear_kind k, int64_t *d_out, int64_t *d_in) {
    int64_t h = hf->hidden_size, in = hf->intermediate_size;
    int64_t q = hf->num_attention_heads * hf->head_dim;
    int64_t kv = hf->num_key_value_heads * hf->head_dim;
    switch (k) {
    case QS_LIN_Q: *d_out = q, *d_in = h; break;
    case QS_LIN_K:
    case QS_LIN_V: *d_out = kv, *d_in = h; break;
    case QS_LIN_O: *d_out = h, *d_in = q; break;
    case QS_LIN_GATE:
    case QS_LIN_UP: *d_out = in, *d_in = h; break;
    case QS_LIN_DOWN: *d_out = h, *d_in = in; break;
    default: *d_out = 0, *d_in = 0; break;
    }
}

int qs_linear_has_bias(const qs_hf_config *hf, qs_linear_kind k) {
    switch (k) {
    case QS_LIN_Q:
    case QS_LIN_K:
    case QS_LIN_V: return hf->qkv_bias;
    case QS_LIN_O: return hf->o_bias;
    case QS_LIN_GATE:
    case QS_LIN_UP:
    case QS_LIN_DOWN: return hf->mlp_bias;
    default: return 0;
    }
}

int qs_linear_tensor_name(char *buf, size_t n, int64_t layer, qs_linear_kind k, int bias) {
    return snprintf(buf, n, "model.layers.%lld.%s.%s", (long long)layer, qs_linear_name(k),
                    bias ? "bias" : "weight");
}

int qs_norm_tensor_name(char *buf, size_t n, int64_t layer, qs_norm_kind k) {
    return snprintf(buf, n, "model.layers.%lld.%s.weight", (long long)layer,
                    k == QS_NORM_INPUT ? "input_layernorm" : "post_attention_layernorm");
}

const char *qs_model_lm_head_name(const qs_model *m) {
    return m->hf.tie_word_embeddings ? "model.embed_tokens.weight" : "lm_head.weight";
}

/* The file to name when a tensor is missing: the index, or the single safetensors file. */
static const char *missing_where(const qs_model *m) {
    if (m->ckpt.index_path) return m->ckpt.index_path;
    if (m->ckpt.nshards == 1) return m->ckpt.shards[0].path;
    return m->dir;
}

/* Checks that tensor `name` exists with shape `shape` (ndim) and a float dtype; adds its
 * element count to *params. */
static qs_status require(const qs_model *m, const char *name, const int64_t *shape, int ndim,
                         int64_t *params, qs_err *err) {
    char want[96], got[96];
    const qs_st_tensor *t = qs_ckpt_find(&m->ckpt, name);
    qs_shape_str(shape, ndim, want, sizeof(want));
    if (!t)
        return QS_FAIL(err, QS_ERR_INPUT,
                       "%s: tensor '%s' is missing (expected shape %s for %s)",
                       missing_where(m), name, want, m->hf.architecture);
    const char *file = qs_ckpt_file_of(&m->ckpt, name);
    int same = t->ndim == ndim;
    for (int d = 0; same && d < ndim; ++d) same = t->shape[d] == shape[d];
    if (!same) {
        qs_shape_str(t->shape, t->ndim, got, sizeof(got));
        return QS_FAIL(err, QS_ERR_INPUT,
                       "%s: tensor '%s' has shape %s, expected %s from config.json (wrong shape)",
                       file, name, got, want);
    }
    if (t->dtype == QS_DTYPE_I32)
        return QS_FAIL(err, QS_ERR_INPUT,
                       "%s: tensor '%s' has dtype I32; weights need a float dtype (F32, F16, "
                       "BF16)",
                       file, name);
    *params += qs_st_numel(t);
    return QS_OK;
}

/* Layer index of "model.layers.<N>.<rest>", or -1 for other names. */
static int64_t layer_of(const char *name) {
    const char *p = "model.layers.";
    size_t n = strlen(p);
    if (strncmp(name, p, n) != 0) return -1;
    const char *s = name + n;
    int64_t v = 0;
    int digits = 0;
    while (*s >= '0' && *s <= '9' && digits < 12) v = v * 10 + (*s++ - '0'), ++digits;
    return (digits && *s == '.') ? v : -1;
}

qs_status qs_model_open(qs_model *m, const char *dir, qs_err *err) {
    qs_status st = QS_OK;
    char *cfg_path = NULL;
    char name[NAME_MAX_LEN];
    memset(m, 0, sizeof(*m));
    m->dir = strdup(dir);
    size_t len = strlen(dir) + sizeof("/config.json");
    cfg_path = malloc(len);
    if (!m->dir || !cfg_path) QS_THROW(err, QS_ERR_RUNTIME, "out of memory");
    snprintf(cfg_path, len, "%s%sconfig.json", dir,
             (dir[0] && dir[strlen(dir) - 1] == '/') ? "" : "/");
    QS_CHECK(qs_hf_config_read(&m->hf, cfg_path, err));
    QS_CHECK(qs_ckpt_open(&m->ckpt, dir, err));

    const qs_hf_config *hf = &m->hf;
    int64_t h = hf->hidden_size, used = 0, params = 0;
    int64_t shp[2];
    shp[0] = hf->vocab_size, shp[1] = h;
    QS_CHECK(require(m, "model.embed_tokens.weight", shp, 2, &params, err));
    ++used;
    for (int64_t l = 0; l < hf->num_hidden_layers; ++l) {
        for (int k = 0; k < 2; ++k) {
            qs_norm_tensor_name(name, sizeof(name), l, (qs_norm_kind)k);
            QS_CHECK(require(m, name, &h, 1, &params, err));
            ++used;
        }
        for (int k = 0; k < QS_LIN_COUNT; ++k) {
            qs_linear_dims(hf, (qs_linear_kind)k, &shp[0], &shp[1]);
            qs_linear_tensor_name(name, sizeof(name), l, (qs_linear_kind)k, 0);
            QS_CHECK(require(m, name, shp, 2, &params, err));
            ++used;
            if (qs_linear_has_bias(hf, (qs_linear_kind)k)) {
                qs_linear_tensor_name(name, sizeof(name), l, (qs_linear_kind)k, 1);
                QS_CHECK(require(m, name, shp, 1, &params, err));
                ++used;
            }
        }
    }
    QS_CHECK(require(m, "model.norm.weight", &h, 1, &params, err));
    ++used;
    const qs_st_tensor *head = qs_ckpt_find(&m->ckpt, "lm_head.weight");
    if (!hf->tie_word_embeddings || head) {
        /* a tied model may still carry lm_head.weight: checked, but not counted */
        int64_t dummy = 0;
        shp[0] = hf->vocab_size, shp[1] = h;
        QS_CHECK(require(m, "lm_head.weight", shp, 2,
                         hf->tie_word_embeddings ? &dummy : &params, err));
        ++used;
    }
    /* layers beyond num_hidden_layers mean config.json and the weights disagree */
    for (int64_t i = 0; i < m->ckpt.nentries; ++i) {
        int64_t l = layer_of(m->ckpt.entries[i].name);
        if (l >= hf->num_hidden_layers)
            QS_THROW(err, QS_ERR_INPUT,
                     "%s: tensor '%s' belongs to layer %lld but config.json has "
                     "num_hidden_layers %lld",
                     m->ckpt.shards[m->ckpt.entries[i].shard].path, m->ckpt.entries[i].name,
                     (long long)l, (long long)hf->num_hidden_layers);
    }
    m->n_unused = m->ckpt.nentries - used;
    (void)params;
done:
    free(cfg_path);
    if (st != QS_OK) qs_model_close(m);
    return st;
}

void qs_model_close(qs_model *m) {
    if (!m) return;
    qs_ckpt_close(&m->ckpt);
    free(m->dir);
    memset(m, 0, sizeof(*m));
}

int64_t qs_model_param_count(const qs_model *m) {
    const qs_hf_config *hf = &m->hf;
    char name[NAME_MAX_LEN];
    int64_t p = 0;
    const qs_st_tensor *t = qs_ckpt_find(&m->ckpt, "model.embed_tokens.weight");
    if (t) p += qs_st_numel(t);
    for (int64_t l = 0; l < hf->num_hidden_layers; ++l) {
        for (int k = 0; k < 2; ++k) {
            qs_norm_tensor_name(name, sizeof(name), l, (qs_norm_kind)k);
            if ((t = qs_ckpt_find(&m->ckpt, name))) p += qs_st_numel(t);
        }
        for (int k = 0; k < QS_LIN_COUNT; ++k)
            for (int b = 0; b < 2; ++b) {
                if (b && !qs_linear_has_bias(hf, (qs_linear_kind)k)) continue;
                qs_linear_tensor_name(name, sizeof(name), l, (qs_linear_kind)k, b);
                if ((t = qs_ckpt_find(&m->ckpt, name))) p += qs_st_numel(t);
            }
    }
    if ((t = qs_ckpt_find(&m->ckpt, "model.norm.weight"))) p += qs_st_numel(t);
    if (!hf->tie_word_embeddings && (t = qs_ckpt_find(&m->ckpt, "lm_head.weight")))
        p += qs_st_numel(t);
    return p;
}

const qs_st_tensor *qs_model_linear(const qs_model *m, int64_t layer, qs_linear_kind k,
                                    int bias) {
    char name[NAME_MAX_LEN];
    if (bias && !qs_linear_has_bias(&m->hf, k)) return NULL;
    qs_linear_tensor_name(name, sizeof(name), layer, k, bias);
    return qs_ckpt_find(&m->ckpt, name);
}

qs_status qs_model_read_rows(const qs_model *m, const char *name, int64_t row0, int64_t nrows,
                             float *out, qs_err *err) {
    const qs_st_tensor *t = qs_ckpt_find(&m->ckpt, name);
    if (!t) return QS_FAIL(err, QS_ERR_INTERNAL, "internal error: no tensor '%s'", name);
    if (t->ndim != 2 || row0 < 0 || nrows < 0 || row0 > t->shape[0] ||
        nrows > t->shape[0] - row0)
        return QS_FAIL(err, QS_ERR_INTERNAL,
                       "internal error: rows [%lld, %lld) of tensor '%s' (%d dims)",
                       (long long)row0, (long long)(row0 + nrows), name, t->ndim);
    return qs_ckpt_read_f32(&m->ckpt, t, row0 * t->shape[1], nrows * t->shape[1], out, err);
}

qs_status qs_model_read_tensor(const qs_model *m, const char *name, float *out, int64_t count,
                               qs_err *err) {
    const qs_st_tensor *t = qs_ckpt_find(&m->ckpt, name);
    if (!t) return QS_FAIL(err, QS_ERR_INTERNAL, "internal error: no tensor '%s'", name);
    if (count != qs_st_numel(t))
        return QS_FAIL(err, QS_ERR_INTERNAL,
                       "internal error: tensor '%s' has %lld elements, caller expects %lld", name,
                       (long long)qs_st_numel(t), (long long)count);
    return qs_ckpt_read_f32(&m->ckpt, t, 0, count, out, err);
}

qs_status qs_model_read_linear_rows(const qs_model *m, int64_t layer, qs_linear_kind k,
                                    int64_t row0, int64_t nrows, float *w, qs_err *err) {
    char name[NAME_MAX_LEN];
    qs_linear_tensor_name(name, sizeof(name), layer, k, 0);
    return qs_model_read_rows(m, name, row0, nrows, w, err);
}

qs_status qs_model_read_linear(const qs_model *m, int64_t layer, qs_linear_kind k, float *w,
                               qs_err *err) {
    int64_t d_out = 0, d_in = 0;
    qs_linear_dims(&m->hf, k, &d_out, &d_in);
    return qs_model_read_linear_rows(m, layer, k, 0, d_out, w, err);
}

qs_status qs_model_read_bias(const qs_model *m, int64_t layer, qs_linear_kind k, float *b,
                             qs_err *err) {
    char name[NAME_MAX_LEN];
    int64_t d_out = 0, d_in = 0;
    if (!qs_linear_has_bias(&m->hf, k))
        return QS_FAIL(err, QS_ERR_INTERNAL, "internal error: %s has no bias",
                       qs_linear_name(k));
    qs_linear_dims(&m->hf, k, &d_out, &d_in);
    qs_linear_tensor_name(name, sizeof(name), layer, k, 1);
    return qs_model_read_tensor(m, name, b, d_out, err);
}

qs_status qs_model_read_norm(const qs_model *m, int64_t layer, qs_norm_kind k, float *g,
                             qs_err *err) {
    char name[NAME_MAX_LEN];
    qs_norm_tensor_name(name, sizeof(name), layer, k);
    return qs_model_read_tensor(m, name, g, m->hf.hidden_size, err);
}

/* Bytes of the tensors the output keeps unquantized, in their checkpoint dtype: embeddings,
 * final norm, lm_head (untied), the layers' norms and the linears' biases. */
int64_t qs_model_unquantized_bytes(const qs_model *m) {
    char name[256];
    int64_t s = 0;
    const qs_st_tensor *t = qs_ckpt_find(&m->ckpt, "model.embed_tokens.weight");
    if (t) s += (int64_t)t->nbytes;
    if ((t = qs_ckpt_find(&m->ckpt, "model.norm.weight"))) s += (int64_t)t->nbytes;
    if (!m->hf.tie_word_embeddings && (t = qs_ckpt_find(&m->ckpt, "lm_head.weight")))
        s += (int64_t)t->nbytes;
    for (int64_t l = 0; l < m->hf.num_hidden_layers; ++l) {
        for (int k = 0; k < 2; ++k) {
            qs_norm_tensor_name(name, sizeof(name), l, (qs_norm_kind)k);
            if ((t = qs_ckpt_find(&m->ckpt, name))) s += (int64_t)t->nbytes;
        }
        for (int k = 0; k < QS_LIN_COUNT; ++k)
            if ((t = qs_model_linear(m, l, (qs_linear_kind)k, 1))) s += (int64_t)t->nbytes;
    }
    return s;
}
