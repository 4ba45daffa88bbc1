/* plan.c: layer plan storage (JSON via cJSON) and printing. */
#include "layer_plan.h"

#include "partition.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

qs_status qs_plan_alloc(qs_plan *p, int nranks, int nlayers, qs_err *err) {
    memset(p, 0, sizeof(*p));
    if (nranks < 1 || nlayers < 0)
        return QS_FAIL(err, QS_ERR_INTERNAL, "plan: nranks=%d nlayers=%d", nranks, nlayers);
    p->nranks = nranks;
    p->nlayers = nlayers;
    p->layer_cost = qs_calloc((size_t)nlayers + 1, sizeof(double), err, "plan");
    p->layer_rank = qs_calloc((size_t)nlayers + 1, sizeof(int), err, "plan");
    p->first = qs_calloc((size_t)nranks + 1, sizeof(int), err, "plan");
    p->mem = qs_calloc((size_t)nranks, sizeof(qs_mem_estimate), err, "plan");
    if (!p->layer_cost || !p->layer_rank || !p->first || !p->mem) {
        qs_plan_free(p);
        return QS_ERR_RUNTIME;
    }
    return QS_OK;
}

void qs_plan_free(qs_plan *p) {
    free(p->layer_cost);
    free(p->layer_rank);
    free(p->first);
    free(p->mem);
    memset(p, 0, sizeof(*p));
}

static cJSON *mem_json(const qs_mem_estimate *m) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "weights", (double)m->weights);
    cJSON_AddNumberToObject(o, "hessians", (double)m->hessians);
    cJSON_AddNumberToObject(o, "activations", (double)m->activations);
    cJSON_AddNumberToObject(o, "extra", (double)m->extra);
    cJSON_AddNumberToObject(o, "total", (double)m->total);
    return o;
}

qs_status qs_plan_to_json(const qs_plan *p, char **text, qs_err *err) {
    *text = NULL;
    cJSON *root = cJSON_CreateObject();
    if (!root) return QS_FAIL(err, QS_ERR_RUNTIME, "out of memory (plan)");
    cJSON_AddNumberToObject(root, "nranks", p->nranks);
    cJSON_AddNumberToObject(root, "nlayers", p->nlayers);
    cJSON_AddNumberToObject(root, "max_cost", p->max_cost);
    cJSON *layers = cJSON_AddArrayToObject(root, "layers");
    for (int l = 0; l < p->nlayers; ++l) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "layer", l);
        cJSON_AddNumberToObject(o, "rank", p->layer_rank[l]);
        cJSON_AddNumberToObject(o, "cost", p->layer_cost[l]);
        cJSON_AddItemToArray(layers, o);
    }
    cJSON *ranks = cJSON_AddArrayToObject(root, "ranks");
    for (int r = 0; r < p->nranks; ++r) {
        cJSON *o = cJSON_CreateObject();
        double c = 0.0;
        for (int l = p->first[r]; l < p->first[r + 1]; ++l) c += p->layer_cost[l];
        cJSON_AddNumberToObject(o, "rank", r);
        cJSON_AddNumberToObject(o, "first", p->first[r]);
        cJSON_AddNumberToObject(o, "count", p->first[r + 1] - p->first[r]);
        cJSON_AddNumberToObject(o, "cost", c);
        cJSON_AddItemToObject(o, "memory_bytes", mem_json(&p->mem[r]));
        cJSON_AddItemToArray(ranks, o);
    }
    char *s = cJSON_Print(root);
    cJSON_Delete(root);
    if (!s) return QS_FAIL(err, QS_ERR_RUNTIME, "out of memory (plan)");
    size_t n = strlen(s);
    *text = qs_malloc(n + 2, err, "plan text");
    if (*text) {
        memcpy(*text, s, n);
        (*text)[n] = '\n';
        (*text)[n + 1] = '\0';
    }
    cJSON_free(s);
    return *text ? QS_OK : QS_ERR_RUNTIME;
}

static int get_int(const cJSON *o, const char *key, int *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) ||
        fabs(v->valuedouble) > 1e9)
        return 0;
    *out = (int)v->valuedouble;
    return 1;
}

static int64_t get_i64(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNumber(v) ? (int64_t)v->valuedouble : 0;
}

qs_status qs_plan_from_json(qs_plan *p, const char *text, const char *path, qs_err *err) {
    qs_status st = QS_OK;
    memset(p, 0, sizeof(*p));
    cJSON *root = cJSON_Parse(text);
    int nranks = 0, nlayers = 0;
    if (!root || !get_int(root, "nranks", &nranks) || !get_int(root, "nlayers", &nlayers) ||
        nranks < 1 || nlayers < 0)
        QS_THROW(err, QS_ERR_INPUT, "%s: malformed plan", path);
    QS_CHECK(qs_plan_alloc(p, nranks, nlayers, err));
    const cJSON *mc = cJSON_GetObjectItemCaseSensitive(root, "max_cost");
    p->max_cost = cJSON_IsNumber(mc) ? mc->valuedouble : 0.0;
    const cJSON *layers = cJSON_GetObjectItemCaseSensitive(root, "layers");
    const cJSON *ranks = cJSON_GetObjectItemCaseSensitive(root, "ranks");
    if (cJSON_GetArraySize(layers) != nlayers || cJSON_GetArraySize(ranks) != nranks)
        QS_THROW(err, QS_ERR_INPUT, "%s: malformed plan (array sizes)", path);
    for (int l = 0; l < nlayers; ++l) {
        const cJSON *o = cJSON_GetArrayItem(layers, l);
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(o, "cost");
        if (!get_int(o, "rank", &p->layer_rank[l]) || !cJSON_IsNumber(c))
            QS_THROW(err, QS_ERR_INPUT, "%s: malformed plan (layer %d)", path, l);
        p->layer_cost[l] = c->valuedouble;
    }
    for (int r = 0; r < nranks; ++r) {
        const cJSON *o = cJSON_GetArrayItem(ranks, r);
        int first = 0, count = 0;
        if (!get_int(o, "first", &first) || !get_int(o, "count", &count))
            QS_THROW(err, QS_ERR_INPUT, "%s: malformed plan (rank %d)", path, r);
        p->first[r] = first;
        p->first[r + 1] = first + count;
        const cJSON *m = cJSON_GetObjectItemCaseSensitive(o, "memory_bytes");
        p->mem[r].weights = get_i64(m, "weights");
        p->mem[r].hessians = get_i64(m, "hessians");
        p->mem[r].activations = get_i64(m, "activations");
        p->mem[r].extra = get_i64(m, "extra");
        p->mem[r].total = get_i64(m, "total");
    }
    if (p->first[0] != 0 || p->first[nranks] != nlayers)
        QS_THROW(err, QS_ERR_INPUT, "%s: malformed plan (ranges)", path);
done:
    cJSON_Delete(root);
    if (st != QS_OK) qs_plan_free(p);
    return st;
}

static void human_bytes(int64_t b, char *out, size_t n) {
    const char *unit[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = (double)b;
    int u = 0;
    while (v >= 1024.0 && u < 4) {
        v /= 1024.0;
        ++u;
    }
    snprintf(out, n, u ? "%.2f %s" : "%.0f %s", v, unit[u]);
}

void qs_plan_print(const qs_plan *p, FILE *out) {
    double total = 0.0;
    for (int l = 0; l < p->nlayers; ++l) total += p->layer_cost[l];
    fprintf(out, "plan: %d layers over %d ranks (largest share %.1f%% of the work)\n",
            p->nlayers, p->nranks, total > 0 ? 100.0 * p->max_cost / total : 0.0);
    fprintf(out, "%6s %12s %8s %12s %12s %12s %12s\n", "rank", "layers", "work%", "weights",
            "hessians", "activations", "total");
    for (int r = 0; r < p->nranks; ++r) {
        double c = 0.0;
        for (int l = p->first[r]; l < p->first[r + 1]; ++l) c += p->layer_cost[l];
        char range[32], w[24], h[24], a[24], t[24];
        if (p->first[r + 1] > p->first[r])
            snprintf(range, sizeof(range), "%d-%d", p->first[r], p->first[r + 1] - 1);
        else
            snprintf(range, sizeof(range), "-");
        human_bytes(p->mem[r].weights, w, sizeof(w));
        human_bytes(p->mem[r].hessians, h, sizeof(h));
        human_bytes(p->mem[r].activations + p->mem[r].extra, a, sizeof(a));
        human_bytes(p->mem[r].total, t, sizeof(t));
        fprintf(out, "%6d %12s %7.1f%% %12s %12s %12s %12s\n", r, range,
                total > 0 ? 100.0 * c / total : 0.0, w, h, a, t);
    }
}

qs_status qs_plan_compute(const qs_hf_config *hf, const qs_config *cfg, int nranks,
                          qs_plan *out, qs_err *err) {
    qs_status st = QS_OK;
    int L = (int)hf->num_hidden_layers;
    QS_CHECK(qs_plan_alloc(out, nranks, L, err));
    for (int l = 0; l < L; ++l) out->layer_cost[l] = qs_layer_cost(hf, cfg, l);
    QS_CHECK(qs_partition_contiguous(out->layer_cost, L, nranks, out->first, &out->max_cost,
                                     err));
    for (int r = 0; r < nranks; ++r) {
        for (int l = out->first[r]; l < out->first[r + 1]; ++l) out->layer_rank[l] = r;
        out->mem[r] = qs_mem_for_rank(hf, cfg, r, nranks, out->first[r],
                                      out->first[r + 1] - out->first[r]);
    }
done:
    if (st != QS_OK) qs_plan_free(out);
    return st;
}
