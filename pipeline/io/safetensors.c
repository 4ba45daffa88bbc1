/* safetensors.c: mmap + validation of safetensors files, and checkpoints made of one file
 * or of shards listed in model.safetensors.index.json (see safetensors.h). */
#include "safetensors.h"

#include <errno.h>
#include <math.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "half.h"
#include "rundir.h"

#define ST_HEADER_MAX 100000000ull      /* the reference reader's cap on the JSON header */
#define ST_OFFSET_MAX 9007199254740992.0 /* 2^53: larger offsets are not exact in JSON */
#define INDEX_MAX_BYTES (256ull << 20)  /* cap on model.safetensors.index.json */

size_t qs_dtype_size(qs_dtype dt) {
    switch (dt) {
    case QS_DTYPE_F32: return 4;
    case QS_DTYPE_I32: return 4;
    case QS_DTYPE_F16: return 2;
    case QS_DTYPE_BF16: return 2;
    case QS_DTYPE_I64: return 8;
    }
    return 0;
}

const char *qs_dtype_name(qs_dtype dt) {
    switch (dt) {
    case QS_DTYPE_F32: return "F32";
    case QS_DTYPE_F16: return "F16";
    case QS_DTYPE_BF16: return "BF16";
    case QS_DTYPE_I32: return "I32";
    case QS_DTYPE_I64: return "I64";
    }
    return "?";
}

int64_t qs_st_numel(const qs_st_tensor *t) {
    int64_t n = 1;
    for (int d = 0; d < t->ndim; ++d) n *= t->shape[d];
    return n;
}

/* Dtype names of the safetensors format that qshard does not read. */
static int is_known_other_dtype(const char *s) {
    static const char *const other[] = {"BOOL", "U8", "I8", "I16", "U16", "U32", "U64",
                                        "F64", "F8_E5M2", "F8_E4M3", "F8_E8M0", "F4", "F6_E2M3",
                                        "F6_E3M2", "C64"};
    for (size_t i = 0; i < sizeof(other) / sizeof(other[0]); ++i)
        if (strcmp(s, other[i]) == 0) return 1;
    return 0;
}

static int parse_dtype(const char *s, qs_dtype *dt) {
    if (strcmp(s, "F32") == 0) *dt = QS_DTYPE_F32;
    else if (strcmp(s, "F16") == 0) *dt = QS_DTYPE_F16;
    else if (strcmp(s, "BF16") == 0) *dt = QS_DTYPE_BF16;
    else if (strcmp(s, "I32") == 0) *dt = QS_DTYPE_I32;
    else if (strcmp(s, "I64") == 0) *dt = QS_DTYPE_I64;
    else return -1;
    return 0;
}

/* A JSON number that is a non-negative integer <= 2^53 (valuedouble: valueint saturates). */
static int json_u53(const cJSON *v, uint64_t *out) {
    if (!cJSON_IsNumber(v)) return -1;
    double d = v->valuedouble;
    if (!(d >= 0.0) || d > ST_OFFSET_MAX || d != (double)(uint64_t)d) return -1;
    *out = (uint64_t)d;
    return 0;
}

typedef struct name_ix {
    const char *name;
    int64_t ix;
} name_ix;

static int cmp_name_ix(const void *a, const void *b) {
    const name_ix *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    if (c) return c;
    return (x->ix > y->ix) - (x->ix < y->ix);
}

static int cmp_tensor_offset(const void *a, const void *b) {
    const qs_st_tensor *x = a, *y = b;
    if (x->offset != y->offset) return x->offset < y->offset ? -1 : 1;
    if (x->nbytes != y->nbytes) return x->nbytes < y->nbytes ? -1 : 1;
    return strcmp(x->name, y->name);
}

void qs_shape_str(const int64_t *shape, int ndim, char *out, size_t n) {
    size_t k = 0;
    if (n == 0) return;
    out[0] = '\0';
    k += (size_t)snprintf(out, n, "(");
    for (int d = 0; d < ndim && k < n; ++d)
        k += (size_t)snprintf(out + k, n - k, d ? ", %lld" : "%lld", (long long)shape[d]);
    if (k < n) snprintf(out + k, n - k, ")");
}

/* Parses one header entry {dtype, shape, data_offsets} into t (name already set).
 * Offsets are left relative to the data section. */
static qs_status parse_entry(const char *path, const cJSON *e, qs_st_tensor *t, qs_err *err) {
    qs_status st = QS_OK;
    const cJSON *dtype = NULL, *shape = NULL, *offs = NULL;
    if (!cJSON_IsObject(e))
        QS_THROW(err, QS_ERR_INPUT, "%s: header entry '%s' is not a JSON object", path, t->name);
    for (const cJSON *c = e->child; c; c = c->next) {
        const cJSON **slot = NULL;
        if (strcmp(c->string, "dtype") == 0) slot = &dtype;
        else if (strcmp(c->string, "shape") == 0) slot = &shape;
        else if (strcmp(c->string, "data_offsets") == 0) slot = &offs;
        if (!slot) continue;
        if (*slot)
            QS_THROW(err, QS_ERR_INPUT, "%s: tensor '%s' has a duplicate key '%s'", path, t->name,
                     c->string);
        *slot = c;
    }
    if (!dtype || !shape || !offs)
        QS_THROW(err, QS_ERR_INPUT, "%s: tensor '%s' lacks '%s'", path, t->name,
                 !dtype ? "dtype" : !shape ? "shape" : "data_offsets");
    if (!cJSON_IsString(dtype))
        QS_THROW(err, QS_ERR_INPUT, "%s: tensor '%s': dtype is not a string", path, t->name);
    if (parse_dtype(dtype->valuestring, &t->dtype) != 0) {
        if (is_known_other_dtype(dtype->valuestring))
            QS_THROW(err, QS_ERR_INPUT,
                     "%s: tensor '%s' has dtype %s, which qshard does not read "
                     "(unsupported dtype; accepted: F32, F16, BF16, I32, I64)",
                     path, t->name, dtype->valuestring);
        QS_THROW(err, QS_ERR_INPUT, "%s: tensor '%s' has unknown dtype '%.40s'", path, t->name,
                 dtype->valuestring);
    }
    if (!cJSON_IsArray(shape))
        QS_THROW(err, QS_ERR_INPUT, "%s: tensor '%s': shape is not a list", path, t->name);
    int nd = cJSON_GetArraySize(shape);
    if (nd > QS_ST_MAX_DIMS)
        QS_THROW(err, QS_ERR_INPUT, "%s: tensor '%s' has %d dimensions (at most %d)", path,
                 t->name, nd, QS_ST_MAX_DIMS);
    t->ndim = nd;
    uint64_t numel = 1;
    int overflow = 0, empty = 0;
    int d = 0;
    for (const cJSON *c = shape->child; c; c = c->next, ++d) {
        uint64_t v = 0;
        if (json_u53(c, &v) != 0)
            QS_THROW(err, QS_ERR_INPUT,
                     "%s: tensor '%s': shape entry %d is not a non-negative integer", path,
                     t->name, d);
        t->shape[d] = (int64_t)v;
        if (v == 0) empty = 1;
        else if (numel > UINT64_MAX / v) overflow = 1;
        else numel *= v;
    }
    if (empty) { /* an empty tensor has no bytes, whatever its other dimensions */
        numel = 0;
        overflow = 0;
    }
    uint64_t esz = qs_dtype_size(t->dtype);
    if (overflow || numel > UINT64_MAX / esz || numel > (uint64_t)INT64_MAX)
        QS_THROW(err, QS_ERR_INPUT, "%s: tensor '%s': shape overflows 64-bit byte counts", path,
                 t->name);
    if (!cJSON_IsArray(offs) || cJSON_GetArraySize(offs) != 2)
        QS_THROW(err, QS_ERR_INPUT, "%s: tensor '%s': data_offsets is not a list of two numbers",
                 path, t->name);
    uint64_t b = 0, en = 0;
    if (json_u53(offs->child, &b) != 0 || json_u53(offs->child->next, &en) != 0)
        QS_THROW(err, QS_ERR_INPUT,
                 "%s: tensor '%s': data_offsets must be non-negative integers <= 2^53", path,
                 t->name);
    if (en < b)
        QS_THROW(err, QS_ERR_INPUT, "%s: tensor '%s': data_offsets [%llu, %llu) end before they "
                 "begin", path, t->name, (unsigned long long)b, (unsigned long long)en);
    if (en - b != numel * esz) {
        char sh[160];
        qs_shape_str(t->shape, t->ndim, sh, sizeof(sh));
        QS_THROW(err, QS_ERR_INPUT,
                 "%s: tensor '%s' has %llu data bytes but dtype %s x shape %s needs %llu "
                 "(byte length mismatch)",
                 path, t->name, (unsigned long long)(en - b), qs_dtype_name(t->dtype), sh,
                 (unsigned long long)(numel * esz));
    }
    t->offset = b;
    t->nbytes = en - b;
done:
    return st;
}

static qs_status parse_metadata(qs_st_file *f, const cJSON *m, qs_err *err) {
    qs_status st = QS_OK;
    if (!cJSON_IsObject(m))
        QS_THROW(err, QS_ERR_INPUT, "%s: __metadata__ is not a JSON object", f->path);
    int n = cJSON_GetArraySize(m);
    f->meta_keys = qs_calloc((size_t)n, sizeof(char *), err, "safetensors metadata");
    f->meta_values = qs_calloc((size_t)n, sizeof(char *), err, "safetensors metadata");
    if (!f->meta_keys || !f->meta_values) QS_THROW(err, QS_ERR_RUNTIME, "out of memory");
    for (const cJSON *c = m->child; c; c = c->next) {
        if (!cJSON_IsString(c))
            QS_THROW(err, QS_ERR_INPUT, "%s: __metadata__ value of '%s' is not a string",
                     f->path, c->string);
        for (int64_t k = 0; k < f->nmeta; ++k)
            if (strcmp(f->meta_keys[k], c->string) == 0)
                QS_THROW(err, QS_ERR_INPUT, "%s: __metadata__ has a duplicate key '%s'",
                         f->path, c->string);
        f->meta_keys[f->nmeta] = strdup(c->string);
        f->meta_values[f->nmeta] = strdup(c->valuestring);
        ++f->nmeta;
        if (!f->meta_keys[f->nmeta - 1] || !f->meta_values[f->nmeta - 1])
            QS_THROW(err, QS_ERR_RUNTIME, "out of memory reading %s", f->path);
    }
done:
    return st;
}

/* Parses and validates the JSON header at map[8, 8 + hlen). */
static qs_status parse_header(qs_st_file *f, uint64_t hlen, qs_err *err) {
    qs_status st = QS_OK;
    cJSON *root = NULL;
    name_ix *names = NULL;
    char *text = NULL; /* (hlen + 1,) NUL-terminated copy: cJSON never reads the mapping */
    uint64_t dlen = f->size - 8 - hlen; /* bytes of the data section */
    const char *end_parse = NULL;

    text = qs_malloc((size_t)hlen + 1, err, "safetensors header");
    if (!text) QS_THROW(err, QS_ERR_RUNTIME, "out of memory");
    memcpy(text, f->map + 8, (size_t)hlen);
    text[hlen] = '\0';
    if (hlen == 0 || text[0] != '{')
        QS_THROW(err, QS_ERR_INPUT, "%s: header is not a JSON object (it must begin with '{')",
                 f->path);
    if (memchr(text, '\0', (size_t)hlen))
        QS_THROW(err, QS_ERR_INPUT, "%s: header holds a NUL byte (invalid JSON)", f->path);
    root = cJSON_ParseWithLengthOpts(text, (size_t)hlen, &end_parse, 0);
    if (!root) {
        long pos = end_parse ? (long)(end_parse - text) : 0;
        QS_THROW(err, QS_ERR_INPUT, "%s: header is not valid JSON (near byte %ld of the header)",
                 f->path, pos);
    }
    for (const char *p = end_parse; p < text + hlen; ++p)
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r')
            QS_THROW(err, QS_ERR_INPUT,
                     "%s: header has trailing characters after the JSON object (invalid JSON)",
                     f->path);
    if (!cJSON_IsObject(root))
        QS_THROW(err, QS_ERR_INPUT, "%s: header is not a JSON object", f->path);

    int64_t n = 0, nmeta = 0;
    for (const cJSON *c = root->child; c; c = c->next) {
        if (strcmp(c->string, "__metadata__") == 0) ++nmeta;
        else ++n;
    }
    if (nmeta > 1) QS_THROW(err, QS_ERR_INPUT, "%s: duplicate key '__metadata__'", f->path);
    f->tensors = qs_calloc((size_t)n, sizeof(qs_st_tensor), err, "safetensors tensor table");
    f->by_name = qs_calloc((size_t)n, sizeof(int64_t), err, "safetensors name index");
    names = qs_calloc((size_t)n, sizeof(name_ix), err, "safetensors name index");
    if (!f->tensors || !f->by_name || !names) QS_THROW(err, QS_ERR_RUNTIME, "out of memory");

    for (const cJSON *c = root->child; c; c = c->next) {
        if (strcmp(c->string, "__metadata__") == 0) {
            QS_CHECK(parse_metadata(f, c, err));
            continue;
        }
        qs_st_tensor *t = &f->tensors[f->ntensors];
        t->name = strdup(c->string);
        if (!t->name) QS_THROW(err, QS_ERR_RUNTIME, "out of memory reading %s", f->path);
        ++f->ntensors;
        QS_CHECK(parse_entry(f->path, c, t, err));
    }

    /* duplicate names (cJSON keeps every duplicate key) */
    for (int64_t i = 0; i < n; ++i) names[i] = (name_ix){f->tensors[i].name, i};
    qsort(names, (size_t)n, sizeof(name_ix), cmp_name_ix);
    for (int64_t i = 1; i < n; ++i)
        if (strcmp(names[i - 1].name, names[i].name) == 0)
            QS_THROW(err, QS_ERR_INPUT, "%s: duplicate tensor name '%s' in the header", f->path,
                     names[i].name);

    /* offsets: sorted by begin they must tile [0, dlen) exactly */
    qsort(f->tensors, (size_t)n, sizeof(qs_st_tensor), cmp_tensor_offset);
    uint64_t prev_end = 0;
    for (int64_t i = 0; i < n; ++i) {
        const qs_st_tensor *t = &f->tensors[i];
        uint64_t b = t->offset, e = t->offset + t->nbytes;
        if (i == 0 && b != 0)
            QS_THROW(err, QS_ERR_INPUT,
                     "%s: first tensor '%s' begins at data offset %llu instead of 0", f->path,
                     t->name, (unsigned long long)b);
        if (b < prev_end)
            QS_THROW(err, QS_ERR_INPUT,
                     "%s: tensor '%s' data_offsets [%llu, %llu) overlap the previous tensor '%s' "
                     "(ends at %llu)",
                     f->path, t->name, (unsigned long long)b, (unsigned long long)e,
                     f->tensors[i - 1].name, (unsigned long long)prev_end);
        if (b > prev_end)
            QS_THROW(err, QS_ERR_INPUT,
                     "%s: gap of %llu bytes before tensor '%s' (data_offsets [%llu, %llu), "
                     "previous tensor ends at %llu)",
                     f->path, (unsigned long long)(b - prev_end), t->name, (unsigned long long)b,
                     (unsigned long long)e, (unsigned long long)prev_end);
        prev_end = e;
    }
    if (prev_end > dlen)
        QS_THROW(err, QS_ERR_INPUT,
                 "%s: file is truncated: tensors need %llu data bytes but the file holds %llu",
                 f->path, (unsigned long long)prev_end, (unsigned long long)dlen);
    if (prev_end < dlen)
        QS_THROW(err, QS_ERR_INPUT,
                 "%s: %llu trailing bytes after the last tensor (data ends at %llu of %llu)",
                 f->path, (unsigned long long)(dlen - prev_end), (unsigned long long)prev_end,
                 (unsigned long long)dlen);

    /* absolute offsets, data pointers and the name index */
    for (int64_t i = 0; i < n; ++i) {
        qs_st_tensor *t = &f->tensors[i];
        t->offset += 8 + hlen;
        t->data = f->map + t->offset;
        names[i] = (name_ix){t->name, i};
    }
    qsort(names, (size_t)n, sizeof(name_ix), cmp_name_ix);
    for (int64_t i = 0; i < n; ++i) f->by_name[i] = names[i].ix;
    f->header_len = hlen;
done:
    free(text);
    free(names);
    cJSON_Delete(root);
    return st;
}

qs_status qs_st_open(qs_st_file *f, const char *path, qs_err *err) {
    qs_status st = QS_OK;
    int fd = -1;
    memset(f, 0, sizeof(*f));
    f->path = strdup(path);
    if (!f->path) QS_THROW(err, QS_ERR_RUNTIME, "out of memory");
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        QS_THROW(err, (e == ENOMEM || e == EMFILE || e == ENFILE) ? QS_ERR_RUNTIME : QS_ERR_INPUT,
                 "%s: cannot open: %s", path, strerror(e));
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0)
        QS_THROW(err, QS_ERR_RUNTIME, "%s: cannot stat: %s", path, strerror(errno));
    if (!S_ISREG(sb.st_mode)) QS_THROW(err, QS_ERR_INPUT, "%s: not a regular file", path);
    f->size = (uint64_t)sb.st_size;
    if (f->size == 0) QS_THROW(err, QS_ERR_INPUT, "%s: empty file (0 bytes)", path);
    if (f->size < 8)
        QS_THROW(err, QS_ERR_INPUT,
                 "%s: file is %llu bytes, too short for the 8-byte header length (truncated)",
                 path, (unsigned long long)f->size);
    void *m = mmap(NULL, (size_t)f->size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (m == MAP_FAILED)
        QS_THROW(err, QS_ERR_RUNTIME, "%s: mmap of %llu bytes failed: %s", path,
                 (unsigned long long)f->size, strerror(errno));
    f->map = m;
    uint64_t hlen = 0;
    for (int b = 0; b < 8; ++b) hlen |= (uint64_t)f->map[b] << (8 * b);
    if (hlen > ST_HEADER_MAX)
        QS_THROW(err, QS_ERR_INPUT, "%s: header length %llu exceeds the %llu-byte limit", path,
                 (unsigned long long)hlen, ST_HEADER_MAX);
    if (hlen > f->size - 8)
        QS_THROW(err, QS_ERR_INPUT, "%s: header length %llu exceeds the file size %llu - 8",
                 path, (unsigned long long)hlen, (unsigned long long)f->size);
    QS_CHECK(parse_header(f, hlen, err));
done:
    if (fd >= 0) close(fd);
    if (st != QS_OK) qs_st_close(f);
    return st;
}

void qs_st_close(qs_st_file *f) {
    if (!f) return;
    if (f->map) munmap(f->map, (size_t)f->size);
    for (int64_t i = 0; f->tensors && i < f->ntensors; ++i) free(f->tensors[i].name);
    for (int64_t i = 0; i < f->nmeta; ++i) {
        free(f->meta_keys[i]);
        free(f->meta_values[i]);
    }
    free(f->meta_keys);
    free(f->meta_values);
    free(f->tensors);
    free(f->by_name);
    free(f->path);
    memset(f, 0, sizeof(*f));
}

const qs_st_tensor *qs_st_find(const qs_st_file *f, const char *name) {
    int64_t lo = 0, hi = f->ntensors;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        const qs_st_tensor *t = &f->tensors[f->by_name[mid]];
        int c = strcmp(t->name, name);
        if (c == 0) return t;
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

/* The first element of out (count,) that is NaN or infinite; -1 when all are finite. Only
 * called after the conversion loop saw a non-finite exponent. */
static int64_t first_non_finite(const float *out, int64_t count) {
    for (int64_t i = 0; i < count; ++i)
        if (!isfinite(out[i])) return i;
    return -1;
}

qs_status qs_st_read_f32(const qs_st_tensor *t, int64_t start, int64_t count, float *out,
                         qs_err *err) {
    int64_t n = qs_st_numel(t);
    if (start < 0 || count < 0 || start > n || count > n - start)
        return QS_FAIL(err, QS_ERR_INTERNAL,
                       "internal error: read of [%lld, %lld) from tensor '%s' of %lld elements",
                       (long long)start, (long long)(start + count), t->name, (long long)n);
    const unsigned char *p = t->data + (uint64_t)start * qs_dtype_size(t->dtype);
    /* the non-finite check rides on the conversion (an all-ones exponent), no second pass */
    unsigned bad = 0;
    switch (t->dtype) {
    case QS_DTYPE_F32:
        for (int64_t i = 0; i < count; ++i, p += 4) {
            uint32_t u = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                         (uint32_t)p[3] << 24;
            bad |= (u & 0x7F800000u) == 0x7F800000u;
            out[i] = qs_f32_from_bits(u);
        }
        break;
    case QS_DTYPE_F16:
        for (int64_t i = 0; i < count; ++i, p += 2) {
            uint16_t u = (uint16_t)(p[0] | p[1] << 8);
            bad |= (u & 0x7C00u) == 0x7C00u;
            out[i] = qs_f16_to_f32(u);
        }
        break;
    case QS_DTYPE_BF16:
        for (int64_t i = 0; i < count; ++i, p += 2) {
            uint16_t u = (uint16_t)(p[0] | p[1] << 8);
            bad |= (u & 0x7F80u) == 0x7F80u;
            out[i] = qs_bf16_to_f32(u);
        }
        break;
    case QS_DTYPE_I32:
    case QS_DTYPE_I64:
    default:
        return QS_FAIL(err, QS_ERR_INPUT, "tensor '%s' has dtype %s, not a float type", t->name,
                       qs_dtype_name(t->dtype));
    }
    if (bad) {
        const int64_t i = first_non_finite(out, count), at = start + i;
        const int64_t cols = t->ndim == 2 ? t->shape[1] : 0;
        if (cols > 0)
            return QS_FAIL(err, QS_ERR_INPUT,
                           "tensor '%s' holds a non-finite value (%s) at (%lld, %lld)", t->name,
                           isnan(out[i]) ? "NaN" : "Inf", (long long)(at / cols),
                           (long long)(at % cols));
        return QS_FAIL(err, QS_ERR_INPUT, "tensor '%s' holds a non-finite value (%s) at %lld",
                       t->name, isnan(out[i]) ? "NaN" : "Inf", (long long)at);
    }
    return QS_OK;
}

/* ---- checkpoints ---- */

static char *path_join(const char *dir, const char *name) {
    size_t a = strlen(dir), b = strlen(name);
    int slash = a > 0 && dir[a - 1] != '/';
    char *p = malloc(a + (size_t)slash + b + 1);
    if (!p) return NULL;
    memcpy(p, dir, a);
    if (slash) p[a] = '/';
    memcpy(p + a + slash, name, b + 1);
    return p;
}

/* The last path component, for naming a second file in a message. */
static const char *base_name(const char *path) {
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

static int file_exists(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 || errno != ENOENT;
}

/* A shard name must be a plain file name inside the model directory. */
static qs_status check_shard_name(const char *index, const char *tensor, const char *s,
                                  qs_err *err) {
    if (s[0] == '\0')
        return QS_FAIL(err, QS_ERR_INPUT, "%s: weight_map entry '%s' names an empty file name",
                       index, tensor);
    if (s[0] == '/')
        return QS_FAIL(err, QS_ERR_INPUT,
                       "%s: weight_map entry '%s' names '%s', an absolute path (shards must be "
                       "plain file names inside the model directory)",
                       index, tensor, s);
    if (strcmp(s, ".") == 0 || strcmp(s, "..") == 0 || strncmp(s, "../", 3) == 0 ||
        strstr(s, "/../") || (strlen(s) >= 3 && strcmp(s + strlen(s) - 3, "/..") == 0))
        return QS_FAIL(err, QS_ERR_INPUT,
                       "%s: weight_map entry '%s' names '%s', which uses '..' (shards must be "
                       "plain file names inside the model directory)",
                       index, tensor, s);
    if (strchr(s, '/') || strchr(s, '\\'))
        return QS_FAIL(err, QS_ERR_INPUT,
                       "%s: weight_map entry '%s' names '%s', a path with a directory (shards "
                       "must be plain file names inside the model directory)",
                       index, tensor, s);
    return QS_OK;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int cmp_entry(const void *a, const void *b) {
    const struct qs_ckpt_entry *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    if (c) return c;
    return (x->shard > y->shard) - (x->shard < y->shard);
}

/* bsearch comparator of a name (the key) with an element of a name-sorted table whose first
 * member is its name (name_ix, qs_ckpt_entry). */
static int cmp_key_name(const void *key, const void *elem) {
    return strcmp((const char *)key, *(const char *const *)elem);
}

static const struct qs_ckpt_entry *find_entry(const qs_checkpoint *ck, const char *name) {
    return ck->nentries ? bsearch(name, ck->entries, (size_t)ck->nentries,
                                  sizeof(*ck->entries), cmp_key_name)
                        : NULL;
}

/* Builds ck->entries over all opened shards; a tensor in two shards is an error. */
static qs_status build_entries(qs_checkpoint *ck, qs_err *err) {
    qs_status st = QS_OK;
    int64_t n = 0;
    for (int s = 0; s < ck->nshards; ++s) n += ck->shards[s].ntensors;
    ck->entries = qs_calloc((size_t)n, sizeof(*ck->entries), err, "checkpoint name table");
    if (!ck->entries) QS_THROW(err, QS_ERR_RUNTIME, "out of memory");
    for (int s = 0; s < ck->nshards; ++s)
        for (int64_t i = 0; i < ck->shards[s].ntensors; ++i)
            ck->entries[ck->nentries++] =
                (struct qs_ckpt_entry){ck->shards[s].tensors[i].name, s, i};
    qsort(ck->entries, (size_t)n, sizeof(*ck->entries), cmp_entry);
    for (int64_t i = 1; i < n; ++i)
        if (strcmp(ck->entries[i - 1].name, ck->entries[i].name) == 0)
            QS_THROW(err, QS_ERR_INPUT, "%s: tensor '%s' appears in two shards, %s and %s",
                     ck->index_path ? ck->index_path : ck->dir, ck->entries[i].name,
                     base_name(ck->shards[ck->entries[i - 1].shard].path),
                     base_name(ck->shards[ck->entries[i].shard].path));
done:
    return st;
}

static qs_status open_index(qs_checkpoint *ck, qs_err *err) {
    qs_status st = QS_OK;
    char *text = NULL;
    size_t len = 0;
    cJSON *root = NULL;
    const char **files = NULL, **uniq = NULL;
    name_ix *wm = NULL;
    const char *ip = ck->index_path;
    const char *end_parse = NULL;

    QS_CHECK(qs_read_file_max(ip, INDEX_MAX_BYTES, &text, &len, err));
    /* length includes the terminating NUL so require_null_terminated can see it */
    root = memchr(text, '\0', len) ? NULL : cJSON_ParseWithLengthOpts(text, len + 1, &end_parse, 1);
    if (!root)
        QS_THROW(err, QS_ERR_INPUT, "%s: invalid JSON (near byte %ld)", ip,
                 end_parse ? (long)(end_parse - text) : 0L);
    if (!cJSON_IsObject(root)) QS_THROW(err, QS_ERR_INPUT, "%s: not a JSON object", ip);
    const cJSON *map = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
    if (!map) QS_THROW(err, QS_ERR_INPUT, "%s: key 'weight_map' is missing", ip);
    if (!cJSON_IsObject(map))
        QS_THROW(err, QS_ERR_INPUT, "%s: key 'weight_map' is not a JSON object", ip);
    int n = cJSON_GetArraySize(map);
    if (n == 0) QS_THROW(err, QS_ERR_INPUT, "%s: weight_map is empty", ip);
    files = qs_calloc((size_t)n, sizeof(char *), err, "index file list");
    wm = qs_calloc((size_t)n, sizeof(name_ix), err, "index weight map");
    if (!files || !wm) QS_THROW(err, QS_ERR_RUNTIME, "out of memory");
    int k = 0;
    for (const cJSON *c = map->child; c; c = c->next, ++k) {
        if (!cJSON_IsString(c))
            QS_THROW(err, QS_ERR_INPUT, "%s: weight_map entry '%s' is not a file name string",
                     ip, c->string);
        QS_CHECK(check_shard_name(ip, c->string, c->valuestring, err));
        files[k] = c->valuestring;
        wm[k] = (name_ix){c->string, k};
    }
    qsort(wm, (size_t)n, sizeof(name_ix), cmp_name_ix);
    for (int i = 1; i < n; ++i)
        if (strcmp(wm[i - 1].name, wm[i].name) == 0)
            QS_THROW(err, QS_ERR_INPUT, "%s: weight_map has a duplicate tensor name '%s'", ip,
                     wm[i].name);

    /* unique shard names, sorted; each opened once */
    uniq = qs_calloc((size_t)n, sizeof(char *), err, "index file list");
    if (!uniq) QS_THROW(err, QS_ERR_RUNTIME, "out of memory");
    memcpy(uniq, files, (size_t)n * sizeof(char *));
    qsort(uniq, (size_t)n, sizeof(char *), cmp_str);
    int nu = 0;
    for (int i = 0; i < n; ++i)
        if (nu == 0 || strcmp(uniq[nu - 1], uniq[i]) != 0) uniq[nu++] = uniq[i];
    ck->shards = qs_calloc((size_t)nu, sizeof(qs_st_file), err, "checkpoint shards");
    if (!ck->shards) QS_THROW(err, QS_ERR_RUNTIME, "out of memory");
    for (int i = 0; i < nu; ++i) {
        char *p = path_join(ck->dir, uniq[i]);
        if (!p) QS_THROW(err, QS_ERR_RUNTIME, "out of memory");
        st = qs_st_open(&ck->shards[i], p, err);
        free(p);
        if (st != QS_OK) goto done;
        ck->nshards = i + 1;
    }
    QS_CHECK(build_entries(ck, err));

    /* weight_map -> shard: every listed tensor is in the shard it names */
    for (int i = 0; i < n; ++i) {
        const char *name = wm[i].name, *file = files[wm[i].ix];
        const char **hit = bsearch(&file, uniq, (size_t)nu, sizeof(char *), cmp_str);
        QS_ASSERT(err, hit != NULL);
        const qs_st_file *sf = &ck->shards[hit - uniq];
        const struct qs_ckpt_entry *e = find_entry(ck, name);
        if (!e || &ck->shards[e->shard] != sf)
            QS_THROW(err, QS_ERR_INPUT,
                     "%s: tensor '%s' is listed in the weight_map of %s but absent from this "
                     "shard%s%s",
                     sf->path, name, base_name(ip), e ? "; it is in " : "",
                     e ? base_name(ck->shards[e->shard].path) : "");
    }
    /* shard -> weight_map: every tensor of a shard is listed */
    if (ck->nentries != n) {
        for (int64_t i = 0; i < ck->nentries; ++i)
            if (!bsearch(ck->entries[i].name, wm, (size_t)n, sizeof(name_ix), cmp_key_name))
                QS_THROW(err, QS_ERR_INPUT, "%s: tensor '%s' is not in the weight_map of %s",
                         ck->shards[ck->entries[i].shard].path, ck->entries[i].name,
                         base_name(ip));
        QS_THROW(err, QS_ERR_INTERNAL, "internal error: weight_map count mismatch");
    }
done:
    free(uniq);
    free(files);
    free(wm);
    cJSON_Delete(root);
    free(text);
    return st;
}

qs_status qs_ckpt_open(qs_checkpoint *ck, const char *dir, qs_err *err) {
    qs_status st = QS_OK;
    char *single = NULL;
    memset(ck, 0, sizeof(*ck));
    ck->dir = strdup(dir);
    single = path_join(dir, "model.safetensors");
    ck->index_path = path_join(dir, "model.safetensors.index.json");
    if (!ck->dir || !single || !ck->index_path) QS_THROW(err, QS_ERR_RUNTIME, "out of memory");
    struct stat sb;
    if (stat(dir, &sb) != 0)
        QS_THROW(err, QS_ERR_INPUT, "%s: cannot open model directory: %s", dir, strerror(errno));
    if (!S_ISDIR(sb.st_mode)) QS_THROW(err, QS_ERR_INPUT, "%s: not a directory", dir);
    if (file_exists(single)) {
        free(ck->index_path);
        ck->index_path = NULL;
        ck->shards = qs_calloc(1, sizeof(qs_st_file), err, "checkpoint shards");
        if (!ck->shards) QS_THROW(err, QS_ERR_RUNTIME, "out of memory");
        QS_CHECK(qs_st_open(&ck->shards[0], single, err));
        ck->nshards = 1;
        QS_CHECK(build_entries(ck, err));
    } else if (file_exists(ck->index_path)) {
        QS_CHECK(open_index(ck, err));
    } else {
        QS_THROW(err, QS_ERR_INPUT,
                 "%s: no model.safetensors or model.safetensors.index.json in the directory",
                 dir);
    }
done:
    free(single);
    if (st != QS_OK) qs_ckpt_close(ck);
    return st;
}

void qs_ckpt_close(qs_checkpoint *ck) {
    if (!ck) return;
    for (int i = 0; ck->shards && i < ck->nshards; ++i) qs_st_close(&ck->shards[i]);
    free(ck->shards);
    free(ck->entries);
    free(ck->index_path);
    free(ck->dir);
    memset(ck, 0, sizeof(*ck));
}

const qs_st_tensor *qs_ckpt_find(const qs_checkpoint *ck, const char *name) {
    const struct qs_ckpt_entry *e = find_entry(ck, name);
    return e ? &ck->shards[e->shard].tensors[e->index] : NULL;
}

qs_status qs_ckpt_read_f32(const qs_checkpoint *ck, const qs_st_tensor *t, int64_t start,
                           int64_t count, float *out, qs_err *err) {
    qs_err e = {0};
    const qs_status st = qs_st_read_f32(t, start, count, out, &e);
    if (st == QS_OK) return QS_OK;
    const char *file = st == QS_ERR_INPUT ? qs_ckpt_file_of(ck, t->name) : NULL;
    if (file) return QS_FAIL(err, st, "%s: %s", file, e.msg);
    return qs_err_set_at(err, st, e.file, e.line, "%s", e.msg);
}

const char *qs_ckpt_file_of(const qs_checkpoint *ck, const char *name) {
    const struct qs_ckpt_entry *e = find_entry(ck, name);
    return e ? ck->shards[e->shard].path : NULL;
}
