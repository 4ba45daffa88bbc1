/* gguf_read.c: the GGUF reader (see gguf_read.h). */
#include "gguf_read.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gguf_quant.h"
#include "half.h"

/* A bounded cursor over the mapped header. */
typedef struct cur {
    const unsigned char *p;
    size_t pos, size;
    int bad;
} cur;

static int take(cur *c, void *dst, size_t n) {
    if (c->bad || n > c->size - c->pos) {
        c->bad = 1;
        return 0;
    }
    if (dst) memcpy(dst, c->p + c->pos, n);
    c->pos += n;
    return 1;
}

static uint64_t get_u64(cur *c) {
    uint64_t v = 0;
    take(c, &v, 8);
    return v;
}

static uint32_t get_u32(cur *c) {
    uint32_t v = 0;
    take(c, &v, 4);
    return v;
}

/* A string: *s points into the map (not NUL-terminated), *n its length. */
static void get_str(cur *c, const char **s, uint64_t *n) {
    *n = get_u64(c);
    *s = NULL;
    if (!c->bad && *n <= c->size - c->pos) *s = (const char *)c->p + c->pos;
    take(c, NULL, (size_t)*n);
}

static size_t scalar_bytes(uint32_t t) {
    switch (t) {
    case QS_GGUF_V_UINT8: case QS_GGUF_V_INT8: case QS_GGUF_V_BOOL: return 1;
    case QS_GGUF_V_UINT16: case QS_GGUF_V_INT16: return 2;
    case QS_GGUF_V_UINT32: case QS_GGUF_V_INT32: case QS_GGUF_V_FLOAT32: return 4;
    case QS_GGUF_V_UINT64: case QS_GGUF_V_INT64: case QS_GGUF_V_FLOAT64: return 8;
    default: return 0;
    }
}

/* An integer value of scalar type t (0 for others). */
static int64_t get_int(cur *c, uint32_t t) {
    unsigned char b[8] = {0};
    const size_t n = scalar_bytes(t);
    if (!n || !take(c, b, n)) return 0;
    switch (t) {
    case QS_GGUF_V_UINT8: return b[0];
    case QS_GGUF_V_INT8: return (int8_t)b[0];
    case QS_GGUF_V_UINT16: { uint16_t v; memcpy(&v, b, 2); return v; }
    case QS_GGUF_V_INT16: { int16_t v; memcpy(&v, b, 2); return v; }
    case QS_GGUF_V_UINT32: { uint32_t v; memcpy(&v, b, 4); return v; }
    case QS_GGUF_V_INT32: { int32_t v; memcpy(&v, b, 4); return v; }
    case QS_GGUF_V_UINT64: { uint64_t v; memcpy(&v, b, 8); return (int64_t)v; }
    case QS_GGUF_V_INT64: { int64_t v; memcpy(&v, b, 8); return v; }
    default: return 0;
    }
}

/* Skips a value of type t (arrays: their elements). */
static void skip_value(cur *c, uint32_t t) {
    if (t == QS_GGUF_V_STRING) {
        const char *s;
        uint64_t n;
        get_str(c, &s, &n);
    } else if (t == QS_GGUF_V_ARRAY) {
        const uint32_t et = get_u32(c);
        const uint64_t n = get_u64(c);
        if (et == QS_GGUF_V_STRING) {
            for (uint64_t i = 0; i < n && !c->bad; ++i) skip_value(c, et);
        } else if (scalar_bytes(et) && n <= (c->size - c->pos) / scalar_bytes(et)) {
            take(c, NULL, (size_t)n * scalar_bytes(et));
        } else {
            c->bad = 1;
        }
    } else if (scalar_bytes(t)) {
        take(c, NULL, scalar_bytes(t));
    } else {
        c->bad = 1;
    }
}

static int key_is(const char *k, uint64_t n, const char *want) {
    return n == strlen(want) && memcmp(k, want, (size_t)n) == 0;
}

/* The metadata: the few keys qshard reads, the rest skipped. */
static qs_status read_meta(qs_gguf_reader *r, cur *c, uint64_t nkv, qs_err *err) {
    r->alignment = QS_GGUF_DEFAULT_ALIGNMENT;
    int64_t heads_any[2] = {0, 0}; /* <arch>.attention.head_count, _kv (one arch per file) */
    for (uint64_t i = 0; i < nkv && !c->bad; ++i) {
        const char *k;
        uint64_t kn;
        get_str(c, &k, &kn);
        const uint32_t t = get_u32(c);
        if (c->bad) break;
        if (key_is(k, kn, "general.architecture") && t == QS_GGUF_V_STRING) {
            const char *s;
            uint64_t n;
            get_str(c, &s, &n);
            if (s && n < sizeof(r->arch)) {
                memcpy(r->arch, s, (size_t)n);
                r->arch[n] = '\0';
            }
        } else if (key_is(k, kn, "general.alignment") && scalar_bytes(t)) {
            const int64_t a = get_int(c, t);
            if (a <= 0 || (a & (a - 1)) != 0 || a > (1 << 20))
                return QS_FAIL(err, QS_ERR_INPUT, "%s: general.alignment %lld is not a power of two",
                               r->path, (long long)a);
            r->alignment = (uint32_t)a;
        } else if (kn > 24 && scalar_bytes(t) &&
                   memcmp(k + kn - 24, ".attention.head_count_kv", 24) == 0) {
            heads_any[1] = get_int(c, t);
        } else if (kn > 21 && scalar_bytes(t) &&
                   memcmp(k + kn - 21, ".attention.head_count", 21) == 0) {
            heads_any[0] = get_int(c, t);
        } else {
            skip_value(c, t);
        }
    }
    if (c->bad) return QS_FAIL(err, QS_ERR_INPUT, "%s: metadata runs past the end of the file",
                               r->path);
    r->head_count = heads_any[0];
    r->head_count_kv = heads_any[1] ? heads_any[1] : heads_any[0];
    return QS_OK;
}

qs_status qs_gguf_reader_open(qs_gguf_reader *r, const char *path, qs_err *err) {
    qs_status st = QS_OK;
    struct stat sb;
    memset(r, 0, sizeof(*r));
    snprintf(r->path, sizeof(r->path), "%s", path);
    const int fd = open(path, O_RDONLY);
    if (fd < 0) return QS_FAIL(err, QS_ERR_INPUT, "%s: cannot open: %s", path, strerror(errno));
    if (fstat(fd, &sb) != 0 || sb.st_size < 24) {
        close(fd);
        return QS_FAIL(err, QS_ERR_INPUT, "%s: not a GGUF file (too short)", path);
    }
    r->size = (size_t)sb.st_size;
    void *m = mmap(NULL, r->size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (m == MAP_FAILED) return QS_FAIL(err, QS_ERR_RUNTIME, "%s: mmap: %s", path, strerror(errno));
    r->map = m;
    cur c = {r->map, 0, r->size, 0};
    if (memcmp(r->map, "GGUF", 4) != 0) QS_THROW(err, QS_ERR_INPUT, "%s: no GGUF magic", path);
    take(&c, NULL, 4);
    r->version = get_u32(&c);
    if (r->version != 3) QS_THROW(err, QS_ERR_INPUT, "%s: GGUF version %u (qshard reads 3)", path,
                                  (unsigned)r->version);
    const uint64_t nt = get_u64(&c), nkv = get_u64(&c);
    if (nt > r->size / 24) QS_THROW(err, QS_ERR_INPUT, "%s: %llu tensors cannot fit", path,
                                    (unsigned long long)nt);
    QS_CHECK(read_meta(r, &c, nkv, err));
    r->ntensors = (int64_t)nt;
    r->t = qs_calloc(nt ? (size_t)nt : 1, sizeof(*r->t), err, "GGUF tensor table");
    if (!r->t) QS_THROW(err, QS_ERR_RUNTIME, "out of memory (%s)", path);
    uint64_t *rel = qs_calloc(nt ? (size_t)nt : 1, sizeof(uint64_t), err, "GGUF offsets");
    if (!rel) QS_THROW(err, QS_ERR_RUNTIME, "out of memory (%s)", path);
    for (uint64_t i = 0; i < nt && st == QS_OK; ++i) {
        qs_gguf_rtensor *t = &r->t[i];
        const char *s;
        uint64_t n;
        get_str(&c, &s, &n);
        const uint32_t nd = get_u32(&c);
        if (c.bad || n == 0 || n >= QS_GGUF_NAME_MAX || nd < 1 || nd > QS_GGUF_MAX_DIMS) {
            st = QS_FAIL(err, QS_ERR_INPUT, "%s: tensor info %llu is malformed", path,
                         (unsigned long long)i);
            break;
        }
        memcpy(t->name, s, (size_t)n);
        t->ndim = (int)nd;
        for (uint32_t k = 0; k < nd; ++k) t->shape[nd - 1 - k] = (int64_t)get_u64(&c);
        const uint32_t ty = get_u32(&c);
        rel[i] = get_u64(&c);
        t->type = (qs_gguf_type)ty;
        t->rows = 1;
        int ok = !c.bad && qs_gguf_type_known((int)ty);
        for (int k = 0; ok && k < t->ndim; ++k)
            ok = t->shape[k] > 0 && t->shape[k] < ((int64_t)1 << 40);
        for (int k = 0; ok && k + 1 < t->ndim; ++k) t->rows *= t->shape[k];
        const int64_t rb = ok ? qs_gguf_row_bytes(t->type, t->shape[t->ndim - 1]) : -1;
        if (!ok || rb <= 0 || t->rows > (int64_t)(r->size / (uint64_t)rb)) {
            st = QS_FAIL(err, QS_ERR_INPUT, "%s: tensor %s: bad type %u or shape", path, t->name,
                         (unsigned)ty);
            break;
        }
        t->nbytes = (uint64_t)(t->rows * rb);
    }
    if (st == QS_OK) {
        const uint64_t a = r->alignment, data = (c.pos + a - 1) / a * a;
        for (uint64_t i = 0; i < nt && st == QS_OK; ++i) {
            r->t[i].offset = data + rel[i];
            if (rel[i] % a != 0 || rel[i] > r->size || r->t[i].offset > r->size ||
                r->t[i].nbytes > r->size - r->t[i].offset)
                st = QS_FAIL(err, QS_ERR_INPUT, "%s: tensor %s: data at %llu runs past the end "
                             "of the file (%zu bytes) or is not aligned", path, r->t[i].name,
                             (unsigned long long)r->t[i].offset, r->size);
        }
    }
    free(rel);
done:
    if (st != QS_OK) qs_gguf_reader_close(r);
    return st;
}

void qs_gguf_reader_close(qs_gguf_reader *r) {
    if (r->map) munmap(r->map, r->size);
    free(r->t);
    memset(r, 0, sizeof(*r));
}

int64_t qs_gguf_reader_find(const qs_gguf_reader *r, const char *name) {
    for (int64_t i = 0; i < r->ntensors; ++i)
        if (strcmp(r->t[i].name, name) == 0) return i;
    return -1;
}

/* Rows per head of a llama attn_q / attn_k tensor (its weight or bias), 0 otherwise. */
static int64_t permute_head_rows(const qs_gguf_reader *r, const qs_gguf_rtensor *t) {
    if (strcmp(r->arch, "llama") != 0) return 0;
    const char *p = strstr(t->name, ".attn_q.");
    const int64_t heads = p ? r->head_count : (strstr(t->name, ".attn_k.") ? r->head_count_kv : 0);
    if (heads <= 0 || strncmp(t->name, "blk.", 4) != 0) return 0;
    const int64_t rows = t->ndim == 1 ? t->shape[0] : t->rows;
    return rows / heads;
}

qs_status qs_gguf_reader_f32(const qs_gguf_reader *r, int64_t i, float *out, int64_t count,
                             qs_err *err) {
    qs_status st = QS_OK;
    const qs_gguf_rtensor *t = &r->t[i];
    const int64_t n = t->shape[t->ndim - 1], numel = t->rows * n;
    const unsigned char *src = r->map + t->offset;
    float *tmp = NULL;
    if (count != numel)
        return QS_FAIL(err, QS_ERR_INPUT, "%s: tensor %s has %lld elements, expected %lld",
                       r->path, t->name, (long long)numel, (long long)count);
    const int64_t hr = permute_head_rows(r, t);
    const int64_t prow = t->ndim == 1 ? 1 : n, nprow = t->ndim == 1 ? t->shape[0] : t->rows;
    if (hr > 0) {
        if (hr % 2 != 0 || nprow % hr != 0)
            return QS_FAIL(err, QS_ERR_INPUT, "%s: tensor %s: %lld rows do not split into heads "
                           "of %lld", r->path, t->name, (long long)nprow, (long long)hr);
        tmp = qs_malloc(sizeof(float) * (size_t)numel, err, "GGUF tensor"); // (nprow, prow)
        if (!tmp) return QS_ERR_RUNTIME;
    }
    float *dst = tmp ? tmp : out;
    if (t->type == QS_GGUF_F32) {
        memcpy(dst, src, sizeof(float) * (size_t)numel);
    } else if (t->type == QS_GGUF_F16 || t->type == QS_GGUF_BF16) {
        for (int64_t j = 0; j < numel; ++j) {
            uint16_t h;
            memcpy(&h, src + 2 * j, 2);
            dst[j] = t->type == QS_GGUF_F16 ? qs_f16_to_f32(h) : qs_bf16_to_f32(h);
        }
    } else {
        QS_CHECK(qs_gguf_dequantize_rows(t->type, src, t->rows, n, dst, err));
    }
    if (tmp) {
        /* GGML row 2i + j of a head came from Hugging Face row j * hr/2 + i */
        for (int64_t h0 = 0; h0 < nprow; h0 += hr)
            for (int64_t a = 0; a < hr / 2; ++a)
                for (int64_t j = 0; j < 2; ++j)
                    memcpy(out + (h0 + j * (hr / 2) + a) * prow, tmp + (h0 + 2 * a + j) * prow,
                           sizeof(float) * (size_t)prow);
    }
done:
    free(tmp);
    return st;
}
