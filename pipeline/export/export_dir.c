/* export_dir.c: the export directory (temp dir, shards, index, config.json, side files). */
#include "export_dir.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "rundir.h"
#include "st_writer.h"

#define CONFIG_MAX_BYTES ((uint64_t)64 << 20) /* the source config.json this rewrites */

typedef struct xd_tensor {
    char *name;                    /* owned */
    qs_dtype dt;
    int ndim;
    int64_t shape[QS_EXPORT_MAX_DIMS];
    uint64_t nbytes;
    int shard;                     /* 0-based, set by layout */
} xd_tensor;

struct qs_export_dir {
    char *dir;                     /* owned: final directory */
    char *tmpdir;                  /* owned: <dir>.tmp.<pid> */
    char *src;                     /* owned: source model directory */
    int64_t shard_bytes;
    int overwrite;
    xd_tensor *tensors;            /* (ntensors,) in file order */
    int64_t ntensors, capt;
    uint64_t data_bytes;
    int laid_out, finished, tmp_made;
    int nshards;
    int64_t next;                  /* the next tensor to put */
    qs_st_writer *w;               /* writer of shard cur_shard, or NULL */
    int cur_shard;
};

static char *dup_str(const char *s, qs_err *err) {
    size_t n = strlen(s) + 1;
    char *d = qs_malloc(n, err, "string");
    if (d) memcpy(d, s, n);
    return d;
}

/* "<a>/<b>" in a new string (NULL on OOM). */
static char *join_path(const char *a, const char *b, qs_err *err) {
    size_t n = strlen(a) + strlen(b) + 2;
    char *p = qs_malloc(n, err, "path");
    if (p) snprintf(p, n, "%s/%s", a, b);
    return p;
}

static int path_exists(const char *p) {
    struct stat sb;
    return lstat(p, &sb) == 0;
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

/* Removes a directory tree (best effort); 0 if it is gone afterwards. */
static int remove_tree(const char *dir) {
    nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    return path_exists(dir) ? -1 : 0;
}

static qs_status write_all(int fd, const char *path, const void *data, size_t n, qs_err *err) {
    const char *p = data;
    while (n > 0) {
        ssize_t k = write(fd, p, n > ((size_t)1 << 30) ? ((size_t)1 << 30) : n);
        if (k < 0) {
            if (errno == EINTR) continue;
            return QS_FAIL(err, QS_ERR_RUNTIME, "%s: write failed: %s", path, strerror(errno));
        }
        p += k;
        n -= (size_t)k;
    }
    return QS_OK;
}

/* Writes a new file `path` (inside the temporary directory) and fsyncs it. */
static qs_status write_small_file(const char *path, const char *data, size_t n, qs_err *err) {
    qs_status st = QS_OK;
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0644);
    if (fd < 0) QS_THROW(err, QS_ERR_RUNTIME, "%s: cannot create: %s", path, strerror(errno));
    QS_CHECK(write_all(fd, path, data, n, err));
    if (fsync(fd) != 0) QS_THROW(err, QS_ERR_RUNTIME, "%s: fsync failed: %s", path, strerror(errno));
done:
    if (fd >= 0 && close(fd) != 0 && st == QS_OK)
        st = QS_FAIL(err, QS_ERR_RUNTIME, "%s: close failed: %s", path, strerror(errno));
    return st;
}

static qs_status copy_file(const char *from, const char *to, qs_err *err) {
    qs_status st = QS_OK;
    int in = -1, out = -1;
    char *buf = NULL;
    const size_t bufsz = (size_t)1 << 20;
    in = open(from, O_RDONLY);
    if (in < 0) QS_THROW(err, QS_ERR_RUNTIME, "%s: cannot open: %s", from, strerror(errno));
    out = open(to, O_WRONLY | O_CREAT | O_EXCL, 0644);
    if (out < 0) QS_THROW(err, QS_ERR_RUNTIME, "%s: cannot create: %s", to, strerror(errno));
    buf = qs_malloc(bufsz, err, "copy buffer");
    if (!buf) QS_THROW(err, QS_ERR_RUNTIME, "%s: out of memory", to);
    for (;;) {
        ssize_t k = read(in, buf, bufsz);
        if (k < 0) {
            if (errno == EINTR) continue;
            QS_THROW(err, QS_ERR_RUNTIME, "%s: read failed: %s", from, strerror(errno));
        }
        if (k == 0) break;
        QS_CHECK(write_all(out, to, buf, (size_t)k, err));
    }
    if (fsync(out) != 0) QS_THROW(err, QS_ERR_RUNTIME, "%s: fsync failed: %s", to, strerror(errno));
done:
    free(buf);
    if (in >= 0) close(in);
    if (out >= 0 && close(out) != 0 && st == QS_OK)
        st = QS_FAIL(err, QS_ERR_RUNTIME, "%s: close failed: %s", to, strerror(errno));
    return st;
}

/* ---- begin and declarations ------------------------------------------------------------ */

qs_status qs_export_dir_begin(qs_export_dir **out, const char *dir, const char *src_model_dir,
                              int64_t shard_bytes, int overwrite, qs_err *err) {
    qs_status st = QS_OK;
    qs_export_dir *d = NULL;
    *out = NULL;
    d = qs_calloc(1, sizeof(*d), err, "export directory");
    if (!d) QS_THROW(err, QS_ERR_RUNTIME, "%s: out of memory", dir);
    d->shard_bytes = shard_bytes;
    d->overwrite = overwrite;
    d->cur_shard = -1;
    d->dir = dup_str(dir, err);
    d->src = dup_str(src_model_dir, err);
    if (!d->dir || !d->src) QS_THROW(err, QS_ERR_RUNTIME, "%s: out of memory", dir);
    size_t dl = strlen(d->dir);
    while (dl > 1 && d->dir[dl - 1] == '/') d->dir[--dl] = '\0';
    size_t tn = dl + 32;
    d->tmpdir = qs_malloc(tn, err, "temp dir");
    if (!d->tmpdir) QS_THROW(err, QS_ERR_RUNTIME, "%s: out of memory", dir);
    snprintf(d->tmpdir, tn, "%s.tmp.%ld", d->dir, (long)getpid());
    if (path_exists(d->dir) && !overwrite)
        QS_THROW(err, QS_ERR_INPUT, "%s: already exists (export refuses to overwrite it)", d->dir);
    if (path_exists(d->tmpdir) && remove_tree(d->tmpdir) != 0)
        QS_THROW(err, QS_ERR_RUNTIME, "%s: stale temporary directory cannot be removed", d->tmpdir);
    if (mkdir(d->tmpdir, 0755) != 0)
        QS_THROW(err, QS_ERR_RUNTIME, "%s: cannot create directory: %s", d->tmpdir,
                 strerror(errno));
    d->tmp_made = 1;
    *out = d;
    d = NULL;
done:
    qs_export_dir_free(d);
    return st;
}

const char *qs_export_dir_path(const qs_export_dir *d) { return d->dir; }

qs_status qs_export_dir_declare(qs_export_dir *d, const char *name, qs_dtype dt, int ndim,
                                const int64_t *shape, int64_t *index, qs_err *err) {
    qs_status st = QS_OK;
    if (d->laid_out)
        QS_THROW(err, QS_ERR_INTERNAL, "%s: tensor '%s' declared after the layout was fixed",
                 d->dir, name);
    if (ndim < 0 || ndim > QS_EXPORT_MAX_DIMS)
        QS_THROW(err, QS_ERR_INPUT, "%s: tensor '%s' has %d dimensions (at most %d)", d->dir,
                 name, ndim, QS_EXPORT_MAX_DIMS);
    if (qs_dtype_size(dt) == 0)
        QS_THROW(err, QS_ERR_INPUT, "%s: tensor '%s' has an unknown dtype", d->dir, name);
    for (int64_t i = 0; i < d->ntensors; ++i)
        if (strcmp(d->tensors[i].name, name) == 0)
            QS_THROW(err, QS_ERR_INPUT, "%s: tensor '%s' declared twice", d->dir, name);
    uint64_t nbytes = qs_dtype_size(dt);
    for (int k = 0; k < ndim; ++k) {
        if (shape[k] < 0 || (shape[k] > 0 && nbytes > ((uint64_t)1 << 50) / (uint64_t)shape[k]))
            QS_THROW(err, QS_ERR_INPUT, "%s: tensor '%s' has a bad shape", d->dir, name);
        nbytes *= (uint64_t)shape[k];
    }
    if (d->ntensors == d->capt) {
        int64_t cap = d->capt ? 2 * d->capt : 256;
        xd_tensor *t = realloc(d->tensors, (size_t)cap * sizeof(*t));
        if (!t) QS_THROW(err, QS_ERR_RUNTIME, "%s: out of memory (tensor table)", d->dir);
        d->tensors = t;
        d->capt = cap;
    }
    xd_tensor *t = &d->tensors[d->ntensors];
    memset(t, 0, sizeof(*t));
    t->name = dup_str(name, err);
    if (!t->name) QS_THROW(err, QS_ERR_RUNTIME, "%s: out of memory", d->dir);
    t->dt = dt;
    t->ndim = ndim;
    for (int k = 0; k < ndim; ++k) t->shape[k] = shape[k];
    t->nbytes = nbytes;
    if (index) *index = d->ntensors;
    d->ntensors++;
    d->data_bytes += nbytes;
done:
    return st;
}

uint64_t qs_export_dir_data_bytes(const qs_export_dir *d) { return d->data_bytes; }
uint64_t qs_export_dir_tensor_bytes(const qs_export_dir *d, int64_t t) {
    return d->tensors[t].nbytes;
}
int64_t qs_export_dir_ntensors(const qs_export_dir *d) { return d->ntensors; }

/* ---- layout and streaming -------------------------------------------------------------- */

qs_status qs_export_dir_layout(qs_export_dir *d, qs_err *err) {
    qs_status st = QS_OK;
    if (d->laid_out) return QS_OK;
    if (d->ntensors == 0) QS_THROW(err, QS_ERR_INPUT, "%s: nothing to export", d->dir);
    int shard = 0;
    uint64_t acc = 0;
    const int split = d->shard_bytes > 0 && d->data_bytes > (uint64_t)d->shard_bytes;
    for (int64_t t = 0; t < d->ntensors; ++t) {
        uint64_t nb = d->tensors[t].nbytes;
        if (split && acc > 0 && acc + nb > (uint64_t)d->shard_bytes) {
            shard++;
            acc = 0;
        }
        d->tensors[t].shard = shard;
        acc += nb;
    }
    d->nshards = shard + 1;
    if (d->nshards > 99999)
        QS_THROW(err, QS_ERR_INPUT, "%s: %d shards (at most 99999): raise the shard size", d->dir,
                 d->nshards);
    d->laid_out = 1;
done:
    return st;
}

int qs_export_dir_laid_out(const qs_export_dir *d) { return d->laid_out; }

static void shard_name(const qs_export_dir *d, int shard, char *buf, size_t cap) {
    if (d->nshards == 1) snprintf(buf, cap, "model.safetensors");
    else snprintf(buf, cap, "model-%05d-of-%05d.safetensors", shard + 1, d->nshards);
}

static qs_status close_shard(qs_export_dir *d, qs_err *err) {
    qs_status st = QS_OK;
    if (d->w) st = qs_st_writer_finish(d->w, err);
    qs_st_writer_free(d->w);
    d->w = NULL;
    d->cur_shard = -1;
    return st;
}

qs_status qs_export_dir_put(qs_export_dir *d, int64_t t, const void *data, size_t nbytes,
                            qs_err *err) {
    qs_status st = QS_OK;
    char *path = NULL;
    if (!d->laid_out || t != d->next || t >= d->ntensors)
        QS_THROW(err, QS_ERR_INTERNAL, "%s: internal error: tensor %lld put out of order",
                 d->dir, (long long)t);
    const xd_tensor *gt = &d->tensors[t];
    if (nbytes != gt->nbytes)
        QS_THROW(err, QS_ERR_INPUT, "%s: %llu bytes given, %llu declared", gt->name,
                 (unsigned long long)nbytes, (unsigned long long)gt->nbytes);
    if (d->w && d->cur_shard != gt->shard) QS_CHECK(close_shard(d, err));
    if (!d->w) {
        char fname[64];
        shard_name(d, gt->shard, fname, sizeof(fname));
        path = join_path(d->tmpdir, fname, err);
        if (!path) QS_THROW(err, QS_ERR_RUNTIME, "%s: out of memory", d->dir);
        QS_CHECK(qs_st_writer_open(&d->w, path, 1, err));
        d->cur_shard = gt->shard;
        for (int64_t k = t; k < d->ntensors && d->tensors[k].shard == gt->shard; ++k) {
            const xd_tensor *x = &d->tensors[k];
            QS_CHECK(qs_st_writer_declare(d->w, x->name, x->dt, x->ndim, x->shape, err));
        }
        QS_CHECK(qs_st_writer_begin(d->w, err));
    }
    QS_CHECK(qs_st_writer_put(d->w, gt->name, data, nbytes, err));
    d->next++;
    if (t + 1 == d->ntensors || d->tensors[t + 1].shard != gt->shard) QS_CHECK(close_shard(d, err));
done:
    free(path);
    return st;
}

/* ---- JSON files, side files and the final rename --------------------------------------- */

qs_status qs_export_dir_write_json(qs_export_dir *d, const char *fname, const cJSON *j,
                                   qs_err *err) {
    qs_status st = QS_OK;
    char *path = join_path(d->tmpdir, fname, err), *text = NULL, *buf = NULL;
    if (!path) QS_THROW(err, QS_ERR_RUNTIME, "%s: out of memory", fname);
    text = cJSON_Print(j);
    if (!text) QS_THROW(err, QS_ERR_RUNTIME, "%s: out of memory (JSON)", path);
    size_t n = strlen(text);
    buf = qs_malloc(n + 2, err, "JSON text");
    if (!buf) QS_THROW(err, QS_ERR_RUNTIME, "%s: out of memory", path);
    memcpy(buf, text, n);
    buf[n] = '\n';
    buf[n + 1] = '\0';
    QS_CHECK(write_small_file(path, buf, n + 1, err));
done:
    free(path);
    cJSON_free(text);
    free(buf);
    return st;
}

static qs_status write_index(qs_export_dir *d, qs_err *err) {
    qs_status st = QS_OK;
    cJSON *root = cJSON_CreateObject(), *meta = NULL, *map = NULL;
    char num[32], fname[64];
    if (!root) QS_THROW(err, QS_ERR_RUNTIME, "%s: out of memory (index)", d->dir);
    meta = cJSON_AddObjectToObject(root, "metadata");
    snprintf(num, sizeof(num), "%llu", (unsigned long long)d->data_bytes);
    if (!meta || !cJSON_AddRawToObject(meta, "total_size", num))
        QS_THROW(err, QS_ERR_RUNTIME, "%s: out of memory (index)", d->dir);
    map = cJSON_AddObjectToObject(root, "weight_map");
    if (!map) QS_THROW(err, QS_ERR_RUNTIME, "%s: out of memory (index)", d->dir);
    for (int64_t t = 0; t < d->ntensors; ++t) {
        shard_name(d, d->tensors[t].shard, fname, sizeof(fname));
        if (!cJSON_AddStringToObject(map, d->tensors[t].name, fname))
            QS_THROW(err, QS_ERR_RUNTIME, "%s: out of memory (index)", d->dir);
    }
    QS_CHECK(qs_export_dir_write_json(d, "model.safetensors.index.json", root, err));
done:
    cJSON_Delete(root);
    return st;
}

static qs_status write_config(qs_export_dir *d, const cJSON *quant_config, qs_err *err) {
    qs_status st = QS_OK;
    char *src_cfg = NULL, *text = NULL;
    cJSON *cfg = NULL, *qc = NULL;
    src_cfg = join_path(d->src, "config.json", err);
    if (!src_cfg) QS_THROW(err, QS_ERR_RUNTIME, "%s: out of memory", d->dir);
    QS_CHECK(qs_read_file_max(src_cfg, CONFIG_MAX_BYTES, &text, NULL, err));
    cfg = cJSON_Parse(text);
    if (!cfg || !cJSON_IsObject(cfg))
        QS_THROW(err, QS_ERR_INPUT, "%s: not a JSON object", src_cfg);
    qc = cJSON_Duplicate(quant_config, 1);
    if (!qc) QS_THROW(err, QS_ERR_RUNTIME, "%s: out of memory (config)", d->dir);
    cJSON_DeleteItemFromObjectCaseSensitive(cfg, "quantization_config");
    cJSON_AddItemToObject(cfg, "quantization_config", qc);
    qc = NULL; /* owned by cfg now */
    QS_CHECK(qs_export_dir_write_json(d, "config.json", cfg, err));
done:
    free(src_cfg);
    free(text);
    cJSON_Delete(cfg);
    cJSON_Delete(qc);
    return st;
}

static int copied_name(const char *n) {
    static const char *const exact[] = {"generation_config.json", "special_tokens_map.json",
                                        "vocab.json", "merges.txt", "added_tokens.json",
                                        "chat_template.jinja", "chat_template.json", NULL};
    if (strncmp(n, "tokenizer", 9) == 0) return 1;
    for (int i = 0; exact[i]; ++i)
        if (strcmp(n, exact[i]) == 0) return 1;
    return 0;
}

static qs_status copy_side_files(const qs_export_dir *d, qs_err *err) {
    qs_status st = QS_OK;
    DIR *dd = opendir(d->src);
    char *from = NULL, *to = NULL;
    if (!dd) QS_THROW(err, QS_ERR_INPUT, "%s: cannot open directory: %s", d->src, strerror(errno));
    for (struct dirent *e; (e = readdir(dd)) != NULL;) {
        if (!copied_name(e->d_name)) continue;
        from = join_path(d->src, e->d_name, err);
        to = join_path(d->tmpdir, e->d_name, err);
        if (!from || !to) QS_THROW(err, QS_ERR_RUNTIME, "%s: out of memory", d->dir);
        struct stat sb;
        if (stat(from, &sb) == 0 && S_ISREG(sb.st_mode)) QS_CHECK(copy_file(from, to, err));
        free(from);
        free(to);
        from = to = NULL;
    }
done:
    if (dd) closedir(dd);
    free(from);
    free(to);
    return st;
}

qs_status qs_export_dir_finish(qs_export_dir *d, const cJSON *quant_config, qs_err *err) {
    qs_status st = QS_OK;
    char *old = NULL, *parent = NULL;
    if (d->finished) QS_THROW(err, QS_ERR_INTERNAL, "%s: export finished twice", d->dir);
    QS_CHECK(qs_export_dir_layout(d, err));
    if (d->next < d->ntensors)
        QS_THROW(err, QS_ERR_INPUT, "%s: tensor '%s' was declared but never written", d->dir,
                 d->tensors[d->next].name);
    QS_CHECK(close_shard(d, err));
    if (d->nshards > 1) QS_CHECK(write_index(d, err));
    QS_CHECK(write_config(d, quant_config, err));
    QS_CHECK(copy_side_files(d, err));
    QS_CHECK(qs_st_fsync_dir(d->tmpdir, err));
    if (path_exists(d->dir)) {
        /* overwrite (checked at begin): move the old export aside, then remove it */
        if (!d->overwrite)
            QS_THROW(err, QS_ERR_INPUT, "%s: appeared during the export", d->dir);
        size_t n = strlen(d->dir) + 32;
        old = qs_malloc(n, err, "path");
        if (!old) QS_THROW(err, QS_ERR_RUNTIME, "%s: out of memory", d->dir);
        snprintf(old, n, "%s.old.%ld", d->dir, (long)getpid());
        if (rename(d->dir, old) != 0)
            QS_THROW(err, QS_ERR_RUNTIME, "%s: cannot move aside: %s", d->dir, strerror(errno));
    }
    if (rename(d->tmpdir, d->dir) != 0)
        QS_THROW(err, QS_ERR_RUNTIME, "%s: rename from %s failed: %s", d->dir, d->tmpdir,
                 strerror(errno));
    d->finished = 1;
    d->tmp_made = 0;
    parent = dup_str(d->dir, err);
    if (!parent) QS_THROW(err, QS_ERR_RUNTIME, "%s: out of memory", d->dir);
    char *slash = strrchr(parent, '/');
    if (slash == parent) slash[1] = '\0';
    else if (slash) *slash = '\0';
    else strcpy(parent, ".");
    QS_CHECK(qs_st_fsync_dir(parent, err));
    if (old && remove_tree(old) != 0)
        QS_THROW(err, QS_ERR_RUNTIME, "%s: the previous export could not be removed", old);
done:
    free(old);
    free(parent);
    return st;
}

void qs_export_dir_free(qs_export_dir *d) {
    if (!d) return;
    qs_st_writer_free(d->w); /* unlinks an unfinished shard */
    if (d->tmp_made && !d->finished) remove_tree(d->tmpdir);
    for (int64_t t = 0; t < d->ntensors; ++t) free(d->tensors[t].name);
    free(d->tensors);
    free(d->dir);
    free(d->tmpdir);
    free(d->src);
    free(d);
}
