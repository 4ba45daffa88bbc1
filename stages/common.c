/* common.c: steps shared by the stages (see common.h) and the unit helpers of stage.h. */
#include "common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "hessian.h"
#include "sha256.h"
#include "text_tokens.h"
#include "weights.h"

qs_status qs_stage_set_units(qs_stage_open *o, int n, const char *pattern, qs_err *err) {
    free(o->unit_name);
    o->unit_name = NULL;
    o->nunits = 0;
    if (n <= 0) return QS_OK;
    o->unit_name = qs_calloc((size_t)n, sizeof(*o->unit_name), err, "unit names");
    if (!o->unit_name) return QS_ERR_RUNTIME;
    for (int u = 0; u < n; ++u) snprintf(o->unit_name[u], QS_UNIT_NAME_MAX, pattern, u);
    o->nunits = n;
    return QS_OK;
}

qs_status qs_stage_unit_done(const qs_stage_ctx *ctx, int unit, const char *const *rels,
                             int nrels, qs_err *err) {
    if (!ctx->units || unit < 0 || unit >= ctx->units->n)
        return QS_FAIL(err, QS_ERR_INTERNAL, "%s: unit %d does not exist", ctx->dir, unit);
    qs_status st = qs_unit_record_write(ctx->rd, ctx->dir, ctx->units->name[unit],
                                        ctx->unit_key, rels, nrels, err);
    if (st == QS_OK) qs_stage_test_hold(ctx, "unit");
    return st;
}

/* SHA-256 of the chosen windows: seqlen, then every window's token ids (u32 LE). */
static void windows_hash(qs_stage_windows *w) {
    qs_sha256 s;
    qs_sha256_init(&s);
    qs_sha256_update(&s, &w->seqlen, sizeof(w->seqlen));
    for (int64_t k = 0; k < w->nsamples; ++k)
        for (int64_t i = 0; i < w->seqlen; ++i) {
            uint32_t id = qs_tokens_get(&w->tok, w->offs[k] + i);
            unsigned char b[4] = {(unsigned char)id, (unsigned char)(id >> 8),
                                  (unsigned char)(id >> 16), (unsigned char)(id >> 24)};
            qs_sha256_update(&s, b, 4);
        }
    qs_sha256_final_hex(&s, w->hash);
}

qs_status qs_stage_windows_open(const qs_stage_ctx *ctx, const char *why,
                                qs_stage_windows *w, qs_err *err) {
    const qs_config *cfg = ctx->cfg;
    memset(w, 0, sizeof(*w));
    w->nsamples = cfg->calib.nsamples;
    w->seqlen = cfg->calib.seqlen;
    const qs_token_source src = qs_config_calib_source(cfg);
    if (!qs_token_source_given(&src))
        return QS_FAIL(err, QS_ERR_INPUT,
                       "calib.tokens or calib.text: calibration tokens are required for %s", why);
    if (w->seqlen <= 0 || w->nsamples <= 0 || cfg->calib.chunk_samples <= 0)
        return QS_FAIL(err, QS_ERR_INPUT,
                       "calib: nsamples, seqlen and chunk_samples must be positive");
    qs_status st = qs_token_source_open(&src, ctx->model->hf.vocab_size, &w->tok, err);
    if (st != QS_OK) return st;
    w->offs = qs_malloc(sizeof(int64_t) * (size_t)w->nsamples, err, "window offsets");
    if (!w->offs) return QS_ERR_RUNTIME;
    st = qs_tokens_windows(&w->tok, cfg->calib.sampling, w->nsamples, w->seqlen,
                           cfg->calib.seed, cfg->calib.offsets_file, w->offs, err);
    if (st == QS_OK) windows_hash(w);
    return st;
}

void qs_stage_windows_close(qs_stage_windows *w) {
    free(w->offs);
    w->offs = NULL;
    qs_tokens_close(&w->tok);
}

qs_status qs_stages_check_inputs(const qs_stage_ctx *ctx, char *warning, size_t n,
                                 qs_err *err) {
    const qs_config *cfg = ctx->cfg;
    if (n) warning[0] = '\0';
    /* the tensors first read late (search probes, eval, write): NaN/Inf found now, not after
     * calibrate and reconstruct; split over the ranks. The layers' own tensors and the
     * embeddings are checked as calibrate converts them, at its start. */
    static const char *const late[] = {"model.norm.weight", "lm_head.weight"};
    for (size_t i = 0; i < sizeof(late) / sizeof(late[0]); ++i) {
        qs_status fs = qs_weights_check_finite(ctx->model, late[i], ctx->comm->rank,
                                               ctx->comm->size, err);
        if (fs != QS_OK) return fs;
    }
    qs_stage_windows w;
    qs_status st = qs_stage_windows_open(ctx, "calibrate", &w, err);
    if (st == QS_OK) {
        const double need = (double)w.nsamples * (double)w.seqlen;
        if (need > (double)w.tok.count) {
            snprintf(warning, n,
                     "calib: %lld windows x %lld tokens = %.0f tokens from %s, which holds "
                     "%lld: calibration reads the same tokens %.1f times on average",
                     (long long)w.nsamples, (long long)w.seqlen, need, w.tok.path,
                     (long long)w.tok.count, need / (double)w.tok.count);
            qs_log_info(ctx->log, "warning: %s", warning);
        }
    }
    qs_stage_windows_close(&w);
    const qs_token_source esrc = qs_config_eval_source(cfg);
    if (st != QS_OK || !qs_token_source_given(&esrc)) return st;
    qs_tokens tok;
    memset(&tok, 0, sizeof(tok));
    if (cfg->eval.seqlen < 2) return QS_FAIL(err, QS_ERR_INPUT, "eval.seqlen must be >= 2");
    st = qs_token_source_open(&esrc, ctx->model->hf.vocab_size, &tok, err);
    if (st == QS_OK && tok.count / cfg->eval.seqlen == 0)
        st = QS_FAIL(err, QS_ERR_INPUT, "%s: %lld tokens, shorter than one window of eval.seqlen %lld",
                     tok.path, (long long)tok.count, (long long)cfg->eval.seqlen);
    qs_tokens_close(&tok);
    return st;
}

qs_status qs_stage_plan_read(const qs_stage_ctx *ctx, qs_plan *plan, qs_err *err) {
    qs_status st = QS_OK;
    char path[QS_PATH_MAX], *text = NULL;
    const int L = (int)ctx->model->hf.num_hidden_layers;
    QS_CHECK(qs_rundir_path(ctx->rd, QS_REL_PLAN, path, sizeof(path), err));
    QS_CHECK(qs_read_file(path, &text, NULL, err));
    QS_CHECK(qs_plan_from_json(plan, text, path, err));
    if (plan->nranks != ctx->comm->size || plan->nlayers != L)
        QS_THROW(err, QS_ERR_INPUT, "%s: plan for %d ranks / %d layers, run has %d / %d", path,
                 plan->nranks, plan->nlayers, ctx->comm->size, L);
done:
    free(text);
    return st;
}

qs_status qs_stage_hash_rel(const qs_stage_ctx *ctx, const char *rel, const char *hint,
                            char hex[65], qs_err *err) {
    char path[QS_PATH_MAX];
    qs_status st = qs_rundir_path(ctx->rd, rel, path, sizeof(path), err);
    if (st != QS_OK) return st;
    if (!qs_path_exists(path)) return QS_FAIL(err, QS_ERR_INPUT, "%s: missing; %s", path, hint);
    return qs_sha256_file(path, hex, err);
}

#define ROUND_TAG 4243

/* Rank r > 0 of a round: its partial to rank 0, blocking (reqs NULL) or not. */
static qs_status round_send(const qs_comm *comm, const qs_stage_part *part, qs_comm_req *reqs,
                            qs_err *err) {
    const int64_t d = part->d;
    const void *buf[QS_STAGE_ROUND_MSGS] = {part->hess, part->absmax, part->sumsq};
    const size_t n[QS_STAGE_ROUND_MSGS] = {0, sizeof(float) * (size_t)d,
                                           sizeof(double) * (size_t)d};
    qs_status st = QS_OK;
    /* the Hessian partial's upper triangle only: the rest is not part of it */
    if (reqs)
        st = qs_comm_isend_upper(comm, part->hess, d, 0, ROUND_TAG, &reqs[0], err);
    else
        qs_comm_send_upper(comm, part->hess, d, 0, ROUND_TAG);
    for (int k = 1; k < (part->absmax ? QS_STAGE_ROUND_MSGS : 1) && st == QS_OK; ++k) {
        if (reqs)
            st = qs_comm_isend(comm, buf[k], n[k], 0, ROUND_TAG, &reqs[k], err);
        else
            qs_comm_send(comm, buf[k], n[k], 0, ROUND_TAG);
    }
    return st;
}

qs_status qs_stage_round_add(const qs_comm *comm, int nhave, qs_pool *pool, qs_stage_part *part,
                             const qs_stage_sums *sums, qs_comm_req *reqs, qs_err *err) {
    const int64_t d = part->d;
    qs_status st = QS_OK;
    if (comm->rank > 0) return comm->rank < nhave ? round_send(comm, part, reqs, err) : QS_OK;
    for (int r = 0; r < nhave; ++r) {
        if (r > 0) { /* rank 0's own partial (the round's first chunk) was added */
            qs_comm_recv_upper(comm, part->hess, d, r, ROUND_TAG);
            if (part->absmax) {
                qs_comm_recv(comm, part->absmax, sizeof(float) * (size_t)d, r, ROUND_TAG);
                qs_comm_recv(comm, part->sumsq, sizeof(double) * (size_t)d, r, ROUND_TAG);
            }
        }
        if (st != QS_OK) continue;
        st = qs_hess_add_pool(pool, sums->hess, part->hess, d, err);
        if (part->absmax) qs_chan_stats_add(sums->absmax, sums->sumsq, part->absmax, part->sumsq, d);
    }
    return st;
}

void qs_stage_round_wait(const qs_comm *comm, qs_comm_req *reqs) {
    for (int k = 0; k < QS_STAGE_ROUND_MSGS; ++k) qs_comm_wait(comm, &reqs[k]);
}

void qs_stage_rss_report(const qs_stage_ctx *ctx, qs_mem_stage stage, int first, int count,
                         long long start_rss, double seconds) {
    const int rank = ctx->comm->rank, P = ctx->comm->size;
    const char *label = stage == QS_MEM_RECONSTRUCT ? "reconstruct" : "calibrate";
    qs_mem_estimate m =
        qs_mem_for_stage(&ctx->model->hf, ctx->cfg, rank, P, first, count, stage);
    long long peak = qs_log_peak_rss();
    qs_log_info(ctx->log, "%s: rank %d: %.2f s, peak RSS %.1f MiB (formula %.1f MiB)", label,
                rank, seconds, (double)peak / 1048576.0, (double)m.total / 1048576.0);
    char rel[320], sub[256], path[QS_PATH_MAX], text[512];
    qs_err e = {0};
    snprintf(sub, sizeof(sub), "%s/rss", ctx->dir);
    snprintf(rel, sizeof(rel), "%s/rank-%03d.json", sub, rank);
    int n = snprintf(text, sizeof(text),
                     "{\n  \"rank\": %d,\n  \"nranks\": %d,\n  \"first\": %d,\n  \"count\": "
                     "%d,\n  \"start_rss_bytes\": %lld,\n  \"peak_rss_bytes\": %lld,\n  "
                     "\"formula_bytes\": %lld,\n  \"seconds\": %.3f\n}\n",
                     rank, P, first, count, start_rss, peak, (long long)m.total, seconds);
    if (qs_rundir_mkdir(ctx->rd, sub, &e) != QS_OK ||
        qs_rundir_path(ctx->rd, rel, path, sizeof(path), &e) != QS_OK ||
        qs_write_file_atomic(path, text, (size_t)n, &e) != QS_OK)
        qs_log_info(ctx->log, "%s: rank %d: cannot record peak RSS: %s", label, rank, e.msg);
}

qs_status qs_stage_report_busy(const qs_stage_ctx *ctx, double busy, qs_err *err) {
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
        qs_log_info(ctx->log, "%s: busy time per rank: %s", ctx->dir, line);
    }
    if (ctx->busy) *ctx->busy += busy;
    free(all);
    free(counts);
    return QS_OK;
}

int qs_stage_stop_after(const char *name) {
    const char *s = getenv(name);
    return s && *s ? atoi(s) : 0;
}

void qs_stage_test_hold(const qs_stage_ctx *ctx, const char *point) {
    const char *want = getenv("QS_TEST_HOLD"), *marks = getenv("QS_TEST_HOLD_DIR");
    char here[128], path[4096];
    if (!want || !marks || !ctx->dir) return;
    snprintf(here, sizeof(here), "%s:%s", ctx->dir, point);
    if (strcmp(want, here) != 0) return;
    snprintf(path, sizeof(path), "%s/%s.%s.%d", marks, ctx->dir, point, ctx->comm->rank);
    FILE *f = fopen(path, "w");
    if (!f) return; /* no place to say so: the test, waiting for the file, fails */
    fclose(f);
    const struct timespec tick = {0, 10 * 1000 * 1000};
    while (access(path, F_OK) == 0 && !(ctx->stop && *ctx->stop)) nanosleep(&tick, NULL);
}

void qs_stage_skipped(const qs_stage_ctx *ctx, const char *label, const char *what,
                      int64_t count, int64_t of, const char *why) {
    if (count <= 0) return;
    qs_log_info(ctx->log, "%s: skipped %lld of %lld %s: %s", label, (long long)count,
                (long long)of, what, why);
    if (!ctx->skipped) return;
    snprintf(ctx->skipped->what, sizeof(ctx->skipped->what), "%s", what);
    snprintf(ctx->skipped->why, sizeof(ctx->skipped->why), "%s", why);
    ctx->skipped->count = count;
    ctx->skipped->of = of;
}

int qs_stage_no_skip(const char *what) {
    const char *s = getenv("QS_NO_SKIP");
    const size_t n = strlen(what);
    while (s && *s) {
        const char *e = strchr(s, ',');
        const size_t len = e ? (size_t)(e - s) : strlen(s);
        if ((len == 3 && strncmp(s, "all", 3) == 0) || (len == n && strncmp(s, what, n) == 0))
            return 1;
        s = e ? e + 1 : NULL;
    }
    return 0;
}
