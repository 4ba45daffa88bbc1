/* kl_probe.c: KL divergence of allocations from the float model, from cached float layer
 * inputs (see kl_probe.h). */
#include "kl_probe.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"
#include "text_tokens.h"

int64_t qs_kl_predictions(const qs_kl_probe *p) { return p->nwin * (p->env.seqlen - 1); }

void qs_kl_close(qs_kl_probe *p) {
    if (!p) return;
    for (int i = 0; i < p->nown; ++i) {
        if (p->lwf) qs_layer_f32_free(&p->lwf[i]);
        if (p->lww) qs_layer_f32_free(&p->lww[i]);
    }
    free(p->lwf);
    free(p->lww);
    free(p->cur);
    free(p->xin);
    free(p->lpf);
    free(p->logits);
    free(p->ids);
    free(p->ids32);
    qs_ends_f32_free(&p->ends);
    qs_layer_workspace_free(&p->ws);
    qs_tokens_close(&p->tok);
    qs_plan_free(&p->plan);
    memset(p, 0, sizeof(*p));
}

/* Token ids of windows [s0, s0 + ns) into p->ids (ns, T). */
static void kl_window_ids(qs_kl_probe *p, int64_t s0, int64_t ns) {
    const int64_t T = p->env.seqlen;
    for (int64_t s = 0; s < ns; ++s) {
        qs_tokens_copy(&p->tok, (s0 + s) * T, T, p->ids32);
        for (int64_t t = 0; t < T; ++t) p->ids[s * T + t] = (uint32_t)p->ids32[t];
    }
}

/* Float residual stream of windows [s0, s0 + ns) at the pass's first layer: the
 * embeddings in the float pass, the cached input of layer `start` otherwise. */
static qs_status kl_source(void *vp, int64_t c, int64_t s0, int64_t ns, float *x, qs_err *err) {
    qs_kl_probe *p = vp;
    (void)c;
    const int64_t T = p->env.seqlen, H = p->d.hidden;
    if (p->float_pass) {
        kl_window_ids(p, s0, ns);
        return qs_embed_gather(p->ends.embed, p->d.vocab, H, p->ids, ns * T, x, err);
    }
    const int i = p->start - p->first_layer;
    memcpy(x, p->xin + ((size_t)i * (size_t)p->nwin + (size_t)s0) * (size_t)(T * H),
           sizeof(float) * (size_t)(ns * T * H));
    return QS_OK;
}

/* Window w's logits (T, vocab) against the float log-probs: the float pass stores them,
 * a measuring pass adds sum_t KL(p_float,t || p_quant,t) to p->kl_sum. */
static void kl_window(qs_kl_probe *p, int64_t w) {
    const int64_t T = p->env.seqlen, V = p->d.vocab;
    float *ref = p->lpf + (size_t)w * (size_t)((T - 1) * V); // (T - 1, V)
    double win = 0.0;
    for (int64_t t = 0; t < T - 1; ++t) {
        const float *z = p->logits + (size_t)(t * V); // (V)
        float *lf = ref + (size_t)(t * V);            // (V)
        double m = z[0], s = 0.0;
        for (int64_t v = 1; v < V; ++v)
            if (z[v] > m) m = z[v];
        for (int64_t v = 0; v < V; ++v) s += exp((double)z[v] - m);
        const double lse = m + log(s);
        if (p->float_pass) {
            for (int64_t v = 0; v < V; ++v) lf[v] = (float)((double)z[v] - lse);
            continue;
        }
        double k = 0.0;
        for (int64_t v = 0; v < V; ++v) {
            const double a = (double)lf[v];
            k += exp(a) * (a - ((double)z[v] - lse));
        }
        win += k;
    }
    p->kl_sum += win;
}

/* This rank's layers of the pass (from `start` on), caching their inputs in the float
 * pass; on the last owner the head, window by window. */
static qs_status kl_compute(void *vp, int64_t c, int64_t s0, int64_t ns, float *x,
                            qs_err *err) {
    qs_kl_probe *p = vp;
    (void)c;
    qs_status st = QS_OK;
    const int64_t T = p->env.seqlen, H = p->d.hidden;
    const int i0 = p->start > p->first_layer ? p->start - p->first_layer : 0;
    for (int i = i0; i < p->nown && st == QS_OK; ++i) {
        if (p->float_pass)
            memcpy(p->xin + ((size_t)i * (size_t)p->nwin + (size_t)s0) * (size_t)(T * H), x,
                   sizeof(float) * (size_t)(ns * T * H));
        const qs_layer_f32 *lw = p->float_pass ? &p->lwf[i] : &p->lww[i];
        st = qs_layer_forward(&lw->w, &p->d, p->first_layer + i, x, (int)ns, (int)T, &p->ws,
                              NULL, err);
    }
    if (st != QS_OK || !p->logits) return st;
    if (!(p->float_pass && p->first_layer == 0 && p->nown > 0)) kl_window_ids(p, s0, ns);
    for (int64_t s = 0; s < ns && st == QS_OK; ++s) {
        st = qs_model_head(p->ends.final_norm, p->ends.lm_head, &p->d, x + s * T * H,
                           p->ids + s * T, 1, (int)T, p->logits, p->logits, NULL, p->env.pool,
                           err);
        if (st == QS_OK) kl_window(p, s0 + s);
    }
    return st;
}

/* One pass over every window from layer `start` (0 and float_pass for the float pass);
 * the last owner's sum reaches every rank in *sum. */
static qs_status kl_pass(qs_kl_probe *p, int start, double *sum, qs_err *err) {
    qs_status st = QS_OK;
    const qs_comm *comm = p->env.comm;
    const int R = comm->size, L = p->plan.nlayers;
    qs_layerpipe pipe;
    int *first = NULL;
    memset(&pipe, 0, sizeof(pipe));
    first = qs_malloc(sizeof(int) * (size_t)(R + 1), err, "KL pipeline");
    if (first) {
        /* ranks whose layers all lie before `start` sit this pass out */
        for (int r = 0; r <= R; ++r)
            first[r] = p->plan.first[r] > start ? p->plan.first[r] : start;
        first[R] = L;
        st = qs_layerpipe_init(&pipe, comm, first, p->nwin, p->env.cfg->calib.chunk_samples,
                               p->env.seqlen * p->d.hidden, err);
    } else {
        st = QS_ERR_RUNTIME;
    }
    st = qs_comm_agree(comm, st, err);
    if (st != QS_OK) goto done;
    p->start = start;
    p->kl_sum = 0.0;
    QS_CHECK(qs_layerpipe_run(&pipe, 0, qs_layerpipe_nchunks(&pipe), kl_source, kl_compute, p,
                              err));
    qs_layerpipe_drain(&pipe);
    double v[1] = {p->kl_sum};
    qs_comm_bcast(comm, v, sizeof(v), p->plan.layer_rank[L - 1]);
    *sum = v[0];
done:
    qs_layerpipe_free(&pipe);
    free(first);
    return st;
}

/* This rank's buffers and float layers; the ends it needs. */
static qs_status kl_load(qs_kl_probe *p, qs_err *err) {
    qs_status st = QS_OK;
    const int64_t T = p->env.seqlen, CS = p->env.cfg->calib.chunk_samples;
    const qs_model_dims *d = &p->d;
    const int L = p->plan.nlayers;
    const int is_first = p->nown > 0 && p->first_layer == 0;
    const int is_last = p->nown > 0 && p->first_layer + p->nown == L;
    p->ids = qs_malloc(sizeof(uint32_t) * (size_t)(CS * T), err, "KL tokens");
    p->ids32 = qs_malloc(sizeof(int32_t) * (size_t)T, err, "KL tokens");
    if (!p->ids || !p->ids32) return QS_ERR_RUNTIME;
    if (p->nown == 0) return QS_OK;
    p->lwf = qs_calloc((size_t)p->nown, sizeof(*p->lwf), err, "KL layers");
    p->lww = qs_calloc((size_t)p->nown, sizeof(*p->lww), err, "KL layers");
    p->cur = qs_calloc((size_t)p->nown, sizeof(*p->cur), err, "KL layers");
    p->xin = qs_malloc(sizeof(float) * (size_t)p->nown * (size_t)(p->nwin * T * d->hidden), err,
                       "KL cached layer inputs");
    if (!p->lwf || !p->lww || !p->cur || !p->xin) return QS_ERR_RUNTIME;
    if (is_last) {
        p->lpf = qs_malloc(sizeof(float) * (size_t)(p->nwin * (T - 1)) * (size_t)d->vocab, err,
                           "KL float log-probabilities");
        p->logits = qs_malloc(sizeof(float) * (size_t)(T * d->vocab), err, "KL logits");
        if (!p->lpf || !p->logits) return QS_ERR_RUNTIME;
    }
    QS_CHECK(qs_layer_workspace_init(&p->ws, d, (int)CS, (int)T, err));
    QS_CHECK(qs_layer_workspace_set_pool(&p->ws, p->env.pool, err));
    for (int i = 0; i < p->nown; ++i) {
        QS_CHECK(qs_weights_load_layer(p->env.model, d, p->first_layer + i, &p->lwf[i], err));
        QS_CHECK(qs_layer_f32_alloc(d, &p->lww[i], err));
        memcpy(p->lww[i].buf, p->lwf[i].buf, sizeof(float) * (size_t)p->lwf[i].nfloats);
    }
    if (is_first || is_last)
        QS_CHECK(qs_weights_load_ends(p->env.model, d, is_first, is_last, &p->ends, err));
done:
    return st;
}

qs_status qs_kl_open(qs_kl_probe *p, const qs_eval_env *env, const char *dir, qs_err *err) {
    qs_status st = QS_OK;
    const qs_comm *comm = env->comm;
    memset(p, 0, sizeof(*p));
    p->env = *env;
    snprintf(p->dir, sizeof(p->dir), "%s", dir);
    openblas_set_num_threads(1);
    qs_model_dims_from_hf(&p->d, &env->model->hf);
    st = qs_model_dims_check(&p->d, err);
    if (st == QS_OK && (env->seqlen < 2 || env->cfg->calib.chunk_samples <= 0))
        st = QS_FAIL(err, QS_ERR_INPUT, "KL probe: calib.seqlen must be >= 2");
    if (st == QS_OK) st = qs_token_source_open(&env->src, p->d.vocab, &p->tok, err);
    if (st == QS_OK) {
        p->nwin = p->tok.count / env->seqlen;
        if (env->max_windows > 0 && p->nwin > env->max_windows) p->nwin = env->max_windows;
        if (p->nwin == 0)
            st = QS_FAIL(err, QS_ERR_INPUT,
                         "%s: %lld tokens, shorter than one window of %lld (KL probe)",
                         p->tok.path, (long long)p->tok.count, (long long)env->seqlen);
    }
    if (st == QS_OK) st = qs_plan_compute(&env->model->hf, env->cfg, comm->size, &p->plan, err);
    if (st == QS_OK) {
        p->first_layer = p->plan.first[comm->rank];
        p->nown = p->plan.first[comm->rank + 1] - p->first_layer;
        st = kl_load(p, err);
    }
    st = qs_comm_agree(comm, st, err);
    if (st != QS_OK) return st;
    double unused;
    p->float_pass = 1;
    st = kl_pass(p, 0, &unused, err);
    p->float_pass = 0;
    return st;
}

/* Rebuilds the working copy of every own layer from `start` on whose row of al changed. */
static qs_status kl_apply(qs_kl_probe *p, const qs_alloc *al, int start, qs_err *err) {
    qs_status st = QS_OK;
    for (int i = 0; i < p->nown && st == QS_OK; ++i) {
        const int l = p->first_layer + i;
        if (l < start || memcmp(p->cur[i], al->cand[l], sizeof(p->cur[i])) == 0) continue;
        char rel[64], path[QS_PATH_MAX];
        memcpy(p->lww[i].buf, p->lwf[i].buf, sizeof(float) * (size_t)p->lwf[i].nfloats);
        memset(p->cur[i], 0, sizeof(p->cur[i])); /* float until the candidates are in */
        qs_rundir_layer_rel(rel, sizeof(rel), p->dir, l);
        st = qs_rundir_path(p->env.rd, rel, path, sizeof(path), err);
        if (st == QS_OK)
            st = qs_weights_apply_recon_lins(
                &p->lww[i], &p->d, path, (const char(*)[QS_QUANT_NAME_MAX])al->cand[l], err);
        if (st == QS_OK) memcpy(p->cur[i], al->cand[l], sizeof(p->cur[i]));
    }
    return st;
}

qs_status qs_kl_measure(qs_kl_probe *p, const qs_alloc *al, double *kl, qs_err *err) {
    const int L = p->plan.nlayers;
    int start = L;
    *kl = 0.0;
    if (!al || al->nlayers != L)
        return QS_FAIL(err, QS_ERR_INTERNAL, "internal error: KL probe allocation size");
    for (int l = 0; l < L && start == L; ++l)
        for (int k = 0; k < QS_LIN_COUNT; ++k)
            if (al->cand[l][k][0]) start = l;
    if (start == L) return QS_OK; /* nothing quantized: the float model itself */
    qs_status st = qs_comm_agree(p->env.comm, kl_apply(p, al, start, err), err);
    if (st != QS_OK) return st;
    double sum = 0.0;
    st = kl_pass(p, start, &sum, err);
    if (st == QS_OK) *kl = sum / (double)qs_kl_predictions(p);
    return st;
}
