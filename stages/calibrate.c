/* calibrate.c (stage): fp32 forward of the calibration windows through the decoder, layer
 * by layer, accumulating per linear group (q/k/v, o, gate/up, down) the GPTQ Hessian
 * H = 2/N sum x x^T, per-channel absmax and mean square. Output: run/calib/layer-NNN.h5
 * per layer (one unit each, written by its owner) (docs/calibrate.md). Only reconstruct's
 * float inputs read these files; with reconstruct.inputs quantized (the default)
 * reconstruct computes every Hessian from quantized inputs, so the stage computes nothing
 * and writes only its manifest (debug knob QS_NO_SKIP=calibrate: the files anyway).
 *
 * Schedule: the unit of work is (layer l, chunk c) where a chunk is calib.chunk_samples
 * windows (the last may be shorter). The plan (run/plan/plan.json, lib/layer_plan.h) gives
 * a 2-D schedule of S pipeline stages (contiguous layer ranges) x D replicas: rank
 * d * S + s is stage s of replica d. Chunk activations flow stage to stage inside a replica
 * through the layer pipeline (mpi/layerpipe, on the replica's sub-communicator); within a
 * checkpoint segment starting at chunk c0, replica d runs chunks c0 + d, c0 + d + D, ...
 * A round is D consecutive chunks, one per replica. For each layer and linear group, the
 * stage's ranks hand their chunk partials (Hessian tile, absmax, sum of squares) to
 * replica 0 inside the forward (qs_stage_round_add over the stage's sub-communicator),
 * which adds the round's partials in chunk order into the layer's f64 accumulators: the
 * bytes of one rank adding every chunk in order, at any rank count or D. Only replica 0
 * holds accumulators, writes checkpoints and the layer files. Every layer sees every chunk,
 * so the stage computes all layers whenever one unit must be (re)done, and writes the units
 * to do.
 *
 * Checkpoints: every calib.checkpoint_every chunks the pipeline drains, each owner writes
 * its layers' f64 accumulators (calib/ckpt/layer-NNN.cKKK.h5), the ranks agree, rank 0
 * writes calib/ckpt/state.json and deletes older files; the stop flag is combined over
 * ranks only there (QS_STOPPED after the checkpoint is durable).
 * Test knob: env QS_TEST_STOP_AFTER_CHUNKS=n raises the stop flag on every rank once n
 * chunks were processed by this process (deterministic kill for the resume tests).
 */
#include <cblas.h>
#include <cjson/cJSON.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"
#include "h5store.h"
#include "hessian.h"
#include "kernels.h"
#include "layer_plan.h"
#include "layerpipe.h"
#include "weights.h"

static const char *const GROUP_NAMES[QS_GROUP_COUNT] = {"qkv", "o", "gate_up", "down"};

/* One layer's statistics on this rank. Replica 0: the running sums (hess f64, absmax,
 * sumsq, tokens). A replica > 0: one chunk's partials on their way to replica 0 (part f32,
 * absmax, sumsq, their sends), kept until the replica reaches the same layer and group in
 * its next chunk. */
typedef struct layer_acc {
    int64_t d[QS_GROUP_COUNT];        /* input width per group */
    double *hess[QS_GROUP_COUNT];     /* (d, d) f64, upper triangle accumulated; replica 0 */
    float *part[QS_GROUP_COUNT];      /* (d, d) f32, upper triangle meaningful; replica > 0 */
    float *absmax[QS_GROUP_COUNT];    /* (d) */
    double *sumsq[QS_GROUP_COUNT];    /* (d) */
    qs_comm_req req[QS_GROUP_COUNT][QS_STAGE_ROUND_MSGS]; /* replica > 0: part's sends */
    int64_t tokens;                   /* rows seen; replica 0 */
} layer_acc;

/* Hook context: the current layer's accumulators or partials in flight, scratch, the round,
 * requests to poke. */
typedef struct hook_ctx {
    layer_acc *acc;      /* the current layer's */
    float *tile;         /* (dmax, dmax) f32 partial (replica 0) */
    float *pabs;         /* (dmax) */
    double *psq;         /* (dmax) */
    const qs_comm *col;  /* this stage's replicas (rank = replica) */
    int nhave;           /* replicas with a chunk in the current round */
    qs_layerpipe *pipe;  /* poked between Hessian tiles */
    qs_pool *pool;       /* borrowed, may be NULL: the partials' blocks */
} hook_ctx;

/* The chunk's partials of group g, added in chunk order on replica 0 with the round's. */
static qs_status stats_hook(void *vctx, qs_linear_group g, const float *x, int64_t rows,
                            int64_t d, qs_err *err) {
    hook_ctx *h = vctx;
    layer_acc *a = h->acc;
    const int ship = a->part[g] != NULL; /* a replica > 0 */
    if (d != a->d[g]) return QS_FAIL(err, QS_ERR_INTERNAL, "hook width %lld != %lld",
                                     (long long)d, (long long)a->d[g]);
    /* a replica's buffers of this layer and group: free once last chunk's sends are done */
    if (ship) qs_stage_round_wait(h->col, a->req[g]);
    qs_stage_part part = {d, ship ? a->part[g] : h->tile, ship ? a->absmax[g] : h->pabs,
                          ship ? a->sumsq[g] : h->psq};
    qs_status st = qs_hess_partial_pool(h->pool, x, rows, d, part.hess, err);
    if (st != QS_OK) return st;
    st = qs_chan_stats_partial_pool(h->pool, x, rows, d, part.absmax, part.sumsq, err);
    if (st != QS_OK) return st;
    const qs_stage_sums sums = {a->hess[g], a->absmax[g], a->sumsq[g]};
    st = qs_stage_round_add(h->col, h->nhave, h->pool, &part, &sums, ship ? a->req[g] : NULL,
                            err);
    /* let pending pipeline messages and this layer's partials move while this rank computes */
    qs_layerpipe_poke(h->pipe);
    for (int k = 0; ship && k < QS_GROUP_COUNT * QS_STAGE_ROUND_MSGS; ++k)
        qs_comm_test(h->col, &a->req[k / QS_STAGE_ROUND_MSGS][k % QS_STAGE_ROUND_MSGS]);
    return st;
}

static void acc_free(layer_acc *a) {
    for (int g = 0; g < QS_GROUP_COUNT; ++g) {
        free(a->hess[g]);
        free(a->part[g]);
        free(a->absmax[g]);
        free(a->sumsq[g]);
    }
    memset(a, 0, sizeof(*a));
}

/* Input width per linear group. */
static void group_widths(const qs_model_dims *d, int64_t *dg) {
    dg[QS_GROUP_QKV] = d->hidden;
    dg[QS_GROUP_O] = d->heads * d->head_dim;
    dg[QS_GROUP_GATE_UP] = d->hidden;
    dg[QS_GROUP_DOWN] = d->inter;
}

/* Zeroed statistics of one layer: accumulators on replica 0, partials elsewhere. The large
 * buffers are zeroed on the pool (qs_pool_zero: their pages touched once, by writes, so that
 * RSS is the formula's and the forward's first additions do not fault). */
static qs_status acc_init(layer_acc *a, const qs_model_dims *d, int replica, qs_pool *pool,
                          qs_err *err) {
    memset(a, 0, sizeof(*a));
    group_widths(d, a->d);
    for (int g = 0; g < QS_GROUP_COUNT; ++g) {
        int64_t n = a->d[g];
        void *big = NULL;
        size_t bytes = 0;
        if (replica == 0) {
            bytes = sizeof(double) * (size_t)(n * n);
            big = a->hess[g] = qs_malloc(bytes, err, "Hessian accumulator");
        } else {
            bytes = sizeof(float) * (size_t)(n * n);
            big = a->part[g] = qs_malloc(bytes, err, "partial");
        }
        a->absmax[g] = qs_calloc((size_t)n, sizeof(float), err, "absmax");
        a->sumsq[g] = qs_calloc((size_t)n, sizeof(double), err, "sum of squares");
        if (!big || !a->absmax[g] || !a->sumsq[g]) {
            acc_free(a);
            return QS_ERR_RUNTIME;
        }
        qs_status st = qs_pool_zero(pool, big, bytes, err);
        if (st != QS_OK) {
            acc_free(a);
            return st;
        }
    }
    return QS_OK;
}

static qs_status ckpt_path(const qs_rundir *rd, int layer, int64_t k, char *out, size_t n,
                           qs_err *err) {
    char rel[96];
    snprintf(rel, sizeof(rel), "calib/ckpt/layer-%03d.c%06lld.h5", layer, (long long)k);
    return qs_rundir_path(rd, rel, out, n, err);
}

/* One group's statistics: <group>/<hess_name> (d, d) of hess_type, <group>/absmax (d) f32,
 * <group>/<sq_name> (d) f64. */
static qs_status group_write(qs_h5 *h, int g, int64_t d, const char *hess_name,
                             qs_h5_type hess_type, const void *hess, const float *absmax,
                             const char *sq_name, const double *sq, qs_err *err) {
    qs_status st = QS_OK;
    char name[64];
    int64_t dd[2] = {d, d};
    snprintf(name, sizeof(name), "%s/%s", GROUP_NAMES[g], hess_name);
    QS_CHECK(qs_h5_write(h, name, hess_type, 2, dd, hess, err));
    snprintf(name, sizeof(name), "%s/absmax", GROUP_NAMES[g]);
    QS_CHECK(qs_h5_write(h, name, QS_H5_F32, 1, dd, absmax, err));
    snprintf(name, sizeof(name), "%s/%s", GROUP_NAMES[g], sq_name);
    QS_CHECK(qs_h5_write(h, name, QS_H5_F64, 1, dd, sq, err));
done:
    return st;
}

/* Writes one layer's running state after k chunks. */
static qs_status ckpt_write(const qs_rundir *rd, int layer, int64_t k, const layer_acc *a,
                            qs_err *err) {
    qs_status st = QS_OK;
    qs_h5 h;
    char path[QS_PATH_MAX];
    memset(&h, 0, sizeof(h));
    QS_CHECK(ckpt_path(rd, layer, k, path, sizeof(path), err));
    QS_CHECK(qs_h5_create(&h, path, err));
    for (int g = 0; g < QS_GROUP_COUNT; ++g)
        QS_CHECK(group_write(&h, g, a->d[g], "hessian_acc", QS_H5_F64, a->hess[g],
                             a->absmax[g], "sumsq", a->sumsq[g], err));
    QS_CHECK(qs_h5_attr_i64(&h, NULL, "tokens", a->tokens, err));
    QS_CHECK(qs_h5_attr_i64(&h, NULL, "chunk", k, err));
    QS_CHECK(qs_h5_commit(&h, err));
done:
    if (st != QS_OK) qs_h5_abandon(&h);
    return st;
}

static qs_status ckpt_read(const qs_rundir *rd, int layer, int64_t k, layer_acc *a,
                           qs_err *err) {
    qs_status st = QS_OK;
    qs_h5 h;
    char path[QS_PATH_MAX], name[64];
    memset(&h, 0, sizeof(h));
    QS_CHECK(ckpt_path(rd, layer, k, path, sizeof(path), err));
    QS_CHECK(qs_h5_open(&h, path, err));
    for (int g = 0; g < QS_GROUP_COUNT; ++g) {
        int64_t n = a->d[g];
        snprintf(name, sizeof(name), "%s/hessian_acc", GROUP_NAMES[g]);
        QS_CHECK(qs_h5_read_into(&h, name, QS_H5_F64, n * n, a->hess[g], sizeof(double), err));
        snprintf(name, sizeof(name), "%s/absmax", GROUP_NAMES[g]);
        QS_CHECK(qs_h5_read_into(&h, name, QS_H5_F32, n, a->absmax[g], sizeof(float), err));
        snprintf(name, sizeof(name), "%s/sumsq", GROUP_NAMES[g]);
        QS_CHECK(qs_h5_read_into(&h, name, QS_H5_F64, n, a->sumsq[g], sizeof(double), err));
    }
    QS_CHECK(qs_h5_read_attr_i64(&h, NULL, "tokens", &a->tokens, err));
done:
    qs_h5_abandon(&h);
    return st;
}

/* Final per-layer file: per group hessian (d, d) f32 (full symmetric, 2/N scaled in f64
 * then rounded, on the pool), absmax (d) f32, meansq (d) f64; root attribute tokens.
 * Consumes acc (its sums of squares become means). */
static qs_status layer_write(const qs_rundir *rd, qs_pool *pool, int layer, layer_acc *a,
                             int64_t seqlen, int64_t nsamples, float *tmp, qs_err *err) {
    qs_status st = QS_OK;
    qs_h5 h;
    char rel[64], path[QS_PATH_MAX];
    memset(&h, 0, sizeof(h));
    qs_rundir_layer_rel(rel, sizeof(rel), QS_DIR_CALIB, layer);
    QS_CHECK(qs_rundir_path(rd, rel, path, sizeof(path), err));
    QS_CHECK(qs_h5_create(&h, path, err));
    for (int g = 0; g < QS_GROUP_COUNT; ++g) {
        const int64_t n = a->d[g];
        QS_CHECK(qs_hess_finalize_f32_pool(pool, a->hess[g], n, a->tokens, tmp, err));
        for (int64_t i = 0; i < n; ++i) a->sumsq[g][i] /= (double)a->tokens;
        QS_CHECK(group_write(&h, g, n, "hessian", QS_H5_F32, tmp, a->absmax[g], "meansq",
                             a->sumsq[g], err));
    }
    QS_CHECK(qs_h5_attr_i64(&h, NULL, "tokens", a->tokens, err));
    QS_CHECK(qs_h5_attr_i64(&h, NULL, "layer", layer, err));
    QS_CHECK(qs_h5_attr_i64(&h, NULL, "seqlen", seqlen, err));
    QS_CHECK(qs_h5_attr_i64(&h, NULL, "nsamples", nsamples, err));
    QS_CHECK(qs_h5_commit(&h, err));
done:
    if (st != QS_OK) qs_h5_abandon(&h);
    return st;
}

/* state.json -> chunk K if it matches (config hash, windows hash, chunk count), else 0. */
static int64_t state_read(const qs_rundir *rd, const char *chash, const char *whash,
                          int64_t nchunks) {
    char path[QS_PATH_MAX], *text = NULL;
    qs_err e = {0};
    int64_t k = 0;
    if (qs_rundir_path(rd, "calib/ckpt/state.json", path, sizeof(path), &e) != QS_OK ||
        !qs_path_exists(path) || qs_read_file(path, &text, NULL, &e) != QS_OK)
        return 0;
    cJSON *root = cJSON_Parse(text);
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(root, "chunk");
    const cJSON *n = cJSON_GetObjectItemCaseSensitive(root, "nchunks");
    const cJSON *ch = cJSON_GetObjectItemCaseSensitive(root, "config_hash");
    const cJSON *wh = cJSON_GetObjectItemCaseSensitive(root, "windows_hash");
    if (cJSON_IsNumber(c) && cJSON_IsNumber(n) && cJSON_IsString(ch) && cJSON_IsString(wh) &&
        strcmp(ch->valuestring, chash) == 0 && strcmp(wh->valuestring, whash) == 0 &&
        (int64_t)n->valuedouble == nchunks && c->valuedouble > 0 &&
        c->valuedouble < (double)nchunks)
        k = (int64_t)c->valuedouble;
    cJSON_Delete(root);
    free(text);
    return k;
}

/* Rank 0: state.json for chunk k, then removes checkpoint files of other chunks
 * (k < 0: removes state.json and every checkpoint file). */
static qs_status state_write(const qs_rundir *rd, int64_t k, const char *chash,
                             const char *whash, int64_t nchunks, qs_err *err) {
    qs_status st = QS_OK;
    char path[QS_PATH_MAX], dir[QS_PATH_MAX], text[512];
    DIR *dh = NULL;
    QS_CHECK(qs_rundir_path(rd, "calib/ckpt/state.json", path, sizeof(path), err));
    QS_CHECK(qs_rundir_path(rd, "calib/ckpt", dir, sizeof(dir), err));
    if (k >= 0) {
        int n = snprintf(text, sizeof(text),
                         "{\n  \"chunk\": %lld,\n  \"nchunks\": %lld,\n  \"config_hash\": "
                         "\"%s\",\n  \"windows_hash\": \"%s\"\n}\n",
                         (long long)k, (long long)nchunks, chash, whash);
        QS_CHECK(qs_write_file_atomic(path, text, (size_t)n, err));
    } else if (qs_path_exists(path) && unlink(path) != 0) {
        QS_THROW(err, QS_ERR_RUNTIME, "%s: cannot remove", path);
    }
    char keep[32];
    snprintf(keep, sizeof(keep), ".c%06lld.h5", (long long)k);
    dh = opendir(dir);
    if (!dh) goto done;
    struct dirent *e;
    while ((e = readdir(dh)) != NULL) {
        const char *nm = e->d_name;
        size_t len = strlen(nm);
        if (strncmp(nm, "layer-", 6) != 0 || len < 3 || strcmp(nm + len - 3, ".h5") != 0) continue;
        if (k >= 0 && len >= strlen(keep) && strcmp(nm + len - strlen(keep), keep) == 0) continue;
        char f[QS_PATH_MAX];
        int m = snprintf(f, sizeof(f), "%s/%s", dir, nm);
        if (m > 0 && (size_t)m < sizeof(f)) unlink(f);
    }
    QS_CHECK(qs_fsync_dir(dir, err));
done:
    if (dh) closedir(dh);
    return st;
}

/* What open found: the windows, the plan, the dimensions. */
typedef struct calib_state {
    qs_model_dims d;
    qs_stage_windows win;
    qs_plan plan;
    int skip;                   /* reconstruct.inputs quantized: nothing reads calib/ */
} calib_state;

static void calib_close(void *vs) {
    calib_state *s = vs;
    if (!s) return;
    qs_stage_windows_close(&s->win);
    qs_plan_free(&s->plan);
    free(s);
}

static qs_status calib_open(const qs_stage_ctx *ctx, int pass, void **state, qs_stage_open *o,
                            qs_err *err) {
    (void)pass;
    qs_status st = QS_OK;
    calib_state *s = qs_calloc(1, sizeof(*s), err, "calibrate state");
    if (!s) return QS_ERR_RUNTIME;
    *state = s;
    qs_model_dims_from_hf(&s->d, &ctx->model->hf);
    QS_CHECK(qs_model_dims_check(&s->d, err));
    QS_CHECK(qs_stage_windows_open(ctx, "calibrate", &s->win, err));
    QS_CHECK(qs_stage_plan_read(ctx, &s->plan, err));
    QS_CHECK(qs_manifest_add_input(&o->inputs, "model", ctx->model_hash, err));
    QS_CHECK(qs_manifest_add_input(&o->inputs, "windows", s->win.hash, err));
    /* no units: the manifest records the inputs and no outputs */
    s->skip = ctx->cfg->reconstruct.inputs == QS_INPUTS_QUANTIZED &&
              !qs_stage_no_skip("calibrate");
    if (!s->skip) QS_CHECK(qs_stage_set_units(o, (int)s->d.nlayers, QS_UNIT_LAYER, err));
done:
    return st;
}

/* This rank's part of the forward: its layers' weights and accumulators, the buffers, its
 * place in the 2-D schedule. */
typedef struct calib_rank {
    const qs_stage_ctx *ctx;
    calib_state *s;
    int first, nown;     /* its stage's layers */
    int stage, replica;  /* stage -1: idle in calibrate */
    int64_t D;           /* replicas */
    int64_t seg0, seg1;  /* the current checkpoint segment of chunks [seg0, seg1) */
    qs_comm row, col;    /* its replica's stages, its stage's replicas (qs_comm_split) */
    qs_layer_f32 *lw;    /* (nown) */
    layer_acc *acc;      /* (nown) accumulators (replica 0) or partials in flight */
    qs_ends_f32 ends;    /* embeddings on the first layer's rank */
    qs_layer_workspace ws;
    float *tile;         /* (dmax, dmax) Hessian partial; also the f32 staging of writes */
    float *pabs;         /* (dmax) */
    double *psq;         /* (dmax) */
    uint32_t *ids;       /* (chunk x T) */
    int32_t *ids32;      /* (T) */
    hook_ctx hctx;
    int64_t nchunks;
} calib_rank;

static void rank_free(calib_rank *r) {
    if (r->lw)
        for (int i = 0; i < r->nown; ++i) qs_layer_f32_free(&r->lw[i]);
    if (r->acc)
        for (int i = 0; i < r->nown; ++i) acc_free(&r->acc[i]);
    free(r->lw);
    free(r->acc);
    free(r->tile);
    free(r->pabs);
    free(r->psq);
    free(r->ids);
    free(r->ids32);
    qs_ends_f32_free(&r->ends);
    qs_layer_workspace_free(&r->ws);
    qs_comm_free(&r->row);
    qs_comm_free(&r->col);
}

static qs_status rank_init(calib_rank *r, qs_err *err) {
    qs_status st = QS_OK;
    const qs_model_dims *d = &r->s->d;
    const int64_t T = r->s->win.seqlen, CS = r->ctx->cfg->calib.chunk_samples;
    int64_t dmax = d->hidden;
    if (d->heads * d->head_dim > dmax) dmax = d->heads * d->head_dim;
    if (d->inter > dmax) dmax = d->inter;
    r->lw = qs_calloc((size_t)r->nown, sizeof(*r->lw), err, "layer weights");
    r->acc = qs_calloc((size_t)r->nown, sizeof(*r->acc), err, "layer statistics");
    if (r->replica == 0) /* a replica > 0 computes its partials in their own buffers */
        r->tile = qs_malloc(sizeof(float) * (size_t)(dmax * dmax), err, "Hessian tile");
    r->pabs = qs_malloc(sizeof(float) * (size_t)dmax, err, "absmax partial");
    r->psq = qs_malloc(sizeof(double) * (size_t)dmax, err, "sumsq partial");
    r->ids = qs_malloc(sizeof(uint32_t) * (size_t)(CS * T), err, "chunk tokens");
    r->ids32 = qs_malloc(sizeof(int32_t) * (size_t)T, err, "window tokens");
    if (!r->lw || !r->acc || (r->replica == 0 && !r->tile) || !r->pabs || !r->psq || !r->ids ||
        !r->ids32)
        return QS_ERR_RUNTIME;
    QS_CHECK(qs_layer_workspace_init(&r->ws, d, (int)CS, (int)T, err));
    QS_CHECK(qs_layer_workspace_set_pool(&r->ws, r->ctx->pool, err));
    for (int i = 0; i < r->nown; ++i)
        QS_CHECK(qs_weights_load_layer(r->ctx->model, d, r->first + i, &r->lw[i], err));
    if (r->first == 0) QS_CHECK(qs_weights_load_ends(r->ctx->model, d, 1, 0, &r->ends, err));
    /* after the weights: a replica's partials are touched here, and the checkpoint pages a
     * conversion touches are dropped by then (weights.c) */
    for (int i = 0; i < r->nown; ++i)
        QS_CHECK(acc_init(&r->acc[i], d, r->replica, r->ctx->pool, err));
done:
    return st;
}

/* Pipeline source (the first layer's rank): the windows' embeddings. */
static qs_status chunk_source(void *vr, int64_t c, int64_t s0, int64_t ns, float *x,
                              qs_err *err) {
    calib_rank *r = vr;
    const qs_stage_windows *w = &r->s->win;
    const int64_t T = w->seqlen;
    (void)c;
    for (int64_t s = 0; s < ns; ++s) {
        qs_tokens_copy(&w->tok, w->offs[s0 + s], T, r->ids32);
        for (int64_t t = 0; t < T; ++t) r->ids[s * T + t] = (uint32_t)r->ids32[t];
    }
    return qs_embed_gather(r->ends.embed, r->s->d.vocab, r->s->d.hidden, r->ids, ns * T, x,
                           err);
}

/* Pipeline step: this rank's layers on chunk c, statistics by the hook, added with the
 * rest of c's round (chunks [cr, cr + nhave) of the segment, one per replica). */
static qs_status chunk_compute(void *vr, int64_t c, int64_t s0, int64_t ns, float *x,
                               qs_err *err) {
    calib_rank *r = vr;
    const int64_t T = r->s->win.seqlen, CS = r->ctx->cfg->calib.chunk_samples;
    const int64_t S = r->s->win.nsamples;
    const int64_t cr = r->seg0 + (c - r->seg0) / r->D * r->D;
    const int64_t nhave = r->seg1 - cr < r->D ? r->seg1 - cr : r->D;
    int64_t tokens = 0; /* the round's rows */
    for (int64_t j = cr; j < cr + nhave; ++j) tokens += (S - j * CS < CS ? S - j * CS : CS) * T;
    qs_layer_hooks hooks = {stats_hook, &r->hctx};
    qs_status st = QS_OK;
    (void)s0;
    const double tb = qs_log_now();
    r->hctx.nhave = (int)nhave;
    for (int i = 0; i < r->nown && st == QS_OK; ++i) {
        r->hctx.acc = &r->acc[i];
        st = qs_layer_forward(&r->lw[i].w, &r->s->d, r->first + i, x, (int)ns, (int)T, &r->ws,
                              &hooks, err);
        r->acc[i].tokens += tokens;
    }
    if (r->ctx->busy) *r->ctx->busy += qs_log_now() - tb;
    qs_progress_step(r->ctx->progress, cr + nhave, "chunk %lld/%lld", (long long)(cr + nhave),
                     (long long)r->nchunks);
    return st;
}

/* A replica > 0: completes its partials' sends (replica 0 has added them all when its
 * segment ends, so this returns once the segment is over). */
static void ships_wait(calib_rank *r) {
    for (int i = 0; r->replica > 0 && i < r->nown; ++i)
        for (int g = 0; g < QS_GROUP_COUNT; ++g) qs_stage_round_wait(&r->col, r->acc[i].req[g]);
}

/* Resumes from the checkpoint of chunk k0 (rank 0's state.json, broadcast); a checkpoint
 * that cannot be read on some rank restarts everyone from chunk 0. Collective. */
static qs_status resume_point(calib_rank *r, int64_t *k0, qs_err *err) {
    const qs_stage_ctx *ctx = r->ctx;
    const qs_comm *comm = ctx->comm;
    qs_status st = QS_OK;
    *k0 = 0;
    if (comm->rank == 0) {
        st = qs_rundir_mkdir(ctx->rd, "calib/ckpt", err);
        if (st == QS_OK) *k0 = state_read(ctx->rd, ctx->config_hash, r->s->win.hash, r->nchunks);
    }
    st = qs_comm_agree(comm, st, err);
    if (st != QS_OK) return st;
    qs_comm_bcast(comm, k0, sizeof(*k0), 0);
    if (*k0 == 0) return QS_OK;
    qs_err lerr = {0};
    int bad = 0;
    for (int i = 0; r->replica == 0 && i < r->nown && !bad; ++i)
        if (ckpt_read(ctx->rd, r->first + i, *k0, &r->acc[i], &lerr) != QS_OK) bad = 1;
    if (!qs_comm_any(comm, bad)) {
        qs_log_info(ctx->log, "calibrate: resuming at chunk %lld of %lld", (long long)*k0,
                    (long long)r->nchunks);
        return QS_OK;
    }
    qs_log_info(ctx->log, "calibrate: checkpoint at chunk %lld unusable (%s); restarting",
                (long long)*k0, bad ? lerr.msg : "on another rank");
    *k0 = 0;
    for (int i = 0; r->replica == 0 && i < r->nown && st == QS_OK; ++i) {
        acc_free(&r->acc[i]);
        st = acc_init(&r->acc[i], &r->s->d, 0, ctx->pool, err);
    }
    return qs_comm_agree(comm, st, err);
}

/* Checkpoint after chunk k: replica 0 writes its accumulators (every replica's partials of
 * chunks < k are in them: each round was added inside the forward), rank 0 the state.
 * Collective; *stop = 1 when the ranks agree to stop here. */
static qs_status checkpoint(calib_rank *r, int64_t k, int want_stop, int *stop, qs_err *err) {
    const qs_stage_ctx *ctx = r->ctx;
    qs_status st = QS_OK;
    for (int i = 0; r->replica == 0 && i < r->nown && st == QS_OK; ++i)
        st = ckpt_write(ctx->rd, r->first + i, k, &r->acc[i], err);
    st = qs_comm_agree(ctx->comm, st, err);
    if (st != QS_OK) return st;
    if (ctx->comm->rank == 0)
        st = state_write(ctx->rd, k, ctx->config_hash, r->s->win.hash, r->nchunks, err);
    st = qs_comm_agree(ctx->comm, st, err);
    if (st != QS_OK) return st;
    qs_stage_test_hold(ctx, "checkpoint");
    *stop = qs_comm_any(ctx->comm, want_stop || *ctx->stop);
    if (*stop)
        qs_log_info(ctx->log, "calibrate: stopped at checkpoint chunk %lld of %lld",
                    (long long)k, (long long)r->nchunks);
    return QS_OK;
}

/* Replica 0 writes the units to do among its layers; rank 0 then drops the checkpoints. */
static qs_status write_outputs(calib_rank *r, qs_err *err) {
    const qs_stage_ctx *ctx = r->ctx;
    qs_status st = QS_OK;
    for (int i = 0; r->replica == 0 && i < r->nown && st == QS_OK; ++i) {
        const int l = r->first + i;
        char rel[64];
        const char *rels[1] = {rel};
        if (!ctx->units->todo[l]) continue;
        qs_rundir_layer_rel(rel, sizeof(rel), QS_DIR_CALIB, l);
        /* tile (dmax, dmax) is free again: the f32 staging buffer */
        st = layer_write(ctx->rd, ctx->pool, l, &r->acc[i], r->s->win.seqlen,
                         r->s->win.nsamples, r->tile, err);
        if (st == QS_OK) st = qs_stage_unit_done(ctx, l, rels, 1, err);
    }
    st = qs_comm_agree(ctx->comm, st, err);
    if (st == QS_OK && ctx->comm->rank == 0)
        st = state_write(ctx->rd, -1, ctx->config_hash, r->s->win.hash, r->nchunks, err);
    return qs_comm_agree(ctx->comm, st, err);
}

static qs_status calib_run(const qs_stage_ctx *ctx, void *vs, qs_err *err) {
    qs_status st = QS_OK;
    calib_state *s = vs;
    const qs_comm *comm = ctx->comm;
    const qs_config *cfg = ctx->cfg;
    calib_rank r;
    qs_layerpipe pipe;
    memset(&r, 0, sizeof(r));
    memset(&pipe, 0, sizeof(pipe));
    openblas_set_num_threads(1);
    if (s->skip) {
        qs_stage_skipped(ctx, "calibrate", "layers", s->d.nlayers, s->d.nlayers,
                         "reconstruct.inputs quantized: reconstruct computes every Hessian "
                         "from quantized inputs and nothing reads calib/'s layer files");
        return QS_OK;
    }
    int ntodo = 0;
    for (int l = 0; l < ctx->units->n; ++l) ntodo += ctx->units->todo[l];
    if (ntodo == 0) return QS_OK;
    const int64_t every = cfg->calib.checkpoint_every;
    const int stop_after = qs_stage_stop_after("QS_TEST_STOP_AFTER_CHUNKS");
    const double t0 = qs_log_now();
    r.ctx = ctx;
    r.s = s;
    qs_mem_calib role;
    r.stage = qs_plan_calib_role(&s->plan, comm->rank, &role);
    r.first = role.first;
    r.nown = role.count;
    r.replica = role.replica;
    r.D = s->plan.calib_replicas;
    /* collective: the replica's stages (the pipeline), the stage's replicas (the rounds) */
    qs_comm_split(comm, r.stage >= 0 ? r.replica : -1, r.stage, &r.row);
    qs_comm_split(comm, r.stage >= 0 ? r.stage : -1, r.replica, &r.col);

    /* 1. this rank's layers and buffers, the pipeline, the resume point */
    static const int no_layers[2] = {0, 0}; /* an idle rank: an inactive pipeline */
    st = qs_layerpipe_init(&pipe, &r.row, r.stage >= 0 ? s->plan.calib_first : no_layers,
                           s->win.nsamples, cfg->calib.chunk_samples,
                           s->win.seqlen * s->d.hidden, err);
    if (st == QS_OK && r.nown > 0) st = rank_init(&r, err);
    st = qs_comm_agree(comm, st, err);
    if (st != QS_OK) goto done;
    r.nchunks = qs_layerpipe_nchunks(&pipe);
    r.hctx = (hook_ctx){NULL, r.tile, r.pabs, r.psq, &r.col, 1, &pipe, ctx->pool};
    int64_t k0 = 0;
    QS_CHECK(resume_point(&r, &k0, err));
    qs_log_info(ctx->log,
                "calibrate: %lld windows x %lld tokens in %lld chunks of %lld; %d stages x "
                "%lld replicas; rank %d: stage %d, replica %d, layers [%d, %d)",
                (long long)s->win.nsamples, (long long)s->win.seqlen, (long long)r.nchunks,
                (long long)cfg->calib.chunk_samples, s->plan.calib_stages, (long long)r.D,
                comm->rank, r.stage, r.replica, r.first, r.first + r.nown);

    /* 2. the pipelines in segments between checkpoints; replica d runs the segment's chunks
     * c + d, c + d + D, ... */
    qs_progress_begin(ctx->progress, r.nchunks, k0);
    for (int64_t c = k0; c < r.nchunks;) {
        int64_t c1 = every > 0 ? (c / every + 1) * every : r.nchunks;
        if (c1 > r.nchunks) c1 = r.nchunks;
        r.seg0 = c;
        r.seg1 = c1;
        if (r.stage >= 0)
            QS_CHECK(qs_layerpipe_run_every(&pipe, c + r.replica, c1, r.D, chunk_source,
                                            chunk_compute, &r, err));
        qs_layerpipe_drain(&pipe);
        ships_wait(&r);
        const int64_t done_here = c1 - k0;
        c = c1;
        if (c == r.nchunks) break;
        int stop = 0;
        QS_CHECK(checkpoint(&r, c, *ctx->stop || (stop_after > 0 && done_here >= stop_after),
                            &stop, err));
        if (stop) {
            st = QS_STOPPED;
            goto done;
        }
    }

    /* 3. the units to do */
    QS_CHECK(write_outputs(&r, err));
    qs_stage_rss_report(ctx, r.replica > 0 ? QS_MEM_CALIBRATE_REPLICA : QS_MEM_CALIBRATE,
                        r.first, r.nown, 0, qs_log_now() - t0);
done:
    rank_free(&r);
    qs_layerpipe_free(&pipe);
    return st;
}

const qs_stage qs_stage_calibrate = {"calibrate", QS_DIR_CALIB, 0, 0, calib_open, calib_run,
                                     calib_close};
