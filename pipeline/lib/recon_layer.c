/* recon_layer.c: one layer's reconstruction results, pieces, their solve, exchange and
 * the layer file (see recon_layer.h). */
#include "recon_layer.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf_quant.h"
#include "h5store.h"
#include "pack.h"
#include "weights.h"

#define NLIN QS_LIN_COUNT
#define MAX_CAND QS_CANDS_MAX
#define PIECE_TAG 4242

/* ---- per-layer results ------------------------------------------------------------- */

void qs_recon_lin_free(qs_recon_lin *o) {
    free(o->codes);
    free(o->scales);
    free(o->zeros);
    free(o->g_idx);
    free(o->blocks);
    free(o->err);
    free(o->wnorm);
    free(o->err_rtn);
    memset(o, 0, sizeof(*o));
}

/* Allocates rows [base, base + n) of a (., k) result with G groups. */
qs_status qs_recon_lin_alloc(qs_recon_lin *o, int64_t base, int64_t n, int64_t k, int64_t G, qs_err *err) {
    memset(o, 0, sizeof(*o));
    o->base = base;
    o->codes = qs_calloc((size_t)(n * k), 1, err, "codes");
    o->scales = qs_calloc((size_t)(n * G), sizeof(uint16_t), err, "scales");
    o->zeros = qs_calloc((size_t)(n * G), sizeof(int32_t), err, "zeros");
    o->g_idx = qs_calloc((size_t)k, sizeof(int32_t), err, "g_idx");
    o->err = qs_calloc((size_t)n, sizeof(double), err, "row errors");
    o->wnorm = qs_calloc((size_t)n, sizeof(double), err, "row norms");
    o->err_rtn = qs_calloc((size_t)n, sizeof(double), err, "row RTN errors");
    if (o->codes && o->scales && o->zeros && o->g_idx && o->err && o->wnorm && o->err_rtn)
        return QS_OK;
    qs_recon_lin_free(o);
    return QS_ERR_RUNTIME;
}

qs_status qs_recon_layer_alloc_rows(const qs_recon_layer *lr, int lin, int c, qs_recon_lin *o,
                                    int64_t base, int64_t n, qs_err *err) {
    const int64_t rb = lr->rb[lin * lr->ncand + c];
    if (rb == 0) return qs_recon_lin_alloc(o, base, n, lr->d_in[lin], lr->G[lin * lr->ncand + c], err);
    memset(o, 0, sizeof(*o));
    o->base = base;
    o->blocks = qs_calloc((size_t)(n * rb), 1, err, "GGUF blocks");
    o->err = qs_calloc((size_t)n, sizeof(double), err, "row errors");
    o->wnorm = qs_calloc((size_t)n, sizeof(double), err, "row norms");
    o->err_rtn = qs_calloc((size_t)n, sizeof(double), err, "row RTN errors");
    if (o->blocks && o->err && o->wnorm && o->err_rtn) return QS_OK;
    qs_recon_lin_free(o);
    return QS_ERR_RUNTIME;
}

void qs_recon_layer_free(qs_recon_layer *lr) {
    if (lr->lc)
        for (int i = 0; i < NLIN * lr->ncand; ++i) qs_recon_lin_free(&lr->lc[i]);
    free(lr->lc);
    memset(lr, 0, sizeof(*lr));
}

qs_status qs_recon_layer_init(qs_recon_layer *lr, const qs_model_dims *d, const qs_cands *cs,
                         qs_err *err) {
    memset(lr, 0, sizeof(*lr));
    lr->ncand = cs->n;
    for (int k = 0; k < NLIN; ++k) {
        qs_linear_shape(d, (qs_linear_kind)k, &lr->d_out[k], &lr->d_in[k]);
        for (int c = 0; c < cs->n; ++c) {
            if (cs->kind[c] == QS_CAND_GGUF) {
                /* shapes were checked at config time (qs_cands_check_model) */
                const int64_t rb = qs_gguf_row_bytes(cs->g[c].type, lr->d_in[k]);
                if (rb <= 0)
                    return QS_FAIL(err, QS_ERR_INPUT, "%s: input size %lld is not a multiple "
                                   "of its block", cs->name[c], (long long)lr->d_in[k]);
                lr->rb[k * cs->n + c] = rb;
                continue;
            }
            lr->G[k * cs->n + c] = qs_quant_ngroups(lr->d_in[k], cs->p[c].group_size);
        }
    }
    lr->lc = qs_calloc((size_t)(NLIN * cs->n), sizeof(qs_recon_lin), err, "layer results");
    return lr->lc ? QS_OK : QS_ERR_RUNTIME;
}

/* Allocates all rows of (lin, c) if not yet done. */
qs_recon_lin *qs_recon_layer_get(qs_recon_layer *lr, int lin, int c, qs_err *err) {
    qs_recon_lin *o = &lr->lc[lin * lr->ncand + c];
    if (o->codes || o->blocks) return o;
    if (qs_recon_layer_alloc_rows(lr, lin, c, o, 0, lr->d_out[lin], err) != QS_OK) return NULL;
    return o;
}

/* ---- pieces: (layer, linear, candidate, row range) ------------------------------------ */

size_t qs_recon_piece_bytes(const qs_recon_layer *lr, const qs_recon_piece *pc) {
    const int64_t rows = pc->r1 - pc->r0, k = lr->d_in[pc->lin];
    const int64_t G = lr->G[pc->lin * lr->ncand + pc->cand];
    const int64_t rb = lr->rb[pc->lin * lr->ncand + pc->cand];
    if (rb > 0) return (size_t)(rows * rb + rows * 8 * 3 + 5 * 8);
    return (size_t)(rows * k + rows * G * 2 + rows * G * 4 + rows * 8 * 3 + k * 4 + 5 * 8);
}

/* Serialises (pack = 1) or fills (pack = 0) the rows of a piece. */
void qs_recon_piece_io(qs_recon_lin *o, const qs_recon_layer *lr, const qs_recon_piece *pc, unsigned char *buf,
                     int pack) {
    const int64_t rows = pc->r1 - pc->r0, k = lr->d_in[pc->lin];
    const int64_t G = lr->G[pc->lin * lr->ncand + pc->cand];
    const int64_t r = pc->r0 - o->base; /* first row of the qs_recon_piece in o */
    const int64_t rb = lr->rb[pc->lin * lr->ncand + pc->cand];
    struct {
        void *p;
        size_t n;
    } parts[7];
    if (rb > 0) { /* GGUF: the block rows instead of codes/scales/zeros, no g_idx */
        parts[0].p = o->blocks + r * rb;
        parts[0].n = (size_t)(rows * rb);
        parts[1].n = parts[2].n = parts[6].n = 0;
    } else {
        parts[0].p = o->codes + r * k;
        parts[0].n = (size_t)(rows * k);
        parts[1].p = o->scales + r * G;
        parts[1].n = (size_t)(rows * G) * 2;
        parts[2].p = o->zeros + r * G;
        parts[2].n = (size_t)(rows * G) * 4;
        parts[6].p = o->g_idx;
        parts[6].n = (size_t)k * 4;
    }
    parts[3].p = o->err + r;
    parts[3].n = (size_t)rows * 8;
    parts[4].p = o->wnorm + r;
    parts[4].n = (size_t)rows * 8;
    parts[5].p = o->err_rtn + r;
    parts[5].n = (size_t)rows * 8;
    for (int i = 0; i < 7; ++i) {
        if (parts[i].n == 0) continue;
        if (pack)
            memcpy(buf, parts[i].p, parts[i].n);
        else
            memcpy(parts[i].p, buf, parts[i].n);
        buf += parts[i].n;
    }
    double info[5];
    if (pack) {
        info[0] = o->info.damp;
        info[1] = o->info.damp_abs;
        info[2] = (double)o->info.nraise;
        info[3] = (double)o->info.fp64;
        info[4] = (double)o->info.ndead;
        memcpy(buf, info, sizeof(info));
    } else {
        memcpy(info, buf, sizeof(info));
        o->info.damp = info[0];
        o->info.damp_abs = info[1];
        o->info.nraise = (int)info[2];
        o->info.fp64 = (int)info[3];
        o->info.ndead = (int64_t)info[4];
    }
}

static void fill_nan(double *v, int64_t n) {
    for (int64_t i = 0; i < n; ++i) v[i] = NAN;
}

/* The GGUF side of qs_recon_solve_piece (candidate c a GGUF type). */
static qs_status solve_gguf_piece(const qs_cands *cs, int c, const float *H,
                                  const qs_gptq_factor *f, const float *W, int64_t d_out,
                                  int64_t d_in, int64_t r0, int64_t r1, int wnorm,
                                  qs_recon_lin *o, qs_err *err) {
    qs_status st = QS_OK;
    const qs_gguf_params *g = &cs->g[c];
    const int64_t rows = r1 - r0, rb = qs_gguf_row_bytes(g->type, d_in);
    const int64_t tile = cs->fp.row_block;
    const float *Wr = W + r0 * d_in; // (rows, d_in)
    const int64_t r = r0 - o->base;  /* first row of the piece in o */
    uint8_t *dst = o->blocks + r * rb; // (rows, rb)
    float *wq = qs_malloc(sizeof(float) * (size_t)(rows * d_in), err, "dequantized rows");
    float *imp = qs_malloc(sizeof(float) * (size_t)d_in, err, "importance"); // (d_in,)
    uint8_t *b2 = NULL; // (rows, rb) llama.cpp's RTN blocks
    if (!wq || !imp) QS_THROW(err, QS_ERR_RUNTIME, "out of memory (GGUF piece)");
    for (int64_t j = 0; j < d_in; ++j) imp[j] = H[j * d_in + j]; /* diag(H), llama's imatrix */
    if (cs->gptq) {
        QS_CHECK(qs_gguf_gptq_quantize_rows(f, g, imp, Wr, d_out, r0, r1, dst, wq, err));
        o->info = f->info;
    } else {
        const float *ri = g->chooser == QS_GGUF_CHOOSE_REF ? NULL : imp;
        QS_CHECK(qs_gguf_quantize_rows(g->type, Wr, rows, d_in, ri, dst, err));
        QS_CHECK(qs_gguf_dequantize_rows(g->type, dst, rows, d_in, wq, err));
        memset(&o->info, 0, sizeof(o->info));
    }
    /* the K-quants' code search may move codes after the solve: the product, always */
    QS_CHECK(qs_quant_error_rows(H, d_in, Wr, wq, rows, tile, o->err + r,
                                 wnorm ? o->wnorm + r : NULL, err));
    if (!cs->rtn_baseline) {
        fill_nan(o->err_rtn + r, rows);
        goto done;
    }
    /* the baseline: llama.cpp's quantizer with importance diag(H), as llama-quantize
     * --imatrix writes the type */
    b2 = qs_malloc((size_t)(rows * rb), err, "RTN blocks");
    if (!b2) QS_THROW(err, QS_ERR_RUNTIME, "out of memory (GGUF RTN baseline)");
    QS_CHECK(qs_gguf_quantize_rows(g->type, Wr, rows, d_in, imp, b2, err));
    QS_CHECK(qs_gguf_dequantize_rows(g->type, b2, rows, d_in, wq, err));
    QS_CHECK(qs_quant_error_rows(H, d_in, Wr, wq, rows, tile, o->err_rtn + r, NULL, err));
done:
    free(wq);
    free(imp);
    free(b2);
    return st;
}

/* Quantizes rows [r0, r1) of W (d_out, d_in) with candidate c into o (qs_recon_layer.h). */
qs_status qs_recon_solve_piece(const qs_cands *cs, int c, const float *H, const qs_gptq_factor *f,
                             const float *W, int64_t d_out, int64_t d_in, int64_t r0,
                             int64_t r1, int wnorm, qs_recon_lin *o, qs_err *err) {
    if (cs->kind[c] == QS_CAND_GGUF)
        return solve_gguf_piece(cs, c, H, f, W, d_out, d_in, r0, r1, wnorm, o, err);
    qs_status st = QS_OK;
    const qs_quant_params *p = &cs->p[c];
    const int64_t rows = r1 - r0, G = qs_quant_ngroups(d_in, p->group_size);
    const float *Wr = W + r0 * d_in; // (rows, d_in)
    float *wq = qs_malloc(sizeof(float) * (size_t)(rows * d_in), err, "dequantized rows");
    double *e1sq = NULL; // (rows) the GPTQ solve's sums of squared scaled errors
    uint8_t *c2 = NULL;
    uint16_t *s2 = NULL;
    int32_t *z2 = NULL;
    if (!wq) return QS_ERR_RUNTIME;
    const int64_t r = r0 - o->base; /* first row of the qs_recon_piece in o */
    qs_quant_out out = {o->codes + r * d_in, o->scales + r * G, o->zeros + r * G, wq, NULL};
    int exact = 0; /* 1: o->err filled from the solve's sums */
    if (cs->gptq) {
        e1sq = qs_malloc(sizeof(double) * (size_t)(rows > 0 ? rows : 1), err, "GPTQ row sums");
        if (!e1sq) QS_THROW(err, QS_ERR_RUNTIME, "out of memory (GPTQ row sums)");
        out.e1sq = e1sq;
        QS_CHECK(qs_gptq_quantize_rows(f, p, Wr, d_out, r0, r1, &out, err));
        qs_gptq_g_idx(f, p, o->g_idx);
        o->info = f->info;
        exact = qs_gptq_error_rows(f, Wr, wq, e1sq, rows, o->err + r) == 0;
    } else {
        QS_CHECK(qs_rtn_quantize_rows(p, Wr, rows, d_in, &out, err));
        qs_quant_g_idx_natural(d_in, p->group_size, o->g_idx);
        memset(&o->info, 0, sizeof(o->info));
    }
    if (!exact)
        QS_CHECK(qs_quant_error_rows(H, d_in, Wr, wq, rows, p->row_block, o->err + r,
                                     wnorm ? o->wnorm + r : NULL, err));
    else if (wnorm) /* W H W^T alone: Wq = 0 gives the error of W itself */
        QS_CHECK(qs_quant_error_rows(H, d_in, Wr, NULL, rows, p->row_block, o->wnorm + r, NULL,
                                     err));
    if (!cs->gptq) {
        memcpy(o->err_rtn + r, o->err + r, sizeof(double) * (size_t)rows);
    } else if (!cs->rtn_baseline) {
        fill_nan(o->err_rtn + r, rows);
    } else {
        c2 = qs_malloc((size_t)(rows * d_in), err, "RTN codes");
        s2 = qs_malloc(sizeof(uint16_t) * (size_t)(rows * G), err, "RTN scales");
        z2 = qs_malloc(sizeof(int32_t) * (size_t)(rows * G), err, "RTN zeros");
        if (!c2 || !s2 || !z2) QS_THROW(err, QS_ERR_RUNTIME, "out of memory (RTN baseline)");
        qs_quant_out o2 = {c2, s2, z2, wq, NULL};
        QS_CHECK(qs_rtn_quantize_rows(p, Wr, rows, d_in, &o2, err));
        QS_CHECK(qs_quant_error_rows(H, d_in, Wr, wq, rows, p->row_block, o->err_rtn + r,
                                     NULL, err));
    }
done:
    free(wq);
    free(e1sq);
    free(c2);
    free(s2);
    free(z2);
    return st;
}

/* The tasks of one qs_recon_solve_pieces run. */
typedef struct pieces_run {
    const qs_cands *cs;
    const qs_recon_task *t;
    const unsigned char *first; /* (n) 1: the lowest-index task of its o */
    int32_t *g_idx;             /* (threads, max d_in) where the other tasks' g_idx goes */
    int64_t g_stride;           /* max d_in */
    qs_gptq_info *info;         /* (n) each task's info */
} pieces_run;

static qs_status piece_task(void *vctx, int64_t i, int worker, qs_err *err) {
    const pieces_run *r = vctx;
    const qs_recon_task *t = &r->t[i];
    qs_recon_lin o = *t->o; /* the same row arrays; info is this task's own */
    if (!r->first[i] && o.g_idx) o.g_idx = r->g_idx + (size_t)worker * (size_t)r->g_stride;
    qs_status st = qs_recon_solve_piece(r->cs, t->c, t->H, t->f, t->W, t->d_out, t->d_in,
                                        t->r0, t->r1, t->wnorm, &o, err);
    r->info[i] = o.info;
    return st;
}

qs_status qs_recon_solve_pieces(qs_pool *pool, const qs_cands *cs, const qs_recon_task *t,
                                int64_t n, qs_err *err) {
    qs_status st = QS_OK;
    pieces_run r = {cs, t, NULL, NULL, 1, NULL};
    unsigned char *first = NULL;
    if (n <= 0) return QS_OK;
    for (int64_t i = 0; i < n; ++i)
        if (t[i].d_in > r.g_stride) r.g_stride = t[i].d_in;
    first = qs_calloc((size_t)n, 1, err, "piece order");
    r.g_idx = qs_malloc(sizeof(int32_t) * (size_t)(r.g_stride * qs_pool_threads(pool)), err,
                        "piece g_idx");
    r.info = qs_calloc((size_t)n, sizeof(qs_gptq_info), err, "piece info");
    if (!first || !r.g_idx || !r.info) QS_THROW(err, QS_ERR_RUNTIME, "out of memory (pieces)");
    for (int64_t i = 0; i < n; ++i) {
        first[i] = 1;
        for (int64_t j = 0; j < i && first[i]; ++j) first[i] = t[j].o != t[i].o;
    }
    r.first = first;
    st = qs_pool_run(pool, n, piece_task, &r, err);
    for (int64_t i = 0; i < n && st == QS_OK; ++i)
        if (first[i]) t[i].o->info = r.info[i];
done:
    free(first);
    free(r.g_idx);
    free(r.info);
    return st;
}

/* Moves every piece from its owner to its layer's writer, in piece order (blocking sends
 * and receives in one global order cannot deadlock). lrs[i] is the result of layer
 * base + i (the writer's holds all rows). An owner sends pbuf[i] when pbuf and pbuf[i] are
 * set (the piece packed when it was computed), else packs it from lrs. */
qs_status qs_recon_exchange(const qs_comm *comm, const qs_recon_piece *pcs, int npc,
                                 qs_recon_layer *lrs, int base, unsigned char *const *pbuf,
                                 qs_err *err) {
    qs_status st = QS_OK;
    unsigned char *buf = NULL;
    size_t cap = 0;
    for (int i = 0; i < npc; ++i) {
        const qs_recon_piece *pc = &pcs[i];
        if (pc->owner == pc->writer) continue;
        if (comm->rank != pc->owner && comm->rank != pc->writer) continue;
        qs_recon_layer *lr = &lrs[pc->layer - base];
        size_t n = qs_recon_piece_bytes(lr, pc);
        if (comm->rank == pc->owner && pbuf && pbuf[i]) {
            qs_comm_send(comm, pbuf[i], n, pc->writer, PIECE_TAG);
            continue;
        }
        if (n > cap) {
            free(buf);
            buf = qs_malloc(n, err, "piece buffer");
            cap = buf ? n : 0;
            if (!buf) QS_THROW(err, QS_ERR_RUNTIME, "out of memory (piece of %zu bytes)", n);
        }
        qs_recon_lin *o = qs_recon_layer_get(lr, pc->lin, pc->cand, err);
        if (!o) QS_THROW(err, QS_ERR_RUNTIME, "out of memory (layer results)");
        if (comm->rank == pc->owner) {
            qs_recon_piece_io(o, lr, pc, buf, 1);
            qs_comm_send(comm, buf, n, pc->writer, PIECE_TAG);
        } else {
            qs_comm_recv(comm, buf, n, pc->owner, PIECE_TAG);
            qs_recon_piece_io(o, lr, pc, buf, 0);
        }
    }
done:
    free(buf);
    /* peers are inside the exchange: an allocation failure here aborts */
    if (st != QS_OK) qs_comm_abort(comm, err);
    return st;
}

/* ---- layer files --------------------------------------------------------------------- */

/* The layer file's summary tables, (NLIN, C) each: row k, column j = linear k x candidate j
 * (with a selection: the linear's selected candidate, C = 1). In the file's order. */
enum {
    T_ERR, T_WNORM, T_REL, T_RTN, T_BYTES, T_SERVE, T_DAMP, T_DABS, T_NRAISE, T_FP64, T_NDEAD,
    NTABLES
};
static const struct {
    const char *name;
    qs_h5_type type;
    size_t elem;
} TABLES[NTABLES] = {
    [T_ERR] = {"table/error", QS_H5_F64, sizeof(double)},
    [T_WNORM] = {"table/wnorm", QS_H5_F64, sizeof(double)},
    [T_REL] = {"table/relative", QS_H5_F64, sizeof(double)},
    [T_RTN] = {"table/error_rtn", QS_H5_F64, sizeof(double)},
    [T_BYTES] = {"table/bytes", QS_H5_I64, sizeof(int64_t)},
    [T_SERVE] = {"table/can_serve", QS_H5_I32, sizeof(int32_t)},
    [T_DAMP] = {"table/damp", QS_H5_F64, sizeof(double)},
    [T_DABS] = {"table/damp_abs", QS_H5_F64, sizeof(double)},
    [T_NRAISE] = {"table/damp_raised", QS_H5_I32, sizeof(int32_t)},
    [T_FP64] = {"table/fp64", QS_H5_I32, sizeof(int32_t)},
    [T_NDEAD] = {"table/ndead", QS_H5_I64, sizeof(int64_t)},
};

static void tables_free(void *tab[NTABLES]) {
    for (int i = 0; i < NTABLES; ++i) free(tab[i]);
}

/* tab[i]: (nt,) zeroed elements of TABLES[i]. */
static qs_status tables_alloc(void *tab[NTABLES], size_t nt, qs_err *err) {
    for (int i = 0; i < NTABLES; ++i) tab[i] = NULL;
    for (int i = 0; i < NTABLES; ++i) {
        tab[i] = qs_calloc(nt, TABLES[i].elem, err, "table");
        if (!tab[i]) return QS_FAIL(err, QS_ERR_RUNTIME, "out of memory (layer table)");
    }
    return QS_OK;
}

/* Column j's bits and group size (the candidates, or with sel the linears' selected ones, 0
 * for a float linear) and the root attribute "candidates" (names joined by ','). */
static void cand_columns(const qs_cands *cs, const int *sel, int32_t *bits, int32_t *groups,
                         int32_t *types, char *cands) {
    cands[0] = '\0';
    if (sel) {
        for (int k = 0; k < NLIN; ++k) {
            bits[k] = sel[k] >= 0 ? qs_cand_bits(cs, sel[k]) : 0;
            groups[k] = sel[k] >= 0 ? qs_cand_group(cs, sel[k]) : 0;
            types[k] = sel[k] >= 0 && cs->kind[sel[k]] == QS_CAND_GGUF ? (int)cs->g[sel[k]].type
                                                                       : -1;
            if (k) strcat(cands, ",");
            if (sel[k] >= 0) strcat(cands, cs->name[sel[k]]);
        }
    } else {
        for (int c = 0; c < cs->n; ++c) {
            bits[c] = qs_cand_bits(cs, c);
            groups[c] = qs_cand_group(cs, c);
            types[c] = cs->kind[c] == QS_CAND_GGUF ? (int)cs->g[c].type : -1;
            if (c) strcat(cands, ",");
            strcat(cands, cs->name[c]);
        }
    }
}

/* The summary tables from the results (every row held: base 0): summed errors, damping
 * record, payload bytes and whether vLLM's GPTQ kernels can serve the shape. */
static qs_status tables_fill(const qs_recon_layer *lr, const qs_cands *cs, const int *sel,
                             int C, void *const tab[NTABLES], qs_err *err) {
    qs_status st = QS_OK;
    double *t_err = tab[T_ERR], *t_wn = tab[T_WNORM], *t_rel = tab[T_REL], *t_rtn = tab[T_RTN],
           *t_damp = tab[T_DAMP], *t_dabs = tab[T_DABS];
    int64_t *t_bytes = tab[T_BYTES], *t_ndead = tab[T_NDEAD];
    int32_t *t_serve = tab[T_SERVE], *t_nraise = tab[T_NRAISE], *t_fp64 = tab[T_FP64];
    for (int k = 0; k < NLIN; ++k)
        for (int j = 0; j < C; ++j) {
            const int c = sel ? sel[k] : j;
            const size_t i = (size_t)(k * C + j);
            if (c < 0) continue; /* float linear: zeros */
            const qs_recon_lin *o = &lr->lc[k * cs->n + c];
            QS_ASSERT(err, (o->codes != NULL || o->blocks != NULL) && o->base == 0);
            t_err[i] = qs_quant_sum(o->err, lr->d_out[k]);
            /* W H W^T is the linear's: its first candidate in the pass computed it */
            t_wn[i] = qs_quant_sum(lr->lc[k * cs->n + (sel ? sel[k] : 0)].wnorm, lr->d_out[k]);
            t_rel[i] = qs_quant_relative(t_err[i], t_wn[i]);
            t_rtn[i] = qs_quant_sum(o->err_rtn, lr->d_out[k]);
            t_damp[i] = o->info.damp;
            t_dabs[i] = o->info.damp_abs;
            t_nraise[i] = o->info.nraise;
            t_fp64[i] = o->info.fp64;
            t_ndead[i] = o->info.ndead;
            if (cs->kind[c] == QS_CAND_GGUF) { /* any shape its blocks divide */
                t_bytes[i] = lr->d_out[k] * lr->rb[k * cs->n + c];
                t_serve[i] = 1;
                continue;
            }
            qs_pack_bytes pb;
            qs_err why = {0};
            t_bytes[i] = qs_pack_sizes(lr->d_out[k], lr->d_in[k], cs->p[c].bits,
                                        cs->p[c].group_size, &pb, &why) == QS_OK
                              ? pb.total
                              : -1;
            t_serve[i] = qs_pack_can_serve(lr->d_out[k], lr->d_in[k], cs->p[c].bits,
                                            cs->p[c].group_size, NULL);
        }
done:
    return st;
}

/* Every quantized linear x candidate's codes, scales, zeros and g_idx (<lin>/<cand>/...). */
static qs_status results_write(qs_h5 *h, const qs_recon_layer *lr, const qs_cands *cs,
                               const int *sel, int C, qs_err *err) {
    qs_status st = QS_OK;
    char name[128];
    for (int k = 0; k < NLIN; ++k)
        for (int j = 0; j < C; ++j) {
            const int c = sel ? sel[k] : j;
            if (c < 0) continue;
            const qs_recon_lin *o = &lr->lc[k * cs->n + c];
            const int64_t G = lr->G[k * cs->n + c];
            if (cs->kind[c] == QS_CAND_GGUF) {
                int64_t db[2] = {lr->d_out[k], lr->rb[k * cs->n + c]};
                snprintf(name, sizeof(name), "%s/%s/blocks", qs_linear_key((qs_linear_kind)k),
                         cs->name[c]);
                QS_CHECK(qs_h5_write(h, name, QS_H5_U8, 2, db, o->blocks, err));
                QS_CHECK(qs_h5_attr_i64(h, name, "gguf_type", (int64_t)cs->g[c].type, err));
                continue;
            }
            int64_t dc[2] = {lr->d_out[k], lr->d_in[k]}, dg[2] = {lr->d_out[k], G},
                    di[1] = {lr->d_in[k]};
            const char *lk = qs_linear_key((qs_linear_kind)k);
            snprintf(name, sizeof(name), "%s/%s/codes", lk, cs->name[c]);
            QS_CHECK(qs_h5_write(h, name, QS_H5_U8, 2, dc, o->codes, err));
            snprintf(name, sizeof(name), "%s/%s/scales", lk, cs->name[c]);
            QS_CHECK(qs_h5_write(h, name, QS_H5_U16, 2, dg, o->scales, err));
            snprintf(name, sizeof(name), "%s/%s/zeros", lk, cs->name[c]);
            QS_CHECK(qs_h5_write(h, name, QS_H5_I32, 2, dg, o->zeros, err));
            snprintf(name, sizeof(name), "%s/%s/g_idx", lk, cs->name[c]);
            QS_CHECK(qs_h5_write(h, name, QS_H5_I32, 1, di, o->g_idx, err));
        }
done:
    return st;
}

static qs_status layer_write(const qs_recon_file *f, int layer, const qs_recon_layer *lr,
                             const qs_cands *cs, const int *sel, void *const tab[NTABLES],
                             qs_err *err);

/* Writes run/<dir>/layer-NNN.h5 (layout in docs/reconstruct.md). sel NULL: every candidate,
 * tables (7, C); sel[k] = the candidate of linear k or -1 (float, no datasets): tables
 * (7, 1) and table/bits, table/group_size per linear (7), 0 for a float linear. */
qs_status qs_recon_layer_write(const qs_recon_file *f, int layer, qs_recon_layer *lr,
                               const qs_cands *cs, const int *sel, qs_err *err) {
    void *tab[NTABLES]; /* (NLIN, C) each, TABLES[i]'s element type */
    const int C = sel ? 1 : cs->n;
    qs_status st = tables_alloc(tab, (size_t)(NLIN * C), err);
    if (st == QS_OK) st = tables_fill(lr, cs, sel, C, tab, err);
    if (st == QS_OK) st = layer_write(f, layer, lr, cs, sel, tab, err);
    tables_free(tab);
    return st;
}

/* The layer file from results lr (the rows of every candidate sel names, or of all) and
 * the summary tables tab ((NLIN, C) each, filled). */
static qs_status layer_write(const qs_recon_file *f, int layer, const qs_recon_layer *lr,
                             const qs_cands *cs, const int *sel, void *const tab[NTABLES],
                             qs_err *err) {
    qs_status st = QS_OK;
    qs_h5 h;
    const int C = sel ? 1 : cs->n;
    char rel[64], path[QS_PATH_MAX];
    int32_t bits[MAX_CAND > NLIN ? MAX_CAND : NLIN], groups[MAX_CAND > NLIN ? MAX_CAND : NLIN];
    int32_t types[MAX_CAND > NLIN ? MAX_CAND : NLIN];
    int64_t dout[NLIN], din[NLIN];
    char *cands = NULL, lins[128] = "";
    memset(&h, 0, sizeof(h));
    cands = qs_malloc((size_t)(cs->n > NLIN ? cs->n : NLIN) * (QS_QUANT_NAME_MAX + 1) + 1, err,
                      "candidate names");
    if (!cands) QS_THROW(err, QS_ERR_RUNTIME, "out of memory (layer table)");
    cand_columns(cs, sel, bits, groups, types, cands);
    for (int k = 0; k < NLIN; ++k) {
        dout[k] = lr->d_out[k];
        din[k] = lr->d_in[k];
        if (k) strcat(lins, ",");
        strcat(lins, qs_linear_key((qs_linear_kind)k));
    }
    qs_rundir_layer_rel(rel, sizeof(rel), f->dir, layer);
    QS_CHECK(qs_rundir_path(f->rd, rel, path, sizeof(path), err));
    QS_CHECK(qs_h5_create(&h, path, err));
    {
        int64_t td[2] = {NLIN, C}, cd[1] = {sel ? NLIN : C}, ld[1] = {NLIN}, hd[1] = {64};
        QS_CHECK(qs_h5_write(&h, "meta/config_hash", QS_H5_U8, 1, hd, f->config_hash, err));
        QS_CHECK(qs_h5_write(&h, "meta/input_hash", QS_H5_U8, 1, hd, f->input_hash, err));
        QS_CHECK(qs_h5_write(&h, "table/bits", QS_H5_I32, 1, cd, bits, err));
        QS_CHECK(qs_h5_write(&h, "table/group_size", QS_H5_I32, 1, cd, groups, err));
        if (cs->ngguf > 0) /* integer-only runs keep their files' bytes */
            QS_CHECK(qs_h5_write(&h, "table/gguf_type", QS_H5_I32, 1, cd, types, err));
        QS_CHECK(qs_h5_write(&h, "table/d_out", QS_H5_I64, 1, ld, dout, err));
        QS_CHECK(qs_h5_write(&h, "table/d_in", QS_H5_I64, 1, ld, din, err));
        for (int i = 0; i < NTABLES; ++i)
            QS_CHECK(qs_h5_write(&h, TABLES[i].name, TABLES[i].type, 2, td, tab[i], err));
    }
    QS_CHECK(results_write(&h, lr, cs, sel, C, err));
    QS_CHECK(qs_h5_attr_i64(&h, NULL, "layer", layer, err));
    QS_CHECK(qs_h5_attr_str(&h, NULL, "inputs", f->quantized_inputs ? "quantized" : "float",
                            err));
    QS_CHECK(qs_h5_attr_str(&h, NULL, "method", cs->gptq ? "gptq" : "rtn", err));
    QS_CHECK(qs_h5_attr_str(&h, NULL, "linears", lins, err));
    QS_CHECK(qs_h5_attr_str(&h, NULL, "candidates", cands, err));
    QS_CHECK(qs_h5_attr_str(&h, NULL, "propagate", sel ? "allocation" : cs->name[cs->propagate],
                            err));
    QS_CHECK(qs_h5_commit(&h, err));
done:
    if (st != QS_OK) qs_h5_abandon(&h);
    free(cands);
    return st;
}

qs_status qs_recon_layer_write_from(const qs_recon_file *f, int layer, const char *src,
                                    const char *src_input_hash, const qs_model_dims *d,
                                    const qs_cands *cs, const int *sel, qs_err *err) {
    qs_status st = QS_OK;
    qs_h5 h;
    qs_recon_layer lr;
    void *tab[NTABLES];                    /* (NLIN, 1) each: the selected columns */
    void *all = NULL;                      /* (NLIN, ncand) one table of src */
    char name[128], hash[2][64];
    int32_t bits[MAX_CAND], groups[MAX_CAND];
    const int n = cs->n;
    memset(&h, 0, sizeof(h));
    memset(&lr, 0, sizeof(lr));
    for (int i = 0; i < NTABLES; ++i) tab[i] = NULL;
    QS_ASSERT(err, sel != NULL && n <= MAX_CAND);
    QS_CHECK(qs_recon_layer_init(&lr, d, cs, err));
    QS_CHECK(tables_alloc(tab, NLIN, err));
    QS_CHECK(qs_h5_open(&h, src, err));
    /* this run's measure pass: the same config and inputs, the same candidates in order */
    QS_CHECK(qs_h5_read_into(&h, "meta/config_hash", QS_H5_U8, 64, hash[0], 1, err));
    QS_CHECK(qs_h5_read_into(&h, "meta/input_hash", QS_H5_U8, 64, hash[1], 1, err));
    QS_CHECK(qs_h5_read_into(&h, "table/bits", QS_H5_I32, n, bits, sizeof(int32_t), err));
    QS_CHECK(qs_h5_read_into(&h, "table/group_size", QS_H5_I32, n, groups, sizeof(int32_t),
                             err));
    if (memcmp(hash[0], f->config_hash, 64) != 0 || memcmp(hash[1], src_input_hash, 64) != 0)
        QS_THROW(err, QS_ERR_INPUT, "%s: written for another config or other inputs", src);
    for (int c = 0; c < n; ++c)
        if (bits[c] != cs->p[c].bits || groups[c] != cs->p[c].group_size)
            QS_THROW(err, QS_ERR_INPUT, "%s: candidates differ from the config's", src);
    /* the selected column of every table */
    for (int i = 0; i < NTABLES; ++i) {
        const size_t el = TABLES[i].elem;
        free(all);
        all = NULL;
        QS_CHECK(qs_h5_read_n(&h, TABLES[i].name, TABLES[i].type, (int64_t)NLIN * n, &all,
                              err));
        for (int k = 0; k < NLIN; ++k)
            if (sel[k] >= 0)
                memcpy((char *)tab[i] + (size_t)k * el,
                       (const char *)all + ((size_t)k * n + (size_t)sel[k]) * el, el);
    }
    /* the selected candidates' codes, scales, zeros, g_idx */
    for (int k = 0; k < NLIN; ++k) {
        const int c = sel[k];
        if (c < 0) continue;
        qs_recon_lin *o = qs_recon_layer_get(&lr, k, c, err);
        if (!o) QS_THROW(err, QS_ERR_RUNTIME, "out of memory (layer results)");
        const int64_t G = lr.G[k * n + c];
        const char *lk = qs_linear_key((qs_linear_kind)k);
        snprintf(name, sizeof(name), "%s/%s/codes", lk, cs->name[c]);
        QS_CHECK(qs_h5_read_into(&h, name, QS_H5_U8, lr.d_out[k] * lr.d_in[k], o->codes, 1,
                                 err));
        snprintf(name, sizeof(name), "%s/%s/scales", lk, cs->name[c]);
        QS_CHECK(qs_h5_read_into(&h, name, QS_H5_U16, lr.d_out[k] * G, o->scales,
                                 sizeof(uint16_t), err));
        snprintf(name, sizeof(name), "%s/%s/zeros", lk, cs->name[c]);
        QS_CHECK(qs_h5_read_into(&h, name, QS_H5_I32, lr.d_out[k] * G, o->zeros,
                                 sizeof(int32_t), err));
        snprintf(name, sizeof(name), "%s/%s/g_idx", lk, cs->name[c]);
        QS_CHECK(qs_h5_read_into(&h, name, QS_H5_I32, lr.d_in[k], o->g_idx, sizeof(int32_t),
                                 err));
    }
    qs_h5_abandon(&h);
    QS_CHECK(layer_write(f, layer, &lr, cs, sel, tab, err));
done:
    qs_h5_abandon(&h);
    free(all);
    tables_free(tab);
    qs_recon_layer_free(&lr);
    return st;
}