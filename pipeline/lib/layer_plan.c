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
    p->calib_first = qs_calloc((size_t)nranks + 2, sizeof(int), err, "plan");
    if (!p->layer_cost || !p->layer_rank || !p->first || !p->mem || !p->calib_first) {
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
    free(p->calib_first);
    memset(p, 0, sizeof(*p));
}

int qs_plan_calib_role(const qs_plan *p, int rank, qs_mem_calib *role) {
    const int S = p->calib_stages;
    if (S < 1 || rank < 0 || rank >= S * p->calib_replicas) {
        *role = (qs_mem_calib){0, 0, -1};
        return -1;
    }
    const int s = rank % S;
    *role = (qs_mem_calib){p->calib_first[s], p->calib_first[s + 1] - p->calib_first[s],
                           rank / S};
    return s;
}

/* 1-D schedule (a plan file without "calibrate"): the owner split, one replica. */
static void calib_one_d(qs_plan *p) {
    p->calib_stages = p->nranks;
    p->calib_replicas = 1;
    p->calib_max_cost = p->max_cost;
    memcpy(p->calib_first, p->first, sizeof(int) * (size_t)(p->nranks + 1));
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
    cJSON *cal = cJSON_AddObjectToObject(root, "calibrate");
    cJSON_AddNumberToObject(cal, "stages", p->calib_stages);
    cJSON_AddNumberToObject(cal, "replicas", p->calib_replicas);
    cJSON_AddNumberToObject(cal, "max_cost", p->calib_max_cost);
    cJSON_AddNumberToObject(cal, "shipped_bytes", (double)p->calib_shipped);
    cJSON *cf = cJSON_AddArrayToObject(cal, "first");
    for (int s = 0; s <= p->calib_stages; ++s)
        cJSON_AddItemToArray(cf, cJSON_CreateNumber(p->calib_first[s]));
    cJSON *ranks = cJSON_AddArrayToObject(root, "ranks");
    for (int r = 0; r < p->nranks; ++r) {
        cJSON *o = cJSON_CreateObject();
        double c = 0.0;
        for (int l = p->first[r]; l < p->first[r + 1]; ++l) c += p->layer_cost[l];
        cJSON_AddNumberToObject(o, "rank", r);
        cJSON_AddNumberToObject(o, "first", p->first[r]);
        cJSON_AddNumberToObject(o, "count", p->first[r + 1] - p->first[r]);
        cJSON_AddNumberToObject(o, "cost", c);
        qs_mem_calib role;
        cJSON *rc = cJSON_AddObjectToObject(o, "calibrate");
        cJSON_AddNumberToObject(rc, "stage", qs_plan_calib_role(p, r, &role));
        cJSON_AddNumberToObject(rc, "replica", role.replica);
        cJSON_AddNumberToObject(rc, "first", role.first);
        cJSON_AddNumberToObject(rc, "count", role.count);
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

/* The "calibrate" object (absent in plans written before the 2-D schedule: 1-D). */
static qs_status calib_from_json(qs_plan *p, const cJSON *cal, const char *path, qs_err *err) {
    if (!cal) {
        calib_one_d(p);
        return QS_OK;
    }
    int S = 0, D = 0;
    const cJSON *cf = cJSON_GetObjectItemCaseSensitive(cal, "first");
    const cJSON *mc = cJSON_GetObjectItemCaseSensitive(cal, "max_cost");
    if (!get_int(cal, "stages", &S) || !get_int(cal, "replicas", &D) || S < 1 || D < 1 ||
        S > p->nranks / D || cJSON_GetArraySize(cf) != S + 1)
        return QS_FAIL(err, QS_ERR_INPUT, "%s: malformed plan (calibrate)", path);
    p->calib_stages = S;
    p->calib_replicas = D;
    p->calib_max_cost = cJSON_IsNumber(mc) ? mc->valuedouble : 0.0;
    p->calib_shipped = get_i64(cal, "shipped_bytes");
    for (int s = 0; s <= S; ++s) {
        const cJSON *v = cJSON_GetArrayItem(cf, s);
        p->calib_first[s] = cJSON_IsNumber(v) ? (int)v->valuedouble : -1;
        if (p->calib_first[s] < (s ? p->calib_first[s - 1] : 0) || p->calib_first[s] > p->nlayers)
            return QS_FAIL(err, QS_ERR_INPUT, "%s: malformed plan (calibrate ranges)", path);
    }
    if (p->calib_first[0] != 0 || p->calib_first[S] != p->nlayers)
        return QS_FAIL(err, QS_ERR_INPUT, "%s: malformed plan (calibrate ranges)", path);
    return QS_OK;
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
    QS_CHECK(calib_from_json(p, cJSON_GetObjectItemCaseSensitive(root, "calibrate"), path, err));
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

/* "a-b" or "-" for layers [first, first + count). */
static void range_text(int first, int count, char *out, size_t n) {
    if (count > 0)
        snprintf(out, n, "%d-%d", first, first + count - 1);
    else
        snprintf(out, n, "-");
}

void qs_plan_print(const qs_plan *p, FILE *out) {
    double total = 0.0;
    for (int l = 0; l < p->nlayers; ++l) total += p->layer_cost[l];
    fprintf(out, "plan: %d layers over %d ranks (largest share %.1f%% of the work)\n",
            p->nlayers, p->nranks, total > 0 ? 100.0 * p->max_cost / total : 0.0);
    char ship[24];
    human_bytes(p->calib_shipped, ship, sizeof(ship));
    fprintf(out, "calibrate: %d stages x %d replicas, %d of %d ranks busy; replicas ship %s "
            "of chunk partials to replica 0\n",
            p->calib_stages, p->calib_replicas, p->calib_stages * p->calib_replicas, p->nranks,
            ship);
    fprintf(out, "%6s %12s %8s %14s %12s %12s %12s %12s\n", "rank", "layers", "work%",
            "calibrate", "weights", "hessians", "activations", "total");
    for (int r = 0; r < p->nranks; ++r) {
        double c = 0.0;
        for (int l = p->first[r]; l < p->first[r + 1]; ++l) c += p->layer_cost[l];
        char range[32], crange[32], cal[48], w[24], h[24], a[24], t[24];
        qs_mem_calib role;
        range_text(p->first[r], p->first[r + 1] - p->first[r], range, sizeof(range));
        if (qs_plan_calib_role(p, r, &role) >= 0) {
            range_text(role.first, role.count, crange, sizeof(crange));
            snprintf(cal, sizeof(cal), "%s r%d", crange, role.replica);
        } else {
            snprintf(cal, sizeof(cal), "idle");
        }
        human_bytes(p->mem[r].weights, w, sizeof(w));
        human_bytes(p->mem[r].hessians, h, sizeof(h));
        human_bytes(p->mem[r].activations + p->mem[r].extra, a, sizeof(a));
        human_bytes(p->mem[r].total, t, sizeof(t));
        fprintf(out, "%6d %12s %7.1f%% %14s %12s %12s %12s %12s\n", r, range,
                total > 0 ? 100.0 * c / total : 0.0, cal, w, h, a, t);
    }
}

/* Calibrate's 2-D schedule and the bytes its replicas ship: per chunk not run by replica
 * 0, every layer's partials (per group the upper triangle of a (d, d) f32 tile, d f32
 * absmax, d f64 sum of squares). Replica 0 takes the first chunk of every round of D chunks, rounds counted from
 * each checkpoint segment's start (stages/calibrate.c). */
static qs_status calib_compute(const qs_hf_config *hf, const qs_config *cfg, qs_plan *p,
                               qs_err *err) {
    qs_status st = QS_OK;
    const int L = p->nlayers;
    const int64_t S = cfg ? cfg->calib.nsamples : 128, CS = cfg ? cfg->calib.chunk_samples : 8;
    const int64_t nchunks = CS > 0 ? (S + CS - 1) / CS : 1;
    double *cost = qs_malloc(sizeof(double) * (size_t)(L + 1), err, "calibrate costs");
    if (!cost) return QS_ERR_RUNTIME;
    for (int l = 0; l < L; ++l) cost[l] = qs_layer_cost_calibrate(hf, cfg, l);
    QS_CHECK(qs_partition_grid(cost, L, p->nranks, nchunks, cfg ? cfg->calib.replicas : 0,
                               &p->calib_stages, &p->calib_replicas, p->calib_first,
                               &p->calib_max_cost, err));
    const int64_t D = p->calib_replicas;
    const int64_t every = cfg && cfg->calib.checkpoint_every > 0 ? cfg->calib.checkpoint_every : 16;
    int64_t on0 = 0;
    for (int64_t c = 0; c < nchunks; c += every) {
        const int64_t len = nchunks - c < every ? nchunks - c : every;
        on0 += (len + D - 1) / D;
    }
    const int64_t h = hf->hidden_size, q = hf->num_attention_heads * hf->head_dim;
    const int64_t in = hf->intermediate_size;
    const int64_t layer = (h * (h + 1) + q * (q + 1) / 2 + in * (in + 1) / 2) * 4 +
                          (2 * h + q + in) * 12; /* upper triangles + channel statistics */
    p->calib_shipped = (nchunks - on0) * (int64_t)L * layer;
done:
    free(cost);
    return st;
}

qs_status qs_plan_compute(const qs_hf_config *hf, const qs_config *cfg, int nranks,
                          qs_plan *out, qs_err *err) {
    qs_status st = QS_OK;
    int L = (int)hf->num_hidden_layers;
    QS_CHECK(qs_plan_alloc(out, nranks, L, err));
    for (int l = 0; l < L; ++l) out->layer_cost[l] = qs_layer_cost(hf, cfg, l);
    QS_CHECK(qs_partition_contiguous(out->layer_cost, L, nranks, out->first, &out->max_cost,
                                     err));
    QS_CHECK(calib_compute(hf, cfg, out, err));
    for (int r = 0; r < nranks; ++r) {
        qs_mem_calib role;
        for (int l = out->first[r]; l < out->first[r + 1]; ++l) out->layer_rank[l] = r;
        qs_plan_calib_role(out, r, &role);
        out->mem[r] = qs_mem_for_rank(hf, cfg, r, nranks, out->first[r],
                                      out->first[r + 1] - out->first[r], &role);
    }
done:
    if (st != QS_OK) qs_plan_free(out);
    return st;
}
