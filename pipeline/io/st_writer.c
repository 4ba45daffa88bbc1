/* st_writer.c: streaming safetensors writer: declared layout, header, temp file + rename. */
#include "st_writer.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct st_entry {
    char *name;                   /* owned */
    qs_dtype dtype;
    int ndim;
    int64_t shape[QS_ST_MAX_DIMS];
    uint64_t offset;              /* relative to the start of the data section */
    uint64_t nbytes;
} st_entry;

struct qs_st_writer {
    char *path;                   /* owned: final path */
    char *tmp;                    /* owned: <path>.tmp.<pid> */
    int metadata_pt;
    st_entry *entries;            /* (n,) in declared order */
    int64_t n, cap;
    uint64_t data_bytes;          /* sum of entries' nbytes */
    int fd;                       /* -1 when closed */
    int begun, finished;
    int64_t cur;                  /* index of the tensor being streamed */
    uint64_t cur_done;            /* bytes of entries[cur] written so far */
};

static char *dup_str(const char *s, qs_err *err) {
    size_t n = strlen(s) + 1;
    char *d = qs_malloc(n, err, "string");
    if (d) memcpy(d, s, n);
    return d;
}

qs_status qs_st_writer_open(qs_st_writer **out, const char *path, int metadata_pt, qs_err *err) {
    qs_status st = QS_OK;
    qs_st_writer *w = NULL;
    *out = NULL;
    w = qs_calloc(1, sizeof(*w), err, "safetensors writer");
    if (!w) QS_THROW(err, QS_ERR_RUNTIME, "%s: out of memory", path);
    w->fd = -1;
    w->metadata_pt = metadata_pt;
    w->path = dup_str(path, err);
    size_t tn = strlen(path) + 32;
    w->tmp = qs_malloc(tn, err, "temp path");
    if (!w->path || !w->tmp) QS_THROW(err, QS_ERR_RUNTIME, "%s: out of memory", path);
    snprintf(w->tmp, tn, "%s.tmp.%ld", path, (long)getpid());
    *out = w;
    w = NULL;
done:
    qs_st_writer_free(w);
    return st;
}

qs_status qs_st_writer_declare(qs_st_writer *w, const char *name, qs_dtype dt, int ndim,
                               const int64_t *shape, qs_err *err) {
    qs_status st = QS_OK;
    if (w->begun)
        QS_THROW(err, QS_ERR_INTERNAL, "%s: tensor '%s' declared after the header was written",
                 w->path, name);
    if (!name[0]) QS_THROW(err, QS_ERR_INPUT, "%s: empty tensor name", w->path);
    if (strcmp(name, "__metadata__") == 0)
        QS_THROW(err, QS_ERR_INPUT, "%s: '__metadata__' is not a tensor name", w->path);
    if (qs_dtype_size(dt) == 0)
        QS_THROW(err, QS_ERR_INPUT, "%s: tensor '%s' has an unknown dtype %d", w->path, name,
                 (int)dt);
    if (ndim < 0 || ndim > QS_ST_MAX_DIMS)
        QS_THROW(err, QS_ERR_INPUT, "%s: tensor '%s' has %d dimensions (at most %d)", w->path,
                 name, ndim, QS_ST_MAX_DIMS);
    /* duplicates: a linear scan is fine for the few thousand tensors of a checkpoint */
    for (int64_t i = 0; i < w->n; ++i)
        if (strcmp(w->entries[i].name, name) == 0)
            QS_THROW(err, QS_ERR_INPUT, "%s: tensor '%s' declared twice", w->path, name);
    uint64_t nbytes = qs_dtype_size(dt);
    for (int d = 0; d < ndim; ++d) {
        if (shape[d] < 0)
            QS_THROW(err, QS_ERR_INPUT, "%s: tensor '%s' has a negative dimension", w->path, name);
        if (shape[d] > 0 && nbytes > ((uint64_t)1 << 53) / (uint64_t)shape[d])
            QS_THROW(err, QS_ERR_INPUT, "%s: tensor '%s' is too large", w->path, name);
        nbytes *= (uint64_t)shape[d];
    }
    if (w->data_bytes + nbytes > ((uint64_t)1 << 53))
        QS_THROW(err, QS_ERR_INPUT, "%s: data section exceeds 2^53 bytes", w->path);
    if (w->n == w->cap) {
        int64_t cap = w->cap ? 2 * w->cap : 64;
        st_entry *e = realloc(w->entries, (size_t)cap * sizeof(*e));
        if (!e) QS_THROW(err, QS_ERR_RUNTIME, "%s: out of memory (tensor table)", w->path);
        w->entries = e;
        w->cap = cap;
    }
    st_entry *e = &w->entries[w->n];
    memset(e, 0, sizeof(*e));
    e->name = dup_str(name, err);
    if (!e->name) QS_THROW(err, QS_ERR_RUNTIME, "%s: out of memory", w->path);
    e->dtype = dt;
    e->ndim = ndim;
    for (int d = 0; d < ndim; ++d) e->shape[d] = shape[d];
    e->offset = w->data_bytes;
    e->nbytes = nbytes;
    w->data_bytes += nbytes;
    w->n++;
done:
    return st;
}

uint64_t qs_st_writer_data_bytes(const qs_st_writer *w) { return w->data_bytes; }

/* A growable text buffer for the header. */
typedef struct sbuf {
    char *p;
    size_t len, cap;
    int oom;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n + 1) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void sb_str(sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

/* JSON string literal with the escapes JSON requires. */
static void sb_json_str(sbuf *b, const char *s) {
    sb_put(b, "\"", 1);
    for (const unsigned char *c = (const unsigned char *)s; *c; ++c) {
        char tmp[8];
        if (*c == '"' || *c == '\\') {
            tmp[0] = '\\';
            tmp[1] = (char)*c;
            sb_put(b, tmp, 2);
        } else if (*c < 0x20) {
            snprintf(tmp, sizeof(tmp), "\\u%04x", (unsigned)*c);
            sb_put(b, tmp, 6);
        } else {
            sb_put(b, (const char *)c, 1);
        }
    }
    sb_put(b, "\"", 1);
}

static void sb_u64(sbuf *b, uint64_t v) {
    char tmp[32];
    snprintf(tmp, sizeof(tmp), "%llu", (unsigned long long)v);
    sb_str(b, tmp);
}

static qs_status write_all(int fd, const char *path, const void *data, size_t n, qs_err *err) {
    const char *p = data;
    while (n > 0) {
        size_t chunk = n > ((size_t)1 << 30) ? ((size_t)1 << 30) : n;
        ssize_t k = write(fd, p, chunk);
        if (k < 0) {
            if (errno == EINTR) continue;
            return QS_FAIL(err, QS_ERR_RUNTIME, "%s: write failed: %s", path, strerror(errno));
        }
        if (k == 0) return QS_FAIL(err, QS_ERR_RUNTIME, "%s: write wrote nothing", path);
        p += k;
        n -= (size_t)k;
    }
    return QS_OK;
}

/* Closes and unlinks the temporary file (the abandon path). */
static void abandon(qs_st_writer *w) {
    if (w->fd >= 0) {
        close(w->fd);
        w->fd = -1;
        unlink(w->tmp);
    }
}

qs_status qs_st_writer_begin(qs_st_writer *w, qs_err *err) {
    qs_status st = QS_OK;
    sbuf b = {0};
    if (w->begun) QS_THROW(err, QS_ERR_INTERNAL, "%s: header written twice", w->path);
    sb_str(&b, "{");
    int first = 1;
    if (w->metadata_pt) {
        sb_str(&b, "\"__metadata__\":{\"format\":\"pt\"}");
        first = 0;
    }
    for (int64_t i = 0; i < w->n; ++i) {
        const st_entry *e = &w->entries[i];
        if (!first) sb_str(&b, ",");
        first = 0;
        sb_json_str(&b, e->name);
        sb_str(&b, ":{\"dtype\":\"");
        sb_str(&b, qs_dtype_name(e->dtype));
        sb_str(&b, "\",\"shape\":[");
        for (int d = 0; d < e->ndim; ++d) {
            if (d) sb_str(&b, ",");
            sb_u64(&b, (uint64_t)e->shape[d]);
        }
        sb_str(&b, "],\"data_offsets\":[");
        sb_u64(&b, e->offset);
        sb_str(&b, ",");
        sb_u64(&b, e->offset + e->nbytes);
        sb_str(&b, "]}");
    }
    sb_str(&b, "}");
    while (!b.oom && b.len % 8 != 0) sb_str(&b, " ");
    if (b.oom) QS_THROW(err, QS_ERR_RUNTIME, "%s: out of memory (header)", w->path);

    w->fd = open(w->tmp, O_WRONLY | O_CREAT | O_EXCL, 0644);
    if (w->fd < 0)
        QS_THROW(err, QS_ERR_RUNTIME, "%s: cannot create: %s", w->tmp, strerror(errno));
    w->begun = 1;
    unsigned char len8[8];
    uint64_t hl = (uint64_t)b.len;
    for (int k = 0; k < 8; ++k) len8[k] = (unsigned char)(hl >> (8 * k));
    QS_CHECK(write_all(w->fd, w->tmp, len8, 8, err));
    QS_CHECK(write_all(w->fd, w->tmp, b.p, b.len, err));
    w->cur = 0;
    w->cur_done = 0;
    /* skip leading empty tensors */
    while (w->cur < w->n && w->entries[w->cur].nbytes == 0) w->cur++;
done:
    if (st != QS_OK) abandon(w);
    free(b.p);
    return st;
}

qs_status qs_st_writer_put(qs_st_writer *w, const char *name, const void *data, size_t nbytes,
                           qs_err *err) {
    qs_status st = QS_OK;
    if (!w->begun || w->fd < 0)
        QS_THROW(err, QS_ERR_INTERNAL, "%s: tensor '%s' written before the header", w->path, name);
    /* a zero-byte tensor may be "written" by name at any point: it has no bytes */
    if (nbytes == 0) {
        for (int64_t i = 0; i < w->n; ++i)
            if (strcmp(w->entries[i].name, name) == 0) goto done;
        QS_THROW(err, QS_ERR_INPUT, "%s: tensor '%s' was not declared", w->tmp, name);
    }
    if (w->cur >= w->n)
        QS_THROW(err, QS_ERR_INPUT, "%s: tensor '%s' written after all tensors are complete",
                 w->tmp, name);
    st_entry *e = &w->entries[w->cur];
    if (strcmp(e->name, name) != 0)
        QS_THROW(err, QS_ERR_INPUT, "%s: tensor '%s' written while '%s' is the next tensor",
                 w->tmp, name, e->name);
    if ((uint64_t)nbytes > e->nbytes - w->cur_done)
        QS_THROW(err, QS_ERR_INPUT,
                 "%s: tensor '%s' gets %llu more bytes but has %llu of %llu left", w->tmp, name,
                 (unsigned long long)nbytes, (unsigned long long)(e->nbytes - w->cur_done),
                 (unsigned long long)e->nbytes);
    QS_CHECK(write_all(w->fd, w->tmp, data, nbytes, err));
    w->cur_done += nbytes;
    if (w->cur_done == e->nbytes) {
        w->cur++;
        w->cur_done = 0;
        while (w->cur < w->n && w->entries[w->cur].nbytes == 0) w->cur++;
    }
done:
    if (st != QS_OK) abandon(w);
    return st;
}

qs_status qs_st_fsync_dir(const char *dir, qs_err *err) {
    int fd = open(dir, O_RDONLY);
    if (fd < 0) return QS_FAIL(err, QS_ERR_RUNTIME, "%s: cannot open directory: %s", dir,
                               strerror(errno));
    int rc = fsync(fd);
    int e = errno;
    close(fd);
    /* some file systems refuse fsync on directories (EINVAL): nothing more can be done */
    if (rc != 0 && e != EINVAL)
        return QS_FAIL(err, QS_ERR_RUNTIME, "%s: fsync failed: %s", dir, strerror(e));
    return QS_OK;
}

qs_status qs_st_writer_finish(qs_st_writer *w, qs_err *err) {
    qs_status st = QS_OK;
    char *dir = NULL;
    if (!w->begun || w->fd < 0)
        QS_THROW(err, QS_ERR_INTERNAL, "%s: finish without a written header", w->path);
    if (w->cur < w->n)
        QS_THROW(err, QS_ERR_INPUT, "%s: tensor '%s' is incomplete (%llu of %llu bytes)", w->tmp,
                 w->entries[w->cur].name, (unsigned long long)w->cur_done,
                 (unsigned long long)w->entries[w->cur].nbytes);
    if (fsync(w->fd) != 0)
        QS_THROW(err, QS_ERR_RUNTIME, "%s: fsync failed: %s", w->tmp, strerror(errno));
    int rc = close(w->fd);
    w->fd = -1;
    if (rc != 0) {
        unlink(w->tmp);
        QS_THROW(err, QS_ERR_RUNTIME, "%s: close failed: %s", w->tmp, strerror(errno));
    }
    if (rename(w->tmp, w->path) != 0) {
        int e = errno;
        unlink(w->tmp);
        QS_THROW(err, QS_ERR_RUNTIME, "%s: rename from %s failed: %s", w->path, w->tmp,
                 strerror(e));
    }
    w->finished = 1;
    dir = dup_str(w->path, err);
    if (!dir) QS_THROW(err, QS_ERR_RUNTIME, "%s: out of memory", w->path);
    char *slash = strrchr(dir, '/');
    if (slash == dir) slash[1] = '\0';
    else if (slash) *slash = '\0';
    else strcpy(dir, ".");
    QS_CHECK(qs_st_fsync_dir(dir, err));
done:
    if (st != QS_OK) abandon(w);
    free(dir);
    return st;
}

void qs_st_writer_free(qs_st_writer *w) {
    if (!w) return;
    if (!w->finished) abandon(w);
    for (int64_t i = 0; i < w->n; ++i) free(w->entries[i].name);
    free(w->entries);
    free(w->path);
    free(w->tmp);
    free(w);
}
