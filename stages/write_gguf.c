/* write_gguf.c: the GGUF file of the write stage (see write_gguf.h). */
#include "write_gguf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gguf_file.h"
#include "gguf_image.h"
#include "gguf_model.h"
#include "gguf_vocab.h"
#include "h5store.h"

/* The rank that writes tensor mt: its layer's owner; token_embd and rope_freqs with layer 0,
 * output_norm and output with the last layer. */
static int tensor_owner(const qs_gguf_model_tensor *mt, const qs_plan *plan) {
    if (mt->layer >= 0) return plan->layer_rank[mt->layer];
    if (strncmp(mt->name, "output", 6) == 0) return plan->layer_rank[plan->nlayers - 1];
    return plan->layer_rank[0];
}

/* The GGUF bytes (d_out, row_bytes) of linear mt with candidate c from its layer file
 * (malloc'd into *out). */
static qs_status linear_blocks(const qs_stage_ctx *ctx, const qs_cands *cs, int c,
                               const char *src, const qs_gguf_model_tensor *mt,
                               const qs_gguf_layout *L, int64_t t, uint8_t **out,
                               qs_err *err) {
    qs_status st = QS_OK;
    char rel[64], path[QS_PATH_MAX], name[128];
    const int64_t d_out = mt->shape[0], d_in = mt->shape[1];
    const char *lk = qs_alloc_linear_name(mt->linear);
    void *codes = NULL, *scales = NULL, *zeros = NULL, *g_idx = NULL;
    qs_h5 h;
    memset(&h, 0, sizeof(h));
    h.file = -1;
    *out = NULL;
    qs_rundir_layer_rel(rel, sizeof(rel), src, (int)mt->layer);
    QS_CHECK(qs_rundir_path(ctx->rd, rel, path, sizeof(path), err));
    QS_CHECK(qs_h5_open(&h, path, err));
    if (cs->kind[c] == QS_CAND_GGUF) {
        snprintf(name, sizeof(name), "%s/%s/blocks", lk, cs->name[c]);
        QS_CHECK(qs_h5_read_n(&h, name, QS_H5_U8, (int64_t)L->nbytes[t], (void **)out, err));
        goto done;
    }
    /* an integer candidate that is the exact image of Q4_0 / Q8_0 */
    const int64_t G = qs_quant_ngroups(d_in, cs->p[c].group_size);
    snprintf(name, sizeof(name), "%s/%s/codes", lk, cs->name[c]);
    QS_CHECK(qs_h5_read_n(&h, name, QS_H5_U8, d_out * d_in, &codes, err));
    snprintf(name, sizeof(name), "%s/%s/scales", lk, cs->name[c]);
    QS_CHECK(qs_h5_read_n(&h, name, QS_H5_U16, d_out * G, &scales, err));
    snprintf(name, sizeof(name), "%s/%s/zeros", lk, cs->name[c]);
    QS_CHECK(qs_h5_read_n(&h, name, QS_H5_I32, d_out * G, &zeros, err));
    snprintf(name, sizeof(name), "%s/%s/g_idx", lk, cs->name[c]);
    QS_CHECK(qs_h5_read_n(&h, name, QS_H5_I32, d_in, &g_idx, err));
    *out = qs_malloc((size_t)L->nbytes[t], err, "GGUF blocks"); // (d_out, row_bytes)
    if (!*out) QS_THROW(err, QS_ERR_RUNTIME, "out of memory (GGUF blocks of %s)", mt->name);
    QS_CHECK(qs_gguf_from_codes(L->types[t], cs->p[c].bits, codes, scales, zeros, g_idx, d_out,
                                d_in, *out, err));
done:
    qs_h5_abandon(&h);
    free(codes);
    free(scales);
    free(zeros);
    free(g_idx);
    if (st != QS_OK) {
        free(*out);
        *out = NULL;
    }
    return st;
}

/* Local: the tensor list with the allocation's types, the metadata and the layout (the same
 * on every rank). */
static qs_status build_layout(const qs_stage_ctx *ctx, const qs_cands *cs, const qs_alloc *al,
                              qs_gguf_model_tensor **tl, int64_t *nt, int **candp,
                              qs_gguf_layout **L, qs_err *err) {
    qs_status st = QS_OK;
    const qs_config *cfg = ctx->cfg;
    const qs_model *m = ctx->model;
    qs_gguf_meta *meta = NULL;
    qs_gguf_tensor_decl *decls = NULL;
    QS_CHECK(qs_gguf_model_tensors(&m->hf, qs_model_gguf_float_type(m), tl, nt, err));
    int *cand = *candp = qs_malloc(sizeof(int) * (size_t)*nt, err, "GGUF tensors"); // (nt,)
    if (!cand) QS_THROW(err, QS_ERR_RUNTIME, "out of memory (GGUF layout)");
    for (int64_t i = 0; i < *nt; ++i) {
        qs_gguf_model_tensor *mt = &(*tl)[i];
        cand[i] = -1;
        if (mt->linear < 0 || mt->bias || mt->layer < 0) continue;
        const char *nm = al->cand[mt->layer][mt->linear];
        if (!nm[0]) continue; /* float: the converter's default type */
        const int c = qs_cands_find(cs, nm);
        const int gt = c >= 0 ? qs_cand_gguf_type(cs, c) : -1;
        if (gt < 0)
            QS_THROW(err, QS_ERR_INPUT, "search/allocation.json: layer %lld %s: '%s' has no GGUF "
                     "form", (long long)mt->layer, qs_alloc_linear_name(mt->linear), nm);
        mt->type = (qs_gguf_type)gt;
        cand[i] = c;
    }
    const char *base = strrchr(cfg->model, '/');
    char name[256];
    snprintf(name, sizeof(name), "%s", base && base[1] ? base + 1 : cfg->model);
    QS_CHECK(qs_gguf_meta_new(&meta, err));
    QS_CHECK(qs_gguf_meta_add_model(meta, &m->hf, cfg->model, name,
                                    qs_gguf_file_type(*tl, *nt), err));
    QS_CHECK(qs_gguf_meta_add_vocab(meta, &m->hf, cfg->model,
                                    cfg->output.gguf_tokenizer && cfg->output.gguf_tokenizer[0]
                                        ? cfg->output.gguf_tokenizer
                                        : NULL,
                                    err));
    decls = qs_malloc(sizeof(*decls) * (size_t)*nt, err, "GGUF tensor declarations");
    if (!decls) QS_THROW(err, QS_ERR_RUNTIME, "out of memory (GGUF layout)");
    qs_gguf_model_decls(*tl, *nt, decls);
    QS_CHECK(qs_gguf_layout_compute(meta, decls, *nt, L, err));
done:
    qs_gguf_meta_free(meta);
    free(decls);
    return st;
}

/* This rank's tensors. */
static qs_status write_mine(const qs_stage_ctx *ctx, const qs_cands *cs, const qs_plan *plan,
                            const char *src, qs_gguf_file *f, const qs_gguf_layout *L,
                            const qs_gguf_model_tensor *tl, int64_t nt, const int *cand,
                            qs_err *err) {
    qs_status st = QS_OK;
    uint8_t *blocks = NULL;
    for (int64_t i = 0; i < nt && st == QS_OK; ++i) {
        if (tensor_owner(&tl[i], plan) != ctx->comm->rank) continue;
        if (cand[i] < 0) {
            st = qs_gguf_write_checkpoint_tensor(f, L, i, ctx->model, &tl[i], err);
            continue;
        }
        st = linear_blocks(ctx, cs, cand[i], src, &tl[i], L, i, &blocks, err);
        if (st == QS_OK)
            st = qs_gguf_write_tensor_bytes(f, L, i, &tl[i], blocks, (size_t)L->nbytes[i], err);
        free(blocks);
        blocks = NULL;
    }
    if (st == QS_OK) st = qs_gguf_file_sync(f, err);
    return st;
}

qs_status qs_write_gguf_file(const qs_stage_ctx *ctx, const qs_cands *cs, const qs_alloc *al,
                             const qs_plan *plan, const char *src, qs_err *err) {
    qs_status st = QS_OK;
    const qs_comm *comm = ctx->comm;
    qs_gguf_model_tensor *tl = NULL;
    qs_gguf_layout *L = NULL;
    qs_gguf_file *f = NULL;
    int64_t nt = 0;
    int *cand = NULL;
    long tag = 0;
    char path[QS_PATH_MAX];
    st = qs_rundir_path(ctx->rd, QS_REL_GGUF, path, sizeof(path), err);
    if (st == QS_OK) st = build_layout(ctx, cs, al, &tl, &nt, &cand, &L, err);
    st = qs_comm_agree(comm, st, err);
    if (st != QS_OK) goto done;
    /* rank 0 creates the temporary file; its pid is the tag the others open */
    if (comm->rank == 0) {
        tag = (long)getpid();
        st = qs_rundir_mkdir(ctx->rd, QS_DIR_GGUF, err);
        if (st == QS_OK) st = qs_gguf_file_create(&f, path, tag, L, err);
    }
    st = qs_comm_agree(comm, st, err);
    if (st != QS_OK) goto done;
    qs_comm_bcast(comm, &tag, sizeof(tag), 0);
    if (comm->rank != 0) st = qs_gguf_file_open(&f, path, tag, L, err);
    st = qs_comm_agree(comm, st, err);
    if (st == QS_OK) st = write_mine(ctx, cs, plan, src, f, L, tl, nt, cand, err);
    st = qs_comm_agree(comm, st, err);
    if (st == QS_OK && comm->rank == 0) st = qs_gguf_file_commit(f, 0, err);
    st = qs_comm_agree(comm, st, err);
done:
    qs_gguf_file_close(f); /* the creator removes an uncommitted temporary file */
    qs_gguf_layout_free(L);
    free(tl);
    free(cand);
    return st;
}
