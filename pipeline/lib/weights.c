/* weights.c: f32 copies of one layer / the model ends from a checkpoint (see weights.h). */
/* MADV_DONTNEED is not in POSIX; posix_madvise(POSIX_MADV_DONTNEED) is a no-op on Linux
 * glibc, so this one file asks for the BSD/Linux madvise (release_mapped below). */
#define _DEFAULT_SOURCE 1

#include "weights.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* Drops this process's resident pages of tensor t's bytes in the checkpoint mapping once
 * they were converted, so that a rank does not hold its share twice (f32 copy + the
 * file-backed bf16 pages, which count in RSS until dropped). The mapping is read-only and
 * private and never written, so this is safe: a later access faults the pages in again
 * from the file. The range is widened to whole pages; the neighbours' bytes that share a
 * boundary page are re-read too if touched. Advisory: a failure changes nothing. */
static void release_mapped(const qs_st_tensor *t) {
    long pg = sysconf(_SC_PAGESIZE);
    if (pg <= 0 || t->nbytes == 0) return;
    uintptr_t mask = (uintptr_t)pg - 1;
    uintptr_t a = (uintptr_t)t->data & ~mask;              /* the map itself is aligned */
    uintptr_t b = ((uintptr_t)t->data + (uintptr_t)t->nbytes + mask) & ~mask; /* <= map end */
    (void)madvise((void *)a, (size_t)(b - a), MADV_DONTNEED);
}

#include "gguf_quant.h"
#include "h5store.h"
#include "quant.h"

qs_status qs_weights_read(const qs_model *m, const char *name, int64_t rows, int64_t cols,
                          float *out, qs_err *err) {
    const qs_st_tensor *t = qs_ckpt_find(&m->ckpt, name);
    if (!t) return QS_FAIL(err, QS_ERR_INPUT, "%s: tensor '%s' is missing", m->ckpt.dir, name);
    const char *file = qs_ckpt_file_of(&m->ckpt, name);
    int ok = cols > 0 ? (t->ndim == 2 && t->shape[0] == rows && t->shape[1] == cols)
                      : (t->ndim == 1 && t->shape[0] == rows);
    if (!ok) {
        if (cols > 0)
            return QS_FAIL(err, QS_ERR_INPUT,
                           "%s: tensor '%s' has %d dims (first %lld), config.json implies "
                           "(%lld, %lld)",
                           file ? file : m->ckpt.dir, name, t->ndim,
                           (long long)(t->ndim > 0 ? t->shape[0] : 0), (long long)rows,
                           (long long)cols);
        return QS_FAIL(err, QS_ERR_INPUT,
                       "%s: tensor '%s' has %d dims (first %lld), config.json implies (%lld)",
                       file ? file : m->ckpt.dir, name, t->ndim,
                       (long long)(t->ndim > 0 ? t->shape[0] : 0), (long long)rows);
    }
    qs_status st = qs_ckpt_read_f32(&m->ckpt, t, 0, rows * (cols > 0 ? cols : 1), out, err);
    release_mapped(t);
    return st;
}

/* The tensors of one layer in buffer order: name suffix, rows, cols, flag (0 = always,
 * 1 = qkv_bias, 2 = o_bias, 3 = mlp_bias), and its slot in qs_layer_weights. */
typedef struct layer_tensor {
    const char *suffix;
    int rows_kind, cols_kind; /* 0 none, 1 hidden, 2 q_dim, 3 kv_dim, 4 inter */
    int flag;
    size_t slot;
} layer_tensor;

#define SLOT(f) offsetof(qs_layer_weights, f)
static const layer_tensor LAYER_TENSORS[] = {
    {"input_layernorm.weight", 1, 0, 0, SLOT(input_norm)},
    {"self_attn.q_proj.weight", 2, 1, 0, SLOT(q_w)},
    {"self_attn.q_proj.bias", 2, 0, 1, SLOT(q_b)},
    {"self_attn.k_proj.weight", 3, 1, 0, SLOT(k_w)},
    {"self_attn.k_proj.bias", 3, 0, 1, SLOT(k_b)},
    {"self_attn.v_proj.weight", 3, 1, 0, SLOT(v_w)},
    {"self_attn.v_proj.bias", 3, 0, 1, SLOT(v_b)},
    {"self_attn.o_proj.weight", 1, 2, 0, SLOT(o_w)},
    {"self_attn.o_proj.bias", 1, 0, 2, SLOT(o_b)},
    {"post_attention_layernorm.weight", 1, 0, 0, SLOT(post_norm)},
    {"mlp.gate_proj.weight", 4, 1, 0, SLOT(gate_w)},
    {"mlp.gate_proj.bias", 4, 0, 3, SLOT(gate_b)},
    {"mlp.up_proj.weight", 4, 1, 0, SLOT(up_w)},
    {"mlp.up_proj.bias", 4, 0, 3, SLOT(up_b)},
    {"mlp.down_proj.weight", 1, 4, 0, SLOT(down_w)},
    {"mlp.down_proj.bias", 1, 0, 3, SLOT(down_b)},
};
#undef SLOT
#define NLAYER_TENSORS (sizeof(LAYER_TENSORS) / sizeof(LAYER_TENSORS[0]))

static int64_t kind_size(const qs_model_dims *d, int kind) {
    switch (kind) {
    case 1: return d->hidden;
    case 2: return d->heads * d->head_dim;
    case 3: return d->kv_heads * d->head_dim;
    case 4: return d->inter;
    default: return 0;
    }
}

static int tensor_present(const qs_model_dims *d, int flag) {
    switch (flag) {
    case 1: return d->qkv_bias;
    case 2: return d->o_bias;
    case 3: return d->mlp_bias;
    default: return 1;
    }
}

int64_t qs_weights_layer_bytes(const qs_model_dims *d) {
    int64_t n = 0;
    for (size_t i = 0; i < NLAYER_TENSORS; ++i) {
        const layer_tensor *t = &LAYER_TENSORS[i];
        if (!tensor_present(d, t->flag)) continue;
        int64_t c = kind_size(d, t->cols_kind);
        n += kind_size(d, t->rows_kind) * (c > 0 ? c : 1);
    }
    return n * (int64_t)sizeof(float);
}

qs_status qs_weights_load_layer(const qs_model *m, const qs_model_dims *d, int layer,
                                qs_layer_f32 *out, qs_err *err) {
    qs_status st = QS_OK;
    QS_CHECK(qs_layer_f32_alloc(d, out, err));
    for (size_t i = 0; i < NLAYER_TENSORS; ++i) {
        const layer_tensor *t = &LAYER_TENSORS[i];
        if (!tensor_present(d, t->flag)) continue;
        char name[256];
        float *dst; // (rows, max(cols, 1)), laid out by qs_layer_f32_alloc
        memcpy(&dst, (char *)&out->w + t->slot, sizeof(dst));
        snprintf(name, sizeof(name), "model.layers.%d.%s", layer, t->suffix);
        QS_CHECK(qs_weights_read(m, name, kind_size(d, t->rows_kind),
                                 kind_size(d, t->cols_kind), dst, err));
    }
done:
    if (st != QS_OK) qs_layer_f32_free(out);
    return st;
}

void qs_layer_f32_free(qs_layer_f32 *lw) {
    free(lw->buf);
    memset(lw, 0, sizeof(*lw));
}

qs_status qs_weights_load_ends(const qs_model *m, const qs_model_dims *d, int want_embed,
                               int want_head, qs_ends_f32 *out, qs_err *err) {
    qs_status st = QS_OK;
    memset(out, 0, sizeof(*out));
    const int64_t V = d->vocab, H = d->hidden;
    int has_lm = qs_ckpt_find(&m->ckpt, "lm_head.weight") != NULL;
    int tied = m->hf.tie_word_embeddings || (want_head && !has_lm);
    int need_embed = want_embed || (want_head && tied);
    int need_lm = want_head && !tied;
    int64_t n = (need_embed ? V * H : 0) + (need_lm ? V * H : 0) + (want_head ? H : 0);
    if (n == 0) return QS_OK;
    out->buf = qs_malloc((size_t)n * sizeof(float), err, "embeddings / lm_head");
    if (!out->buf) return QS_ERR_RUNTIME;
    float *p = out->buf;
    if (need_embed) {
        out->embed = p; // (vocab, hidden)
        p += V * H;
        QS_CHECK(qs_weights_read(m, "model.embed_tokens.weight", V, H, out->embed, err));
    }
    if (want_head) {
        out->final_norm = p; // (hidden)
        p += H;
        QS_CHECK(qs_weights_read(m, "model.norm.weight", H, 0, out->final_norm, err));
        if (need_lm) {
            out->lm_head = p; // (vocab, hidden)
            p += V * H;
            QS_CHECK(qs_weights_read(m, "lm_head.weight", V, H, out->lm_head, err));
        } else {
            out->lm_head = out->embed;
        }
    }
done:
    if (st != QS_OK) qs_ends_f32_free(out);
    return st;
}

qs_status qs_weights_check_finite(const qs_model *m, const char *name, int part, int nparts,
                                  qs_err *err) {
    const qs_st_tensor *t = qs_ckpt_find(&m->ckpt, name);
    if (!t) return QS_OK; /* absence is the shape checks' business */
    const int64_t rows = t->ndim >= 1 ? t->shape[0] : 1;
    const int64_t cols = t->ndim == 2 ? t->shape[1] : 1;
    const int64_t row0 = rows * part / nparts, row1 = rows * (part + 1) / nparts;
    const int64_t tile = cols >= (1 << 20) ? 1 : ((1 << 20) + cols - 1) / cols; /* ~4 MB */
    qs_status st = QS_OK;
    float *buf = qs_malloc((size_t)(tile * cols) * sizeof(float), err, "finiteness check");
    if (!buf) return QS_ERR_RUNTIME;
    // buf: (tile, cols)
    for (int64_t r = row0; r < row1 && st == QS_OK; r += tile) {
        const int64_t n = r + tile < row1 ? tile : row1 - r;
        st = qs_ckpt_read_f32(&m->ckpt, t, r * cols, n * cols, buf, err);
    }
    free(buf);
    release_mapped(t);
    return st;
}

void qs_ends_f32_free(qs_ends_f32 *e) {
    free(e->buf);
    memset(e, 0, sizeof(*e));
}

qs_status qs_layer_f32_alloc(const qs_model_dims *d, qs_layer_f32 *out, qs_err *err) {
    memset(out, 0, sizeof(*out));
    int64_t nf = qs_weights_layer_bytes(d) / (int64_t)sizeof(float);
    out->buf = qs_calloc((size_t)nf, sizeof(float), err, "layer weights");
    if (!out->buf) return QS_ERR_RUNTIME;
    out->nfloats = nf;
    int64_t off = 0;
    for (size_t i = 0; i < NLAYER_TENSORS; ++i) {
        const layer_tensor *t = &LAYER_TENSORS[i];
        if (!tensor_present(d, t->flag)) continue;
        int64_t rows = kind_size(d, t->rows_kind), cols = kind_size(d, t->cols_kind);
        float *dst = out->buf + off; // (rows, max(cols, 1))
        memcpy((char *)&out->w + t->slot, &dst, sizeof(dst));
        off += rows * (cols > 0 ? cols : 1);
    }
    return QS_OK;
}

float *qs_layer_f32_mut(qs_layer_f32 *lw, const float *p) {
    if (!p || p < lw->buf || p >= lw->buf + lw->nfloats) return NULL;
    return lw->buf + (p - lw->buf);
}

/* ---- the seven quantized linears of a layer, and the recon layer file reader ---- */

static const char *const LINEAR_KEYS[QS_LIN_COUNT] = {"q", "k", "v", "o", "gate", "up", "down"};
static const qs_linear_group LINEAR_GROUPS[QS_LIN_COUNT] = {
    QS_GROUP_QKV, QS_GROUP_QKV, QS_GROUP_QKV, QS_GROUP_O,
    QS_GROUP_GATE_UP, QS_GROUP_GATE_UP, QS_GROUP_DOWN};
static const int LINEAR_OUT[QS_LIN_COUNT] = {2, 3, 3, 1, 4, 4, 1};
static const int LINEAR_IN[QS_LIN_COUNT] = {1, 1, 1, 2, 1, 1, 4};

const char *qs_linear_key(qs_linear_kind k) {
    return k >= 0 && k < QS_LIN_COUNT ? LINEAR_KEYS[k] : "?";
}

qs_linear_group qs_linear_group_of(qs_linear_kind k) { return LINEAR_GROUPS[k]; }

void qs_linear_shape(const qs_model_dims *d, qs_linear_kind k, int64_t *d_out, int64_t *d_in) {
    *d_out = kind_size(d, LINEAR_OUT[k]);
    *d_in = kind_size(d, LINEAR_IN[k]);
}

const float *qs_linear_weight(const qs_layer_weights *w, qs_linear_kind k) {
    switch (k) {
    case QS_LIN_Q: return w->q_w;
    case QS_LIN_K: return w->k_w;
    case QS_LIN_V: return w->v_w;
    case QS_LIN_O: return w->o_w;
    case QS_LIN_GATE: return w->gate_w;
    case QS_LIN_UP: return w->up_w;
    case QS_LIN_DOWN: return w->down_w;
    default: return NULL;
    }
}

/* The GGUF type a candidate name spells ("Q4_K", as candidates.c names them); -1 if none. */
static int cand_gguf_type(const char *candidate) {
    qs_gguf_type t;
    if (qs_gguf_type_parse(candidate, &t) != 0 || !qs_gguf_quant_supported(t)) return -1;
    return strcmp(candidate, qs_gguf_type_name(t)) == 0 ? (int)t : -1;
}

/* The group size a candidate name carries (w<bits>g<group>); 0 if the name is malformed
 * (a GGUF type name: its block, for the checks below). */
static int cand_group_size(const char *candidate) {
    const int t = cand_gguf_type(candidate);
    if (t >= 0) return (int)qs_gguf_block_elems((qs_gguf_type)t);
    const char *g = strchr(candidate, 'g');
    char *end = NULL;
    long v = g ? strtol(g + 1, &end, 10) : 0;
    if (candidate[0] != 'w' || !g || !end || *end != '\0' || v == 0 || v < -1) return 0;
    return (int)v;
}

qs_status qs_weights_apply_recon(qs_layer_f32 *lw, const qs_model_dims *d, const char *path,
                                 const char *candidate, qs_err *err) {
    char cands[QS_LIN_COUNT][QS_QUANT_NAME_MAX];
    if (strlen(candidate) >= QS_QUANT_NAME_MAX || !cand_group_size(candidate))
        return QS_FAIL(err, QS_ERR_INPUT, "%s: '%s' is not a candidate name (like w4g128 or Q4_K)",
                       path, candidate);
    for (int k = 0; k < QS_LIN_COUNT; ++k) strcpy(cands[k], candidate);
    return qs_weights_apply_recon_lins(lw, d, path, (const char(*)[QS_QUANT_NAME_MAX])cands, err);
}

qs_status qs_weights_apply_recon_lins(qs_layer_f32 *lw, const qs_model_dims *d, const char *path,
                                      const char (*cands)[QS_QUANT_NAME_MAX], qs_err *err) {
    qs_status st = QS_OK;
    qs_h5 h;
    void *codes = NULL, *scales = NULL, *zeros = NULL, *g_idx = NULL;
    memset(&h, 0, sizeof(h));
    for (int lin = 0; lin < QS_LIN_COUNT; ++lin)
        if (cands[lin][0] && !cand_group_size(cands[lin]))
            return QS_FAIL(err, QS_ERR_INPUT,
                           "%s: '%s' is not a candidate name (like w4g128 or Q4_K)", path,
                           cands[lin]);
    QS_CHECK(qs_h5_open(&h, path, err));
    for (int lin = 0; lin < QS_LIN_COUNT; ++lin) {
        if (!cands[lin][0]) continue; /* stays float */
        const char *candidate = cands[lin];
        const int group_size = cand_group_size(candidate);
        int64_t d_out, d_in;
        char name[128];
        qs_linear_shape(d, (qs_linear_kind)lin, &d_out, &d_in);
        const int64_t G = qs_quant_ngroups(d_in, group_size);
        float *dst = qs_layer_f32_mut(lw, qs_linear_weight(&lw->w, (qs_linear_kind)lin)); // (d_out, d_in)
        QS_ASSERT(err, dst != NULL);
        const int gt = cand_gguf_type(candidate);
        if (gt >= 0) { /* GGUF blocks (d_out, row_bytes), dequantized as llama.cpp does */
            const int64_t rb = qs_gguf_row_bytes((qs_gguf_type)gt, d_in);
            if (rb <= 0)
                QS_THROW(err, QS_ERR_INPUT, "%s: %s: input size %lld is not a multiple of its "
                         "block", path, candidate, (long long)d_in);
            snprintf(name, sizeof(name), "%s/%s/blocks", LINEAR_KEYS[lin], candidate);
            QS_CHECK(qs_h5_read_n(&h, name, QS_H5_U8, d_out * rb, &codes, err));
            QS_CHECK(qs_gguf_dequantize_rows((qs_gguf_type)gt, codes, d_out, d_in, dst, err));
            free(codes);
            codes = NULL;
            continue;
        }
        snprintf(name, sizeof(name), "%s/%s/codes", LINEAR_KEYS[lin], candidate);
        QS_CHECK(qs_h5_read_n(&h, name, QS_H5_U8, d_out * d_in, &codes, err));
        snprintf(name, sizeof(name), "%s/%s/scales", LINEAR_KEYS[lin], candidate);
        QS_CHECK(qs_h5_read_n(&h, name, QS_H5_U16, d_out * G, &scales, err));
        snprintf(name, sizeof(name), "%s/%s/zeros", LINEAR_KEYS[lin], candidate);
        QS_CHECK(qs_h5_read_n(&h, name, QS_H5_I32, d_out * G, &zeros, err));
        snprintf(name, sizeof(name), "%s/%s/g_idx", LINEAR_KEYS[lin], candidate);
        QS_CHECK(qs_h5_read_n(&h, name, QS_H5_I32, d_in, &g_idx, err));
        const int32_t *gi = g_idx;
        for (int64_t j = 0; j < d_in; ++j)
            if (gi[j] < 0 || gi[j] >= G)
                QS_THROW(err, QS_ERR_INPUT, "%s: %s g_idx[%lld] = %d outside [0, %lld)", path,
                         name, (long long)j, (int)gi[j], (long long)G);
        qs_quant_dequant_rows(codes, scales, zeros, g_idx, d_out, d_in, G, dst);
        free(codes);
        free(scales);
        free(zeros);
        free(g_idx);
        codes = scales = zeros = g_idx = NULL;
    }
done:
    free(codes);
    free(scales);
    free(zeros);
    free(g_idx);
    qs_h5_abandon(&h);
    return st;
}
