/* write.c: the write stage (docs/write.md). From the run's allocation
 * (search/allocation.json) and the quantized codes of final/ (reconstruct.inputs quantized)
 * or recon/ (float), writes what output.formats names:
 *   run/out/model-0000k-of-0000n.h5  parallel HDF5 shards (mpi/h5par.c), always: every rank
 *       creates every dataset collectively in one fixed order, then writes the items it owns
 *       (the plan's layer owners; embeddings with layer 0, the final norm / head with the last
 *       layer) with independent transfers; a GGUF candidate's linear is its blocks
 *       (<module>/blocks (d_out, row_bytes) u8, attributes gguf_type, ...);
 *   run/out/index.json  item -> shard;
 *   run/export/  the GPTQ checkpoint (gptq; export/gptq_export.c) and run/export-ct/ the
 *       compressed-tensors one (compressed-tensors; export/ct_export.c), each streamed by
 *       rank 0 one item at a time from the same codes;
 *   run/gguf/model.gguf  the GGUF file (gguf; write_gguf.h), written by every rank in parallel;
 *   qshard-checksums.json beside each export's tensor files (export/checksums.h).
 * One unit: every file of out/, export/, export-ct/ and gguf/ (out/manifest.json, written by
 * the driver, lists them all with their SHA-256).
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "alloc.h"
#include "candidates.h"
#include "checksums.h"
#include "common.h"
#include "ct_export.h"
#include "gguf_quant.h"
#include "gptq_export.h"
#include "h5store.h"
#include "qsource.h"
#include "h5par.h"
#include "layer_plan.h"
#include "pack.h"
#include "quant.h"
#include "sha256.h"
#include "stage.h"
#include "write_gguf.h"

#define WR_NAME_MAX 256

/* One thing written: a quantized linear (a group of four datasets) or a plain tensor. */
typedef struct wr_item {
    char name[WR_NAME_MAX];     /* module (quantized) or tensor name */
    int quant;
    int layer;                  /* -1: not in a decoder layer */
    int lin;                    /* qs_linear_kind (quantized) */
    char cand[QS_QUANT_NAME_MAX];
    int cand_index;             /* in the config's candidates (quantized) */
    int bits, group_size;       /* GGUF: the type's nominal bits and block (qs_cand_bits) */
    int gguf_type;              /* GGUF candidate: its GGML type; -1 integer */
    int64_t row_bytes;          /* GGUF candidate: bytes of one row of blocks */
    int64_t d_out, d_in;
    double error;               /* the reconstruct table's error of this candidate */
    const qs_st_tensor *t;      /* plain: the checkpoint tensor; quantized: its bias or NULL */
    int bias_of_quant;          /* plain bias of a quantized linear (attached in the export) */
    int float_linear;           /* plain weight of a linear the allocation leaves in float */
    int64_t bytes;
    int shard;
    int owner;
} wr_item;

typedef struct wr_state {
    wr_item *items;             /* (n,) in file order */
    int64_t n;
    int nshards;
    const char *src;            /* "final" or "recon" */
    qs_cands cs;                /* the config's candidates */
} wr_state;

static int layer_of(const char *name) {
    if (strncmp(name, "model.layers.", 13) != 0) return -1;
    char *end = NULL;
    long l = strtol(name + 13, &end, 10);
    return end != name + 13 && *end == '.' ? (int)l : -1;
}

static int64_t tensor_bytes(const qs_st_tensor *t) { return (int64_t)t->nbytes; }

/* Error of candidate (bits, group, GGUF type or -1) of linear `lin` from a reconstruct layer
 * file (table/gguf_type only in files of runs with GGUF candidates). */
static qs_status read_error(const char *path, int lin, int bits, int group, int gtype,
                            double *out, qs_err *err) {
    qs_status st = QS_OK;
    qs_h5 h;
    void *e = NULL, *b = NULL, *g = NULL, *t = NULL;
    int nd = 0;
    int64_t de[8], db[8], dg[8];
    memset(&h, 0, sizeof(h));
    h.file = -1;
    QS_CHECK(qs_h5_open(&h, path, err));
    QS_CHECK(qs_h5_read(&h, "table/error", QS_H5_F64, &nd, de, &e, err));
    QS_CHECK(qs_h5_read(&h, "table/bits", QS_H5_I32, &nd, db, &b, err));
    QS_CHECK(qs_h5_read(&h, "table/group_size", QS_H5_I32, &nd, dg, &g, err));
    if (qs_h5_has(&h, "table/gguf_type"))
        QS_CHECK(qs_h5_read_n(&h, "table/gguf_type", QS_H5_I32, db[0], &t, err));
    const int64_t C = de[1];
#define COL_IS(i) (((int32_t *)b)[i] == bits && ((int32_t *)g)[i] == group && \
                   (t ? ((int32_t *)t)[i] : -1) == gtype)
    if (db[0] == C) {
        /* recon/: one column per candidate, table/bits and group_size per candidate */
        for (int64_t c = 0; c < C; ++c)
            if (COL_IS(c)) {
                *out = ((double *)e)[lin * C + c];
                goto done;
            }
    } else if (C == 1 && db[0] == QS_LIN_COUNT) {
        /* final/: one column, table/bits and group_size per linear (its allocated candidate) */
        if (COL_IS(lin)) {
            *out = ((double *)e)[lin];
            goto done;
        }
    }
#undef COL_IS
    char nm[QS_QUANT_NAME_MAX];
    qs_cand_column_name(bits, group, gtype, nm, sizeof(nm));
    QS_THROW(err, QS_ERR_INPUT, "%s: has no candidate %s (the allocation names it)", path, nm);
done:
    free(e);
    free(b);
    free(g);
    free(t);
    qs_h5_abandon(&h);
    return st;
}

/* Builds the item list (every rank, same result), sizes, shards and owners. */
static qs_status build_items(const qs_stage_ctx *ctx, const qs_alloc *al, const qs_plan *plan,
                             wr_state *ws, qs_err *err) {
    qs_status st = QS_OK;
    const qs_model *m = ctx->model;
    const qs_checkpoint *ck = &m->ckpt;
    const int L = (int)m->hf.num_hidden_layers;
    const qs_config *cfg = ctx->cfg;
    ws->items = qs_calloc((size_t)ck->nentries + 1, sizeof(wr_item), err, "write items");
    if (!ws->items) return QS_ERR_RUNTIME;
    /* pass 0: embeddings; 1..L: layers; L+1: everything else */
    for (int pass = 0; pass <= L + 1; ++pass) {
        char lpath[QS_PATH_MAX];
        if (pass >= 1 && pass <= L) {
            char rel[64];
            qs_rundir_layer_rel(rel, sizeof(rel), ws->src, pass - 1);
            QS_CHECK(qs_rundir_path(ctx->rd, rel, lpath, sizeof(lpath), err));
        }
        for (int64_t e = 0; e < ck->nentries; ++e) {
            const char *name = ck->entries[e].name;
            const qs_st_tensor *t = &ck->shards[ck->entries[e].shard].tensors[ck->entries[e].index];
            int layer = layer_of(name);
            int is_pre = layer < 0 && strstr(name, "embed_tokens") != NULL;
            if (pass == 0 && !is_pre) continue;
            if (pass >= 1 && pass <= L && layer != pass - 1) continue;
            if (pass == L + 1 && (layer >= 0 || is_pre)) continue;
            if (layer >= L) QS_THROW(err, QS_ERR_INPUT, "%s: tensor %s beyond %d layers",
                                     qs_ckpt_file_of(ck, name), name, L);
            wr_item *it = &ws->items[ws->n++];
            memset(it, 0, sizeof(*it));
            it->gguf_type = -1;
            it->layer = layer;
            it->t = t;
            int quant_k = -1;
            for (int k = 0; k < QS_LIN_COUNT && layer >= 0; ++k) {
                char wn[WR_NAME_MAX], bn[WR_NAME_MAX];
                qs_linear_tensor_name(wn, sizeof(wn), layer, (qs_linear_kind)k, 0);
                qs_linear_tensor_name(bn, sizeof(bn), layer, (qs_linear_kind)k, 1);
                if (!al->cand[layer][k][0]) {
                    if (strcmp(name, wn) == 0) it->float_linear = 1;
                    continue;
                }
                if (strcmp(name, wn) == 0) quant_k = k;
                if (strcmp(name, bn) == 0) it->bias_of_quant = 1;
            }
            if (strlen(name) >= WR_NAME_MAX)
                QS_THROW(err, QS_ERR_INPUT, "%s: tensor name too long", name);
            if (quant_k < 0) {
                snprintf(it->name, sizeof(it->name), "%s", name);
                it->bytes = tensor_bytes(t);
            } else {
                char bn[WR_NAME_MAX];
                qs_err pe = {0};
                it->quant = 1;
                it->lin = quant_k;
                snprintf(it->name, sizeof(it->name), "%.*s", (int)(strlen(name) - 7), name);
                snprintf(it->cand, sizeof(it->cand), "%s", al->cand[layer][quant_k]);
                const int c = qs_cands_find(&ws->cs, it->cand);
                if (c < 0)
                    QS_THROW(err, QS_ERR_INPUT, "search/allocation.json: '%s' (layer %d) is not "
                             "a candidate of this config", it->cand, layer);
                it->cand_index = c;
                it->bits = qs_cand_bits(&ws->cs, c);
                it->group_size = qs_cand_group(&ws->cs, c);
                it->gguf_type = ws->cs.kind[c] == QS_CAND_GGUF ? (int)ws->cs.g[c].type : -1;
                qs_linear_dims(&m->hf, (qs_linear_kind)quant_k, &it->d_out, &it->d_in);
                /* the shards hold GPTQ tensors (integer) or the GGUF blocks */
                if (qs_cand_bytes(&ws->cs, c, it->d_out, it->d_in, QS_OUT_HDF5, cfg, &it->bytes,
                                  &pe) != QS_OK)
                    QS_THROW(err, QS_ERR_INPUT, "search/allocation.json: %s at %s: %s", it->name,
                             it->cand, pe.msg);
                if (it->gguf_type >= 0)
                    it->row_bytes = qs_gguf_row_bytes((qs_gguf_type)it->gguf_type, it->d_in);
                qs_linear_tensor_name(bn, sizeof(bn), layer, (qs_linear_kind)quant_k, 1);
                it->t = qs_ckpt_find(ck, bn);
                QS_CHECK(read_error(lpath, quant_k, it->bits, it->group_size, it->gguf_type,
                                    &it->error, err));
            }
            int ref_layer = layer >= 0 ? layer : (pass == 0 ? 0 : L - 1);
            it->owner = plan->layer_rank[ref_layer];
        }
    }
    /* shards by size: a new shard when the next item would exceed output.shard_bytes */
    int64_t acc = 0;
    int shard = 0;
    for (int64_t i = 0; i < ws->n; ++i) {
        if (acc > 0 && cfg->output.shard_bytes > 0 && acc + ws->items[i].bytes > cfg->output.shard_bytes) {
            shard++;
            acc = 0;
        }
        ws->items[i].shard = shard;
        acc += ws->items[i].bytes;
    }
    ws->nshards = shard + 1;
done:
    return st;
}

static void shard_name(int k, int n, char *buf, size_t cap) {
    snprintf(buf, cap, "model-%05d-of-%05d.h5", k + 1, n);
}

/* Codes of one quantized item from its layer file (caller frees the four arrays). */
static qs_status load_codes(const qs_stage_ctx *ctx, const wr_state *ws, const wr_item *it,
                            uint8_t **codes, uint16_t **scales, int32_t **zeros,
                            int32_t **g_idx, qs_err *err) {
    qs_status st = QS_OK;
    char rel[64], path[QS_PATH_MAX], name[128];
    static const char *const part[4] = {"codes", "scales", "zeros", "g_idx"};
    const qs_h5_type types[4] = {QS_H5_U8, QS_H5_U16, QS_H5_I32, QS_H5_I32};
    void **dst[4] = {(void **)codes, (void **)scales, (void **)zeros, (void **)g_idx};
    const int64_t G = qs_quant_ngroups(it->d_in, it->group_size);
    const int64_t want[4] = {it->d_out * it->d_in, it->d_out * G, it->d_out * G, it->d_in};
    qs_h5 h;
    memset(&h, 0, sizeof(h));
    h.file = -1;
    for (int i = 0; i < 4; ++i) *dst[i] = NULL;
    qs_rundir_layer_rel(rel, sizeof(rel), ws->src, it->layer);
    QS_CHECK(qs_rundir_path(ctx->rd, rel, path, sizeof(path), err));
    QS_CHECK(qs_h5_open(&h, path, err));
    for (int i = 0; i < 4; ++i) {
        int nd = 0;
        int64_t dims[8], n = 1;
        snprintf(name, sizeof(name), "%s/%s/%s", qs_alloc_linear_name(it->lin), it->cand, part[i]);
        QS_CHECK(qs_h5_read(&h, name, types[i], &nd, dims, dst[i], err));
        for (int k = 0; k < nd; ++k) n *= dims[k];
        if (n != want[i])
            QS_THROW(err, QS_ERR_INPUT, "%s: %s has %lld elements, expected %lld", path, name,
                     (long long)n, (long long)want[i]);
    }
done:
    qs_h5_abandon(&h);
    if (st != QS_OK)
        for (int i = 0; i < 4; ++i) {
            free(*dst[i]);
            *dst[i] = NULL;
        }
    return st;
}

/* The GGUF blocks (d_out, row_bytes) of a quantized GGUF item from its layer file (the
 * caller frees *blocks). */
static qs_status load_blocks(const qs_stage_ctx *ctx, const wr_state *ws, const wr_item *it,
                             uint8_t **blocks, qs_err *err) {
    qs_status st = QS_OK;
    char rel[64], path[QS_PATH_MAX], name[128];
    qs_h5 h;
    memset(&h, 0, sizeof(h));
    h.file = -1;
    *blocks = NULL;
    qs_rundir_layer_rel(rel, sizeof(rel), ws->src, it->layer);
    QS_CHECK(qs_rundir_path(ctx->rd, rel, path, sizeof(path), err));
    QS_CHECK(qs_h5_open(&h, path, err));
    snprintf(name, sizeof(name), "%s/%s/blocks", qs_alloc_linear_name(it->lin), it->cand);
    QS_CHECK(qs_h5_read_n(&h, name, QS_H5_U8, it->d_out * it->row_bytes, (void **)blocks, err));
done:
    qs_h5_abandon(&h);
    return st;
}

static qs_h5_type plain_type(qs_dtype dt) {
    return dt == QS_DTYPE_F32 ? QS_H5_F32 : dt == QS_DTYPE_I32 ? QS_H5_I32 : QS_H5_U16;
}

/* Collective: datasets and attributes of one item. */
static void declare_item(qs_h5par *h, const qs_config *cfg, const wr_item *it) {
    const int v2 = cfg->output.checkpoint_format == QS_CKPT_GPTQ_V2;
    if (!it->quant) {
        int64_t dims[QS_ST_MAX_DIMS] = {1};
        int nd = it->t->ndim > 0 ? it->t->ndim : 1;
        for (int k = 0; k < it->t->ndim; ++k) dims[k] = it->t->shape[k];
        qs_h5par_dataset(h, it->name, plain_type(it->t->dtype), nd, dims);
        qs_h5par_attr_str(h, it->name, "dtype", qs_dtype_name(it->t->dtype));
        qs_h5par_attr_i64(h, it->name, "st_dtype", (int64_t)it->t->dtype);
        return;
    }
    char n[WR_NAME_MAX + 16];
    if (it->gguf_type >= 0) { /* the GGUF tensor's rows of blocks, as the GGUF file holds them */
        int64_t bd[2] = {it->d_out, it->row_bytes};
        snprintf(n, sizeof(n), "%s/blocks", it->name);
        qs_h5par_dataset(h, n, QS_H5_U8, 2, bd);
        qs_h5par_attr_str(h, it->name, "gguf_type", qs_gguf_type_name((qs_gguf_type)it->gguf_type));
        qs_h5par_attr_i64(h, it->name, "gguf_type_id", it->gguf_type);
        qs_h5par_attr_i64(h, it->name, "d_out", it->d_out);
        qs_h5par_attr_i64(h, it->name, "d_in", it->d_in);
        qs_h5par_attr_f64(h, it->name, "error", it->error);
        qs_h5par_attr_str(h, it->name, "method",
                          cfg->quant.method == QS_METHOD_RTN ? "rtn" : "gptq");
        qs_h5par_attr_str(h, it->name, "candidate", it->cand);
        return;
    }
    const int64_t b = it->bits, G = qs_quant_ngroups(it->d_in, it->group_size);
    int64_t qw[2] = {it->d_in * b / 32, it->d_out}, qz[2] = {G, it->d_out * b / 32},
            sc[2] = {G, it->d_out}, gi[1] = {it->d_in};
    snprintf(n, sizeof(n), "%s/qweight", it->name);
    qs_h5par_dataset(h, n, QS_H5_I32, 2, qw);
    snprintf(n, sizeof(n), "%s/qzeros", it->name);
    qs_h5par_dataset(h, n, QS_H5_I32, 2, qz);
    snprintf(n, sizeof(n), "%s/scales", it->name);
    qs_h5par_dataset(h, n, QS_H5_U16, 2, sc);
    snprintf(n, sizeof(n), "%s/g_idx", it->name);
    qs_h5par_dataset(h, n, QS_H5_I32, 1, gi);
    qs_h5par_attr_i64(h, it->name, "bits", it->bits);
    qs_h5par_attr_i64(h, it->name, "group_size", it->group_size);
    qs_h5par_attr_i64(h, it->name, "sym", cfg->quant.sym);
    qs_h5par_attr_i64(h, it->name, "act_order", cfg->quant.act_order);
    qs_h5par_attr_i64(h, it->name, "v2", v2);
    qs_h5par_attr_i64(h, it->name, "d_out", it->d_out);
    qs_h5par_attr_i64(h, it->name, "d_in", it->d_in);
    qs_h5par_attr_f64(h, it->name, "error", it->error);
    qs_h5par_attr_str(h, it->name, "method", cfg->quant.method == QS_METHOD_RTN ? "rtn" : "gptq");
    qs_h5par_attr_str(h, it->name, "checkpoint_format", v2 ? "gptq_v2" : "gptq");
    qs_h5par_attr_str(h, it->name, "candidate", it->cand);
}

/* This rank's data of one item (independent transfers). */
static qs_status write_item(const qs_stage_ctx *ctx, const wr_state *ws, qs_h5par *h,
                            const wr_item *it, qs_err *err) {
    qs_status st = QS_OK;
    uint8_t *codes = NULL;
    uint16_t *scales = NULL, *scales_t = NULL;
    int32_t *zeros = NULL, *g_idx = NULL, *qweight = NULL, *qzeros = NULL, *g_out = NULL;
    if (!it->quant) {
        int64_t rows = it->t->ndim > 0 ? it->t->shape[0] : 1;
        return qs_h5par_write_rows(h, it->name, plain_type(it->t->dtype), 0, rows, it->t->data,
                                   0, err);
    }
    qs_pack_bytes sz;
    qs_err pe = {0};
    char n[WR_NAME_MAX + 16];
    if (it->gguf_type >= 0) {
        QS_CHECK(load_blocks(ctx, ws, it, &codes, err));
        snprintf(n, sizeof(n), "%s/blocks", it->name);
        QS_CHECK(qs_h5par_write_rows(h, n, QS_H5_U8, 0, it->d_out, codes, 0, err));
        goto done;
    }
    const int v1 = ctx->cfg->output.checkpoint_format != QS_CKPT_GPTQ_V2;
    const int64_t G = qs_quant_ngroups(it->d_in, it->group_size);
    QS_CHECK(load_codes(ctx, ws, it, &codes, &scales, &zeros, &g_idx, err));
    QS_CHECK(qs_pack_sizes(it->d_out, it->d_in, it->bits, it->group_size, &sz, err));
    qweight = qs_malloc((size_t)sz.qweight, err, "qweight");  /* (d_in*b/32, d_out) */
    qzeros = qs_malloc((size_t)sz.qzeros, err, "qzeros");     /* (G, d_out*b/32) */
    scales_t = qs_malloc((size_t)sz.scales, err, "scales");   /* (G, d_out) */
    g_out = qs_malloc((size_t)sz.g_idx, err, "g_idx");        /* (d_in,) */
    if (!qweight || !qzeros || !scales_t || !g_out) QS_THROW(err, QS_ERR_RUNTIME, "%s: out of memory", it->name);
    if (qs_pack_gptq(codes, scales, zeros, g_idx, it->d_out, it->d_in, it->bits, it->group_size,
                     v1, qweight, qzeros, scales_t, g_out, &pe) != QS_OK)
        QS_THROW(err, QS_ERR_INPUT, "%s (%s): %s", it->name, it->cand, pe.msg);
    snprintf(n, sizeof(n), "%s/qweight", it->name);
    QS_CHECK(qs_h5par_write_rows(h, n, QS_H5_I32, 0, it->d_in * it->bits / 32, qweight, 0, err));
    snprintf(n, sizeof(n), "%s/qzeros", it->name);
    QS_CHECK(qs_h5par_write_rows(h, n, QS_H5_I32, 0, G, qzeros, 0, err));
    snprintf(n, sizeof(n), "%s/scales", it->name);
    QS_CHECK(qs_h5par_write_rows(h, n, QS_H5_U16, 0, G, scales_t, 0, err));
    snprintf(n, sizeof(n), "%s/g_idx", it->name);
    QS_CHECK(qs_h5par_write_rows(h, n, QS_H5_I32, 0, it->d_in, g_out, 0, err));
done:
    free(codes);
    free(scales);
    free(zeros);
    free(g_idx);
    free(qweight);
    free(qzeros);
    free(scales_t);
    free(g_out);
    return st;
}

/* Rank 0: removes earlier shards, index and manifest of out/ (a new write replaces them). */
static void clear_out(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    char path[QS_PATH_MAX + 300];
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        const char *n = e->d_name;
        size_t len = strlen(n);
        int ours = strcmp(n, "manifest.json") == 0 || strcmp(n, "index.json") == 0 ||
                   (strncmp(n, "model-", 6) == 0 && len > 3 && strstr(n, ".h5") != NULL);
        if (!ours) continue;
        snprintf(path, sizeof(path), "%s/%s", dir, n);
        unlink(path);
    }
    closedir(d);
}

static qs_status write_index(const qs_stage_ctx *ctx, const wr_state *ws, qs_err *err) {
    qs_status st = QS_OK;
    char path[QS_PATH_MAX], fname[64], *text = NULL;
    cJSON *o = cJSON_CreateObject(), *sh = NULL, *wm = NULL;
    if (!o) return QS_FAIL(err, QS_ERR_RUNTIME, "out of memory (index.json)");
    cJSON_AddStringToObject(o, "format", "qshard-shards-1");
    cJSON_AddStringToObject(o, "checkpoint_format",
                            ctx->cfg->output.checkpoint_format == QS_CKPT_GPTQ_V2 ? "gptq_v2" : "gptq");
    sh = cJSON_AddArrayToObject(o, "shards");
    wm = cJSON_AddObjectToObject(o, "weight_map");
    if (!sh || !wm) QS_THROW(err, QS_ERR_RUNTIME, "out of memory (index.json)");
    for (int k = 0; k < ws->nshards; ++k) {
        shard_name(k, ws->nshards, fname, sizeof(fname));
        cJSON_AddItemToArray(sh, cJSON_CreateString(fname));
    }
    for (int64_t i = 0; i < ws->n; ++i) {
        shard_name(ws->items[i].shard, ws->nshards, fname, sizeof(fname));
        cJSON_AddStringToObject(wm, ws->items[i].name, fname);
    }
    text = cJSON_Print(o);
    if (!text) QS_THROW(err, QS_ERR_RUNTIME, "out of memory (index.json)");
    QS_CHECK(qs_rundir_path(ctx->rd, QS_DIR_OUT "/index.json", path, sizeof(path), err));
    QS_CHECK(qs_write_file_atomic(path, text, strlen(text), err));
done:
    cJSON_free(text);
    cJSON_Delete(o);
    return st;
}

/* Rank 0: the GPTQ checkpoint (ct 0, run/export/) or the compressed-tensors one (ct 1,
 * run/export-ct/) from the same items, one at a time (integer candidates only: a GGUF
 * candidate with these formats is refused at config time). */
static qs_status write_export(const qs_stage_ctx *ctx, const wr_state *ws, int ct, qs_err *err) {
    qs_status st = QS_OK;
    const qs_config *cfg = ctx->cfg;
    const qs_qexport_format *fmt = ct ? &qs_ct_format : &qs_gptq_format;
    qs_qexport *x = NULL;
    qs_qexport_opts o;
    char dir[QS_PATH_MAX];
    uint8_t *codes = NULL;
    uint16_t *scales = NULL;
    int32_t *zeros = NULL, *g_idx = NULL;
    QS_CHECK(qs_rundir_path(ctx->rd, ct ? QS_DIR_EXPORT_CT : QS_DIR_EXPORT, dir, sizeof(dir),
                            err));
    qs_qexport_opts_default(&o);
    o.shard_bytes = cfg->output.shard_bytes;
    o.v2 = cfg->output.checkpoint_format == QS_CKPT_GPTQ_V2;
    o.static_groups = cfg->quant.static_groups;
    o.true_sequential = cfg->reconstruct.inputs == QS_INPUTS_QUANTIZED;
    o.damp_percent = cfg->quant.damp;
    o.overwrite = 1;
    QS_CHECK(qs_qexport_begin(&x, fmt, dir, cfg->model, &o, err));
    for (int64_t i = 0; i < ws->n; ++i) {
        const wr_item *it = &ws->items[i];
        if (it->bias_of_quant) continue;
        if (it->quant && it->gguf_type >= 0)
            QS_THROW(err, QS_ERR_INTERNAL, "%s: GGUF candidate %s in a %s export", it->name,
                     it->cand, fmt->name);
        if (it->float_linear) {
            char module[WR_NAME_MAX];
            snprintf(module, sizeof(module), "%.*s", (int)(strlen(it->name) - 7), it->name);
            QS_CHECK(qs_qexport_exclude(x, module, err));
        }
        if (it->quant) {
            qs_gptq_scheme s = {it->bits, it->group_size, cfg->quant.sym, cfg->quant.act_order};
            QS_CHECK(qs_qexport_declare_linear(x, it->name, it->d_out, it->d_in, &s,
                                               it->t != NULL,
                                               it->t ? it->t->dtype : QS_DTYPE_F32, err));
        } else {
            QS_CHECK(qs_qexport_declare_tensor(x, it->name, it->t->dtype, it->t->ndim,
                                               it->t->shape, err));
        }
    }
    for (int64_t i = 0; i < ws->n; ++i) {
        const wr_item *it = &ws->items[i];
        if (it->bias_of_quant) continue;
        if (!it->quant) {
            QS_CHECK(qs_qexport_add_tensor(x, it->name, it->t->data, (size_t)it->t->nbytes, err));
            continue;
        }
        QS_CHECK(load_codes(ctx, ws, it, &codes, &scales, &zeros, &g_idx, err));
        qs_gptq_linear q = {codes, scales, zeros, g_idx, it->t ? it->t->data : NULL};
        QS_CHECK(qs_qexport_add_linear(x, it->name, &q, err));
        free(codes);
        free(scales);
        free(zeros);
        free(g_idx);
        codes = NULL;
        scales = NULL;
        zeros = g_idx = NULL;
    }
    QS_CHECK(qs_qexport_finish(x, err));
done:
    free(codes);
    free(scales);
    free(zeros);
    free(g_idx);
    qs_qexport_free(x);
    return st;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Appends "<sub>/<name>" of every regular file of run/<sub>/ (sorted by name, dot files and
 * manifest.json left out) to the list rels (n entries, cap, malloc'd strings). */
static qs_status list_dir_outputs(const qs_rundir *rd, const char *sub, char ***rels, int *n,
                                  int *cap, qs_err *err) {
    qs_status st = QS_OK;
    char dir[QS_PATH_MAX];
    const int n0 = *n;
    QS_CHECK(qs_rundir_path(rd, sub, dir, sizeof(dir), err));
    DIR *d = opendir(dir);
    if (!d) QS_THROW(err, QS_ERR_RUNTIME, "%s: cannot list", dir);
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        if (e->d_name[0] == '.' || strcmp(e->d_name, "manifest.json") == 0) continue;
        if (*n == *cap) {
            *cap = *cap ? 2 * *cap : 64;
            char **nn = realloc(*rels, sizeof(char *) * (size_t)*cap);
            if (!nn) {
                closedir(d);
                QS_THROW(err, QS_ERR_RUNTIME, "out of memory");
            }
            *rels = nn;
        }
        size_t len = strlen(sub) + strlen(e->d_name) + 2;
        (*rels)[*n] = malloc(len);
        if (!(*rels)[*n]) {
            closedir(d);
            QS_THROW(err, QS_ERR_RUNTIME, "out of memory");
        }
        snprintf((*rels)[*n], len, "%s/%s", sub, e->d_name);
        ++*n;
    }
    closedir(d);
    if (*n - n0 > 1) qsort(*rels + n0, (size_t)(*n - n0), sizeof(char *), cmp_str);
done:
    return st;
}

/* What open found: the allocation, the plan of this rank count, the items. */
typedef struct write_state {
    qs_alloc al;
    qs_plan plan;
    wr_state ws;
} write_state;

static void write_close(void *vs) {
    write_state *s = vs;
    if (!s) return;
    free(s->ws.items);
    qs_plan_free(&s->plan);
    qs_alloc_free(&s->al);
    free(s);
}

static qs_status write_open(const qs_stage_ctx *ctx, int pass, void **state, qs_stage_open *o,
                            qs_err *err) {
    (void)pass;
    qs_status st = QS_OK;
    const qs_config *cfg = ctx->cfg;
    const int L = (int)ctx->model->hf.num_hidden_layers;
    char path[QS_PATH_MAX], rel[64], hex[65];
    write_state *s = qs_calloc(1, sizeof(*s), err, "write state");
    if (!s) return QS_ERR_RUNTIME;
    *state = s;
    s->ws.src = cfg->reconstruct.inputs == QS_INPUTS_QUANTIZED ? QS_DIR_FINAL : QS_DIR_RECON;
    QS_CHECK(qs_rundir_path(ctx->rd, QS_REL_ALLOCATION, path, sizeof(path), err));
    if (!qs_path_exists(path)) {
        o->nothing_to_do = 1; /* no search stage in this run */
        snprintf(o->why, sizeof(o->why), "%s absent; nothing to write", QS_REL_ALLOCATION);
        goto done;
    }
    snprintf(rel, sizeof(rel), "%s/manifest.json", s->ws.src);
    QS_CHECK(qs_rundir_path(ctx->rd, rel, path, sizeof(path), err));
    if (!qs_path_exists(path)) {
        /* the codes' stage must have finished (its manifest is written last) */
        o->nothing_to_do = 1;
        snprintf(o->why, sizeof(o->why), "%s absent (the %s pass has not run); nothing to write",
                 rel, s->ws.src);
        goto done;
    }
    QS_CHECK(qs_rundir_path(ctx->rd, QS_REL_ALLOCATION, path, sizeof(path), err));
    QS_CHECK(qs_alloc_read_json(&s->al, path, L, err));
    QS_CHECK(qs_cands_from_config(cfg, &s->ws.cs, err));
    QS_CHECK(qs_plan_compute(&ctx->model->hf, cfg, ctx->comm->size, &s->plan, err));
    QS_CHECK(build_items(ctx, &s->al, &s->plan, &s->ws, err));
    QS_CHECK(qs_manifest_add_input(&o->inputs, "model", ctx->model_hash, err));
    QS_CHECK(qs_stage_hash_rel(ctx, QS_REL_ALLOCATION, "run the search stage first", hex, err));
    QS_CHECK(qs_manifest_add_input(&o->inputs, "allocation", hex, err));
    QS_CHECK(qs_stage_hash_rel(ctx, rel, "run the reconstruct stage first", hex, err));
    QS_CHECK(qs_manifest_add_input(&o->inputs, s->ws.src, hex, err));
    QS_CHECK(qs_stage_set_units(o, 1, "out", err));
done:
    return st;
}

/* The shards, every rank collectively, one file at a time. */
static qs_status write_shards(const qs_stage_ctx *ctx, const wr_state *ws, qs_err *err) {
    qs_status st = QS_OK;
    const qs_comm *comm = ctx->comm;
    const qs_config *cfg = ctx->cfg;
    qs_h5par h;
    char path[QS_PATH_MAX];
    memset(&h, 0, sizeof(h));
    for (int s = 0; s < ws->nshards; ++s) {
        char fname[64], rel[96];
        shard_name(s, ws->nshards, fname, sizeof(fname));
        snprintf(rel, sizeof(rel), "%s/%s", QS_DIR_OUT, fname);
        st = qs_rundir_path(ctx->rd, rel, path, sizeof(path), err);
        st = qs_comm_agree(comm, st, err);
        if (st != QS_OK) return st;
        int64_t data = 0, nd = 0;
        for (int64_t i = 0; i < ws->n; ++i)
            if (ws->items[i].shard == s) {
                data += ws->items[i].bytes;
                nd += ws->items[i].quant && ws->items[i].gguf_type < 0 ? 4 : 1;
            }
        QS_CHECK(qs_h5par_create(&h, comm, path, qs_h5par_reserve_bytes(data, nd), err));
        qs_h5par_attr_str(&h, NULL, "format", "qshard-shards-1");
        qs_h5par_attr_i64(&h, NULL, "shard", s + 1);
        qs_h5par_attr_i64(&h, NULL, "nshards", ws->nshards);
        qs_h5par_attr_str(&h, NULL, "checkpoint_format",
                          cfg->output.checkpoint_format == QS_CKPT_GPTQ_V2 ? "gptq_v2" : "gptq");
        for (int64_t i = 0; i < ws->n; ++i)
            if (ws->items[i].shard == s) declare_item(&h, cfg, &ws->items[i]);
        for (int64_t i = 0; i < ws->n && st == QS_OK; ++i)
            if (ws->items[i].shard == s && ws->items[i].owner == comm->rank)
                st = write_item(ctx, ws, &h, &ws->items[i], err);
        st = qs_comm_agree(comm, st, err);
        qs_status cst = qs_h5par_close(&h, st == QS_OK, err);
        if (st == QS_OK) st = cst;
        if (st != QS_OK) return st;
        qs_stage_test_hold(ctx, "shard"); /* a no-op unless a fault test asks (common.h) */
    }
done:
    return st;
}

/* Rank 0: index, export, then the unit's record listing out/ and export/ (sorted). */
static qs_status write_rest(const qs_stage_ctx *ctx, const wr_state *ws, qs_err *err) {
    qs_status st = QS_OK;
    const qs_config *cfg = ctx->cfg;
    char **rels = NULL;
    int n = 0, cap = 0;
    double t1 = qs_log_now();
    const unsigned fm = qs_config_formats(cfg);
    QS_CHECK(write_index(ctx, ws, err));
    if (fm & QS_OUT_GPTQ) {
        QS_CHECK(write_export(ctx, ws, 0, err));
        qs_log_info(ctx->log, "write: GPTQ export (%s) in %.3f s",
                    cfg->output.checkpoint_format == QS_CKPT_GPTQ_V2 ? "gptq_v2" : "gptq",
                    qs_log_now() - t1);
    }
    if (fm & QS_OUT_CT) {
        t1 = qs_log_now();
        QS_CHECK(write_export(ctx, ws, 1, err));
        qs_log_info(ctx->log, "write: compressed-tensors export in %.3f s", qs_log_now() - t1);
    }
    /* qshard-checksums.json beside each export's tensor files (qshard verify EXPORT_DIR) */
    static const unsigned CK_FMT[3] = {QS_OUT_GPTQ, QS_OUT_CT, QS_OUT_GGUF};
    static const char *const CK_DIR[3] = {QS_DIR_EXPORT, QS_DIR_EXPORT_CT, QS_DIR_GGUF};
    for (int i = 0; i < 3; ++i) {
        char dir[QS_PATH_MAX];
        if (!(fm & CK_FMT[i])) continue;
        QS_CHECK(qs_rundir_path(ctx->rd, CK_DIR[i], dir, sizeof(dir), err));
        QS_CHECK(qs_checksums_write(dir, err));
    }
    QS_CHECK(list_dir_outputs(ctx->rd, QS_DIR_OUT, &rels, &n, &cap, err));
    if (fm & QS_OUT_GPTQ) QS_CHECK(list_dir_outputs(ctx->rd, QS_DIR_EXPORT, &rels, &n, &cap, err));
    if (fm & QS_OUT_CT)
        QS_CHECK(list_dir_outputs(ctx->rd, QS_DIR_EXPORT_CT, &rels, &n, &cap, err));
    if (fm & QS_OUT_GGUF) QS_CHECK(list_dir_outputs(ctx->rd, QS_DIR_GGUF, &rels, &n, &cap, err));
    QS_CHECK(qs_stage_unit_done(ctx, 0, (const char *const *)rels, n, err));
done:
    for (int i = 0; i < n; ++i) free(rels[i]);
    free(rels);
    return st;
}

static qs_status write_run(const qs_stage_ctx *ctx, void *vs, qs_err *err) {
    qs_status st = QS_OK;
    write_state *s = vs;
    const qs_comm *comm = ctx->comm;
    char path[QS_PATH_MAX];
    if (!ctx->units->todo[0]) return QS_OK;
    if (comm->rank == 0) {
        st = qs_rundir_mkdir(ctx->rd, QS_DIR_OUT, err);
        if (st == QS_OK) st = qs_rundir_path(ctx->rd, QS_DIR_OUT, path, sizeof(path), err);
        if (st == QS_OK) clear_out(path);
    }
    st = qs_comm_agree(comm, st, err);
    if (st != QS_OK) return st;
    const double t0 = qs_log_now();
    int64_t total = 0;
    for (int64_t i = 0; i < s->ws.n; ++i) total += s->ws.items[i].bytes;
    st = write_shards(ctx, &s->ws, err);
    if (st != QS_OK) goto done;
    const double t_shards = qs_log_now() - t0;
    qs_log_info(ctx->log, "write: %d shard(s), %.2f MiB in %.3f s (%.1f MiB/s) on %d rank(s)",
                s->ws.nshards, (double)total / 1048576.0, t_shards,
                t_shards > 0 ? (double)total / 1048576.0 / t_shards : 0.0, comm->size);
    if (qs_config_formats(ctx->cfg) & QS_OUT_GGUF) {
        const double t1 = qs_log_now();
        st = qs_write_gguf_file(ctx, &s->ws.cs, &s->al, &s->plan, s->ws.src, err);
        if (st != QS_OK) goto done;
        qs_log_info(ctx->log, "write: GGUF file %s in %.3f s on %d rank(s)", QS_REL_GGUF,
                    qs_log_now() - t1, comm->size);
    }
    if (comm->rank == 0) st = write_rest(ctx, &s->ws, err);
    st = qs_comm_agree(comm, st, err);
done:
    if (st == QS_ERR_INTERNAL) qs_comm_abort(comm, err);
    return st;
}

const qs_stage qs_stage_write = {"write", QS_DIR_OUT, 0, 0, write_open, write_run, write_close};
