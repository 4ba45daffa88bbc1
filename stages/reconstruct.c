/* reconstruct.c (stage): quantizes every linear of every layer with every candidate of the
 * config (quant.bits x quant.group_size, method gptq or rtn) and records per linear and
 * candidate the codes/scales/zeros/g_idx, the error tr(dW H dW^T), its relative value, the
 * error RTN would have under the same H, the exact GPTQ payload bytes, the damping record
 * and whether serving kernels can load the shape. Output: run/recon/layer-NNN.h5 per layer
 * (one writer per layer, temp -> rename) + recon/manifest.json last (docs/reconstruct.md).
 *
 * Two modes (reconstruct.inputs):
 *  - float: Hessians from run/calib/layer-NNN.h5. Jobs are (layer, Hessian group): one
 *    qs_gptq_prepare per Hessian serves its linears and all candidates. Layers run in
 *    batches of nranks layers; a batch's jobs are balanced over all ranks
 *    (qs_partition_jobs), pieces go to the layer's writer ((layer - batch start) % nranks).
 *  - quantized (GPTQ's sequential mode): layer l is calibrated on the outputs of layers < l
 *    quantized with the propagate candidate. Per layer: its plan owner's weights are
 *    broadcast; calibration chunk c lives on rank c % nranks, which keeps its activations;
 *    the Hessian pass runs in rounds of nranks chunks (round k: chunk k * nranks + r on
 *    rank r), after each round rank 0 adds the round's partials in chunk order into its f64
 *    accumulators (the bytes of any schedule, and of calibrate for layer 0), so a rank
 *    holds one chunk's partials at a time; factors are prepared one group per rank and
 *    broadcast; the solve runs as jobs of (linear, row block of quant.row_block rows) over
 *    all ranks (a rank other than the writer keeps only its packed pieces); the plan owner
 *    writes the layer file; every rank reads the propagate candidate back from the file and
 *    pushes its chunks through the quantized layer.
 * Final pass (args->pass 1, after search): run/search/allocation.json names one candidate
 * per linear ("" = float). Quantized inputs: the sequential process above with each
 * linear's allocated candidate only, feeding the next layer -> run/final/layer-NNN.h5 (one
 * candidate per linear, tables (7, 1)) + final/manifest.json (inputs include the
 * allocation's SHA-256). Float inputs: the measured recon/ results are the final ones;
 * only final/manifest.json is written (inputs recon/'s manifest and the allocation).
 * Bytes never depend on the rank count: GPTQ and the error run on fixed row tiles of
 * quant.row_block rows, Hessian partials are added in chunk order, per-row values are summed
 * in row order. Resume: layers whose file exists and carries this run's config and input
 * hashes are kept; work restarts at the first layer without one. The stop flag is combined
 * at batch / layer boundaries (QS_STOPPED). Test knob: env QS_TEST_STOP_AFTER_LAYERS=n raises
 * the stop flag once n layers were written by this process.
 */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "candidates.h"
#include "h5store.h"
#include "memory.h"
#include "tokens.h"
#include "hessian.h"
#include "kernels.h"
#include "partition.h"
#include "layer_plan.h"
#include "pack.h"
#include "quant.h"
#include "sha256.h"
#include "stage.h"
#include "weights.h"

#define NLIN QS_LIN_COUNT
#define NGRP QS_GROUP_COUNT
#define MAX_CAND QS_CANDS_MAX
#define PIECE_TAG 4242
#define HESS_TAG 4243

static const char *const GROUP_NAMES[NGRP] = {"qkv", "o", "gate_up", "down"};

/* ---- per-layer results ------------------------------------------------------------- */

/* One linear x candidate of one layer: rows [base, base + n) of the result (the layer's
 * writer holds all rows, base 0; a rank that only computes pieces holds one piece at a
 * time). */
typedef struct lc_res {
    int64_t base;     /* first row held */
    uint8_t *codes;   /* (n, d_in) */
    uint16_t *scales; /* (n, G) fp16 bits */
    int32_t *zeros;   /* (n, G) */
    int32_t *g_idx;   /* (d_in) */
    double *err;      /* (n) per-row dW H dW^T */
    double *wnorm;    /* (n) per-row W H W^T */
    double *err_rtn;  /* (n) per-row error of RTN under the same H */
    qs_gptq_info info;
} lc_res;

typedef struct layer_res {
    int64_t d_out[NLIN], d_in[NLIN], G[NLIN * MAX_CAND];
    int ncand;
    lc_res *lc; /* (NLIN * ncand), [lin * ncand + c], arrays allocated on demand */
} layer_res;

static void lc_free(lc_res *o) {
    free(o->codes);
    free(o->scales);
    free(o->zeros);
    free(o->g_idx);
    free(o->err);
    free(o->wnorm);
    free(o->err_rtn);
    memset(o, 0, sizeof(*o));
}

/* Allocates rows [base, base + n) of a (., k) result with G groups. */
static qs_status lc_alloc(lc_res *o, int64_t base, int64_t n, int64_t k, int64_t G, qs_err *err) {
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
    lc_free(o);
    return QS_ERR_RUNTIME;
}

static void lr_free(layer_res *lr) {
    if (lr->lc)
        for (int i = 0; i < NLIN * lr->ncand; ++i) lc_free(&lr->lc[i]);
    free(lr->lc);
    memset(lr, 0, sizeof(*lr));
}

static qs_status lr_init(layer_res *lr, const qs_model_dims *d, const qs_cands *cs,
                         qs_err *err) {
    memset(lr, 0, sizeof(*lr));
    lr->ncand = cs->n;
    for (int k = 0; k < NLIN; ++k) {
        qs_linear_shape(d, (qs_linear_kind)k, &lr->d_out[k], &lr->d_in[k]);
        for (int c = 0; c < cs->n; ++c)
            lr->G[k * cs->n + c] = qs_quant_ngroups(lr->d_in[k], cs->p[c].group_size);
    }
    lr->lc = qs_calloc((size_t)(NLIN * cs->n), sizeof(lc_res), err, "layer results");
    return lr->lc ? QS_OK : QS_ERR_RUNTIME;
}

/* Allocates all rows of (lin, c) if not yet done. */
static lc_res *lr_get(layer_res *lr, int lin, int c, qs_err *err) {
    lc_res *o = &lr->lc[lin * lr->ncand + c];
    if (o->codes) return o;
    if (lc_alloc(o, 0, lr->d_out[lin], lr->d_in[lin], lr->G[lin * lr->ncand + c], err) != QS_OK)
        return NULL;
    return o;
}

/* ---- pieces: (layer, linear, candidate, row range) ------------------------------------ */

typedef struct piece {
    int layer, lin, cand;
    int64_t r0, r1;
    int owner;  /* computing rank */
    int writer; /* rank that writes the layer file */
} piece;

static size_t piece_bytes(const layer_res *lr, const piece *pc) {
    const int64_t rows = pc->r1 - pc->r0, k = lr->d_in[pc->lin];
    const int64_t G = lr->G[pc->lin * lr->ncand + pc->cand];
    return (size_t)(rows * k + rows * G * 2 + rows * G * 4 + rows * 8 * 3 + k * 4 + 5 * 8);
}

/* Serialises (pack = 1) or fills (pack = 0) the rows of a piece. */
static void piece_io(lc_res *o, const layer_res *lr, const piece *pc, unsigned char *buf,
                     int pack) {
    const int64_t rows = pc->r1 - pc->r0, k = lr->d_in[pc->lin];
    const int64_t G = lr->G[pc->lin * lr->ncand + pc->cand];
    const int64_t r = pc->r0 - o->base; /* first row of the piece in o */
    struct {
        void *p;
        size_t n;
    } parts[7] = {
        {o->codes + r * k, (size_t)(rows * k)},
        {o->scales + r * G, (size_t)(rows * G) * 2},
        {o->zeros + r * G, (size_t)(rows * G) * 4},
        {o->err + r, (size_t)rows * 8},
        {o->wnorm + r, (size_t)rows * 8},
        {o->err_rtn + r, (size_t)rows * 8},
        {o->g_idx, (size_t)k * 4},
    };
    for (int i = 0; i < 7; ++i) {
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

/* Quantizes rows [r0, r1) of W (d_out, d_in) with candidate c into o (which holds rows from
 * o->base <= r0), then the
 * per-row errors with row tiles of row_block rows from r0 (r0 is a tile boundary), and the
 * RTN error under the same H (gptq method). f is the prepared factor (gptq) or NULL. */
static qs_status solve_piece(const qs_cands *cs, int c, const float *H, const qs_gptq_factor *f,
                             const float *W, int64_t d_out, int64_t d_in, int64_t r0,
                             int64_t r1, lc_res *o, qs_err *err) {
    qs_status st = QS_OK;
    const qs_quant_params *p = &cs->p[c];
    const int64_t rows = r1 - r0, G = qs_quant_ngroups(d_in, p->group_size);
    const float *Wr = W + r0 * d_in; // (rows, d_in)
    float *wq = qs_malloc(sizeof(float) * (size_t)(rows * d_in), err, "dequantized rows");
    uint8_t *c2 = NULL;
    uint16_t *s2 = NULL;
    int32_t *z2 = NULL;
    if (!wq) return QS_ERR_RUNTIME;
    const int64_t r = r0 - o->base; /* first row of the piece in o */
    qs_quant_out out = {o->codes + r * d_in, o->scales + r * G, o->zeros + r * G, wq};
    if (cs->gptq) {
        QS_CHECK(qs_gptq_quantize_rows(f, p, Wr, d_out, r0, r1, &out, err));
        qs_gptq_g_idx(f, p, o->g_idx);
        o->info = f->info;
    } else {
        QS_CHECK(qs_rtn_quantize_rows(p, Wr, rows, d_in, &out, err));
        qs_quant_g_idx_natural(d_in, p->group_size, o->g_idx);
        memset(&o->info, 0, sizeof(o->info));
    }
    QS_CHECK(qs_quant_error_rows(H, d_in, Wr, wq, rows, p->row_block, o->err + r,
                                 o->wnorm + r, err));
    if (cs->gptq) {
        c2 = qs_malloc((size_t)(rows * d_in), err, "RTN codes");
        s2 = qs_malloc(sizeof(uint16_t) * (size_t)(rows * G), err, "RTN scales");
        z2 = qs_malloc(sizeof(int32_t) * (size_t)(rows * G), err, "RTN zeros");
        if (!c2 || !s2 || !z2) QS_THROW(err, QS_ERR_RUNTIME, "out of memory (RTN baseline)");
        qs_quant_out o2 = {c2, s2, z2, wq};
        QS_CHECK(qs_rtn_quantize_rows(p, Wr, rows, d_in, &o2, err));
        QS_CHECK(qs_quant_error_rows(H, d_in, Wr, wq, rows, p->row_block, o->err_rtn + r,
                                     NULL, err));
    } else {
        memcpy(o->err_rtn + r, o->err + r, sizeof(double) * (size_t)rows);
    }
done:
    free(wq);
    free(c2);
    free(s2);
    free(z2);
    return st;
}

/* Moves every piece from its owner to its layer's writer, in piece order (blocking sends
 * and receives in one global order cannot deadlock). lrs[i] is the result of layer
 * base + i (the writer's holds all rows). An owner sends pbuf[i] when pbuf and pbuf[i] are
 * set (the piece packed when it was computed), else packs it from lrs. */
static qs_status exchange_pieces(const qs_comm *comm, const piece *pcs, int npc,
                                 layer_res *lrs, int base, unsigned char *const *pbuf,
                                 qs_err *err) {
    qs_status st = QS_OK;
    unsigned char *buf = NULL;
    size_t cap = 0;
    for (int i = 0; i < npc; ++i) {
        const piece *pc = &pcs[i];
        if (pc->owner == pc->writer) continue;
        if (comm->rank != pc->owner && comm->rank != pc->writer) continue;
        layer_res *lr = &lrs[pc->layer - base];
        size_t n = piece_bytes(lr, pc);
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
        lc_res *o = lr_get(lr, pc->lin, pc->cand, err);
        if (!o) QS_THROW(err, QS_ERR_RUNTIME, "out of memory (layer results)");
        if (comm->rank == pc->owner) {
            piece_io(o, lr, pc, buf, 1);
            qs_comm_send(comm, buf, n, pc->writer, PIECE_TAG);
        } else {
            qs_comm_recv(comm, buf, n, pc->owner, PIECE_TAG);
            piece_io(o, lr, pc, buf, 0);
        }
    }
done:
    free(buf);
    /* peers are inside the exchange: an allocation failure here aborts */
    if (st != QS_OK) qs_comm_abort(comm, err);
    return st;
}

/* ---- layer files --------------------------------------------------------------------- */

/* dir: "recon" (pass 0) or "final" (pass 1). */
static void layer_rel(const char *dir, int layer, char *rel, size_t n) {
    snprintf(rel, n, "%s/layer-%03d.h5", dir, layer);
}

/* Writes run/<dir>/layer-NNN.h5 (layout in docs/reconstruct.md). sel NULL: every candidate,
 * tables (7, C); sel[k] = the candidate of linear k or -1 (float, no datasets): tables
 * (7, 1) and table/bits, table/group_size per linear (7), 0 for a float linear. */
static qs_status layer_write(const qs_stage_ctx *ctx, const char *dir, int layer,
                             layer_res *lr, const qs_cands *cs, const int *sel,
                             const char *input_hash, qs_err *err) {
    qs_status st = QS_OK;
    qs_h5 h;
    const int C = sel ? 1 : cs->n;
    char rel[64], path[QS_PATH_MAX], name[128];
    double *t_err = NULL, *t_wn = NULL, *t_rel = NULL, *t_rtn = NULL, *t_damp = NULL,
           *t_dabs = NULL;
    int64_t *t_bytes = NULL, *t_ndead = NULL;
    int32_t *t_serve = NULL, *t_nraise = NULL, *t_fp64 = NULL;
    int32_t bits[MAX_CAND > NLIN ? MAX_CAND : NLIN], groups[MAX_CAND > NLIN ? MAX_CAND : NLIN];
    int64_t dout[NLIN], din[NLIN];
    char *cands = NULL, lins[128] = "";
    memset(&h, 0, sizeof(h));
    const size_t nt = (size_t)(NLIN * C);
    t_err = qs_calloc(nt, 8, err, "table");
    t_wn = qs_calloc(nt, 8, err, "table");
    t_rel = qs_calloc(nt, 8, err, "table");
    t_rtn = qs_calloc(nt, 8, err, "table");
    t_damp = qs_calloc(nt, 8, err, "table");
    t_dabs = qs_calloc(nt, 8, err, "table");
    t_bytes = qs_calloc(nt, 8, err, "table");
    t_ndead = qs_calloc(nt, 8, err, "table");
    t_serve = qs_calloc(nt, 4, err, "table");
    t_nraise = qs_calloc(nt, 4, err, "table");
    t_fp64 = qs_calloc(nt, 4, err, "table");
    cands = qs_malloc((size_t)(cs->n > NLIN ? cs->n : NLIN) * (QS_QUANT_NAME_MAX + 1) + 1, err,
                      "candidate names");
    if (!t_err || !t_wn || !t_rel || !t_rtn || !t_damp || !t_dabs || !t_bytes || !t_ndead ||
        !t_serve || !t_nraise || !t_fp64 || !cands)
        QS_THROW(err, QS_ERR_RUNTIME, "out of memory (layer table)");
    cands[0] = '\0';
    if (sel) {
        for (int k = 0; k < NLIN; ++k) {
            bits[k] = sel[k] >= 0 ? cs->p[sel[k]].bits : 0;
            groups[k] = sel[k] >= 0 ? cs->p[sel[k]].group_size : 0;
            if (k) strcat(cands, ",");
            if (sel[k] >= 0) strcat(cands, cs->name[sel[k]]);
        }
    } else {
        for (int c = 0; c < C; ++c) {
            bits[c] = cs->p[c].bits;
            groups[c] = cs->p[c].group_size;
            if (c) strcat(cands, ",");
            strcat(cands, cs->name[c]);
        }
    }
    for (int k = 0; k < NLIN; ++k) {
        dout[k] = lr->d_out[k];
        din[k] = lr->d_in[k];
        if (k) strcat(lins, ",");
        strcat(lins, qs_linear_key((qs_linear_kind)k));
        for (int j = 0; j < C; ++j) {
            const int c = sel ? sel[k] : j;
            const size_t i = (size_t)(k * C + j);
            if (c < 0) continue; /* float linear: zeros */
            lc_res *o = &lr->lc[k * cs->n + c];
            QS_ASSERT(err, o->codes != NULL && o->base == 0);
            t_err[i] = qs_quant_sum(o->err, lr->d_out[k]);
            t_wn[i] = qs_quant_sum(o->wnorm, lr->d_out[k]);
            t_rel[i] = qs_quant_relative(t_err[i], t_wn[i]);
            t_rtn[i] = qs_quant_sum(o->err_rtn, lr->d_out[k]);
            t_damp[i] = o->info.damp;
            t_dabs[i] = o->info.damp_abs;
            t_nraise[i] = o->info.nraise;
            t_fp64[i] = o->info.fp64;
            t_ndead[i] = o->info.ndead;
            qs_pack_bytes pb;
            qs_err why = {0};
            t_bytes[i] = qs_pack_sizes(lr->d_out[k], lr->d_in[k], cs->p[c].bits,
                                       cs->p[c].group_size, &pb, &why) == QS_OK
                             ? pb.total
                             : -1;
            t_serve[i] = qs_pack_can_serve(lr->d_out[k], lr->d_in[k], cs->p[c].bits,
                                           cs->p[c].group_size, NULL);
        }
    }
    layer_rel(dir, layer, rel, sizeof(rel));
    QS_CHECK(qs_rundir_path(ctx->rd, rel, path, sizeof(path), err));
    QS_CHECK(qs_h5_create(&h, path, err));
    {
        int64_t td[2] = {NLIN, C}, cd[1] = {sel ? NLIN : C}, ld[1] = {NLIN}, hd[1] = {64};
        QS_CHECK(qs_h5_write(&h, "meta/config_hash", QS_H5_U8, 1, hd, ctx->config_hash, err));
        QS_CHECK(qs_h5_write(&h, "meta/input_hash", QS_H5_U8, 1, hd, input_hash, err));
        QS_CHECK(qs_h5_write(&h, "table/bits", QS_H5_I32, 1, cd, bits, err));
        QS_CHECK(qs_h5_write(&h, "table/group_size", QS_H5_I32, 1, cd, groups, err));
        QS_CHECK(qs_h5_write(&h, "table/d_out", QS_H5_I64, 1, ld, dout, err));
        QS_CHECK(qs_h5_write(&h, "table/d_in", QS_H5_I64, 1, ld, din, err));
        QS_CHECK(qs_h5_write(&h, "table/error", QS_H5_F64, 2, td, t_err, err));
        QS_CHECK(qs_h5_write(&h, "table/wnorm", QS_H5_F64, 2, td, t_wn, err));
        QS_CHECK(qs_h5_write(&h, "table/relative", QS_H5_F64, 2, td, t_rel, err));
        QS_CHECK(qs_h5_write(&h, "table/error_rtn", QS_H5_F64, 2, td, t_rtn, err));
        QS_CHECK(qs_h5_write(&h, "table/bytes", QS_H5_I64, 2, td, t_bytes, err));
        QS_CHECK(qs_h5_write(&h, "table/can_serve", QS_H5_I32, 2, td, t_serve, err));
        QS_CHECK(qs_h5_write(&h, "table/damp", QS_H5_F64, 2, td, t_damp, err));
        QS_CHECK(qs_h5_write(&h, "table/damp_abs", QS_H5_F64, 2, td, t_dabs, err));
        QS_CHECK(qs_h5_write(&h, "table/damp_raised", QS_H5_I32, 2, td, t_nraise, err));
        QS_CHECK(qs_h5_write(&h, "table/fp64", QS_H5_I32, 2, td, t_fp64, err));
        QS_CHECK(qs_h5_write(&h, "table/ndead", QS_H5_I64, 2, td, t_ndead, err));
    }
    for (int k = 0; k < NLIN; ++k)
        for (int j = 0; j < C; ++j) {
            const int c = sel ? sel[k] : j;
            if (c < 0) continue;
            lc_res *o = &lr->lc[k * cs->n + c];
            const int64_t G = lr->G[k * cs->n + c];
            int64_t dc[2] = {lr->d_out[k], lr->d_in[k]}, dg[2] = {lr->d_out[k], G},
                    di[1] = {lr->d_in[k]};
            const char *lk = qs_linear_key((qs_linear_kind)k);
            snprintf(name, sizeof(name), "%s/%s/codes", lk, cs->name[c]);
            QS_CHECK(qs_h5_write(&h, name, QS_H5_U8, 2, dc, o->codes, err));
            snprintf(name, sizeof(name), "%s/%s/scales", lk, cs->name[c]);
            QS_CHECK(qs_h5_write(&h, name, QS_H5_U16, 2, dg, o->scales, err));
            snprintf(name, sizeof(name), "%s/%s/zeros", lk, cs->name[c]);
            QS_CHECK(qs_h5_write(&h, name, QS_H5_I32, 2, dg, o->zeros, err));
            snprintf(name, sizeof(name), "%s/%s/g_idx", lk, cs->name[c]);
            QS_CHECK(qs_h5_write(&h, name, QS_H5_I32, 1, di, o->g_idx, err));
        }
    QS_CHECK(qs_h5_attr_i64(&h, NULL, "layer", layer, err));
    QS_CHECK(qs_h5_attr_str(&h, NULL, "inputs",
                            ctx->cfg->reconstruct.inputs == QS_INPUTS_FLOAT ? "float"
                                                                            : "quantized",
                            err));
    QS_CHECK(qs_h5_attr_str(&h, NULL, "method", cs->gptq ? "gptq" : "rtn", err));
    QS_CHECK(qs_h5_attr_str(&h, NULL, "linears", lins, err));
    QS_CHECK(qs_h5_attr_str(&h, NULL, "candidates", cands, err));
    QS_CHECK(qs_h5_attr_str(&h, NULL, "propagate", sel ? "allocation" : cs->name[cs->propagate],
                            err));
    QS_CHECK(qs_h5_commit(&h, err));
done:
    if (st != QS_OK) qs_h5_abandon(&h);
    free(t_err);
    free(t_wn);
    free(t_rel);
    free(t_rtn);
    free(t_damp);
    free(t_dabs);
    free(t_bytes);
    free(t_ndead);
    free(t_serve);
    free(t_nraise);
    free(t_fp64);
    free(cands);
    return st;
}

/* 1 if the layer file exists and was written by this run (config and input hashes). */
static int layer_done(const qs_stage_ctx *ctx, const char *dir, int layer,
                      const char *input_hash) {
    char rel[64], path[QS_PATH_MAX];
    qs_err e = {0};
    qs_h5 h;
    void *a = NULL, *b = NULL;
    int nd = 0, ok = 0;
    int64_t dims[8];
    memset(&h, 0, sizeof(h));
    layer_rel(dir, layer, rel, sizeof(rel));
    if (qs_rundir_path(ctx->rd, rel, path, sizeof(path), &e) != QS_OK || !qs_path_exists(path))
        return 0;
    if (qs_h5_open(&h, path, &e) != QS_OK) return 0;
    if (qs_h5_read(&h, "meta/config_hash", QS_H5_U8, &nd, dims, &a, &e) == QS_OK &&
        qs_h5_read(&h, "meta/input_hash", QS_H5_U8, &nd, dims, &b, &e) == QS_OK && nd == 1 &&
        dims[0] == 64 && memcmp(a, ctx->config_hash, 64) == 0 && memcmp(b, input_hash, 64) == 0)
        ok = 1;
    free(a);
    free(b);
    qs_h5_abandon(&h);
    return ok;
}

/* ---- shared pieces of both modes ------------------------------------------------------ */

static int env_stop_after(void) {
    const char *s = getenv("QS_TEST_STOP_AFTER_LAYERS");
    return s && *s ? atoi(s) : 0;
}

/* Logs every rank's busy seconds (rank 0). Collective. */
static qs_status report_busy(const qs_stage_ctx *ctx, double busy, qs_err *err) {
    void *all = NULL;
    size_t *counts = NULL;
    qs_status st = qs_comm_gatherv(ctx->comm, &busy, sizeof(busy), 0, &all, &counts, err);
    if (st != QS_OK) return st;
    if (ctx->comm->rank == 0) {
        const double *v = all;
        char line[1024];
        int n = 0;
        for (int r = 0; r < ctx->comm->size && n < (int)sizeof(line) - 32; ++r)
            n += snprintf(line + n, sizeof(line) - (size_t)n, "%s%d: %.2f s", r ? ", " : "", r,
                          v[r]);
        qs_log_info(ctx->log, "reconstruct: busy time per rank: %s", line);
    }
    free(all);
    free(counts);
    return QS_OK;
}

/* Diagnostics, not an output (outside the manifest): every rank writes
 * <dir>/rss/rank-NNN.json {"rank", "nranks", "first", "count", "start_rss_bytes" (RSS when
 * the stage's work began), "peak_rss_bytes" (VmHWM since then: reset there),
 * "formula_bytes" (qs_mem_for_stage's reconstruct part), "seconds"}. Read by tests/bench/mem_check.py. A failure only logs. */
static void rss_report(const qs_stage_ctx *ctx, const char *dir, const qs_plan *plan,
                       long long start_rss, double seconds) {
    const int rank = ctx->comm->rank, P = ctx->comm->size;
    int first = 0, count = 0;
    if (plan && plan->nranks == P) {
        first = plan->first[rank];
        count = plan->first[rank + 1] - first;
    } else {
        /* float inputs do not read the plan: recompute it (same function as the plan stage) */
        qs_plan p;
        qs_err e = {0};
        memset(&p, 0, sizeof(p));
        if (qs_plan_compute(&ctx->model->hf, ctx->cfg, P, &p, &e) == QS_OK) {
            first = p.first[rank];
            count = p.first[rank + 1] - first;
        }
        qs_plan_free(&p);
    }
    qs_mem_estimate m = qs_mem_for_stage(&ctx->model->hf, ctx->cfg, rank, P, first, count,
                                         QS_MEM_RECONSTRUCT);
    long long peak = qs_log_peak_rss();
    qs_log_info(ctx->log, "reconstruct: rank %d: peak RSS %.1f MiB (formula %.1f MiB)", rank,
                (double)peak / 1048576.0, (double)m.total / 1048576.0);
    char rel[64], sub[32], path[QS_PATH_MAX], text[512];
    qs_err e = {0};
    snprintf(sub, sizeof(sub), "%s/rss", dir);
    snprintf(rel, sizeof(rel), "%s/rank-%03d.json", sub, rank);
    int n = snprintf(text, sizeof(text),
                     "{\n  \"rank\": %d,\n  \"nranks\": %d,\n  \"first\": %d,\n  \"count\": "
                     "%d,\n  \"start_rss_bytes\": %lld,\n  \"peak_rss_bytes\": %lld,\n  "
                     "\"formula_bytes\": %lld,\n  \"seconds\": %.3f\n}\n",
                     rank, P, first, count, start_rss, peak, (long long)m.total, seconds);
    if (qs_rundir_mkdir(ctx->rd, sub, &e) != QS_OK ||
        qs_rundir_path(ctx->rd, rel, path, sizeof(path), &e) != QS_OK ||
        qs_write_file_atomic(path, text, (size_t)n, &e) != QS_OK)
        qs_log_info(ctx->log, "reconstruct: rank %d: cannot record peak RSS: %s", rank, e.msg);
}

/* Rank 0: writes <dir>/manifest.json naming every layer file. */
static qs_status write_manifest(const qs_stage_ctx *ctx, const char *dir, qs_manifest *want,
                                int L, qs_err *err) {
    qs_status st = QS_OK;
    for (int l = 0; l < L; ++l) {
        char rel[64];
        layer_rel(dir, l, rel, sizeof(rel));
        QS_CHECK(qs_manifest_add_output(want, ctx->rd, rel, err));
    }
    QS_CHECK(qs_manifest_write(want, ctx->rd, err));
done:
    return st;
}

/* ---- inputs: float ------------------------------------------------------------------- */

/* Solves job (layer, group) on this rank: Hessian from calib/layer-NNN.h5, one prepare,
 * every linear of the group x every candidate over all rows. */
static qs_status solve_group_job(const qs_stage_ctx *ctx, const qs_model_dims *d,
                                 const qs_cands *cs, int layer, int g, layer_res *lr,
                                 qs_err *err) {
    qs_status st = QS_OK;
    qs_h5 h;
    qs_gptq_factor f;
    float *H = NULL, *W = NULL;
    char rel[64], path[QS_PATH_MAX], name[64];
    memset(&h, 0, sizeof(h));
    memset(&f, 0, sizeof(f));
    int64_t n = g == QS_GROUP_O ? d->heads * d->head_dim
                                : (g == QS_GROUP_DOWN ? d->inter : d->hidden);
    snprintf(rel, sizeof(rel), "calib/layer-%03d.h5", layer);
    QS_CHECK(qs_rundir_path(ctx->rd, rel, path, sizeof(path), err));
    QS_CHECK(qs_h5_open(&h, path, err));
    snprintf(name, sizeof(name), "%s/hessian", GROUP_NAMES[g]);
    QS_CHECK(qs_h5_read_n(&h, name, QS_H5_F32, n * n, (void **)&H, err)); // (n, n)
    qs_h5_abandon(&h);
    if (cs->gptq) QS_CHECK(qs_gptq_prepare(H, n, &cs->p[0], &f, err));
    for (int k = 0; k < NLIN; ++k) {
        if ((int)qs_linear_group_of((qs_linear_kind)k) != g) continue;
        const int64_t d_out = lr->d_out[k], d_in = lr->d_in[k];
        free(W);
        W = qs_malloc(sizeof(float) * (size_t)(d_out * d_in), err, "linear weight");
        if (!W) QS_THROW(err, QS_ERR_RUNTIME, "out of memory (weights)");
        char tname[256];
        qs_linear_tensor_name(tname, sizeof(tname), layer, (qs_linear_kind)k, 0);
        QS_CHECK(qs_weights_read(ctx->model, tname, d_out, d_in, W, err));
        for (int c = 0; c < cs->n; ++c) {
            lc_res *o = lr_get(lr, k, c, err);
            if (!o) QS_THROW(err, QS_ERR_RUNTIME, "out of memory (layer results)");
            QS_CHECK(solve_piece(cs, c, H, cs->gptq ? &f : NULL, W, d_out, d_in, 0, d_out, o,
                                 err));
        }
    }
done:
    qs_h5_abandon(&h);
    qs_gptq_factor_free(&f);
    free(H);
    free(W);
    return st;
}

static double group_cost(const qs_model_dims *d, const qs_cands *cs, int g) {
    double cost = 0.0;
    int64_t n = 0;
    for (int k = 0; k < NLIN; ++k) {
        if ((int)qs_linear_group_of((qs_linear_kind)k) != g) continue;
        int64_t o, i;
        qs_linear_shape(d, (qs_linear_kind)k, &o, &i);
        cost += (double)cs->n * (double)o * (double)i * (double)i;
        n = i;
    }
    return cost + (cs->gptq ? (double)n * (double)n * (double)n : 0.0);
}

static qs_status run_float(const qs_stage_ctx *ctx, const qs_model_dims *d, const qs_cands *cs,
                           int l0, const char *input_hash, double *busy, qs_err *err) {
    qs_status st = QS_OK;
    const qs_comm *comm = ctx->comm;
    const int L = (int)d->nlayers, P = comm->size, stop_after = env_stop_after();
    layer_res *lrs = NULL;
    piece *pcs = NULL;
    double *cost = NULL;
    int *owner = NULL, written = 0;
    lrs = qs_calloc((size_t)P, sizeof(layer_res), err, "batch results");
    cost = qs_malloc(sizeof(double) * (size_t)(P * NGRP), err, "job costs");
    owner = qs_malloc(sizeof(int) * (size_t)(P * NGRP), err, "job owners");
    pcs = qs_malloc(sizeof(piece) * (size_t)(P * NLIN * cs->n), err, "pieces");
    if (!lrs || !cost || !owner || !pcs) st = QS_ERR_RUNTIME;
    st = qs_comm_agree(comm, st, err);
    if (st != QS_OK) goto done;
    for (int b0 = l0; b0 < L; b0 += P) {
        const int nl = L - b0 < P ? L - b0 : P, nj = nl * NGRP;
        int npc = 0;
        for (int j = 0; j < nj; ++j) cost[j] = group_cost(d, cs, j % NGRP);
        QS_CHECK(qs_partition_jobs(cost, nj, P, owner, err));
        for (int j = 0; j < nj; ++j) {
            const int layer = b0 + j / NGRP, g = j % NGRP;
            for (int k = 0; k < NLIN; ++k) {
                if ((int)qs_linear_group_of((qs_linear_kind)k) != g) continue;
                int64_t o, i;
                qs_linear_shape(d, (qs_linear_kind)k, &o, &i);
                for (int c = 0; c < cs->n; ++c)
                    pcs[npc++] = (piece){layer, k, c, 0, o, owner[j], (layer - b0) % P};
            }
        }
        /* compute my jobs */
        double t0 = qs_log_now();
        for (int i = 0; i < nl && st == QS_OK; ++i) st = lr_init(&lrs[i], d, cs, err);
        for (int j = 0; j < nj && st == QS_OK; ++j)
            if (owner[j] == comm->rank)
                st = solve_group_job(ctx, d, cs, b0 + j / NGRP, j % NGRP, &lrs[j / NGRP], err);
        *busy += qs_log_now() - t0;
        st = qs_comm_agree(comm, st, err);
        if (st != QS_OK) goto done;
        QS_CHECK(exchange_pieces(comm, pcs, npc, lrs, b0, NULL, err));
        for (int i = 0; i < nl && st == QS_OK; ++i)
            if (i % P == comm->rank) {
                st = layer_write(ctx, "recon", b0 + i, &lrs[i], cs, NULL, input_hash, err);
                if (st == QS_OK) ++written;
            }
        for (int i = 0; i < nl; ++i) lr_free(&lrs[i]);
        st = qs_comm_agree(comm, st, err);
        if (st != QS_OK) goto done;
        qs_log_info(ctx->log, "reconstruct: layers [%d, %d) done", b0, b0 + nl);
        qs_progress_step(ctx->progress, b0 + nl, "layer %d/%d", b0 + nl, L);
        int want_stop = *ctx->stop || (stop_after > 0 && written >= stop_after);
        if (b0 + nl < L && qs_comm_any(comm, want_stop)) {
            qs_log_info(ctx->log, "reconstruct: stopped after layer %d", b0 + nl - 1);
            st = QS_STOPPED;
            goto done;
        }
    }
done:
    if (lrs)
        for (int i = 0; i < P; ++i) lr_free(&lrs[i]);
    free(lrs);
    free(cost);
    free(owner);
    free(pcs);
    return st;
}

/* ---- inputs: quantized (sequential) ------------------------------------------------------ */

/* Hook of the Hessian pass: the chunk's partial of each group into its slot. */
typedef struct part_ctx {
    float *part[NGRP]; /* (d_g, d_g) tiles of the current chunk */
    int64_t dg[NGRP];
} part_ctx;

static qs_status part_hook(void *vctx, qs_linear_group g, const float *x, int64_t rows,
                           int64_t dd, qs_err *err) {
    part_ctx *p = vctx;
    if (dd != p->dg[g])
        return QS_FAIL(err, QS_ERR_INTERNAL, "hook width %lld != %lld", (long long)dd,
                       (long long)p->dg[g]);
    qs_hess_partial(x, rows, dd, p->part[g]);
    return QS_OK;
}

/* SHA-256 of the chosen windows: seqlen, then every window's token ids (u32 LE); the
 * same value calibrate records. */
static void windows_hash(const qs_tokens *t, const int64_t *offs, int64_t n, int64_t T,
                         char hex[65]) {
    qs_sha256 s;
    qs_sha256_init(&s);
    qs_sha256_update(&s, &T, sizeof(T));
    for (int64_t w = 0; w < n; ++w)
        for (int64_t i = 0; i < T; ++i) {
            uint32_t id = qs_tokens_get(t, offs[w] + i);
            unsigned char b[4] = {(unsigned char)id, (unsigned char)(id >> 8),
                                  (unsigned char)(id >> 16), (unsigned char)(id >> 24)};
            qs_sha256_update(&s, b, 4);
        }
    qs_sha256_final_hex(&s, hex);
}

/* Broadcasts a prepared factor of size n from root (others allocate). */
static qs_status bcast_factor(const qs_comm *comm, qs_gptq_factor *f, int64_t n, int act_order,
                              int root, qs_err *err) {
    if (comm->rank != root) {
        f->n = n;
        f->act_order = act_order;
        f->U = qs_malloc(sizeof(float) * (size_t)(n * n), err, "factor");
        f->perm = qs_malloc(sizeof(int32_t) * (size_t)n, err, "factor permutation");
        f->dead = qs_malloc((size_t)n, err, "dead inputs");
        if (!f->U || !f->perm || !f->dead) qs_comm_abort(comm, err); /* peers are in bcast */
    }
    qs_comm_bcast(comm, f->U, sizeof(float) * (size_t)(n * n), root);
    qs_comm_bcast(comm, f->perm, sizeof(int32_t) * (size_t)n, root);
    qs_comm_bcast(comm, f->dead, (size_t)n, root);
    qs_comm_bcast(comm, &f->info, sizeof(f->info), root);
    return QS_OK;
}

/* Sequential GPTQ over the layers (both passes). sel NULL: every candidate of every linear,
 * the propagate candidate feeds the next layer (pass 0, dir "recon"). sel (L, NLIN): layer
 * l's linear k is quantized with candidate sel[l * NLIN + k] only (-1 = stays float) and
 * these candidates feed the next layer (pass 1, dir "final"). */
static qs_status run_quantized(const qs_stage_ctx *ctx, const qs_model_dims *d,
                               const qs_cands *cs, const int *sel, const char *dir, int l0,
                               const qs_tokens *tok, const int64_t *offs, const qs_plan *plan,
                               const char *input_hash, double *busy, qs_err *err) {
    qs_status st = QS_OK;
    const qs_config *cfg = ctx->cfg;
    const qs_comm *comm = ctx->comm;
    const int rank = comm->rank, P = comm->size, L = (int)d->nlayers;
    const int64_t T = cfg->calib.seqlen, S = cfg->calib.nsamples, CS = cfg->calib.chunk_samples;
    const int64_t nchunks = (S + CS - 1) / CS, Hd = d->hidden;
    const int64_t nrounds = (nchunks + P - 1) / P;
    const int stop_after = env_stop_after();
    int64_t dg[NGRP];
    qs_layer_workspace ws;
    qs_ends_f32 ends;
    qs_layer_f32 lw, lq;
    qs_gptq_factor fac[NGRP];
    layer_res lr;
    lc_res tmpres;
    float *X = NULL, *tmp = NULL, *part[NGRP] = {NULL}, *Hf[NGRP] = {NULL};
    double *acc[NGRP] = {NULL};
    uint32_t *ids = NULL;
    int32_t *ids32 = NULL;
    piece *pcs = NULL;
    unsigned char **pbuf = NULL;
    double *jcost = NULL;
    int *jowner = NULL, *jlin = NULL, written = 0;
    int64_t *jr0 = NULL;
    memset(&ws, 0, sizeof(ws));
    memset(&ends, 0, sizeof(ends));
    memset(&lw, 0, sizeof(lw));
    memset(&lq, 0, sizeof(lq));
    memset(fac, 0, sizeof(fac));
    memset(&lr, 0, sizeof(lr));
    memset(&tmpres, 0, sizeof(tmpres));
    dg[QS_GROUP_QKV] = Hd;
    dg[QS_GROUP_O] = d->heads * d->head_dim;
    dg[QS_GROUP_GATE_UP] = Hd;
    dg[QS_GROUP_DOWN] = d->inter;
    /* chunk c lives on rank c % P, as local chunk c / P (only the last chunk is short) */
    const int64_t nloc = rank < nchunks ? (nchunks - 1 - rank) / P + 1 : 0;
    int64_t rows_loc = 0;
    for (int64_t j = 0; j < nloc; ++j) {
        const int64_t s0 = (j * P + rank) * CS;
        rows_loc += (S - s0 < CS ? S - s0 : CS) * T;
    }

    /* 1. my chunks' activations: embeddings of my windows */
    int64_t maxjobs = 0, rb = cfg->quant.row_block;
    for (int k = 0; k < NLIN; ++k) {
        int64_t o, i;
        qs_linear_shape(d, (qs_linear_kind)k, &o, &i);
        maxjobs += (o + rb - 1) / rb;
    }
    pcs = qs_malloc(sizeof(piece) * (size_t)(maxjobs * cs->n), err, "pieces");
    pbuf = qs_calloc((size_t)(maxjobs * cs->n), sizeof(unsigned char *), err, "piece buffers");
    jcost = qs_malloc(sizeof(double) * (size_t)maxjobs, err, "job costs");
    jowner = qs_malloc(sizeof(int) * (size_t)maxjobs, err, "job owners");
    jlin = qs_malloc(sizeof(int) * (size_t)maxjobs, err, "job linears");
    jr0 = qs_malloc(sizeof(int64_t) * (size_t)maxjobs, err, "job rows");
    X = qs_malloc(sizeof(float) * (size_t)((rows_loc > 0 ? rows_loc : 1) * Hd), err,
                  "activations"); // (rows_loc, hidden)
    tmp = qs_malloc(sizeof(float) * (size_t)(CS * T * Hd), err, "chunk buffer"); // (CS*T, hidden)
    ids = qs_malloc(sizeof(uint32_t) * (size_t)(CS * T), err, "chunk tokens");
    ids32 = qs_malloc(sizeof(int32_t) * (size_t)T, err, "window tokens");
    if (!pcs || !pbuf || !jcost || !jowner || !jlin || !jr0 || !X || !tmp || !ids || !ids32)
        st = QS_ERR_RUNTIME;
    for (int g = 0; g < NGRP && st == QS_OK; ++g) {
        /* one chunk's partial (rank 0 also receives the others' into it) and the final H */
        part[g] = qs_malloc(sizeof(float) * (size_t)(dg[g] * dg[g]), err, "Hessian partial");
        Hf[g] = qs_malloc(sizeof(float) * (size_t)(dg[g] * dg[g]), err, "Hessian");
        if (!part[g] || !Hf[g]) st = QS_ERR_RUNTIME;
        if (st == QS_OK && rank == 0) {
            acc[g] = qs_malloc(sizeof(double) * (size_t)(dg[g] * dg[g]), err,
                               "Hessian accumulator"); // (d_g, d_g)
            if (!acc[g]) st = QS_ERR_RUNTIME;
        }
    }
    if (st == QS_OK) st = qs_layer_workspace_init(&ws, d, (int)CS, (int)T, err);
    if (st == QS_OK) st = qs_layer_f32_alloc(d, &lw, err);
    if (st == QS_OK) st = qs_layer_f32_alloc(d, &lq, err);
    if (st == QS_OK && nloc > 0) st = qs_weights_load_ends(ctx->model, d, 1, 0, &ends, err);
    for (int64_t j = 0; j < nloc && st == QS_OK; ++j) {
        const int64_t s0 = (j * P + rank) * CS, ns = S - s0 < CS ? S - s0 : CS;
        for (int64_t s = 0; s < ns; ++s) {
            qs_tokens_copy(tok, offs[s0 + s], T, ids32);
            for (int64_t t = 0; t < T; ++t) ids[s * T + t] = (uint32_t)ids32[t];
        }
        st = qs_embed_gather(ends.embed, d->vocab, Hd, ids, ns * T, X + j * CS * T * Hd, err);
    }
    qs_ends_f32_free(&ends);
    st = qs_comm_agree(comm, st, err);
    if (st != QS_OK) goto done;

    for (int l = 0; l < L; ++l) {
        double t0 = qs_log_now();
        char rel[64], path[QS_PATH_MAX];
        const int lown = plan->layer_rank[l];
        const int *lsel = sel ? sel + (size_t)l * NLIN : NULL;
        layer_rel(dir, l, rel, sizeof(rel));
        /* 2. layer l's float weights from its owner to every rank (same layout everywhere) */
        if (rank == lown) {
            qs_layer_f32_free(&lw);
            st = qs_weights_load_layer(ctx->model, d, l, &lw, err);
        }
        st = qs_comm_agree(comm, st, err);
        if (st != QS_OK) goto done;
        qs_comm_bcast(comm, lw.buf, sizeof(float) * (size_t)lw.nfloats, lown);

        if (l >= l0) {
            /* 3. rounds of P chunks: round k, chunk k * P + r on rank r (float layer on
             * quantized inputs, partial Hessians by the hook); then rank 0 adds the round's
             * partials in chunk order into its f64 accumulators. A rank holds one chunk's
             * partials at a time. */
            part_ctx pctx;
            qs_layer_hooks hooks = {part_hook, &pctx};
            for (int g = 0; g < NGRP; ++g) {
                pctx.dg[g] = dg[g];
                pctx.part[g] = part[g];
                if (rank == 0) memset(acc[g], 0, sizeof(double) * (size_t)(dg[g] * dg[g]));
            }
            for (int64_t k = 0; k < nrounds; ++k) {
                const int64_t c = k * P + rank;
                if (c < nchunks) {
                    const int64_t s0 = c * CS, ns = S - s0 < CS ? S - s0 : CS;
                    memcpy(tmp, X + k * CS * T * Hd, sizeof(float) * (size_t)(ns * T * Hd));
                    st = qs_layer_forward(&lw.w, d, tmp, (int)ns, (int)T, &ws, &hooks, err);
                }
                st = qs_comm_agree(comm, st, err);
                if (st != QS_OK) goto done;
                const int64_t ce = (k + 1) * P < nchunks ? (k + 1) * P : nchunks;
                for (int64_t cc = k * P; cc < ce; ++cc) {
                    const int src = (int)(cc % P);
                    for (int g = 0; g < NGRP; ++g) {
                        const int64_t n = dg[g];
                        if (src == 0 && rank == 0) {
                            qs_hess_add(acc[g], part[g], n);
                        } else if (rank == src) {
                            qs_comm_send(comm, part[g], sizeof(float) * (size_t)(n * n), 0,
                                         HESS_TAG);
                        } else if (rank == 0) {
                            /* rank 0's own partial of this round (chunk k * P) is added */
                            qs_comm_recv(comm, part[g], sizeof(float) * (size_t)(n * n), src,
                                         HESS_TAG);
                            qs_hess_add(acc[g], part[g], n);
                        }
                    }
                }
            }
            /* 4. H finalized on rank 0 and broadcast */
            for (int g = 0; g < NGRP; ++g) {
                const int64_t n2 = dg[g] * dg[g];
                if (rank == 0) {
                    qs_hess_finalize(acc[g], dg[g], S * T);
                    for (int64_t i = 0; i < n2; ++i) Hf[g][i] = (float)acc[g][i];
                }
                qs_comm_bcast(comm, Hf[g], sizeof(float) * (size_t)n2, 0);
            }
            /* which linears get which candidates: [cfirst, cend) of the candidate list */
            int cfirst[NLIN], cend[NLIN], need[NGRP] = {0};
            for (int k = 0; k < NLIN; ++k) {
                cfirst[k] = lsel ? (lsel[k] >= 0 ? lsel[k] : 0) : 0;
                cend[k] = lsel ? (lsel[k] >= 0 ? lsel[k] + 1 : 0) : cs->n;
                if (cend[k] > cfirst[k]) need[qs_linear_group_of((qs_linear_kind)k)] = 1;
            }
            /* 5. one factor per group that has a quantized linear, prepared by rank g % P */
            if (cs->gptq) {
                for (int g = 0; g < NGRP && st == QS_OK; ++g)
                    if (need[g] && g % P == rank)
                        st = qs_gptq_prepare(Hf[g], dg[g], &cs->p[0], &fac[g], err);
                st = qs_comm_agree(comm, st, err);
                if (st != QS_OK) goto done;
                for (int g = 0; g < NGRP; ++g)
                    if (need[g]) bcast_factor(comm, &fac[g], dg[g], cs->p[0].act_order, g % P, err);
            }
            /* 6. the solve: jobs of (linear, row block), each with the linear's candidates.
             * The writer (the layer's plan owner) holds the whole layer's results; any other
             * rank packs each piece as it is computed and keeps only the packed pieces. */
            int nj = 0, npc = 0;
            for (int k = 0; k < NLIN; ++k) {
                int64_t o, i;
                qs_linear_shape(d, (qs_linear_kind)k, &o, &i);
                if (cend[k] <= cfirst[k]) continue;
                for (int64_t r0 = 0; r0 < o; r0 += rb) {
                    const int64_t r1 = r0 + rb < o ? r0 + rb : o;
                    jlin[nj] = k;
                    jr0[nj] = r0;
                    jcost[nj++] = (double)(cend[k] - cfirst[k]) * (double)(r1 - r0) * (double)i *
                                  (double)i;
                }
            }
            if (nj > 0) QS_CHECK(qs_partition_jobs(jcost, nj, P, jowner, err));
            st = lr_init(&lr, d, cs, err);
            for (int j = 0; j < nj && st == QS_OK; ++j) {
                const int k = jlin[j];
                int64_t o, i;
                qs_linear_shape(d, (qs_linear_kind)k, &o, &i);
                const int gk = (int)qs_linear_group_of((qs_linear_kind)k);
                const float *W = qs_linear_weight(&lw.w, (qs_linear_kind)k);
                const qs_gptq_factor *f = cs->gptq ? &fac[gk] : NULL;
                const int64_t r0 = jr0[j], r1 = r0 + rb < o ? r0 + rb : o;
                for (int c = cfirst[k]; c < cend[k] && st == QS_OK; ++c) {
                    piece *pc = &pcs[npc++];
                    *pc = (piece){l, k, c, r0, r1, jowner[j], lown};
                    if (jowner[j] != rank) continue;
                    if (rank == lown) {
                        lc_res *res = lr_get(&lr, k, c, err);
                        if (!res) st = QS_ERR_RUNTIME;
                        if (st == QS_OK) st = solve_piece(cs, c, Hf[gk], f, W, o, i, r0, r1, res, err);
                        continue;
                    }
                    st = lc_alloc(&tmpres, r0, r1 - r0, i, lr.G[k * cs->n + c], err);
                    if (st == QS_OK)
                        st = solve_piece(cs, c, Hf[gk], f, W, o, i, r0, r1, &tmpres, err);
                    if (st == QS_OK) {
                        const size_t nb = piece_bytes(&lr, pc);
                        pbuf[npc - 1] = qs_malloc(nb, err, "packed piece");
                        if (!pbuf[npc - 1]) st = QS_ERR_RUNTIME;
                        else piece_io(&tmpres, &lr, pc, pbuf[npc - 1], 1);
                    }
                    lc_free(&tmpres);
                }
            }
            st = qs_comm_agree(comm, st, err);
            if (st != QS_OK) goto done;
            QS_CHECK(exchange_pieces(comm, pcs, npc, &lr, l, pbuf, err));
            for (int i = 0; i < npc; ++i) {
                free(pbuf[i]);
                pbuf[i] = NULL;
            }
            if (rank == lown) st = layer_write(ctx, dir, l, &lr, cs, lsel, input_hash, err);
            lr_free(&lr);
            for (int g = 0; g < NGRP; ++g) qs_gptq_factor_free(&fac[g]);
            st = qs_comm_agree(comm, st, err);
            if (st != QS_OK) goto done;
            ++written;
        }
        /* 7. the quantized layer (propagate / allocated candidates, read back from its file)
         * and my chunks pushed through it */
        memcpy(lq.buf, lw.buf, sizeof(float) * (size_t)lw.nfloats);
        st = qs_rundir_path(ctx->rd, rel, path, sizeof(path), err);
        if (st == QS_OK) {
            char names[NLIN][QS_QUANT_NAME_MAX];
            for (int k = 0; k < NLIN; ++k) {
                const int c = lsel ? lsel[k] : cs->propagate;
                snprintf(names[k], sizeof(names[k]), "%s", c >= 0 ? cs->name[c] : "");
            }
            st = qs_weights_apply_recon_lins(&lq, d, path, (const char(*)[QS_QUANT_NAME_MAX])names,
                                             err);
        }
        for (int64_t j = 0; j < nloc && st == QS_OK; ++j) {
            const int64_t s0 = (j * P + rank) * CS, ns = S - s0 < CS ? S - s0 : CS;
            st = qs_layer_forward(&lq.w, d, X + j * CS * T * Hd, (int)ns, (int)T, &ws, NULL,
                                  err);
        }
        *busy += qs_log_now() - t0;
        st = qs_comm_agree(comm, st, err);
        if (st != QS_OK) goto done;
        if (l >= l0) qs_log_info(ctx->log, "reconstruct: %s layer %d done", dir, l);
        if (l >= l0) qs_progress_step(ctx->progress, l + 1, "layer %d/%d", l + 1, L);
        int want_stop = *ctx->stop || (stop_after > 0 && written >= stop_after);
        if (l >= l0 && l + 1 < L && qs_comm_any(comm, want_stop)) {
            qs_log_info(ctx->log, "reconstruct: stopped after %s layer %d", dir, l);
            st = QS_STOPPED;
            goto done;
        }
    }
done:
    for (int g = 0; g < NGRP; ++g) {
        free(part[g]);
        free(Hf[g]);
        free(acc[g]);
        qs_gptq_factor_free(&fac[g]);
    }
    if (pbuf && pcs)
        for (int64_t i = 0; i < maxjobs * cs->n; ++i) free(pbuf[i]);
    lc_free(&tmpres);
    lr_free(&lr);
    free(X);
    free(tmp);
    free(ids);
    free(ids32);
    free(pcs);
    free(pbuf);
    free(jcost);
    free(jowner);
    free(jlin);
    free(jr0);
    qs_layer_f32_free(&lw);
    qs_layer_f32_free(&lq);
    qs_ends_f32_free(&ends);
    qs_layer_workspace_free(&ws);
    return st;
}

/* ---- the stage ------------------------------------------------------------------------ */

/* Pass 1: reads run/search/allocation.json into sel (L, NLIN) candidate indices (-1 =
 * float) and its SHA-256. *absent = 1 when the file does not exist (nothing else done). */
static qs_status read_allocation(const qs_stage_ctx *ctx, const qs_cands *cs, int L, int *sel,
                                 char hash[65], int *absent, qs_err *err) {
    qs_status st = QS_OK;
    char path[QS_PATH_MAX], *text = NULL;
    size_t n = 0;
    qs_alloc a;
    memset(&a, 0, sizeof(a));
    *absent = 0;
    QS_CHECK(qs_rundir_path(ctx->rd, "search/allocation.json", path, sizeof(path), err));
    if (!qs_path_exists(path)) {
        *absent = 1;
        goto done;
    }
    QS_CHECK(qs_read_file(path, &text, &n, err));
    qs_sha256_hex(text, n, hash);
    QS_CHECK(qs_alloc_from_json(&a, text, path, L, err));
    for (int l = 0; l < L; ++l)
        for (int k = 0; k < NLIN; ++k) {
            const char *name = a.cand[l][k];
            const int c = name[0] ? qs_cands_find(cs, name) : -1;
            if (name[0] && c < 0)
                QS_THROW(err, QS_ERR_INPUT,
                         "%s: layer %d linear %s: '%s' is not a candidate of this config "
                         "(quant.bits x quant.group_size)",
                         path, l, qs_linear_key((qs_linear_kind)k), name);
            sel[l * NLIN + k] = c;
        }
done:
    free(text);
    qs_alloc_free(&a);
    return st;
}

qs_status qs_stage_reconstruct_run(const qs_stage_ctx *ctx, const qs_stage_args *args,
                                   qs_err *err) {
    qs_status st = QS_OK;
    const qs_config *cfg = ctx->cfg;
    const qs_comm *comm = ctx->comm;
    const int rank = comm->rank;
    const int quantized = cfg->reconstruct.inputs == QS_INPUTS_QUANTIZED;
    const int final = args && args->pass == 1;
    const char *dir = final ? "final" : "recon";
    qs_cands *cs = NULL;
    qs_model_dims d;
    qs_manifest want, have;
    qs_tokens tok;
    qs_plan plan;
    int64_t *offs = NULL;
    int *sel = NULL, alloc_absent = 0;
    char *text = NULL, input_hash[65] = {0}, alloc_hash[65] = {0}, recon_hash[65] = {0};
    char path[QS_PATH_MAX];
    double busy = 0.0;
    memset(&have, 0, sizeof(have));
    memset(&tok, 0, sizeof(tok));
    memset(&plan, 0, sizeof(plan));
    qs_manifest_init(&want, dir, ctx->config_hash);
    openblas_set_num_threads(1);
    if (args && args->pass != 0 && args->pass != 1) {
        st = QS_FAIL(err, QS_ERR_INTERNAL, "reconstruct: pass %d does not exist", args->pass);
        goto done;
    }

    /* 1. inputs on every rank, agreed before anything blocks */
    qs_model_dims_from_hf(&d, &ctx->model->hf);
    d.nlayers = ctx->model->hf.num_hidden_layers;
    const int L = (int)d.nlayers;
    cs = qs_malloc(sizeof(*cs), err, "candidates");
    st = cs ? qs_model_dims_check(&d, err) : QS_ERR_RUNTIME;
    if (st == QS_OK) st = qs_cands_from_config(cfg, cs, err);
    if (st == QS_OK) st = qs_cands_choose_propagate(cfg, ctx->model, &d, cs, err);
    if (st == QS_OK && final) {
        sel = qs_malloc(sizeof(int) * (size_t)L * NLIN, err, "allocation");
        st = sel ? read_allocation(ctx, cs, L, sel, alloc_hash, &alloc_absent, err)
                 : QS_ERR_RUNTIME;
        if (st == QS_OK && alloc_absent) {
            st = qs_rundir_path(ctx->rd, "search/allocation.json", path, sizeof(path), err);
            if (st == QS_OK)
                st = QS_FAIL(err, QS_ERR_INPUT, "%s: missing; run the search stage first", path);
        }
    }
    if (st == QS_OK && final && !quantized) {
        /* float inputs: recon/ already holds the final results (same Hessians) */
        st = qs_rundir_path(ctx->rd, "recon/manifest.json", path, sizeof(path), err);
        if (st == QS_OK && !qs_path_exists(path))
            st = QS_FAIL(err, QS_ERR_INPUT, "%s: missing; run reconstruct before the final pass",
                         path);
        size_t n = 0;
        if (st == QS_OK) st = qs_read_file(path, &text, &n, err);
        if (st == QS_OK) qs_sha256_hex(text, n, recon_hash);
        free(text);
        text = NULL;
    }
    if (st == QS_OK && !quantized) {
        /* input: the calibrate stage's manifest (names every Hessian file's checksum) */
        st = qs_rundir_path(ctx->rd, "calib/manifest.json", path, sizeof(path), err);
        if (st == QS_OK && !qs_path_exists(path))
            st = QS_FAIL(err, QS_ERR_INPUT, "%s: missing; run calibrate before reconstruct",
                         path);
        size_t n = 0;
        if (st == QS_OK) st = qs_read_file(path, &text, &n, err);
        if (st == QS_OK) qs_sha256_hex(text, n, input_hash);
    } else if (st == QS_OK) {
        const int64_t T = cfg->calib.seqlen, S = cfg->calib.nsamples;
        if (!cfg->calib.tokens || !cfg->calib.tokens[0])
            st = QS_FAIL(err, QS_ERR_INPUT,
                         "calib.tokens: reconstruct.inputs quantized needs calibration tokens");
        if (st == QS_OK && (T <= 0 || S <= 0 || cfg->calib.chunk_samples <= 0))
            st = QS_FAIL(err, QS_ERR_INPUT,
                         "calib: nsamples, seqlen and chunk_samples must be positive");
        if (st == QS_OK) st = qs_tokens_open(&tok, cfg->calib.tokens, d.vocab, err);
        if (st == QS_OK) {
            offs = qs_malloc(sizeof(int64_t) * (size_t)S, err, "window offsets");
            if (!offs) st = QS_ERR_RUNTIME;
        }
        if (st == QS_OK)
            st = qs_tokens_windows(&tok, cfg->calib.sampling, S, T, cfg->calib.seed,
                                   cfg->calib.offsets_file, offs, err);
        if (st == QS_OK) windows_hash(&tok, offs, S, T, input_hash);
        if (st == QS_OK) st = qs_rundir_path(ctx->rd, "plan/plan.json", path, sizeof(path), err);
        if (st == QS_OK) st = qs_read_file(path, &text, NULL, err);
        if (st == QS_OK) st = qs_plan_from_json(&plan, text, path, err);
        if (st == QS_OK && (plan.nranks != comm->size || plan.nlayers != L))
            st = QS_FAIL(err, QS_ERR_INPUT, "%s: plan for %d ranks / %d layers, run has %d / %d",
                         path, plan.nranks, plan.nlayers, comm->size, L);
    }
    st = qs_comm_agree(comm, st, err);
    if (st != QS_OK) goto done;

    /* 2. skip when the manifest matches (rank 0 decides) */
    {
        int matches = 0;
        st = qs_manifest_add_input(&want, "model", ctx->model_hash, err);
        if (st == QS_OK)
            st = qs_manifest_add_input(&want, quantized ? "windows" : "calib", input_hash, err);
        if (st == QS_OK && final) st = qs_manifest_add_input(&want, "allocation", alloc_hash, err);
        if (st == QS_OK && final && !quantized)
            st = qs_manifest_add_input(&want, "recon", recon_hash, err);
        if (st == QS_OK && rank == 0) {
            int found = 0;
            st = qs_manifest_read(&have, ctx->rd, dir, &found, err);
            if (st == QS_OK && found) st = qs_manifest_check(&have, &want, ctx->rd, &matches, err);
        }
        st = qs_comm_agree(comm, st, err);
        if (st != QS_OK) goto done;
        qs_comm_bcast(comm, &matches, sizeof(matches), 0);
        if (matches) {
            qs_log_info(ctx->log, "reconstruct%s: up to date, skipped", final ? "-final" : "");
            goto done;
        }
    }
    if (final && !quantized) {
        /* float inputs: the measured results are the final ones (eval and the writers read
         * recon/); final/manifest.json records the allocation and recon/ it refers to */
        if (rank == 0) st = qs_rundir_mkdir(ctx->rd, "final", err);
        if (st == QS_OK && rank == 0) st = qs_manifest_write(&want, ctx->rd, err);
        st = qs_comm_agree(comm, st, err);
        if (st == QS_OK)
            qs_log_info(ctx->log, "reconstruct-final: inputs float, results are recon/'s");
        goto done;
    }
    if (final) {
        /* a layer file of the final pass depends on the windows and the allocation */
        char both[130];
        snprintf(both, sizeof(both), "%s%s", input_hash, alloc_hash);
        qs_sha256_hex(both, 128, input_hash);
    }

    /* 3. resume point: the first layer without a finished file of this run */
    int l0 = 0;
    if (rank == 0) {
        st = qs_rundir_mkdir(ctx->rd, dir, err);
        while (st == QS_OK && l0 < L && layer_done(ctx, dir, l0, input_hash)) ++l0;
    }
    st = qs_comm_agree(comm, st, err);
    if (st != QS_OK) goto done;
    qs_comm_bcast(comm, &l0, sizeof(l0), 0);
    qs_log_info(ctx->log,
                "reconstruct%s: inputs %s, method %s, %d candidate(s) (propagate %s), %s layer "
                "%d of %d",
                final ? "-final" : "", quantized ? "quantized" : "float",
                cs->gptq ? "gptq" : "rtn", cs->n,
                final ? "the allocation" : cs->name[cs->propagate],
                l0 > 0 ? "resuming at" : "starting at", l0, L);

    /* 4. the work (peak RSS measured from here) */
    qs_log_peak_rss_reset();
    const long long start_rss = qs_log_peak_rss();
    const double t_work = qs_log_now();
    qs_progress_begin(ctx->progress, L, l0);
    if (quantized)
        st = run_quantized(ctx, &d, cs, sel, dir, l0, &tok, offs, &plan, input_hash, &busy, err);
    else
        st = run_float(ctx, &d, cs, l0, input_hash, &busy, err);
    if (st != QS_OK && st != QS_STOPPED) goto done;
    if (st == QS_OK) rss_report(ctx, dir, quantized ? &plan : NULL, start_rss, qs_log_now() - t_work);
    {
        qs_err e2 = {0};
        if (report_busy(ctx, busy, &e2) != QS_OK) qs_comm_abort(comm, &e2);
        if (ctx->busy) *ctx->busy += busy;
    }
    if (st != QS_OK) goto done;

    /* 5. manifest last */
    if (rank == 0) st = write_manifest(ctx, dir, &want, L, err);
    st = qs_comm_agree(comm, st, err);
done:
    free(cs);
    free(sel);
    free(offs);
    free(text);
    qs_tokens_close(&tok);
    qs_plan_free(&plan);
    qs_manifest_free(&want);
    qs_manifest_free(&have);
    return st;
}
