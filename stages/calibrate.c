/* calibrate.c (stage): fp32 forward of the calibration windows through the decoder, layer
 * by layer, accumulating per linear group (q/k/v, o, gate/up, down) the GPTQ Hessian
 * H = 2/N sum x x^T, per-channel absmax and mean square. Output: run/calib/layer-NNN.h5
 * per layer (written by its owner) + calib/manifest.json (docs/calibrate.md).
 *
 * Schedule: the unit is (layer l, chunk c) where a chunk is calib.chunk_samples windows
 * (the last may be shorter). Layers are owned in contiguous ranges (run/plan/plan.json);
 * chunk activations flow rank to rank with nonblocking sends over two chunk buffers, so
 * after the pipeline fills every rank computes at once. Chunk partials are added in chunk
 * order on the layer's owner, so the bytes do not depend on the rank count.
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

#include "h5store.h"
#include "tokens.h"
#include "memory.h"
#include "hessian.h"
#include "kernels.h"
#include "layer_plan.h"
#include "sha256.h"
#include "stage.h"
#include "weights.h"

static const char *const GROUP_NAMES[QS_GROUP_COUNT] = {"qkv", "o", "gate_up", "down"};

/* Running statistics of one layer (owned by the layer's rank). */
typedef struct layer_acc {
    int64_t d[QS_GROUP_COUNT];        /* input width per group */
    double *hess[QS_GROUP_COUNT];     /* (d, d) f64, upper triangle accumulated */
    float *absmax[QS_GROUP_COUNT];    /* (d) */
    double *sumsq[QS_GROUP_COUNT];    /* (d) */
    int64_t tokens;                   /* rows seen */
} layer_acc;

/* Hook context: the current layer's accumulators, scratch, and requests to poke. */
typedef struct hook_ctx {
    layer_acc *acc;
    float *tile;     /* (dmax, dmax) f32 partial */
    float *pabs;     /* (dmax) */
    double *psq;     /* (dmax) */
    const qs_comm *comm;
    qs_comm_req *poke[3];
} hook_ctx;

static qs_status stats_hook(void *vctx, qs_linear_group g, const float *x, int64_t rows,
                            int64_t d, qs_err *err) {
    hook_ctx *h = vctx;
    layer_acc *a = h->acc;
    if (d != a->d[g]) return QS_FAIL(err, QS_ERR_INTERNAL, "hook width %lld != %lld",
                                     (long long)d, (long long)a->d[g]);
    qs_hess_partial(x, rows, d, h->tile);
    qs_hess_add(a->hess[g], h->tile, d);
    qs_chan_stats_partial(x, rows, d, h->pabs, h->psq);
    qs_chan_stats_add(a->absmax[g], a->sumsq[g], h->pabs, h->psq, d);
    /* let pending pipeline messages move while this rank computes */
    for (int i = 0; i < 3; ++i)
        if (h->poke[i]) qs_comm_test(h->comm, h->poke[i]);
    return QS_OK;
}

static void acc_free(layer_acc *a) {
    for (int g = 0; g < QS_GROUP_COUNT; ++g) {
        free(a->hess[g]);
        free(a->absmax[g]);
        free(a->sumsq[g]);
    }
    memset(a, 0, sizeof(*a));
}

static qs_status acc_init(layer_acc *a, const qs_model_dims *d, qs_err *err) {
    memset(a, 0, sizeof(*a));
    a->d[QS_GROUP_QKV] = d->hidden;
    a->d[QS_GROUP_O] = d->heads * d->head_dim;
    a->d[QS_GROUP_GATE_UP] = d->hidden;
    a->d[QS_GROUP_DOWN] = d->inter;
    for (int g = 0; g < QS_GROUP_COUNT; ++g) {
        int64_t n = a->d[g];
        a->hess[g] = qs_calloc((size_t)(n * n), sizeof(double), err, "Hessian accumulator");
        a->absmax[g] = qs_calloc((size_t)n, sizeof(float), err, "absmax");
        a->sumsq[g] = qs_calloc((size_t)n, sizeof(double), err, "sum of squares");
        if (!a->hess[g] || !a->absmax[g] || !a->sumsq[g]) {
            acc_free(a);
            return QS_ERR_RUNTIME;
        }
    }
    return QS_OK;
}

/* SHA-256 of the chosen windows: seqlen, then every window's token ids (u32 LE). */
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

static qs_status ckpt_path(const qs_rundir *rd, int layer, int64_t k, char *out, size_t n,
                           qs_err *err) {
    char rel[96];
    snprintf(rel, sizeof(rel), "calib/ckpt/layer-%03d.c%06lld.h5", layer, (long long)k);
    return qs_rundir_path(rd, rel, out, n, err);
}

/* Writes one layer's running state after k chunks. */
static qs_status ckpt_write(const qs_rundir *rd, int layer, int64_t k, const layer_acc *a,
                            qs_err *err) {
    qs_status st = QS_OK;
    qs_h5 h;
    char path[QS_PATH_MAX], name[64];
    memset(&h, 0, sizeof(h));
    QS_CHECK(ckpt_path(rd, layer, k, path, sizeof(path), err));
    QS_CHECK(qs_h5_create(&h, path, err));
    for (int g = 0; g < QS_GROUP_COUNT; ++g) {
        int64_t dd[2] = {a->d[g], a->d[g]};
        snprintf(name, sizeof(name), "%s/hessian_acc", GROUP_NAMES[g]);
        QS_CHECK(qs_h5_write(&h, name, QS_H5_F64, 2, dd, a->hess[g], err));
        snprintf(name, sizeof(name), "%s/absmax", GROUP_NAMES[g]);
        QS_CHECK(qs_h5_write(&h, name, QS_H5_F32, 1, dd, a->absmax[g], err));
        snprintf(name, sizeof(name), "%s/sumsq", GROUP_NAMES[g]);
        QS_CHECK(qs_h5_write(&h, name, QS_H5_F64, 1, dd, a->sumsq[g], err));
    }
    QS_CHECK(qs_h5_attr_i64(&h, NULL, "tokens", a->tokens, err));
    QS_CHECK(qs_h5_attr_i64(&h, NULL, "chunk", k, err));
    QS_CHECK(qs_h5_commit(&h, err));
done:
    if (st != QS_OK) qs_h5_abandon(&h);
    return st;
}

/* Reads one dataset of exactly n elements of `type` into dst. */
static qs_status read_exact(qs_h5 *h, const char *name, qs_h5_type type, int64_t n, void *dst,
                            size_t elem, qs_err *err) {
    qs_status st = QS_OK;
    int nd = 0;
    int64_t dims[8];
    void *data = NULL;
    QS_CHECK(qs_h5_read(h, name, type, &nd, dims, &data, err));
    int64_t total = 1;
    for (int i = 0; i < nd; ++i) total *= dims[i];
    if (total != n)
        QS_THROW(err, QS_ERR_INPUT, "%s: dataset '%s' has %lld elements, expected %lld", h->path,
                 name, (long long)total, (long long)n);
    memcpy(dst, data, (size_t)n * elem);
done:
    free(data);
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
        QS_CHECK(read_exact(&h, name, QS_H5_F64, n * n, a->hess[g], sizeof(double), err));
        snprintf(name, sizeof(name), "%s/absmax", GROUP_NAMES[g]);
        QS_CHECK(read_exact(&h, name, QS_H5_F32, n, a->absmax[g], sizeof(float), err));
        snprintf(name, sizeof(name), "%s/sumsq", GROUP_NAMES[g]);
        QS_CHECK(read_exact(&h, name, QS_H5_F64, n, a->sumsq[g], sizeof(double), err));
    }
    QS_CHECK(qs_h5_read_attr_i64(&h, NULL, "tokens", &a->tokens, err));
done:
    qs_h5_abandon(&h);
    return st;
}

/* Final per-layer file: per group hessian (d, d) f32 (full symmetric, 2/N scaled in f64
 * then rounded), absmax (d) f32, meansq (d) f64; root attribute tokens. Consumes acc. */
static qs_status layer_write(const qs_rundir *rd, int layer, layer_acc *a, int64_t seqlen,
                             int64_t nsamples, float *tmp, qs_err *err) {
    qs_status st = QS_OK;
    qs_h5 h;
    char rel[64], path[QS_PATH_MAX], name[64];
    memset(&h, 0, sizeof(h));
    snprintf(rel, sizeof(rel), "calib/layer-%03d.h5", layer);
    QS_CHECK(qs_rundir_path(rd, rel, path, sizeof(path), err));
    QS_CHECK(qs_h5_create(&h, path, err));
    for (int g = 0; g < QS_GROUP_COUNT; ++g) {
        int64_t n = a->d[g], dd[2] = {n, n};
        qs_hess_finalize(a->hess[g], n, a->tokens);
        for (int64_t i = 0; i < n * n; ++i) tmp[i] = (float)a->hess[g][i];
        snprintf(name, sizeof(name), "%s/hessian", GROUP_NAMES[g]);
        QS_CHECK(qs_h5_write(&h, name, QS_H5_F32, 2, dd, tmp, err));
        snprintf(name, sizeof(name), "%s/absmax", GROUP_NAMES[g]);
        QS_CHECK(qs_h5_write(&h, name, QS_H5_F32, 1, dd, a->absmax[g], err));
        for (int64_t i = 0; i < n; ++i) a->sumsq[g][i] /= (double)a->tokens;
        snprintf(name, sizeof(name), "%s/meansq", GROUP_NAMES[g]);
        QS_CHECK(qs_h5_write(&h, name, QS_H5_F64, 1, dd, a->sumsq[g], err));
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

/* Diagnostics, not an output (outside the manifest; differs per rank count and run):
 * every rank writes calib/rss/rank-NNN.json {"rank", "first", "count", "peak_rss_bytes"
 * (VmHWM of this process so far), "formula_bytes" (the calibrate part of the formula,
 * qs_mem_for_stage; plan.json's total when eval does not run), "seconds"} and logs
 * the same line (--verbose). Read by tests/bench/mem_check.py. A failure only logs. */
static void rss_report(const qs_stage_ctx *ctx, int first, int nown, double seconds) {
    const int rank = ctx->comm->rank;
    qs_mem_estimate m =
        qs_mem_for_stage(&ctx->model->hf, ctx->cfg, rank, ctx->comm->size, first, nown,
                         QS_MEM_CALIBRATE);
    long long peak = qs_log_peak_rss();
    qs_log_info(ctx->log, "calibrate: rank %d: %.2f s, peak RSS %.1f MiB (formula %.1f MiB)",
                rank, seconds, (double)peak / 1048576.0, (double)m.total / 1048576.0);
    char rel[64], path[QS_PATH_MAX], text[512];
    qs_err e = {0};
    snprintf(rel, sizeof(rel), "calib/rss/rank-%03d.json", rank);
    int n = snprintf(text, sizeof(text),
                     "{\n  \"rank\": %d,\n  \"first\": %d,\n  \"count\": %d,\n  "
                     "\"peak_rss_bytes\": %lld,\n  \"formula_bytes\": %lld,\n  "
                     "\"seconds\": %.3f\n}\n",
                     rank, first, nown, peak, (long long)m.total, seconds);
    if (qs_rundir_mkdir(ctx->rd, "calib/rss", &e) != QS_OK ||
        qs_rundir_path(ctx->rd, rel, path, sizeof(path), &e) != QS_OK ||
        qs_write_file_atomic(path, text, (size_t)n, &e) != QS_OK)
        qs_log_info(ctx->log, "calibrate: rank %d: cannot record peak RSS: %s", rank, e.msg);
}

static int env_stop_after(void) {
    const char *s = getenv("QS_TEST_STOP_AFTER_CHUNKS");
    return s && *s ? atoi(s) : 0;
}

qs_status qs_stage_calibrate_run(const qs_stage_ctx *ctx, const qs_stage_args *args,
                                 qs_err *err) {
    (void)args;
    qs_status st = QS_OK;
    const qs_config *cfg = ctx->cfg;
    const qs_comm *comm = ctx->comm;
    const int rank = comm->rank;
    qs_tokens tok;
    qs_plan plan;
    qs_model_dims d;
    qs_manifest want, have;
    qs_layer_workspace ws;
    qs_ends_f32 ends;
    qs_layer_f32 *lw = NULL;
    layer_acc *acc = NULL;
    int64_t *offs = NULL;
    char *plantext = NULL;
    float *xbuf[2] = {NULL, NULL};
    float *tile = NULL, *pabs = NULL;
    double *psq = NULL;
    uint32_t *ids = NULL;
    int32_t *ids32 = NULL;
    qs_comm_req sreq[2], rreq;
    char whash[65] = {0}, path[QS_PATH_MAX];
    int nown = 0, first = 0, last = 0, prev = -1, next = -1, rreq_posted = 0;
    memset(&tok, 0, sizeof(tok));
    memset(&plan, 0, sizeof(plan));
    memset(&ws, 0, sizeof(ws));
    memset(&ends, 0, sizeof(ends));
    memset(sreq, 0, sizeof(sreq));
    memset(&rreq, 0, sizeof(rreq));
    memset(&have, 0, sizeof(have));
    qs_manifest_init(&want, "calib", ctx->config_hash);
    openblas_set_num_threads(1);

    const int L = (int)ctx->model->hf.num_hidden_layers;
    const int64_t T = cfg->calib.seqlen, S = cfg->calib.nsamples, CS = cfg->calib.chunk_samples;
    const int64_t nchunks = CS > 0 ? (S + CS - 1) / CS : 0;
    const int64_t every = cfg->calib.checkpoint_every;
    const int stop_after = env_stop_after();
    double t0 = qs_log_now();

    /* 1. inputs on every rank (cheap), agreed before anything blocks */
    qs_model_dims_from_hf(&d, &ctx->model->hf);
    st = qs_model_dims_check(&d, err);
    if (st == QS_OK && (!cfg->calib.tokens || !cfg->calib.tokens[0]))
        st = QS_FAIL(err, QS_ERR_INPUT, "calib.tokens: a token file is required for calibrate");
    if (st == QS_OK && (T <= 0 || S <= 0 || CS <= 0))
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
    if (st == QS_OK) windows_hash(&tok, offs, S, T, whash);
    if (st == QS_OK) st = qs_rundir_path(ctx->rd, "plan/plan.json", path, sizeof(path), err);
    if (st == QS_OK) st = qs_read_file(path, &plantext, NULL, err);
    if (st == QS_OK) st = qs_plan_from_json(&plan, plantext, path, err);
    if (st == QS_OK && (plan.nranks != comm->size || plan.nlayers != L))
        st = QS_FAIL(err, QS_ERR_INPUT, "%s: plan for %d ranks / %d layers, run has %d / %d",
                     path, plan.nranks, plan.nlayers, comm->size, L);
    st = qs_comm_agree(comm, st, err);
    if (st != QS_OK) goto done;

    /* 2. skip when the manifest matches (rank 0 decides, everyone learns) */
    {
        int matches = 0;
        st = qs_manifest_add_input(&want, "model", ctx->model_hash, err);
        if (st == QS_OK) st = qs_manifest_add_input(&want, "windows", whash, err);
        if (st == QS_OK && rank == 0) {
            int found = 0;
            st = qs_manifest_read(&have, ctx->rd, "calib", &found, err);
            if (st == QS_OK && found) st = qs_manifest_check(&have, &want, ctx->rd, &matches, err);
        }
        st = qs_comm_agree(comm, st, err);
        if (st != QS_OK) goto done;
        qs_comm_bcast(comm, &matches, sizeof(matches), 0);
        if (matches) {
            qs_log_info(ctx->log, "calibrate: up to date, skipped");
            goto done;
        }
    }

    /* 3. my layers, neighbours in the pipeline */
    first = plan.first[rank];
    last = plan.first[rank + 1];
    nown = last - first;
    for (int r = rank - 1; r >= 0 && nown > 0; --r)
        if (plan.first[r + 1] > plan.first[r]) { prev = r; break; }
    for (int r = rank + 1; r < comm->size && nown > 0; ++r)
        if (plan.first[r + 1] > plan.first[r]) { next = r; break; }

    /* 4. resume point (rank 0 reads state.json), allocations, weights, checkpoint load */
    int64_t k0 = 0;
    if (rank == 0) {
        st = qs_rundir_mkdir(ctx->rd, "calib/ckpt", err);
        if (st == QS_OK) k0 = state_read(ctx->rd, ctx->config_hash, whash, nchunks);
    }
    st = qs_comm_agree(comm, st, err);
    if (st != QS_OK) goto done;
    qs_comm_bcast(comm, &k0, sizeof(k0), 0);
    if (nown > 0) {
        const int64_t rows = CS * T;
        int64_t dmax = d.hidden;
        if (d.heads * d.head_dim > dmax) dmax = d.heads * d.head_dim;
        if (d.inter > dmax) dmax = d.inter;
        lw = qs_calloc((size_t)nown, sizeof(*lw), err, "layer weights");
        acc = qs_calloc((size_t)nown, sizeof(*acc), err, "layer accumulators");
        xbuf[0] = qs_malloc(sizeof(float) * (size_t)(rows * d.hidden), err, "chunk buffer");
        xbuf[1] = qs_malloc(sizeof(float) * (size_t)(rows * d.hidden), err, "chunk buffer");
        tile = qs_malloc(sizeof(float) * (size_t)(dmax * dmax), err, "Hessian tile");
        pabs = qs_malloc(sizeof(float) * (size_t)dmax, err, "absmax partial");
        psq = qs_malloc(sizeof(double) * (size_t)dmax, err, "sumsq partial");
        ids = qs_malloc(sizeof(uint32_t) * (size_t)rows, err, "chunk tokens");
        ids32 = qs_malloc(sizeof(int32_t) * (size_t)T, err, "window tokens");
        if (!lw || !acc || !xbuf[0] || !xbuf[1] || !tile || !pabs || !psq || !ids || !ids32)
            st = QS_ERR_RUNTIME;
        if (st == QS_OK) st = qs_layer_workspace_init(&ws, &d, (int)CS, (int)T, err);
        for (int i = 0; i < nown && st == QS_OK; ++i) st = acc_init(&acc[i], &d, err);
        for (int i = 0; i < nown && st == QS_OK; ++i)
            st = qs_weights_load_layer(ctx->model, &d, first + i, &lw[i], err);
        if (st == QS_OK && first == 0)
            st = qs_weights_load_ends(ctx->model, &d, 1, 0, &ends, err);
    }
    st = qs_comm_agree(comm, st, err);
    if (st != QS_OK) goto done;
    if (k0 > 0) {
        /* a checkpoint that cannot be read on some rank restarts everyone from chunk 0 */
        qs_err lerr = {0};
        int bad = 0;
        for (int i = 0; i < nown && !bad; ++i)
            if (ckpt_read(ctx->rd, first + i, k0, &acc[i], &lerr) != QS_OK) bad = 1;
        if (qs_comm_any(comm, bad)) {
            qs_log_info(ctx->log, "calibrate: checkpoint at chunk %lld unusable (%s); restarting",
                        (long long)k0, bad ? lerr.msg : "on another rank");
            k0 = 0;
            for (int i = 0; i < nown && st == QS_OK; ++i) {
                acc_free(&acc[i]);
                st = acc_init(&acc[i], &d, err);
            }
            st = qs_comm_agree(comm, st, err);
            if (st != QS_OK) goto done;
        } else {
            qs_log_info(ctx->log, "calibrate: resuming at chunk %lld of %lld", (long long)k0,
                        (long long)nchunks);
        }
    }
    qs_log_info(ctx->log,
                "calibrate: %lld windows x %lld tokens in %lld chunks of %lld; rank %d owns "
                "layers [%d, %d)",
                (long long)S, (long long)T, (long long)nchunks, (long long)CS, rank, first, last);

    /* 5. the pipeline */
    hook_ctx hctx = {NULL, tile, pabs, psq, comm, {&sreq[0], &sreq[1], &rreq}};
    if (next < 0) hctx.poke[0] = hctx.poke[1] = NULL;
    if (prev < 0) hctx.poke[2] = NULL;
    qs_layer_hooks hooks = {stats_hook, &hctx};
    int64_t done_here = 0;
    qs_progress_begin(ctx->progress, nchunks, k0);
    for (int64_t c = k0; c < nchunks; ++c) {
        const int b = (int)(c % 2);
        const int boundary = every > 0 && (c + 1) % every == 0 && c + 1 < nchunks;
        const int64_t s0 = c * CS, ns = (S - s0 < CS) ? S - s0 : CS, rows = ns * T;
        const int tag = (int)(c % 30000);
        float *x = xbuf[b]; // (rows, hidden)
        if (nown > 0) {
            if (prev < 0) {
                qs_comm_wait(comm, &sreq[b]);
                for (int64_t s = 0; s < ns; ++s) {
                    qs_tokens_copy(&tok, offs[s0 + s], T, ids32);
                    for (int64_t t = 0; t < T; ++t) ids[s * T + t] = (uint32_t)ids32[t];
                }
                st = qs_embed_gather(ends.embed, d.vocab, d.hidden, ids, rows, x, err);
            } else {
                if (!rreq_posted) {
                    qs_comm_wait(comm, &sreq[b]);
                    st = qs_comm_irecv(comm, x, sizeof(float) * (size_t)(rows * d.hidden), prev,
                                       tag, &rreq, err);
                }
                if (st == QS_OK) qs_comm_wait(comm, &rreq);
                rreq_posted = 0;
                /* pre-post the next chunk's receive into the other buffer */
                if (st == QS_OK && c + 1 < nchunks && !boundary) {
                    const int64_t n1 = (S - s0 - ns < CS) ? S - s0 - ns : CS;
                    qs_comm_wait(comm, &sreq[1 - b]);
                    st = qs_comm_irecv(comm, xbuf[1 - b],
                                       sizeof(float) * (size_t)(n1 * T * d.hidden), prev,
                                       (int)((c + 1) % 30000), &rreq, err);
                    rreq_posted = st == QS_OK;
                }
            }
            const double tb = qs_log_now();
            for (int i = 0; i < nown && st == QS_OK; ++i) {
                hctx.acc = &acc[i];
                st = qs_layer_forward(&lw[i].w, &d, x, (int)ns, (int)T, &ws, &hooks, err);
                acc[i].tokens += rows;
            }
            if (ctx->busy) *ctx->busy += qs_log_now() - tb;
            if (st == QS_OK && next >= 0)
                st = qs_comm_isend(comm, x, sizeof(float) * (size_t)(rows * d.hidden), next, tag,
                                   &sreq[b], err);
            /* other ranks are blocked in the pipeline: a failure here aborts */
            if (st != QS_OK) qs_comm_abort(comm, err);
        }
        ++done_here;
        qs_progress_step(ctx->progress, c + 1, "chunk %lld/%lld", (long long)(c + 1),
                         (long long)nchunks);
        if (!boundary) continue;

        /* checkpoint boundary: drain, write, agree, state.json, stop check */
        qs_comm_wait(comm, &sreq[0]);
        qs_comm_wait(comm, &sreq[1]);
        for (int i = 0; i < nown && st == QS_OK; ++i)
            st = ckpt_write(ctx->rd, first + i, c + 1, &acc[i], err);
        st = qs_comm_agree(comm, st, err);
        if (st != QS_OK) goto done;
        if (rank == 0)
            st = state_write(ctx->rd, c + 1, ctx->config_hash, whash, nchunks, err);
        st = qs_comm_agree(comm, st, err);
        if (st != QS_OK) goto done;
        int want_stop = *ctx->stop || (stop_after > 0 && done_here >= stop_after);
        if (qs_comm_any(comm, want_stop)) {
            qs_log_info(ctx->log, "calibrate: stopped at checkpoint chunk %lld of %lld",
                        (long long)(c + 1), (long long)nchunks);
            st = QS_STOPPED;
            goto done;
        }
    }
    qs_comm_wait(comm, &sreq[0]);
    qs_comm_wait(comm, &sreq[1]);

    /* 6. outputs: each owner writes its layers, then rank 0 the manifest */
    for (int i = 0; i < nown && st == QS_OK; ++i) /* tile (dmax, dmax) is free again */
        st = layer_write(ctx->rd, first + i, &acc[i], T, S, tile, err);
    st = qs_comm_agree(comm, st, err);
    if (st != QS_OK) goto done;
    if (rank == 0) {
        for (int l = 0; l < L && st == QS_OK; ++l) {
            char rel[64];
            snprintf(rel, sizeof(rel), "calib/layer-%03d.h5", l);
            st = qs_manifest_add_output(&want, ctx->rd, rel, err);
        }
        if (st == QS_OK) st = qs_manifest_write(&want, ctx->rd, err);
        if (st == QS_OK) st = state_write(ctx->rd, -1, ctx->config_hash, whash, nchunks, err);
    }
    st = qs_comm_agree(comm, st, err);
    if (st != QS_OK) goto done;
    rss_report(ctx, first, nown, qs_log_now() - t0);
done:
    if (lw)
        for (int i = 0; i < nown; ++i) qs_layer_f32_free(&lw[i]);
    if (acc)
        for (int i = 0; i < nown; ++i) acc_free(&acc[i]);
    free(lw);
    free(acc);
    free(xbuf[0]);
    free(xbuf[1]);
    free(tile);
    free(pabs);
    free(psq);
    free(ids);
    free(ids32);
    free(offs);
    free(plantext);
    qs_ends_f32_free(&ends);
    qs_layer_workspace_free(&ws);
    qs_plan_free(&plan);
    qs_tokens_close(&tok);
    qs_manifest_free(&want);
    qs_manifest_free(&have);
    return st;
}
