/* gguf_file.c: GGUF v3 metadata encoding, layout and positional writes (see gguf_file.h). */
#include "gguf_file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "half.h"

#define KEY_MAX 65535u

/* ---- a growable little-endian byte buffer ------------------------------------------- */

typedef struct buf {
    unsigned char *p; /* (cap,) owned */
    size_t n, cap;
    int oom;          /* set once a growth failed; later appends are dropped */
} buf;

static int buf_reserve(buf *b, size_t extra) {
    if (b->oom) return -1;
    if (extra > SIZE_MAX - b->n) {
        b->oom = 1;
        return -1;
    }
    if (b->n + extra <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < b->n + extra) cap = cap > SIZE_MAX / 2 ? b->n + extra : 2 * cap;
    unsigned char *p = realloc(b->p, cap);
    if (!p) {
        b->oom = 1;
        return -1;
    }
    b->p = p;
    b->cap = cap;
    return 0;
}

static void put_bytes(buf *b, const void *s, size_t n) {
    if (n == 0 || buf_reserve(b, n) != 0) return;
    memcpy(b->p + b->n, s, n);
    b->n += n;
}

static void put_le(buf *b, uint64_t v, int nbytes) {
    unsigned char t[8];
    for (int i = 0; i < nbytes; ++i) t[i] = (unsigned char)(v >> (8 * i));
    put_bytes(b, t, (size_t)nbytes);
}

static void put_u32(buf *b, uint32_t v) { put_le(b, v, 4); }
static void put_u64(buf *b, uint64_t v) { put_le(b, v, 8); }

static void put_string(buf *b, const char *s, size_t n) {
    put_u64(b, (uint64_t)n);
    put_bytes(b, s, n);
}

/* ---- metadata ------------------------------------------------------------------------ */

typedef struct kv {
    char *key;              /* owned */
    unsigned char *val;     /* owned: u32 value type, then the value */
    size_t nval;
} kv;

struct qs_gguf_meta {
    kv *items;              /* (n,) in insertion order */
    int64_t n, cap;
};

qs_status qs_gguf_meta_new(qs_gguf_meta **m, qs_err *err) {
    *m = qs_calloc(1, sizeof(**m), err, "GGUF metadata");
    return *m ? QS_OK : QS_ERR_RUNTIME;
}

void qs_gguf_meta_free(qs_gguf_meta *m) {
    if (!m) return;
    for (int64_t i = 0; i < m->n; ++i) {
        free(m->items[i].key);
        free(m->items[i].val);
    }
    free(m->items);
    free(m);
}

int64_t qs_gguf_meta_count(const qs_gguf_meta *m) { return m->n; }

static int64_t meta_find(const qs_gguf_meta *m, const char *key) {
    for (int64_t i = 0; i < m->n; ++i)
        if (strcmp(m->items[i].key, key) == 0) return i;
    return -1;
}

int qs_gguf_meta_has(const qs_gguf_meta *m, const char *key) { return meta_find(m, key) >= 0; }

/* Stores the encoded value b (taken over) under key. */
static qs_status meta_put(qs_gguf_meta *m, const char *key, buf *b, qs_err *err) {
    qs_status st = QS_OK;
    size_t kl = key ? strlen(key) : 0;
    if (kl == 0 || kl > KEY_MAX)
        QS_THROW(err, QS_ERR_INPUT, "GGUF metadata key '%.60s': length %zu (1..%u)",
                 key ? key : "", kl, KEY_MAX);
    if (b->oom) QS_THROW(err, QS_ERR_RUNTIME, "GGUF metadata key '%.200s': out of memory", key);
    int64_t i = meta_find(m, key);
    if (i >= 0) {
        free(m->items[i].val);
        m->items[i].val = b->p;
        m->items[i].nval = b->n;
        b->p = NULL;
        goto done;
    }
    if (m->n == m->cap) {
        int64_t cap = m->cap ? 2 * m->cap : 64;
        kv *it = realloc(m->items, (size_t)cap * sizeof(*it));
        if (!it) QS_THROW(err, QS_ERR_RUNTIME, "GGUF metadata: out of memory");
        m->items = it;
        m->cap = cap;
    }
    char *k = malloc(kl + 1);
    if (!k) QS_THROW(err, QS_ERR_RUNTIME, "GGUF metadata: out of memory");
    memcpy(k, key, kl + 1);
    m->items[m->n].key = k;
    m->items[m->n].val = b->p;
    m->items[m->n].nval = b->n;
    m->n++;
    b->p = NULL;
done:
    free(b->p);
    b->p = NULL;
    return st;
}

static qs_status set_scalar(qs_gguf_meta *m, const char *key, qs_gguf_vtype t, uint64_t bits,
                            int nbytes, qs_err *err) {
    buf b = {0};
    put_u32(&b, (uint32_t)t);
    put_le(&b, bits, nbytes);
    return meta_put(m, key, &b, err);
}

qs_status qs_gguf_meta_set_u8(qs_gguf_meta *m, const char *key, uint8_t v, qs_err *err) {
    return set_scalar(m, key, QS_GGUF_V_UINT8, v, 1, err);
}
qs_status qs_gguf_meta_set_i8(qs_gguf_meta *m, const char *key, int8_t v, qs_err *err) {
    return set_scalar(m, key, QS_GGUF_V_INT8, (uint8_t)v, 1, err);
}
qs_status qs_gguf_meta_set_u16(qs_gguf_meta *m, const char *key, uint16_t v, qs_err *err) {
    return set_scalar(m, key, QS_GGUF_V_UINT16, v, 2, err);
}
qs_status qs_gguf_meta_set_i16(qs_gguf_meta *m, const char *key, int16_t v, qs_err *err) {
    return set_scalar(m, key, QS_GGUF_V_INT16, (uint16_t)v, 2, err);
}
qs_status qs_gguf_meta_set_u32(qs_gguf_meta *m, const char *key, uint32_t v, qs_err *err) {
    return set_scalar(m, key, QS_GGUF_V_UINT32, v, 4, err);
}
qs_status qs_gguf_meta_set_i32(qs_gguf_meta *m, const char *key, int32_t v, qs_err *err) {
    return set_scalar(m, key, QS_GGUF_V_INT32, (uint32_t)v, 4, err);
}
qs_status qs_gguf_meta_set_u64(qs_gguf_meta *m, const char *key, uint64_t v, qs_err *err) {
    return set_scalar(m, key, QS_GGUF_V_UINT64, v, 8, err);
}
qs_status qs_gguf_meta_set_i64(qs_gguf_meta *m, const char *key, int64_t v, qs_err *err) {
    return set_scalar(m, key, QS_GGUF_V_INT64, (uint64_t)v, 8, err);
}
qs_status qs_gguf_meta_set_f32(qs_gguf_meta *m, const char *key, float v, qs_err *err) {
    return set_scalar(m, key, QS_GGUF_V_FLOAT32, qs_f32_bits(v), 4, err);
}
qs_status qs_gguf_meta_set_f64(qs_gguf_meta *m, const char *key, double v, qs_err *err) {
    uint64_t u;
    memcpy(&u, &v, sizeof(u));
    return set_scalar(m, key, QS_GGUF_V_FLOAT64, u, 8, err);
}
qs_status qs_gguf_meta_set_bool(qs_gguf_meta *m, const char *key, int v, qs_err *err) {
    return set_scalar(m, key, QS_GGUF_V_BOOL, v ? 1u : 0u, 1, err);
}

qs_status qs_gguf_meta_set_strn(qs_gguf_meta *m, const char *key, const char *s, size_t n,
                                qs_err *err) {
    buf b = {0};
    put_u32(&b, QS_GGUF_V_STRING);
    put_string(&b, s, n);
    return meta_put(m, key, &b, err);
}

qs_status qs_gguf_meta_set_str(qs_gguf_meta *m, const char *key, const char *s, qs_err *err) {
    return qs_gguf_meta_set_strn(m, key, s, strlen(s), err);
}

/* Bytes of one scalar element of type t, 0 for STRING / ARRAY / unknown. */
static int scalar_bytes(qs_gguf_vtype t) {
    switch (t) {
    case QS_GGUF_V_UINT8:
    case QS_GGUF_V_INT8:
    case QS_GGUF_V_BOOL: return 1;
    case QS_GGUF_V_UINT16:
    case QS_GGUF_V_INT16: return 2;
    case QS_GGUF_V_UINT32:
    case QS_GGUF_V_INT32:
    case QS_GGUF_V_FLOAT32: return 4;
    case QS_GGUF_V_UINT64:
    case QS_GGUF_V_INT64:
    case QS_GGUF_V_FLOAT64: return 8;
    default: return 0;
    }
}

qs_status qs_gguf_meta_set_array(qs_gguf_meta *m, const char *key, qs_gguf_vtype elem,
                                 const void *values, uint64_t n, qs_err *err) {
    int eb = scalar_bytes(elem);
    if (eb == 0)
        return QS_FAIL(err, QS_ERR_INPUT, "GGUF metadata key '%.200s': array element type %d "
                       "is not a scalar type", key ? key : "", (int)elem);
    if (n == 0)
        return QS_FAIL(err, QS_ERR_INPUT, "GGUF metadata key '%.200s': empty array",
                       key ? key : "");
    if (n > (uint64_t)(SIZE_MAX / 16))
        return QS_FAIL(err, QS_ERR_INPUT, "GGUF metadata key '%.200s': array too long",
                       key ? key : "");
    buf b = {0};
    put_u32(&b, QS_GGUF_V_ARRAY);
    put_u32(&b, (uint32_t)elem);
    put_u64(&b, n);
    buf_reserve(&b, (size_t)n * (size_t)eb);
    const unsigned char *p = values;
    for (uint64_t i = 0; i < n; ++i, p += eb) {
        uint64_t v = 0;
        switch (eb) {
        case 1: v = *p; break;
        case 2: { uint16_t x; memcpy(&x, p, 2); v = x; } break;
        case 4: { uint32_t x; memcpy(&x, p, 4); v = x; } break;
        default: memcpy(&v, p, 8); break;
        }
        if (elem == QS_GGUF_V_BOOL) v = v ? 1 : 0;
        put_le(&b, v, eb);
    }
    return meta_put(m, key, &b, err);
}

qs_status qs_gguf_meta_set_str_array(qs_gguf_meta *m, const char *key, const char *const *s,
                                     const size_t *len, uint64_t n, qs_err *err) {
    if (n == 0)
        return QS_FAIL(err, QS_ERR_INPUT, "GGUF metadata key '%.200s': empty array",
                       key ? key : "");
    buf b = {0};
    put_u32(&b, QS_GGUF_V_ARRAY);
    put_u32(&b, QS_GGUF_V_STRING);
    put_u64(&b, n);
    for (uint64_t i = 0; i < n; ++i) put_string(&b, s[i], len ? len[i] : strlen(s[i]));
    return meta_put(m, key, &b, err);
}

/* ---- layout -------------------------------------------------------------------------- */

static uint64_t pad_to(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }

void qs_gguf_layout_free(qs_gguf_layout *L) {
    if (!L) return;
    if (L->names)
        for (int64_t i = 0; i < L->ntensors; ++i) free(L->names[i]);
    free(L->names);
    free(L->header);
    free(L->types);
    free(L->rows);
    free(L->row_bytes);
    free(L->offset);
    free(L->nbytes);
    free(L);
}

int64_t qs_gguf_layout_find(const qs_gguf_layout *L, const char *name) {
    for (int64_t i = 0; i < L->ntensors; ++i)
        if (strcmp(L->names[i], name) == 0) return i;
    return -1;
}

/* The alignment from meta's general.alignment (0 if absent, -1 if it is not a u32 power
 * of two). */
static int64_t meta_alignment(const qs_gguf_meta *m) {
    int64_t i = meta_find(m, "general.alignment");
    if (i < 0) return 0;
    const kv *e = &m->items[i];
    if (e->nval != 8 || e->val[0] != QS_GGUF_V_UINT32 || e->val[1] || e->val[2] || e->val[3])
        return -1;
    uint32_t a = (uint32_t)e->val[4] | (uint32_t)e->val[5] << 8 | (uint32_t)e->val[6] << 16 |
                 (uint32_t)e->val[7] << 24;
    if (a == 0 || (a & (a - 1)) != 0) return -1;
    return a;
}

qs_status qs_gguf_layout_compute(const qs_gguf_meta *meta, const qs_gguf_tensor_decl *t,
                                 int64_t n, qs_gguf_layout **out, qs_err *err) {
    qs_status st = QS_OK;
    qs_gguf_layout *L = NULL;
    buf b = {0};
    *out = NULL;
    if (n < 0) QS_THROW(err, QS_ERR_INTERNAL, "GGUF layout: negative tensor count");
    int64_t align = meta_alignment(meta);
    if (align < 0)
        QS_THROW(err, QS_ERR_INPUT, "GGUF metadata key 'general.alignment': must be a u32 "
                 "power of two");
    const int add_align = align == 0;
    if (add_align) align = QS_GGUF_DEFAULT_ALIGNMENT;

    L = qs_calloc(1, sizeof(*L), err, "GGUF layout");
    if (!L) QS_THROW(err, QS_ERR_RUNTIME, "GGUF layout: out of memory");
    L->alignment = (uint32_t)align;
    size_t cnt = n > 0 ? (size_t)n : 1;
    L->names = calloc(cnt, sizeof(*L->names));
    L->types = calloc(cnt, sizeof(*L->types));
    L->rows = calloc(cnt, sizeof(*L->rows));
    L->row_bytes = calloc(cnt, sizeof(*L->row_bytes));
    L->offset = calloc(cnt, sizeof(*L->offset));
    L->nbytes = calloc(cnt, sizeof(*L->nbytes));
    if (!L->names || !L->types || !L->rows || !L->row_bytes || !L->offset || !L->nbytes)
        QS_THROW(err, QS_ERR_RUNTIME, "GGUF layout: out of memory (%lld tensors)", (long long)n);

    /* header: magic, version, counts, key/values */
    put_bytes(&b, "GGUF", 4);
    put_u32(&b, QS_GGUF_VERSION);
    put_u64(&b, (uint64_t)n);
    put_u64(&b, (uint64_t)meta->n + (add_align ? 1u : 0u));
    for (int64_t i = 0; i < meta->n; ++i) {
        put_string(&b, meta->items[i].key, strlen(meta->items[i].key));
        put_bytes(&b, meta->items[i].val, meta->items[i].nval);
    }
    if (add_align) {
        static const char k[] = "general.alignment";
        put_string(&b, k, sizeof(k) - 1);
        put_u32(&b, QS_GGUF_V_UINT32);
        put_u32(&b, (uint32_t)align);
    }

    /* tensor infos; data offsets relative to the data section, in info order */
    uint64_t rel = 0;
    for (int64_t i = 0; i < n; ++i) {
        const qs_gguf_tensor_decl *d = &t[i];
        const char *nm = d->name ? d->name : "";
        size_t nl = strlen(nm);
        if (nl == 0 || nl >= QS_GGUF_NAME_MAX)
            QS_THROW(err, QS_ERR_INPUT, "GGUF tensor '%.80s': name length %zu (1..%d bytes)", nm,
                     nl, QS_GGUF_NAME_MAX - 1);
        for (int64_t j = 0; j < i; ++j)
            if (strcmp(L->names[j], nm) == 0)
                QS_THROW(err, QS_ERR_INPUT, "GGUF tensor '%s': declared twice", nm);
        if (!qs_gguf_type_known((int)d->type))
            QS_THROW(err, QS_ERR_INPUT, "GGUF tensor '%s': unknown type %d", nm, (int)d->type);
        if (d->ndim < 1 || d->ndim > QS_GGUF_MAX_DIMS)
            QS_THROW(err, QS_ERR_INPUT, "GGUF tensor '%s': %d dims (1..%d)", nm, d->ndim,
                     QS_GGUF_MAX_DIMS);
        int64_t rows = 1;
        for (int k = 0; k < d->ndim; ++k) {
            if (d->shape[k] < 1 || d->shape[k] > ((int64_t)1 << 40))
                QS_THROW(err, QS_ERR_INPUT, "GGUF tensor '%s': dim %d is %lld", nm, k,
                         (long long)d->shape[k]);
            if (k < d->ndim - 1) {
                if (rows > ((int64_t)1 << 40) / d->shape[k])
                    QS_THROW(err, QS_ERR_INPUT, "GGUF tensor '%s': too many elements", nm);
                rows *= d->shape[k];
            }
        }
        const int64_t ncol = d->shape[d->ndim - 1];
        const int64_t rb = qs_gguf_row_bytes(d->type, ncol);
        if (rb < 0)
            QS_THROW(err, QS_ERR_INPUT, "GGUF tensor '%s': row of %lld is not a multiple of the "
                     "%s block (%lld weights)", nm, (long long)ncol, qs_gguf_type_name(d->type),
                     (long long)qs_gguf_block_elems(d->type));
        if ((uint64_t)rb > ((uint64_t)1 << 50) / (uint64_t)rows)
            QS_THROW(err, QS_ERR_INPUT, "GGUF tensor '%s': too large", nm);
        L->names[i] = malloc(nl + 1);
        if (!L->names[i]) QS_THROW(err, QS_ERR_RUNTIME, "GGUF layout: out of memory");
        memcpy(L->names[i], nm, nl + 1);
        L->ntensors = i + 1; /* names[0..i] are owned now */
        L->types[i] = d->type;
        L->rows[i] = rows;
        L->row_bytes[i] = (uint64_t)rb;
        L->nbytes[i] = (uint64_t)rows * (uint64_t)rb;
        L->offset[i] = rel; /* relative for now */
        rel += pad_to(L->nbytes[i], (uint64_t)align);

        put_string(&b, nm, nl);
        put_u32(&b, (uint32_t)d->ndim);
        for (int k = d->ndim - 1; k >= 0; --k) put_u64(&b, (uint64_t)d->shape[k]);
        put_u32(&b, (uint32_t)d->type);
        put_u64(&b, L->offset[i]);
    }
    L->ntensors = n;
    /* zero padding up to the data section */
    uint64_t hdr = pad_to((uint64_t)b.n, (uint64_t)align);
    if (buf_reserve(&b, (size_t)(hdr - b.n)) == 0) {
        memset(b.p + b.n, 0, (size_t)(hdr - b.n));
        b.n = (size_t)hdr;
    }
    if (b.oom) QS_THROW(err, QS_ERR_RUNTIME, "GGUF layout: out of memory (header)");
    L->header = b.p;
    b.p = NULL;
    L->data_start = hdr;
    for (int64_t i = 0; i < n; ++i) L->offset[i] += hdr;
    L->file_bytes = hdr + rel;
    *out = L;
    L = NULL;
done:
    free(b.p);
    qs_gguf_layout_free(L);
    return st;
}

/* ---- the file ------------------------------------------------------------------------ */

struct qs_gguf_file {
    char *path;                 /* owned: final path */
    char *tmp;                  /* owned: <path>.tmp.<tag> */
    int fd;
    int creator, committed;
    const qs_gguf_layout *L;    /* not owned */
    uint64_t *written;          /* (L->ntensors,) bytes this handle wrote per tensor */
};

int qs_gguf_tmp_path(char *buf, size_t n, const char *path, long tag) {
    return snprintf(buf, n, "%s.tmp.%ld", path, tag);
}

static void file_free(qs_gguf_file *f) {
    if (!f) return;
    if (f->fd >= 0) close(f->fd);
    free(f->path);
    free(f->tmp);
    free(f->written);
    free(f);
}

static qs_status file_new(qs_gguf_file **out, const char *path, long tag,
                          const qs_gguf_layout *L, qs_err *err) {
    qs_status st = QS_OK;
    qs_gguf_file *f = qs_calloc(1, sizeof(*f), err, "GGUF file");
    *out = NULL;
    if (!f) QS_THROW(err, QS_ERR_RUNTIME, "%s: out of memory", path);
    f->fd = -1;
    f->L = L;
    size_t pl = strlen(path);
    f->path = malloc(pl + 1);
    f->tmp = malloc(pl + 32);
    f->written = calloc(L->ntensors > 0 ? (size_t)L->ntensors : 1, sizeof(*f->written));
    if (!f->path || !f->tmp || !f->written)
        QS_THROW(err, QS_ERR_RUNTIME, "%s: out of memory", path);
    memcpy(f->path, path, pl + 1);
    qs_gguf_tmp_path(f->tmp, pl + 32, path, tag);
    *out = f;
    f = NULL;
done:
    file_free(f);
    return st;
}

static qs_status pwrite_all(int fd, const char *path, const void *data, size_t n, uint64_t off,
                            qs_err *err) {
    const unsigned char *p = data;
    while (n > 0) {
        size_t chunk = n > ((size_t)1 << 30) ? ((size_t)1 << 30) : n;
        ssize_t k = pwrite(fd, p, chunk, (off_t)off);
        if (k < 0) {
            if (errno == EINTR) continue;
            return QS_FAIL(err, QS_ERR_RUNTIME, "%s: write failed: %s", path, strerror(errno));
        }
        if (k == 0) return QS_FAIL(err, QS_ERR_RUNTIME, "%s: write failed: no progress", path);
        p += k;
        n -= (size_t)k;
        off += (uint64_t)k;
    }
    return QS_OK;
}

qs_status qs_gguf_file_create(qs_gguf_file **out, const char *path, long tag,
                              const qs_gguf_layout *L, qs_err *err) {
    qs_status st = QS_OK;
    qs_gguf_file *f = NULL;
    *out = NULL;
    QS_CHECK(file_new(&f, path, tag, L, err));
    unlink(f->tmp); /* a stale file of an earlier attempt with the same tag */
    f->fd = open(f->tmp, O_RDWR | O_CREAT | O_EXCL, 0644);
    if (f->fd < 0) QS_THROW(err, QS_ERR_RUNTIME, "%s: cannot create: %s", f->tmp, strerror(errno));
    f->creator = 1;
    QS_CHECK(pwrite_all(f->fd, f->tmp, L->header, (size_t)L->data_start, 0, err));
    if (ftruncate(f->fd, (off_t)L->file_bytes) != 0)
        QS_THROW(err, QS_ERR_RUNTIME, "%s: cannot size to %llu bytes: %s", f->tmp,
                 (unsigned long long)L->file_bytes, strerror(errno));
    *out = f;
    f = NULL;
done:
    qs_gguf_file_close(f); /* unlinks the temporary file when it was created */
    return st;
}

qs_status qs_gguf_file_open(qs_gguf_file **out, const char *path, long tag,
                            const qs_gguf_layout *L, qs_err *err) {
    qs_status st = QS_OK;
    qs_gguf_file *f = NULL;
    unsigned char *hdr = NULL;
    struct stat sb;
    *out = NULL;
    QS_CHECK(file_new(&f, path, tag, L, err));
    f->fd = open(f->tmp, O_RDWR);
    if (f->fd < 0) QS_THROW(err, QS_ERR_RUNTIME, "%s: cannot open: %s", f->tmp, strerror(errno));
    if (fstat(f->fd, &sb) != 0)
        QS_THROW(err, QS_ERR_RUNTIME, "%s: stat failed: %s", f->tmp, strerror(errno));
    if ((uint64_t)sb.st_size != L->file_bytes)
        QS_THROW(err, QS_ERR_RUNTIME, "%s: size %llu differs from this writer's layout (%llu): "
                 "the writers computed different layouts", f->tmp,
                 (unsigned long long)sb.st_size, (unsigned long long)L->file_bytes);
    hdr = malloc((size_t)L->data_start);
    if (!hdr) QS_THROW(err, QS_ERR_RUNTIME, "%s: out of memory", f->tmp);
    size_t got = 0;
    while (got < L->data_start) {
        ssize_t k = pread(f->fd, hdr + got, (size_t)L->data_start - got, (off_t)got);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) QS_THROW(err, QS_ERR_RUNTIME, "%s: cannot read the header", f->tmp);
        got += (size_t)k;
    }
    if (memcmp(hdr, L->header, (size_t)L->data_start) != 0)
        QS_THROW(err, QS_ERR_RUNTIME, "%s: header differs from this writer's layout: the "
                 "writers computed different layouts", f->tmp);
    *out = f;
    f = NULL;
done:
    free(hdr);
    file_free(f);
    return st;
}

qs_status qs_gguf_file_write(qs_gguf_file *f, int64_t t, uint64_t off, const void *data,
                             size_t n, qs_err *err) {
    const qs_gguf_layout *L = f->L;
    if (t < 0 || t >= L->ntensors)
        return QS_FAIL(err, QS_ERR_INTERNAL, "%s: tensor index %lld out of range", f->tmp,
                       (long long)t);
    if (off > L->nbytes[t] || n > L->nbytes[t] - off)
        return QS_FAIL(err, QS_ERR_INPUT, "%s: tensor '%s': %zu bytes at %llu run past its %llu "
                       "bytes", f->tmp, L->names[t], n, (unsigned long long)off,
                       (unsigned long long)L->nbytes[t]);
    qs_status st = pwrite_all(f->fd, f->tmp, data, n, L->offset[t] + off, err);
    if (st == QS_OK) f->written[t] += (uint64_t)n;
    return st;
}

uint64_t qs_gguf_file_written(const qs_gguf_file *f, int64_t t) {
    return (t >= 0 && t < f->L->ntensors) ? f->written[t] : 0;
}

qs_status qs_gguf_file_sync(qs_gguf_file *f, qs_err *err) {
    if (fsync(f->fd) != 0)
        return QS_FAIL(err, QS_ERR_RUNTIME, "%s: fsync failed: %s", f->tmp, strerror(errno));
    return QS_OK;
}

/* fsyncs the directory holding `path` (EINVAL: the file system cannot; accepted). */
static qs_status fsync_parent(const char *path, qs_err *err) {
    qs_status st = QS_OK;
    size_t n = strlen(path);
    char *dir = malloc(n + 2);
    if (!dir) return QS_FAIL(err, QS_ERR_RUNTIME, "%s: out of memory", path);
    memcpy(dir, path, n + 1);
    char *slash = strrchr(dir, '/');
    if (slash == dir) slash[1] = '\0';
    else if (slash) *slash = '\0';
    else strcpy(dir, ".");
    int fd = open(dir, O_RDONLY);
    if (fd < 0)
        QS_THROW(err, QS_ERR_RUNTIME, "%s: cannot open directory: %s", dir, strerror(errno));
    int rc = fsync(fd);
    int e = errno;
    close(fd);
    if (rc != 0 && e != EINVAL)
        QS_THROW(err, QS_ERR_RUNTIME, "%s: fsync failed: %s", dir, strerror(e));
done:
    free(dir);
    return st;
}

qs_status qs_gguf_file_commit(qs_gguf_file *f, int require_complete, qs_err *err) {
    qs_status st = QS_OK;
    if (!f->creator)
        QS_THROW(err, QS_ERR_INTERNAL, "%s: commit by a handle that did not create the file",
                 f->tmp);
    if (f->committed) QS_THROW(err, QS_ERR_INTERNAL, "%s: committed twice", f->tmp);
    if (require_complete)
        for (int64_t t = 0; t < f->L->ntensors; ++t)
            if (f->written[t] != f->L->nbytes[t])
                QS_THROW(err, QS_ERR_INPUT, "%s: tensor '%s' has %llu of its %llu bytes", f->tmp,
                         f->L->names[t], (unsigned long long)f->written[t],
                         (unsigned long long)f->L->nbytes[t]);
    QS_CHECK(qs_gguf_file_sync(f, err));
    if (close(f->fd) != 0) {
        f->fd = -1;
        QS_THROW(err, QS_ERR_RUNTIME, "%s: close failed: %s", f->tmp, strerror(errno));
    }
    f->fd = -1;
    if (rename(f->tmp, f->path) != 0)
        QS_THROW(err, QS_ERR_RUNTIME, "%s: rename from %s failed: %s", f->path, f->tmp,
                 strerror(errno));
    f->committed = 1;
    QS_CHECK(fsync_parent(f->path, err));
done:
    if (st != QS_OK && !f->committed) unlink(f->tmp);
    if (st != QS_OK) f->committed = 1; /* nothing left to remove at close */
    return st;
}

void qs_gguf_file_close(qs_gguf_file *f) {
    if (!f) return;
    if (f->creator && !f->committed) unlink(f->tmp);
    file_free(f);
}

void qs_gguf_file_abandon(qs_gguf_file *f) {
    if (!f) return;
    if (!f->committed) unlink(f->tmp);
    file_free(f);
}

/* ---- tensor bytes -------------------------------------------------------------------- */

qs_status qs_gguf_encode_float(qs_gguf_type t, const float *src, int64_t n, void *dst,
                               qs_err *err) {
    unsigned char *d = dst;
    if (t == QS_GGUF_F32) {
        for (int64_t i = 0; i < n; ++i) {
            uint32_t u = qs_f32_bits(src[i]);
            for (int k = 0; k < 4; ++k) d[4 * i + k] = (unsigned char)(u >> (8 * k));
        }
    } else if (t == QS_GGUF_F16 || t == QS_GGUF_BF16) {
        for (int64_t i = 0; i < n; ++i) {
            uint16_t h = t == QS_GGUF_F16 ? qs_f32_to_f16(src[i]) : qs_f32_to_bf16(src[i]);
            d[2 * i] = (unsigned char)h;
            d[2 * i + 1] = (unsigned char)(h >> 8);
        }
    } else {
        return QS_FAIL(err, QS_ERR_INPUT, "GGUF: type %s is not a float type (its bytes come "
                       "from a quantizer)", qs_gguf_type_name(t));
    }
    return QS_OK;
}
