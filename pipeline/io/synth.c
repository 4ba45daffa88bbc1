/* synth.c: deterministic synthetic models in Hugging Face layout, written sequentially
 * through temp file + fsync + rename (see synth.h). */
#include "synth.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "half.h"
#include "model.h"

#define CHUNK_ELEMS 65536 /* elements generated per write */
#define NAME_LEN 96

void qs_synth_opts_default(qs_synth_opts *o) {
    memset(o, 0, sizeof(*o));
    o->arch = QS_ARCH_LLAMA;
    o->layers = 2;
    o->hidden = 256;
    o->vocab = 512;
    o->dtype = QS_DTYPE_BF16;
    o->shards = 1;
    o->max_position = 2048;
    o->rope_theta = 10000.0;
    o->rms_norm_eps = 1e-5;
}

qs_status qs_synth_parse_arch(const char *s, qs_arch *arch) {
    if (strcmp(s, "llama") == 0) *arch = QS_ARCH_LLAMA;
    else if (strcmp(s, "mistral") == 0) *arch = QS_ARCH_MISTRAL;
    else if (strcmp(s, "qwen2") == 0) *arch = QS_ARCH_QWEN2;
    else return QS_ERR_INPUT;
    return QS_OK;
}

qs_status qs_synth_parse_dtype(const char *s, qs_dtype *dtype) {
    if (strcmp(s, "bf16") == 0 || strcmp(s, "bfloat16") == 0) *dtype = QS_DTYPE_BF16;
    else if (strcmp(s, "f16") == 0 || strcmp(s, "float16") == 0) *dtype = QS_DTYPE_F16;
    else if (strcmp(s, "f32") == 0 || strcmp(s, "float32") == 0) *dtype = QS_DTYPE_F32;
    else return QS_ERR_INPUT;
    return QS_OK;
}

static const char *torch_dtype_name(qs_dtype dt) {
    return dt == QS_DTYPE_F32 ? "float32" : dt == QS_DTYPE_F16 ? "float16" : "bfloat16";
}

static const char *arch_class(qs_arch a) {
    return a == QS_ARCH_MISTRAL ? "MistralForCausalLM"
           : a == QS_ARCH_QWEN2 ? "Qwen2ForCausalLM"
                                : "LlamaForCausalLM";
}

/* ---- counter-based generator: integer hashing + IEEE arithmetic only ---- */

static uint64_t mix64(uint64_t x) { /* splitmix64 finaliser */
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static uint64_t fnv1a(const char *s) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (; *s; ++s) h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
    return h;
}

/* Approximately N(0, 1): the sum of four uniforms, centred and scaled (Irwin-Hall). */
static double normal_at(uint64_t key, uint64_t i) {
    uint64_t a = mix64(key ^ mix64(2 * i)), b = mix64(key ^ mix64(2 * i + 1));
    const double s = 1.0 / 4294967296.0;
    double u = ((double)(a & 0xffffffffu) + 0.5) * s + ((double)(a >> 32) + 0.5) * s +
               ((double)(b & 0xffffffffu) + 0.5) * s + ((double)(b >> 32) + 0.5) * s;
    return (u - 2.0) * 1.7320508075688772; /* var of the sum is 4/12 */
}

/* About 1 channel in 64 is an outlier of set `key`. */
static int is_outlier(uint64_t key, uint64_t channel) {
    return (mix64(key ^ (channel * 0x9e3779b97f4a7c15ull)) & 63u) == 0;
}

typedef enum tkind { T_EMBED, T_NORM, T_FINAL_NORM, T_LINEAR, T_BIAS, T_HEAD } tkind;

typedef struct tspec {
    char name[NAME_LEN];
    tkind kind;
    int ndim;
    int64_t shape[2];     /* (rows, cols) or (n,) */
    int lin;              /* qs_linear_kind for T_LINEAR */
    int shard;
    uint64_t offset;      /* within the shard's data section */
    uint64_t nbytes;
} tspec;

typedef struct gen_ctx {
    uint64_t seed;
    uint64_t hidden_set;  /* outlier channels of the residual stream */
    int64_t hidden;
} gen_ctx;

/* Fills out (n,) with elements [start, start + n) of tensor t. */
static void gen_values(const gen_ctx *g, const tspec *t, int64_t start, int64_t n, float *out) {
    uint64_t key = mix64(g->seed ^ fnv1a(t->name));
    int64_t cols = t->ndim == 2 ? t->shape[1] : t->shape[0];
    double base = 1.0 / sqrt((double)cols);
    /* q/k/v/gate/up read the residual stream; o and down have their own outlier inputs */
    uint64_t in_set = (t->kind == T_LINEAR && (t->lin == QS_LIN_O || t->lin == QS_LIN_DOWN))
                          ? mix64(key ^ 0x6f75746c6965ull)
                          : g->hidden_set;
    for (int64_t j = 0; j < n; ++j) {
        uint64_t i = (uint64_t)(start + j);
        uint64_t c = i % (uint64_t)cols;
        double z = normal_at(key, i), v;
        switch (t->kind) {
        case T_EMBED: v = base * z * (is_outlier(g->hidden_set, c) ? 8.0 : 1.0); break;
        case T_LINEAR: v = base * z * (is_outlier(in_set, c) ? 4.0 : 1.0); break;
        case T_HEAD: v = base * z; break;
        case T_NORM:
        case T_FINAL_NORM:
            v = (1.0 + 0.05 * z) * (is_outlier(g->hidden_set, c) ? 2.0 : 1.0);
            break;
        case T_BIAS:
        default: v = 0.02 * z; break;
        }
        out[j] = (float)v;
    }
}

static void encode(const float *v, int64_t n, qs_dtype dt, unsigned char *out) {
    for (int64_t i = 0; i < n; ++i) {
        if (dt == QS_DTYPE_F32) {
            uint32_t u = qs_f32_bits(v[i]);
            out[4 * i] = (unsigned char)u;
            out[4 * i + 1] = (unsigned char)(u >> 8);
            out[4 * i + 2] = (unsigned char)(u >> 16);
            out[4 * i + 3] = (unsigned char)(u >> 24);
        } else {
            uint16_t h = dt == QS_DTYPE_F16 ? qs_f32_to_f16(v[i]) : qs_f32_to_bf16(v[i]);
            out[2 * i] = (unsigned char)h;
            out[2 * i + 1] = (unsigned char)(h >> 8);
        }
    }
}

/* ---- the model description ---- */

qs_status qs_synth_config(const qs_synth_opts *o, qs_hf_config *cfg, qs_err *err) {
    memset(cfg, 0, sizeof(*cfg));
    if (o->layers < 1 || o->hidden < 2 || o->vocab < 2 || o->intermediate < 0 || o->heads < 0 ||
        o->kv_heads < 0 || o->head_dim < 0 || o->shards < 1)
        return QS_FAIL(err, QS_ERR_INPUT, "synth-model: layers, hidden, vocab and shards must be "
                       "positive");
    if (o->dtype == QS_DTYPE_I32)
        return QS_FAIL(err, QS_ERR_INPUT, "synth-model: dtype must be bf16, f16 or f32");
    cfg->arch = o->arch;
    snprintf(cfg->architecture, sizeof(cfg->architecture), "%s", arch_class(o->arch));
    cfg->hidden_size = o->hidden;
    cfg->intermediate_size =
        o->intermediate ? o->intermediate : ((8 * o->hidden + 3 * 64 - 1) / (3 * 64)) * 64;
    cfg->num_attention_heads = o->heads ? o->heads : (o->hidden >= 128 ? o->hidden / 64 : 1);
    cfg->num_key_value_heads = o->kv_heads ? o->kv_heads : cfg->num_attention_heads;
    if (!o->head_dim && o->hidden % cfg->num_attention_heads != 0)
        return QS_FAIL(err, QS_ERR_INPUT, "synth-model: hidden %lld is not divisible by heads "
                       "%lld", (long long)o->hidden, (long long)cfg->num_attention_heads);
    cfg->head_dim = o->head_dim ? o->head_dim : o->hidden / cfg->num_attention_heads;
    if (cfg->head_dim % 2)
        return QS_FAIL(err, QS_ERR_INPUT, "synth-model: head_dim %lld must be even",
                       (long long)cfg->head_dim);
    if (cfg->num_attention_heads % cfg->num_key_value_heads)
        return QS_FAIL(err, QS_ERR_INPUT, "synth-model: kv-heads %lld does not divide heads %lld",
                       (long long)cfg->num_key_value_heads,
                       (long long)cfg->num_attention_heads);
    cfg->num_hidden_layers = o->layers;
    cfg->vocab_size = o->vocab;
    cfg->max_position_embeddings = o->max_position > 0 ? o->max_position : 2048;
    cfg->rms_norm_eps = o->rms_norm_eps > 0 ? o->rms_norm_eps : 1e-5;
    cfg->tie_word_embeddings = o->tie_embeddings ? 1 : 0;
    if (o->arch == QS_ARCH_LLAMA) {
        cfg->attention_bias = o->attention_bias ? 1 : 0;
        cfg->qkv_bias = cfg->o_bias = cfg->attention_bias;
    } else if (o->arch == QS_ARCH_QWEN2) {
        cfg->qkv_bias = 1;
    } else {
        cfg->sliding_window = o->sliding_window > 0 ? o->sliding_window : 0;
    }
    snprintf(cfg->torch_dtype, sizeof(cfg->torch_dtype), "%s", torch_dtype_name(o->dtype));
    cfg->rope.type = QS_ROPE_DEFAULT;
    cfg->rope.theta = o->rope_theta > 0 ? o->rope_theta : 10000.0;
    cfg->rope.factor = 1.0;
    cfg->rope.original_max_position = cfg->max_position_embeddings;
    int64_t per_layer = 2 + QS_LIN_COUNT + (cfg->qkv_bias ? 3 : 0) + (cfg->o_bias ? 1 : 0);
    int64_t ntensors = 2 + (cfg->tie_word_embeddings ? 0 : 1) + o->layers * per_layer;
    if (o->shards > ntensors)
        return QS_FAIL(err, QS_ERR_INPUT, "synth-model: %lld shards for %lld tensors",
                       (long long)o->shards, (long long)ntensors);
    return QS_OK;
}

/* All tensors in model order (embedding, layers, final norm, lm_head). *out owned. */
static qs_status build_specs(const qs_hf_config *cfg, qs_dtype dt, tspec **out, int64_t *n,
                             qs_err *err) {
    int64_t cap = 3 + cfg->num_hidden_layers * (2 + 2 * QS_LIN_COUNT);
    tspec *t = qs_calloc((size_t)cap, sizeof(tspec), err, "synth tensor list");
    int64_t k = 0, h = cfg->hidden_size;
    if (!t) return QS_ERR_RUNTIME;
#define ADD(KIND, NDIM, R, C)           \
    do {                                \
        t[k].kind = (KIND);             \
        t[k].ndim = (NDIM);             \
        t[k].shape[0] = (R);            \
        t[k].shape[1] = (C);            \
        ++k;                            \
    } while (0)
    snprintf(t[k].name, NAME_LEN, "model.embed_tokens.weight");
    ADD(T_EMBED, 2, cfg->vocab_size, h);
    for (int64_t l = 0; l < cfg->num_hidden_layers; ++l) {
        qs_norm_tensor_name(t[k].name, NAME_LEN, l, QS_NORM_INPUT);
        ADD(T_NORM, 1, h, 0);
        for (int j = 0; j < QS_LIN_COUNT; ++j) {
            int64_t d_out = 0, d_in = 0;
            qs_linear_dims(cfg, (qs_linear_kind)j, &d_out, &d_in);
            qs_linear_tensor_name(t[k].name, NAME_LEN, l, (qs_linear_kind)j, 0);
            t[k].lin = j;
            ADD(T_LINEAR, 2, d_out, d_in);
            if (qs_linear_has_bias(cfg, (qs_linear_kind)j)) {
                qs_linear_tensor_name(t[k].name, NAME_LEN, l, (qs_linear_kind)j, 1);
                ADD(T_BIAS, 1, d_out, 0);
            }
            if (j == QS_LIN_O) {
                qs_norm_tensor_name(t[k].name, NAME_LEN, l, QS_NORM_POST_ATTN);
                ADD(T_NORM, 1, h, 0);
            }
        }
    }
    snprintf(t[k].name, NAME_LEN, "model.norm.weight");
    ADD(T_FINAL_NORM, 1, h, 0);
    if (!cfg->tie_word_embeddings) {
        snprintf(t[k].name, NAME_LEN, "lm_head.weight");
        ADD(T_HEAD, 2, cfg->vocab_size, h);
    }
#undef ADD
    for (int64_t i = 0; i < k; ++i) {
        uint64_t numel = (uint64_t)t[i].shape[0] * (uint64_t)(t[i].ndim == 2 ? t[i].shape[1] : 1);
        t[i].nbytes = numel * qs_dtype_size(dt);
    }
    *out = t;
    *n = k;
    return QS_OK;
}

/* Contiguous runs of tensors (model order) with about equal bytes per shard. */
static void assign_shards(tspec *t, int64_t n, int64_t nshards) {
    double total = 0;
    for (int64_t i = 0; i < n; ++i) total += (double)t[i].nbytes;
    double cum = 0;
    int64_t s = 0;
    for (int64_t i = 0; i < n; ++i) {
        /* move on when this shard has its share, but leave one tensor per remaining shard */
        while (s + 1 < nshards && i > 0 && t[i - 1].shard == s &&
               (cum >= total * (double)(s + 1) / (double)nshards || n - i <= nshards - 1 - s))
            ++s;
        t[i].shard = (int)s;
        cum += (double)t[i].nbytes;
    }
}

static int cmp_spec_ptr_name(const void *a, const void *b) {
    const tspec *x = *(const tspec *const *)a, *y = *(const tspec *const *)b;
    return strcmp(x->name, y->name);
}

/* ---- files: temp + fsync + rename ---- */

typedef struct out_file {
    char *tmp;
    char *final;
    FILE *fp;
} out_file;

static char *join(const char *dir, const char *name) {
    size_t a = strlen(dir), b = strlen(name);
    char *p = malloc(a + b + 2);
    if (!p) return NULL;
    snprintf(p, a + b + 2, "%s%s%s", dir, (a && dir[a - 1] == '/') ? "" : "/", name);
    return p;
}

static qs_status out_open(out_file *f, const char *dir, const char *name, qs_err *err) {
    qs_status st = QS_OK;
    memset(f, 0, sizeof(*f));
    f->final = join(dir, name);
    size_t len = strlen(dir) + strlen(name) + 32;
    f->tmp = malloc(len);
    if (!f->final || !f->tmp) QS_THROW(err, QS_ERR_RUNTIME, "out of memory");
    snprintf(f->tmp, len, "%s/.%s.tmp.XXXXXX", dir, name);
    int fd = mkstemp(f->tmp);
    if (fd < 0) {
        free(f->tmp);
        f->tmp = NULL;
        QS_THROW(err, QS_ERR_RUNTIME, "%s: cannot create temp file: %s", f->final,
                 strerror(errno));
    }
    fchmod(fd, 0644);
    f->fp = fdopen(fd, "wb");
    if (!f->fp) {
        close(fd);
        QS_THROW(err, QS_ERR_RUNTIME, "%s: fdopen: %s", f->final, strerror(errno));
    }
done:
    return st;
}

static qs_status out_write(out_file *f, const void *p, size_t n, qs_err *err) {
    if (n && fwrite(p, 1, n, f->fp) != n)
        return QS_FAIL(err, QS_ERR_RUNTIME, "%s: write failed: %s", f->final, strerror(errno));
    return QS_OK;
}

/* Flushes, fsyncs, closes and renames into place. */
static qs_status out_commit(out_file *f, qs_err *err) {
    qs_status st = QS_OK;
    if (fflush(f->fp) != 0 || fsync(fileno(f->fp)) != 0)
        QS_THROW(err, QS_ERR_RUNTIME, "%s: flush failed: %s", f->final, strerror(errno));
    int rc = fclose(f->fp);
    f->fp = NULL;
    if (rc != 0) QS_THROW(err, QS_ERR_RUNTIME, "%s: close failed: %s", f->final, strerror(errno));
    if (rename(f->tmp, f->final) != 0)
        QS_THROW(err, QS_ERR_RUNTIME, "%s: rename failed: %s", f->final, strerror(errno));
    free(f->tmp);
    f->tmp = NULL;
done:
    return st;
}

/* Closes and removes an uncommitted temp file; frees the names. Safe after commit. */
static void out_discard(out_file *f) {
    if (f->fp) fclose(f->fp);
    if (f->tmp) unlink(f->tmp);
    free(f->tmp);
    free(f->final);
    memset(f, 0, sizeof(*f));
}

static qs_status write_text_file(const char *dir, const char *name, const char *text,
                                 qs_err *err) {
    qs_status st = QS_OK;
    out_file f;
    QS_CHECK(out_open(&f, dir, name, err));
    QS_CHECK(out_write(&f, text, strlen(text), err));
    QS_CHECK(out_write(&f, "\n", 1, err));
    QS_CHECK(out_commit(&f, err));
done:
    out_discard(&f);
    return st;
}

static qs_status make_dirs(const char *dir, qs_err *err) {
    qs_status st = QS_OK;
    char *p = strdup(dir);
    if (!p) return QS_FAIL(err, QS_ERR_RUNTIME, "out of memory");
    for (char *s = p + 1;; ++s) {
        if (*s == '/' || *s == '\0') {
            char c = *s;
            *s = '\0';
            if (mkdir(p, 0755) != 0 && errno != EEXIST)
                QS_THROW(err, QS_ERR_INPUT, "%s: cannot create directory: %s", p,
                         strerror(errno));
            *s = c;
            if (!c) break;
        }
    }
    struct stat sb;
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode))
        QS_THROW(err, QS_ERR_INPUT, "%s: not a directory", dir);
done:
    free(p);
    return st;
}

/* Appends printf-style to a growing string; returns -1 on OOM. */
typedef struct sbuf {
    char *p;
    size_t len, cap;
} sbuf;

#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
static int sb_add(sbuf *b, const char *fmt, ...) {
    for (;;) {
        size_t room = b->cap - b->len;
        int n = -1;
        if (b->p) {
            va_list ap;
            va_start(ap, fmt);
            n = vsnprintf(b->p + b->len, room, fmt, ap);
            va_end(ap);
        }
        if (n >= 0 && (size_t)n < room) {
            b->len += (size_t)n;
            return 0;
        }
        size_t cap = b->cap ? b->cap * 2 : 4096;
        while (n >= 0 && cap < b->len + (size_t)n + 1) cap *= 2;
        char *q = realloc(b->p, cap);
        if (!q) return -1;
        b->p = q;
        b->cap = cap;
    }
}

/* Writes one shard: header (tensors sorted by name, offsets in that order), then data. */
static qs_status write_shard(const gen_ctx *g, tspec *all, int64_t n, int shard, qs_dtype dt,
                             const char *dir, const char *name, qs_err *err) {
    qs_status st = QS_OK;
    out_file f;
    memset(&f, 0, sizeof(f));
    sbuf hb = {0};
    tspec **mine = NULL;
    float *vals = NULL;          /* (CHUNK_ELEMS,) */
    unsigned char *bytes = NULL; /* (CHUNK_ELEMS * 4,) */
    int64_t m = 0;
    mine = qs_calloc((size_t)n, sizeof(tspec *), err, "synth shard list");
    vals = qs_malloc(CHUNK_ELEMS * sizeof(float), err, "synth chunk");
    bytes = qs_malloc(CHUNK_ELEMS * 4, err, "synth chunk");
    if (!mine || !vals || !bytes) QS_THROW(err, QS_ERR_RUNTIME, "out of memory");
    for (int64_t i = 0; i < n; ++i)
        if (all[i].shard == shard) mine[m++] = &all[i];
    qsort(mine, (size_t)m, sizeof(tspec *), cmp_spec_ptr_name);
    uint64_t off = 0;
    if (sb_add(&hb, "{\"__metadata__\":{\"format\":\"pt\"}")) goto oom;
    for (int64_t i = 0; i < m; ++i) {
        tspec *t = mine[i];
        t->offset = off;
        if (sb_add(&hb, ",\"%s\":{\"dtype\":\"%s\",\"shape\":[%lld", t->name,
                   qs_dtype_name(dt), (long long)t->shape[0]) ||
            (t->ndim == 2 && sb_add(&hb, ",%lld", (long long)t->shape[1])) ||
            sb_add(&hb, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)off,
                   (unsigned long long)(off + t->nbytes)))
            goto oom;
        off += t->nbytes;
    }
    if (sb_add(&hb, "}")) goto oom;
    while (hb.len % 8) /* pad with spaces so the data section is 8-byte aligned */
        if (sb_add(&hb, " ")) goto oom;
    QS_CHECK(out_open(&f, dir, name, err));
    unsigned char lenbuf[8];
    for (int b = 0; b < 8; ++b) lenbuf[b] = (unsigned char)((uint64_t)hb.len >> (8 * b));
    QS_CHECK(out_write(&f, lenbuf, 8, err));
    QS_CHECK(out_write(&f, hb.p, hb.len, err));
    for (int64_t i = 0; i < m; ++i) {
        const tspec *t = mine[i];
        int64_t numel = (int64_t)(t->nbytes / qs_dtype_size(dt));
        for (int64_t s = 0; s < numel; s += CHUNK_ELEMS) {
            int64_t c = numel - s < CHUNK_ELEMS ? numel - s : CHUNK_ELEMS;
            gen_values(g, t, s, c, vals);
            encode(vals, c, dt, bytes);
            QS_CHECK(out_write(&f, bytes, (size_t)c * qs_dtype_size(dt), err));
        }
    }
    QS_CHECK(out_commit(&f, err));
    goto done;
oom:
    st = QS_FAIL(err, QS_ERR_RUNTIME, "out of memory building the header of %s", name);
done:
    out_discard(&f);
    free(hb.p);
    free(mine);
    free(vals);
    free(bytes);
    return st;
}

static char *config_json(const qs_hf_config *c, const qs_synth_opts *o) {
    cJSON *r = cJSON_CreateObject();
    char *text = NULL;
    if (!r) return NULL;
    cJSON *arr = cJSON_AddArrayToObject(r, "architectures");
    if (arr) cJSON_AddItemToArray(arr, cJSON_CreateString(c->architecture));
    cJSON_AddStringToObject(r, "model_type", qs_arch_name(c->arch));
    cJSON_AddNumberToObject(r, "hidden_size", (double)c->hidden_size);
    cJSON_AddNumberToObject(r, "intermediate_size", (double)c->intermediate_size);
    cJSON_AddNumberToObject(r, "num_attention_heads", (double)c->num_attention_heads);
    cJSON_AddNumberToObject(r, "num_key_value_heads", (double)c->num_key_value_heads);
    cJSON_AddNumberToObject(r, "head_dim", (double)c->head_dim);
    cJSON_AddNumberToObject(r, "num_hidden_layers", (double)c->num_hidden_layers);
    cJSON_AddNumberToObject(r, "vocab_size", (double)c->vocab_size);
    cJSON_AddNumberToObject(r, "max_position_embeddings", (double)c->max_position_embeddings);
    cJSON_AddNumberToObject(r, "rms_norm_eps", c->rms_norm_eps);
    cJSON_AddNumberToObject(r, "rope_theta", c->rope.theta);
    cJSON_AddNullToObject(r, "rope_scaling");
    cJSON_AddBoolToObject(r, "tie_word_embeddings", c->tie_word_embeddings);
    cJSON_AddStringToObject(r, "hidden_act", "silu");
    cJSON_AddStringToObject(r, "torch_dtype", c->torch_dtype);
    cJSON_AddNumberToObject(r, "bos_token_id", 1);
    cJSON_AddNumberToObject(r, "eos_token_id", 2);
    if (c->arch == QS_ARCH_LLAMA) {
        cJSON_AddBoolToObject(r, "attention_bias", c->attention_bias);
        cJSON_AddBoolToObject(r, "mlp_bias", 0);
    } else if (c->arch == QS_ARCH_MISTRAL) {
        if (c->sliding_window)
            cJSON_AddNumberToObject(r, "sliding_window", (double)c->sliding_window);
        else
            cJSON_AddNullToObject(r, "sliding_window");
    } else {
        cJSON_AddBoolToObject(r, "use_sliding_window", 0);
        cJSON_AddNullToObject(r, "sliding_window");
    }
    cJSON_AddNumberToObject(r, "qshard_synth_seed", (double)o->seed);
    text = cJSON_Print(r);
    cJSON_Delete(r);
    return text;
}

qs_status qs_synth_write(const qs_synth_opts *o, const char *out_dir, qs_err *err) {
    qs_status st = QS_OK;
    qs_hf_config cfg;
    tspec *specs = NULL;
    int64_t n = 0;
    char *cfg_text = NULL, *idx_text = NULL, *stale = NULL;
    cJSON *idx = NULL;
    char **names = NULL;
    QS_CHECK(qs_synth_config(o, &cfg, err));
    QS_CHECK(make_dirs(out_dir, err));
    QS_CHECK(build_specs(&cfg, o->dtype, &specs, &n, err));
    int64_t k = o->shards;
    assign_shards(specs, n, k);
    gen_ctx g;
    g.seed = mix64((uint64_t)o->seed ^ 0x7173686172640000ull);
    g.hidden_set = mix64(g.seed ^ 0x68696464656eull);
    g.hidden = cfg.hidden_size;

    names = qs_calloc((size_t)k, sizeof(char *), err, "shard names");
    if (!names) QS_THROW(err, QS_ERR_RUNTIME, "out of memory");
    for (int64_t s = 0; s < k; ++s) {
        names[s] = malloc(64);
        if (!names[s]) QS_THROW(err, QS_ERR_RUNTIME, "out of memory");
        if (k == 1) snprintf(names[s], 64, "model.safetensors");
        else snprintf(names[s], 64, "model-%05lld-of-%05lld.safetensors", (long long)s + 1,
                      (long long)k);
    }
    for (int64_t s = 0; s < k; ++s)
        QS_CHECK(write_shard(&g, specs, n, (int)s, o->dtype, out_dir, names[s], err));
    if (k > 1) {
        uint64_t total = 0;
        for (int64_t i = 0; i < n; ++i) total += specs[i].nbytes;
        idx = cJSON_CreateObject();
        cJSON *meta = idx ? cJSON_AddObjectToObject(idx, "metadata") : NULL;
        cJSON *wm = idx ? cJSON_AddObjectToObject(idx, "weight_map") : NULL;
        if (!meta || !wm) QS_THROW(err, QS_ERR_RUNTIME, "out of memory");
        cJSON_AddNumberToObject(meta, "total_size", (double)total);
        tspec **order = qs_calloc((size_t)n, sizeof(tspec *), err, "index order");
        if (!order) QS_THROW(err, QS_ERR_RUNTIME, "out of memory");
        for (int64_t i = 0; i < n; ++i) order[i] = &specs[i];
        qsort(order, (size_t)n, sizeof(tspec *), cmp_spec_ptr_name);
        for (int64_t i = 0; i < n; ++i)
            cJSON_AddStringToObject(wm, order[i]->name, names[order[i]->shard]);
        free(order);
        idx_text = cJSON_Print(idx);
        if (!idx_text) QS_THROW(err, QS_ERR_RUNTIME, "out of memory");
        QS_CHECK(write_text_file(out_dir, "model.safetensors.index.json", idx_text, err));
        stale = join(out_dir, "model.safetensors"); /* it would shadow the index */
    } else {
        stale = join(out_dir, "model.safetensors.index.json");
    }
    if (!stale) QS_THROW(err, QS_ERR_RUNTIME, "out of memory");
    if (unlink(stale) != 0 && errno != ENOENT)
        QS_THROW(err, QS_ERR_RUNTIME, "%s: cannot remove stale file: %s", stale, strerror(errno));
    cfg_text = config_json(&cfg, o);
    if (!cfg_text) QS_THROW(err, QS_ERR_RUNTIME, "out of memory");
    QS_CHECK(write_text_file(out_dir, "config.json", cfg_text, err));
    int dfd = open(out_dir, O_RDONLY | O_DIRECTORY);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
done:
    for (int64_t s = 0; names && s < k; ++s) free(names[s]);
    free(names);
    cJSON_Delete(idx);
    cJSON_free(idx_text);
    cJSON_free(cfg_text);
    free(stale);
    free(specs);
    return st;
}

qs_status qs_synth_write_tokens(const qs_synth_opts *o, const char *out_dir, int64_t n,
                                qs_err *err) {
    qs_status st = QS_OK;
    out_file f;
    memset(&f, 0, sizeof(f));
    unsigned char *buf = NULL; /* (CHUNK_ELEMS * 4,) */
    if (n < 0 || o->vocab < 2)
        return QS_FAIL(err, QS_ERR_INPUT, "synth-model: token count and vocab must be positive");
    QS_CHECK(make_dirs(out_dir, err));
    buf = qs_malloc(CHUNK_ELEMS * 4, err, "token chunk");
    if (!buf) QS_THROW(err, QS_ERR_RUNTIME, "out of memory");
    QS_CHECK(out_open(&f, out_dir, "tokens.u32", err));
    uint64_t key = mix64((uint64_t)o->seed ^ 0x746f6b656e730000ull);
    uint64_t v = (uint64_t)o->vocab;
    for (int64_t s = 0; s < n; s += CHUNK_ELEMS) {
        int64_t c = n - s < CHUNK_ELEMS ? n - s : CHUNK_ELEMS;
        for (int64_t j = 0; j < c; ++j) {
            uint64_t i = (uint64_t)(s + j);
            uint32_t id;
            if (i % 256 == 0) {
                id = 1;
            } else {
                /* Zipf-like: u^2 favours small ids; skew over ids 2..vocab-1 */
                double u = ((double)(mix64(key ^ mix64(i)) >> 11) + 0.5) / 9007199254740992.0;
                uint64_t lo = v > 2 ? 2 : 0, span = v > 2 ? v - 2 : v;
                uint64_t r = (uint64_t)(u * u * (double)span);
                id = (uint32_t)(lo + (r < span ? r : span - 1));
            }
            buf[4 * j] = (unsigned char)id;
            buf[4 * j + 1] = (unsigned char)(id >> 8);
            buf[4 * j + 2] = (unsigned char)(id >> 16);
            buf[4 * j + 3] = (unsigned char)(id >> 24);
        }
        QS_CHECK(out_write(&f, buf, (size_t)c * 4, err));
    }
    QS_CHECK(out_commit(&f, err));
done:
    out_discard(&f);
    free(buf);
    return st;
}
