/* config.c: the run configuration. One schema table (cfg_schema) drives parsing of the
 * YAML file (libyaml event stream, never the document loader), `--set` overrides,
 * defaults, the resolved dump and the key list of docs/config.md.
 *
 * Errors are QS_ERR_INPUT with one line: "<file>:<line>:<col>: <key>: <cause>" for the
 * file, "--set <key>: <cause>" for overrides, "<file>: <cause>" for whole-file rules.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <yaml.h>

/* ---------------------------------------------------------------------------------- */
/* schema                                                                               */

typedef enum cfg_kind {
    CFG_STRING,   /* char *, any scalar */
    CFG_PATH,     /* char *, relative paths resolved (file dir / cwd) to absolute */
    CFG_INT,      /* int */
    CFG_I64,      /* int64_t */
    CFG_U64,      /* uint64_t */
    CFG_SIZE,     /* int64_t bytes; accepts 70GB / 12GiB / plain bytes */
    CFG_FLOAT,    /* double */
    CFG_BOOL,     /* int 0/1; true/false only */
    CFG_ENUM,     /* C enum stored as int; value = index into names */
    CFG_STRENUM,  /* char *, one of names (may include "") */
    CFG_INTLIST,  /* int[QS_MAX_CANDIDATE_LIST] + int count */
    CFG_STRLIST   /* char *[QS_MAX_CANDIDATE_LIST] + int count (may be empty) */
} cfg_kind;

typedef struct cfg_key {
    const char *key;           /* full path "section.leaf" */
    cfg_kind kind;
    int64_t min, max;          /* integer kinds: inclusive range */
    double fmin, fmax;         /* CFG_FLOAT: inclusive range */
    int no_zero;               /* integer kinds: 0 is refused even inside [min, max] */
    const char *def;           /* default, as YAML text */
    const char *const *names;  /* CFG_ENUM / CFG_STRENUM: valid values, NULL-terminated */
    size_t off;                /* offsetof(qs_config, field) */
    size_t count_off;          /* CFG_INTLIST / CFG_STRLIST: offsetof the count */
    int required;              /* must be set (non-empty) after load */
    int runtime;               /* left out of dump(include_runtime = 0) */
    const char *doc;           /* one line for docs/config.md */
} cfg_key;

static const char *const k_sampling[] = {"random", "consecutive", "file", NULL};
static const char *const k_method[] = {"gptq", "rtn", NULL};
static const char *const k_inputs[] = {"float", "quantized", NULL};
static const char *const k_objective[] = {"error", "relative", "sensitivity", "kl", NULL};
static const char *const k_serve[] = {"", "marlin", "llamacpp", "vllm", "gptqmodel", NULL};
static const char *const k_chooser[] = {"search", "imatrix", "ref", NULL};
static const char *const k_format[] = {"gptq", "gptq_v2", "auto", NULL};

_Static_assert(sizeof(qs_calib_sampling) == sizeof(int), "enum stored as int");
_Static_assert(sizeof(qs_quant_method) == sizeof(int), "enum stored as int");
_Static_assert(sizeof(qs_recon_inputs) == sizeof(int), "enum stored as int");
_Static_assert(sizeof(qs_objective) == sizeof(int), "enum stored as int");
_Static_assert(sizeof(qs_ckpt_format) == sizeof(int), "enum stored as int");

#define QS_CONFIG_MAX_BYTES (16 << 20) /* a config file larger than this is refused */

#define OFF(f) offsetof(qs_config, f)
#define BIG ((int64_t)1 << 40)

static const cfg_key cfg_schema[] = {
    {"model", CFG_PATH, 0, 0, 0, 0, 0, "\"\"", NULL, OFF(model), 0, 1, 0,
     "model directory (Hugging Face layout: config.json, *.safetensors); required"},
    {"run_dir", CFG_PATH, 0, 0, 0, 0, 0, "\"\"", NULL, OFF(run_dir), 0, 1, 0,
     "run directory holding every stage's outputs; required"},
    {"tokenizer", CFG_PATH, 0, 0, 0, 0, 0, "\"\"", NULL, OFF(tokenizer), 0, 0, 0,
     "the model's tokenizer (tokenizer.json, or a directory holding it and "
     "tokenizer_config.json) for calib.text / eval.text; \"\" = the model directory"},
    {"threads", CFG_INT, 0, 4096, 0, 0, 0, "0", NULL, OFF(threads), 0, 0, 1,
     "threads per rank, read as 0 = SLURM_CPUS_PER_TASK, else OMP_NUM_THREADS, else 1; "
     "an explicit value wins; every heavy loop runs on these threads over fixed tiles, so "
     "results do not depend on it (docs/slurm.md)"},

    {"calib.tokens", CFG_PATH, 0, 0, 0, 0, 0, "\"\"", NULL, OFF(calib.tokens), 0, 0, 0,
     "calibration token file (.u32 / .u16); this or calib.text is required"},
    {"calib.text", CFG_PATH, 0, 0, 0, 0, 0, "\"\"", NULL, OFF(calib.text), 0, 0, 0,
     "calibration text instead of calib.tokens: a .txt file (documents separated by blank "
     "lines), a .jsonl file (one document per line in calib.text_field) or a directory of "
     "them; tokenized with `tokenizer`, documents joined as docs/text.md says"},
    {"calib.text_field", CFG_STRING, 0, 0, 0, 0, 0, "text", NULL, OFF(calib.text_field), 0, 0,
     0, "the field of a .jsonl document that holds its text"},
    {"calib.nsamples", CFG_I64, 1, BIG, 0, 0, 0, "128", NULL, OFF(calib.nsamples), 0, 0, 0,
     "number of calibration windows"},
    {"calib.seqlen", CFG_I64, 1, (int64_t)1 << 24, 0, 0, 0, "2048", NULL, OFF(calib.seqlen), 0,
     0, 0, "tokens per calibration window"},
    {"calib.sampling", CFG_ENUM, 0, 0, 0, 0, 0, "random", k_sampling, OFF(calib.sampling), 0, 0,
     0,
     "window placement: random (offsets drawn from calib.seed), consecutive (back to back "
     "from offset 0), file (one start offset per line of calib.offsets_file)"},
    {"calib.offsets_file", CFG_PATH, 0, 0, 0, 0, 0, "\"\"", NULL, OFF(calib.offsets_file), 0, 0,
     0, "window start offsets, one per line; required when calib.sampling is file"},
    {"calib.seed", CFG_U64, 0, 0, 0, 0, 0, "0", NULL, OFF(calib.seed), 0, 0, 0,
     "seed of the random window offsets"},
    {"calib.chunk_samples", CFG_I64, 1, (int64_t)1 << 20, 0, 0, 0, "8", NULL,
     OFF(calib.chunk_samples), 0, 0, 0, "samples per (layer, chunk) forward step"},
    {"calib.checkpoint_every", CFG_I64, 1, BIG, 0, 0, 0, "16", NULL, OFF(calib.checkpoint_every),
     0, 0, 0, "chunks between collective checkpoints of the calibration state"},
    {"calib.replicas", CFG_INT, 0, 1 << 20, 0, 0, 0, "0", NULL, OFF(calib.replicas), 0, 0, 1,
     "calibrate's data-parallel pipelines (each takes every replicas-th chunk; stages = "
     "min(layers, ranks / replicas)); 0 = chosen by the plan, more than one only when ranks "
     "exceed layers; results do not depend on it (docs/calibrate.md)"},

    {"quant.method", CFG_ENUM, 0, 0, 0, 0, 0, "gptq", k_method, OFF(quant.method), 0, 0, 0,
     "reconstruction method: gptq or rtn (round to nearest)"},
    {"quant.bits", CFG_INTLIST, 2, 8, 0, 0, 0, "[4]", NULL, OFF(quant.bits), OFF(quant.nbits), 0,
     0, "candidate bit widths (a list, or one integer)"},
    {"quant.group_size", CFG_INTLIST, -1, (int64_t)1 << 20, 0, 0, 1, "[128]", NULL,
     OFF(quant.group_size), OFF(quant.ngroup_size), 0, 0,
     "candidate group sizes; -1 = one group per row (a list, or one integer)"},
    {"quant.sym", CFG_BOOL, 0, 0, 0, 0, 0, "false", NULL, OFF(quant.sym), 0, 0, 0,
     "symmetric quantization (zero point fixed at the middle)"},
    {"quant.act_order", CFG_BOOL, 0, 0, 0, 0, 0, "false", NULL, OFF(quant.act_order), 0, 0, 0,
     "GPTQ columns in order of decreasing diag(H) (desc_act)"},
    {"quant.static_groups", CFG_BOOL, 0, 0, 0, 0, 0, "false", NULL, OFF(quant.static_groups), 0,
     0, 0, "group scales computed before GPTQ updates (with act_order)"},
    {"quant.damp", CFG_FLOAT, 0, 0, 0.0, 10.0, 0, "0.01", NULL, OFF(quant.damp), 0, 0, 0,
     "dampening added to diag(H), as a fraction of its mean"},
    {"quant.damp_max", CFG_FLOAT, 0, 0, 0.0, 100.0, 0, "1.0", NULL, OFF(quant.damp_max), 0, 0, 0,
     "cap when the dampening is raised automatically for a non-positive-definite H; "
     ">= quant.damp"},
    {"quant.block_size", CFG_INT, 1, 65536, 0, 0, 0, "128", NULL, OFF(quant.block_size), 0, 0, 0,
     "GPTQ lazy-update column block"},
    {"quant.row_block", CFG_INT, 1, (int64_t)1 << 20, 0, 0, 0, "256", NULL, OFF(quant.row_block),
     0, 0, 0, "rows per fixed solve tile (results do not depend on ranks or threads)"},
    {"quant.gguf_types", CFG_STRLIST, 0, 0, 0, 0, 0, "[]", NULL, OFF(quant.gguf_types),
     OFF(quant.ngguf_types), 0, 0,
     "GGUF candidates by GGML type name (Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q2_K Q3_K Q4_K Q5_K Q6_K), "
     "quantized into llama.cpp's block formats by quant.method (docs/export.md)"},
    {"quant.gguf_chooser", CFG_STRENUM, 0, 0, 0, 0, 0, "search", k_chooser,
     OFF(quant.gguf_chooser), 0, 0, 0,
     "how GGUF block scales/mins are chosen: search (llama.cpp's importance fit, then a search "
     "of the K-quants' sub-block codes), imatrix (llama.cpp's rule with diag(H) as importance), "
     "ref (llama.cpp's rule without importance); quant.method rtn: llama.cpp's quantizer with "
     "importance diag(H), or without for ref"},

    {"reconstruct.inputs", CFG_ENUM, 0, 0, 0, 0, 0, "quantized", k_inputs,
     OFF(reconstruct.inputs), 0, 0, 0,
     "Hessians from float (unquantized model) or quantized (layer l sees quantized layers "
     "before it) inputs"},
    {"reconstruct.propagate", CFG_STRING, 0, 0, 0, 0, 0, "\"\"", NULL, OFF(reconstruct.propagate),
     0, 0, 0,
     "candidate (e.g. \"w4g128\") whose output feeds the next layer in the measure pass; "
     "\"\" = the largest whose exact bpw fits the search budget"},
    {"reconstruct.rtn_baseline", CFG_BOOL, 0, 0, 0, 0, 0, "false", NULL,
     OFF(reconstruct.rtn_baseline), 0, 0, 0,
     "also record each candidate's round-to-nearest error under the same Hessian "
     "(table/error_rtn: the GPTQ-vs-RTN comparison; GGUF: llama.cpp's importance RTN); costs "
     "one d_out x d_in^2 product per linear and candidate, so off by default (NaN in the "
     "table)"},

    {"search.target_bpw", CFG_FLOAT, 0, 0, 0.0, 64.0, 0, "0", NULL, OFF(search.target_bpw), 0, 0,
     0, "target average bits per quantized weight, GPTQ payload overhead (scales, zeros, g_idx) "
     "included; 0 = unset"},
    {"search.max_bytes", CFG_SIZE, 0, INT64_MAX, 0, 0, 0, "0", NULL, OFF(search.max_bytes), 0, 0,
     0, "budget of the whole output in bytes: GPTQ payload + unquantized tensors (70GB, 12GiB "
     "or plain bytes); 0 = unset"},
    {"search.objective", CFG_ENUM, 0, 0, 0, 0, 0, "sensitivity", k_objective, OFF(search.objective), 0,
     0, 0,
     "what the search minimises: error (summed GPTQ error), relative (error / tr(W H W^T)), "
     "sensitivity (measured end-to-end sensitivity x error), kl (measured KL divergence of "
     "the next-token distribution per item and candidate, docs/search.md)"},
    {"search.tie_fused", CFG_BOOL, 0, 0, 0, 0, 0, "true", NULL, OFF(search.tie_fused), 0, 0, 0,
     "give fused projections (q/k/v, gate/up) the same candidate"},
    {"search.serve", CFG_STRENUM, 0, 0, 0, 0, 0, "\"\"", k_serve, OFF(search.serve), 0, 0, 0,
     "restrict candidates (and fused ties) to what an engine loads: \"\" (none), llamacpp "
     "(GGUF candidates only, no ties), vllm (4/8-bit symmetric; compressed-tensors also 4-bit "
     "asymmetric), gptqmodel (any GPTQ layout), marlin (4/8-bit symmetric for gptq_marlin)"},
    {"search.pin", CFG_STRLIST, 0, 0, 0, 0, 0, "[]", NULL, OFF(search.pin), OFF(search.npin), 0,
     0,
     "pinned linears: \"PATTERN=CAND\" strings; PATTERN is a glob over layers.<l>.<lin> "
     "(lin q k v o gate up down), e.g. \"layers.0.*=w8g128\" (docs/search.md)"},
    {"search.allow", CFG_STRLIST, 0, 0, 0, 0, 0, "[]", NULL, OFF(search.allow),
     OFF(search.nallow), 0, 0,
     "allowed candidates per linear: \"PATTERN=CAND,CAND,...\" strings, e.g. "
     "\"layers.*.down=w4g128,w8g128\"; several matching rules intersect"},
    {"search.probe_windows", CFG_I64, 1, (int64_t)1 << 20, 0, 0, 0, "8", NULL,
     OFF(search.probe_windows), 0, 0, 0,
     "objectives sensitivity and kl, and search.refine: calibration windows (calib.tokens, "
     "calib.seqlen, consecutive from 0) each probe measures"},
    {"search.refine", CFG_I64, 0, (int64_t)1 << 20, 0, 0, 0, "0", NULL, OFF(search.refine), 0,
     0, 0,
     "after the exact optimum, this many whole-model KL evaluations of neighbouring "
     "allocations at the same budget (one item a level up, others down until it fits), "
     "keeping any that lowers the measured KL; 0 = off (docs/search.md)"},
    {"search.refine_windows", CFG_I64, 0, (int64_t)1 << 20, 0, 0, 0, "0", NULL,
     OFF(search.refine_windows), 0, 0, 0,
     "calibration windows each search.refine evaluation measures (0 = search.probe_windows); "
     "more windows than the probes keep the refinement from fitting the probe windows' noise"},
    {"search.refine_seed", CFG_I64, 0, INT64_MAX, 0, 0, 0, "0", NULL, OFF(search.refine_seed),
     0, 0, 0, "seed of search.refine's neighbour choices"},

    {"output.formats", CFG_STRLIST, 0, 0, 0, 0, 0, "[gptq, hdf5]", NULL, OFF(output.formats),
     OFF(output.nformats), 0, 0,
     "files the write stage produces: any of gptq, gguf, compressed-tensors, hdf5 (the HDF5 "
     "shards are always written)"},
    {"output.checkpoint_format", CFG_ENUM, 0, 0, 0, 0, 0, "auto", k_format,
     OFF(output.checkpoint_format), 0, 0, 0,
     "GPTQ export format: gptq (v1, zeros stored minus one), gptq_v2, or auto (gptq_v2 when "
     "quant.sym is false, else gptq)"},
    {"output.gptq_export", CFG_BOOL, 0, 0, 0, 0, 0, "true", NULL, OFF(output.gptq_export), 0, 0,
     0, "false: no GPTQ export even when output.formats lists gptq (older spelling)"},
    {"output.gguf_tokenizer", CFG_PATH, 0, 0, 0, 0, 0, "\"\"", NULL, OFF(output.gguf_tokenizer),
     0, 0, 0,
     "tokenizer.model, tokenizer.json or a directory holding them, for the GGUF vocabulary; "
     "\"\" = the model directory's"},
    {"output.shard_bytes", CFG_SIZE, 1, INT64_MAX, 0, 0, 0, "4GiB", NULL, OFF(output.shard_bytes),
     0, 0, 0, "size limit of one output shard (70GB, 12GiB or plain bytes)"},

    {"eval.tokens", CFG_PATH, 0, 0, 0, 0, 0, "\"\"", NULL, OFF(eval.tokens), 0, 0, 0,
     "evaluation token file; \"\" (and no eval.text) = skip the eval stage"},
    {"eval.text", CFG_PATH, 0, 0, 0, 0, 0, "\"\"", NULL, OFF(eval.text), 0, 0, 0,
     "evaluation text instead of eval.tokens (as calib.text)"},
    {"eval.text_field", CFG_STRING, 0, 0, 0, 0, 0, "text", NULL, OFF(eval.text_field), 0, 0, 0,
     "the field of a .jsonl document that holds its text"},
    {"eval.seqlen", CFG_I64, 1, (int64_t)1 << 24, 0, 0, 0, "2048", NULL, OFF(eval.seqlen), 0, 0,
     0, "evaluation window length"},
    {"eval.max_windows", CFG_I64, 0, BIG, 0, 0, 0, "0", NULL, OFF(eval.max_windows), 0, 0, 0,
     "evaluate at most this many windows; 0 = all"},
    {"eval.float", CFG_BOOL, 0, 0, 0, 0, 0, "true", NULL, OFF(eval.eval_float), 0, 0, 0,
     "the eval stage also evaluates the unquantized model (eval-float.json) for comparison"},
};

#define NKEYS ((int)(sizeof(cfg_schema) / sizeof(cfg_schema[0])))

static const char *const cfg_sections[] = {"calib",  "quant",  "reconstruct",
                                           "search", "output", "eval"};
#define NSECTIONS ((int)(sizeof(cfg_sections) / sizeof(cfg_sections[0])))

int qs_config_nkeys(void) { return NKEYS; }

const char *qs_config_key_name(int i) { return (i >= 0 && i < NKEYS) ? cfg_schema[i].key : NULL; }

static int find_key(const char *key) {
    for (int i = 0; i < NKEYS; ++i)
        if (strcmp(cfg_schema[i].key, key) == 0) return i;
    return -1;
}

static int find_section(const char *key) {
    for (int i = 0; i < NSECTIONS; ++i)
        if (strcmp(cfg_sections[i], key) == 0) return i;
    return -1;
}

/* ---------------------------------------------------------------------------------- */
/* suggestions                                                                          */

/* Optimal string alignment distance (edits incl. adjacent transposition); capped at 64. */
static int edit_distance(const char *a, const char *b) {
    int d[65][65];
    int n = (int)strlen(a), m = (int)strlen(b);
    if (n > 64 || m > 64) return 64;
    for (int i = 0; i <= n; ++i) d[i][0] = i;
    for (int j = 0; j <= m; ++j) d[0][j] = j;
    for (int i = 1; i <= n; ++i)
        for (int j = 1; j <= m; ++j) {
            int c = a[i - 1] == b[j - 1] ? 0 : 1;
            int v = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < v) v = d[i][j - 1] + 1;
            if (d[i - 1][j - 1] + c < v) v = d[i - 1][j - 1] + c;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
                d[i - 2][j - 2] + 1 < v)
                v = d[i - 2][j - 2] + 1;
            d[i][j] = v;
        }
    return d[n][m];
}

static const char *leaf_of(const char *key) {
    const char *dot = strrchr(key, '.');
    return dot ? dot + 1 : key;
}

/* Nearest known key (full paths and sections by full-path distance, leaves by leaf
 * distance + 1), or NULL when nothing is close. */
static const char *suggest_key(const char *key) {
    const char *best = NULL;
    int bestd = 1 << 20;
    const char *leaf = leaf_of(key);
    for (int i = 0; i < NKEYS + NSECTIONS; ++i) {
        const char *cand = i < NKEYS ? cfg_schema[i].key : cfg_sections[i - NKEYS];
        int d = edit_distance(key, cand);
        int dl = edit_distance(leaf, leaf_of(cand)) + 1;
        if (dl < d) d = dl;
        if (d < bestd) {
            bestd = d;
            best = cand;
        }
    }
    int lim = ((int)strlen(leaf) + 2) / 3;
    if (lim < 2) lim = 2;
    return bestd <= lim ? best : NULL;
}

/* ---------------------------------------------------------------------------------- */
/* error context                                                                        */

typedef struct cfg_ctx {
    const char *file;   /* file name as given; NULL for --set */
    const char *base;   /* directory that relative paths resolve against (absolute) */
    qs_err *err;
} cfg_ctx;

/* Records "<file>:<line>:<col>: <body>" (file) or "--set <body>" (override). */
static qs_status ctx_fail(const cfg_ctx *ctx, const yaml_mark_t *mark, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
static qs_status ctx_fail(const cfg_ctx *ctx, const yaml_mark_t *mark, const char *fmt, ...) {
    char body[QS_ERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(body, sizeof(body), fmt, ap);
    va_end(ap);
    if (!ctx->file) return QS_FAIL(ctx->err, QS_ERR_INPUT, "--set %s", body);
    if (!mark) return QS_FAIL(ctx->err, QS_ERR_INPUT, "%s: %s", ctx->file, body);
    return QS_FAIL(ctx->err, QS_ERR_INPUT, "%s:%lu:%lu: %s", ctx->file,
                   (unsigned long)mark->line + 1, (unsigned long)mark->column + 1, body);
}

/* ---------------------------------------------------------------------------------- */
/* values                                                                               */

typedef struct cfg_scalar {
    char *text;        /* owned */
    int plain;         /* plain (unquoted, untagged) style */
    yaml_mark_t mark;
} cfg_scalar;

/* A value as read: one scalar, or a flat sequence of scalars. */
typedef struct cfg_value {
    int is_seq;
    int n;
    cfg_scalar items[QS_MAX_CANDIDATE_LIST]; /* (n,) */
    yaml_mark_t mark;
} cfg_value;

static void value_free(cfg_value *v) {
    for (int i = 0; i < v->n; ++i) free(v->items[i].text);
    memset(v, 0, sizeof(*v));
}

static int is_null(const cfg_scalar *s) {
    return s->plain && (s->text[0] == '\0' || strcmp(s->text, "~") == 0 ||
                        strcmp(s->text, "null") == 0 || strcmp(s->text, "Null") == 0 ||
                        strcmp(s->text, "NULL") == 0);
}

/* Decimal integer (optional sign, digits only). 0 = ok, 1 = not an integer, 2 = overflow. */
static int parse_i64(const char *s, int64_t *out) {
    const char *p = s;
    if (*p == '+' || *p == '-') ++p;
    if (!*p) return 1;
    if (p[0] == '0' && p[1]) return 1; /* 010: octal in YAML 1.1, refused */
    for (const char *q = p; *q; ++q)
        if (*q < '0' || *q > '9') return 1;
    errno = 0;
    char *end = NULL;
    long long v = strtoll(s, &end, 10);
    if (errno == ERANGE) return 2;
    if (*end) return 1;
    *out = (int64_t)v;
    return 0;
}

static int parse_u64(const char *s, uint64_t *out) {
    const char *p = s;
    if (*p == '+') ++p;
    if (!*p) return 1;
    if (p[0] == '0' && p[1]) return 1;
    for (const char *q = p; *q; ++q)
        if (*q < '0' || *q > '9') return 1;
    errno = 0;
    char *end = NULL;
    unsigned long long v = strtoull(p, &end, 10);
    if (errno == ERANGE) return 2;
    if (*end) return 1;
    *out = (uint64_t)v;
    return 0;
}

/* Byte size: "<digits>[.<digits>][ ]<unit>" with unit B, KB/MB/GB/TB (1000^k),
 * KiB/MiB/GiB/TiB (1024^k), or plain digits. 0 = ok, 1 = malformed, 2 = too large. */
static int parse_size(const char *s, int64_t *out) {
    const char *p = s;
    uint64_t ip = 0;
    int nd = 0;
    while (*p >= '0' && *p <= '9') {
        if (ip > (UINT64_MAX - 9) / 10) return 2;
        ip = ip * 10 + (uint64_t)(*p - '0');
        ++p;
        ++nd;
    }
    if (nd == 0) return 1;
    char frac[20] = {0};
    int nf = 0;
    if (*p == '.') {
        ++p;
        while (*p >= '0' && *p <= '9') {
            if (nf < 18) frac[nf++] = *p;
            ++p;
        }
        if (nf == 0) return 1;
    }
    while (*p == ' ') ++p;
    static const struct { const char *u; uint64_t mul; } units[] = {
        {"", 1},
        {"B", 1},
        {"KB", 1000ull},
        {"MB", 1000000ull},
        {"GB", 1000000000ull},
        {"TB", 1000000000000ull},
        {"KiB", 1ull << 10},
        {"MiB", 1ull << 20},
        {"GiB", 1ull << 30},
        {"TiB", 1ull << 40},
    };
    uint64_t mul = 0;
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); ++i)
        if (strcmp(p, units[i].u) == 0) mul = units[i].mul;
    if (mul == 0) return 1;
    if (nf > 0 && mul == 1) return 1; /* fractional bytes */
    if (ip > (uint64_t)INT64_MAX / mul) return 2;
    uint64_t v = ip * mul;
    if (nf > 0) {
        /* fraction * mul, exact: frac digits as an integer over 10^nf */
        uint64_t fnum = 0, fden = 1;
        for (int i = 0; i < nf; ++i) {
            fnum = fnum * 10 + (uint64_t)(frac[i] - '0');
            fden *= 10;
        }
        /* mul <= 2^40 and fnum < 10^18 could overflow: divide in long double */
        long double fv = (long double)fnum * (long double)mul / (long double)fden;
        uint64_t add = (uint64_t)(fv + 0.5L);
        if (add > (uint64_t)INT64_MAX - v) return 2;
        v += add;
    }
    if (v > (uint64_t)INT64_MAX) return 2;
    *out = (int64_t)v;
    return 0;
}

static const char *kind_name(cfg_kind k) {
    switch (k) {
    case CFG_STRING: return "a string";
    case CFG_PATH: return "a path";
    case CFG_INT:
    case CFG_I64:
    case CFG_U64: return "an integer";
    case CFG_SIZE: return "a byte size";
    case CFG_FLOAT: return "a number";
    case CFG_BOOL: return "true or false";
    case CFG_ENUM:
    case CFG_STRENUM: return "one of the listed values";
    case CFG_INTLIST: return "a list of integers";
    case CFG_STRLIST: return "a list of strings";
    }
    return "a value";
}

static void names_text(const char *const *names, char *buf, size_t cap) {
    size_t len = 0;
    buf[0] = '\0';
    for (int i = 0; names[i]; ++i) {
        int k = snprintf(buf + len, cap - len, "%s'%s'", i ? ", " : "", names[i]);
        if (k < 0 || (size_t)k >= cap - len) break;
        len += (size_t)k;
    }
}

static void range_text(const cfg_key *k, char *buf, size_t cap) {
    if (k->no_zero && k->min < 0)
        snprintf(buf, cap, "%lld or 1..%lld", (long long)k->min, (long long)k->max);
    else if (k->max == INT64_MAX)
        snprintf(buf, cap, ">= %lld", (long long)k->min);
    else
        snprintf(buf, cap, "%lld..%lld", (long long)k->min, (long long)k->max);
}

/* Joins `base` (absolute, symlink-free: from realpath/getcwd) and `rel` (relative).
 * Leading ".." of rel remove components of base (exact, since base has no symlinks);
 * "." components and doubled slashes are dropped; any later ".." is kept as written
 * (its parent may be a symlink). Absolute or empty `rel` is returned unchanged. */
static char *join_path(const char *base, const char *rel, qs_err *err) {
    if (rel[0] == '/' || rel[0] == '\0' || !base) {
        char *s = strdup(rel);
        if (!s) QS_FAIL(err, QS_ERR_RUNTIME, "out of memory (config path)");
        return s;
    }
    size_t n = strlen(base) + strlen(rel) + 3;
    char *out = qs_malloc(n, err, "config path");
    if (!out) return NULL;
    size_t o = strlen(base);
    memcpy(out, base, o + 1);
    while (o > 1 && out[o - 1] == '/') out[--o] = '\0';
    int leading = 1; /* still in the run of leading "." / ".." components */
    const char *p = rel;
    while (*p) {
        while (*p == '/') ++p;
        const char *e = p;
        while (*e && *e != '/') ++e;
        size_t len = (size_t)(e - p);
        if (len == 0) break;
        if (len == 1 && p[0] == '.') {
            /* dropped */
        } else if (leading && len == 2 && p[0] == '.' && p[1] == '.') {
            while (o > 1 && out[o - 1] != '/') --o; /* pop the last component */
            if (o > 1) --o;                           /* and its slash, unless root */
            out[o] = '\0';
        } else {
            leading = 0;
            if (o > 0 && out[o - 1] != '/') out[o++] = '/';
            memcpy(out + o, p, len);
            o += len;
            out[o] = '\0';
        }
        p = e;
    }
    if (rel[strlen(rel) - 1] == '/' && out[o - 1] != '/') out[o++] = '/';
    out[o] = '\0';
    return out;
}

static qs_status set_string(char **slot, char *value) {
    free(*slot);
    *slot = value;
    return QS_OK;
}

/* Checks an integer against the row's range; `what` is the key. */
static qs_status check_int_range(const cfg_ctx *ctx, const cfg_key *k, const cfg_scalar *s,
                                 int64_t v) {
    if (v < k->min || v > k->max || (k->no_zero && v == 0)) {
        char r[96];
        range_text(k, r, sizeof(r));
        return ctx_fail(ctx, &s->mark, "%s: %s is out of range (allowed: %s)", k->key, s->text,
                        r);
    }
    return QS_OK;
}

static qs_status scalar_int(const cfg_ctx *ctx, const cfg_key *k, const cfg_scalar *s,
                            int64_t *out) {
    if (!s->plain)
        return ctx_fail(ctx, &s->mark, "%s: expected an integer, got the string \"%s\"", k->key,
                        s->text);
    int rc = parse_i64(s->text, out);
    if (rc == 1)
        return ctx_fail(ctx, &s->mark, "%s: expected an integer, got '%s'", k->key, s->text);
    if (rc == 2) {
        char r[96];
        range_text(k, r, sizeof(r));
        return ctx_fail(ctx, &s->mark, "%s: %s is out of range (allowed: %s)", k->key, s->text,
                        r);
    }
    return check_int_range(ctx, k, s, *out);
}

/* A list of strings (CFG_STRLIST) into its slots and count; the old strings are freed. */
static qs_status apply_strlist(const cfg_ctx *ctx, const cfg_key *k, const cfg_value *v,
                               qs_config *cfg) {
    char *vals[QS_MAX_CANDIDATE_LIST];
    char **slots = (char **)((char *)cfg + k->off);
    int *count = (int *)((char *)cfg + k->count_off);
    if (!v->is_seq && is_null(&v->items[0]))
        return ctx_fail(ctx, &v->mark, "%s: no value given (write [] for an empty list)",
                        k->key);
    for (int i = 0; i < v->n; ++i) {
        vals[i] = strdup(v->items[i].text);
        if (!vals[i]) {
            for (int j = 0; j < i; ++j) free(vals[j]);
            return QS_FAIL(ctx->err, QS_ERR_RUNTIME, "out of memory (config list)");
        }
    }
    for (int i = 0; i < *count; ++i) free(slots[i]);
    for (int i = 0; i < QS_MAX_CANDIDATE_LIST; ++i) slots[i] = i < v->n ? vals[i] : NULL;
    *count = v->n;
    return QS_OK;
}

/* A non-empty list of distinct integers in the row's range (CFG_INTLIST). */
static qs_status apply_intlist(const cfg_ctx *ctx, const cfg_key *k, const cfg_value *v,
                               qs_config *cfg) {
    int vals[QS_MAX_CANDIDATE_LIST];
    if (v->n == 0) return ctx_fail(ctx, &v->mark, "%s: the list is empty", k->key);
    if (!v->is_seq && is_null(&v->items[0]))
        return ctx_fail(ctx, &v->mark, "%s: no value given", k->key);
    for (int i = 0; i < v->n; ++i) {
        int64_t x = 0;
        qs_status st = scalar_int(ctx, k, &v->items[i], &x);
        if (st != QS_OK) return st;
        for (int j = 0; j < i; ++j)
            if (vals[j] == (int)x)
                return ctx_fail(ctx, &v->items[i].mark, "%s: value %s is listed twice", k->key,
                                v->items[i].text);
        vals[i] = (int)x;
    }
    memcpy((char *)cfg + k->off, vals, sizeof(int) * (size_t)v->n);
    *(int *)((char *)cfg + k->count_off) = v->n;
    return QS_OK;
}

/* One of the row's names: its index (CFG_ENUM) or a copy of the text (CFG_STRENUM). */
static qs_status apply_enum(const cfg_ctx *ctx, const cfg_key *k, const cfg_scalar *s,
                            char *base) {
    for (int i = 0; k->names[i]; ++i)
        if (strcmp(k->names[i], s->text) == 0) {
            if (k->kind == CFG_ENUM) {
                *(int *)base = i;
                return QS_OK;
            }
            char *d = strdup(s->text);
            if (!d) return QS_FAIL(ctx->err, QS_ERR_RUNTIME, "out of memory (config string)");
            return set_string((char **)base, d);
        }
    char names[256];
    names_text(k->names, names, sizeof(names));
    return ctx_fail(ctx, &s->mark, "%s: invalid value '%s' (valid: %s)", k->key, s->text,
                    names);
}

/* A plain true or false (CFG_BOOL). */
static qs_status apply_bool(const cfg_ctx *ctx, const cfg_key *k, const cfg_scalar *s,
                            int *out) {
    if (s->plain && (strcmp(s->text, "true") == 0 || strcmp(s->text, "false") == 0)) {
        *out = strcmp(s->text, "true") == 0;
        return QS_OK;
    }
    return ctx_fail(ctx, &s->mark, "%s: expected true or false, got '%s'", k->key, s->text);
}

/* A non-negative 64-bit integer (CFG_U64). */
static qs_status apply_u64(const cfg_ctx *ctx, const cfg_key *k, const cfg_scalar *s,
                           uint64_t *out) {
    uint64_t x = 0;
    int rc = s->plain ? parse_u64(s->text, &x) : 1;
    if (rc == 1)
        return ctx_fail(ctx, &s->mark, "%s: expected a non-negative integer, got '%s'", k->key,
                        s->text);
    if (rc == 2)
        return ctx_fail(ctx, &s->mark, "%s: %s is out of range (allowed: 0..%llu)", k->key,
                        s->text, (unsigned long long)UINT64_MAX);
    *out = x;
    return QS_OK;
}

/* A byte size with an optional unit in the row's range (CFG_SIZE). */
static qs_status apply_size(const cfg_ctx *ctx, const cfg_key *k, const cfg_scalar *s,
                            int64_t *out) {
    int64_t x = 0;
    int rc = s->plain ? parse_size(s->text, &x) : 1;
    if (rc == 1)
        return ctx_fail(ctx, &s->mark,
                        "%s: expected a byte size (e.g. 4294967296, 70GB, 12GiB), got '%s'",
                        k->key, s->text);
    if (rc == 2 || x < k->min || x > k->max) {
        char r[96];
        range_text(k, r, sizeof(r));
        return ctx_fail(ctx, &s->mark, "%s: %s is out of range (allowed: %s bytes)", k->key,
                        s->text, r);
    }
    *out = x;
    return QS_OK;
}

/* A finite decimal number in the row's range (CFG_FLOAT): digits, sign, '.' and exponent
 * only, so the inf / nan / hex that strtod would take are refused. */
static qs_status apply_float(const cfg_ctx *ctx, const cfg_key *k, const cfg_scalar *s,
                             double *out) {
    char *end = NULL;
    const char *t = s->text;
    int ok = s->plain && t[0] != '\0';
    for (const char *q = t; ok && *q; ++q)
        if (!((*q >= '0' && *q <= '9') || *q == '.' || *q == '-' || *q == '+' || *q == 'e' ||
              *q == 'E'))
            ok = 0;
    double x = 0;
    if (ok) {
        errno = 0;
        x = strtod(t, &end);
        if (*end || end == t) ok = 0;
    }
    if (!ok) return ctx_fail(ctx, &s->mark, "%s: expected a number, got '%s'", k->key, t);
    if (!isfinite(x) || x < k->fmin || x > k->fmax)
        return ctx_fail(ctx, &s->mark, "%s: %s is out of range (allowed: %g..%g)", k->key, t,
                        k->fmin, k->fmax);
    *out = x;
    return QS_OK;
}

/* Converts `v` per row `k` and stores it into cfg. Nothing is stored on failure. */
static qs_status apply_value(const cfg_ctx *ctx, const cfg_key *k, const cfg_value *v,
                             qs_config *cfg) {
    char *base = (char *)cfg + k->off;
    if (v->is_seq && k->kind != CFG_INTLIST && k->kind != CFG_STRLIST)
        return ctx_fail(ctx, &v->mark, "%s: expected %s, got a sequence", k->key,
                        kind_name(k->kind));
    if (k->kind == CFG_STRLIST) return apply_strlist(ctx, k, v, cfg);
    if (k->kind == CFG_INTLIST) return apply_intlist(ctx, k, v, cfg);
    const cfg_scalar *s = &v->items[0];
    const int stringy = k->kind == CFG_STRING || k->kind == CFG_PATH || k->kind == CFG_STRENUM;
    if (!stringy && is_null(s))
        return ctx_fail(ctx, &s->mark, "%s: no value given (expected %s)", k->key,
                        kind_name(k->kind));
    if (stringy && is_null(s))
        return ctx_fail(ctx, &s->mark, "%s: no value given (write \"\" for an empty string)",
                        k->key);
    switch (k->kind) {
    case CFG_STRING: {
        char *d = strdup(s->text);
        if (!d) return QS_FAIL(ctx->err, QS_ERR_RUNTIME, "out of memory (config string)");
        return set_string((char **)base, d);
    }
    case CFG_PATH: {
        char *d = join_path(ctx->base, s->text, ctx->err);
        if (!d) return ctx->err->code ? ctx->err->code : QS_ERR_RUNTIME;
        return set_string((char **)base, d);
    }
    case CFG_STRENUM:
    case CFG_ENUM: return apply_enum(ctx, k, s, base);
    case CFG_BOOL: return apply_bool(ctx, k, s, (int *)base);
    case CFG_INT:
    case CFG_I64: {
        int64_t x = 0;
        qs_status st = scalar_int(ctx, k, s, &x);
        if (st != QS_OK) return st;
        if (k->kind == CFG_INT)
            *(int *)base = (int)x;
        else
            *(int64_t *)base = x;
        return QS_OK;
    }
    case CFG_U64: return apply_u64(ctx, k, s, (uint64_t *)base);
    case CFG_SIZE: return apply_size(ctx, k, s, (int64_t *)base);
    case CFG_FLOAT: return apply_float(ctx, k, s, (double *)base);
    case CFG_INTLIST:
    case CFG_STRLIST: break;
    }
    return QS_FAIL(ctx->err, QS_ERR_INTERNAL, "internal error: config kind %d", (int)k->kind);
}

/* ---------------------------------------------------------------------------------- */
/* event reader                                                                         */

typedef struct cfg_reader {
    yaml_parser_t parser;
    int parser_ok;      /* parser initialised */
    yaml_event_t ev;    /* current event (valid when have_ev) */
    int have_ev;
    const char *text;   /* the whole input (for positions of reader errors) */
    size_t len;
    cfg_ctx ctx;
} cfg_reader;

static void reader_drop(cfg_reader *r) {
    if (r->have_ev) yaml_event_delete(&r->ev);
    r->have_ev = 0;
}

static const char *event_anchor(const yaml_event_t *ev) {
    switch (ev->type) {
    case YAML_SCALAR_EVENT: return (const char *)ev->data.scalar.anchor;
    case YAML_SEQUENCE_START_EVENT: return (const char *)ev->data.sequence_start.anchor;
    case YAML_MAPPING_START_EVENT: return (const char *)ev->data.mapping_start.anchor;
    case YAML_ALIAS_EVENT: return "*";
    default: return NULL;
    }
}

static const char *event_tag(const yaml_event_t *ev) {
    switch (ev->type) {
    case YAML_SCALAR_EVENT: return (const char *)ev->data.scalar.tag;
    case YAML_SEQUENCE_START_EVENT: return (const char *)ev->data.sequence_start.tag;
    case YAML_MAPPING_START_EVENT: return (const char *)ev->data.mapping_start.tag;
    default: return NULL;
    }
}

/* Reads the next event into r->ev. Anchors, aliases and tags are refused here, naming
 * `key` (the key being read; "" at the top). */
static qs_status reader_next(cfg_reader *r, const char *key) {
    reader_drop(r);
    if (!yaml_parser_parse(&r->parser, &r->ev)) {
        const char *prob = r->parser.problem ? r->parser.problem : "parse error";
        yaml_mark_t m = r->parser.problem_mark;
        if (r->parser.error == YAML_READER_ERROR) {
            /* encoding errors carry a byte offset, not a mark */
            memset(&m, 0, sizeof(m));
            for (size_t i = 0; i < r->parser.problem_offset && i < r->len; ++i) {
                if (r->text[i] == '\n') {
                    ++m.line;
                    m.column = 0;
                } else if (((unsigned char)r->text[i] & 0xc0) != 0x80) {
                    ++m.column;
                }
            }
        }
        if (r->parser.error == YAML_MEMORY_ERROR)
            return QS_FAIL(r->ctx.err, QS_ERR_RUNTIME, "%s: out of memory reading YAML",
                           r->ctx.file ? r->ctx.file : "--set");
        if (!r->ctx.file)
            return ctx_fail(&r->ctx, NULL, "%s: invalid YAML: %s", key, prob);
        if (r->parser.context)
            return ctx_fail(&r->ctx, &m, "invalid YAML: %s (%s at line %lu)", prob,
                            r->parser.context, (unsigned long)r->parser.context_mark.line + 1);
        return ctx_fail(&r->ctx, &m, "invalid YAML: %s", prob);
    }
    r->have_ev = 1;
    const char *a = event_anchor(&r->ev);
    if (a) {
        if (!r->ctx.file)
            return ctx_fail(&r->ctx, NULL, "%s: YAML anchors and aliases are not allowed", key);
        return ctx_fail(&r->ctx, &r->ev.start_mark,
                        "YAML anchors and aliases are not allowed (key '%s')",
                        key[0] ? key : "(top level)");
    }
    if (event_tag(&r->ev)) {
        if (!r->ctx.file) return ctx_fail(&r->ctx, NULL, "%s: YAML tags are not allowed", key);
        return ctx_fail(&r->ctx, &r->ev.start_mark, "YAML tags are not allowed (key '%s')",
                        key[0] ? key : "(top level)");
    }
    return QS_OK;
}

static const char *event_kind(yaml_event_type_t t) {
    switch (t) {
    case YAML_SCALAR_EVENT: return "a scalar";
    case YAML_SEQUENCE_START_EVENT: return "a sequence";
    case YAML_MAPPING_START_EVENT: return "a mapping";
    default: return "something else";
    }
}

static qs_status take_scalar(cfg_reader *r, cfg_scalar *s) {
    const yaml_event_t *ev = &r->ev;
    s->text = strndup((const char *)ev->data.scalar.value, ev->data.scalar.length);
    if (!s->text) return QS_FAIL(r->ctx.err, QS_ERR_RUNTIME, "out of memory (config value)");
    if (strlen(s->text) != ev->data.scalar.length)
        return ctx_fail(&r->ctx, &ev->start_mark, "value contains a NUL character");
    s->plain = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
    s->mark = ev->start_mark;
    return QS_OK;
}

/* Reads the value of leaf `k`, whose first event is current, into `v`. */
static qs_status read_value(cfg_reader *r, const cfg_key *k, cfg_value *v) {
    qs_status st = QS_OK;
    v->mark = r->ev.start_mark;
    if (r->ev.type == YAML_SCALAR_EVENT) {
        v->n = 1;
        return take_scalar(r, &v->items[0]);
    }
    if (r->ev.type == YAML_MAPPING_START_EVENT)
        return ctx_fail(&r->ctx, &r->ev.start_mark, "%s: expected %s, got a mapping", k->key,
                        kind_name(k->kind));
    if (r->ev.type != YAML_SEQUENCE_START_EVENT)
        return ctx_fail(&r->ctx, &r->ev.start_mark, "%s: unexpected YAML event", k->key);
    if (k->kind != CFG_INTLIST && k->kind != CFG_STRLIST)
        return ctx_fail(&r->ctx, &r->ev.start_mark, "%s: expected %s, got a sequence", k->key,
                        kind_name(k->kind));
    v->is_seq = 1;
    for (;;) {
        st = reader_next(r, k->key);
        if (st != QS_OK) return st;
        if (r->ev.type == YAML_SEQUENCE_END_EVENT) return QS_OK;
        if (r->ev.type != YAML_SCALAR_EVENT)
            return ctx_fail(&r->ctx, &r->ev.start_mark,
                            "%s: expected %s, got %s inside the list", k->key,
                            kind_name(k->kind), event_kind(r->ev.type));
        if (v->n == QS_MAX_CANDIDATE_LIST)
            return ctx_fail(&r->ctx, &r->ev.start_mark, "%s: more than %d values in the list",
                            k->key, QS_MAX_CANDIDATE_LIST);
        st = take_scalar(r, &v->items[v->n]);
        ++v->n; /* counted even on failure so value_free releases it */
        if (st != QS_OK) return st;
    }
}

/* Reads the body of a mapping whose MAPPING_START is current. `prefix` is "" at the top
 * or the section name. `seen` marks keys (rows, then sections) already given. */
static qs_status read_mapping(cfg_reader *r, const char *prefix, qs_config *cfg, char *seen) {
    qs_status st = QS_OK;
    cfg_value v;
    memset(&v, 0, sizeof(v));
    char key[256];
    for (;;) {
        st = reader_next(r, prefix);
        if (st != QS_OK) goto done;
        if (r->ev.type == YAML_MAPPING_END_EVENT) break;
        if (r->ev.type != YAML_SCALAR_EVENT) {
            st = ctx_fail(&r->ctx, &r->ev.start_mark, "%s%skeys must be scalars, got %s",
                          prefix, prefix[0] ? ": " : "", event_kind(r->ev.type));
            goto done;
        }
        yaml_mark_t kmark = r->ev.start_mark;
        const char *kt = (const char *)r->ev.data.scalar.value;
        if (strchr(kt, '.')) {
            /* "quant.bits:" written flat: say how to write it rather than "unknown" */
            st = ctx_fail(&r->ctx, &kmark,
                          "key '%s%s%s' contains '.'; write sections as nested mappings "
                          "(a section key, then its keys indented below it)",
                          prefix, prefix[0] ? "." : "", kt);
            goto done;
        }
        if (prefix[0])
            snprintf(key, sizeof(key), "%s.%s", prefix, kt);
        else
            snprintf(key, sizeof(key), "%s", kt);
        int row = find_key(key);
        int sec = prefix[0] ? -1 : find_section(key);
        if (row < 0 && sec < 0) {
            const char *sug = suggest_key(key);
            if (sug)
                st = ctx_fail(&r->ctx, &kmark, "unknown key '%s' (did you mean '%s'?)", key, sug);
            else
                st = ctx_fail(&r->ctx, &kmark, "unknown key '%s'", key);
            goto done;
        }
        int slot = row >= 0 ? row : NKEYS + sec;
        if (seen[slot]) {
            st = ctx_fail(&r->ctx, &kmark, "duplicate key '%s'", key);
            goto done;
        }
        seen[slot] = 1;
        st = reader_next(r, key);
        if (st != QS_OK) goto done;
        if (sec >= 0) {
            if (r->ev.type == YAML_SCALAR_EVENT &&
                r->ev.data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
                r->ev.data.scalar.length == 0)
                continue; /* "quant:" with nothing under it: an empty section */
            if (r->ev.type != YAML_MAPPING_START_EVENT) {
                st = ctx_fail(&r->ctx, &r->ev.start_mark, "%s: expected a mapping, got %s", key,
                              event_kind(r->ev.type));
                goto done;
            }
            st = read_mapping(r, cfg_sections[sec], cfg, seen);
            if (st != QS_OK) goto done;
            continue;
        }
        st = read_value(r, &cfg_schema[row], &v);
        if (st != QS_OK) goto done;
        st = apply_value(&r->ctx, &cfg_schema[row], &v, cfg);
        if (st != QS_OK) goto done;
        value_free(&v);
    }
done:
    value_free(&v);
    return st;
}

/* ---------------------------------------------------------------------------------- */
/* public API                                                                           */

static qs_token_source source(const char *key, const char *tokens, const char *text,
                              const char *field, const qs_config *cfg) {
    qs_token_source s = {key,  tokens ? tokens : "", text ? text : "", field ? field : "text",
                         cfg->tokenizer ? cfg->tokenizer : "", cfg->model ? cfg->model : ""};
    return s;
}

qs_token_source qs_config_calib_source(const qs_config *cfg) {
    return source("calib", cfg->calib.tokens, cfg->calib.text, cfg->calib.text_field, cfg);
}

qs_token_source qs_config_eval_source(const qs_config *cfg) {
    return source("eval", cfg->eval.tokens, cfg->eval.text, cfg->eval.text_field, cfg);
}

int qs_token_source_given(const qs_token_source *s) { return s->tokens[0] || s->text[0]; }

const char *qs_token_source_path(const qs_token_source *s) {
    return s->tokens[0] ? s->tokens : s->text;
}

void qs_config_free(qs_config *cfg) {
    if (!cfg) return;
    free(cfg->source_path);
    for (int i = 0; i < NKEYS; ++i) {
        cfg_kind k = cfg_schema[i].kind;
        if (k == CFG_STRING || k == CFG_PATH || k == CFG_STRENUM)
            free(*(char **)((char *)cfg + cfg_schema[i].off));
        if (k == CFG_STRLIST)
            for (int j = 0; j < QS_MAX_CANDIDATE_LIST; ++j)
                free(((char **)((char *)cfg + cfg_schema[i].off))[j]);
    }
    memset(cfg, 0, sizeof(*cfg));
}

/* Parses `text` (a YAML flow value, or "" = empty string) for row `k` and applies it. */
static qs_status apply_text(const cfg_ctx *ctx, const cfg_key *k, const char *text,
                            qs_config *cfg) {
    qs_status st = QS_OK;
    cfg_reader r;
    cfg_value v;
    memset(&r, 0, sizeof(r));
    memset(&v, 0, sizeof(v));
    r.ctx = *ctx;
    if (text[0] == '\0' &&
        (k->kind == CFG_STRING || k->kind == CFG_PATH || k->kind == CFG_STRENUM)) {
        v.n = 1;
        v.items[0].text = strdup("");
        if (!v.items[0].text) {
            st = QS_FAIL(ctx->err, QS_ERR_RUNTIME, "out of memory (config value)");
            goto done;
        }
        st = apply_value(ctx, k, &v, cfg);
        goto done;
    }
    if (!yaml_parser_initialize(&r.parser)) {
        st = QS_FAIL(ctx->err, QS_ERR_RUNTIME, "out of memory (YAML parser)");
        goto done;
    }
    r.parser_ok = 1;
    yaml_parser_set_input_string(&r.parser, (const unsigned char *)text, strlen(text));
    QS_CHECK(reader_next(&r, k->key)); /* stream start */
    QS_CHECK(reader_next(&r, k->key));
    if (r.ev.type == YAML_STREAM_END_EVENT) {
        st = ctx_fail(ctx, NULL, "%s: no value given", k->key);
        goto done;
    }
    QS_CHECK(reader_next(&r, k->key)); /* first event of the document */
    QS_CHECK(read_value(&r, k, &v));
    QS_CHECK(reader_next(&r, k->key));
    if (r.ev.type != YAML_DOCUMENT_END_EVENT) {
        st = ctx_fail(ctx, NULL, "%s: trailing text after the value", k->key);
        goto done;
    }
    QS_CHECK(reader_next(&r, k->key));
    if (r.ev.type != YAML_STREAM_END_EVENT) {
        st = ctx_fail(ctx, NULL, "%s: more than one value", k->key);
        goto done;
    }
    st = apply_value(ctx, k, &v, cfg);
done:
    value_free(&v);
    reader_drop(&r);
    if (r.parser_ok) yaml_parser_delete(&r.parser);
    return st;
}

qs_status qs_config_init_defaults(qs_config *cfg, qs_err *err) {
    qs_status st = QS_OK;
    cfg_ctx ctx = {"(defaults)", NULL, err};
    memset(cfg, 0, sizeof(*cfg));
    cfg->source_path = strdup("");
    if (!cfg->source_path) QS_THROW(err, QS_ERR_RUNTIME, "out of memory (config)");
    for (int i = 0; i < NKEYS; ++i) QS_CHECK(apply_text(&ctx, &cfg_schema[i], cfg_schema[i].def, cfg));
done:
    if (st != QS_OK) {
        if (st == QS_ERR_INPUT) err->code = QS_ERR_INTERNAL; /* a bad default is a bug */
        qs_config_free(cfg);
    }
    return st;
}

static char *current_dir(qs_err *err) {
    size_t cap = 256;
    for (;;) {
        char *buf = qs_malloc(cap, err, "working directory");
        if (!buf) return NULL;
        if (getcwd(buf, cap)) return buf;
        free(buf);
        if (errno != ERANGE) {
            QS_FAIL(err, QS_ERR_RUNTIME, "cannot read the working directory: %s",
                    strerror(errno));
            return NULL;
        }
        cap *= 2;
    }
}

qs_status qs_config_set(qs_config *cfg, const char *assignment, qs_err *err) {
    qs_status st = QS_OK;
    char *key = NULL, *cwd = NULL;
    const char *eq = strchr(assignment, '=');
    cfg_ctx ctx = {NULL, NULL, err};
    if (!eq) QS_THROW(err, QS_ERR_INPUT, "--set %s: expected key=value", assignment);
    key = strndup(assignment, (size_t)(eq - assignment));
    if (!key) QS_THROW(err, QS_ERR_RUNTIME, "out of memory (--set)");
    int row = find_key(key);
    if (row < 0) {
        if (find_section(key) >= 0)
            QS_THROW(err, QS_ERR_INPUT, "--set %s: is a section; set one of its keys (%s.<key>)",
                     key, key);
        const char *sug = suggest_key(key);
        if (sug)
            QS_THROW(err, QS_ERR_INPUT, "--set %s: unknown key (did you mean '%s'?)", key, sug);
        QS_THROW(err, QS_ERR_INPUT, "--set %s: unknown key", key);
    }
    if (cfg_schema[row].kind == CFG_PATH) {
        cwd = current_dir(err);
        if (!cwd) {
            st = err->code;
            goto done;
        }
        ctx.base = cwd;
    }
    st = apply_text(&ctx, &cfg_schema[row], eq + 1, cfg);
done:
    free(key);
    free(cwd);
    return st;
}

qs_status qs_config_validate(const qs_config *cfg, qs_err *err) {
    const char *file = cfg->source_path && cfg->source_path[0] ? cfg->source_path : "config";
    for (int i = 0; i < NKEYS; ++i) {
        if (!cfg_schema[i].required) continue;
        const char *s = *(char *const *)((const char *)cfg + cfg_schema[i].off);
        if (!s || !s[0])
            return QS_FAIL(err, QS_ERR_INPUT, "%s: missing required key '%s'", file,
                           cfg_schema[i].key);
    }
    if (cfg->calib.sampling == QS_SAMPLING_FILE &&
        (!cfg->calib.offsets_file || !cfg->calib.offsets_file[0]))
        return QS_FAIL(err, QS_ERR_INPUT,
                       "%s: calib.offsets_file is required when calib.sampling is file", file);
    if (cfg->search.target_bpw > 0 && cfg->search.max_bytes > 0)
        return QS_FAIL(err, QS_ERR_INPUT,
                       "%s: search.target_bpw and search.max_bytes are both set; set only one",
                       file);
    for (int e = 0; e < 2; ++e) {
        const qs_token_source src = e ? qs_config_eval_source(cfg) : qs_config_calib_source(cfg);
        if (src.tokens[0] && src.text[0])
            return QS_FAIL(err, QS_ERR_INPUT,
                           "%s: %s.tokens and %s.text are both set; set only one", file,
                           src.key, src.key);
        if (src.text[0] && !src.text_field[0])
            return QS_FAIL(err, QS_ERR_INPUT, "%s: %s.text_field is empty", file, src.key);
    }
    static const char *const FORMATS[] = {"gptq", "gguf", "compressed-tensors", "hdf5"};
    for (int i = 0; i < cfg->output.nformats; ++i) {
        int known = 0;
        for (int f = 0; f < 4; ++f) known |= strcmp(cfg->output.formats[i], FORMATS[f]) == 0;
        if (!known)
            return QS_FAIL(err, QS_ERR_INPUT,
                           "%s: output.formats: '%s' is not a format (gptq, gguf, "
                           "compressed-tensors, hdf5)",
                           file, cfg->output.formats[i]);
        for (int j = 0; j < i; ++j)
            if (strcmp(cfg->output.formats[i], cfg->output.formats[j]) == 0)
                return QS_FAIL(err, QS_ERR_INPUT, "%s: output.formats: '%s' is listed twice",
                               file, cfg->output.formats[i]);
    }
    for (int i = 0; i < cfg->quant.ngguf_types; ++i)
        for (int j = 0; j < i; ++j)
            if (strcmp(cfg->quant.gguf_types[i], cfg->quant.gguf_types[j]) == 0)
                return QS_FAIL(err, QS_ERR_INPUT, "%s: quant.gguf_types: '%s' is listed twice",
                               file, cfg->quant.gguf_types[i]);
    const unsigned fm = qs_config_formats(cfg);
    if (!cfg->search.tie_fused && (fm & QS_OUT_CT))
        return QS_FAIL(err, QS_ERR_INPUT,
                       "%s: search.tie_fused: false cannot be written as compressed-tensors "
                       "(vLLM loads q/k/v and gate/up as one fused linear with one scheme); "
                       "drop compressed-tensors from output.formats",
                       file);
    if (!cfg->search.tie_fused && (fm & QS_OUT_GPTQ))
        return QS_FAIL(err, QS_ERR_INPUT,
                       "%s: search.tie_fused: false needs output.gptq_export: false (vLLM loads "
                       "q/k/v and gate/up as one fused linear with one scheme; the HDF5 shards "
                       "hold untied allocations)",
                       file);
    for (int w = 0; w < 2; ++w) {
        char *const *rules = w ? cfg->search.allow : cfg->search.pin;
        const int n = w ? cfg->search.nallow : cfg->search.npin;
        const char *key = w ? "search.allow" : "search.pin";
        for (int i = 0; i < n; ++i) {
            const char *eq = strchr(rules[i], '=');
            const char *cands = eq ? eq + 1 : NULL;
            if (!eq || eq == rules[i] || !cands[0] || (!w && strchr(cands, ',')) ||
                strchr(cands, '=') || cands[strlen(cands) - 1] == ',' || strstr(cands, ",,"))
                return QS_FAIL(err, QS_ERR_INPUT,
                               "%s: %s: '%s': expected \"PATTERN=%s\" (e.g. \"%s\")", file, key,
                               rules[i], w ? "CAND,CAND,..." : "CAND",
                               w ? "layers.*.down=w4g128,w8g128" : "layers.0.*=w8g128");
        }
    }
    if (cfg->quant.damp_max < cfg->quant.damp)
        return QS_FAIL(err, QS_ERR_INPUT, "%s: quant.damp_max (%g) is below quant.damp (%g)",
                       file, cfg->quant.damp_max, cfg->quant.damp);
    return QS_OK;
}

unsigned qs_config_formats(const qs_config *cfg) {
    unsigned m = QS_OUT_HDF5;
    for (int i = 0; i < cfg->output.nformats; ++i) {
        const char *f = cfg->output.formats[i];
        if (strcmp(f, "gptq") == 0 && cfg->output.gptq_export) m |= QS_OUT_GPTQ;
        if (strcmp(f, "gguf") == 0) m |= QS_OUT_GGUF;
        if (strcmp(f, "compressed-tensors") == 0) m |= QS_OUT_CT;
    }
    return m;
}

/* Reads the file into cfg (defaults already in place). */
static qs_status read_file(qs_config *cfg, const char *path, qs_err *err) {
    qs_status st = QS_OK;
    cfg_reader r;
    FILE *f = NULL;
    char *dir = NULL, *text = NULL;
    size_t len = 0;
    char seen[NKEYS + NSECTIONS];
    memset(&r, 0, sizeof(r));
    memset(seen, 0, sizeof(seen));
    r.ctx.file = path;
    r.ctx.err = err;

    /* base directory: the file's directory, absolute and without symlinks */
    {
        const char *slash = strrchr(path, '/');
        char *d = slash ? strndup(path, slash == path ? 1 : (size_t)(slash - path)) : strdup(".");
        if (!d) QS_THROW(err, QS_ERR_RUNTIME, "out of memory (config path)");
        dir = realpath(d, NULL);
        free(d);
        if (!dir) {
            if (errno == ENOMEM) QS_THROW(err, QS_ERR_RUNTIME, "out of memory (config path)");
            QS_THROW(err, QS_ERR_INPUT, "%s: cannot open: %s", path, strerror(errno));
        }
    }
    r.ctx.base = dir;

    f = fopen(path, "rb");
    if (!f) QS_THROW(err, QS_ERR_INPUT, "%s: cannot open: %s", path, strerror(errno));
    {
        /* the whole file in memory (a config is small): reader errors need the text */
        size_t cap = 4096;
        text = qs_malloc(cap, err, "config text");
        if (!text) {
            st = err->code;
            goto done;
        }
        for (;;) {
            size_t got = fread(text + len, 1, cap - len, f);
            len += got;
            if (got == 0) break;
            if (len == cap) {
                if (cap >= QS_CONFIG_MAX_BYTES)
                    QS_THROW(err, QS_ERR_INPUT, "%s: larger than %d MiB; not a config file",
                             path, QS_CONFIG_MAX_BYTES >> 20);
                char *bigger = realloc(text, cap * 2);
                if (!bigger) QS_THROW(err, QS_ERR_RUNTIME, "out of memory reading %s", path);
                text = bigger;
                cap *= 2;
            }
        }
        if (ferror(f)) QS_THROW(err, QS_ERR_INPUT, "%s: cannot read: %s", path, strerror(errno));
    }
    r.text = text;
    r.len = len;
    if (!yaml_parser_initialize(&r.parser))
        QS_THROW(err, QS_ERR_RUNTIME, "out of memory (YAML parser)");
    r.parser_ok = 1;
    yaml_parser_set_input_string(&r.parser, (const unsigned char *)text, len);

    QS_CHECK(reader_next(&r, "")); /* stream start */
    QS_CHECK(reader_next(&r, ""));
    if (r.ev.type == YAML_STREAM_END_EVENT) QS_THROW(err, QS_ERR_INPUT, "%s: empty config", path);
    QS_CHECK(reader_next(&r, "")); /* document content */
    if (r.ev.type == YAML_SCALAR_EVENT && r.ev.data.scalar.length == 0 &&
        r.ev.data.scalar.style == YAML_PLAIN_SCALAR_STYLE)
        QS_THROW(err, QS_ERR_INPUT, "%s: empty config", path);
    if (r.ev.type != YAML_MAPPING_START_EVENT) {
        st = ctx_fail(&r.ctx, &r.ev.start_mark, "top level must be a mapping, got %s",
                      event_kind(r.ev.type));
        goto done;
    }
    QS_CHECK(read_mapping(&r, "", cfg, seen));
    QS_CHECK(reader_next(&r, "")); /* document end */
    QS_CHECK(reader_next(&r, ""));
    if (r.ev.type != YAML_STREAM_END_EVENT) {
        st = ctx_fail(&r.ctx, &r.ev.start_mark, "multiple YAML documents are not allowed");
        goto done;
    }
done:
    reader_drop(&r);
    if (r.parser_ok) yaml_parser_delete(&r.parser);
    if (f) fclose(f);
    free(text);
    free(dir);
    return st;
}

qs_status qs_config_load(qs_config *cfg, const char *path, const char *const *sets, int nset,
                         qs_err *err) {
    qs_status st = QS_OK;
    QS_CHECK(qs_config_init_defaults(cfg, err));
    free(cfg->source_path);
    cfg->source_path = strdup(path);
    if (!cfg->source_path) QS_THROW(err, QS_ERR_RUNTIME, "out of memory (config)");
    QS_CHECK(read_file(cfg, path, err));
    for (int i = 0; i < nset; ++i) QS_CHECK(qs_config_set(cfg, sets[i], err));
    QS_CHECK(qs_config_validate(cfg, err));
    /* auto: asymmetric exports as v2, which every loader of asymmetric GPTQ reads (GPTQModel
     * refuses asymmetric v1 unless meta.quantizer names gptqmodel); symmetric stay v1 */
    if (cfg->output.checkpoint_format == QS_CKPT_AUTO)
        cfg->output.checkpoint_format = cfg->quant.sym ? QS_CKPT_GPTQ : QS_CKPT_GPTQ_V2;
done:
    return st;
}

/* ---------------------------------------------------------------------------------- */
/* dump                                                                                 */

static void dump_string(FILE *out, const char *s) {
    fputc('"', out);
    for (const unsigned char *p = (const unsigned char *)s; *p; ++p) {
        switch (*p) {
        case '"': fputs("\\\"", out); break;
        case '\\': fputs("\\\\", out); break;
        case '\n': fputs("\\n", out); break;
        case '\t': fputs("\\t", out); break;
        case '\r': fputs("\\r", out); break;
        default:
            if (*p < 0x20 || *p == 0x7f)
                fprintf(out, "\\x%02x", *p);
            else
                fputc(*p, out);
        }
    }
    fputc('"', out);
}

/* Shortest %g text that reads back to exactly x. */
static void dump_double(FILE *out, double x) {
    char buf[64];
    for (int prec = 1; prec <= 17; ++prec) {
        snprintf(buf, sizeof(buf), "%.*g", prec, x);
        if (strtod(buf, NULL) == x) break;
    }
    if (!strpbrk(buf, ".eEn")) strcat(buf, ".0"); /* 1 -> 1.0: reads as a float */
    fputs(buf, out);
}

qs_status qs_config_dump(const qs_config *cfg, FILE *out, int include_runtime, qs_err *err) {
    char section[32] = "";
    for (int i = 0; i < NKEYS; ++i) {
        const cfg_key *k = &cfg_schema[i];
        if (k->runtime && !include_runtime) continue;
        const char *dot = strchr(k->key, '.');
        const char *indent = "";
        if (dot) {
            size_t n = (size_t)(dot - k->key);
            if (strlen(section) != n || strncmp(section, k->key, n) != 0) {
                snprintf(section, sizeof(section), "%.*s", (int)n, k->key);
                fprintf(out, "%s:\n", section);
            }
            indent = "  ";
        }
        fprintf(out, "%s%s: ", indent, leaf_of(k->key));
        const char *base = (const char *)cfg + k->off;
        switch (k->kind) {
        case CFG_STRING:
        case CFG_PATH:
        case CFG_STRENUM: {
            const char *s = *(char *const *)base;
            dump_string(out, s ? s : "");
            break;
        }
        case CFG_INT: fprintf(out, "%d", *(const int *)base); break;
        case CFG_I64:
        case CFG_SIZE: fprintf(out, "%lld", (long long)*(const int64_t *)base); break;
        case CFG_U64: fprintf(out, "%llu", (unsigned long long)*(const uint64_t *)base); break;
        case CFG_FLOAT: dump_double(out, *(const double *)base); break;
        case CFG_BOOL: fputs(*(const int *)base ? "true" : "false", out); break;
        case CFG_ENUM: {
            int v = *(const int *)base;
            int n = 0;
            while (k->names[n]) ++n;
            if (v < 0 || v >= n)
                return QS_FAIL(err, QS_ERR_INTERNAL, "internal error: %s holds enum value %d",
                               k->key, v);
            fputs(k->names[v], out);
            break;
        }
        case CFG_INTLIST: {
            const int *vals = (const int *)base;
            int n = *(const int *)((const char *)cfg + k->count_off);
            fputc('[', out);
            for (int j = 0; j < n; ++j) fprintf(out, "%s%d", j ? ", " : "", vals[j]);
            fputc(']', out);
            break;
        }
        case CFG_STRLIST: {
            char *const *vals = (char *const *)base;
            int n = *(const int *)((const char *)cfg + k->count_off);
            fputc('[', out);
            for (int j = 0; j < n; ++j) {
                if (j) fputs(", ", out);
                dump_string(out, vals[j]);
            }
            fputc(']', out);
            break;
        }
        }
        fputc('\n', out);
    }
    if (ferror(out)) return QS_FAIL(err, QS_ERR_RUNTIME, "cannot write the resolved config");
    return QS_OK;
}

/* ---------------------------------------------------------------------------------- */
/* docs                                                                                 */

static const char *type_name(cfg_kind k) {
    switch (k) {
    case CFG_STRING: return "string";
    case CFG_PATH: return "path";
    case CFG_INT:
    case CFG_I64: return "int";
    case CFG_U64: return "u64";
    case CFG_SIZE: return "bytes";
    case CFG_FLOAT: return "float";
    case CFG_BOOL: return "bool";
    case CFG_ENUM:
    case CFG_STRENUM: return "enum";
    case CFG_INTLIST: return "int list";
    case CFG_STRLIST: return "string list";
    }
    return "?";
}

qs_status qs_config_describe(FILE *out, qs_err *err) {
    for (int i = 0; i < NKEYS; ++i) {
        const cfg_key *k = &cfg_schema[i];
        char r[160] = "";
        switch (k->kind) {
        case CFG_INT:
        case CFG_I64:
        case CFG_SIZE:
        case CFG_INTLIST:
            range_text(k, r, sizeof(r));
            if (k->kind == CFG_INTLIST)
                snprintf(r + strlen(r), sizeof(r) - strlen(r), "; 1..%d values",
                         QS_MAX_CANDIDATE_LIST);
            break;
        case CFG_FLOAT: snprintf(r, sizeof(r), "%g..%g", k->fmin, k->fmax); break;
        case CFG_ENUM:
        case CFG_STRENUM: names_text(k->names, r, sizeof(r)); break;
        case CFG_U64: snprintf(r, sizeof(r), "0..2^64-1"); break;
        case CFG_STRLIST: snprintf(r, sizeof(r), "0..%d values", QS_MAX_CANDIDATE_LIST); break;
        default: break;
        }
        fprintf(out, "| `%s` | %s | `%s` | %s | %s |\n", k->key, type_name(k->kind), k->def, r,
                k->doc);
    }
    if (ferror(out)) return QS_FAIL(err, QS_ERR_RUNTIME, "cannot write the key table");
    return QS_OK;
}

/* A positive thread count from an environment variable's value, up to the first ',' (an
 * OpenMP list). */
static qs_status env_threads(const char *name, const char *v, int *out, qs_err *err) {
    char *end = NULL;
    errno = 0;
    long n = strtol(v, &end, 10);
    if (errno != 0 || end == v || (*end != '\0' && *end != ',') || n < 1 || n > 4096 ||
        !isdigit((unsigned char)v[0]))
        return QS_FAIL(err, QS_ERR_INPUT,
                       "%s: expected a thread count in 1..4096 (threads: 0 reads it), got '%s'",
                       name, v);
    *out = (int)n;
    return QS_OK;
}

qs_status qs_config_threads(int threads, const char *slurm_cpus, const char *omp, int *out,
                            const char **from, qs_err *err) {
    *out = 1;
    *from = "default";
    if (threads > 0) {
        *out = threads;
        *from = "threads";
        return QS_OK;
    }
    if (slurm_cpus && slurm_cpus[0]) {
        *from = "SLURM_CPUS_PER_TASK";
        return env_threads(*from, slurm_cpus, out, err);
    }
    if (omp && omp[0]) {
        *from = "OMP_NUM_THREADS";
        return env_threads(*from, omp, out, err);
    }
    return QS_OK;
}
