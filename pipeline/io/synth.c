/* synth.c: deterministic synthetic Hugging Face models (config.json + safetensors shards)
 * and token files, generated block by block while writing (see synth.h). */
#include "synth.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include "half.h"

#define SYNTH_BLOCK 65536           /* elements generated per block */
#define SYNTH_NAME_MAX 96
#define SYNTH_GOLDEN 0x9E3779B97F4A7C15ull
#define SYNTH_MAX_DIM (1ll << 31)

/* ---- counter-based generator ---- */

static uint64_t mix64(uint64_t z) {
    z += SYNTH_GOLDEN;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint64_t fnv1a(const char *s) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (; *s; ++s) h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
    return h;
}

/* Approximately standard normal from one 64-bit draw: Irwin-Hall sum of four 16-bit
 * uniforms, centred and scaled to unit variance. Only + and *: same bits everywhere. */
static double normal_of(uint64_t u) {
    double s = 0.0;
    for (int i = 0; i < 4; ++i) {
        s += ((double)(u & 0xffffu) + 0.5) * (1.0 / 65536.0);
        u >>= 16;
    }
    return (s - 2.0) * 1.7320508075688772;
}

/* ---- tensor table ---- */

typedef enum synth_kind {
    SYNTH_EMBED = 0,  /* (vocab, hidden), std 1 */
    SYNTH_LINEAR = 1, /* (d_out, d_in), std 1/sqrt(d_in), ~1% input columns x8 */
    SYNTH_NORM = 2,   /* (hidden,), 1 + 0.05 n */
    SYNTH_BIAS = 3    /* (d,), 0.02 n */
} synth_kind;

typedef struct synth_tensor {
    char name[SYNTH_NAME_MAX];
    synth_kind kind;
    int ndim;
    int64_t shape[2];
    int64_t numel;
    uint64_t nbytes;
    int shard;
} synth_tensor;

typedef struct synth_dims {
    int64_t layers, hidden, inter, heads, kv, hd, vocab, shards;
} synth_dims;

static const char *arch_class(qs_arch a) {
    return a == QS_ARCH_MISTRAL ? "MistralForCausalLM"
         : a == QS_ARCH_QWEN2   ? "Qwen2ForCausalLM"
                                : "LlamaForCausalLM";
}

static const char *arch_type(qs_arch a) {
    return a == QS_ARCH_MISTRAL ? "mistral" : a == QS_ARCH_QWEN2 ? "qwen2" : "llama";
}

static size_t dtype_bytes(qs_dtype d) { return d == QS_DTYPE_F32 ? 4 : 2; }

static const char *dtype_st_name(qs_dtype d) {
    return d == QS_DTYPE_F32 ? "F32" : d == QS_DTYPE_F16 ? "F16" : "BF16";
}

static const char *dtype_torch_name(qs_dtype d) {
    return d == QS_DTYPE_F32 ? "float32" : d == QS_DTYPE_F16 ? "float16" : "bfloat16";
}

void qs_synth_opts_default(qs_synth_opts *o) {
    memset(o, 0, sizeof *o);
    o->arch = QS_ARCH_LLAMA;
    o->layers = 2;
    o->hidden = 256;
    o->vocab = 512;
    o->shards = 1;
    o->dtype = QS_DTYPE_BF16;
}

qs_status qs_synth_parse_arch(const char *s, qs_arch *out) {
    if (!s) return QS_ERR_INPUT;
    if (strcmp(s, "llama") == 0) *out = QS_ARCH_LLAMA;
    else if (strcmp(s, "mistral") == 0) *out = QS_ARCH_MISTRAL;
    else if (strcmp(s, "qwen2") == 0) *out = QS_ARCH_QWEN2;
    else return QS_ERR_INPUT;
    return QS_OK;
}

qs_status qs_synth_parse_dtype(const char *s, qs_dtype *out) {
    if (!s) return QS_ERR_INPUT;
    if (strcmp(s, "bf16") == 0) *out = QS_DTYPE_BF16;
    else if (strcmp(s, "f16") == 0) *out = QS_DTYPE_F16;
    else if (strcmp(s, "f32") == 0) *out = QS_DTYPE_F32;
    else return QS_ERR_INPUT;
    return QS_OK;
}

/* Resolves the derived sizes and checks consistency. */
static qs_status resolve_dims(const qs_synth_opts *o, synth_dims *d, qs_err *err) {
    memset(d, 0, sizeof *d);
    if (o->arch != QS_ARCH_LLAMA && o->arch != QS_ARCH_MISTRAL && o->arch != QS_ARCH_QWEN2)
        return QS_FAIL(err, QS_ERR_INPUT, "synth-model: unknown architecture %d", (int)o->arch);
    if (o->dtype != QS_DTYPE_F32 && o->dtype != QS_DTYPE_F16 && o->dtype != QS_DTYPE_BF16)
        return QS_FAIL(err, QS_ERR_INPUT, "synth-model: dtype must be bf16, f16 or f32");
#define SYNTH_RANGE(v, name, lo)                                                          \
    if ((v) < (lo) || (v) > SYNTH_MAX_DIM)                                                \
        return QS_FAIL(err, QS_ERR_INPUT, "synth-model: %s must be in [%lld, %lld], got %lld", \
                       name, (long long)(lo), (long long)SYNTH_MAX_DIM, (long long)(v));
    SYNTH_RANGE(o->layers, "layers", 1)
    SYNTH_RANGE(o->hidden, "hidden", 1)
    SYNTH_RANGE(o->vocab, "vocab", 1)
    SYNTH_RANGE(o->shards, "shards", 1)
    SYNTH_RANGE(o->intermediate, "intermediate", 0)
    SYNTH_RANGE(o->heads, "heads", 0)
    SYNTH_RANGE(o->kv_heads, "kv_heads", 0)
    SYNTH_RANGE(o->head_dim, "head_dim", 0)
    SYNTH_RANGE(o->sliding_window, "sliding_window", 0)
#undef SYNTH_RANGE
    if (o->seed < 0)
        return QS_FAIL(err, QS_ERR_INPUT, "synth-model: seed must be >= 0, got %lld", o->seed);
    d->layers = o->layers;
    d->hidden = o->hidden;
    d->vocab = o->vocab;
    d->shards = o->shards;
    d->inter = o->intermediate ? o->intermediate : ((8 * o->hidden + 191) / 192) * 64;
    d->heads = o->heads ? o->heads : (o->hidden / 64 > 0 ? o->hidden / 64 : 1);
    d->kv = o->kv_heads ? o->kv_heads : d->heads;
    if (d->heads % d->kv != 0)
        return QS_FAIL(err, QS_ERR_INPUT,
                       "synth-model: heads (%lld) must be a multiple of kv_heads (%lld)",
                       (long long)d->heads, (long long)d->kv);
    if (o->head_dim) {
        d->hd = o->head_dim;
    } else {
        if (d->hidden % d->heads != 0)
            return QS_FAIL(err, QS_ERR_INPUT,
                           "synth-model: hidden (%lld) is not a multiple of heads (%lld); "
                           "give head_dim", (long long)d->hidden, (long long)d->heads);
        d->hd = d->hidden / d->heads;
    }
    if (d->heads * d->hd > SYNTH_MAX_DIM)
        return QS_FAIL(err, QS_ERR_INPUT, "synth-model: heads x head_dim too large");
    if (o->sliding_window && o->arch != QS_ARCH_MISTRAL)
        return QS_FAIL(err, QS_ERR_INPUT, "synth-model: sliding_window is for mistral only");
    return QS_OK;
}

static void add_tensor(synth_tensor *t, int64_t *n, synth_kind kind, int64_t rows,
                       int64_t cols, size_t esize, const char *fmt, ...) {
    synth_tensor *x = &t[*n];
    memset(x, 0, sizeof *x);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(x->name, sizeof x->name, fmt, ap);
    va_end(ap);
    x->kind = kind;
    x->ndim = cols > 0 ? 2 : 1;
    x->shape[0] = rows;
    x->shape[1] = cols;
    x->numel = cols > 0 ? rows * cols : rows;
    x->nbytes = (uint64_t)x->numel * esize;
    ++*n;
}

/* Builds the tensor table in file order (caller frees *out). */
static qs_status build_table(const qs_synth_opts *o, const synth_dims *d, synth_tensor **out,
                             int64_t *count, qs_err *err) {
    *out = NULL;
    *count = 0;
    int64_t per_layer = 9 + (o->arch == QS_ARCH_QWEN2 ? 3 : 0);
    int64_t cap = d->layers * per_layer + 3;
    synth_tensor *t = qs_calloc((size_t)cap, sizeof *t, err, "synth tensor table");
    if (!t) return err->code;
    size_t es = dtype_bytes(o->dtype);
    int64_t n = 0, q = d->heads * d->hd, kv = d->kv * d->hd, h = d->hidden;
    add_tensor(t, &n, SYNTH_EMBED, d->vocab, h, es, "model.embed_tokens.weight");
    for (int64_t l = 0; l < d->layers; ++l) {
        long long L = (long long)l;
        add_tensor(t, &n, SYNTH_NORM, h, 0, es, "model.layers.%lld.input_layernorm.weight", L);
        add_tensor(t, &n, SYNTH_LINEAR, q, h, es, "model.layers.%lld.self_attn.q_proj.weight", L);
        add_tensor(t, &n, SYNTH_LINEAR, kv, h, es, "model.layers.%lld.self_attn.k_proj.weight", L);
        add_tensor(t, &n, SYNTH_LINEAR, kv, h, es, "model.layers.%lld.self_attn.v_proj.weight", L);
        if (o->arch == QS_ARCH_QWEN2) {
            add_tensor(t, &n, SYNTH_BIAS, q, 0, es, "model.layers.%lld.self_attn.q_proj.bias", L);
            add_tensor(t, &n, SYNTH_BIAS, kv, 0, es, "model.layers.%lld.self_attn.k_proj.bias", L);
            add_tensor(t, &n, SYNTH_BIAS, kv, 0, es, "model.layers.%lld.self_attn.v_proj.bias", L);
        }
        add_tensor(t, &n, SYNTH_LINEAR, h, q, es, "model.layers.%lld.self_attn.o_proj.weight", L);
        add_tensor(t, &n, SYNTH_NORM, h, 0, es,
                   "model.layers.%lld.post_attention_layernorm.weight", L);
        add_tensor(t, &n, SYNTH_LINEAR, d->inter, h, es, "model.layers.%lld.mlp.gate_proj.weight", L);
        add_tensor(t, &n, SYNTH_LINEAR, d->inter, h, es, "model.layers.%lld.mlp.up_proj.weight", L);
        add_tensor(t, &n, SYNTH_LINEAR, h, d->inter, es, "model.layers.%lld.mlp.down_proj.weight", L);
    }
    add_tensor(t, &n, SYNTH_NORM, h, 0, es, "model.norm.weight");
    if (!o->tie_embeddings) add_tensor(t, &n, SYNTH_LINEAR, d->vocab, h, es, "lm_head.weight");
    *out = t;
    *count = n;
    return QS_OK;
}

/* Assigns contiguous groups of tensors to shards with roughly equal bytes; every shard
 * gets at least one tensor. */
static qs_status assign_shards(synth_tensor *t, int64_t n, int64_t shards, qs_err *err) {
    if (shards > n)
        return QS_FAIL(err, QS_ERR_INPUT, "synth-model: %lld shards for only %lld tensors",
                       (long long)shards, (long long)n);
    uint64_t remaining = 0;
    for (int64_t i = 0; i < n; ++i) remaining += t[i].nbytes;
    int64_t i = 0;
    for (int64_t k = 0; k < shards; ++k) {
        int64_t left = shards - k;                 /* shards still to fill, including k */
        uint64_t target = remaining / (uint64_t)left;
        uint64_t taken = 0;
        int64_t first = i;
        while (i < n) {
            if (k == shards - 1) { /* the last shard takes the rest */
                taken += t[i].nbytes;
                t[i++].shard = (int)k;
                continue;
            }
            if (n - i <= left - 1) break;          /* leave one tensor per later shard */
            if (i > first && taken + t[i].nbytes / 2 > target) break;
            taken += t[i].nbytes;
            t[i++].shard = (int)k;
        }
        remaining -= taken;
    }
    return QS_OK;
}

/* Value of element idx of tensor t (key = per-tensor stream). */
static float tensor_value(const synth_tensor *t, uint64_t key, uint64_t okey, double scale,
                          int64_t idx) {
    double z = normal_of(mix64(key + (uint64_t)(idx + 1) * SYNTH_GOLDEN));
    switch (t->kind) {
    case SYNTH_EMBED:
        return (float)z;
    case SYNTH_NORM:
        return (float)(1.0 + 0.05 * z);
    case SYNTH_BIAS:
        return (float)(0.02 * z);
    case SYNTH_LINEAR:
    default: {
        uint64_t cols = (uint64_t)t->shape[1];
        uint64_t col = (uint64_t)idx % cols;
        int outlier = (mix64(okey ^ col) % 100u == 0) || col == okey % cols;
        return (float)(z * scale * (outlier ? 8.0 : 1.0));
    }
    }
}

/* ---- files: temp name, fsync, rename ---- */

typedef struct synth_out {
    int fd;
    char *path;   /* final path (owned) */
    char *tmp;    /* temp path (owned) */
} synth_out;

static char *join_path(const char *dir, const char *name, qs_err *err) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = qs_malloc(n, err, "path");
    if (p) snprintf(p, n, "%s/%s", dir, name);
    return p;
}

static qs_status out_open(synth_out *o, const char *dir, const char *name, qs_err *err) {
    memset(o, 0, sizeof *o);
    o->fd = -1;
    o->path = join_path(dir, name, err);
    if (!o->path) return err->code;
    size_t n = strlen(o->path) + 32;
    o->tmp = qs_malloc(n, err, "path");
    if (!o->tmp) return err->code;
    snprintf(o->tmp, n, "%s.tmp.%ld", o->path, (long)getpid());
    o->fd = open(o->tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (o->fd < 0)
        return QS_FAIL(err, QS_ERR_RUNTIME, "%s: cannot create: %s", o->path, strerror(errno));
    return QS_OK;
}

static qs_status out_write(synth_out *o, const void *buf, size_t n, qs_err *err) {
    const unsigned char *p = buf;
    while (n > 0) {
        ssize_t w = write(o->fd, p, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            return QS_FAIL(err, QS_ERR_RUNTIME, "%s: cannot write: %s", o->path, strerror(errno));
        }
        p += w;
        n -= (size_t)w;
    }
    return QS_OK;
}

/* Fsyncs, closes and renames into place. */
static qs_status out_commit(synth_out *o, qs_err *err) {
    if (fsync(o->fd) != 0)
        return QS_FAIL(err, QS_ERR_RUNTIME, "%s: cannot sync: %s", o->path, strerror(errno));
    int fd = o->fd;
    o->fd = -1;
    if (close(fd) != 0)
        return QS_FAIL(err, QS_ERR_RUNTIME, "%s: cannot close: %s", o->path, strerror(errno));
    if (rename(o->tmp, o->path) != 0)
        return QS_FAIL(err, QS_ERR_RUNTIME, "%s: cannot rename from temp file: %s", o->path,
                       strerror(errno));
    free(o->tmp);
    o->tmp = NULL;
    return QS_OK;
}

/* Releases; removes the temp file if not committed. Safe on a zeroed/failed struct. */
static void out_release(synth_out *o) {
    if (o->fd >= 0) close(o->fd);
    if (o->tmp) unlink(o->tmp);
    free(o->tmp);
    free(o->path);
    memset(o, 0, sizeof *o);
    o->fd = -1;
}

static void sync_dir(const char *dir) {
    int fd = open(dir, O_RDONLY);
    if (fd >= 0) {
        (void)fsync(fd);
        close(fd);
    }
}

/* mkdir -p */
static qs_status make_dirs(const char *dir, qs_err *err) {
    qs_status st = QS_OK;
    size_t n = strlen(dir);
    char *p = qs_malloc(n + 1, err, "path");
    if (!p) return err->code;
    memcpy(p, dir, n + 1);
    for (size_t i = 1; i <= n; ++i) {
        if (p[i] != '/' && p[i] != '\0') continue;
        char c = p[i];
        p[i] = '\0';
        if (mkdir(p, 0755) != 0 && errno != EEXIST)
            QS_THROW(err, QS_ERR_RUNTIME, "%s: cannot create directory: %s", p, strerror(errno));
        p[i] = c;
    }
    struct stat sb;
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode))
        QS_THROW(err, QS_ERR_RUNTIME, "%s: cannot create directory: %s", dir,
                 stat(dir, &sb) != 0 ? strerror(errno) : "not a directory");
done:
    free(p);
    return st;
}

/* ---- growable text buffer ---- */

typedef struct synth_buf {
    char *p;
    size_t len, cap;
} synth_buf;

static qs_status buf_printf(synth_buf *b, qs_err *err, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

static qs_status buf_printf(synth_buf *b, qs_err *err, const char *fmt, ...) {
    for (;;) {
        size_t room = b->cap - b->len;
        va_list ap;
        va_start(ap, fmt);
        int k = vsnprintf(b->p ? b->p + b->len : NULL, b->p ? room : 0, fmt, ap);
        va_end(ap);
        if (k < 0) return QS_FAIL(err, QS_ERR_INTERNAL, "internal error: vsnprintf failed");
        if (b->p && (size_t)k < room) {
            b->len += (size_t)k;
            return QS_OK;
        }
        size_t cap = b->cap ? b->cap : 4096;
        while (cap - b->len <= (size_t)k) cap *= 2;
        char *q = realloc(b->p, cap);
        if (!q) return QS_FAIL(err, QS_ERR_RUNTIME, "out of memory (%zu bytes for a header)", cap);
        b->p = q;
        b->cap = cap;
    }
}

/* ---- the safetensors writer ---- */

/* Writes tensors [first, first + count) of t to dir/name as one safetensors file. */
static qs_status write_st_file(const qs_synth_opts *o, const synth_tensor *t, int64_t first,
                               int64_t count, const char *dir, const char *name, qs_err *err) {
    qs_status st = QS_OK;
    synth_out out;
    synth_buf hdr = {0};
    float *vals = NULL;          /* (SYNTH_BLOCK,) */
    unsigned char *bytes = NULL; /* (SYNTH_BLOCK * esize,) */
    size_t es = dtype_bytes(o->dtype);
    memset(&out, 0, sizeof out);
    out.fd = -1;

    QS_CHECK(buf_printf(&hdr, err, "{\"__metadata__\":{\"format\":\"pt\"}"));
    uint64_t off = 0;
    for (int64_t i = first; i < first + count; ++i) {
        const synth_tensor *x = &t[i];
        QS_CHECK(buf_printf(&hdr, err, ",\"%s\":{\"dtype\":\"%s\",\"shape\":[%lld", x->name,
                            dtype_st_name(o->dtype), (long long)x->shape[0]));
        if (x->ndim == 2) QS_CHECK(buf_printf(&hdr, err, ",%lld", (long long)x->shape[1]));
        QS_CHECK(buf_printf(&hdr, err, "],\"data_offsets\":[%llu,%llu]}",
                            (unsigned long long)off, (unsigned long long)(off + x->nbytes)));
        off += x->nbytes;
    }
    QS_CHECK(buf_printf(&hdr, err, "}"));
    while (hdr.len % 8 != 0) QS_CHECK(buf_printf(&hdr, err, " "));

    vals = qs_malloc(SYNTH_BLOCK * sizeof *vals, err, "synth block");
    bytes = qs_malloc(SYNTH_BLOCK * es, err, "synth block");
    if (!vals || !bytes) {
        st = err->code;
        goto done;
    }
    QS_CHECK(out_open(&out, dir, name, err));
    unsigned char len8[8];
    for (int b = 0; b < 8; ++b) len8[b] = (unsigned char)((uint64_t)hdr.len >> (8 * b));
    QS_CHECK(out_write(&out, len8, 8, err));
    QS_CHECK(out_write(&out, hdr.p, hdr.len, err));

    uint64_t seed = mix64((uint64_t)o->seed ^ 0x73796e74686d646cull);
    for (int64_t i = first; i < first + count; ++i) {
        const synth_tensor *x = &t[i];
        uint64_t key = mix64(seed ^ fnv1a(x->name));
        uint64_t okey = mix64(key ^ 0x6f75746c69657273ull);
        double scale = x->kind == SYNTH_LINEAR ? 1.0 / sqrt((double)x->shape[1]) : 1.0;
        for (int64_t s = 0; s < x->numel; s += SYNTH_BLOCK) {
            int64_t m = x->numel - s < SYNTH_BLOCK ? x->numel - s : SYNTH_BLOCK;
            for (int64_t j = 0; j < m; ++j) vals[j] = tensor_value(x, key, okey, scale, s + j);
            for (int64_t j = 0; j < m; ++j) {
                if (o->dtype == QS_DTYPE_F32) {
                    uint32_t u;
                    memcpy(&u, &vals[j], 4);
                    for (int b = 0; b < 4; ++b) bytes[4 * j + b] = (unsigned char)(u >> (8 * b));
                } else {
                    uint16_t h = o->dtype == QS_DTYPE_F16 ? qs_f32_to_f16(vals[j])
                                                          : qs_f32_to_bf16(vals[j]);
                    bytes[2 * j] = (unsigned char)(h & 0xff);
                    bytes[2 * j + 1] = (unsigned char)(h >> 8);
                }
            }
            QS_CHECK(out_write(&out, bytes, (size_t)m * es, err));
        }
    }
    QS_CHECK(out_commit(&out, err));
done:
    out_release(&out);
    free(hdr.p);
    free(vals);
    free(bytes);
    return st;
}

static qs_status write_text(const char *dir, const char *name, const synth_buf *b, qs_err *err) {
    qs_status st = QS_OK;
    synth_out out;
    memset(&out, 0, sizeof out);
    out.fd = -1;
    QS_CHECK(out_open(&out, dir, name, err));
    QS_CHECK(out_write(&out, b->p, b->len, err));
    QS_CHECK(out_commit(&out, err));
done:
    out_release(&out);
    return st;
}

static qs_status write_config(const qs_synth_opts *o, const synth_dims *d, const char *dir,
                              qs_err *err) {
    qs_status st = QS_OK;
    synth_buf b = {0};
    QS_CHECK(buf_printf(&b, err,
                        "{\n"
                        "  \"architectures\": [\"%s\"],\n"
                        "  \"model_type\": \"%s\",\n"
                        "  \"hidden_act\": \"silu\",\n"
                        "  \"hidden_size\": %lld,\n"
                        "  \"intermediate_size\": %lld,\n"
                        "  \"num_attention_heads\": %lld,\n"
                        "  \"num_key_value_heads\": %lld,\n"
                        "  \"head_dim\": %lld,\n"
                        "  \"num_hidden_layers\": %lld,\n"
                        "  \"rms_norm_eps\": 1e-05,\n"
                        "  \"vocab_size\": %lld,\n"
                        "  \"max_position_embeddings\": 4096,\n"
                        "  \"rope_theta\": 10000.0,\n"
                        "  \"tie_word_embeddings\": %s,\n"
                        "  \"torch_dtype\": \"%s\",\n",
                        arch_class(o->arch), arch_type(o->arch), (long long)d->hidden,
                        (long long)d->inter, (long long)d->heads, (long long)d->kv,
                        (long long)d->hd, (long long)d->layers, (long long)d->vocab,
                        o->tie_embeddings ? "true" : "false", dtype_torch_name(o->dtype)));
    if (o->arch == QS_ARCH_MISTRAL) {
        if (o->sliding_window > 0)
            QS_CHECK(buf_printf(&b, err, "  \"sliding_window\": %lld,\n", o->sliding_window));
        else
            QS_CHECK(buf_printf(&b, err, "  \"sliding_window\": null,\n"));
    }
    if (o->arch == QS_ARCH_QWEN2)
        QS_CHECK(buf_printf(&b, err, "  \"use_sliding_window\": false,\n"));
    else
        QS_CHECK(buf_printf(&b, err, "  \"mlp_bias\": false,\n"));
    QS_CHECK(buf_printf(&b, err, "  \"attention_bias\": false,\n  \"bos_token_id\": 1,\n"
                                 "  \"eos_token_id\": 2\n}\n"));
    QS_CHECK(write_text(dir, "config.json", &b, err));
done:
    free(b.p);
    return st;
}

static void shard_name(char *buf, size_t n, int64_t k, int64_t shards) {
    snprintf(buf, n, "model-%05lld-of-%05lld.safetensors", (long long)(k + 1), (long long)shards);
}

static qs_status write_index(const synth_tensor *t, int64_t n, int64_t shards, const char *dir,
                             qs_err *err) {
    qs_status st = QS_OK;
    synth_buf b = {0};
    uint64_t total = 0;
    char fname[64];
    for (int64_t i = 0; i < n; ++i) total += t[i].nbytes;
    QS_CHECK(buf_printf(&b, err, "{\n  \"metadata\": {\"total_size\": %llu},\n  \"weight_map\": {",
                        (unsigned long long)total));
    for (int64_t i = 0; i < n; ++i) {
        shard_name(fname, sizeof fname, t[i].shard, shards);
        QS_CHECK(buf_printf(&b, err, "%s\n    \"%s\": \"%s\"", i ? "," : "", t[i].name, fname));
    }
    QS_CHECK(buf_printf(&b, err, "\n  }\n}\n"));
    QS_CHECK(write_text(dir, "model.safetensors.index.json", &b, err));
done:
    free(b.p);
    return st;
}

qs_status qs_synth_write(const qs_synth_opts *o, const char *out_dir, qs_err *err) {
    qs_status st = QS_OK;
    synth_tensor *t = NULL;
    char *stale = NULL;
    int64_t n = 0;
    synth_dims d;
    char fname[64];
    QS_CHECK(resolve_dims(o, &d, err));
    QS_CHECK(build_table(o, &d, &t, &n, err));
    QS_CHECK(assign_shards(t, n, d.shards, err));
    QS_CHECK(make_dirs(out_dir, err));
    if (d.shards == 1) {
        QS_CHECK(write_st_file(o, t, 0, n, out_dir, "model.safetensors", err));
        /* an index left by an earlier sharded run would shadow the new file */
        stale = join_path(out_dir, "model.safetensors.index.json", err);
        if (!stale) {
            st = err->code;
            goto done;
        }
        if (unlink(stale) != 0 && errno != ENOENT)
            QS_THROW(err, QS_ERR_RUNTIME, "%s: cannot remove stale index: %s", stale,
                     strerror(errno));
    } else {
        int64_t first = 0;
        for (int64_t k = 0; k < d.shards; ++k) {
            int64_t last = first;
            while (last < n && t[last].shard == k) ++last;
            shard_name(fname, sizeof fname, k, d.shards);
            QS_CHECK(write_st_file(o, t, first, last - first, out_dir, fname, err));
            first = last;
        }
        QS_ASSERT(err, first == n);
        QS_CHECK(write_index(t, n, d.shards, out_dir, err));
    }
    QS_CHECK(write_config(o, &d, out_dir, err));
    sync_dir(out_dir);
done:
    free(t);
    free(stale);
    return st;
}

qs_status qs_synth_write_tokens(const qs_synth_opts *o, const char *out_dir, int64_t n,
                                qs_err *err) {
    qs_status st = QS_OK;
    synth_out out;
    unsigned char *bytes = NULL; /* (SYNTH_BLOCK * 4,) */
    memset(&out, 0, sizeof out);
    out.fd = -1;
    if (n < 1) QS_THROW(err, QS_ERR_INPUT, "synth-model: tokens must be >= 1, got %lld", (long long)n);
    if (o->vocab < 1 || o->vocab > 0xffffffffll)
        QS_THROW(err, QS_ERR_INPUT, "synth-model: vocab %lld out of range for uint32 ids",
                 o->vocab);
    if (o->seed < 0)
        QS_THROW(err, QS_ERR_INPUT, "synth-model: seed must be >= 0, got %lld", o->seed);
    QS_CHECK(make_dirs(out_dir, err));
    bytes = qs_malloc(SYNTH_BLOCK * 4, err, "token block");
    if (!bytes) {
        st = err->code;
        goto done;
    }
    QS_CHECK(out_open(&out, out_dir, "tokens.u32", err));
    uint64_t key = mix64((uint64_t)o->seed ^ 0x746f6b656e733332ull);
    uint64_t vocab = (uint64_t)o->vocab;
    for (int64_t s = 0; s < n; s += SYNTH_BLOCK) {
        int64_t m = n - s < SYNTH_BLOCK ? n - s : SYNTH_BLOCK;
        for (int64_t j = 0; j < m; ++j) {
            uint32_t id = (uint32_t)(mix64(key + (uint64_t)(s + j + 1) * SYNTH_GOLDEN) % vocab);
            for (int b = 0; b < 4; ++b) bytes[4 * j + b] = (unsigned char)(id >> (8 * b));
        }
        QS_CHECK(out_write(&out, bytes, (size_t)m * 4, err));
    }
    QS_CHECK(out_commit(&out, err));
    sync_dir(out_dir);
done:
    out_release(&out);
    free(bytes);
    return st;
}
