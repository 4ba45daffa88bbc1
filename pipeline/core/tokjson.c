/* tokjson.c: tokenizer.json read and checked once (see tokjson.h). */
#include "tokjson.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "rundir.h"

void qs_tokjson_free(qs_tokjson *tj) {
    cJSON_Delete(tj->root);
    free(tj->vocab);
    free(tj->merges);
    free(tj->added);
    *tj = (qs_tokjson){0};
}

/* An integral JSON number in [0, 2^31) into *v; 0 on success. */
static int json_id(const cJSON *j, int64_t *v) {
    if (!cJSON_IsNumber(j)) return -1;
    const double d = j->valuedouble;
    if (!(d >= 0 && d < 2147483648.0) || d != (double)(int64_t)d) return -1;
    *v = (int64_t)d;
    return 0;
}

/* A flag of an added token: absent or null -> dflt, a boolean -> 0/1, anything else -1. */
static int json_flag(const cJSON *o, const char *key, int dflt) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v || cJSON_IsNull(v)) return dflt;
    return cJSON_IsBool(v) ? cJSON_IsTrue(v) != 0 : -1;
}

qs_status qs_tokjson_parse_file(const char *path, uint64_t max_bytes, cJSON **root, qs_err *err) {
    qs_status st = QS_OK;
    char *data = NULL;
    size_t n = 0;
    struct stat sb;
    *root = NULL;
    if (stat(path, &sb) != 0)
        return QS_FAIL(err, QS_ERR_INPUT, "%s: cannot open: %s", path, strerror(errno));
    if (!S_ISREG(sb.st_mode)) return QS_FAIL(err, QS_ERR_INPUT, "%s: not a regular file", path);
    QS_CHECK(qs_read_file_max(path, max_bytes, &data, &n, err));
    const char *end = NULL;
    *root = cJSON_ParseWithLengthOpts(data, n, &end, 0);
    if (!*root) {
        const char *at = end && end >= data && end <= data + n ? end : data;
        long line = 1;
        for (const char *p = data; p < at; ++p) line += *p == '\n';
        QS_THROW(err, QS_ERR_INPUT, "%s:%ld: invalid JSON", path, line);
    }
done:
    free(data);
    return st;
}

/* model.vocab and model.merges of a BPE model. */
static qs_status read_bpe(qs_tokjson *tj, const char *path, qs_err *err) {
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(tj->model, "vocab");
    const cJSON *merges = cJSON_GetObjectItemCaseSensitive(tj->model, "merges");
    const cJSON *x;
    if (!cJSON_IsObject(vocab))
        return QS_FAIL(err, QS_ERR_INPUT, "%s: model BPE has no vocab object", path);
    if (merges && !cJSON_IsNull(merges) && !cJSON_IsArray(merges))
        return QS_FAIL(err, QS_ERR_INPUT, "%s: model BPE merges is not a list", path);
    const int nv = cJSON_GetArraySize(vocab), nm = cJSON_IsArray(merges) ? cJSON_GetArraySize(merges) : 0;
    tj->vocab = calloc((size_t)nv + 1, sizeof(*tj->vocab));
    tj->merges = calloc((size_t)nm + 1, sizeof(*tj->merges));
    if (!tj->vocab || !tj->merges) return QS_FAIL(err, QS_ERR_RUNTIME, "%s: out of memory", path);
    cJSON_ArrayForEach(x, vocab) {
        qs_tokjson_token *t = &tj->vocab[tj->nvocab];
        if (json_id(x, &t->id) != 0)
            return QS_FAIL(err, QS_ERR_INPUT, "%s: model vocab entry '%.40s' has a bad id", path,
                           x->string);
        t->s = x->string;
        tj->nvocab++;
    }
    for (x = cJSON_IsArray(merges) ? merges->child : NULL; x; x = x->next) {
        qs_tokjson_merge *m = &tj->merges[tj->nmerges];
        if (cJSON_IsString(x)) {
            if (strncmp(x->valuestring, "#version", 8) == 0) continue; /* as the library */
            const char *sp = strchr(x->valuestring, ' ');
            if (!sp || strchr(sp + 1, ' '))
                return QS_FAIL(err, QS_ERR_INPUT, "%s: merge %lld '%.40s' is not two tokens", path,
                               (long long)tj->nmerges, x->valuestring);
            m->l = x->valuestring;
            m->nl = (size_t)(sp - x->valuestring);
            m->r = sp + 1;
            m->nr = strlen(m->r);
        } else if (cJSON_IsArray(x) && cJSON_GetArraySize(x) == 2 && cJSON_IsString(x->child) &&
                   cJSON_IsString(x->child->next)) {
            m->l = x->child->valuestring;
            m->r = x->child->next->valuestring;
            m->nl = strlen(m->l);
            m->nr = strlen(m->r);
            m->pair = 1;
        } else {
            return QS_FAIL(err, QS_ERR_INPUT, "%s: merge %lld is neither \"a b\" nor [a, b]", path,
                           (long long)tj->nmerges);
        }
        tj->nmerges++;
    }
    return QS_OK;
}

/* added_tokens: content, id when given, flags. */
static qs_status read_added(qs_tokjson *tj, const char *path, qs_err *err) {
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(tj->root, "added_tokens");
    if (!arr || cJSON_IsNull(arr)) return QS_OK;
    if (!cJSON_IsArray(arr)) return QS_FAIL(err, QS_ERR_INPUT, "%s: added_tokens is not a list", path);
    tj->added = calloc((size_t)cJSON_GetArraySize(arr) + 1, sizeof(*tj->added));
    if (!tj->added) return QS_FAIL(err, QS_ERR_RUNTIME, "%s: out of memory", path);
    const cJSON *x;
    cJSON_ArrayForEach(x, arr) {
        qs_tokjson_added *a = &tj->added[tj->nadded];
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(x, "content");
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(x, "id");
        a->content = cJSON_IsString(c) ? c->valuestring : NULL;
        a->id = -1;
        a->special = json_flag(x, "special", 0);
        a->single_word = json_flag(x, "single_word", 0);
        a->lstrip = json_flag(x, "lstrip", 0);
        a->rstrip = json_flag(x, "rstrip", 0);
        a->normalized = json_flag(x, "normalized", -2);
        if (!a->content || a->special < 0 || a->single_word < 0 || a->lstrip < 0 ||
            a->rstrip < 0 || a->normalized == -1 ||
            (id && !cJSON_IsNull(id) && json_id(id, &a->id) != 0))
            return QS_FAIL(err, QS_ERR_INPUT, "%s: added_tokens entry %lld is malformed", path,
                           (long long)tj->nadded);
        tj->nadded++;
    }
    return QS_OK;
}

qs_status qs_tokjson_read(qs_tokjson *tj, const char *path, uint64_t max_bytes, qs_err *err) {
    qs_status st = QS_OK;
    memset(tj, 0, sizeof(*tj));
    QS_CHECK(qs_tokjson_parse_file(path, max_bytes, &tj->root, err));
    if (!cJSON_IsObject(tj->root)) QS_THROW(err, QS_ERR_INPUT, "%s: not a JSON object", path);
    tj->model = cJSON_GetObjectItemCaseSensitive(tj->root, "model");
    const cJSON *ty = tj->model ? cJSON_GetObjectItemCaseSensitive(tj->model, "type") : NULL;
    tj->model_type = cJSON_IsString(ty) ? ty->valuestring : NULL;
    if (tj->model_type && strcmp(tj->model_type, "BPE") == 0) QS_CHECK(read_bpe(tj, path, err));
    QS_CHECK(read_added(tj, path, err));
done:
    if (st != QS_OK) qs_tokjson_free(tj);
    return st;
}
