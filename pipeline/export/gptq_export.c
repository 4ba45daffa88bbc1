/* gptq_export.c: Hugging Face GPTQ checkpoint directory (safetensors shards, index, configs). */
#include "gptq_export.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "st_writer.h"
#include "pack.h"
#include "quant.h"

#define GX_MAX_DIMS 4
#define GX_KEY_MAX 1024

typedef struct gx_tensor {
    char *name;                    /* owned */
    qs_dtype dt;
    int ndim;
    int64_t shape[GX_MAX_DIMS];
    uint64_t nbytes;
    int shard;                     /* 0-based, set when the layout is fixed */
} gx_tensor;

typedef struct gx_item {
    char *name;                    /* owned: module (linear) or tensor name */
    int linear;
    qs_gptq_scheme scheme;         /* linear only */
    int64_t d_out, d_in;           /* linear only */
    int has_bias;
    qs_dtype bias_dt;
    char *key;                     /* owned: "dynamic" key (linear only) */
    int64_t t0, nt;                /* its tensors [t0, t0 + nt) */
} gx_item;

struct qs_gptq_export {
    char *dir;                     /* owned: final directory */
    char *tmpdir;                  /* owned: <dir>.tmp.<pid> */
    char *src;                     /* owned: source model directory */
    qs_gptq_export_opts opts;
    gx_item *items;                /* (nitems,) in declared order */
    int64_t nitems, capi;
    gx_tensor *tensors;            /* (ntensors,) in file order */
    int64_t ntensors, capt;
    uint64_t data_bytes;
    int frozen, failed, finished, tmp_made;
    int nshards;
    int64_t next_item;             /* the next item to add */
    qs_st_writer *w;               /* writer of shard cur_shard, or NULL */
    int cur_shard;
    char **excl;                   /* (nexcl,) owned "-:" keys of float modules */
    int64_t nexcl;
};

void qs_gptq_export_opts_default(qs_gptq_export_opts *o) {
    memset(o, 0, sizeof(*o));
    o->shard_bytes = (int64_t)4 << 30;
    o->v2 = 0;
    o->static_groups = 0;
    o->true_sequential = 1;
    o->damp_percent = 0.01;
    o->overwrite = 0;
}

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

/* Reads a whole file into a NUL-terminated buffer (caller frees). */
static qs_status read_text(const char *path, char **out, qs_err *err) {
    qs_status st = QS_OK;
    FILE *f = NULL;
    char *buf = NULL;
    *out = NULL;
    f = fopen(path, "rb");
    if (!f) QS_THROW(err, QS_ERR_INPUT, "%s: cannot open: %s", path, strerror(errno));
    if (fseek(f, 0, SEEK_END) != 0) QS_THROW(err, QS_ERR_RUNTIME, "%s: seek failed", path);
    long n = ftell(f);
    if (n < 0 || n > (64L << 20)) QS_THROW(err, QS_ERR_INPUT, "%s: bad size %ld", path, n);
    rewind(f);
    buf = qs_malloc((size_t)n + 1, err, "text file");
    if (!buf) QS_THROW(err, QS_ERR_RUNTIME, "%s: out of memory", path);
    if (fread(buf, 1, (size_t)n, f) != (size_t)n)
        QS_THROW(err, QS_ERR_RUNTIME, "%s: read failed", path);
    buf[n] = '\0';
    *out = buf;
    buf = NULL;
done:
    if (f) fclose(f);
    free(buf);
    return st;
}

/* ---- module names and the "dynamic" map ------------------------------------------------ */

/* vLLM fuses these projections of one layer into one linear; the last name of each list is
 * the fused module's name. */
static const char *const k_fused_qkv[] = {"q_proj", "k_proj", "v_proj", "qkv_proj", NULL};
static const char *const k_fused_gate_up[] = {"gate_proj", "up_proj", "gate_up_proj", NULL};

static const char *const *fused_family(const char *leaf) {
    for (int i = 0; k_fused_qkv[i]; ++i)
        if (strcmp(leaf, k_fused_qkv[i]) == 0) return k_fused_qkv;
    for (int i = 0; k_fused_gate_up[i]; ++i)
        if (strcmp(leaf, k_fused_gate_up[i]) == 0) return k_fused_gate_up;
    return NULL;
}

/* Appends `s` to buf (of size cap, used len) with regex metacharacters escaped. */
static int append_escaped(char *buf, size_t cap, size_t *len, const char *s, size_t n) {
    for (size_t i = 0; i < n; ++i) {
        if (strchr(".^$*+?()[]{}|\\", s[i]) != NULL) {
            if (*len + 1 >= cap) return -1;
            buf[(*len)++] = '\\';
        }
        if (*len + 1 >= cap) return -1;
        buf[(*len)++] = s[i];
    }
    buf[*len] = '\0';
    return 0;
}

static int append_raw(char *buf, size_t cap, size_t *len, const char *s) {
    size_t n = strlen(s);
    if (*len + n + 1 > cap) return -1;
    memcpy(buf + *len, s, n + 1);
    *len += n;
    return 0;
}

/* The "dynamic" key of a module: "+:<escaped module>$", or for a member of a fused family
 * "+:<escaped prefix>(q_proj|k_proj|v_proj|qkv_proj)$" (members and the fused name
 * alternated, so vLLM's fused name and the HF names all match). */
static int dynamic_key(const char *module, char *buf, size_t cap, int neg) {
    size_t len = 0;
    buf[0] = '\0';
    if (append_raw(buf, cap, &len, neg ? "-:" : "+:") != 0) return -1;
    const char *dot = strrchr(module, '.');
    const char *leaf = dot ? dot + 1 : module;
    const char *const *fam = fused_family(leaf);
    if (!fam) {
        if (append_escaped(buf, cap, &len, module, strlen(module)) != 0) return -1;
    } else {
        if (append_escaped(buf, cap, &len, module, (size_t)(leaf - module)) != 0) return -1;
        if (append_raw(buf, cap, &len, "(") != 0) return -1;
        for (int i = 0; fam[i]; ++i) {
            if (i && append_raw(buf, cap, &len, "|") != 0) return -1;
            if (append_raw(buf, cap, &len, fam[i]) != 0) return -1;
        }
        if (append_raw(buf, cap, &len, ")") != 0) return -1;
    }
    return append_raw(buf, cap, &len, "$");
}

static int scheme_eq(const qs_gptq_scheme *a, const qs_gptq_scheme *b) {
    return a->bits == b->bits && a->group_size == b->group_size && !a->sym == !b->sym &&
           !a->desc_act == !b->desc_act;
}

static void scheme_name(const qs_gptq_scheme *s, char *buf, size_t cap) {
    snprintf(buf, cap, "w%dg%d %s%s", s->bits, s->group_size, s->sym ? "sym" : "asym",
             s->desc_act ? " desc_act" : "");
}

/* ---- declarations -------------------------------------------------------------------- */

qs_status qs_gptq_export_begin(qs_gptq_export **out, const char *dir, const char *src_model_dir,
                               const qs_gptq_export_opts *opts, qs_err *err) {
    qs_status st = QS_OK;
    qs_gptq_export *x = NULL;
    *out = NULL;
    x = qs_calloc(1, sizeof(*x), err, "GPTQ exporter");
    if (!x) QS_THROW(err, QS_ERR_RUNTIME, "%s: out of memory", dir);
    x->opts = *opts;
    x->cur_shard = -1;
    x->dir = dup_str(dir, err);
    x->src = dup_str(src_model_dir, err);
    if (!x->dir || !x->src) QS_THROW(err, QS_ERR_RUNTIME, "%s: out of memory", dir);
    size_t dl = strlen(x->dir);
    while (dl > 1 && x->dir[dl - 1] == '/') x->dir[--dl] = '\0';
    size_t tn = dl + 32;
    x->tmpdir = qs_malloc(tn, err, "temp dir");
    if (!x->tmpdir) QS_THROW(err, QS_ERR_RUNTIME, "%s: out of memory", dir);
    snprintf(x->tmpdir, tn, "%s.tmp.%ld", x->dir, (long)getpid());
    if (path_exists(x->dir) && !opts->overwrite)
        QS_THROW(err, QS_ERR_INPUT, "%s: already exists (export refuses to overwrite it)", x->dir);
    if (path_exists(x->tmpdir) && remove_tree(x->tmpdir) != 0)
        QS_THROW(err, QS_ERR_RUNTIME, "%s: stale temporary directory cannot be removed", x->tmpdir);
    if (mkdir(x->tmpdir, 0755) != 0)
        QS_THROW(err, QS_ERR_RUNTIME, "%s: cannot create directory: %s", x->tmpdir,
                 strerror(errno));
    x->tmp_made = 1;
    *out = x;
    x = NULL;
done:
    qs_gptq_export_free(x);
    return st;
}

static qs_status push_tensor(qs_gptq_export *x, const char *name, qs_dtype dt, int ndim,
                             const int64_t *shape, qs_err *err) {
    qs_status st = QS_OK;
    if (ndim < 0 || ndim > GX_MAX_DIMS)
        QS_THROW(err, QS_ERR_INPUT, "%s: tensor '%s' has %d dimensions (at most %d)", x->dir,
                 name, ndim, GX_MAX_DIMS);
    if (qs_st_dtype_bytes(dt) == 0)
        QS_THROW(err, QS_ERR_INPUT, "%s: tensor '%s' has an unknown dtype", x->dir, name);
    for (int64_t i = 0; i < x->ntensors; ++i)
        if (strcmp(x->tensors[i].name, name) == 0)
            QS_THROW(err, QS_ERR_INPUT, "%s: tensor '%s' declared twice", x->dir, name);
    uint64_t nbytes = qs_st_dtype_bytes(dt);
    for (int d = 0; d < ndim; ++d) {
        if (shape[d] < 0 || (shape[d] > 0 && nbytes > ((uint64_t)1 << 50) / (uint64_t)shape[d]))
            QS_THROW(err, QS_ERR_INPUT, "%s: tensor '%s' has a bad shape", x->dir, name);
        nbytes *= (uint64_t)shape[d];
    }
    if (x->ntensors == x->capt) {
        int64_t cap = x->capt ? 2 * x->capt : 256;
        gx_tensor *t = realloc(x->tensors, (size_t)cap * sizeof(*t));
        if (!t) QS_THROW(err, QS_ERR_RUNTIME, "%s: out of memory (tensor table)", x->dir);
        x->tensors = t;
        x->capt = cap;
    }
    gx_tensor *t = &x->tensors[x->ntensors];
    memset(t, 0, sizeof(*t));
    t->name = dup_str(name, err);
    if (!t->name) QS_THROW(err, QS_ERR_RUNTIME, "%s: out of memory", x->dir);
    t->dt = dt;
    t->ndim = ndim;
    for (int d = 0; d < ndim; ++d) t->shape[d] = shape[d];
    t->nbytes = nbytes;
    x->ntensors++;
    x->data_bytes += nbytes;
done:
    return st;
}

static qs_status push_item(qs_gptq_export *x, const char *name, gx_item **out, qs_err *err) {
    qs_status st = QS_OK;
    *out = NULL;
    if (x->frozen)
        QS_THROW(err, QS_ERR_INTERNAL, "%s: '%s' declared after the first tensor was written",
                 x->dir, name);
    if (x->failed) QS_THROW(err, QS_ERR_INTERNAL, "%s: export used after an error", x->dir);
    for (int64_t i = 0; i < x->nitems; ++i)
        if (strcmp(x->items[i].name, name) == 0)
            QS_THROW(err, QS_ERR_INPUT, "%s: '%s' declared twice", x->dir, name);
    if (x->nitems == x->capi) {
        int64_t cap = x->capi ? 2 * x->capi : 128;
        gx_item *it = realloc(x->items, (size_t)cap * sizeof(*it));
        if (!it) QS_THROW(err, QS_ERR_RUNTIME, "%s: out of memory (item table)", x->dir);
        x->items = it;
        x->capi = cap;
    }
    gx_item *it = &x->items[x->nitems];
    memset(it, 0, sizeof(*it));
    it->name = dup_str(name, err);
    if (!it->name) QS_THROW(err, QS_ERR_RUNTIME, "%s: out of memory", x->dir);
    it->t0 = x->ntensors;
    x->nitems++;
    *out = it;
done:
    return st;
}

qs_status qs_gptq_export_declare_linear(qs_gptq_export *x, const char *module, int64_t d_out,
                                        int64_t d_in, const qs_gptq_scheme *scheme, int has_bias,
                                        qs_dtype bias_dtype, qs_err *err) {
    qs_status st = QS_OK;
    qs_err why = {0};
    char name[GX_KEY_MAX], key[GX_KEY_MAX];
    gx_item *it = NULL;
    if (!qs_pack_can_serve(d_out, d_in, scheme->bits, scheme->group_size, &why))
        QS_THROW(err, QS_ERR_INPUT, "%s: (%lld, %lld) at w%dg%d has no GPTQ layout: %s", module,
                 (long long)d_out, (long long)d_in, scheme->bits, scheme->group_size, why.msg);
    if (has_bias && (bias_dtype == QS_DTYPE_I32 || qs_st_dtype_bytes(bias_dtype) == 0))
        QS_THROW(err, QS_ERR_INPUT, "%s: bias dtype must be F32, F16 or BF16", module);
    if (strlen(module) + 16 > sizeof(name) || dynamic_key(module, key, sizeof(key), 0) != 0)
        QS_THROW(err, QS_ERR_INPUT, "%s: module name too long", module);
    QS_CHECK(push_item(x, module, &it, err));
    it->linear = 1;
    it->scheme = *scheme;
    it->scheme.sym = !!scheme->sym;
    it->scheme.desc_act = !!scheme->desc_act;
    it->d_out = d_out;
    it->d_in = d_in;
    it->has_bias = has_bias;
    it->bias_dt = bias_dtype;
    it->key = dup_str(key, err);
    if (!it->key) QS_THROW(err, QS_ERR_RUNTIME, "%s: out of memory", module);
    const int64_t b = scheme->bits, G = qs_quant_ngroups(d_in, scheme->group_size);
    int64_t sh[2];
    sh[0] = d_in * b / 32;
    sh[1] = d_out;
    snprintf(name, sizeof(name), "%s.qweight", module);
    QS_CHECK(push_tensor(x, name, QS_DTYPE_I32, 2, sh, err));
    sh[0] = G;
    sh[1] = d_out * b / 32;
    snprintf(name, sizeof(name), "%s.qzeros", module);
    QS_CHECK(push_tensor(x, name, QS_DTYPE_I32, 2, sh, err));
    sh[0] = G;
    sh[1] = d_out;
    snprintf(name, sizeof(name), "%s.scales", module);
    QS_CHECK(push_tensor(x, name, QS_DTYPE_F16, 2, sh, err));
    sh[0] = d_in;
    snprintf(name, sizeof(name), "%s.g_idx", module);
    QS_CHECK(push_tensor(x, name, QS_DTYPE_I32, 1, sh, err));
    if (has_bias) {
        sh[0] = d_out;
        snprintf(name, sizeof(name), "%s.bias", module);
        QS_CHECK(push_tensor(x, name, bias_dtype, 1, sh, err));
    }
    it->nt = x->ntensors - it->t0;
done:
    if (st != QS_OK && it) x->failed = 1; /* a half-declared item: the exporter is unusable */
    return st;
}

qs_status qs_gptq_export_declare_tensor(qs_gptq_export *x, const char *name, qs_dtype dt,
                                        int ndim, const int64_t *shape, qs_err *err) {
    qs_status st = QS_OK;
    gx_item *it = NULL;
    QS_CHECK(push_item(x, name, &it, err));
    QS_CHECK(push_tensor(x, name, dt, ndim, shape, err));
    it->nt = 1;
done:
    if (st != QS_OK && it) x->failed = 1;
    return st;
}

qs_status qs_gptq_export_exclude(qs_gptq_export *x, const char *module, qs_err *err) {
    qs_status st = QS_OK;
    char key[GX_KEY_MAX];
    if (x->frozen)
        QS_THROW(err, QS_ERR_INTERNAL, "%s: '%s' excluded after the first tensor was written",
                 x->dir, module);
    if (dynamic_key(module, key, sizeof(key), 1) != 0)
        QS_THROW(err, QS_ERR_INPUT, "%s: module name too long", module);
    for (int64_t i = 0; i < x->nexcl; ++i)
        if (strcmp(x->excl[i], key) == 0) goto done; /* a fused sibling already did */
    char **e = realloc(x->excl, sizeof(char *) * (size_t)(x->nexcl + 1));
    if (!e) QS_THROW(err, QS_ERR_RUNTIME, "%s: out of memory", x->dir);
    x->excl = e;
    x->excl[x->nexcl] = dup_str(key, err);
    if (!x->excl[x->nexcl]) QS_THROW(err, QS_ERR_RUNTIME, "%s: out of memory", x->dir);
    x->nexcl++;
done:
    return st;
}

uint64_t qs_gptq_export_data_bytes(const qs_gptq_export *x) { return x->data_bytes; }

/* ---- layout and streaming ------------------------------------------------------------ */

/* Fixes the layout: fused groups share a scheme; tensors go to shards greedily in order. */
static qs_status freeze(qs_gptq_export *x, qs_err *err) {
    qs_status st = QS_OK;
    if (x->nitems == 0) QS_THROW(err, QS_ERR_INPUT, "%s: nothing to export", x->dir);
    for (int64_t i = 0; i < x->nitems; ++i) {
        const gx_item *a = &x->items[i];
        if (!a->linear) continue;
        for (int64_t j = 0; j < i; ++j) {
            const gx_item *b = &x->items[j];
            if (b->linear && strcmp(a->key, b->key) == 0 && !scheme_eq(&a->scheme, &b->scheme)) {
                char sa[64], sb[64];
                scheme_name(&a->scheme, sa, sizeof(sa));
                scheme_name(&b->scheme, sb, sizeof(sb));
                QS_THROW(err, QS_ERR_INPUT,
                         "%s: scheme %s differs from %s of %s; vLLM fuses them into one linear "
                         "and needs one scheme (tie them in the search)",
                         a->name, sa, sb, b->name);
            }
        }
    }
    for (int64_t i = 0; i < x->nitems; ++i) {
        const gx_item *a = &x->items[i];
        if (!a->linear) continue;
        for (int64_t k = 0; k < x->nexcl; ++k)
            if (strcmp(a->key + 2, x->excl[k] + 2) == 0)
                QS_THROW(err, QS_ERR_INPUT,
                         "%s: quantized while a module fused with it stays float; vLLM fuses "
                         "them into one linear and needs one scheme (tie them in the search)",
                         a->name);
    }
    int shard = 0;
    uint64_t acc = 0;
    const int split = x->opts.shard_bytes > 0 && x->data_bytes > (uint64_t)x->opts.shard_bytes;
    for (int64_t t = 0; t < x->ntensors; ++t) {
        uint64_t nb = x->tensors[t].nbytes;
        if (split && acc > 0 && acc + nb > (uint64_t)x->opts.shard_bytes) {
            shard++;
            acc = 0;
        }
        x->tensors[t].shard = shard;
        acc += nb;
    }
    x->nshards = shard + 1;
    if (x->nshards > 99999)
        QS_THROW(err, QS_ERR_INPUT, "%s: %d shards (at most 99999): raise the shard size", x->dir,
                 x->nshards);
    x->frozen = 1;
done:
    return st;
}

static void shard_name(const qs_gptq_export *x, int shard, char *buf, size_t cap) {
    if (x->nshards == 1) snprintf(buf, cap, "model.safetensors");
    else snprintf(buf, cap, "model-%05d-of-%05d.safetensors", shard + 1, x->nshards);
}

static qs_status close_shard(qs_gptq_export *x, qs_err *err) {
    qs_status st = QS_OK;
    if (x->w) st = qs_st_writer_finish(x->w, err);
    qs_st_writer_free(x->w);
    x->w = NULL;
    x->cur_shard = -1;
    return st;
}

/* Streams tensor t (whole); opens its shard on its first tensor, closes it after its last. */
static qs_status put_tensor(qs_gptq_export *x, int64_t t, const void *data, size_t nbytes,
                            qs_err *err) {
    qs_status st = QS_OK;
    char *path = NULL;
    const gx_tensor *gt = &x->tensors[t];
    if (nbytes != gt->nbytes)
        QS_THROW(err, QS_ERR_INPUT, "%s: %llu bytes given, %llu declared", gt->name,
                 (unsigned long long)nbytes, (unsigned long long)gt->nbytes);
    if (x->w && x->cur_shard != gt->shard) QS_CHECK(close_shard(x, err));
    if (!x->w) {
        char fname[64];
        shard_name(x, gt->shard, fname, sizeof(fname));
        path = join_path(x->tmpdir, fname, err);
        if (!path) QS_THROW(err, QS_ERR_RUNTIME, "%s: out of memory", x->dir);
        QS_CHECK(qs_st_writer_open(&x->w, path, 1, err));
        x->cur_shard = gt->shard;
        for (int64_t k = t; k < x->ntensors && x->tensors[k].shard == gt->shard; ++k) {
            const gx_tensor *d = &x->tensors[k];
            QS_CHECK(qs_st_writer_declare(x->w, d->name, d->dt, d->ndim, d->shape, err));
        }
        QS_CHECK(qs_st_writer_begin(x->w, err));
    }
    QS_CHECK(qs_st_writer_put(x->w, gt->name, data, nbytes, err));
    if (t + 1 == x->ntensors || x->tensors[t + 1].shard != gt->shard) QS_CHECK(close_shard(x, err));
done:
    free(path);
    return st;
}

/* Common entry checks of add_*: returns the next item if it is `name` of the right kind. */
static qs_status next_item(qs_gptq_export *x, const char *name, int linear, gx_item **out,
                           qs_err *err) {
    qs_status st = QS_OK;
    *out = NULL;
    if (x->failed) QS_THROW(err, QS_ERR_INTERNAL, "%s: export used after an error", x->dir);
    if (x->finished) QS_THROW(err, QS_ERR_INTERNAL, "%s: export used after finish", x->dir);
    if (!x->frozen) QS_CHECK(freeze(x, err));
    if (x->next_item >= x->nitems)
        QS_THROW(err, QS_ERR_INPUT, "%s: '%s' written after every declared item", x->dir, name);
    gx_item *it = &x->items[x->next_item];
    if (strcmp(it->name, name) != 0)
        QS_THROW(err, QS_ERR_INPUT, "%s: '%s' written while '%s' is the next declared item",
                 x->dir, name, it->name);
    if (it->linear != linear)
        QS_THROW(err, QS_ERR_INPUT, "%s: '%s' was declared as a %s", x->dir, name,
                 it->linear ? "quantized linear" : "plain tensor");
    *out = it;
done:
    return st;
}

qs_status qs_gptq_export_add_linear(qs_gptq_export *x, const char *module,
                                    const qs_gptq_linear *q, qs_err *err) {
    qs_status st = QS_OK;
    int32_t *qweight = NULL, *qzeros = NULL, *g_idx = NULL;
    uint16_t *scales = NULL;
    gx_item *it = NULL;
    qs_err pe = {0};
    qs_pack_bytes sz;
    QS_CHECK(next_item(x, module, 1, &it, err));
    const qs_gptq_scheme *s = &it->scheme;
    const int64_t d_out = it->d_out, d_in = it->d_in;
    if (it->has_bias != (q->bias != NULL))
        QS_THROW(err, QS_ERR_INPUT, "%s: bias %s but %s declared", module,
                 q->bias ? "given" : "missing", it->has_bias ? "one was" : "none was");
    if (!s->desc_act) {
        for (int64_t j = 0; j < d_in; ++j)
            if (q->g_idx[j] != (s->group_size < 1 ? 0 : (int32_t)(j / s->group_size)))
                QS_THROW(err, QS_ERR_INPUT,
                         "%s: g_idx[%lld] = %d is not the natural group but desc_act is false "
                         "(loaders would ignore g_idx)",
                         module, (long long)j, q->g_idx[j]);
    }
    if (qs_pack_sizes(d_out, d_in, s->bits, s->group_size, &sz, &pe) != QS_OK)
        QS_THROW(err, pe.code, "%s: %s", module, pe.msg);
    qweight = qs_malloc((size_t)sz.qweight, err, "qweight");  /* (d_in*b/32, d_out) */
    qzeros = qs_malloc((size_t)sz.qzeros, err, "qzeros");     /* (G, d_out*b/32) */
    scales = qs_malloc((size_t)sz.scales, err, "scales");     /* (G, d_out) */
    g_idx = qs_malloc((size_t)sz.g_idx, err, "g_idx");        /* (d_in,) */
    if (!qweight || !qzeros || !scales || !g_idx)
        QS_THROW(err, QS_ERR_RUNTIME, "%s: out of memory packing %lld bytes", module,
                 (long long)sz.total);
    if (qs_pack_gptq(q->codes, q->scales, q->zeros, q->g_idx, d_out, d_in, s->bits,
                     s->group_size, !x->opts.v2, qweight, qzeros, scales, g_idx, &pe) != QS_OK)
        QS_THROW(err, pe.code, "%s: %s", module, pe.msg);
    const int64_t t = it->t0;
    QS_CHECK(put_tensor(x, t + 0, qweight, (size_t)sz.qweight, err));
    QS_CHECK(put_tensor(x, t + 1, qzeros, (size_t)sz.qzeros, err));
    QS_CHECK(put_tensor(x, t + 2, scales, (size_t)sz.scales, err));
    QS_CHECK(put_tensor(x, t + 3, g_idx, (size_t)sz.g_idx, err));
    if (it->has_bias)
        QS_CHECK(put_tensor(x, t + 4, q->bias, (size_t)x->tensors[t + 4].nbytes, err));
    x->next_item++;
done:
    if (st != QS_OK && it) x->failed = 1;
    free(qweight);
    free(qzeros);
    free(scales);
    free(g_idx);
    return st;
}

qs_status qs_gptq_export_add_tensor(qs_gptq_export *x, const char *name, const void *data,
                                    size_t nbytes, qs_err *err) {
    qs_status st = QS_OK;
    gx_item *it = NULL;
    QS_CHECK(next_item(x, name, 0, &it, err));
    QS_CHECK(put_tensor(x, it->t0, data, nbytes, err));
    x->next_item++;
done:
    if (st != QS_OK && it) x->failed = 1;
    return st;
}

/* ---- configs and the final rename ---------------------------------------------------- */

int qs_gptq_scheme_marlin(const qs_gptq_scheme *s) {
    /* vLLM gptq_marlin.py TYPE_MAP keys and marlin_utils' supported group sizes */
    const int gs_ok = s->group_size == -1 || s->group_size == 32 || s->group_size == 64 ||
                      s->group_size == 128;
    return (s->bits == 4 || s->bits == 8) && s->sym && gs_ok;
}

static cJSON *scheme_json(const qs_gptq_scheme *s) {
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    if (!cJSON_AddNumberToObject(o, "bits", s->bits) ||
        !cJSON_AddNumberToObject(o, "group_size", s->group_size) ||
        !cJSON_AddBoolToObject(o, "desc_act", s->desc_act) ||
        !cJSON_AddBoolToObject(o, "sym", s->sym)) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

/* The quantization_config object (also the body of quantize_config.json). */
static qs_status quant_config(const qs_gptq_export *x, cJSON **out, qs_err *err) {
    qs_status st = QS_OK;
    cJSON *o = NULL;
    *out = NULL;
    /* Top-level scheme. vLLM picks its kernel from the top-level fields alone
     * (GPTQMarlinConfig.override_quantization_method -> is_gptq_marlin_compatible, vLLM
     * vllm/model_executor/layers/quantization/gptq_marlin.py): bits/sym in {(4, true),
     * (8, true)} and a Marlin group size select gptq_marlin, whose per-module config
     * (TYPE_MAP[(bits, sym)]) rejects any other `dynamic` scheme. So when some linear is
     * not Marlin-servable, the top level must not be either: it is then the most used
     * scheme among the non-Marlin ones, and vLLM takes its gptq path, which loads every
     * scheme of the allocation. Otherwise: the most used scheme (ties: first declared). */
    int all_marlin = 1;
    for (int64_t i = 0; i < x->nitems; ++i)
        if (x->items[i].linear && !qs_gptq_scheme_marlin(&x->items[i].scheme)) all_marlin = 0;
    const gx_item *top = NULL;
    int64_t top_count = 0, nlin = 0;
    for (int64_t i = 0; i < x->nitems; ++i) {
        const gx_item *a = &x->items[i];
        if (!a->linear) continue;
        nlin++;
        if (!all_marlin && qs_gptq_scheme_marlin(&a->scheme)) continue;
        int64_t c = 0;
        for (int64_t j = 0; j < x->nitems; ++j)
            if (x->items[j].linear && scheme_eq(&a->scheme, &x->items[j].scheme)) c++;
        if (c > top_count) {
            top = a;
            top_count = c;
        }
    }

    if (!top) QS_THROW(err, QS_ERR_INPUT, "%s: no quantized linear to export", x->dir);
    o = cJSON_CreateObject();
    if (!o) QS_THROW(err, QS_ERR_RUNTIME, "%s: out of memory (config)", x->dir);
    int lm_head = 0; /* vLLM and GPTQModel read "lm_head": is lm_head a GPTQ linear? */
    for (int64_t i = 0; i < x->nitems; ++i) {
        const char *n = x->items[i].name, *dot = strrchr(n, '.');
        if (x->items[i].linear && strcmp(dot ? dot + 1 : n, "lm_head") == 0) lm_head = 1;
    }
    int ok = cJSON_AddNumberToObject(o, "bits", top->scheme.bits) &&
             cJSON_AddNumberToObject(o, "group_size", top->scheme.group_size) &&
             cJSON_AddBoolToObject(o, "desc_act", top->scheme.desc_act) &&
             cJSON_AddBoolToObject(o, "sym", top->scheme.sym) &&
             cJSON_AddBoolToObject(o, "static_groups", x->opts.static_groups) &&
             cJSON_AddBoolToObject(o, "true_sequential", x->opts.true_sequential) &&
             cJSON_AddNumberToObject(o, "damp_percent", x->opts.damp_percent) &&
             cJSON_AddBoolToObject(o, "lm_head", lm_head) &&
             cJSON_AddStringToObject(o, "quant_method", "gptq") &&
             cJSON_AddStringToObject(o, "checkpoint_format", x->opts.v2 ? "gptq_v2" : "gptq");
    if (!ok) QS_THROW(err, QS_ERR_RUNTIME, "%s: out of memory (config)", x->dir);
    if (top_count < nlin || x->nexcl > 0) {
        /* mixed: one key per module or fused group, so every module resolves explicitly;
         * float modules first as "-:" keys (loaders then leave them unquantized) */
        cJSON *dyn = cJSON_AddObjectToObject(o, "dynamic");
        if (!dyn) QS_THROW(err, QS_ERR_RUNTIME, "%s: out of memory (config)", x->dir);
        for (int64_t k = 0; k < x->nexcl; ++k) {
            cJSON *v = cJSON_CreateObject();
            if (!v) QS_THROW(err, QS_ERR_RUNTIME, "%s: out of memory (config)", x->dir);
            cJSON_AddItemToObject(dyn, x->excl[k], v);
        }
        for (int64_t i = 0; i < x->nitems; ++i) {
            const gx_item *a = &x->items[i];
            if (!a->linear || cJSON_GetObjectItemCaseSensitive(dyn, a->key)) continue;
            cJSON *v = scheme_json(&a->scheme);
            if (!v) QS_THROW(err, QS_ERR_RUNTIME, "%s: out of memory (config)", x->dir);
            cJSON_AddItemToObject(dyn, a->key, v);
        }
    }
    *out = o;
    o = NULL;
done:
    cJSON_Delete(o);
    return st;
}

static qs_status write_json(const char *dir, const char *fname, const cJSON *j, qs_err *err) {
    qs_status st = QS_OK;
    char *path = join_path(dir, fname, err), *text = NULL, *buf = NULL;
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

static qs_status write_index(const qs_gptq_export *x, qs_err *err) {
    qs_status st = QS_OK;
    cJSON *root = cJSON_CreateObject(), *meta = NULL, *map = NULL;
    char num[32], fname[64];
    if (!root) QS_THROW(err, QS_ERR_RUNTIME, "%s: out of memory (index)", x->dir);
    meta = cJSON_AddObjectToObject(root, "metadata");
    snprintf(num, sizeof(num), "%llu", (unsigned long long)x->data_bytes);
    if (!meta || !cJSON_AddRawToObject(meta, "total_size", num))
        QS_THROW(err, QS_ERR_RUNTIME, "%s: out of memory (index)", x->dir);
    map = cJSON_AddObjectToObject(root, "weight_map");
    if (!map) QS_THROW(err, QS_ERR_RUNTIME, "%s: out of memory (index)", x->dir);
    for (int64_t t = 0; t < x->ntensors; ++t) {
        shard_name(x, x->tensors[t].shard, fname, sizeof(fname));
        if (!cJSON_AddStringToObject(map, x->tensors[t].name, fname))
            QS_THROW(err, QS_ERR_RUNTIME, "%s: out of memory (index)", x->dir);
    }
    QS_CHECK(write_json(x->tmpdir, "model.safetensors.index.json", root, err));
done:
    cJSON_Delete(root);
    return st;
}

static qs_status write_configs(const qs_gptq_export *x, qs_err *err) {
    qs_status st = QS_OK;
    char *src_cfg = NULL, *text = NULL;
    cJSON *cfg = NULL, *qc = NULL;
    src_cfg = join_path(x->src, "config.json", err);
    if (!src_cfg) QS_THROW(err, QS_ERR_RUNTIME, "%s: out of memory", x->dir);
    QS_CHECK(read_text(src_cfg, &text, err));
    cfg = cJSON_Parse(text);
    if (!cfg || !cJSON_IsObject(cfg))
        QS_THROW(err, QS_ERR_INPUT, "%s: not a JSON object", src_cfg);
    QS_CHECK(quant_config(x, &qc, err));
    QS_CHECK(write_json(x->tmpdir, "quantize_config.json", qc, err));
    cJSON_DeleteItemFromObjectCaseSensitive(cfg, "quantization_config");
    cJSON_AddItemToObject(cfg, "quantization_config", qc);
    qc = NULL; /* owned by cfg now */
    QS_CHECK(write_json(x->tmpdir, "config.json", cfg, err));
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

static qs_status copy_side_files(const qs_gptq_export *x, qs_err *err) {
    qs_status st = QS_OK;
    DIR *d = opendir(x->src);
    char *from = NULL, *to = NULL;
    if (!d) QS_THROW(err, QS_ERR_INPUT, "%s: cannot open directory: %s", x->src, strerror(errno));
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        if (!copied_name(e->d_name)) continue;
        from = join_path(x->src, e->d_name, err);
        to = join_path(x->tmpdir, e->d_name, err);
        if (!from || !to) QS_THROW(err, QS_ERR_RUNTIME, "%s: out of memory", x->dir);
        struct stat sb;
        if (stat(from, &sb) == 0 && S_ISREG(sb.st_mode)) QS_CHECK(copy_file(from, to, err));
        free(from);
        free(to);
        from = to = NULL;
    }
done:
    if (d) closedir(d);
    free(from);
    free(to);
    return st;
}

qs_status qs_gptq_export_finish(qs_gptq_export *x, qs_err *err) {
    qs_status st = QS_OK;
    char *old = NULL, *parent = NULL;
    if (x->failed) QS_THROW(err, QS_ERR_INTERNAL, "%s: export finished after an error", x->dir);
    if (x->finished) QS_THROW(err, QS_ERR_INTERNAL, "%s: export finished twice", x->dir);
    if (!x->frozen) QS_CHECK(freeze(x, err));
    if (x->next_item < x->nitems)
        QS_THROW(err, QS_ERR_INPUT, "%s: '%s' was declared but never written", x->dir,
                 x->items[x->next_item].name);
    QS_CHECK(close_shard(x, err));
    if (x->nshards > 1) QS_CHECK(write_index(x, err));
    QS_CHECK(write_configs(x, err));
    QS_CHECK(copy_side_files(x, err));
    QS_CHECK(qs_st_fsync_dir(x->tmpdir, err));
    if (path_exists(x->dir)) {
        /* overwrite (checked at begin): move the old export aside, then remove it */
        if (!x->opts.overwrite)
            QS_THROW(err, QS_ERR_INPUT, "%s: appeared during the export", x->dir);
        size_t n = strlen(x->dir) + 32;
        old = qs_malloc(n, err, "path");
        if (!old) QS_THROW(err, QS_ERR_RUNTIME, "%s: out of memory", x->dir);
        snprintf(old, n, "%s.old.%ld", x->dir, (long)getpid());
        if (rename(x->dir, old) != 0)
            QS_THROW(err, QS_ERR_RUNTIME, "%s: cannot move aside: %s", x->dir, strerror(errno));
    }
    if (rename(x->tmpdir, x->dir) != 0)
        QS_THROW(err, QS_ERR_RUNTIME, "%s: rename from %s failed: %s", x->dir, x->tmpdir,
                 strerror(errno));
    x->finished = 1;
    x->tmp_made = 0;
    parent = dup_str(x->dir, err);
    if (!parent) QS_THROW(err, QS_ERR_RUNTIME, "%s: out of memory", x->dir);
    char *slash = strrchr(parent, '/');
    if (slash == parent) slash[1] = '\0';
    else if (slash) *slash = '\0';
    else strcpy(parent, ".");
    QS_CHECK(qs_st_fsync_dir(parent, err));
    if (old && remove_tree(old) != 0)
        QS_THROW(err, QS_ERR_RUNTIME, "%s: the previous export could not be removed", old);
done:
    if (st != QS_OK && !x->finished) x->failed = 1;
    free(old);
    free(parent);
    return st;
}

void qs_gptq_export_free(qs_gptq_export *x) {
    if (!x) return;
    qs_st_writer_free(x->w); /* unlinks an unfinished shard */
    if (x->tmp_made && !x->finished) remove_tree(x->tmpdir);
    for (int64_t i = 0; i < x->nitems; ++i) {
        free(x->items[i].name);
        free(x->items[i].key);
    }
    for (int64_t t = 0; t < x->ntensors; ++t) free(x->tensors[t].name);
    for (int64_t k = 0; k < x->nexcl; ++k) free(x->excl[k]);
    free(x->excl);
    free(x->items);
    free(x->tensors);
    free(x->dir);
    free(x->tmpdir);
    free(x->src);
    free(x);
}
