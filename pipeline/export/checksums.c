/* checksums.c: qshard-checksums.json beside an export's tensor files (see checksums.h). */
#include "checksums.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "rundir.h"
#include "sha256.h"

static int is_tensor_file(const char *n) {
    const size_t l = strlen(n);
    return n[0] != '.' && ((l > 12 && strcmp(n + l - 12, ".safetensors") == 0) ||
                           (l > 5 && strcmp(n + l - 5, ".gguf") == 0));
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The tensor files of dir, sorted (*names malloc'd strings, free with free_names). */
static qs_status list_files(const char *dir, char ***names, int *n, qs_err *err) {
    qs_status st = QS_OK;
    int cap = 0;
    *names = NULL;
    *n = 0;
    DIR *d = opendir(dir);
    if (!d) return QS_FAIL(err, QS_ERR_INPUT, "%s: cannot list the directory", dir);
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        if (!is_tensor_file(e->d_name)) continue;
        if (*n == cap) {
            cap = cap ? 2 * cap : 16;
            char **nn = realloc(*names, sizeof(char *) * (size_t)cap);
            if (!nn) QS_THROW(err, QS_ERR_RUNTIME, "out of memory (%s)", dir);
            *names = nn;
        }
        (*names)[*n] = strdup(e->d_name);
        if (!(*names)[*n]) QS_THROW(err, QS_ERR_RUNTIME, "out of memory (%s)", dir);
        ++*n;
    }
    if (*n > 1) qsort(*names, (size_t)*n, sizeof(char *), cmp_str);
done:
    closedir(d);
    return st;
}

static void free_names(char **names, int n) {
    for (int i = 0; i < n; ++i) free(names[i]);
    free(names);
}

qs_status qs_checksums_write(const char *dir, qs_err *err) {
    qs_status st = QS_OK;
    char **names = NULL, path[QS_PATH_MAX + 300], *text = NULL;
    int n = 0;
    cJSON *o = cJSON_CreateObject(), *h = NULL;
    if (!o) return QS_FAIL(err, QS_ERR_RUNTIME, "out of memory (%s)", QS_CHECKSUMS_FILE);
    QS_CHECK(list_files(dir, &names, &n, err));
    cJSON_AddStringToObject(o, "format", "qshard-checksums-1");
    h = cJSON_AddObjectToObject(o, "sha256");
    if (!h) QS_THROW(err, QS_ERR_RUNTIME, "out of memory (%s)", QS_CHECKSUMS_FILE);
    for (int i = 0; i < n; ++i) {
        char hex[65];
        snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
        QS_CHECK(qs_sha256_file(path, hex, err));
        if (!cJSON_AddStringToObject(h, names[i], hex))
            QS_THROW(err, QS_ERR_RUNTIME, "out of memory (%s)", QS_CHECKSUMS_FILE);
    }
    text = cJSON_Print(o);
    if (!text) QS_THROW(err, QS_ERR_RUNTIME, "out of memory (%s)", QS_CHECKSUMS_FILE);
    snprintf(path, sizeof(path), "%s/%s", dir, QS_CHECKSUMS_FILE);
    QS_CHECK(qs_write_file_atomic(path, text, strlen(text), err));
done:
    cJSON_free(text);
    cJSON_Delete(o);
    free_names(names, n);
    return st;
}

qs_status qs_checksums_verify(const char *dir, int64_t *checked, qs_err *err) {
    qs_status st = QS_OK;
    char path[QS_PATH_MAX + 300], **names = NULL, *text = NULL;
    int n = 0;
    cJSON *o = NULL;
    *checked = 0;
    snprintf(path, sizeof(path), "%s/%s", dir, QS_CHECKSUMS_FILE);
    if (!qs_path_exists(path)) return QS_OK;
    QS_CHECK(qs_read_file(path, &text, NULL, err));
    o = cJSON_Parse(text);
    const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(o, "format");
    const cJSON *h = cJSON_GetObjectItemCaseSensitive(o, "sha256");
    if (!cJSON_IsString(fmt) || strcmp(fmt->valuestring, "qshard-checksums-1") != 0 ||
        !cJSON_IsObject(h))
        QS_THROW(err, QS_ERR_INPUT, "%s: not a qshard-checksums-1 file", path);
    const cJSON *e = NULL;
    cJSON_ArrayForEach(e, h) {
        char hex[65], fp[QS_PATH_MAX + 300];
        if (!cJSON_IsString(e) || strchr(e->string, '/'))
            QS_THROW(err, QS_ERR_INPUT, "%s: entry %s is malformed", path, e->string);
        snprintf(fp, sizeof(fp), "%s/%s", dir, e->string);
        if (!qs_path_exists(fp))
            QS_THROW(err, QS_ERR_INPUT, "%s: missing (listed in %s)", fp, QS_CHECKSUMS_FILE);
        QS_CHECK(qs_sha256_file(fp, hex, err));
        if (strcmp(hex, e->valuestring) != 0)
            QS_THROW(err, QS_ERR_INPUT, "%s: SHA-256 differs from %s", fp, QS_CHECKSUMS_FILE);
        ++*checked;
    }
    QS_CHECK(list_files(dir, &names, &n, err));
    for (int i = 0; i < n; ++i)
        if (!cJSON_GetObjectItemCaseSensitive(h, names[i]))
            QS_THROW(err, QS_ERR_INPUT, "%s/%s: not listed in %s", dir, names[i],
                     QS_CHECKSUMS_FILE);
done:
    cJSON_Delete(o);
    free(text);
    free_names(names, n);
    return st;
}
