/* search.c (stage): the global mixed-precision allocation (docs/search.md).
 *
 * Rank 0 reads every layer's candidate table from run/recon/layer-NNN.h5 in layer order
 * (the run directory is the gather), builds the knapsack items (quant/search_items.c: tied
 * fused groups, pins, allow rules, serving restrictions), derives the byte budget from
 * search.target_bpw or search.max_bytes (minus the unquantized tensors' bytes from the
 * safetensors headers), and solves exactly (quant/mckp.c); the allocation is re-summed in
 * int64 and never above the budget. Objective sensitivity first measures, on every rank
 * together, the loss increase of each (layer, Hessian group) unit quantized alone at the
 * probe candidate (lib/evaluator.h on calibration windows), cached in
 * search/sensitivity.json — only for the units with a choice (an item with more than one
 * allowed candidate after pins, allow rules and serving restrictions); with nothing to
 * choose no probe runs (docs/search.md).
 * Outputs (rank 0, temp -> rename; one unit): search/allocation.json, allocation.md,
 * pareto.csv, summary.json (+ sensitivity.json), optimum-<objective>.json.
 */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "candidates.h"
#include "common.h"
#include "evaluator.h"
#include "h5store.h"
#include "mckp.h"
#include "search_items.h"
#include "search_kl.h"
#include "sha256.h"
#include "engines.h"
#include "stage.h"

#define NLIN QS_SEARCH_NLIN
#define PARETO_POINTS 24

_Static_assert(QS_SEARCH_NLIN == QS_LIN_COUNT, "linear counts agree");

/* ---- inputs ---------------------------------------------------------------------------- */

/* Rank 0: every layer's table in layer order. */
static qs_status read_tables(const qs_stage_ctx *ctx, int L, qs_search_tables *t, qs_err *err) {
    qs_status st = QS_OK;
    qs_h5 h;
    void *a = NULL;
    char rel[64], path[QS_PATH_MAX];
    memset(&h, 0, sizeof(h));
    memset(t, 0, sizeof(*t));
    for (int l = 0; l < L; ++l) {
        qs_rundir_layer_rel(rel, sizeof(rel), QS_DIR_RECON, l);
        QS_CHECK(qs_rundir_path(ctx->rd, rel, path, sizeof(path), err));
        if (!qs_path_exists(path))
            QS_THROW(err, QS_ERR_INPUT, "%s: missing; run the reconstruct stage first", path);
        QS_CHECK(qs_h5_open(&h, path, err));
        int nd = 0;
        int64_t dims[8];
        QS_CHECK(qs_h5_read(&h, "table/bits", QS_H5_I32, &nd, dims, &a, err));
        const int C = (int)dims[0];
        if (l == 0) {
            QS_CHECK(qs_search_tables_alloc(t, L, C, err));
            memcpy(t->bits, a, sizeof(int) * (size_t)C);
        } else if (C != t->ncand || memcmp(t->bits, a, sizeof(int) * (size_t)C) != 0) {
            QS_THROW(err, QS_ERR_INPUT, "%s: candidates differ from layer 0's", path);
        }
        free(a);
        a = NULL;
        QS_CHECK(qs_h5_read_n(&h, "table/group_size", QS_H5_I32, C, &a, err));
        if (l == 0) {
            memcpy(t->group, a, sizeof(int) * (size_t)C);
        } else if (memcmp(t->group, a, sizeof(int) * (size_t)C) != 0) {
            QS_THROW(err, QS_ERR_INPUT, "%s: candidates differ from layer 0's", path);
        }
        free(a);
        a = NULL;
        /* GGUF columns (table/gguf_type, written only when the run has GGUF candidates) */
        if (qs_h5_has(&h, "table/gguf_type"))
            QS_CHECK(qs_h5_read_n(&h, "table/gguf_type", QS_H5_I32, C, &a, err));
        for (int c = 0; c < C; ++c) {
            char nm[QS_QUANT_NAME_MAX];
            qs_cand_column_name(t->bits[c], t->group[c], a ? ((int32_t *)a)[c] : -1, nm,
                                sizeof(nm));
            if (l == 0) memcpy(t->name[c], nm, sizeof(nm));
            else if (strcmp(t->name[c], nm) != 0)
                QS_THROW(err, QS_ERR_INPUT, "%s: candidates differ from layer 0's", path);
        }
        free(a);
        a = NULL;
        const size_t o = (size_t)l * NLIN * (size_t)C, n = (size_t)NLIN * (size_t)C;
        QS_CHECK(qs_h5_read_into(&h, "table/error", QS_H5_F64, (int64_t)n, t->error + o,
                                 sizeof(double), err));
        QS_CHECK(qs_h5_read_into(&h, "table/relative", QS_H5_F64, (int64_t)n, t->relative + o,
                                 sizeof(double), err));
        QS_CHECK(qs_h5_read_into(&h, "table/bytes", QS_H5_I64, (int64_t)n, t->bytes + o,
                                 sizeof(int64_t), err));
        QS_CHECK(qs_h5_read_into(&h, "table/can_serve", QS_H5_I32, (int64_t)n, t->can_serve + o,
                                 sizeof(int32_t), err));
        QS_CHECK(qs_h5_read_into(&h, "table/d_out", QS_H5_I64, NLIN, t->d_out + (size_t)l * NLIN,
                                 sizeof(int64_t), err));
        QS_CHECK(qs_h5_read_into(&h, "table/d_in", QS_H5_I64, NLIN, t->d_in + (size_t)l * NLIN,
                                 sizeof(int64_t), err));
        for (size_t i = 0; i < n; ++i)
            if (!(t->error[o + i] >= 0.0) || !isfinite(t->error[o + i]) ||
                !(t->relative[o + i] >= 0.0) || !isfinite(t->relative[o + i]))
                QS_THROW(err, QS_ERR_INPUT, "%s: table/error or table/relative holds %g / %g",
                         path, t->error[o + i], t->relative[o + i]);
        qs_h5_abandon(&h);
    }
done:
    free(a);
    qs_h5_abandon(&h);
    if (st != QS_OK) qs_search_tables_free(t);
    return st;
}

/* Rank 0: servable[(l, k, c)] = 1 if the run's output formats and serving engine take table
 * candidate c for linear k of layer l (lib/candidates.h; candidates matched by name), and
 * t->bytes set to the exact bytes of the format the budget counts (qs_cands_budget_format;
 * -1 where it has no layout). */
static qs_status servable_mask(const qs_config *cfg, qs_search_tables *t, uint8_t **out,
                               qs_err *err) {
    qs_cands cs;
    const int C = t->ncand;
    const unsigned fmt = qs_cands_budget_format(cfg);
    qs_status st = qs_cands_from_config(cfg, &cs, err);
    if (st != QS_OK) return st;
    *out = malloc((size_t)t->nlayers * NLIN * (size_t)C);
    if (!*out) return QS_FAIL(err, QS_ERR_RUNTIME, "out of memory (search)");
    for (int c = 0; c < C; ++c) {
        const int ci = qs_cands_find(&cs, t->name[c]);
        if (ci < 0)
            return QS_FAIL(err, QS_ERR_INPUT,
                           "recon/: candidate %s is not a candidate of this config", t->name[c]);
        for (int l = 0; l < t->nlayers; ++l)
            for (int k = 0; k < NLIN; ++k) {
                const size_t i = (size_t)l * NLIN + k;
                int64_t b = -1;
                qs_err e = {0};
                (*out)[i * C + c] = (uint8_t)qs_cand_servable(&cs, ci, t->d_out[i], t->d_in[i],
                                                              cfg, NULL, 0);
                if (qs_cand_bytes(&cs, ci, t->d_out[i], t->d_in[i], fmt, cfg, &b, &e) != QS_OK)
                    b = -1;
                t->bytes[i * C + c] = b;
            }
    }
    return QS_OK;
}

/* ---- sensitivity ----------------------------------------------------------------------- */

/* The probe: the candidate with the smallest layer-0 payload among those with a GPTQ
 * layout for every linear (the most aggressive setting); ties -> the first. */
static int probe_candidate(const qs_search_tables *t) {
    int best = -1;
    int64_t best_s = 0;
    for (int c = 0; c < t->ncand; ++c) {
        int64_t s = 0;
        int okc = 1;
        for (int k = 0; k < NLIN; ++k) {
            int64_t b = t->bytes[(size_t)k * t->ncand + c];
            okc = okc && b >= 0;
            s += b;
        }
        if (okc && (best < 0 || s < best_s)) best = c, best_s = s;
    }
    return best < 0 ? 0 : best;
}

/* Probe units: one per (layer, Hessian group) — q/k/v, o, gate/up, down — so that a
 * module whose GPTQ error is small but whose quantization hurts the loss (o_proj, down_proj)
 * is weighted by its own measurement, not by its layer's average. */
#define NGRP 4
static int lin_unit_group(int k) { return k <= 2 ? 0 : k == 3 ? 1 : k <= 5 ? 2 : 3; }

/* Rank 0: which units have a choice. probe_u[u] = 1 when unit u = (layer, group) holds an
 * item with more than one live choice: allowed (layout, serve, allow rules) and not
 * excluded by a pin. These hold at every budget; the run's budget does not count, since
 * pareto.csv prices every item's choices at 24 other budgets. Items lie inside one group
 * (tied q/k/v, tied gate/up, or one linear). Returns the count. */
static int choice_units(const qs_search_items *it, unsigned char *probe_u, int U) {
    const int C = it->ncand;
    int n = 0;
    memset(probe_u, 0, (size_t)U);
    for (int i = 0; i < it->n; ++i) {
        int live = 0;
        for (int c = 0; c < C; ++c)
            live += it->allowed[(size_t)i * C + c] && (it->pinned[i] < 0 || it->pinned[i] == c);
        int k = 0;
        while (k < NLIN - 1 && !(it->lin_mask[i] & (1 << k))) ++k;
        const int u = it->layer[i] * NGRP + lin_unit_group(k);
        if (live > 1 && !probe_u[u]) probe_u[u] = 1, ++n;
    }
    return n;
}

/* Per unit (layer l, group g) loss increase (mean NLL on the probe windows) with only that
 * unit quantized at the probe candidate, for the units with probe_u[u] set (the others stay
 * NaN). loss[l * 4 + g] for the U = 4L units, loss[U] = float. Collective; rank 0 caches
 * the values in search/sensitivity.json after each probe (resume continues). */
static qs_status measure_sensitivity(const qs_stage_ctx *ctx, int L, const char *probe,
                                     const char *key, const unsigned char *probe_u,
                                     double *loss, qs_err *err) {
    qs_status st = QS_OK;
    const qs_comm *comm = ctx->comm;
    const qs_config *cfg = ctx->cfg;
    /* the probe windows: the first search.probe_windows windows of calib.tokens */
    const qs_eval_env env = {cfg,
                             comm,
                             ctx->rd,
                             ctx->model,
                             ctx->log,
                             ctx->progress,
                             qs_config_calib_source(cfg),
                             cfg->calib.seqlen,
                             cfg->search.probe_windows,
                             ctx->pool};
    qs_alloc al;
    char path[QS_PATH_MAX];
    char *text = NULL;
    cJSON *root = NULL;
    memset(&al, 0, sizeof(al));
    const int U = L * NGRP;
    for (int u = 0; u <= U; ++u) loss[u] = NAN;

    /* the cache (rank 0), broadcast */
    if (comm->rank == 0) {
        qs_err e2 = {0}; /* an unreadable cache is recomputed */
        st = qs_rundir_path(ctx->rd, "search/sensitivity.json", path, sizeof(path), err);
        if (st == QS_OK && qs_path_exists(path) && qs_read_file(path, &text, NULL, &e2) == QS_OK &&
            (root = cJSON_Parse(text)) != NULL) {
            const cJSON *k = cJSON_GetObjectItemCaseSensitive(root, "key");
            const cJSON *fl = cJSON_GetObjectItemCaseSensitive(root, "float_loss");
            const cJSON *ls = cJSON_GetObjectItemCaseSensitive(root, "loss");
            if (cJSON_IsString(k) && strcmp(k->valuestring, key) == 0 && cJSON_IsArray(ls) &&
                cJSON_GetArraySize(ls) == U) {
                if (cJSON_IsNumber(fl)) loss[U] = fl->valuedouble;
                for (int u = 0; u < U; ++u) {
                    const cJSON *v = cJSON_GetArrayItem(ls, u);
                    if (cJSON_IsNumber(v)) loss[u] = v->valuedouble;
                }
            }
        }
    }
    st = qs_comm_agree(comm, st, err);
    if (st != QS_OK) goto done;
    qs_comm_bcast(comm, loss, sizeof(double) * (size_t)(U + 1), 0);
    int todo = 0, need = 1;
    for (int u = 0; u < U; ++u) {
        if (!probe_u[u]) loss[u] = NAN; /* no choice: not probed */
        need += probe_u[u];
    }
    for (int u = 0; u <= U; ++u) todo += isnan(loss[u]) && (u == U || probe_u[u]) ? 1 : 0;
    if (todo)
        qs_log_info(ctx->log,
                    "search: sensitivity probes: %d of %d evals (probe %s, %lld windows x %lld "
                    "tokens of calib.tokens)",
                    todo, need, probe, (long long)env.max_windows, (long long)env.seqlen);
    QS_CHECK(qs_alloc_init(&al, L, err));
    for (int j = 0; j <= U; ++j) {
        const int u = j == 0 ? U : j - 1; /* float first */
        if (!isnan(loss[u]) || (u < U && !probe_u[u])) continue;
        if (qs_comm_any(comm, *ctx->stop)) {
            st = QS_FAIL(err, QS_STOPPED, "stopped during the sensitivity probes");
            goto done;
        }
        qs_eval_weights w = QS_EVAL_FLOAT;
        if (u < U) {
            for (int m = 0; m < L; ++m)
                for (int k = 0; k < NLIN; ++k)
                    snprintf(al.cand[m][k], QS_QUANT_NAME_MAX, "%s",
                             m * NGRP + lin_unit_group(k) == u ? probe : "");
            w.source = QS_EVAL_SRC_ALLOC;
            w.alloc = &al;
            snprintf(w.dir, sizeof(w.dir), "recon");
        }
        qs_eval_result res;
        QS_CHECK(qs_eval_perplexity(&env, &w, &res, err));
        loss[u] = res.nll_sum / (double)res.tokens;
        if (comm->rank == 0) {
            cJSON *o = cJSON_CreateObject(), *arr = NULL;
            char *out = NULL;
            if (o) {
                cJSON_AddStringToObject(o, "key", key);
                cJSON_AddStringToObject(o, "probe", probe);
                cJSON_AddStringToObject(o, "units", "layer x group (qkv, o, gate_up, down)");
                cJSON_AddNumberToObject(o, "windows", (double)res.windows);
                cJSON_AddNumberToObject(o, "seqlen", (double)res.seqlen);
                /* %.17g: the cache must read back bit for bit (cJSON's own printing is
                 * only approximately round-trip) */
                char num[40];
                if (!isnan(loss[U])) {
                    snprintf(num, sizeof(num), "%.17g", loss[U]);
                    cJSON_AddRawToObject(o, "float_loss", num);
                }
                arr = cJSON_AddArrayToObject(o, "loss");
                for (int m = 0; m < U && arr; ++m) {
                    snprintf(num, sizeof(num), "%.17g", loss[m]);
                    cJSON_AddItemToArray(arr, isnan(loss[m]) ? cJSON_CreateNull()
                                                             : cJSON_CreateRaw(num));
                }
                out = cJSON_Print(o);
                cJSON_Delete(o);
            }
            if (!out) st = QS_FAIL(err, QS_ERR_RUNTIME, "out of memory (sensitivity.json)");
            if (st == QS_OK) st = qs_write_file_atomic(path, out, strlen(out), err);
            cJSON_free(out);
        }
        st = qs_comm_agree(comm, st, err);
        if (st != QS_OK) goto done;
    }
done:
    qs_alloc_free(&al);
    cJSON_Delete(root);
    free(text);
    return st;
}

/* cost[l, k, c] = error[l, k, c] * s_u / sum_{k' in u} error[l, k', probe] for the unit u
 * = (l, group of k), s_u = the unit's loss increase (floored at 1e-3 of the largest probed
 * one); the plain error when no probe raised the loss. A unit without a choice (probe_u[u]
 * = 0, not probed) costs 0: its one choice is fixed, so its cost changes no decision, and
 * the predicted total is the loss increase of the units that were chosen. */
static void sensitivity_costs(const qs_search_tables *t, int probe, const double *loss,
                              const unsigned char *probe_u, double *cost, double *scale_out) {
    const int L = t->nlayers, C = t->ncand, U = L * NGRP;
    double mx = 0.0;
    for (int u = 0; u < U; ++u)
        if (probe_u[u] && loss[u] - loss[U] > mx) mx = loss[u] - loss[U];
    for (int u = 0; u < U; ++u) {
        const int l = u / NGRP, g = u % NGRP;
        double s = loss[u] - loss[U];
        if (s < 1e-3 * mx) s = 1e-3 * mx;
        double e = 0.0;
        for (int k = 0; k < NLIN; ++k)
            if (lin_unit_group(k) == g) e += t->error[((size_t)l * NLIN + k) * C + probe];
        /* no probe raised the loss: nothing to scale by, the plain error stays */
        const double f = !probe_u[u] ? 0.0 : mx > 0.0 ? (e > 0.0 ? s / e : s) : 1.0;
        scale_out[u] = f;
        for (int k = 0; k < NLIN; ++k) {
            if (lin_unit_group(k) != g) continue;
            for (int c = 0; c < C; ++c) {
                const size_t x = ((size_t)l * NLIN + k) * C + c;
                cost[x] = t->error[x] * f;
            }
        }
    }
}

/* ---- outputs --------------------------------------------------------------------------- */

static qs_status write_text(const qs_stage_ctx *ctx, const char *rel, const char *text,
                            size_t n, qs_err *err) {
    char path[QS_PATH_MAX];
    qs_status st = qs_rundir_path(ctx->rd, rel, path, sizeof(path), err);
    if (st == QS_OK) st = qs_write_file_atomic(path, text, n, err);
    return st;
}

/* Growing text buffer (open_memstream). */
typedef struct sbuf {
    char *p;
    size_t n;
    FILE *f;
} sbuf;

static qs_status sbuf_open(sbuf *b, qs_err *err) {
    memset(b, 0, sizeof(*b));
    b->f = open_memstream(&b->p, &b->n);
    return b->f ? QS_OK : QS_FAIL(err, QS_ERR_RUNTIME, "out of memory (search outputs)");
}

static qs_status sbuf_close(sbuf *b, qs_err *err) {
    int bad = ferror(b->f);
    fclose(b->f);
    b->f = NULL;
    return bad ? QS_FAIL(err, QS_ERR_RUNTIME, "out of memory (search outputs)") : QS_OK;
}

static qs_status write_markdown(const qs_stage_ctx *ctx, const qs_search_tables *t,
                                const double *cost, char (*names)[QS_QUANT_NAME_MAX],
                                const qs_alloc *al, const char *vpath, qs_err *err) {
    qs_status st = QS_OK;
    sbuf b;
    QS_CHECK(sbuf_open(&b, err));
    const int C = t->ncand;
    fprintf(b.f, "# Allocation\n\n");
    fprintf(b.f,
            "objective %s, budget %lld bytes, payload %lld bytes (%.6f bpw over %lld weights), "
            "total %lld bytes, predicted %.9g; GPTQ export: %s\n\n",
            al->objective, (long long)al->budget_bytes, (long long)al->payload_bytes, al->bpw,
            (long long)al->quantized_weights, (long long)al->total_bytes, al->predicted, vpath);
    fprintf(b.f, "| layer | q | k | v | o | gate | up | down | bytes | %s |\n", al->objective);
    fprintf(b.f, "|---|---|---|---|---|---|---|---|---|---|\n");
    for (int l = 0; l < t->nlayers; ++l) {
        int64_t bytes = 0;
        double e = 0.0;
        fprintf(b.f, "| %d |", l);
        for (int k = 0; k < NLIN; ++k) {
            const int li = l * NLIN + k;
            int c = 0;
            while (c < C && strcmp(t->name[c], names[li]) != 0) ++c;
            if (c < C) {
                bytes += t->bytes[(size_t)li * C + c];
                e += cost[(size_t)li * C + c];
            }
            fprintf(b.f, " %s |", names[li]);
        }
        fprintf(b.f, " %lld | %.6g |\n", (long long)bytes, e);
    }
    QS_CHECK(sbuf_close(&b, err));
    QS_CHECK(write_text(ctx, "search/allocation.md", b.p, b.n, err));
done:
    if (b.f) fclose(b.f);
    free(b.p);
    return st;
}

static qs_status write_pareto(const qs_stage_ctx *ctx, const qs_search_items *it,
                              const qs_search_tables *t, const qs_mckp_problem *p,
                              int64_t lo, int64_t hi, qs_err *err) {
    qs_status st = QS_OK;
    int64_t budgets[PARETO_POINTS];
    qs_mckp_result res[PARETO_POINTS];
    int nb = 0, solved = 0;
    sbuf b;
    memset(&b, 0, sizeof(b));
    for (int k = 0; k < PARETO_POINTS; ++k) {
        const int64_t v = lo + (int64_t)((long double)(hi - lo) * k / (PARETO_POINTS - 1));
        if (nb == 0 || v != budgets[nb - 1]) budgets[nb++] = v;
    }
    QS_CHECK(qs_mckp_pareto(p, budgets, nb, NULL, res, err));
    solved = 1;
    QS_CHECK(sbuf_open(&b, err));
    fprintf(b.f, "budget_bytes,payload_bytes,bpw,predicted,allocation\n");
    for (int k = 0; k < nb; ++k) {
        if (res[k].proof != QS_MCKP_OPTIMAL)
            QS_THROW(err, QS_ERR_INTERNAL, "internal error: Pareto budget %lld not solved",
                     (long long)budgets[k]);
        int64_t s = 0;
        for (int i = 0; i < it->n; ++i) s += it->size[(size_t)i * it->ncand + res[k].choice[i]];
        if (s > budgets[k] || s != res[k].total_size)
            QS_THROW(err, QS_ERR_INTERNAL, "internal error: Pareto size %lld > budget %lld",
                     (long long)s, (long long)budgets[k]);
        fprintf(b.f, "%lld,%lld,%.6f,%.9g,", (long long)budgets[k], (long long)s,
                (double)s * 8.0 / (double)it->nweights, res[k].total_cost);
        for (int i = 0; i < it->n; ++i)
            fprintf(b.f, "%s%s", i ? " " : "", t->name[res[k].choice[i]]);
        fputc('\n', b.f);
    }
    QS_CHECK(sbuf_close(&b, err));
    QS_CHECK(write_text(ctx, "search/pareto.csv", b.p, b.n, err));
done:
    if (solved)
        for (int k = 0; k < nb; ++k) qs_mckp_result_free(&res[k]);
    if (b.f) fclose(b.f);
    free(b.p);
    return st;
}

/* sens_units < 0: objective without probes; else the probe record of objective
 * sensitivity (units, units probed). */
static qs_status write_summary(const qs_stage_ctx *ctx, const qs_alloc *al, const char *vpath,
                               int sens_units, int nprobe, int64_t nkl,
                               const qs_search_refine_result *ref, qs_err *err) {
    qs_status st = QS_OK;
    char *text = NULL;
    cJSON *o = cJSON_CreateObject();
    if (!o) return QS_FAIL(err, QS_ERR_RUNTIME, "out of memory (summary.json)");
    cJSON_AddStringToObject(o, "objective", al->objective);
    cJSON_AddNumberToObject(o, "budget_bytes", (double)al->budget_bytes);
    cJSON_AddNumberToObject(o, "bpw", al->bpw);
    cJSON_AddNumberToObject(o, "payload_bytes", (double)al->payload_bytes);
    cJSON_AddNumberToObject(o, "total_bytes", (double)al->total_bytes);
    cJSON_AddNumberToObject(o, "quantized_weights", (double)al->quantized_weights);
    cJSON_AddNumberToObject(o, "predicted", al->predicted);
    cJSON_AddStringToObject(o, "engines", vpath);
    if (sens_units >= 0) {
        /* the probes the costs rest on: units with a choice + the float baseline */
        cJSON *p = cJSON_AddObjectToObject(o, "probes");
        cJSON_AddNumberToObject(p, "units", sens_units);
        cJSON_AddNumberToObject(p, "probed", nprobe);
        cJSON_AddNumberToObject(p, "evals", nprobe > 0 ? nprobe + 1 : 0);
    }
    if (nkl >= 0) /* objective kl: (item, candidate) passes the costs rest on */
        cJSON_AddNumberToObject(o, "kl_measurements", (double)nkl);
    if (ref) { /* search.refine */
        cJSON *r = cJSON_AddObjectToObject(o, "refine");
        char num[40];
        cJSON_AddNumberToObject(r, "evals", (double)ref->evals);
        cJSON_AddNumberToObject(r, "accepted", (double)ref->accepted);
        snprintf(num, sizeof(num), "%.17g", ref->kl_start);
        cJSON_AddRawToObject(r, "kl_start", num);
        snprintf(num, sizeof(num), "%.17g", ref->kl_end);
        cJSON_AddRawToObject(r, "kl_end", num);
    }
    text = cJSON_Print(o);
    cJSON_Delete(o);
    if (!text) return QS_FAIL(err, QS_ERR_RUNTIME, "out of memory (summary.json)");
    st = write_text(ctx, "search/summary.json", text, strlen(text), err);
    cJSON_free(text);
    return st;
}

/* ---- the stage ------------------------------------------------------------------------- */

static const char *const OBJ_NAMES[] = {"error", "relative", "sensitivity", "kl"};
_Static_assert(QS_OBJECTIVE_KL == 3, "objective names");

/* Solves the items (their current costs) at `budget` — or takes `given` (a choice per item,
 * search.refine's; NULL = the exact optimum) — re-sums the payload in int64 (never above
 * the budget) and fills *al (allocated here) and names (nlayers * 7). */
static qs_status solve_alloc(const qs_search_items *it, const qs_search_tables *t,
                             int64_t budget, int64_t unq, const char *objective,
                             const int *given, char (*names)[QS_QUANT_NAME_MAX], qs_alloc *al,
                             qs_err *err) {
    qs_status st = QS_OK;
    qs_mckp_problem p = {it->n, it->nchoice, it->size, it->cost, it->allowed, it->pinned};
    qs_mckp_result res;
    int64_t payload = 0;
    memset(&res, 0, sizeof(res));
    memset(al, 0, sizeof(*al));
    QS_CHECK(qs_mckp_solve(&p, budget, NULL, &res, err));
    if (given && res.proof == QS_MCKP_OPTIMAL) { /* search.refine's allocation instead */
        res.total_size = 0;
        res.total_cost = 0.0;
        for (int i = 0; i < it->n; ++i) {
            res.choice[i] = given[i];
            res.total_size += it->size[(size_t)i * it->ncand + given[i]];
            res.total_cost += it->cost[(size_t)i * it->ncand + given[i]];
        }
    }
    if (res.proof == QS_MCKP_INFEASIBLE)
        QS_THROW(err, QS_ERR_INPUT, "search: budget %lld bytes is infeasible", (long long)budget);
    if (res.proof != QS_MCKP_OPTIMAL)
        QS_THROW(err, QS_ERR_INTERNAL, "internal error: search not proven optimal");
    qs_search_expand(it, t, res.choice, names, &payload);
    if (payload > budget || payload != res.total_size)
        QS_THROW(err, QS_ERR_INTERNAL,
                 "internal error: allocation of %lld bytes above the budget %lld",
                 (long long)payload, (long long)budget);
    QS_CHECK(qs_alloc_init(al, t->nlayers, err));
    for (int l = 0; l < t->nlayers; ++l)
        for (int k = 0; k < NLIN; ++k)
            snprintf(al->cand[l][k], QS_QUANT_NAME_MAX, "%s", names[l * NLIN + k]);
    snprintf(al->objective, sizeof(al->objective), "%s", objective);
    al->budget_bytes = budget == INT64_MAX ? 0 : budget;
    al->payload_bytes = payload;
    al->total_bytes = payload + unq;
    al->quantized_weights = it->nweights;
    al->bpw = (double)payload * 8.0 / (double)it->nweights;
    al->predicted = res.total_cost;
done:
    qs_mckp_result_free(&res);
    return st;
}

/* What the search works with (rank 0 holds the tables and items; every rank the probe). */
typedef struct search_state {
    int L;
    int sens;                   /* objective sensitivity */
    char recon_hash[65];        /* recon/manifest.json */
    qs_search_tables t;         /* rank 0 */
    qs_search_items it;         /* rank 0 */
    double *cost;               /* (L, 7, ncand) rank 0: the objective's costs */
    uint8_t *servable;          /* (L, 7, ncand) rank 0: formats and engine take it */
    char (*names)[QS_QUANT_NAME_MAX]; /* (L * 7) rank 0 */
    int64_t budget, lo, hi, unq;
    int fixed;
    char probe[QS_QUANT_NAME_MAX]; /* sensitivity: the probe candidate */
    char key[65];               /* sensitivity: the cache key of the probes */
    unsigned char *probe_u;     /* (L * 4) sensitivity: units with a choice (probed) */
    int nprobe;                 /* sensitivity: their count */
    int kl;                     /* objective kl */
    char klkey[65];             /* kl: the cache key of search/kl.json (rank 0) */
    int64_t nkl;                /* kl: (item, candidate) measurements */
    qs_kl_probe probe_kl;       /* kl or refine: the KL probe (every rank) */
    qs_kl_probe probe_ref;      /* refine with its own window count (every rank) */
    int *choice;                /* (it.n) rank 0, refine: the refined allocation */
    qs_search_refine_result ref; /* refine: what it did */
} search_state;

static void search_close(void *vs) {
    search_state *s = vs;
    if (!s) return;
    free(s->cost);
    free(s->servable);
    free(s->names);
    free(s->probe_u);
    free(s->choice);
    qs_kl_close(&s->probe_kl);
    qs_kl_close(&s->probe_ref);
    qs_search_items_free(&s->it);
    qs_search_tables_free(&s->t);
    free(s);
}

static qs_status search_open(const qs_stage_ctx *ctx, int pass, void **state, qs_stage_open *o,
                             qs_err *err) {
    (void)pass;
    qs_status st = QS_OK;
    const qs_config *cfg = ctx->cfg;
    search_state *s = qs_calloc(1, sizeof(*s), err, "search state");
    if (!s) return QS_ERR_RUNTIME;
    *state = s;
    s->L = (int)ctx->model->hf.num_hidden_layers;
    s->sens = cfg->search.objective == QS_OBJECTIVE_SENSITIVITY;
    s->kl = cfg->search.objective == QS_OBJECTIVE_KL;
    QS_CHECK(qs_stage_hash_rel(ctx, QS_DIR_RECON "/manifest.json",
                               "run the reconstruct stage before search", s->recon_hash, err));
    const qs_token_source csrc = qs_config_calib_source(cfg);
    const char *needs = s->sens ? "search.objective: sensitivity"
                        : s->kl ? "search.objective: kl"
                        : cfg->search.refine > 0 ? "search.refine" : NULL;
    if (needs && !qs_token_source_given(&csrc))
        QS_THROW(err, QS_ERR_INPUT, "%s needs calib.tokens or calib.text (the probe windows)",
                 needs);
    if (needs && cfg->calib.seqlen < 2)
        QS_THROW(err, QS_ERR_INPUT, "%s needs calib.seqlen >= 2", needs);
    if (s->sens) {
        s->probe_u = qs_calloc((size_t)s->L * NGRP, 1, err, "probe units");
        if (!s->probe_u) QS_THROW(err, QS_ERR_RUNTIME, "out of memory (probe units)");
    }
    QS_CHECK(qs_manifest_add_input(&o->inputs, "model", ctx->model_hash, err));
    QS_CHECK(qs_manifest_add_input(&o->inputs, "recon", s->recon_hash, err));
    QS_CHECK(qs_stage_set_units(o, 1, "search", err));
done:
    return st;
}

/* Rank 0: tables, items, budget (bad rules and infeasible budgets are exit 2), and with
 * objective sensitivity the probe candidate and the probes' cache key. */
static qs_status search_problem(const qs_stage_ctx *ctx, search_state *s, qs_err *err) {
    qs_status st = QS_OK;
    const qs_config *cfg = ctx->cfg;
    qs_search_rules rules;
    char list[512] = {0};
    memset(&rules, 0, sizeof(rules));
    rules.tie_fused = qs_cands_tie_fused(cfg);
    rules.serve_marlin = cfg->search.serve && strcmp(cfg->search.serve, "marlin") == 0;
    rules.need_export = cfg->output.gptq_export;
    rules.sym = cfg->quant.sym;
    rules.pin = (const char *const *)cfg->search.pin;
    rules.npin = cfg->search.npin;
    rules.allow = (const char *const *)cfg->search.allow;
    rules.nallow = cfg->search.nallow;
    QS_CHECK(read_tables(ctx, s->L, &s->t, err));
    const size_t n = (size_t)s->L * NLIN * (size_t)s->t.ncand;
    QS_CHECK(servable_mask(cfg, &s->t, &s->servable, err));
    rules.servable = s->servable;
    rules.serve_what = qs_serve_of(cfg) != QS_SERVE_NONE ? qs_serve_name(qs_serve_of(cfg))
                                                          : "the output formats";
    s->cost = malloc(sizeof(double) * n);
    s->names = calloc((size_t)s->L * NLIN, sizeof(*s->names));
    if (!s->cost || !s->names) QS_THROW(err, QS_ERR_RUNTIME, "out of memory (search)");
    memcpy(s->cost, cfg->search.objective == QS_OBJECTIVE_RELATIVE ? s->t.relative : s->t.error,
           sizeof(double) * n);
    QS_CHECK(qs_search_items_build(&s->t, s->cost, &rules, &s->it, err));
    s->unq = qs_cands_unquantized_bytes(ctx->model, qs_cands_budget_format(cfg));
    qs_search_items_range(&s->it, &s->lo, &s->hi, &s->fixed);
    size_t len = 0;
    for (int c = 0; c < s->t.ncand && len < sizeof(list); ++c)
        len += (size_t)snprintf(list + len, sizeof(list) - len, "%s%s", c ? ", " : "",
                                s->t.name[c]);
    QS_CHECK(qs_search_budget(cfg->search.target_bpw, cfg->search.max_bytes, s->it.nweights,
                              s->unq, s->lo, s->fixed, list, &s->budget, err));
    if (s->sens) {
        const int U = s->L * NGRP;
        snprintf(s->probe, sizeof(s->probe), "%s", s->t.name[probe_candidate(&s->t)]);
        if (qs_stage_no_skip("probes")) {
            memset(s->probe_u, 1, (size_t)U); /* debug knob: probe every unit */
            s->nprobe = U;
        } else {
            s->nprobe = choice_units(&s->it, s->probe_u, U);
        }
        qs_sha256 h;
        qs_sha256_init(&h);
        qs_sha256_update(&h, s->recon_hash, 64);
        qs_sha256_update(&h, s->probe, strlen(s->probe));
        int64_t knobs[2] = {cfg->search.probe_windows, cfg->calib.seqlen};
        qs_sha256_update(&h, knobs, sizeof(knobs));
        const qs_token_source csrc = qs_config_calib_source(cfg);
        qs_sha256_update(&h, qs_token_source_path(&csrc), strlen(qs_token_source_path(&csrc)));
        /* a cache of some units only is keyed by which (every unit: the key as before) */
        if (s->nprobe < U) qs_sha256_update(&h, s->probe_u, (size_t)U);
        qs_sha256_final_hex(&h, s->key);
    }
    if (s->kl) { /* the KL cache: the recon results, windows, and which choices are live */
        qs_sha256 h;
        qs_sha256_init(&h);
        qs_sha256_update(&h, s->recon_hash, 64);
        qs_sha256_update(&h, "kl", 2);
        int64_t knobs[3] = {cfg->search.probe_windows, cfg->calib.seqlen, s->it.ncand};
        qs_sha256_update(&h, knobs, sizeof(knobs));
        const qs_token_source csrc = qs_config_calib_source(cfg);
        qs_sha256_update(&h, qs_token_source_path(&csrc), strlen(qs_token_source_path(&csrc)));
        qs_sha256_update(&h, s->it.allowed, (size_t)s->it.n * (size_t)s->it.ncand);
        qs_sha256_update(&h, s->it.pinned, sizeof(int) * (size_t)s->it.n);
        for (int c = 0; c < s->t.ncand; ++c)
            qs_sha256_update(&h, s->t.name[c], strlen(s->t.name[c]) + 1);
        qs_sha256_final_hex(&h, s->klkey);
    }
done:
    return st;
}

/* Objective kl and search.refine: the KL probe on every rank, the per-(item, candidate)
 * costs, then the refinement of the exact optimum. Collective. */
static qs_status search_measured(const qs_stage_ctx *ctx, search_state *s, qs_err *err) {
    qs_status st = QS_OK;
    const qs_config *cfg = ctx->cfg;
    const qs_comm *comm = ctx->comm;
    const int root = comm->rank == 0;
    const qs_eval_env env = {cfg,          comm,         ctx->rd,
                             ctx->model,   ctx->log,     ctx->progress,
                             qs_config_calib_source(cfg), cfg->calib.seqlen,
                             cfg->search.probe_windows, ctx->pool};
    const int64_t rw = cfg->search.refine_windows > 0 ? cfg->search.refine_windows
                                                      : cfg->search.probe_windows;
    const int own = cfg->search.refine > 0 && (!s->kl || rw != cfg->search.probe_windows);
    if (s->kl) QS_CHECK(qs_kl_open(&s->probe_kl, &env, "recon", err));
    if (own) {
        qs_eval_env renv = env;
        renv.max_windows = rw;
        QS_CHECK(qs_kl_open(&s->probe_ref, &renv, "recon", err));
    }
    if (s->kl) {
        QS_CHECK(qs_search_kl_costs(ctx, &s->probe_kl, root ? &s->it : NULL, root ? &s->t : NULL,
                                    s->klkey, root ? s->cost : NULL, &s->nkl, err));
        if (root) qs_search_items_set_cost(&s->it, &s->t, s->cost);
    }
    if (cfg->search.refine > 0) {
        qs_mckp_problem p = {s->it.n, s->it.nchoice, s->it.size, s->it.cost, s->it.allowed,
                             s->it.pinned};
        qs_mckp_result res;
        memset(&res, 0, sizeof(res));
        if (root) {
            s->choice = qs_calloc((size_t)s->it.n, sizeof(int), err, "refine");
            st = s->choice ? qs_mckp_solve(&p, s->budget, NULL, &res, err) : QS_ERR_RUNTIME;
            if (st == QS_OK && res.proof != QS_MCKP_OPTIMAL)
                st = QS_FAIL(err, QS_ERR_INPUT, "search: budget %lld bytes is infeasible",
                             (long long)s->budget);
            if (st == QS_OK) memcpy(s->choice, res.choice, sizeof(int) * (size_t)s->it.n);
            qs_mckp_result_free(&res);
        }
        st = qs_comm_agree(comm, st, err);
        if (st != QS_OK) goto done;
        QS_CHECK(qs_search_refine(ctx, own ? &s->probe_ref : &s->probe_kl,
                                  root ? &s->it : NULL, root ? &s->t : NULL,
                                  s->budget, s->choice, &s->ref, err));
    }
done:
    return st;
}

/* Objective sensitivity: the per-(layer, group) probes of the units with a choice on every
 * rank (none when nothing is chosen); rank 0 scales the costs by them. Collective. */
static qs_status search_sensitivity(const qs_stage_ctx *ctx, search_state *s, qs_err *err) {
    qs_status st = QS_OK;
    const qs_comm *comm = ctx->comm;
    const int U = s->L * NGRP;
    double *loss = NULL, *scale = NULL;
    qs_comm_bcast(comm, s->probe, sizeof(s->probe), 0);
    qs_comm_bcast(comm, s->key, sizeof(s->key), 0);
    qs_comm_bcast(comm, &s->nprobe, sizeof(s->nprobe), 0);
    qs_comm_bcast(comm, s->probe_u, (size_t)U, 0);
    loss = qs_malloc(sizeof(double) * (size_t)(U + 1), err, "sensitivity");
    scale = qs_malloc(sizeof(double) * (size_t)U, err, "sensitivity");
    st = qs_comm_agree(comm, loss && scale ? QS_OK : QS_ERR_RUNTIME, err);
    if (st != QS_OK) goto done;
    if (s->nprobe < U) {
        char why[256];
        if (s->nprobe == 0)
            snprintf(why, sizeof(why),
                     "no item has a choice (one allowed candidate each after pins, allow "
                     "rules and serving restrictions)");
        else
            snprintf(why, sizeof(why),
                     "%d of %d (layer, group) units have no choice (one allowed candidate "
                     "each after pins, allow rules and serving restrictions)",
                     U - s->nprobe, U);
        qs_stage_skipped(ctx, "search", "sensitivity probe evaluations",
                         (int64_t)(U + 1) - (s->nprobe > 0 ? s->nprobe + 1 : 0), U + 1, why);
    }
    for (int u = 0; u <= U; ++u) loss[u] = NAN;
    if (s->nprobe > 0)
        QS_CHECK(measure_sensitivity(ctx, s->L, s->probe, s->key, s->probe_u, loss, err));
    if (comm->rank == 0) {
        sensitivity_costs(&s->t, probe_candidate(&s->t), loss, s->probe_u, s->cost, scale);
        qs_search_items_set_cost(&s->it, &s->t, s->cost);
    }
done:
    free(loss);
    free(scale);
    return st;
}

/* Rank 0: solve, check in integers, write the outputs and record the unit. */
static qs_status search_outputs(const qs_stage_ctx *ctx, search_state *s, qs_err *err) {
    qs_status st = QS_OK;
    const qs_config *cfg = ctx->cfg;
    qs_mckp_problem p = {s->it.n, s->it.nchoice, s->it.size, s->it.cost, s->it.allowed,
                         s->it.pinned};
    qs_alloc al;
    char path[QS_PATH_MAX];
    const char *outs[12];
    char optrel[3][64];
    int nout = 0;
    memset(&al, 0, sizeof(al));
    QS_CHECK(solve_alloc(&s->it, &s->t, s->budget, s->unq, OBJ_NAMES[cfg->search.objective],
                         s->choice, s->names, &al, err));
    /* which engines load the GPTQ export of this allocation (export/engines.h) */
    char vline[256];
    const char *vpath =
        !(qs_config_formats(cfg) & QS_OUT_GPTQ)
            ? "not written (output.formats)"
            : qs_engines_line_names(s->names, (int64_t)s->L * NLIN, cfg->quant.sym,
                                    cfg->quant.act_order,
                                    cfg->output.checkpoint_format == QS_CKPT_GPTQ_V2
                                        ? QS_FORMAT_GPTQ_V2
                                        : QS_FORMAT_GPTQ_V1,
                                    vline, sizeof(vline));
    QS_CHECK(qs_rundir_path(ctx->rd, QS_REL_ALLOCATION, path, sizeof(path), err));
    QS_CHECK(qs_alloc_write_json(&al, path, err));
    QS_CHECK(write_markdown(ctx, &s->t, s->cost, s->names, &al, vpath, err));
    QS_CHECK(write_pareto(ctx, &s->it, &s->t, &p, s->lo, s->hi, err));
    QS_CHECK(write_summary(ctx, &al, vpath, s->sens ? s->L * NGRP : -1, s->nprobe,
                           s->kl ? s->nkl : -1, cfg->search.refine > 0 ? &s->ref : NULL, err));
    outs[nout++] = QS_REL_ALLOCATION;
    outs[nout++] = "search/allocation.md";
    outs[nout++] = "search/pareto.csv";
    outs[nout++] = "search/summary.json";
    if (s->sens && s->nprobe > 0) outs[nout++] = "search/sensitivity.json";
    if (s->kl && s->nkl > 0) outs[nout++] = "search/kl.json";
    if (cfg->search.refine > 0) outs[nout++] = "search/refine.csv";
    /* the optimum of every objective whose costs are at hand, for comparisons (the
     * objective study, docs/search.md); the chosen one equals allocation.json unless
     * search.refine moved it */
    const int obj = (int)cfg->search.objective, nobj = obj >= 2 ? 3 : 2;
    for (int j = 0; j < nobj; ++j) {
        const int o = j < 2 ? j : obj;
        qs_alloc alt;
        memset(&alt, 0, sizeof(alt));
        qs_search_items_set_cost(&s->it, &s->t,
                                 o == 0 ? s->t.error : o == 1 ? s->t.relative : s->cost);
        st = solve_alloc(&s->it, &s->t, s->budget, s->unq, OBJ_NAMES[o], NULL, s->names, &alt,
                         err);
        snprintf(optrel[j], sizeof(optrel[j]), "search/optimum-%s.json", OBJ_NAMES[o]);
        if (st == QS_OK) st = qs_rundir_path(ctx->rd, optrel[j], path, sizeof(path), err);
        if (st == QS_OK) st = qs_alloc_write_json(&alt, path, err);
        qs_alloc_free(&alt);
        if (st != QS_OK) goto done;
        outs[nout++] = optrel[j];
    }
    QS_CHECK(qs_stage_unit_done(ctx, 0, outs, nout, err));
    qs_log_info(ctx->log,
                "search: objective %s, %d items, budget %lld B: payload %lld B = %.4f bpw, "
                "total %lld B, predicted %.6g; GPTQ export: %s",
                al.objective, s->it.n, (long long)al.budget_bytes, (long long)al.payload_bytes,
                al.bpw, (long long)al.total_bytes, al.predicted, vpath);
done:
    qs_alloc_free(&al);
    return st;
}

static qs_status search_run(const qs_stage_ctx *ctx, void *vs, qs_err *err) {
    qs_status st = QS_OK;
    search_state *s = vs;
    const qs_comm *comm = ctx->comm;
    if (!ctx->units->todo[0]) return QS_OK;
    if (comm->rank == 0) st = search_problem(ctx, s, err);
    st = qs_comm_agree(comm, st, err);
    if (st == QS_OK && s->sens) st = search_sensitivity(ctx, s, err);
    if (st == QS_OK && (s->kl || ctx->cfg->search.refine > 0)) st = search_measured(ctx, s, err);
    if (st != QS_OK) return st;
    if (comm->rank == 0) st = search_outputs(ctx, s, err);
    return qs_comm_agree(comm, st, err);
}

const qs_stage qs_stage_search = {"search", QS_DIR_SEARCH, 0, 0, search_open, search_run,
                                  search_close};
