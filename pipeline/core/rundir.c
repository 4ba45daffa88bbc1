/* rundir.c: run directory paths, durable temp->rename writes, stage manifests (cJSON). */
#include "rundir.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sha256.h"

static char *dup_str(const char *s, qs_err *err) {
    size_t n = strlen(s) + 1;
    char *p = qs_malloc(n, err, "string");
    if (p) memcpy(p, s, n);
    return p;
}

void qs_rundir_layer_rel(char *rel, size_t n, const char *dir, int layer) {
    snprintf(rel, n, "%s/layer-%03d.h5", dir, layer);
}

qs_status qs_rundir_init(qs_rundir *rd, const char *root, qs_err *err) {
    memset(rd, 0, sizeof(*rd));
    if (!root || !*root) return QS_FAIL(err, QS_ERR_INPUT, "run_dir is empty");
    rd->root = dup_str(root, err);
    return rd->root ? QS_OK : QS_ERR_RUNTIME;
}

void qs_rundir_free(qs_rundir *rd) {
    free(rd->root);
    rd->root = NULL;
}

qs_status qs_rundir_path(const qs_rundir *rd, const char *rel, char *out, size_t n,
                         qs_err *err) {
    int k = (rel && *rel) ? snprintf(out, n, "%s/%s", rd->root, rel)
                          : snprintf(out, n, "%s", rd->root);
    if (k < 0 || (size_t)k >= n)
        return QS_FAIL(err, QS_ERR_INPUT, "%s: path too long", rd->root);
    return QS_OK;
}

int qs_path_exists(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0;
}

qs_status qs_mkdir_p(const char *path, qs_err *err) {
    char buf[QS_PATH_MAX];
    size_t n = strlen(path);
    if (n == 0) return QS_OK;
    if (n >= sizeof(buf)) return QS_FAIL(err, QS_ERR_INPUT, "%s: path too long", path);
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i <= n; ++i) {
        if (buf[i] == '/' || buf[i] == '\0') {
            char c = buf[i];
            buf[i] = '\0';
            if (mkdir(buf, 0777) != 0 && errno != EEXIST)
                return QS_FAIL(err, errno == EACCES || errno == ENOTDIR ? QS_ERR_INPUT
                                                                         : QS_ERR_RUNTIME,
                               "%s: cannot create directory: %s", buf, strerror(errno));
            buf[i] = c;
        }
    }
    struct stat sb;
    if (stat(path, &sb) != 0 || !S_ISDIR(sb.st_mode))
        return QS_FAIL(err, QS_ERR_INPUT, "%s: not a directory", path);
    return QS_OK;
}

qs_status qs_rundir_mkdir(const qs_rundir *rd, const char *rel, qs_err *err) {
    char p[QS_PATH_MAX];
    qs_status st = qs_rundir_path(rd, rel, p, sizeof(p), err);
    if (st != QS_OK) return st;
    return qs_mkdir_p(p, err);
}

qs_status qs_fsync_dir(const char *dir, qs_err *err) {
    int fd = open(dir, O_RDONLY);
    if (fd < 0)
        return QS_FAIL(err, QS_ERR_RUNTIME, "%s: cannot open directory: %s", dir,
                       strerror(errno));
    int rc = fsync(fd);
    int e = errno;
    close(fd);
    /* some file systems refuse fsync on directories; that is not a data loss */
    if (rc != 0 && e != EINVAL && e != EROFS)
        return QS_FAIL(err, QS_ERR_RUNTIME, "%s: fsync: %s", dir, strerror(e));
    return QS_OK;
}

static void dir_of(const char *path, char *out, size_t n) {
    const char *slash = strrchr(path, '/');
    if (!slash) {
        snprintf(out, n, ".");
    } else if (slash == path) {
        snprintf(out, n, "/");
    } else {
        size_t k = (size_t)(slash - path);
        if (k >= n) k = n - 1;
        memcpy(out, path, k);
        out[k] = '\0';
    }
}

qs_status qs_atomic_open(qs_atomic *a, const char *path, qs_err *err) {
    memset(a, 0, sizeof(*a));
    int k1 = snprintf(a->path, sizeof(a->path), "%s", path);
    int k2 = snprintf(a->tmp, sizeof(a->tmp), "%s.tmp.%ld", path, (long)getpid());
    if (k1 < 0 || k2 < 0 || (size_t)k2 >= sizeof(a->tmp))
        return QS_FAIL(err, QS_ERR_INPUT, "%s: path too long", path);
    a->f = fopen(a->tmp, "wb");
    if (!a->f)
        return QS_FAIL(err, errno == ENOENT || errno == EACCES ? QS_ERR_INPUT : QS_ERR_RUNTIME,
                       "%s: cannot create: %s", a->tmp, strerror(errno));
    return QS_OK;
}

void qs_atomic_abandon(qs_atomic *a) {
    if (a->f) fclose(a->f);
    a->f = NULL;
    if (a->tmp[0]) unlink(a->tmp);
    a->tmp[0] = '\0';
}

qs_status qs_atomic_commit(qs_atomic *a, qs_err *err) {
    qs_status st = QS_OK;
    char dir[QS_PATH_MAX];
    if (!a->f) return QS_FAIL(err, QS_ERR_INTERNAL, "%s: commit without open", a->path);
    if (fflush(a->f) != 0 || ferror(a->f))
        QS_THROW(err, QS_ERR_RUNTIME, "%s: write failed: %s", a->path, strerror(errno));
    if (fsync(fileno(a->f)) != 0)
        QS_THROW(err, QS_ERR_RUNTIME, "%s: fsync failed: %s", a->path, strerror(errno));
    {
        FILE *f = a->f;
        a->f = NULL;
        if (fclose(f) != 0)
            QS_THROW(err, QS_ERR_RUNTIME, "%s: close failed: %s", a->path, strerror(errno));
    }
    if (rename(a->tmp, a->path) != 0)
        QS_THROW(err, QS_ERR_RUNTIME, "%s: rename failed: %s", a->path, strerror(errno));
    a->tmp[0] = '\0';
    dir_of(a->path, dir, sizeof(dir));
    QS_CHECK(qs_fsync_dir(dir, err));
done:
    if (st != QS_OK) qs_atomic_abandon(a);
    return st;
}

qs_status qs_write_file_atomic(const char *path, const void *data, size_t n, qs_err *err) {
    qs_atomic a;
    qs_status st = qs_atomic_open(&a, path, err);
    if (st != QS_OK) return st;
    if (n && fwrite(data, 1, n, a.f) != n) {
        st = QS_FAIL(err, QS_ERR_RUNTIME, "%s: write failed: %s", path, strerror(errno));
        qs_atomic_abandon(&a);
        return st;
    }
    return qs_atomic_commit(&a, err);
}

qs_status qs_read_file(const char *path, char **data, size_t *n, qs_err *err) {
    return qs_read_file_max(path, UINT64_MAX, data, n, err);
}

qs_status qs_read_file_max(const char *path, uint64_t max_bytes, char **data, size_t *n,
                           qs_err *err) {
    qs_status st = QS_OK;
    *data = NULL;
    if (n) *n = 0;
    char *buf = NULL;
    FILE *f = fopen(path, "rb");
    if (!f)
        return QS_FAIL(err, errno == ENOENT || errno == EACCES || errno == ENOTDIR
                                ? QS_ERR_INPUT
                                : QS_ERR_RUNTIME,
                       "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fileno(f), &sb) != 0 || !S_ISREG(sb.st_mode))
        QS_THROW(err, QS_ERR_INPUT, "%s: not a regular file", path);
    if ((uint64_t)sb.st_size > max_bytes)
        QS_THROW(err, QS_ERR_INPUT, "%s: file of %lld bytes exceeds the %llu-byte limit", path,
                 (long long)sb.st_size, (unsigned long long)max_bytes);
    size_t size = (size_t)sb.st_size;
    buf = qs_malloc(size + 1, err, path);
    if (!buf) {
        st = QS_ERR_RUNTIME;
        goto done;
    }
    if (size && fread(buf, 1, size, f) != size)
        QS_THROW(err, QS_ERR_RUNTIME, "%s: read failed", path);
    buf[size] = '\0';
    *data = buf;
    buf = NULL;
    if (n) *n = size;
done:
    free(buf);
    fclose(f);
    return st;
}

/* ---- manifests ---- */

void qs_manifest_init(qs_manifest *m, const char *stage, const char *config_hash) {
    memset(m, 0, sizeof(*m));
    snprintf(m->stage, sizeof(m->stage), "%s", stage ? stage : "");
    snprintf(m->config_hash, sizeof(m->config_hash), "%s", config_hash ? config_hash : "");
}

static qs_status add_entry(qs_manifest_entry **arr, int *n, const char *name, const char *hash,
                           qs_err *err) {
    qs_manifest_entry *p = realloc(*arr, sizeof(**arr) * (size_t)(*n + 1));
    if (!p) return QS_FAIL(err, QS_ERR_RUNTIME, "out of memory (manifest)");
    *arr = p;
    p[*n].name = dup_str(name, err);
    if (!p[*n].name) return QS_ERR_RUNTIME;
    snprintf(p[*n].hash, sizeof(p[*n].hash), "%s", hash);
    ++*n;
    return QS_OK;
}

qs_status qs_manifest_add_input(qs_manifest *m, const char *name, const char *hash,
                                qs_err *err) {
    return add_entry(&m->inputs, &m->ninputs, name, hash, err);
}

qs_status qs_manifest_add_output(qs_manifest *m, const qs_rundir *rd, const char *rel,
                                 qs_err *err) {
    char path[QS_PATH_MAX], hex[65];
    qs_status st = qs_rundir_path(rd, rel, path, sizeof(path), err);
    if (st == QS_OK) st = qs_sha256_file(path, hex, err);
    if (st == QS_OK) st = add_entry(&m->outputs, &m->noutputs, rel, hex, err);
    return st;
}

static cJSON *entries_json(const qs_manifest_entry *e, int n) {
    cJSON *o = cJSON_CreateObject();
    for (int i = 0; o && i < n; ++i) cJSON_AddStringToObject(o, e[i].name, e[i].hash);
    return o;
}

qs_status qs_manifest_write(const qs_manifest *m, const qs_rundir *rd, qs_err *err) {
    qs_status st = QS_OK;
    char rel[64], path[QS_PATH_MAX];
    char *text = NULL;
    cJSON *root = cJSON_CreateObject();
    if (!root) return QS_FAIL(err, QS_ERR_RUNTIME, "out of memory (manifest)");
    cJSON_AddStringToObject(root, "stage", m->stage);
    cJSON_AddStringToObject(root, "config_hash", m->config_hash);
    cJSON_AddItemToObject(root, "inputs", entries_json(m->inputs, m->ninputs));
    cJSON_AddItemToObject(root, "outputs", entries_json(m->outputs, m->noutputs));
    text = cJSON_Print(root);
    if (!text) QS_THROW(err, QS_ERR_RUNTIME, "out of memory (manifest)");
    snprintf(rel, sizeof(rel), "%s/manifest.json", m->stage);
    QS_CHECK(qs_rundir_path(rd, rel, path, sizeof(path), err));
    {
        size_t len = strlen(text);
        text[len] = '\0';
        char *withnl = qs_malloc(len + 2, err, "manifest");
        if (!withnl) QS_THROW(err, QS_ERR_RUNTIME, "out of memory (manifest)");
        memcpy(withnl, text, len);
        withnl[len] = '\n';
        withnl[len + 1] = '\0';
        st = qs_write_file_atomic(path, withnl, len + 1, err);
        free(withnl);
    }
done:
    cJSON_free(text);
    cJSON_Delete(root);
    return st;
}

static qs_status read_entries(const cJSON *obj, qs_manifest_entry **arr, int *n,
                              const char *path, qs_err *err) {
    if (!cJSON_IsObject(obj))
        return QS_FAIL(err, QS_ERR_INPUT, "%s: malformed manifest", path);
    const cJSON *it;
    cJSON_ArrayForEach(it, obj) {
        if (!cJSON_IsString(it) || !it->string || strlen(it->valuestring) != 64)
            return QS_FAIL(err, QS_ERR_INPUT, "%s: malformed manifest entry", path);
        qs_status st = add_entry(arr, n, it->string, it->valuestring, err);
        if (st != QS_OK) return st;
    }
    return QS_OK;
}

qs_status qs_manifest_read(qs_manifest *m, const qs_rundir *rd, const char *stage,
                           int *found, qs_err *err) {
    qs_status st = QS_OK;
    char rel[64], path[QS_PATH_MAX];
    char *text = NULL;
    cJSON *root = NULL;
    memset(m, 0, sizeof(*m));
    *found = 0;
    snprintf(rel, sizeof(rel), "%s/manifest.json", stage);
    QS_CHECK(qs_rundir_path(rd, rel, path, sizeof(path), err));
    if (!qs_path_exists(path)) goto done;
    QS_CHECK(qs_read_file(path, &text, NULL, err));
    root = cJSON_Parse(text);
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(root, "stage");
    const cJSON *h = cJSON_GetObjectItemCaseSensitive(root, "config_hash");
    if (!root || !cJSON_IsString(s) || !cJSON_IsString(h))
        QS_THROW(err, QS_ERR_INPUT, "%s: malformed manifest (delete it to redo the stage)",
                 path);
    qs_manifest_init(m, s->valuestring, h->valuestring);
    QS_CHECK(read_entries(cJSON_GetObjectItemCaseSensitive(root, "inputs"), &m->inputs,
                          &m->ninputs, path, err));
    QS_CHECK(read_entries(cJSON_GetObjectItemCaseSensitive(root, "outputs"), &m->outputs,
                          &m->noutputs, path, err));
    *found = 1;
done:
    cJSON_Delete(root);
    free(text);
    if (st != QS_OK) qs_manifest_free(m);
    return st;
}

qs_status qs_manifest_check(const qs_manifest *have, const qs_manifest *want,
                            const qs_rundir *rd, int *matches, qs_err *err) {
    *matches = 0;
    if (strcmp(have->stage, want->stage) != 0) return QS_OK;
    if (strcmp(have->config_hash, want->config_hash) != 0) return QS_OK;
    if (have->ninputs != want->ninputs) return QS_OK;
    for (int i = 0; i < want->ninputs; ++i)
        if (strcmp(have->inputs[i].name, want->inputs[i].name) != 0 ||
            strcmp(have->inputs[i].hash, want->inputs[i].hash) != 0)
            return QS_OK;
    for (int i = 0; i < have->noutputs; ++i) {
        char path[QS_PATH_MAX], hex[65];
        qs_err tmp = {0};
        if (qs_rundir_path(rd, have->outputs[i].name, path, sizeof(path), err) != QS_OK)
            return QS_ERR_INPUT;
        if (!qs_path_exists(path)) return QS_OK;
        if (qs_sha256_file(path, hex, &tmp) != QS_OK) return QS_OK;
        if (strcmp(hex, have->outputs[i].hash) != 0) return QS_OK;
    }
    *matches = 1;
    return QS_OK;
}

void qs_manifest_free(qs_manifest *m) {
    for (int i = 0; i < m->ninputs; ++i) free(m->inputs[i].name);
    for (int i = 0; i < m->noutputs; ++i) free(m->outputs[i].name);
    free(m->inputs);
    free(m->outputs);
    m->inputs = m->outputs = NULL;
    m->ninputs = m->noutputs = 0;
}

/* 1 if name looks like "<something>.tmp.<digits>". */
static int is_temp_name(const char *name) {
    const char *t = strstr(name, ".tmp.");
    if (!t || t == name) return 0;
    const char *d = t + 5;
    if (!*d) return 0;
    for (; *d; ++d)
        if (*d < '0' || *d > '9') return 0;
    return 1;
}

static qs_status remove_temps_in(const char *dir, int depth, int *n, qs_err *err) {
    DIR *d = opendir(dir);
    if (!d) return QS_OK; /* absent stage directory: nothing to clean */
    qs_status st = QS_OK;
    struct dirent *de;
    char path[QS_PATH_MAX];
    while ((de = readdir(d)) != NULL && st == QS_OK) {
        if (de->d_name[0] == '.') continue;
        int k = snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
        if (k < 0 || (size_t)k >= sizeof(path)) continue;
        struct stat sb;
        if (lstat(path, &sb) != 0) continue;
        if (S_ISDIR(sb.st_mode)) {
            if (depth > 0) st = remove_temps_in(path, depth - 1, n, err);
        } else if (S_ISREG(sb.st_mode) && is_temp_name(de->d_name)) {
            if (unlink(path) != 0 && errno != ENOENT)
                st = QS_FAIL(err, QS_ERR_RUNTIME, "%s: cannot remove stale temp file: %s", path,
                             strerror(errno));
            else
                ++*n;
        }
    }
    closedir(d);
    return st;
}

qs_status qs_rundir_remove_temps(const qs_rundir *rd, int *nremoved, qs_err *err) {
    int n = 0;
    qs_status st = remove_temps_in(rd->root, 2, &n, err);
    if (nremoved) *nremoved = n;
    return st;
}

/* ---- unit records ---- */

static qs_status record_path(const qs_rundir *rd, const char *dir, const char *unit, char *out,
                             size_t n, qs_err *err) {
    char rel[QS_PATH_MAX];
    int k = snprintf(rel, sizeof(rel), "%s/%s/%s.json", QS_DIR_UNITS, dir, unit);
    if (k < 0 || (size_t)k >= sizeof(rel))
        return QS_FAIL(err, QS_ERR_INPUT, "unit record path too long (%s/%s)", dir, unit);
    return qs_rundir_path(rd, rel, out, n, err);
}

qs_status qs_unit_record_write(const qs_rundir *rd, const char *dir, const char *unit,
                               const char *key, const char *const *rels, int n, qs_err *err) {
    qs_status st = QS_OK;
    char path[QS_PATH_MAX], sub[QS_PATH_MAX], hex[65];
    char *text = NULL;
    cJSON *root = cJSON_CreateObject(), *outs = NULL;
    if (!root) return QS_FAIL(err, QS_ERR_RUNTIME, "out of memory (unit record)");
    cJSON_AddStringToObject(root, "unit", unit);
    cJSON_AddStringToObject(root, "key", key);
    outs = cJSON_AddObjectToObject(root, "outputs");
    if (!outs) QS_THROW(err, QS_ERR_RUNTIME, "out of memory (unit record)");
    for (int i = 0; i < n; ++i) {
        QS_CHECK(qs_rundir_path(rd, rels[i], path, sizeof(path), err));
        QS_CHECK(qs_sha256_file(path, hex, err));
        if (!cJSON_AddStringToObject(outs, rels[i], hex))
            QS_THROW(err, QS_ERR_RUNTIME, "out of memory (unit record)");
    }
    text = cJSON_Print(root);
    if (!text) QS_THROW(err, QS_ERR_RUNTIME, "out of memory (unit record)");
    snprintf(sub, sizeof(sub), "%s/%s", QS_DIR_UNITS, dir);
    QS_CHECK(qs_rundir_mkdir(rd, sub, err));
    QS_CHECK(record_path(rd, dir, unit, path, sizeof(path), err));
    QS_CHECK(qs_write_file_atomic(path, text, strlen(text), err));
done:
    cJSON_free(text);
    cJSON_Delete(root);
    return st;
}

/* The record as cJSON (caller deletes), NULL when absent or unreadable. */
static cJSON *record_read(const qs_rundir *rd, const char *dir, const char *unit) {
    char path[QS_PATH_MAX], *text = NULL;
    qs_err e = {0};
    if (record_path(rd, dir, unit, path, sizeof(path), &e) != QS_OK || !qs_path_exists(path) ||
        qs_read_file(path, &text, NULL, &e) != QS_OK)
        return NULL;
    cJSON *root = cJSON_Parse(text);
    free(text);
    const cJSON *outs = cJSON_GetObjectItemCaseSensitive(root, "outputs");
    if (!cJSON_IsObject(outs) ||
        !cJSON_IsString(cJSON_GetObjectItemCaseSensitive(root, "key"))) {
        cJSON_Delete(root);
        return NULL;
    }
    return root;
}

qs_status qs_unit_record_verify(const qs_rundir *rd, const char *dir, const char *unit,
                                const char *key, int *ok, char *why, size_t n, qs_err *err) {
    qs_status st = QS_OK;
    cJSON *root = record_read(rd, dir, unit);
    *ok = 0;
    if (!root) {
        snprintf(why, n, "no record");
        return QS_OK;
    }
    if (strcmp(cJSON_GetObjectItemCaseSensitive(root, "key")->valuestring, key) != 0) {
        snprintf(why, n, "recorded for other inputs");
        goto done;
    }
    const cJSON *it;
    cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(root, "outputs")) {
        char path[QS_PATH_MAX], hex[65];
        qs_err tmp = {0};
        if (!cJSON_IsString(it) || !it->string) {
            snprintf(why, n, "malformed record");
            goto done;
        }
        QS_CHECK(qs_rundir_path(rd, it->string, path, sizeof(path), err));
        if (!qs_path_exists(path)) {
            snprintf(why, n, "%s: missing", it->string);
            goto done;
        }
        if (qs_sha256_file(path, hex, &tmp) != QS_OK) {
            snprintf(why, n, "%s: unreadable", it->string);
            goto done;
        }
        if (strcmp(hex, it->valuestring) != 0) {
            snprintf(why, n, "%s: checksum differs from its record", it->string);
            goto done;
        }
    }
    *ok = 1;
done:
    cJSON_Delete(root);
    return st;
}

qs_status qs_unit_record_outputs(const qs_rundir *rd, const char *dir, const char *unit,
                                 qs_manifest *m, qs_err *err) {
    qs_status st = QS_OK;
    cJSON *root = record_read(rd, dir, unit);
    if (!root)
        return QS_FAIL(err, QS_ERR_INPUT, "%s/%s/%s.json: unit record missing or malformed",
                       QS_DIR_UNITS, dir, unit);
    const cJSON *it;
    cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(root, "outputs")) {
        if (!cJSON_IsString(it) || !it->string || strlen(it->valuestring) != 64)
            QS_THROW(err, QS_ERR_INPUT, "%s/%s/%s.json: malformed unit record", QS_DIR_UNITS,
                     dir, unit);
        QS_CHECK(add_entry(&m->outputs, &m->noutputs, it->string, it->valuestring, err));
    }
done:
    cJSON_Delete(root);
    return st;
}

qs_status qs_unit_records_clear(const qs_rundir *rd, const char *dir, qs_err *err) {
    char rel[QS_PATH_MAX], path[QS_PATH_MAX];
    snprintf(rel, sizeof(rel), "%s/%s", QS_DIR_UNITS, dir);
    qs_status st = qs_rundir_path(rd, rel, path, sizeof(path), err);
    if (st != QS_OK) return st;
    DIR *d = opendir(path);
    if (!d) return QS_OK;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.') continue;
        char f[QS_PATH_MAX];
        int k = snprintf(f, sizeof(f), "%s/%s", path, de->d_name);
        if (k > 0 && (size_t)k < sizeof(f) && unlink(f) != 0 && errno != ENOENT) {
            st = QS_FAIL(err, QS_ERR_RUNTIME, "%s: cannot remove: %s", f, strerror(errno));
            break;
        }
    }
    closedir(d);
    return st;
}

/* ---- the run-directory lock ---- */

qs_status qs_rundir_lock_take(const qs_rundir *rd, qs_rundir_lock *lk, qs_err *err) {
    char path[QS_PATH_MAX], who[256] = "";
    lk->fd = -1;
    qs_status st = qs_mkdir_p(rd->root, err);
    if (st == QS_OK) st = qs_rundir_path(rd, QS_REL_LOCK, path, sizeof(path), err);
    if (st != QS_OK) return st;
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        return QS_FAIL(err, QS_ERR_RUNTIME, "%s: cannot open the lock file: %s", path,
                       strerror(errno));
    struct flock fl;
    memset(&fl, 0, sizeof(fl));
    fl.l_type = F_WRLCK;
    fl.l_whence = SEEK_SET;
    if (fcntl(fd, F_SETLK, &fl) != 0) {
        const int e = errno;
        ssize_t n = pread(fd, who, sizeof(who) - 1, 0);
        who[n > 0 ? n : 0] = '\0';
        who[strcspn(who, "\n")] = '\0';
        close(fd);
        if (e == EACCES || e == EAGAIN) {
            char pid[64] = "?", host[192] = "?";
            sscanf(who, "%63s %191s", pid, host);
            return QS_FAIL(err, QS_ERR_INPUT,
                           "%s: run directory in use by PID %s on %s (one qshard per run "
                           "directory; wait for it or stop it)",
                           rd->root, pid, host);
        }
        return QS_FAIL(err, QS_ERR_RUNTIME, "%s: cannot lock: %s", path, strerror(e));
    }
    char host[128] = "?";
    gethostname(host, sizeof(host) - 1);
    host[sizeof(host) - 1] = '\0';
    int k = snprintf(who, sizeof(who), "%ld %s\n", (long)getpid(), host);
    if (ftruncate(fd, 0) != 0 || pwrite(fd, who, (size_t)k, 0) != (ssize_t)k) {
        const int e = errno;
        close(fd);
        return QS_FAIL(err, QS_ERR_RUNTIME, "%s: cannot write the lock file: %s", path,
                       strerror(e));
    }
    lk->fd = fd;
    return QS_OK;
}

void qs_rundir_lock_release(qs_rundir_lock *lk) {
    if (lk->fd >= 0) close(lk->fd); /* closing drops the fcntl lock */
    lk->fd = -1;
}
