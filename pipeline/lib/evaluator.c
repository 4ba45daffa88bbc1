/* evaluator.c: perplexity from any weight source through the layer pipeline (see
 * evaluator.h). */
#include "evaluator.h"

#include <cblas.h>
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf_quant.h"
#include "kernels.h"
#include "layer_plan.h"
#include "layerpipe.h"
#include "qsource.h"
#include "quant.h"
#include "text_tokens.h"
#include "tokens.h"
#include "weights.h"

_Static_assert(QS_EVAL_NAME_MAX == QS_QUANT_NAME_MAX, "candidate name sizes agree");

void qs_eval_env_for_eval(qs_eval_env *env, const qs_config *cfg) {
    env->src = qs_config_eval_source(cfg);
    env->seqlen = cfg->eval.seqlen;
    env->max_windows = cfg->eval.max_windows;
}

qs_status qs_eval_parse_weights(const char *s, qs_eval_weights *out, qs_err *err) {
    memset(out, 0, sizeof(*out));
    if (s && strcmp(s, "float") == 0) {
        out->source = QS_EVAL_SRC_FLOAT;
        return QS_OK;
    }
    if (s && strcmp(s, "final") == 0) {
        out->source = QS_EVAL_SRC_FINAL;
        return QS_OK;
    }
    if (s && strcmp(s, "h5") == 0) {
        out->source = QS_EVAL_SRC_H5;
        return QS_OK;
    }
    if (s && (strcmp(s, "gguf") == 0 || strncmp(s, "gguf:", 5) == 0)) {
        out->source = QS_EVAL_SRC_GGUF;
        if (s[4] == ':') {
            if (!s[5] || strlen(s + 5) >= sizeof(out->gguf_file))
                return QS_FAIL(err, QS_ERR_INPUT, "--weights: '%s': expected gguf:FILE", s);
            snprintf(out->gguf_file, sizeof(out->gguf_file), "%s", s + 5);
        }
        return QS_OK;
    }
    static const struct { const char *name; qs_eval_source src; } exports[] = {
        {"gptq", QS_EVAL_SRC_GPTQ}, {"ct", QS_EVAL_SRC_CT}};
    for (size_t i = 0; s && i < sizeof(exports) / sizeof(exports[0]); ++i) {
        const size_t k = strlen(exports[i].name);
        if (strncmp(s, exports[i].name, k) != 0 || (s[k] != '\0' && s[k] != ':')) continue;
        out->source = exports[i].src;
        if (s[k] == ':') {
            if (!s[k + 1] || strlen(s + k + 1) >= sizeof(out->export_dir))
                return QS_FAIL(err, QS_ERR_INPUT, "--weights: '%s': expected %s:DIR", s,
                               exports[i].name);
            snprintf(out->export_dir, sizeof(out->export_dir), "%s", s + k + 1);
        }
        return QS_OK;
    }
    if (s && strncmp(s, "recon:", 6) == 0) {
        const char *c = s + 6, *g = strchr(c, 'g');
        char *end = NULL;
        long bits = c[0] == 'w' ? strtol(c + 1, &end, 10) : 0;
        long group = 0;
        int ok = c[0] == 'w' && end == g && g != NULL && bits >= QS_QUANT_MIN_BITS &&
                 bits <= QS_QUANT_MAX_BITS;
        if (ok) {
            group = strtol(g + 1, &end, 10);
            ok = end != g + 1 && *end == '\0' && (group == -1 || group >= 1) &&
                 strlen(c) < QS_EVAL_NAME_MAX;
        }
        qs_gguf_type gt;
        if (!ok && qs_gguf_type_parse(c, &gt) == 0 && qs_gguf_quant_supported(gt) &&
            strcmp(c, qs_gguf_type_name(gt)) == 0)
            ok = 1; /* a GGUF candidate, e.g. recon:Q4_K */
        if (!ok)
            return QS_FAIL(err, QS_ERR_INPUT,
                           "--weights: '%s': expected recon:w<bits>g<group> or recon:<GGUF type> (e.g. "
                           "recon:w4g128, recon:Q4_K)",
                           s);
        out->source = QS_EVAL_SRC_RECON;
        snprintf(out->candidate, sizeof(out->candidate), "%s", c);
        return QS_OK;
    }
    if (s && strncmp(s, "alloc:", 6) == 0) {
        if (!s[6] || strlen(s + 6) >= sizeof(out->alloc_path))
            return QS_FAIL(err, QS_ERR_INPUT,
                           "--weights: '%s': expected alloc:PATH (an allocation .json file)", s);
        out->source = QS_EVAL_SRC_ALLOC;
        snprintf(out->alloc_path, sizeof(out->alloc_path), "%s", s + 6);
        return QS_OK;
    }
    return QS_FAIL(err, QS_ERR_INPUT,
                   "--weights: '%s' is not supported; use 'float' (the unquantized checkpoint), "
                   "'final' (the run's searched allocation), 'recon:CANDIDATE' (a candidate "
                   "of the reconstruct stage, e.g. recon:w4g128), 'alloc:PATH' (an "
                   "allocation file), 'h5' (the written shards), 'gptq' or 'gptq:DIR' (a GPTQ "
                   "export), 'ct' or 'ct:DIR' (a compressed-tensors export), 'gguf' or "
                   "'gguf:FILE' (a GGUF file)",
                   s ? s : "");
}

const char *qs_eval_weights_name(const qs_eval_weights *w, char *buf, size_t n) {
    if (w->source == QS_EVAL_SRC_RECON)
        snprintf(buf, n, "recon:%s", w->candidate);
    else if (w->source == QS_EVAL_SRC_FINAL)
        snprintf(buf, n, "final");
    else if (w->source == QS_EVAL_SRC_ALLOC && w->alloc_path[0])
        snprintf(buf, n, "alloc:%s", w->alloc_path);
    else if (w->source == QS_EVAL_SRC_ALLOC)
        snprintf(buf, n, "alloc:%s", w->dir);
    else if (w->source == QS_EVAL_SRC_H5)
        snprintf(buf, n, "h5");
    else if (w->source == QS_EVAL_SRC_GPTQ)
        snprintf(buf, n, w->export_dir[0] ? "gptq:%s" : "gptq", w->export_dir);
    else if (w->source == QS_EVAL_SRC_CT)
        snprintf(buf, n, w->export_dir[0] ? "ct:%s" : "ct", w->export_dir);
    else if (w->source == QS_EVAL_SRC_GGUF)
        snprintf(buf, n, w->gguf_file[0] ? "gguf:%s" : "gguf", w->gguf_file);
    else
        snprintf(buf, n, "float");
    return buf;
}

/* 1 if the weights come from written files (qsrc): h5, gptq, ct, gguf. */
static int from_files(qs_eval_source src) {
    return src == QS_EVAL_SRC_H5 || src == QS_EVAL_SRC_GPTQ || src == QS_EVAL_SRC_CT ||
           src == QS_EVAL_SRC_GGUF;
}

/* A plain tensor from the written files (h5 / gptq / ct sources); they hold every tensor. */
static qs_status src_tensor(const qs_qsource *q, const char *name, float *out, int64_t n,
                            qs_err *err) {
    int found = 0;
    qs_status st = qs_qsource_tensor(q, name, out, n, &found, err);
    if (st == QS_OK && !found)
        st = QS_FAIL(err, QS_ERR_INPUT, "%s: tensor %s is missing", q->dir, name);
    return st;
}

/* Fills layer `layer`'s f32 buffer from the chosen source. */
static qs_status load_layer(const qs_eval_env *env, const qs_eval_weights *which,
                            const qs_qsource *qsrc, const qs_model_dims *d, int layer,
                            qs_layer_f32 *lw, qs_err *err) {
    qs_status st = qs_weights_load_layer(env->model, d, layer, lw, err);
    if (st != QS_OK || which->source == QS_EVAL_SRC_FLOAT) return st;
    if (from_files(which->source)) {
        /* the written files: every linear they hold in quantized form, dequantized */
        for (int k = 0; k < QS_LIN_COUNT && st == QS_OK; ++k) {
            char module[256];
            int64_t d_out, d_in;
            int found = 0;
            qs_linear_tensor_name(module, sizeof(module), layer, (qs_linear_kind)k, 0);
            module[strlen(module) - 7] = '\0'; /* drop ".weight" */
            qs_linear_shape(d, (qs_linear_kind)k, &d_out, &d_in);
            float *dst = qs_layer_f32_mut(lw, qs_linear_weight(&lw->w, (qs_linear_kind)k)); // (d_out, d_in)
            st = qs_qsource_linear(qsrc, module, d_out, d_in, dst, &found, err);
            if (st == QS_OK && !found) { /* left in float: its plain weight */
                strcat(module, ".weight");
                st = src_tensor(qsrc, module, dst, d_out * d_in, err);
            }
        }
        /* norms and biases: the written bytes too */
        const float *const plain[] = {lw->w.input_norm, lw->w.post_norm, lw->w.q_b, lw->w.k_b,
                                      lw->w.v_b, lw->w.o_b, lw->w.gate_b, lw->w.up_b, lw->w.down_b};
        const int kind[] = {-1, -2, QS_LIN_Q, QS_LIN_K, QS_LIN_V, QS_LIN_O, QS_LIN_GATE, QS_LIN_UP,
                            QS_LIN_DOWN};
        for (size_t i = 0; i < sizeof(plain) / sizeof(plain[0]) && st == QS_OK; ++i) {
            if (!plain[i]) continue;
            char name[256];
            int64_t n = d->hidden, d_in;
            if (kind[i] < 0)
                qs_norm_tensor_name(name, sizeof(name), layer,
                                    kind[i] == -1 ? QS_NORM_INPUT : QS_NORM_POST_ATTN);
            else {
                qs_linear_tensor_name(name, sizeof(name), layer, (qs_linear_kind)kind[i], 1);
                qs_linear_shape(d, (qs_linear_kind)kind[i], &n, &d_in);
            }
            st = src_tensor(qsrc, name, qs_layer_f32_mut(lw, plain[i]), n, err);
        }
        return st;
    }
    char rel[64], path[QS_PATH_MAX];
    const char *dir = which->source == QS_EVAL_SRC_ALLOC ? which->dir : "recon";
    qs_rundir_layer_rel(rel, sizeof(rel), dir, layer);
    st = qs_rundir_path(env->rd, rel, path, sizeof(path), err);
    if (st == QS_OK && !qs_path_exists(path))
        st = QS_FAIL(err, QS_ERR_INPUT, "%s: missing; run the %s stage first", path,
                     strcmp(dir, "final") == 0 ? "final reconstruct" : "reconstruct");
    if (st != QS_OK) return st;
    if (which->source == QS_EVAL_SRC_ALLOC)
        return qs_weights_apply_recon_lins(
            lw, d, path, (const char(*)[QS_QUANT_NAME_MAX])which->alloc->cand[layer], err);
    return qs_weights_apply_recon(lw, d, path, which->candidate, err);
}


/* Resolves "final" and "alloc:PATH" into an allocation (read into *a) over recon/ or
 * final/, and opens the written files for "h5" / "gptq" / "ct" / "gguf" (into *qsrc). */
static qs_status resolve_source(const qs_eval_env *env, qs_eval_weights *which, qs_alloc *a,
                                qs_qsource *qsrc, qs_err *err) {
    qs_status st = QS_OK;
    const int L = (int)env->model->hf.num_hidden_layers;
    const char *mode_dir =
        env->cfg->reconstruct.inputs == QS_INPUTS_QUANTIZED ? "final" : "recon";
    char path[QS_PATH_MAX];
    if (which->source == QS_EVAL_SRC_FINAL) {
        /* the run's searched allocation, from final/ (sequential) or recon/ (float inputs) */
        QS_CHECK(qs_rundir_path(env->rd, QS_REL_ALLOCATION, path, sizeof(path), err));
        if (!qs_path_exists(path))
            QS_THROW(err, QS_ERR_INPUT, "%s: missing; run the search stage first", path);
        QS_CHECK(qs_alloc_read_json(a, path, L, err));
        which->source = QS_EVAL_SRC_ALLOC;
        which->alloc = a;
        snprintf(which->dir, sizeof(which->dir), "%s", mode_dir);
    } else if (which->source == QS_EVAL_SRC_ALLOC && !which->alloc && which->alloc_path[0]) {
        /* an allocation file: weights from final/ (sequential) or recon/ (float inputs) */
        if (!qs_path_exists(which->alloc_path))
            QS_THROW(err, QS_ERR_INPUT, "%s: allocation file not found", which->alloc_path);
        QS_CHECK(qs_alloc_read_json(a, which->alloc_path, L, err));
        which->alloc = a;
        snprintf(which->dir, sizeof(which->dir), "%s", mode_dir);
    } else if (which->source == QS_EVAL_SRC_H5 || which->source == QS_EVAL_SRC_GPTQ ||
               which->source == QS_EVAL_SRC_CT) {
        const int h5 = which->source == QS_EVAL_SRC_H5, ct = which->source == QS_EVAL_SRC_CT;
        if (!h5 && which->export_dir[0])
            snprintf(path, sizeof(path), "%s", which->export_dir);
        else
            QS_CHECK(qs_rundir_path(env->rd, h5 ? QS_DIR_OUT : ct ? QS_DIR_EXPORT_CT : QS_DIR_EXPORT,
                                    path, sizeof(path), err));
        if (!qs_path_exists(path))
            QS_THROW(err, QS_ERR_INPUT, "%s: missing; %s", path,
                     !h5 && which->export_dir[0]
                         ? (ct ? "--weights ct:DIR needs a compressed-tensors export directory"
                               : "--weights gptq:DIR needs a GPTQ export directory")
                     : ct ? "run the write stage with compressed-tensors in output.formats"
                          : "run the write stage first (needs search/allocation.json)");
        QS_CHECK(h5   ? qs_qsource_open_h5(qsrc, path, err)
                 : ct ? qs_qsource_open_ct(qsrc, path, err)
                      : qs_qsource_open_gptq(qsrc, path, err));
    } else if (which->source == QS_EVAL_SRC_GGUF) {
        if (which->gguf_file[0])
            snprintf(path, sizeof(path), "%s", which->gguf_file);
        else
            QS_CHECK(qs_rundir_path(env->rd, QS_REL_GGUF, path, sizeof(path), err));
        if (!qs_path_exists(path))
            QS_THROW(err, QS_ERR_INPUT, "%s: missing; %s", path,
                     which->gguf_file[0] ? "--weights gguf:FILE needs a GGUF file"
                                         : "run the write stage with gguf in output.formats");
        QS_CHECK(qs_qsource_open_gguf(qsrc, path, err));
    }
    if (which->source == QS_EVAL_SRC_ALLOC && (!which->alloc || which->alloc->nlayers != L))
        QS_THROW(err, QS_ERR_INTERNAL, "eval: allocation missing or of the wrong size");
done:
    return st;
}

/* One rank's part of an evaluation: its layers, the ends it needs, the windows. */
typedef struct eval_rank {
    const qs_eval_env *env;
    qs_model_dims d;
    qs_tokens tok;
    int64_t nwin;
    int nown;
    int first_layer;
    qs_layer_f32 *lw;     /* (nown) */
    qs_ends_f32 ends;     /* embeddings on the first rank, norm + head on the last */
    qs_layer_workspace ws;
    uint32_t *ids;        /* (chunk x T) */
    int32_t *ids32;       /* (T) */
    float *logits;        /* (T, vocab), last rank */
    double *nll;          /* (chunk x (T - 1)), last rank */
    double nll_sum;       /* last rank: summed in window order */
    int64_t nchunks;
    int is_first;         /* fills ids in the source step */
} eval_rank;

static void eval_rank_free(eval_rank *r) {
    if (r->lw)
        for (int i = 0; i < r->nown; ++i) qs_layer_f32_free(&r->lw[i]);
    free(r->lw);
    free(r->ids);
    free(r->ids32);
    free(r->logits);
    free(r->nll);
    qs_ends_f32_free(&r->ends);
    qs_layer_workspace_free(&r->ws);
    qs_tokens_close(&r->tok);
}

/* The windows of env: opens the token file and counts whole windows. */
static qs_status open_windows(eval_rank *r, qs_err *err) {
    const qs_eval_env *env = r->env;
    const int64_t T = env->seqlen;
    if (!qs_token_source_given(&env->src))
        return QS_FAIL(err, QS_ERR_INPUT, "%s.tokens or %s.text: tokens are required for eval",
                       env->src.key, env->src.key);
    if (T < 2 || env->cfg->calib.chunk_samples <= 0)
        return QS_FAIL(err, QS_ERR_INPUT,
                       "eval.seqlen must be >= 2 and calib.chunk_samples > 0");
    qs_status st = qs_token_source_open(&env->src, r->d.vocab, &r->tok, err);
    if (st != QS_OK) return st;
    r->nwin = r->tok.count / T;
    if (env->max_windows > 0 && r->nwin > env->max_windows) r->nwin = env->max_windows;
    if (r->nwin == 0)
        return QS_FAIL(err, QS_ERR_INPUT, "%s: %lld tokens, shorter than one window of eval.seqlen %lld",
                       r->tok.path, (long long)r->tok.count, (long long)T);
    return QS_OK;
}

/* This rank's layers from the source, the ends it needs, its buffers. */
static qs_status load_rank(eval_rank *r, const qs_eval_weights *which, const qs_qsource *qsrc,
                           const qs_layerpipe *pipe, qs_err *err) {
    qs_status st = QS_OK;
    const int64_t T = r->env->seqlen, CS = r->env->cfg->calib.chunk_samples;
    const qs_model_dims *d = &r->d;
    const int is_first = pipe->prev < 0, is_last = pipe->next < 0;
    r->lw = qs_calloc((size_t)r->nown, sizeof(*r->lw), err, "layer weights");
    r->ids = qs_malloc(sizeof(uint32_t) * (size_t)(CS * T), err, "chunk tokens");
    r->ids32 = qs_malloc(sizeof(int32_t) * (size_t)T, err, "window tokens");
    if (!r->lw || !r->ids || !r->ids32) return QS_ERR_RUNTIME;
    if (is_last) {
        r->logits = qs_malloc(sizeof(float) * (size_t)(T * d->vocab), err, "logits tile");
        r->nll = qs_malloc(sizeof(double) * (size_t)(CS * (T - 1)), err, "NLL");
        if (!r->logits || !r->nll) return QS_ERR_RUNTIME;
    }
    QS_CHECK(qs_layer_workspace_init(&r->ws, d, (int)CS, (int)T, err));
    QS_CHECK(qs_layer_workspace_set_pool(&r->ws, r->env->pool, err));
    for (int i = 0; i < r->nown; ++i)
        QS_CHECK(load_layer(r->env, which, qsrc, d, r->first_layer + i, &r->lw[i], err));
    if (is_first || is_last)
        QS_CHECK(qs_weights_load_ends(r->env->model, d, is_first, is_last, &r->ends, err));
    if (from_files(which->source)) {
        /* embeddings, final norm and head as written */
        qs_ends_f32 *e = &r->ends;
        if (e->embed)
            QS_CHECK(src_tensor(qsrc, "model.embed_tokens.weight", e->embed,
                                d->vocab * d->hidden, err));
        if (e->final_norm)
            QS_CHECK(src_tensor(qsrc, "model.norm.weight", e->final_norm, d->hidden, err));
        if (e->lm_head && e->lm_head != e->embed)
            QS_CHECK(src_tensor(qsrc, "lm_head.weight", e->lm_head, d->vocab * d->hidden,
                                err));
    }
done:
    return st;
}

/* Token ids of windows [s0, s0 + ns) into r->ids (ns, T). */
static void window_ids(eval_rank *r, int64_t s0, int64_t ns) {
    const int64_t T = r->env->seqlen;
    for (int64_t s = 0; s < ns; ++s) {
        qs_tokens_copy(&r->tok, (s0 + s) * T, T, r->ids32);
        for (int64_t t = 0; t < T; ++t) r->ids[s * T + t] = (uint32_t)r->ids32[t];
    }
}

/* Pipeline source (first rank): the windows' embeddings. */
static qs_status chunk_source(void *vr, int64_t c, int64_t s0, int64_t ns, float *x,
                              qs_err *err) {
    eval_rank *r = vr;
    (void)c;
    window_ids(r, s0, ns);
    return qs_embed_gather(r->ends.embed, r->d.vocab, r->d.hidden, r->ids,
                           ns * r->env->seqlen, x, err);
}

/* Pipeline step: this rank's layers; on the last rank the head and the NLL sum. */
static qs_status chunk_compute(void *vr, int64_t c, int64_t s0, int64_t ns, float *x,
                               qs_err *err) {
    eval_rank *r = vr;
    const int64_t T = r->env->seqlen;
    qs_status st = QS_OK;
    for (int i = 0; i < r->nown && st == QS_OK; ++i)
        st = qs_layer_forward(&r->lw[i].w, &r->d, r->first_layer + i, x, (int)ns, (int)T, &r->ws,
                              NULL, err);
    if (st == QS_OK && r->logits) {
        if (!r->is_first) window_ids(r, s0, ns); /* the first rank filled them already */
        st = qs_model_head(r->ends.final_norm, r->ends.lm_head, &r->d, x, r->ids, (int)ns,
                           (int)T, r->logits, NULL, r->nll, r->env->pool, err);
        for (int64_t i = 0; i < ns * (T - 1) && st == QS_OK; ++i) r->nll_sum += r->nll[i];
    }
    if (st == QS_OK)
        qs_progress_step(r->env->progress, c + 1, "chunk %lld/%lld", (long long)(c + 1),
                         (long long)r->nchunks);
    return st;
}

qs_status qs_eval_perplexity(const qs_eval_env *env, const qs_eval_weights *which_in,
                             qs_eval_result *res, qs_err *err) {
    qs_status st = QS_OK;
    const qs_comm *comm = env->comm;
    const int L = (int)env->model->hf.num_hidden_layers;
    qs_eval_weights which = *which_in;
    eval_rank r;
    qs_plan plan;
    qs_layerpipe pipe;
    qs_alloc alloc;
    qs_qsource qsrc;
    memset(&r, 0, sizeof(r));
    memset(&plan, 0, sizeof(plan));
    memset(&pipe, 0, sizeof(pipe));
    memset(&alloc, 0, sizeof(alloc));
    memset(&qsrc, 0, sizeof(qsrc));
    memset(res, 0, sizeof(*res));
    openblas_set_num_threads(1);
    r.env = env;

    /* 1. inputs, agreed before anything blocks */
    qs_model_dims_from_hf(&r.d, &env->model->hf);
    st = qs_model_dims_check(&r.d, err);
    if (st == QS_OK) st = open_windows(&r, err);
    if (st == QS_OK) st = resolve_source(env, &which, &alloc, &qsrc, err);
    if (st == QS_OK) st = qs_plan_compute(&env->model->hf, env->cfg, comm->size, &plan, err);
    if (st == QS_OK)
        st = qs_layerpipe_init(&pipe, comm, plan.first, r.nwin, env->cfg->calib.chunk_samples,
                               env->seqlen * r.d.hidden, err);
    if (st == QS_OK) {
        r.first_layer = plan.first[comm->rank];
        r.nown = plan.first[comm->rank + 1] - r.first_layer;
        r.nchunks = qs_layerpipe_nchunks(&pipe);
        r.is_first = pipe.prev < 0;
    }
    if (st == QS_OK && pipe.active) st = load_rank(&r, &which, &qsrc, &pipe, err);
    st = qs_comm_agree(comm, st, err);
    if (st != QS_OK) goto done;

    /* 2. the pipeline; the last rank's sum reaches everyone */
    qs_progress_begin(env->progress, r.nchunks, 0);
    QS_CHECK(qs_layerpipe_run(&pipe, 0, r.nchunks, chunk_source, chunk_compute, &r, err));
    qs_layerpipe_drain(&pipe);
    double sums[1] = {r.nll_sum};
    qs_comm_bcast(comm, sums, sizeof(sums), plan.layer_rank[L - 1]);
    res->nll_sum = sums[0];
    res->windows = r.nwin;
    res->tokens = r.nwin * (env->seqlen - 1);
    res->seqlen = env->seqlen;
    res->ppl = exp(res->nll_sum / (double)res->tokens);
    if (env->log)
        qs_log_info(env->log,
                    "eval: perplexity %.6f over %lld windows x %lld tokens (rank %d peak RSS "
                    "%.1f MiB)",
                    res->ppl, (long long)r.nwin, (long long)env->seqlen, comm->rank,
                    (double)qs_log_peak_rss() / 1048576.0);
done:
    eval_rank_free(&r);
    qs_layerpipe_free(&pipe);
    qs_plan_free(&plan);
    qs_alloc_free(&alloc);
    qs_qsource_close(&qsrc);
    return st;
}

qs_status qs_eval_write_json(const qs_eval_env *env, const qs_eval_weights *which,
                             const qs_eval_result *res, const char *rel, qs_err *err) {
    qs_status st = QS_OK;
    if (env->comm->rank == 0) {
        char path[QS_PATH_MAX], wname[QS_PATH_MAX + 16], dir[QS_PATH_MAX];
        char *text = NULL;
        qs_eval_weights_name(which, wname, sizeof(wname));
        cJSON *o = cJSON_CreateObject();
        if (o) {
            cJSON_AddStringToObject(o, "weights", wname);
            cJSON_AddNumberToObject(o, "ppl", res->ppl);
            cJSON_AddNumberToObject(o, "nll_sum", res->nll_sum);
            cJSON_AddNumberToObject(o, "tokens", (double)res->tokens);
            cJSON_AddNumberToObject(o, "windows", (double)res->windows);
            cJSON_AddNumberToObject(o, "seqlen", (double)res->seqlen);
            cJSON_AddStringToObject(o, "tokens_file", qs_token_source_path(&env->src));
            text = cJSON_Print(o);
            cJSON_Delete(o);
        }
        if (!text) st = QS_FAIL(err, QS_ERR_RUNTIME, "out of memory (%s)", rel);
        /* the result may go to a subdirectory */
        snprintf(dir, sizeof(dir), "%s", rel);
        char *slash = strrchr(dir, '/');
        if (slash) *slash = '\0';
        if (st == QS_OK) st = qs_rundir_mkdir(env->rd, slash ? dir : "", err);
        if (st == QS_OK) st = qs_rundir_path(env->rd, rel, path, sizeof(path), err);
        if (st == QS_OK) st = qs_write_file_atomic(path, text, strlen(text), err);
        cJSON_free(text);
    }
    return qs_comm_agree(env->comm, st, err);
}
