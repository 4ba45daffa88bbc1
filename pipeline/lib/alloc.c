/* alloc.c: the per-layer candidate allocation and its JSON form (see alloc.h). */
#include "alloc.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "rundir.h"

static const char *const LIN_NAMES[QS_LIN_COUNT] = {"q", "k", "v", "o", "gate", "up", "down"};

const char *qs_alloc_linear_name(int lin) {
    return (lin >= 0 && lin < QS_LIN_COUNT) ? LIN_NAMES[lin] : NULL;
}

qs_status qs_alloc_init(qs_alloc *a, int64_t nlayers, qs_err *err) {
    memset(a, 0, sizeof(*a));
    if (nlayers < 0) return QS_FAIL(err, QS_ERR_INTERNAL, "qs_alloc_init: nlayers < 0");
    a->nlayers = nlayers;
    a->cand = calloc((size_t)(nlayers > 0 ? nlayers : 1), sizeof(*a->cand));
    if (!a->cand) return QS_FAIL(err, QS_ERR_RUNTIME, "out of memory (allocation)");
    return QS_OK;
}

qs_status qs_alloc_uniform(qs_alloc *a, int64_t nlayers, const char *cand, qs_err *err) {
    if (strlen(cand) >= QS_QUANT_NAME_MAX)
        return QS_FAIL(err, QS_ERR_INPUT, "candidate name too long: %s", cand);
    qs_status st = qs_alloc_init(a, nlayers, err);
    if (st != QS_OK) return st;
    for (int64_t l = 0; l < nlayers; ++l)
        for (int k = 0; k < QS_LIN_COUNT; ++k) strcpy(a->cand[l][k], cand);
    strcpy(a->objective, "uniform");
    return QS_OK;
}

void qs_alloc_free(qs_alloc *a) {
    free(a->cand);
    memset(a, 0, sizeof(*a));
}

int qs_alloc_same(const qs_alloc *a, const qs_alloc *b) {
    if (a->nlayers != b->nlayers) return 0;
    for (int64_t l = 0; l < a->nlayers; ++l)
        for (int k = 0; k < QS_LIN_COUNT; ++k)
            if (strcmp(a->cand[l][k], b->cand[l][k]) != 0) return 0;
    return 1;
}

qs_status qs_alloc_to_json(const qs_alloc *a, char **text, qs_err *err) {
    qs_status st = QS_OK;
    *text = NULL;
    cJSON *root = cJSON_CreateObject(), *lins = NULL, *layers = NULL;
    if (!root) QS_THROW(err, QS_ERR_RUNTIME, "out of memory (allocation JSON)");
    cJSON_AddStringToObject(root, "format", "qshard-allocation-1");
    cJSON_AddStringToObject(root, "objective", a->objective);
    cJSON_AddNumberToObject(root, "budget_bytes", (double)a->budget_bytes);
    cJSON_AddNumberToObject(root, "payload_bytes", (double)a->payload_bytes);
    cJSON_AddNumberToObject(root, "total_bytes", (double)a->total_bytes);
    cJSON_AddNumberToObject(root, "quantized_weights", (double)a->quantized_weights);
    cJSON_AddNumberToObject(root, "bpw", a->bpw);
    cJSON_AddNumberToObject(root, "predicted", a->predicted);
    lins = cJSON_AddArrayToObject(root, "linears");
    layers = cJSON_AddArrayToObject(root, "layers");
    if (!lins || !layers) QS_THROW(err, QS_ERR_RUNTIME, "out of memory (allocation JSON)");
    for (int k = 0; k < QS_LIN_COUNT; ++k)
        cJSON_AddItemToArray(lins, cJSON_CreateString(LIN_NAMES[k]));
    for (int64_t l = 0; l < a->nlayers; ++l) {
        cJSON *row = cJSON_CreateArray();
        if (!row) QS_THROW(err, QS_ERR_RUNTIME, "out of memory (allocation JSON)");
        cJSON_AddItemToArray(layers, row);
        for (int k = 0; k < QS_LIN_COUNT; ++k)
            cJSON_AddItemToArray(row, cJSON_CreateString(a->cand[l][k]));
    }
    *text = cJSON_Print(root);
    if (!*text) QS_THROW(err, QS_ERR_RUNTIME, "out of memory (allocation JSON)");
done:
    cJSON_Delete(root);
    return st;
}

static int64_t get_i64(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNumber(v) ? (int64_t)v->valuedouble : 0;
}

static double get_f64(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNumber(v) ? v->valuedouble : 0.0;
}

qs_status qs_alloc_from_json(qs_alloc *a, const char *text, const char *what,
                             int64_t expect_layers, qs_err *err) {
    qs_status st = QS_OK;
    memset(a, 0, sizeof(*a));
    cJSON *root = cJSON_Parse(text);
    if (!root || !cJSON_IsObject(root))
        QS_THROW(err, QS_ERR_INPUT, "%s: not valid JSON (allocation)", what);
    const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(root, "format");
    if (!cJSON_IsString(fmt) || strcmp(fmt->valuestring, "qshard-allocation-1") != 0)
        QS_THROW(err, QS_ERR_INPUT, "%s: not a qshard allocation (format tag missing)", what);
    const cJSON *lins = cJSON_GetObjectItemCaseSensitive(root, "linears");
    if (!cJSON_IsArray(lins) || cJSON_GetArraySize(lins) != QS_LIN_COUNT)
        QS_THROW(err, QS_ERR_INPUT, "%s: 'linears' must list the 7 linears", what);
    for (int k = 0; k < QS_LIN_COUNT; ++k) {
        const cJSON *s = cJSON_GetArrayItem(lins, k);
        if (!cJSON_IsString(s) || strcmp(s->valuestring, LIN_NAMES[k]) != 0)
            QS_THROW(err, QS_ERR_INPUT, "%s: linears[%d] must be '%s'", what, k, LIN_NAMES[k]);
    }
    const cJSON *layers = cJSON_GetObjectItemCaseSensitive(root, "layers");
    if (!cJSON_IsArray(layers)) QS_THROW(err, QS_ERR_INPUT, "%s: 'layers' missing", what);
    int64_t L = cJSON_GetArraySize(layers);
    if (expect_layers >= 0 && L != expect_layers)
        QS_THROW(err, QS_ERR_INPUT, "%s: %lld layers, the model has %lld", what, (long long)L,
                 (long long)expect_layers);
    QS_CHECK(qs_alloc_init(a, L, err));
    for (int64_t l = 0; l < L; ++l) {
        const cJSON *row = cJSON_GetArrayItem(layers, (int)l);
        if (!cJSON_IsArray(row) || cJSON_GetArraySize(row) != QS_LIN_COUNT)
            QS_THROW(err, QS_ERR_INPUT, "%s: layers[%lld] must hold 7 names", what, (long long)l);
        for (int k = 0; k < QS_LIN_COUNT; ++k) {
            const cJSON *s = cJSON_GetArrayItem(row, k);
            if (!cJSON_IsString(s) || strlen(s->valuestring) >= QS_QUANT_NAME_MAX)
                QS_THROW(err, QS_ERR_INPUT, "%s: layers[%lld][%d] is not a candidate name",
                         what, (long long)l, k);
            strcpy(a->cand[l][k], s->valuestring);
        }
    }
    const cJSON *obj = cJSON_GetObjectItemCaseSensitive(root, "objective");
    if (cJSON_IsString(obj)) snprintf(a->objective, sizeof(a->objective), "%s", obj->valuestring);
    a->budget_bytes = get_i64(root, "budget_bytes");
    a->payload_bytes = get_i64(root, "payload_bytes");
    a->total_bytes = get_i64(root, "total_bytes");
    a->quantized_weights = get_i64(root, "quantized_weights");
    a->bpw = get_f64(root, "bpw");
    a->predicted = get_f64(root, "predicted");
done:
    cJSON_Delete(root);
    if (st != QS_OK) qs_alloc_free(a);
    return st;
}

qs_status qs_alloc_write_json(const qs_alloc *a, const char *path, qs_err *err) {
    char *text = NULL;
    qs_status st = qs_alloc_to_json(a, &text, err);
    if (st == QS_OK) {
        size_t n = strlen(text);
        char *buf = realloc(text, n + 2);
        if (!buf) {
            free(text);
            return QS_FAIL(err, QS_ERR_RUNTIME, "out of memory (allocation JSON)");
        }
        text = buf;
        text[n] = '\n';
        text[n + 1] = 0;
        st = qs_write_file_atomic(path, text, n + 1, err);
    }
    free(text);
    return st;
}

qs_status qs_alloc_read_json(qs_alloc *a, const char *path, int64_t expect_layers,
                             qs_err *err) {
    char *text = NULL;
    memset(a, 0, sizeof(*a));
    qs_status st = qs_read_file(path, &text, NULL, err);
    if (st == QS_OK) st = qs_alloc_from_json(a, text, path, expect_layers, err);
    free(text);
    return st;
}
