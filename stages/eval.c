/* eval.c (stage and `qshard eval`): perplexity of the model on eval.tokens with the
 * fixtures' protocol: consecutive non-overlapping windows of eval.seqlen tokens from 0
 * (remainder dropped, at most eval.max_windows), each window predicts tokens 1..T-1,
 * ppl = exp(sum NLL / count).
 *
 * Distributed like calibrate: layers in contiguous ranges (the plan computed for this rank
 * count), chunks of calib.chunk_samples windows flow rank to rank with nonblocking sends;
 * the first rank embeds, the last applies final norm + lm_head + NLL and sums the NLL in
 * window order in double, so the result is the same at any rank count.
 * Weights: the float checkpoint, or one candidate's dequantized weights from the
 * reconstruct stage's layer files (--weights recon:w4g128: every layer uniformly; the
 * norms, embeddings and head stay float). A source only changes how a rank fills its
 * layers' f32 buffers (load_layer below), so later sources (a run directory's final
 * allocation, a GPTQ export) plug in there.
 * Output: run/eval.json {"weights", "ppl", "nll_sum", "tokens", "windows", "seqlen"}.
 */
#include <cblas.h>
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "qsource.h"
#include "tokens.h"
#include "quant.h"
#include "kernels.h"
#include "layer_plan.h"
#include "stage.h"
#include "weights.h"

_Static_assert(QS_EVAL_NAME_MAX == QS_QUANT_NAME_MAX, "candidate name sizes agree");

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
    if (s && (strcmp(s, "gptq") == 0 || strncmp(s, "gptq:", 5) == 0)) {
        out->source = QS_EVAL_SRC_GPTQ;
        if (s[4] == ':') {
            if (!s[5] || strlen(s + 5) >= sizeof(out->gptq_dir))
                return QS_FAIL(err, QS_ERR_INPUT, "--weights: '%s': expected gptq:DIR", s);
            snprintf(out->gptq_dir, sizeof(out->gptq_dir), "%s", s + 5);
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
        if (!ok)
            return QS_FAIL(err, QS_ERR_INPUT,
                           "--weights: '%s': expected recon:w<bits>g<group> (e.g. recon:w4g128)",
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
                   "export)",
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
        snprintf(buf, n, w->gptq_dir[0] ? "gptq:%s" : "gptq", w->gptq_dir);
    else
        snprintf(buf, n, "float");
    return buf;
}

/* A plain tensor from the written files (h5 / gptq sources); they hold every tensor. */
static qs_status src_tensor(const qs_qsource *q, const char *name, float *out, int64_t n,
                            qs_err *err) {
    int found = 0;
    qs_status st = qs_qsource_tensor(q, name, out, n, &found, err);
    if (st == QS_OK && !found)
        st = QS_FAIL(err, QS_ERR_INPUT, "%s: tensor %s is missing", q->dir, name);
    return st;
}

/* Fills layer `layer`'s f32 buffer from the chosen source. */
static qs_status load_layer(const qs_stage_ctx *ctx, const qs_eval_weights *which,
                            const qs_qsource *qsrc, const qs_model_dims *d, int layer,
                            qs_layer_f32 *lw, qs_err *err) {
    qs_status st = qs_weights_load_layer(ctx->model, d, layer, lw, err);
    if (st != QS_OK || which->source == QS_EVAL_SRC_FLOAT) return st;
    if (which->source == QS_EVAL_SRC_H5 || which->source == QS_EVAL_SRC_GPTQ) {
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
    snprintf(rel, sizeof(rel), "%s/layer-%03d.h5", dir, layer);
    st = qs_rundir_path(ctx->rd, rel, path, sizeof(path), err);
    if (st == QS_OK && !qs_path_exists(path))
        st = QS_FAIL(err, QS_ERR_INPUT, "%s: missing; run the %s stage first", path,
                     strcmp(dir, "final") == 0 ? "final reconstruct" : "reconstruct");
    if (st != QS_OK) return st;
    if (which->source == QS_EVAL_SRC_ALLOC)
        return qs_weights_apply_recon_lins(
            lw, d, path, (const char(*)[QS_QUANT_NAME_MAX])which->alloc->cand[layer], err);
    return qs_weights_apply_recon(lw, d, path, which->candidate, err);
}

qs_status qs_eval_run(const qs_stage_ctx *ctx, qs_eval_weights which, qs_eval_result *res,
                      qs_err *err) {
    qs_status st = QS_OK;
    const qs_config *cfg = ctx->cfg;
    const qs_comm *comm = ctx->comm;
    const int rank = comm->rank;
    qs_tokens tok;
    qs_plan plan;
    qs_model_dims d;
    qs_layer_workspace ws;
    qs_ends_f32 ends;
    qs_layer_f32 *lw = NULL;
    float *xbuf[2] = {NULL, NULL};
    float *logits = NULL;
    double *nll = NULL;
    uint32_t *ids = NULL;
    int32_t *ids32 = NULL;
    qs_comm_req sreq[2], rreq;
    int nown = 0, first = 0, prev = -1, next = -1, lastr = 0, rreq_posted = 0;
    double sums[1] = {0.0};
    memset(&tok, 0, sizeof(tok));
    memset(&plan, 0, sizeof(plan));
    memset(&ws, 0, sizeof(ws));
    memset(&ends, 0, sizeof(ends));
    memset(sreq, 0, sizeof(sreq));
    memset(&rreq, 0, sizeof(rreq));
    memset(res, 0, sizeof(*res));
    openblas_set_num_threads(1);
    qs_alloc final_alloc;
    memset(&final_alloc, 0, sizeof(final_alloc));
    qs_qsource qsrc;
    memset(&qsrc, 0, sizeof(qsrc));
    char wname[QS_PATH_MAX + 16];
    qs_eval_weights_name(&which, wname, sizeof(wname));

    const int L = (int)ctx->model->hf.num_hidden_layers;
    const int64_t T = cfg->eval.seqlen, CS = cfg->calib.chunk_samples;
    int64_t nwin = 0;

    /* 1. inputs, agreed before anything blocks */
    qs_model_dims_from_hf(&d, &ctx->model->hf);
    st = qs_model_dims_check(&d, err);
    if (st == QS_OK && (!cfg->eval.tokens || !cfg->eval.tokens[0]))
        st = QS_FAIL(err, QS_ERR_INPUT, "eval.tokens: a token file is required for eval");
    if (st == QS_OK && (T < 2 || CS <= 0))
        st = QS_FAIL(err, QS_ERR_INPUT, "eval.seqlen must be >= 2 and calib.chunk_samples > 0");
    if (st == QS_OK) st = qs_tokens_open(&tok, cfg->eval.tokens, d.vocab, err);
    if (st == QS_OK) {
        nwin = tok.count / T;
        if (cfg->eval.max_windows > 0 && nwin > cfg->eval.max_windows)
            nwin = cfg->eval.max_windows;
        if (nwin == 0)
            st = QS_FAIL(err, QS_ERR_INPUT, "%s: %lld tokens, shorter than one window of %lld",
                         cfg->eval.tokens, (long long)tok.count, (long long)T);
    }
    if (st == QS_OK && which.source == QS_EVAL_SRC_FINAL) {
        /* the run's searched allocation, from final/ (sequential) or recon/ (float inputs) */
        char path[QS_PATH_MAX];
        st = qs_rundir_path(ctx->rd, "search/allocation.json", path, sizeof(path), err);
        if (st == QS_OK && !qs_path_exists(path))
            st = QS_FAIL(err, QS_ERR_INPUT, "%s: missing; run the search stage first", path);
        if (st == QS_OK) st = qs_alloc_read_json(&final_alloc, path, L, err);
        if (st == QS_OK) {
            which.source = QS_EVAL_SRC_ALLOC;
            which.alloc = &final_alloc;
            snprintf(which.dir, sizeof(which.dir), "%s",
                     cfg->reconstruct.inputs == QS_INPUTS_QUANTIZED ? "final" : "recon");
        }
    }
    if (st == QS_OK && which.source == QS_EVAL_SRC_ALLOC && !which.alloc &&
        which.alloc_path[0]) {
        /* an allocation file: weights from final/ (sequential) or recon/ (float inputs) */
        if (!qs_path_exists(which.alloc_path))
            st = QS_FAIL(err, QS_ERR_INPUT, "%s: allocation file not found", which.alloc_path);
        if (st == QS_OK) st = qs_alloc_read_json(&final_alloc, which.alloc_path, L, err);
        if (st == QS_OK) {
            which.alloc = &final_alloc;
            snprintf(which.dir, sizeof(which.dir), "%s",
                     cfg->reconstruct.inputs == QS_INPUTS_QUANTIZED ? "final" : "recon");
        }
    }
    if (st == QS_OK && (which.source == QS_EVAL_SRC_H5 || which.source == QS_EVAL_SRC_GPTQ)) {
        char path[QS_PATH_MAX];
        if (which.source == QS_EVAL_SRC_GPTQ && which.gptq_dir[0])
            snprintf(path, sizeof(path), "%s", which.gptq_dir);
        else
            st = qs_rundir_path(ctx->rd, which.source == QS_EVAL_SRC_H5 ? "out" : "export", path,
                                sizeof(path), err);
        if (st == QS_OK && !qs_path_exists(path))
            st = QS_FAIL(err, QS_ERR_INPUT, "%s: missing; %s", path,
                         which.source == QS_EVAL_SRC_GPTQ && which.gptq_dir[0]
                             ? "--weights gptq:DIR needs a GPTQ export directory"
                             : "run the write stage first (needs search/allocation.json)");
        if (st == QS_OK)
            st = which.source == QS_EVAL_SRC_H5 ? qs_qsource_open_h5(&qsrc, path, err)
                                                : qs_qsource_open_gptq(&qsrc, path, err);
    }
    if (st == QS_OK && which.source == QS_EVAL_SRC_ALLOC &&
        (!which.alloc || which.alloc->nlayers != L))
        st = QS_FAIL(err, QS_ERR_INTERNAL, "eval: allocation missing or of the wrong size");
    if (st == QS_OK) st = qs_plan_compute(&ctx->model->hf, cfg, comm->size, &plan, err);
    if (st == QS_OK) {
        first = plan.first[rank];
        nown = plan.first[rank + 1] - first;
        lastr = plan.layer_rank[L - 1];
        for (int r = rank - 1; r >= 0 && nown > 0; --r)
            if (plan.first[r + 1] > plan.first[r]) { prev = r; break; }
        for (int r = rank + 1; r < comm->size && nown > 0; ++r)
            if (plan.first[r + 1] > plan.first[r]) { next = r; break; }
    }
    if (st == QS_OK && nown > 0) {
        const int64_t rows = CS * T;
        lw = qs_calloc((size_t)nown, sizeof(*lw), err, "layer weights");
        xbuf[0] = qs_malloc(sizeof(float) * (size_t)(rows * d.hidden), err, "chunk buffer");
        xbuf[1] = qs_malloc(sizeof(float) * (size_t)(rows * d.hidden), err, "chunk buffer");
        ids = qs_malloc(sizeof(uint32_t) * (size_t)rows, err, "chunk tokens");
        ids32 = qs_malloc(sizeof(int32_t) * (size_t)T, err, "window tokens");
        if (!lw || !xbuf[0] || !xbuf[1] || !ids || !ids32) st = QS_ERR_RUNTIME;
        if (st == QS_OK && next < 0) {
            logits = qs_malloc(sizeof(float) * (size_t)(T * d.vocab), err, "logits tile");
            nll = qs_malloc(sizeof(double) * (size_t)(CS * (T - 1)), err, "NLL");
            if (!logits || !nll) st = QS_ERR_RUNTIME;
        }
        if (st == QS_OK) st = qs_layer_workspace_init(&ws, &d, (int)CS, (int)T, err);
        for (int i = 0; i < nown && st == QS_OK; ++i)
            st = load_layer(ctx, &which, &qsrc, &d, first + i, &lw[i], err);
        if (st == QS_OK && (prev < 0 || next < 0))
            st = qs_weights_load_ends(ctx->model, &d, prev < 0, next < 0, &ends, err);
        if (st == QS_OK && (which.source == QS_EVAL_SRC_H5 || which.source == QS_EVAL_SRC_GPTQ)) {
            /* embeddings, final norm and head as written */
            if (ends.embed) st = src_tensor(&qsrc, "model.embed_tokens.weight", ends.embed,
                                            d.vocab * d.hidden, err);
            if (st == QS_OK && ends.final_norm)
                st = src_tensor(&qsrc, "model.norm.weight", ends.final_norm, d.hidden, err);
            if (st == QS_OK && ends.lm_head && ends.lm_head != ends.embed)
                st = src_tensor(&qsrc, "lm_head.weight", ends.lm_head, d.vocab * d.hidden, err);
        }
    }
    st = qs_comm_agree(comm, st, err);
    if (st != QS_OK) goto done;

    /* 2. the pipeline */
    const int64_t nchunks = (nwin + CS - 1) / CS;
    double nll_sum = 0.0;
    qs_progress_begin(ctx->progress, nchunks, 0);
    for (int64_t c = 0; c < nchunks && nown > 0; ++c) {
        const int b = (int)(c % 2);
        const int64_t w0 = c * CS, ns = nwin - w0 < CS ? nwin - w0 : CS, rows = ns * T;
        const int tag = (int)(c % 30000);
        float *x = xbuf[b]; // (rows, hidden)
        if (prev < 0 || next < 0) {
            for (int64_t s = 0; s < ns; ++s) {
                qs_tokens_copy(&tok, (w0 + s) * T, T, ids32);
                for (int64_t t = 0; t < T; ++t) ids[s * T + t] = (uint32_t)ids32[t];
            }
        }
        if (prev < 0) {
            qs_comm_wait(comm, &sreq[b]);
            st = qs_embed_gather(ends.embed, d.vocab, d.hidden, ids, rows, x, err);
        } else {
            if (!rreq_posted) {
                qs_comm_wait(comm, &sreq[b]);
                st = qs_comm_irecv(comm, x, sizeof(float) * (size_t)(rows * d.hidden), prev, tag,
                                   &rreq, err);
            }
            if (st == QS_OK) qs_comm_wait(comm, &rreq);
            rreq_posted = 0;
            if (st == QS_OK && c + 1 < nchunks) {
                const int64_t n1 = nwin - w0 - ns < CS ? nwin - w0 - ns : CS;
                qs_comm_wait(comm, &sreq[1 - b]);
                st = qs_comm_irecv(comm, xbuf[1 - b], sizeof(float) * (size_t)(n1 * T * d.hidden),
                                   prev, (int)((c + 1) % 30000), &rreq, err);
                rreq_posted = st == QS_OK;
            }
        }
        for (int i = 0; i < nown && st == QS_OK; ++i)
            st = qs_layer_forward(&lw[i].w, &d, x, (int)ns, (int)T, &ws, NULL, err);
        if (st == QS_OK && next >= 0) {
            st = qs_comm_isend(comm, x, sizeof(float) * (size_t)(rows * d.hidden), next, tag,
                               &sreq[b], err);
        } else if (st == QS_OK) {
            st = qs_model_head(ends.final_norm, ends.lm_head, &d, x, ids, (int)ns, (int)T, logits,
                               NULL, nll, err);
            for (int64_t i = 0; i < ns * (T - 1) && st == QS_OK; ++i) nll_sum += nll[i];
        }
        if (st != QS_OK) qs_comm_abort(comm, err); /* neighbours are blocked in the pipeline */
        qs_progress_step(ctx->progress, c + 1, "chunk %lld/%lld", (long long)(c + 1),
                         (long long)nchunks);
    }
    qs_comm_wait(comm, &sreq[0]);
    qs_comm_wait(comm, &sreq[1]);
    sums[0] = nll_sum;
    qs_comm_bcast(comm, sums, sizeof(sums), lastr);
    res->nll_sum = sums[0];
    res->windows = nwin;
    res->tokens = nwin * (T - 1);
    res->seqlen = T;
    res->ppl = exp(res->nll_sum / (double)res->tokens);

    /* 3. eval.json (rank 0) */
    if (rank == 0) {
        char path[QS_PATH_MAX];
        char *text = NULL;
        cJSON *o = cJSON_CreateObject();
        if (o) {
            cJSON_AddStringToObject(o, "weights", wname);
            cJSON_AddNumberToObject(o, "ppl", res->ppl);
            cJSON_AddNumberToObject(o, "nll_sum", res->nll_sum);
            cJSON_AddNumberToObject(o, "tokens", (double)res->tokens);
            cJSON_AddNumberToObject(o, "windows", (double)res->windows);
            cJSON_AddNumberToObject(o, "seqlen", (double)T);
            cJSON_AddStringToObject(o, "tokens_file", cfg->eval.tokens);
            text = cJSON_Print(o);
            cJSON_Delete(o);
        }
        if (!text) st = QS_FAIL(err, QS_ERR_RUNTIME, "out of memory (eval.json)");
        if (st == QS_OK) st = qs_rundir_mkdir(ctx->rd, "", err);
        const char *rel = which.out_rel[0] ? which.out_rel : "eval.json";
        if (st == QS_OK) {
            /* the result may go to a subdirectory (e.g. search/...) */
            char dir[QS_PATH_MAX];
            snprintf(dir, sizeof(dir), "%s", rel);
            char *slash = strrchr(dir, '/');
            if (slash) {
                *slash = '\0';
                st = qs_rundir_mkdir(ctx->rd, dir, err);
            }
        }
        if (st == QS_OK) st = qs_rundir_path(ctx->rd, rel, path, sizeof(path), err);
        if (st == QS_OK) st = qs_write_file_atomic(path, text, strlen(text), err);
        cJSON_free(text);
    }
    st = qs_comm_agree(comm, st, err);
    if (st == QS_OK)
        qs_log_info(ctx->log, "eval: perplexity %.6f over %lld windows x %lld tokens (rank %d "
                    "peak RSS %.1f MiB)",
                    res->ppl, (long long)nwin, (long long)T, rank,
                    (double)qs_log_peak_rss() / 1048576.0);
done:
    if (lw)
        for (int i = 0; i < nown; ++i) qs_layer_f32_free(&lw[i]);
    free(lw);
    free(xbuf[0]);
    free(xbuf[1]);
    free(logits);
    free(nll);
    free(ids);
    free(ids32);
    qs_ends_f32_free(&ends);
    qs_layer_workspace_free(&ws);
    qs_plan_free(&plan);
    qs_tokens_close(&tok);
    qs_alloc_free(&final_alloc);
    qs_qsource_close(&qsrc);
    return st;
}

/* The driver's eval stage: the written model (the GPTQ export when output.gptq_export, else
 * the HDF5 shards) -> eval.json, and with eval.float the unquantized checkpoint ->
 * eval-float.json. A result file whose weights and protocol match is kept (resume): inside
 * one run directory the config is fixed (run.json) and the written files are
 * deterministic, so a matching file is this run's result. */
static int eval_done(const qs_stage_ctx *ctx, const char *rel, const char *weights) {
    char path[QS_PATH_MAX], *text = NULL;
    qs_err e = {0};
    int ok = 0;
    if (qs_rundir_path(ctx->rd, rel, path, sizeof(path), &e) != QS_OK || !qs_path_exists(path))
        return 0;
    {
        /* older than the written files (write ran again): evaluate again */
        char man[QS_PATH_MAX];
        struct stat a, b;
        if (qs_rundir_path(ctx->rd, "out/manifest.json", man, sizeof(man), &e) == QS_OK &&
            stat(path, &a) == 0 && stat(man, &b) == 0 &&
            (a.st_mtim.tv_sec < b.st_mtim.tv_sec ||
             (a.st_mtim.tv_sec == b.st_mtim.tv_sec && a.st_mtim.tv_nsec < b.st_mtim.tv_nsec)))
            return 0;
    }
    if (qs_read_file(path, &text, NULL, &e) != QS_OK) return 0;
    cJSON *o = cJSON_Parse(text);
    const cJSON *w = cJSON_GetObjectItemCaseSensitive(o, "weights");
    const cJSON *T = cJSON_GetObjectItemCaseSensitive(o, "seqlen");
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(o, "tokens_file");
    ok = cJSON_IsString(w) && strcmp(w->valuestring, weights) == 0 && cJSON_IsNumber(T) &&
         (int64_t)T->valuedouble == ctx->cfg->eval.seqlen && cJSON_IsString(f) &&
         strcmp(f->valuestring, ctx->cfg->eval.tokens) == 0;
    cJSON_Delete(o);
    free(text);
    return ok;
}

qs_status qs_stage_eval_run(const qs_stage_ctx *ctx, const qs_stage_args *args, qs_err *err) {
    (void)args;
    qs_status st = QS_OK;
    qs_eval_result res;
    qs_eval_weights w;
    memset(&w, 0, sizeof(w));
    w.source = ctx->cfg->output.gptq_export ? QS_EVAL_SRC_GPTQ : QS_EVAL_SRC_H5;
    char wname[64];
    qs_eval_weights_name(&w, wname, sizeof(wname));
    /* every rank reads the same files; the decision is agreed so all take one branch */
    int done = eval_done(ctx, "eval.json", wname);
    if (!qs_comm_any(ctx->comm, !done)) {
        qs_log_info(ctx->log, "eval: %s already evaluated (eval.json)", wname);
    } else {
        st = qs_eval_run(ctx, w, &res, err);
        if (st != QS_OK) return st;
    }
    if (ctx->cfg->eval.eval_float) {
        qs_eval_weights f = QS_EVAL_FLOAT;
        snprintf(f.out_rel, sizeof(f.out_rel), "eval-float.json");
        done = eval_done(ctx, "eval-float.json", "float");
        if (!qs_comm_any(ctx->comm, !done))
            qs_log_info(ctx->log, "eval: float already evaluated (eval-float.json)");
        else
            st = qs_eval_run(ctx, f, &res, err);
    }
    return st;
}
