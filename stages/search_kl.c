/* search_kl.c: objective kl and search.refine of the search stage (see search_kl.h). */
#include "search_kl.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

#define NLIN QS_SEARCH_NLIN

/* One measurement of objective kl: item `item` of layer `layer` (linears lin_mask) at
 * candidate `cand` (a table column). */
typedef struct kl_task {
    int item, layer, lin_mask, cand;
} kl_task;

/* 1 if choice c of item i is live: allowed and not excluded by a pin. */
static int live(const qs_search_items *it, int i, int c) {
    return it->allowed[(size_t)i * it->ncand + c] && (it->pinned[i] < 0 || it->pinned[i] == c);
}

/* Rank 0: every live choice of every item with more than one, in item order. */
static int kl_tasks(const qs_search_items *it, kl_task *out) {
    int n = 0;
    for (int i = 0; i < it->n; ++i) {
        int nl = 0;
        for (int c = 0; c < it->ncand; ++c) nl += live(it, i, c);
        if (nl < 2 && !qs_stage_no_skip("probes")) continue;
        for (int c = 0; c < it->ncand; ++c)
            if (live(it, i, c)) {
                if (out) out[n] = (kl_task){i, it->layer[i], it->lin_mask[i], c};
                ++n;
            }
    }
    return n;
}

/* Rank 0: the cached values of search/kl.json under `key` into kl (n; NaN = not cached). */
static void kl_cache_read(const char *path, const char *key, int n, double *kl) {
    char *text = NULL;
    cJSON *root = NULL;
    qs_err e = {0};
    for (int j = 0; j < n; ++j) kl[j] = NAN;
    if (!qs_path_exists(path) || qs_read_file(path, &text, NULL, &e) != QS_OK) return;
    root = cJSON_Parse(text);
    const cJSON *k = cJSON_GetObjectItemCaseSensitive(root, "key");
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, "kl");
    if (cJSON_IsString(k) && strcmp(k->valuestring, key) == 0 && cJSON_IsArray(v) &&
        cJSON_GetArraySize(v) == n)
        for (int j = 0; j < n; ++j) {
            const cJSON *x = cJSON_GetArrayItem(v, j);
            if (cJSON_IsNumber(x)) kl[j] = x->valuedouble;
        }
    cJSON_Delete(root);
    free(text);
}

/* Rank 0: search/kl.json with every value so far (%.17g: read back bit for bit). */
static qs_status kl_cache_write(const char *path, const char *key, const kl_task *tk, int n,
                                const double *kl, const qs_search_tables *t, qs_err *err) {
    FILE *f = NULL;
    char *buf = NULL;
    size_t len = 0;
    f = open_memstream(&buf, &len);
    if (!f) return QS_FAIL(err, QS_ERR_RUNTIME, "out of memory (kl.json)");
    fprintf(f, "{\n  \"key\": \"%s\",\n  \"units\": \"KL(float || quantized) in nats per "
               "prediction, one item quantized\",\n  \"tasks\": [",
            key);
    for (int j = 0; j < n; ++j)
        fprintf(f, "%s\"%d %d %s\"", j ? ", " : "", tk[j].layer, tk[j].lin_mask,
                t->name[tk[j].cand]);
    fprintf(f, "],\n  \"kl\": [");
    for (int j = 0; j < n; ++j) {
        if (isnan(kl[j])) fprintf(f, "%snull", j ? ", " : "");
        else fprintf(f, "%s%.17g", j ? ", " : "", kl[j]);
    }
    fprintf(f, "]\n}\n");
    const int bad = ferror(f);
    fclose(f);
    qs_status st = bad ? QS_FAIL(err, QS_ERR_RUNTIME, "out of memory (kl.json)")
                       : qs_write_file_atomic(path, buf, len, err);
    free(buf);
    return st;
}

/* An allocation with only task tk quantized (its item's linears at candidate name). */
static void task_alloc(qs_alloc *al, const kl_task *tk, const char *name) {
    for (int64_t l = 0; l < al->nlayers; ++l) memset(al->cand[l], 0, sizeof(al->cand[l]));
    for (int k = 0; k < NLIN; ++k)
        if (tk->lin_mask & (1 << k))
            snprintf(al->cand[tk->layer][k], QS_QUANT_NAME_MAX, "%s", name);
}

qs_status qs_search_kl_costs(const qs_stage_ctx *ctx, qs_kl_probe *probe,
                             const qs_search_items *it, const qs_search_tables *t,
                             const char *key, double *cost, int64_t *nmeasured, qs_err *err) {
    qs_status st = QS_OK;
    const qs_comm *comm = ctx->comm;
    const int L = (int)ctx->model->hf.num_hidden_layers;
    int n = comm->rank == 0 ? kl_tasks(it, NULL) : 0;
    kl_task *tk = NULL;
    double *kl = NULL;
    char (*names)[QS_QUANT_NAME_MAX] = NULL;
    char path[QS_PATH_MAX] = {0};
    qs_alloc al;
    memset(&al, 0, sizeof(al));
    qs_comm_bcast(comm, &n, sizeof(n), 0);
    tk = qs_calloc((size_t)n + 1, sizeof(*tk), err, "KL tasks");
    kl = qs_calloc((size_t)n + 1, sizeof(*kl), err, "KL tasks");
    names = qs_calloc((size_t)n + 1, sizeof(*names), err, "KL tasks");
    if (tk && kl && names) st = qs_alloc_init(&al, L, err);
    else st = QS_ERR_RUNTIME;
    if (st == QS_OK) st = qs_rundir_path(ctx->rd, "search/kl.json", path, sizeof(path), err);
    if (st == QS_OK && comm->rank == 0) {
        kl_tasks(it, tk);
        for (int j = 0; j < n; ++j) snprintf(names[j], QS_QUANT_NAME_MAX, "%s", t->name[tk[j].cand]);
        kl_cache_read(path, key, n, kl);
    }
    st = qs_comm_agree(comm, st, err);
    if (st != QS_OK) goto done;
    qs_comm_bcast(comm, tk, sizeof(*tk) * (size_t)n, 0);
    qs_comm_bcast(comm, kl, sizeof(*kl) * (size_t)n, 0);
    qs_comm_bcast(comm, names, sizeof(*names) * (size_t)n, 0);
    int todo = 0;
    for (int j = 0; j < n; ++j) todo += isnan(kl[j]);
    if (todo)
        qs_log_info(ctx->log, "search: KL probes: %d of %d (item, candidate) passes (%lld windows "
                    "x %lld tokens of calib.tokens)", todo, n, (long long)probe->nwin,
                    (long long)probe->env.seqlen);
    int64_t ndone = n - todo;
    qs_progress_begin(ctx->progress, n, ndone);
    for (int j = 0; j < n; ++j) {
        if (!isnan(kl[j])) continue;
        if (qs_comm_any(comm, *ctx->stop)) {
            st = QS_FAIL(err, QS_STOPPED, "stopped during the KL probes");
            goto done;
        }
        task_alloc(&al, &tk[j], names[j]);
        QS_CHECK(qs_kl_measure(probe, &al, &kl[j], err));
        if (comm->rank == 0) st = kl_cache_write(path, key, tk, n, kl, t, err);
        st = qs_comm_agree(comm, st, err);
        if (st != QS_OK) goto done;
        ++ndone;
        qs_progress_step(ctx->progress, ndone, "KL probe %lld/%d", (long long)ndone, n);
    }
    if (comm->rank == 0) {
        const int C = t->ncand;
        memset(cost, 0, sizeof(double) * (size_t)L * NLIN * (size_t)C);
        for (int j = 0; j < n; ++j) {
            int k = 0;
            while (!(tk[j].lin_mask & (1 << k))) ++k;
            /* KL >= 0; rounding of the float log-probs can leave -1e-9 on a no-op */
            cost[((size_t)tk[j].layer * NLIN + k) * C + tk[j].cand] = kl[j] > 0.0 ? kl[j] : 0.0;
        }
    }
    *nmeasured = n;
done:
    qs_alloc_free(&al);
    free(tk);
    free(kl);
    free(names);
    return st;
}

/* ---- refinement ------------------------------------------------------------------------ */

/* splitmix64: the neighbour choices (a pure function of the seed and the step). */
static uint64_t next_rand(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* The live choice of item i next in size above (dir > 0) or below (dir < 0) choice c (the
 * nearest strictly larger / smaller size; ties -> the lower index), -1 if none. */
static int next_level(const qs_search_items *it, int i, int c, int dir) {
    const int C = it->ncand;
    const int64_t s0 = it->size[(size_t)i * C + c];
    int best = -1;
    for (int j = 0; j < C; ++j) {
        if (!live(it, i, j)) continue;
        const int64_t s = it->size[(size_t)i * C + j];
        if (dir > 0 ? s <= s0 : s >= s0) continue;
        if (best < 0 || (dir > 0 ? s < it->size[(size_t)i * C + best]
                                 : s > it->size[(size_t)i * C + best]))
            best = j;
    }
    return best;
}

static int64_t payload(const qs_search_items *it, const int *choice) {
    int64_t s = 0;
    for (int i = 0; i < it->n; ++i) s += it->size[(size_t)i * it->ncand + choice[i]];
    return s;
}

/* Rank 0: a neighbour of cur in nb at the budget: a random item one level up, then random
 * other items one level down until the payload fits. 0 if none was found in 64 tries. */
static int propose(const qs_search_items *it, int64_t budget, const int *cur, int *nb,
                   uint64_t *rng) {
    for (int tries = 0; tries < 64; ++tries) {
        memcpy(nb, cur, sizeof(int) * (size_t)it->n);
        const int a = (int)(next_rand(rng) % (uint64_t)it->n);
        const int up = next_level(it, a, nb[a], +1);
        if (up < 0) continue;
        nb[a] = up;
        int guard = 0;
        while (payload(it, nb) > budget && guard++ < 4 * it->n) {
            const int b = (int)(next_rand(rng) % (uint64_t)it->n);
            const int dn = b == a ? -1 : next_level(it, b, nb[b], -1);
            if (dn >= 0) nb[b] = dn;
        }
        if (payload(it, nb) <= budget) return 1;
    }
    return 0;
}

/* Every rank: an allocation of the choice (bcast from rank 0 as names). */
static void choice_alloc(const qs_stage_ctx *ctx, const qs_search_items *it,
                         const qs_search_tables *t, const int *choice,
                         char (*names)[QS_QUANT_NAME_MAX], qs_alloc *al) {
    const int L = (int)al->nlayers;
    if (ctx->comm->rank == 0) {
        int64_t unused;
        qs_search_expand(it, t, choice, names, &unused);
    }
    qs_comm_bcast(ctx->comm, names, sizeof(*names) * (size_t)L * NLIN, 0);
    for (int l = 0; l < L; ++l)
        for (int k = 0; k < NLIN; ++k)
            snprintf(al->cand[l][k], QS_QUANT_NAME_MAX, "%s", names[l * NLIN + k]);
}

qs_status qs_search_refine(const qs_stage_ctx *ctx, qs_kl_probe *probe,
                           const qs_search_items *it, const qs_search_tables *t,
                           int64_t budget, int *choice, qs_search_refine_result *res,
                           qs_err *err) {
    qs_status st = QS_OK;
    const qs_comm *comm = ctx->comm;
    const int L = (int)ctx->model->hf.num_hidden_layers;
    const int64_t N = ctx->cfg->search.refine;
    uint64_t rng = (uint64_t)ctx->cfg->search.refine_seed;
    int *nb = NULL;
    char (*names)[QS_QUANT_NAME_MAX] = NULL;
    FILE *log = NULL;
    char *csv = NULL;
    size_t csvn = 0;
    qs_alloc al;
    memset(&al, 0, sizeof(al));
    memset(res, 0, sizeof(*res));
    const int n = comm->rank == 0 ? it->n : 0;
    nb = qs_calloc((size_t)n + 1, sizeof(int), err, "refine");
    names = qs_calloc((size_t)L * NLIN, sizeof(*names), err, "refine");
    st = nb && names ? qs_alloc_init(&al, L, err) : QS_ERR_RUNTIME;
    if (st == QS_OK && comm->rank == 0) {
        log = open_memstream(&csv, &csvn);
        if (!log) st = QS_FAIL(err, QS_ERR_RUNTIME, "out of memory (refine.csv)");
        else fprintf(log, "step,kl,accepted,payload_bytes,bpw,best_kl\n");
    }
    st = qs_comm_agree(comm, st, err);
    if (st != QS_OK) goto done;
    choice_alloc(ctx, it, t, choice, names, &al);
    QS_CHECK(qs_kl_measure(probe, &al, &res->kl_start, err));
    double best = res->kl_start;
    qs_progress_begin(ctx->progress, N, 0);
    if (log)
        fprintf(log, "0,%.17g,1,%lld,%.6f,%.17g\n", best, (long long)payload(it, choice),
                (double)payload(it, choice) * 8.0 / (double)it->nweights, best);
    qs_log_info(ctx->log, "search: refine: %lld neighbour evaluations from KL %.6g (seed %lld)",
                (long long)N, best, (long long)ctx->cfg->search.refine_seed);
    for (int64_t step = 1; step <= N; ++step) {
        if (qs_comm_any(comm, *ctx->stop)) {
            st = QS_FAIL(err, QS_STOPPED, "stopped during search.refine");
            goto done;
        }
        int ok = comm->rank == 0 ? propose(it, budget, choice, nb, &rng) : 0;
        qs_comm_bcast(comm, &ok, sizeof(ok), 0);
        if (!ok) break; /* no neighbour fits: nothing to refine */
        choice_alloc(ctx, it, t, nb, names, &al);
        double kl = 0.0;
        QS_CHECK(qs_kl_measure(probe, &al, &kl, err));
        const int acc = kl < best;
        res->evals++;
        if (acc) {
            best = kl;
            res->accepted++;
            if (comm->rank == 0) memcpy(choice, nb, sizeof(int) * (size_t)it->n);
        }
        if (log)
            fprintf(log, "%lld,%.17g,%d,%lld,%.6f,%.17g\n", (long long)step, kl, acc,
                    (long long)payload(it, nb),
                    (double)payload(it, nb) * 8.0 / (double)it->nweights, best);
        qs_progress_step(ctx->progress, step, "refine %lld/%lld", (long long)step, (long long)N);
    }
    res->kl_end = best;
    qs_log_info(ctx->log, "search: refine: %lld evaluations, %lld kept, KL %.6g -> %.6g",
                (long long)res->evals, (long long)res->accepted, res->kl_start, best);
    if (log) {
        char path[QS_PATH_MAX];
        const int bad = ferror(log);
        fclose(log);
        log = NULL;
        st = bad ? QS_FAIL(err, QS_ERR_RUNTIME, "out of memory (refine.csv)")
                 : qs_rundir_path(ctx->rd, "search/refine.csv", path, sizeof(path), err);
        if (st == QS_OK) st = qs_write_file_atomic(path, csv, csvn, err);
    }
    st = qs_comm_agree(comm, st, err);
done:
    if (log) fclose(log);
    free(csv);
    qs_alloc_free(&al);
    free(nb);
    free(names);
    return st;
}
