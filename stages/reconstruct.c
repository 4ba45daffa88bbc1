/* reconstruct.c (stage): quantizes every linear of every layer with every candidate of the
 * config (lib/candidates.h, method gptq or rtn) and records per linear and candidate the
 * codes/scales/zeros/g_idx, the error tr(dW H dW^T), its relative value, the error RTN
 * would have under the same H, the exact GPTQ payload bytes, the damping record and whether
 * serving kernels can load the shape. Output: run/recon/layer-NNN.h5 per layer, one unit
 * each, written by one rank (lib/recon_layer.h; docs/reconstruct.md).
 *
 * Two modes (reconstruct.inputs):
 *  - float: Hessians from run/calib/layer-NNN.h5. Jobs are (layer, Hessian group): one
 *    qs_gptq_prepare per Hessian serves its linears and all candidates. The layers to do
 *    run in batches of nranks layers; a batch's jobs are balanced over all ranks
 *    (qs_partition_jobs), pieces go to the layer's writer (its index in the batch % nranks).
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
 *    pushes its chunks through the quantized layer. A layer whose unit is reused (verified by
 *    the driver) is only read back and propagated.
 * Final pass (qs_stage_reconstruct_final, after search): run/search/allocation.json names
 * one candidate per linear ("" = float). Quantized inputs: the sequential process above
 * with each linear's allocated candidate only, feeding the next layer -> run/final/
 * layer-NNN.h5 (one candidate per linear, tables (7, 1); inputs include the allocation's
 * SHA-256). Float inputs: the measured recon/ results are the final ones; the pass has no
 * units (its manifest records recon/'s manifest and the allocation).
 * After each layer file a pass solves, rank 0 reads the file's GPTQ record back
 * (lib/recon_notes.h) and logs one warning line when it has dead input columns, raised
 * damping or the fp64 fallback (the report shows the same facts as a table).
 * Bytes never depend on the rank count: GPTQ and the error run on fixed row tiles of
 * quant.row_block rows, Hessian partials are added in chunk order, per-row values are summed
 * in row order. The stop flag is combined at batch / layer boundaries (QS_STOPPED). Test
 * knob: env QS_TEST_STOP_AFTER_LAYERS=n raises the stop flag once n layers were written by
 * this process.
 */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "candidates.h"
#include "common.h"
#include "h5store.h"
#include "hessian.h"
#include "kernels.h"
#include "layer_plan.h"
#include "pack.h"
#include "partition.h"
#include "quant.h"
#include "recon_layer.h"
#include "recon_notes.h"
#include "sha256.h"
#include "weights.h"

#define NLIN QS_LIN_COUNT
#define NGRP QS_GROUP_COUNT
#define SOLVE_BATCH 4 /* pieces per thread in flight on a rank that is not the writer */

static const char *const GROUP_NAMES[NGRP] = {"qkv", "o", "gate_up", "down"};

/* What open found (both passes, both modes). */
typedef struct recon_state {
    int final;                  /* pass 1 */
    int quantized;              /* reconstruct.inputs quantized */
    qs_model_dims d;
    qs_cands cs;
    qs_stage_windows win;       /* quantized inputs */
    qs_plan plan;               /* quantized inputs */
    int *sel;                   /* (L, NLIN) final pass: candidate index per linear, -1 float */
    char input_hash[65];        /* recorded in every layer file (meta/input_hash) */
    double busy;
} recon_state;

static int env_stop_after(void) { return qs_stage_stop_after("QS_TEST_STOP_AFTER_LAYERS"); }

/* The writer's unit: the layer file, recorded once committed. */
static qs_status layer_finish(const qs_stage_ctx *ctx, const recon_state *s, int layer,
                              qs_recon_layer *lr, const int *sel, qs_err *err) {
    char rel[64];
    const char *rels[1] = {rel};
    const qs_recon_file f = {ctx->rd, ctx->dir, ctx->config_hash, s->input_hash, s->quantized};
    qs_status st = qs_recon_layer_write(&f, layer, lr, &s->cs, sel, err);
    qs_rundir_layer_rel(rel, sizeof(rel), ctx->dir, layer);
    if (st == QS_OK) st = qs_stage_unit_done(ctx, layer, rels, 1, err);
    return st;
}

/* Rank 0: one warning line when layer l's file, just written by this pass, records dead
 * input columns, raised damping or the fp64 fallback (recon_notes.h). The facts are read
 * back from the file, so the line is the same whichever rank solved or wrote the layer, and
 * no other rank prints it (not even with --verbose). RTN runs have no factorization. */
static void warn_layer(const qs_stage_ctx *ctx, const recon_state *s, int l) {
    if (ctx->comm->rank != 0 || !s->cs.gptq || (ctx->log && ctx->log->quiet)) return;
    const char *label = s->final ? "reconstruct-final" : "reconstruct";
    char rel[64], path[QS_PATH_MAX], line[900];
    qs_recon_notes n;
    qs_err e = {0};
    qs_rundir_layer_rel(rel, sizeof(rel), ctx->dir, l);
    if (qs_rundir_path(ctx->rd, rel, path, sizeof(path), &e) != QS_OK ||
        qs_recon_notes_read(path, &n, &e) != QS_OK) {
        qs_log_info(ctx->log, "warning: %s: layer %d: cannot read its GPTQ record: %s", label,
                    l, e.msg);
        return;
    }
    if (qs_recon_notes_line(&n, ctx->cfg->quant.damp, line, sizeof(line)) > 0)
        qs_log_info(ctx->log, "warning: %s: layer %d: %s", label, l, line);
}

/* ---- inputs: float ------------------------------------------------------------------- */

/* Solves job (layer, group) on this rank: Hessian from calib/layer-NNN.h5, one prepare,
 * every linear of the group x every candidate over all rows. */
static qs_status solve_group_job(const qs_stage_ctx *ctx, const qs_model_dims *d,
                                 const qs_cands *cs, int layer, int g, qs_recon_layer *lr,
                                 qs_err *err) {
    qs_status st = QS_OK;
    qs_h5 h;
    qs_gptq_factor f;
    float *H = NULL, *W = NULL;
    qs_recon_task *tasks = NULL; /* (ncand * row blocks) one linear's pieces */
    char rel[64], path[QS_PATH_MAX], name[64];
    memset(&h, 0, sizeof(h));
    memset(&f, 0, sizeof(f));
    int64_t n = g == QS_GROUP_O ? d->heads * d->head_dim
                                : (g == QS_GROUP_DOWN ? d->inter : d->hidden);
    qs_rundir_layer_rel(rel, sizeof(rel), QS_DIR_CALIB, layer);
    QS_CHECK(qs_rundir_path(ctx->rd, rel, path, sizeof(path), err));
    QS_CHECK(qs_h5_open(&h, path, err));
    snprintf(name, sizeof(name), "%s/hessian", GROUP_NAMES[g]);
    QS_CHECK(qs_h5_read_n(&h, name, QS_H5_F32, n * n, (void **)&H, err)); // (n, n)
    qs_h5_abandon(&h);
    if (cs->gptq) {
        st = qs_gptq_prepare_pool(ctx->pool, H, n, &cs->fp, &f, err);
        if (st != QS_OK) qs_err_prefix(err, "layer %d, %s inputs", layer,
                                       GROUP_NAMES[g]);
        QS_CHECK(st);
    }
    for (int k = 0; k < NLIN; ++k) {
        if ((int)qs_linear_group_of((qs_linear_kind)k) != g) continue;
        const int64_t d_out = lr->d_out[k], d_in = lr->d_in[k];
        free(W);
        W = qs_malloc(sizeof(float) * (size_t)(d_out * d_in), err, "linear weight");
        if (!W) QS_THROW(err, QS_ERR_RUNTIME, "out of memory (weights)");
        char tname[256];
        qs_linear_tensor_name(tname, sizeof(tname), layer, (qs_linear_kind)k, 0);
        QS_CHECK(qs_weights_read(ctx->model, tname, d_out, d_in, W, err));
        /* pieces of row_block rows (the same bytes as whole linears: quant.h), on the pool */
        const int64_t rb = ctx->cfg->quant.row_block, nrb = (d_out + rb - 1) / rb;
        free(tasks);
        tasks = qs_malloc(sizeof(qs_recon_task) * (size_t)(cs->n * nrb), err, "solve tasks");
        if (!tasks) QS_THROW(err, QS_ERR_RUNTIME, "out of memory (solve tasks)");
        int64_t nt = 0;
        for (int c = 0; c < cs->n; ++c) {
            qs_recon_lin *o = qs_recon_layer_get(lr, k, c, err);
            if (!o) QS_THROW(err, QS_ERR_RUNTIME, "out of memory (layer results)");
            for (int64_t r0 = 0; r0 < d_out; r0 += rb)
                tasks[nt++] = (qs_recon_task){c, H, cs->gptq ? &f : NULL, W, d_out, d_in, r0,
                                              r0 + rb < d_out ? r0 + rb : d_out, o, c == 0};
        }
        QS_CHECK(qs_recon_solve_pieces(ctx->pool, cs, tasks, nt, err));
    }
done:
    qs_h5_abandon(&h);
    qs_gptq_factor_free(&f);
    free(H);
    free(W);
    free(tasks);
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

/* One batch of up to nranks layers to do (layers[0..nl)): jobs balanced over all ranks,
 * pieces to each layer's writer (rank i % nranks for the batch's i-th layer). */
static qs_status float_batch(const qs_stage_ctx *ctx, recon_state *s, const int *layers,
                             int nl, qs_recon_layer *lrs, double *cost, int *owner,
                             qs_recon_piece *pcs, int *written, qs_err *err) {
    qs_status st = QS_OK;
    const qs_comm *comm = ctx->comm;
    const qs_cands *cs = &s->cs;
    const int P = comm->size, nj = nl * NGRP;
    int npc = 0;
    for (int j = 0; j < nj; ++j) cost[j] = group_cost(&s->d, cs, j % NGRP);
    QS_CHECK(qs_partition_jobs(cost, nj, P, owner, err));
    for (int j = 0; j < nj; ++j) {
        const int g = j % NGRP;
        for (int k = 0; k < NLIN; ++k) {
            if ((int)qs_linear_group_of((qs_linear_kind)k) != g) continue;
            int64_t o, i;
            qs_linear_shape(&s->d, (qs_linear_kind)k, &o, &i);
            for (int c = 0; c < cs->n; ++c)
                pcs[npc++] = (qs_recon_piece){j / NGRP, k, c, 0, o, owner[j], (j / NGRP) % P};
        }
    }
    /* compute my jobs */
    double t0 = qs_log_now();
    for (int i = 0; i < nl && st == QS_OK; ++i) st = qs_recon_layer_init(&lrs[i], &s->d, cs, err);
    for (int j = 0; j < nj && st == QS_OK; ++j)
        if (owner[j] == comm->rank)
            st = solve_group_job(ctx, &s->d, cs, layers[j / NGRP], j % NGRP, &lrs[j / NGRP], err);
    s->busy += qs_log_now() - t0;
    st = qs_comm_agree(comm, st, err);
    if (st != QS_OK) goto done;
    QS_CHECK(qs_recon_exchange(comm, pcs, npc, lrs, 0, NULL, err));
    for (int i = 0; i < nl && st == QS_OK; ++i)
        if (i % P == comm->rank) {
            st = layer_finish(ctx, s, layers[i], &lrs[i], NULL, err);
            if (st == QS_OK) ++*written;
        }
    st = qs_comm_agree(comm, st, err);
done:
    for (int i = 0; i < nl; ++i) qs_recon_layer_free(&lrs[i]);
    return st;
}

static qs_status run_float(const qs_stage_ctx *ctx, recon_state *s, qs_err *err) {
    qs_status st = QS_OK;
    const qs_comm *comm = ctx->comm;
    const int L = (int)s->d.nlayers, P = comm->size, stop_after = env_stop_after();
    qs_recon_layer *lrs = NULL;
    qs_recon_piece *pcs = NULL;
    double *cost = NULL;
    int *owner = NULL, *todo = NULL, written = 0, ntodo = 0;
    lrs = qs_calloc((size_t)P, sizeof(qs_recon_layer), err, "batch results");
    cost = qs_malloc(sizeof(double) * (size_t)(P * NGRP), err, "job costs");
    owner = qs_malloc(sizeof(int) * (size_t)(P * NGRP), err, "job owners");
    pcs = qs_malloc(sizeof(qs_recon_piece) * (size_t)(P * NLIN * s->cs.n), err, "pieces");
    todo = qs_malloc(sizeof(int) * (size_t)L, err, "layers to do");
    if (!lrs || !cost || !owner || !pcs || !todo) st = QS_ERR_RUNTIME;
    st = qs_comm_agree(comm, st, err);
    if (st != QS_OK) goto done;
    for (int l = 0; l < L; ++l)
        if (ctx->units->todo[l]) todo[ntodo++] = l;
    for (int b0 = 0; b0 < ntodo; b0 += P) {
        const int nl = ntodo - b0 < P ? ntodo - b0 : P;
        QS_CHECK(float_batch(ctx, s, todo + b0, nl, lrs, cost, owner, pcs, &written, err));
        for (int i = 0; i < nl; ++i) warn_layer(ctx, s, todo[b0 + i]);
        qs_log_info(ctx->log, "reconstruct: layers %d..%d done", todo[b0], todo[b0 + nl - 1]);
        qs_progress_step(ctx->progress, L - ntodo + b0 + nl, "layer %d/%d", todo[b0 + nl - 1] + 1,
                         L);
        int want_stop = *ctx->stop || (stop_after > 0 && written >= stop_after);
        if (b0 + nl < ntodo && qs_comm_any(comm, want_stop)) {
            qs_log_info(ctx->log, "reconstruct: stopped after layer %d", todo[b0 + nl - 1]);
            st = QS_STOPPED;
            goto done;
        }
    }
done:
    if (lrs)
        for (int i = 0; i < P; ++i) qs_recon_layer_free(&lrs[i]);
    free(lrs);
    free(cost);
    free(owner);
    free(pcs);
    free(todo);
    return st;
}

/* ---- inputs: quantized (sequential) ------------------------------------------------------ */

/* Hook of the Hessian pass: the chunk's partial of each group into its slot. */
typedef struct part_ctx {
    float *part[NGRP]; /* (d_g, d_g) tiles of the current chunk */
    int64_t dg[NGRP];
    qs_pool *pool;     /* borrowed, may be NULL: the partials' blocks */
} part_ctx;

static qs_status part_hook(void *vctx, qs_linear_group g, const float *x, int64_t rows,
                           int64_t dd, qs_err *err) {
    part_ctx *p = vctx;
    if (dd != p->dg[g])
        return QS_FAIL(err, QS_ERR_INTERNAL, "hook width %lld != %lld", (long long)dd,
                       (long long)p->dg[g]);
    return qs_hess_partial_pool(p->pool, x, rows, dd, p->part[g], err);
}

/* SHA-256 of the chosen windows: seqlen, then every window's token ids (u32 LE); the
 * same value calibrate records. */static qs_status bcast_factor(const qs_comm *comm, qs_gptq_factor *f, int64_t n, int act_order,
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
/* One rank's side of the sequential pass: its chunks' activations, the layer in float and
 * quantized form, the Hessian buffers, the factors and the solve's job tables. */
typedef struct seq_rank {
    const qs_stage_ctx *ctx;
    recon_state *s;
    int64_t T, S, CS, nchunks, nrounds, Hd;
    int64_t nloc;               /* chunks on this rank: c = j * P + rank, j < nloc */
    int64_t dg[NGRP];           /* input width per Hessian group */
    qs_layer_workspace ws;
    qs_layer_f32 lw, lq;        /* the layer (float) and its quantized copy */
    qs_gptq_factor fac[NGRP];
    qs_recon_layer lr;          /* the writer's whole layer */
    float *X;                   /* (rows of my chunks, hidden) activations */
    float *tmp;                 /* (CS * T, hidden) one chunk's copy */
    float *part[NGRP];          /* (d_g, d_g) one chunk's partial */
    float *Hf[NGRP];            /* (d_g, d_g) the finalized Hessian */
    double *acc[NGRP];          /* (d_g, d_g) rank 0's f64 accumulators */
    qs_recon_piece *pcs;        /* (maxjobs * ncand) */
    unsigned char **pbuf;       /* (maxjobs * ncand) packed pieces of a non-writer */
    double *jcost;              /* (maxjobs) */
    int *jowner, *jlin;         /* (maxjobs) */
    int64_t *jr0;               /* (maxjobs) */
    int64_t maxjobs;
} seq_rank;

static void seq_free(seq_rank *q) {
    for (int g = 0; g < NGRP; ++g) {
        free(q->part[g]);
        free(q->Hf[g]);
        free(q->acc[g]);
        qs_gptq_factor_free(&q->fac[g]);
    }
    if (q->pbuf)
        for (int64_t i = 0; i < q->maxjobs * q->s->cs.n; ++i) free(q->pbuf[i]);
    qs_recon_layer_free(&q->lr);
    free(q->X);
    free(q->tmp);
    free(q->pcs);
    free(q->pbuf);
    free(q->jcost);
    free(q->jowner);
    free(q->jlin);
    free(q->jr0);
    qs_layer_f32_free(&q->lw);
    qs_layer_f32_free(&q->lq);
    qs_layer_workspace_free(&q->ws);
}

/* Buffers, then my chunks' activations: the embeddings of my windows. Local. */
static qs_status seq_init(seq_rank *q, qs_err *err) {
    qs_status st = QS_OK;
    const qs_stage_ctx *ctx = q->ctx;
    const qs_model_dims *d = &q->s->d;
    const int rank = ctx->comm->rank, P = ctx->comm->size;
    const qs_stage_windows *w = &q->s->win;
    const int64_t T = q->T, S = q->S, CS = q->CS, Hd = q->Hd, rb = ctx->cfg->quant.row_block;
    const int ncand = q->s->cs.n;
    qs_ends_f32 ends;
    uint32_t *ids = NULL;
    int32_t *ids32 = NULL;
    memset(&ends, 0, sizeof(ends));
    q->dg[QS_GROUP_QKV] = Hd;
    q->dg[QS_GROUP_O] = d->heads * d->head_dim;
    q->dg[QS_GROUP_GATE_UP] = Hd;
    q->dg[QS_GROUP_DOWN] = d->inter;
    q->nloc = rank < q->nchunks ? (q->nchunks - 1 - rank) / P + 1 : 0;
    int64_t rows_loc = 0;
    for (int64_t j = 0; j < q->nloc; ++j) {
        const int64_t s0 = (j * P + rank) * CS;
        rows_loc += (S - s0 < CS ? S - s0 : CS) * T;
    }
    for (int k = 0; k < NLIN; ++k) {
        int64_t o, i;
        qs_linear_shape(d, (qs_linear_kind)k, &o, &i);
        q->maxjobs += (o + rb - 1) / rb;
    }
    q->pcs = qs_malloc(sizeof(qs_recon_piece) * (size_t)(q->maxjobs * ncand), err, "pieces");
    q->pbuf = qs_calloc((size_t)(q->maxjobs * ncand), sizeof(unsigned char *), err,
                        "piece buffers");
    q->jcost = qs_malloc(sizeof(double) * (size_t)q->maxjobs, err, "job costs");
    q->jowner = qs_malloc(sizeof(int) * (size_t)q->maxjobs, err, "job owners");
    q->jlin = qs_malloc(sizeof(int) * (size_t)q->maxjobs, err, "job linears");
    q->jr0 = qs_malloc(sizeof(int64_t) * (size_t)q->maxjobs, err, "job rows");
    q->X = qs_malloc(sizeof(float) * (size_t)((rows_loc > 0 ? rows_loc : 1) * Hd), err,
                     "activations");
    q->tmp = qs_malloc(sizeof(float) * (size_t)(CS * T * Hd), err, "chunk buffer");
    ids = qs_malloc(sizeof(uint32_t) * (size_t)(CS * T), err, "chunk tokens");
    ids32 = qs_malloc(sizeof(int32_t) * (size_t)T, err, "window tokens");
    if (!q->pcs || !q->pbuf || !q->jcost || !q->jowner || !q->jlin || !q->jr0 || !q->X ||
        !q->tmp || !ids || !ids32)
        QS_THROW(err, QS_ERR_RUNTIME, "out of memory (sequential reconstruct buffers)");
    for (int g = 0; g < NGRP; ++g) {
        /* one chunk's partial (rank 0 also receives the others' into it) and the final H */
        const size_t n2 = (size_t)(q->dg[g] * q->dg[g]);
        q->part[g] = qs_malloc(sizeof(float) * n2, err, "Hessian partial");
        q->Hf[g] = qs_malloc(sizeof(float) * n2, err, "Hessian");
        if (rank == 0) q->acc[g] = qs_malloc(sizeof(double) * n2, err, "Hessian accumulator");
        if (!q->part[g] || !q->Hf[g] || (rank == 0 && !q->acc[g])) QS_THROW(err, QS_ERR_RUNTIME, "out of memory (Hessians)");
    }
    QS_CHECK(qs_layer_workspace_init(&q->ws, d, (int)CS, (int)T, err));
    QS_CHECK(qs_layer_workspace_set_pool(&q->ws, ctx->pool, err));
    QS_CHECK(qs_layer_f32_alloc(d, &q->lw, err));
    QS_CHECK(qs_layer_f32_alloc(d, &q->lq, err));
    if (q->nloc > 0) QS_CHECK(qs_weights_load_ends(ctx->model, d, 1, 0, &ends, err));
    for (int64_t j = 0; j < q->nloc; ++j) {
        const int64_t s0 = (j * P + rank) * CS, ns = S - s0 < CS ? S - s0 : CS;
        for (int64_t s = 0; s < ns; ++s) {
            qs_tokens_copy(&w->tok, w->offs[s0 + s], T, ids32);
            for (int64_t t = 0; t < T; ++t) ids[s * T + t] = (uint32_t)ids32[t];
        }
        QS_CHECK(qs_embed_gather(ends.embed, d->vocab, Hd, ids, ns * T, q->X + j * CS * T * Hd,
                                 err));
    }
done:
    qs_ends_f32_free(&ends);
    free(ids);
    free(ids32);
    return st;
}

/* Layer l's Hessians on the quantized inputs: rounds of P chunks (round k: chunk k * P + r on
 * rank r, float layer, partials by the hook); after each round rank 0 adds the round's
 * partials in chunk order into its f64 accumulators; then H is finalized on rank 0 and
 * broadcast (into q->Hf). Collective. */
static qs_status seq_hessians(seq_rank *q, int l, qs_err *err) {
    qs_status st = QS_OK;
    const qs_comm *comm = q->ctx->comm;
    const int rank = comm->rank, P = comm->size;
    part_ctx pctx;
    pctx.pool = q->ctx->pool;
    qs_layer_hooks hooks = {part_hook, &pctx};
    for (int g = 0; g < NGRP; ++g) {
        pctx.dg[g] = q->dg[g];
        pctx.part[g] = q->part[g];
        if (rank == 0) /* (its tasks cannot fail) */
            (void)qs_pool_zero(q->ctx->pool, q->acc[g],
                               sizeof(double) * (size_t)(q->dg[g] * q->dg[g]), err);
    }
    for (int64_t k = 0; k < q->nrounds; ++k) {
        const int64_t c = k * P + rank;
        if (c < q->nchunks) {
            const int64_t s0 = c * q->CS, ns = q->S - s0 < q->CS ? q->S - s0 : q->CS;
            memcpy(q->tmp, q->X + k * q->CS * q->T * q->Hd,
                   sizeof(float) * (size_t)(ns * q->T * q->Hd));
            st = qs_layer_forward(&q->lw.w, &q->s->d, l, q->tmp, (int)ns, (int)q->T, &q->ws,
                                  &hooks, err);
        }
        st = qs_comm_agree(comm, st, err);
        if (st != QS_OK) return st;
        const int64_t left = q->nchunks - k * P;
        for (int g = 0; g < NGRP; ++g) {
            qs_stage_part part = {q->dg[g], q->part[g], NULL, NULL};
            const qs_stage_sums sums = {q->acc[g], NULL, NULL};
            /* (its tasks cannot fail) */
            (void)qs_stage_round_add(comm, left < P ? (int)left : P, q->ctx->pool, &part, &sums,
                                     NULL, err);
        }
    }
    for (int g = 0; g < NGRP; ++g) {
        const int64_t n2 = q->dg[g] * q->dg[g];
        /* (its tasks cannot fail) */
        if (rank == 0)
            (void)qs_hess_finalize_f32_pool(q->ctx->pool, q->acc[g], q->dg[g], q->S * q->T,
                                            q->Hf[g], err);
        qs_comm_bcast(comm, q->Hf[g], sizeof(float) * (size_t)n2, 0);
    }
    return QS_OK;
}

/* One factor per group of `layer` that has a quantized linear (need[g]), prepared by rank
 * g % P (on its pool) and broadcast. Collective. */
static qs_status seq_factors(seq_rank *q, int layer, const int *need, qs_err *err) {
    qs_status st = QS_OK;
    const qs_comm *comm = q->ctx->comm;
    const qs_cands *cs = &q->s->cs;
    if (!cs->gptq) return QS_OK;
    for (int g = 0; g < NGRP && st == QS_OK; ++g)
        if (need[g] && g % comm->size == comm->rank) {
            st = qs_gptq_prepare_pool(q->ctx->pool, q->Hf[g], q->dg[g], &cs->fp, &q->fac[g],
                                      err);
            if (st != QS_OK) qs_err_prefix(err, "layer %d, %s inputs", layer,
                                           GROUP_NAMES[g]);
        }
    st = qs_comm_agree(comm, st, err);
    if (st != QS_OK) return st;
    for (int g = 0; g < NGRP; ++g)
        if (need[g]) bcast_factor(comm, &q->fac[g], q->dg[g], cs->fp.act_order, g % comm->size, err);
    return QS_OK;
}

/* My pieces of q->pcs[0..npc) solved on the pool: the writer's into its whole layer (one
 * run), another rank's in batches of SOLVE_BATCH per thread, each piece packed into
 * q->pbuf when its batch ends. Local. */
static qs_status seq_solve_mine(seq_rank *q, int npc, int lown, const int *cfirst,
                                qs_err *err) {
    qs_status st = QS_OK;
    const qs_stage_ctx *ctx = q->ctx;
    const qs_cands *cs = &q->s->cs;
    const int rank = ctx->comm->rank, writer = rank == lown;
    const int batch = writer ? (npc > 0 ? npc : 1) : SOLVE_BATCH * qs_pool_threads(ctx->pool);
    qs_recon_task *tasks = qs_malloc(sizeof(qs_recon_task) * (size_t)batch, err, "solve tasks");
    /* (batch) a non-writer's pieces in flight: their results and piece indices */
    qs_recon_lin *tmp = writer ? NULL : qs_calloc((size_t)batch, sizeof(qs_recon_lin), err,
                                                  "pieces in flight");
    int *which = tmp ? (int *)qs_malloc(sizeof(int) * (size_t)batch, err, "pieces") : NULL;
    int nt = 0;
    if (!tasks || (!writer && (!tmp || !which))) QS_THROW(err, QS_ERR_RUNTIME, "out of memory");
    for (int p = 0; p < npc;) {
        for (nt = 0; p < npc && nt < batch; ++p) {
            const qs_recon_piece *pc = &q->pcs[p];
            if (pc->owner != rank) continue;
            int64_t o, i;
            qs_linear_shape(&q->s->d, (qs_linear_kind)pc->lin, &o, &i);
            const int gk = (int)qs_linear_group_of((qs_linear_kind)pc->lin);
            qs_recon_lin *res = writer ? qs_recon_layer_get(&q->lr, pc->lin, pc->cand, err)
                                       : &tmp[nt];
            if (!res) QS_THROW(err, QS_ERR_RUNTIME, "out of memory (layer results)");
            if (!writer) {
                QS_CHECK(qs_recon_layer_alloc_rows(&q->lr, pc->lin, pc->cand, res, pc->r0,
                                                   pc->r1 - pc->r0, err));
                which[nt] = p;
            }
            tasks[nt++] = (qs_recon_task){pc->cand, q->Hf[gk], cs->gptq ? &q->fac[gk] : NULL,
                                          qs_linear_weight(&q->lw.w, (qs_linear_kind)pc->lin),
                                          o, i, pc->r0, pc->r1, res,
                                          pc->cand == cfirst[pc->lin]};
        }
        QS_CHECK(qs_recon_solve_pieces(ctx->pool, cs, tasks, nt, err));
        for (int t = 0; t < nt && !writer; ++t) {
            const qs_recon_piece *pc = &q->pcs[which[t]];
            const size_t nb = qs_recon_piece_bytes(&q->lr, pc);
            q->pbuf[which[t]] = qs_malloc(nb, err, "packed piece");
            if (!q->pbuf[which[t]]) QS_THROW(err, QS_ERR_RUNTIME, "out of memory (pieces)");
            qs_recon_piece_io(&tmp[t], &q->lr, pc, q->pbuf[which[t]], 1);
            qs_recon_lin_free(&tmp[t]);
        }
    }
done:
    for (int t = 0; tmp && t < batch; ++t) qs_recon_lin_free(&tmp[t]);
    free(tmp);
    free(which);
    free(tasks);
    return st;
}

/* The solve of layer l: jobs of (linear, row block) with the linear's candidates
 * [cfirst[k], cend[k]) balanced over all ranks; the writer (the layer's plan owner) holds
 * the whole layer, any other rank packs each piece as it is computed. Then the pieces move
 * to the writer, which writes the layer file. Collective. */
static qs_status seq_solve(seq_rank *q, int l, const int *cfirst, const int *cend,
                           const int *lsel, qs_err *err) {
    qs_status st = QS_OK;
    const qs_stage_ctx *ctx = q->ctx;
    const qs_comm *comm = ctx->comm;
    const qs_cands *cs = &q->s->cs;
    const int rank = comm->rank, lown = q->s->plan.layer_rank[l];
    const int64_t rb = ctx->cfg->quant.row_block;
    int nj = 0, npc = 0;
    for (int k = 0; k < NLIN; ++k) {
        int64_t o, i;
        qs_linear_shape(&q->s->d, (qs_linear_kind)k, &o, &i);
        if (cend[k] <= cfirst[k]) continue;
        for (int64_t r0 = 0; r0 < o; r0 += rb) {
            const int64_t r1 = r0 + rb < o ? r0 + rb : o;
            q->jlin[nj] = k;
            q->jr0[nj] = r0;
            q->jcost[nj++] =
                (double)(cend[k] - cfirst[k]) * (double)(r1 - r0) * (double)i * (double)i;
        }
    }
    if (nj > 0) QS_CHECK(qs_partition_jobs(q->jcost, nj, comm->size, q->jowner, err));
    st = qs_recon_layer_init(&q->lr, &q->s->d, cs, err);
    for (int j = 0; j < nj; ++j)
        for (int c = cfirst[q->jlin[j]]; c < cend[q->jlin[j]]; ++c) {
            int64_t o, i;
            qs_linear_shape(&q->s->d, (qs_linear_kind)q->jlin[j], &o, &i);
            const int64_t r0 = q->jr0[j], r1 = r0 + rb < o ? r0 + rb : o;
            q->pcs[npc++] = (qs_recon_piece){l, q->jlin[j], c, r0, r1, q->jowner[j], lown};
        }
    if (st == QS_OK) st = seq_solve_mine(q, npc, lown, cfirst, err);
    st = qs_comm_agree(comm, st, err);
    if (st != QS_OK) goto done;
    QS_CHECK(qs_recon_exchange(comm, q->pcs, npc, &q->lr, l, q->pbuf, err));
    for (int i = 0; i < npc; ++i) {
        free(q->pbuf[i]);
        q->pbuf[i] = NULL;
    }
    if (rank == lown) st = layer_finish(ctx, q->s, l, &q->lr, lsel, err);
    st = qs_comm_agree(comm, st, err);
done:
    qs_recon_layer_free(&q->lr);
    for (int g = 0; g < NGRP; ++g) qs_gptq_factor_free(&q->fac[g]);
    return st;
}

/* The quantized layer l (the propagate or allocated candidates, read back from its file)
 * and my chunks pushed through it. Local. */
static qs_status seq_propagate(seq_rank *q, int l, const int *lsel, qs_err *err) {
    qs_status st = QS_OK;
    const qs_stage_ctx *ctx = q->ctx;
    const qs_cands *cs = &q->s->cs;
    const int rank = ctx->comm->rank, P = ctx->comm->size;
    char rel[64], path[QS_PATH_MAX], names[NLIN][QS_QUANT_NAME_MAX];
    memcpy(q->lq.buf, q->lw.buf, sizeof(float) * (size_t)q->lw.nfloats);
    qs_rundir_layer_rel(rel, sizeof(rel), ctx->dir, l);
    QS_CHECK(qs_rundir_path(ctx->rd, rel, path, sizeof(path), err));
    for (int k = 0; k < NLIN; ++k) {
        const int c = lsel ? lsel[k] : cs->propagate;
        snprintf(names[k], sizeof(names[k]), "%s", c >= 0 ? cs->name[c] : "");
    }
    QS_CHECK(qs_weights_apply_recon_lins(&q->lq, &q->s->d, path,
                                         (const char(*)[QS_QUANT_NAME_MAX])names, err));
    for (int64_t j = 0; j < q->nloc; ++j) {
        const int64_t s0 = (j * P + rank) * q->CS, ns = q->S - s0 < q->CS ? q->S - s0 : q->CS;
        QS_CHECK(qs_layer_forward(&q->lq.w, &q->s->d, l, q->X + j * q->CS * q->T * q->Hd,
                                  (int)ns, (int)q->T, &q->ws, NULL, err));
    }
done:
    return st;
}

/* Final pass, quantized inputs: the last layer whose final results are the measure pass's
 * (-1: none). Up to the first layer whose allocation differs from the propagate candidate
 * (that layer included) the inputs are the measure pass's, hence the Hessians, and the
 * measure pass quantized every candidate under them: the allocated candidates' results
 * are in recon/ bit for bit. QS_NO_SKIP=final (debug knob) solves every layer, as does a
 * run with GGUF candidates. */
static int final_reuse_upto(const recon_state *s) {
    const int L = (int)s->d.nlayers;
    if (!s->final || !s->quantized || qs_stage_no_skip("final")) return -1;
    /* qs_recon_layer_write_from copies integer candidates' codes; GGUF candidates' blocks
     * are not copied yet: runs with GGUF candidates solve every layer of the final pass */
    if (s->cs.ngguf > 0) return -1;
    for (int l = 0; l < L; ++l)
        for (int k = 0; k < NLIN; ++k)
            if (s->sel[l * NLIN + k] != s->cs.propagate) return l;
    return L - 1;
}

/* Final pass, layer l <= final_reuse_upto: its plan owner writes final/layer-NNN.h5 from
 * recon/layer-NNN.h5 (the allocated candidates' datasets and table columns). Collective. */
static qs_status final_copy_layer(const qs_stage_ctx *ctx, const recon_state *s, int l,
                                  qs_err *err) {
    qs_status st = QS_OK;
    if (ctx->comm->rank == s->plan.layer_rank[l]) {
        char rel[64], src[QS_PATH_MAX];
        const char *rels[1] = {rel};
        const qs_recon_file f = {ctx->rd, ctx->dir, ctx->config_hash, s->input_hash, 1};
        qs_rundir_layer_rel(rel, sizeof(rel), QS_DIR_RECON, l);
        st = qs_rundir_path(ctx->rd, rel, src, sizeof(src), err);
        if (st == QS_OK)
            st = qs_recon_layer_write_from(&f, l, src, s->win.hash, &s->d, &s->cs,
                                           s->sel + (size_t)l * NLIN, err);
        qs_rundir_layer_rel(rel, sizeof(rel), ctx->dir, l);
        if (st == QS_OK) st = qs_stage_unit_done(ctx, l, rels, 1, err);
    }
    return qs_comm_agree(ctx->comm, st, err);
}

/* Sequential GPTQ over the layers (both passes). sel NULL: every candidate of every linear,
 * the propagate candidate feeds the next layer (pass 0). s->sel (L, NLIN): layer l's linear
 * k is quantized with candidate sel[l * NLIN + k] only (-1 = stays float) and these
 * candidates feed the next layer (pass 1); the final pass copies the layers up to
 * final_reuse_upto from recon/. Layers whose unit is reused are propagated only, and a
 * layer is propagated only when a later layer is solved (its activations are not needed
 * otherwise): with nothing to solve there is no forward at all. */
static qs_status run_quantized(const qs_stage_ctx *ctx, recon_state *s, qs_err *err) {
    qs_status st = QS_OK;
    const qs_comm *comm = ctx->comm;
    const int L = (int)s->d.nlayers, stop_after = env_stop_after();
    const qs_cands *cs = &s->cs;
    const int reuse = final_reuse_upto(s);
    seq_rank q;
    int written = 0, last_solve = -1, ncopy = 0, ntodo = 0;
    memset(&q, 0, sizeof(q));
    for (int l = 0; l < L; ++l) {
        ntodo += ctx->units->todo[l];
        if (ctx->units->todo[l] && l > reuse) last_solve = l;
        if (ctx->units->todo[l] && l <= reuse) ++ncopy;
    }
    if (ncopy > 0) {
        char why[256];
        if (reuse == L - 1)
            snprintf(why, sizeof(why),
                     "the allocation is the propagate candidate %s on every layer: the "
                     "measure pass's results (recon/) are the final ones, copied",
                     cs->name[cs->propagate]);
        else
            snprintf(why, sizeof(why),
                     "layers 0..%d see the measure pass's inputs (the allocation is the "
                     "propagate candidate %s before layer %d): their results are recon/'s, "
                     "copied",
                     reuse, cs->name[cs->propagate], reuse);
        qs_stage_skipped(ctx, "reconstruct-final", "layer solves", ncopy, ntodo, why);
    }
    q.ctx = ctx;
    q.s = s;
    q.T = s->win.seqlen;
    q.S = s->win.nsamples;
    q.CS = ctx->cfg->calib.chunk_samples;
    q.nchunks = (q.S + q.CS - 1) / q.CS;
    q.nrounds = (q.nchunks + comm->size - 1) / comm->size;
    q.Hd = s->d.hidden;
    if (last_solve >= 0) st = seq_init(&q, err); /* activations only when a layer is solved */
    st = qs_comm_agree(comm, st, err);
    if (st != QS_OK) goto done;
    for (int l = 0; l < L; ++l) {
        const double t0 = qs_log_now();
        const int lown = s->plan.layer_rank[l], todo = ctx->units->todo[l];
        const int copy = l <= reuse, fwd = l < last_solve;
        const int *lsel = s->sel ? s->sel + (size_t)l * NLIN : NULL;
        if (todo && copy) {
            QS_CHECK(final_copy_layer(ctx, s, l, err));
            ++written;
        }
        if ((todo && !copy) || fwd) {
            /* layer l's float weights from its owner to every rank (same layout everywhere) */
            if (comm->rank == lown) {
                qs_layer_f32_free(&q.lw);
                st = qs_weights_load_layer(ctx->model, &s->d, l, &q.lw, err);
            }
            st = qs_comm_agree(comm, st, err);
            if (st != QS_OK) goto done;
            qs_comm_bcast(comm, q.lw.buf, sizeof(float) * (size_t)q.lw.nfloats, lown);
        }
        if (todo && !copy) {
            /* which linears get which candidates: [cfirst, cend) of the candidate list */
            int cfirst[NLIN], cend[NLIN], need[NGRP] = {0};
            for (int k = 0; k < NLIN; ++k) {
                cfirst[k] = lsel ? (lsel[k] >= 0 ? lsel[k] : 0) : 0;
                cend[k] = lsel ? (lsel[k] >= 0 ? lsel[k] + 1 : 0) : cs->n;
                if (cend[k] > cfirst[k]) need[qs_linear_group_of((qs_linear_kind)k)] = 1;
            }
            QS_CHECK(seq_hessians(&q, l, err));
            QS_CHECK(seq_factors(&q, l, need, err));
            QS_CHECK(seq_solve(&q, l, cfirst, cend, lsel, err));
            warn_layer(ctx, s, l);
            ++written;
        }
        if (fwd) st = seq_propagate(&q, l, lsel, err);
        s->busy += qs_log_now() - t0;
        st = qs_comm_agree(comm, st, err);
        if (st != QS_OK) goto done;
        if (!todo) continue;
        qs_log_info(ctx->log, "reconstruct: %s layer %d done%s", ctx->dir, l,
                    copy ? " (copied from recon/)" : "");
        qs_progress_step(ctx->progress, l + 1, "layer %d/%d", l + 1, L);
        int want_stop = *ctx->stop || (stop_after > 0 && written >= stop_after);
        if (l + 1 < L && qs_comm_any(comm, want_stop)) {
            qs_log_info(ctx->log, "reconstruct: stopped after %s layer %d", ctx->dir, l);
            st = QS_STOPPED;
            goto done;
        }
    }
done:
    seq_free(&q);
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
    QS_CHECK(qs_rundir_path(ctx->rd, QS_REL_ALLOCATION, path, sizeof(path), err));
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

static void recon_close(void *vs) {
    recon_state *s = vs;
    if (!s) return;
    qs_stage_windows_close(&s->win);
    qs_plan_free(&s->plan);
    free(s->sel);
    free(s);
}

/* The inputs of the final pass: the allocation (its candidates resolved, its hash); with
 * float inputs also recon/'s manifest, whose results are the final ones. */
static qs_status final_inputs(const qs_stage_ctx *ctx, recon_state *s, qs_stage_open *o,
                              qs_err *err) {
    qs_status st = QS_OK;
    const int L = (int)s->d.nlayers;
    char alloc_hash[65], recon_hash[65], path[QS_PATH_MAX];
    int absent = 0;
    s->sel = qs_malloc(sizeof(int) * (size_t)L * NLIN, err, "allocation");
    if (!s->sel) return QS_ERR_RUNTIME;
    QS_CHECK(read_allocation(ctx, &s->cs, L, s->sel, alloc_hash, &absent, err));
    if (absent) {
        QS_CHECK(qs_rundir_path(ctx->rd, QS_REL_ALLOCATION, path, sizeof(path), err));
        QS_THROW(err, QS_ERR_INPUT, "%s: missing; run the search stage first", path);
    }
    QS_CHECK(qs_manifest_add_input(&o->inputs, "allocation", alloc_hash, err));
    if (!s->quantized) {
        QS_CHECK(qs_stage_hash_rel(ctx, QS_DIR_RECON "/manifest.json",
                                   "run reconstruct before the final pass", recon_hash, err));
        QS_CHECK(qs_manifest_add_input(&o->inputs, "recon", recon_hash, err));
    } else {
        /* a layer file of the final pass depends on the windows and the allocation */
        char both[130];
        snprintf(both, sizeof(both), "%s%s", s->input_hash, alloc_hash);
        qs_sha256_hex(both, 128, s->input_hash);
    }
done:
    return st;
}

static qs_status recon_open(const qs_stage_ctx *ctx, int pass, void **state, qs_stage_open *o,
                            qs_err *err) {
    qs_status st = QS_OK;
    const qs_config *cfg = ctx->cfg;
    recon_state *s = qs_calloc(1, sizeof(*s), err, "reconstruct state");
    if (!s) return QS_ERR_RUNTIME;
    *state = s;
    s->final = pass == 1;
    s->quantized = cfg->reconstruct.inputs == QS_INPUTS_QUANTIZED;
    qs_model_dims_from_hf(&s->d, &ctx->model->hf);
    s->d.nlayers = ctx->model->hf.num_hidden_layers;
    QS_CHECK(qs_model_dims_check(&s->d, err));
    QS_CHECK(qs_cands_from_config(cfg, &s->cs, err));
    QS_CHECK(qs_cands_choose_propagate(cfg, ctx->model, &s->d, &s->cs, err));
    if (s->quantized) {
        QS_CHECK(qs_stage_windows_open(ctx, "reconstruct.inputs quantized", &s->win, err));
        QS_CHECK(qs_stage_plan_read(ctx, &s->plan, err));
        memcpy(s->input_hash, s->win.hash, sizeof(s->input_hash));
    } else {
        /* input: the calibrate stage's manifest (names every Hessian file's checksum) */
        QS_CHECK(qs_stage_hash_rel(ctx, QS_DIR_CALIB "/manifest.json",
                                   "run calibrate before reconstruct", s->input_hash, err));
    }
    QS_CHECK(qs_manifest_add_input(&o->inputs, "model", ctx->model_hash, err));
    QS_CHECK(qs_manifest_add_input(&o->inputs, s->quantized ? "windows" : "calib", s->input_hash,
                                   err));
    if (s->final) QS_CHECK(final_inputs(ctx, s, o, err));
    /* float inputs' final pass: recon/ holds the results; only the manifest is written */
    if (!(s->final && !s->quantized))
        QS_CHECK(qs_stage_set_units(o, (int)s->d.nlayers, QS_UNIT_LAYER, err));
done:
    return st;
}

static qs_status recon_run(const qs_stage_ctx *ctx, void *vs, qs_err *err) {
    qs_status st = QS_OK;
    recon_state *s = vs;
    const int L = (int)s->d.nlayers;
    const char *label = s->final ? "reconstruct-final" : "reconstruct";
    openblas_set_num_threads(1);
    if (ctx->units->n == 0) {
        qs_log_info(ctx->log, "%s: inputs float, results are recon/'s", label);
        return QS_OK;
    }
    int ntodo = 0;
    for (int l = 0; l < L; ++l) ntodo += ctx->units->todo[l];
    qs_log_info(ctx->log, "%s: inputs %s, method %s, %d candidate(s) (propagate %s), %d of %d "
                "layer(s) to do",
                label, s->quantized ? "quantized" : "float", s->cs.gptq ? "gptq" : "rtn",
                s->cs.n, s->final ? "the allocation" : s->cs.name[s->cs.propagate], ntodo, L);
    if (ntodo == 0) return QS_OK;

    /* the work (peak RSS measured from here) */
    qs_log_peak_rss_reset();
    const long long start_rss = qs_log_peak_rss();
    const double t_work = qs_log_now();
    qs_progress_begin(ctx->progress, L, L - ntodo);
    st = s->quantized ? run_quantized(ctx, s, err) : run_float(ctx, s, err);
    if (st != QS_OK && st != QS_STOPPED) return st;
    if (st == QS_OK) {
        qs_plan p;
        qs_err e = {0};
        memset(&p, 0, sizeof(p));
        const qs_plan *pl = &s->plan;
        if (!s->quantized && qs_plan_compute(&ctx->model->hf, ctx->cfg, ctx->comm->size, &p, &e) == QS_OK)
            pl = &p; /* float inputs do not read the plan file */
        const int r = ctx->comm->rank;
        const int first = pl->first ? pl->first[r] : 0;
        const int count = pl->first ? pl->first[r + 1] - first : 0;
        qs_stage_rss_report(ctx, QS_MEM_RECONSTRUCT, first, count, start_rss,
                            qs_log_now() - t_work);
        qs_plan_free(&p);
    }
    qs_err e2 = {0};
    if (qs_stage_report_busy(ctx, s->busy, &e2) != QS_OK) qs_comm_abort(ctx->comm, &e2);
    return st;
}

const qs_stage qs_stage_reconstruct = {"reconstruct", QS_DIR_RECON, 0, 0, recon_open, recon_run,
                                       recon_close};
const qs_stage qs_stage_reconstruct_final = {"reconstruct-final", QS_DIR_FINAL, 1, 0, recon_open,
                                             recon_run, recon_close};
