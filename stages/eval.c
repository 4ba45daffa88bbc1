/* eval.c (stage): perplexity of the written model — the served format's file: the GGUF file
 * with search.serve llamacpp, else the GPTQ export when written, else the compressed-tensors
 * export when written (the same codes as a GPTQ export would hold), else the GGUF file when
 * written, else the HDF5 shards — on eval.tokens -> run/eval.json, and with eval.float of the float
 * checkpoint -> run/eval-float.json: two units. The evaluation itself is
 * lib/evaluator.h. Inputs: the model fingerprint, the written files (out/manifest.json)
 * and the eval windows (their content's SHA-256).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "candidates.h"
#include "common.h"
#include "evaluator.h"
#include "sha256.h"
#include "text_tokens.h"
#include "tokens.h"

/* SHA-256 of the evaluation windows: seqlen, then the token ids (u32 LE) of every whole
 * window eval reads. QS_ERR_INPUT for a missing or unreadable token file. */
static qs_status eval_windows_hash(const qs_stage_ctx *ctx, char hex[65], qs_err *err) {
    const qs_config *cfg = ctx->cfg;
    qs_tokens tok;
    memset(&tok, 0, sizeof(tok));
    if (cfg->eval.seqlen < 2)
        return QS_FAIL(err, QS_ERR_INPUT, "eval.seqlen must be >= 2");
    const qs_token_source src = qs_config_eval_source(cfg);
    qs_status st = qs_token_source_open(&src, ctx->model->hf.vocab_size, &tok, err);
    if (st != QS_OK) return st;
    int64_t n = tok.count / cfg->eval.seqlen;
    if (cfg->eval.max_windows > 0 && n > cfg->eval.max_windows) n = cfg->eval.max_windows;
    qs_sha256 s;
    qs_sha256_init(&s);
    qs_sha256_update(&s, &cfg->eval.seqlen, sizeof(cfg->eval.seqlen));
    for (int64_t i = 0; i < n * cfg->eval.seqlen; ++i) {
        uint32_t id = qs_tokens_get(&tok, i);
        unsigned char b[4] = {(unsigned char)id, (unsigned char)(id >> 8),
                              (unsigned char)(id >> 16), (unsigned char)(id >> 24)};
        qs_sha256_update(&s, b, 4);
    }
    qs_sha256_final_hex(&s, hex);
    qs_tokens_close(&tok);
    return QS_OK;
}

static qs_status eval_open(const qs_stage_ctx *ctx, int pass, void **state, qs_stage_open *o,
                           qs_err *err) {
    (void)pass;
    (void)state;
    qs_status st = QS_OK;
    char written[65], windows[65];
    QS_CHECK(qs_stage_hash_rel(ctx, QS_DIR_OUT "/manifest.json",
                               "run the write stage first (needs search/allocation.json)",
                               written, err));
    QS_CHECK(eval_windows_hash(ctx, windows, err));
    QS_CHECK(qs_manifest_add_input(&o->inputs, "model", ctx->model_hash, err));
    QS_CHECK(qs_manifest_add_input(&o->inputs, "written", written, err));
    QS_CHECK(qs_manifest_add_input(&o->inputs, "windows", windows, err));
    QS_CHECK(qs_stage_set_units(o, ctx->cfg->eval.eval_float ? 2 : 1, "eval-%d", err));
done:
    return st;
}

/* Evaluates `w` and writes its result file (unit u). Collective. */
static qs_status eval_unit(const qs_stage_ctx *ctx, int u, const qs_eval_weights *w,
                           const char *rel, qs_err *err) {
    qs_eval_env env = {.cfg = ctx->cfg, .comm = ctx->comm, .rd = ctx->rd,
                       .model = ctx->model, .log = ctx->log, .progress = ctx->progress,
                       .pool = ctx->pool};
    qs_eval_result res;
    qs_eval_env_for_eval(&env, ctx->cfg);
    qs_status st = qs_eval_perplexity(&env, w, &res, err);
    if (st == QS_OK) st = qs_eval_write_json(&env, w, &res, rel, err);
    if (st == QS_OK && ctx->comm->rank == 0) st = qs_stage_unit_done(ctx, u, &rel, 1, err);
    return qs_comm_agree(ctx->comm, st, err);
}

static qs_status eval_run(const qs_stage_ctx *ctx, void *state, qs_err *err) {
    (void)state;
    qs_status st = QS_OK;
    qs_eval_weights w;
    memset(&w, 0, sizeof(w));
    const unsigned fm = qs_config_formats(ctx->cfg);
    if (qs_serve_of(ctx->cfg) == QS_SERVE_LLAMACPP) w.source = QS_EVAL_SRC_GGUF;
    else if (fm & QS_OUT_GPTQ) w.source = QS_EVAL_SRC_GPTQ;
    else if (fm & QS_OUT_CT) w.source = QS_EVAL_SRC_CT;
    else if (fm & QS_OUT_GGUF) w.source = QS_EVAL_SRC_GGUF;
    else w.source = QS_EVAL_SRC_H5;
    if (ctx->units->todo[0]) st = eval_unit(ctx, 0, &w, QS_REL_EVAL, err);
    if (st == QS_OK && ctx->units->n > 1 && ctx->units->todo[1]) {
        w = QS_EVAL_FLOAT;
        st = eval_unit(ctx, 1, &w, QS_REL_EVAL_FLOAT, err);
    }
    return st;
}

const qs_stage qs_stage_eval = {"eval", "eval", 0, 1, eval_open, eval_run, NULL};
