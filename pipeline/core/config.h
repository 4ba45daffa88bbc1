/* config.h: one YAML file describes a run (libyaml); this is its typed form.
 *
 * The parser is strict: unknown keys (with a nearest-key suggestion), wrong types,
 * out-of-range values, YAML aliases/anchors, duplicate keys and malformed YAML are
 * QS_ERR_INPUT errors quoting "file:line:col: key: cause". `--set key.path=value`
 * overrides any key after the file is read (value parsed as a YAML scalar or flow list).
 * Every key, its type, range and default is in docs/config.md.
 *
 * Ownership: a qs_config owns all its strings; qs_config_free releases them.
 * A zero-initialised qs_config may be passed to qs_config_free.
 */
#ifndef QS_CONFIG_H
#define QS_CONFIG_H

#include <stdint.h>
#include <stdio.h>

#include "status.h"

#define QS_MAX_CANDIDATE_LIST 16

/* The files the write stage produces (qs_config_formats, from output.formats): HDF5 shards
 * always; the GPTQ export unless output.gptq_export is false. */
#define QS_OUT_GPTQ 0x1 /* "gptq": GPTQ safetensors checkpoint (run/export/) */
#define QS_OUT_GGUF 0x2 /* "gguf": one GGUF file for llama.cpp (run/gguf/model.gguf) */
#define QS_OUT_CT 0x4   /* "compressed-tensors": vLLM pack-quantized (run/export-ct/) */
#define QS_OUT_HDF5 0x8 /* "hdf5": the pipeline's own shards (run/out/), always */

typedef enum qs_calib_sampling {
    QS_SAMPLING_RANDOM = 0,      /* random window offsets from calib.seed (as GPTQ) */
    QS_SAMPLING_CONSECUTIVE = 1, /* windows back to back from offset 0 */
    QS_SAMPLING_FILE = 2         /* one start offset per line in calib.offsets_file */
} qs_calib_sampling;

typedef enum qs_quant_method { QS_METHOD_GPTQ = 0, QS_METHOD_RTN = 1 } qs_quant_method;

typedef enum qs_recon_inputs {
    QS_INPUTS_FLOAT = 0,    /* Hessians from the unquantized model */
    QS_INPUTS_QUANTIZED = 1 /* sequential GPTQ: layer l sees quantized layers < l */
} qs_recon_inputs;

/* GPTQ checkpoint format. AUTO (the default) is resolved by qs_config_load: gptq_v2 when
 * quant.sym is false (GPTQModel refuses asymmetric v1 it did not write itself; docs/export.md),
 * gptq (v1) otherwise; a loaded config never holds AUTO. */
typedef enum qs_ckpt_format {
    QS_CKPT_GPTQ = 0,
    QS_CKPT_GPTQ_V2 = 1,
    QS_CKPT_AUTO = 2
} qs_ckpt_format;

typedef enum qs_objective {
    QS_OBJECTIVE_ERROR = 0,     /* summed GPTQ error tr(dW H dW^T) */
    QS_OBJECTIVE_RELATIVE = 1,  /* error / tr(W H W^T) */
    QS_OBJECTIVE_SENSITIVITY = 2, /* measured end-to-end sensitivity per layer x error */
    QS_OBJECTIVE_KL = 3           /* measured KL(float || quantized) per item and candidate */
} qs_objective;

typedef struct qs_config {
    char *source_path;     /* the YAML file the config came from ("" if none) */

    /* top level */
    char *model;           /* model directory (Hugging Face layout); required */
    char *run_dir;         /* run directory; required */
    char *tokenizer;       /* tokenizer.json or a directory holding it ("" = the model directory):
                              tokenizes calib.text / eval.text */
    int threads;           /* threads per rank (0 = from SLURM_CPUS_PER_TASK/OMP_NUM_THREADS, else 1) */

    struct {
        char *tokens;          /* token file (.u32 / .u16); this or calib.text is required */
        char *text;            /* calibration text (.txt, .jsonl, a directory of them) */
        char *text_field;      /* the text field of .jsonl documents (default "text") */
        int64_t nsamples;      /* number of windows (default 128) */
        int64_t seqlen;        /* tokens per window (default 2048) */
        qs_calib_sampling sampling;
        char *offsets_file;    /* for sampling: file */
        uint64_t seed;         /* for sampling: random (default 0) */
        int64_t chunk_samples; /* samples per (layer, chunk) step (default 8) */
        int64_t checkpoint_every; /* chunks between collective checkpoints (default 16) */
        int replicas;          /* calibrate's data-parallel pipelines (0 = the plan chooses);
                                  a runtime key: results do not depend on it */
    } calib;

    struct {
        qs_quant_method method;          /* default gptq */
        int bits[QS_MAX_CANDIDATE_LIST]; /* candidate bit widths, 2..8 (default [4]) */
        int nbits;
        int group_size[QS_MAX_CANDIDATE_LIST]; /* candidate group sizes, -1 or >= 1 (default [128]) */
        int ngroup_size;
        int sym;             /* symmetric (default false) */
        int act_order;       /* desc_act (default false) */
        int static_groups;   /* default false */
        double damp;         /* fraction of mean diag(H) (default 0.01) */
        double damp_max;     /* cap for automatic raising (default 1.0) */
        int block_size;      /* GPTQ lazy column block (default 128) */
        int row_block;       /* rows per fixed solve tile (default 256) */
        char *gguf_types[QS_MAX_CANDIDATE_LIST]; /* (ngguf_types) GGUF candidates by GGML
                                                    name ("Q4_K"); default [] */
        int ngguf_types;
        char *gguf_chooser;  /* "search" (default) | "imatrix" | "ref": block parameters */
    } quant;

    struct {
        qs_recon_inputs inputs; /* default quantized */
        char *propagate;        /* candidate name feeding the next layer ("" = nearest target) */
        int rtn_baseline;       /* also RTN's error per candidate (default false) */
    } reconstruct;

    struct {
        double target_bpw;   /* 0 = unset */
        int64_t max_bytes;   /* 0 = unset */
        qs_objective objective;
        int tie_fused;       /* default true */
        char *serve;         /* "" | "marlin" | "llamacpp" | "vllm" | "gptqmodel" */
        char *pin[QS_MAX_CANDIDATE_LIST];   /* (npin) "PATTERN=CAND" (docs/search.md) */
        int npin;
        char *allow[QS_MAX_CANDIDATE_LIST]; /* (nallow) "PATTERN=CAND,CAND,..." */
        int nallow;
        int64_t probe_windows; /* objectives sensitivity, kl and refine: windows per probe
                                  (default 8) */
        int64_t refine;        /* whole-model KL evaluations of neighbours (0 = off) */
        int64_t refine_windows; /* windows of each refine evaluation (0 = probe_windows) */
        int64_t refine_seed;   /* seed of the neighbour choices */
    } search;

    struct {
        char *formats[QS_MAX_CANDIDATE_LIST]; /* (nformats) "gptq" "gguf" "compressed-tensors"
                                                 "hdf5" (default [gptq, hdf5]) */
        int nformats;
        qs_ckpt_format checkpoint_format; /* default auto: v2 if asymmetric, else v1 */
        int gptq_export;     /* false: no GPTQ export even if formats has gptq (the old
                                spelling; default true) */
        char *gguf_tokenizer; /* tokenizer.model / tokenizer.json / a directory for the GGUF
                                 vocabulary ("" = the model directory's) */
        int64_t shard_bytes; /* shard size limit for outputs (default 4 GiB) */
    } output;

    struct {
        char *tokens;        /* evaluation token file ("" and no eval.text = skip eval) */
        char *text;          /* evaluation text (.txt, .jsonl, a directory of them) */
        char *text_field;    /* the text field of .jsonl documents (default "text") */
        int64_t seqlen;      /* window length (default 2048) */
        int64_t max_windows; /* 0 = all */
        int eval_float;      /* the eval stage also evaluates the float model (default true) */
    } eval;
} qs_config;

/* Where a stream of token ids comes from: a token file, or text tokenized with the model's
 * tokenizer (lib/text_tokens.h opens it). Borrows the config's strings. */
typedef struct qs_token_source {
    const char *key;        /* "calib" or "eval": names the keys in messages */
    const char *tokens;     /* token file, or "" */
    const char *text;       /* text file or directory, or "" */
    const char *text_field; /* .jsonl field */
    const char *tokenizer;  /* tokenizer.json or a directory ("" = the model directory) */
    const char *model;      /* the model directory */
} qs_token_source;

qs_token_source qs_config_calib_source(const qs_config *cfg);
qs_token_source qs_config_eval_source(const qs_config *cfg);
/* 1 when the source names a token file or text. */
int qs_token_source_given(const qs_token_source *s);
/* The file or directory the ids come from (for messages and result files). */
const char *qs_token_source_path(const qs_token_source *s);

/* Fills `cfg` with every default (strings allocated, possibly ""). */
qs_status qs_config_init_defaults(qs_config *cfg, qs_err *err);

/* Reads `path` into `cfg` (starting from defaults; `cfg` must hold no strings yet), then
 * applies `nset` overrides of the form "key.path=value" in order. Validates required keys
 * and ranges. On failure `cfg` is left freeable and `err` names file:line:col and the key.
 * Relative paths in the file resolve against the file's directory, relative `--set` paths
 * against the working directory; both are stored absolute. */
qs_status qs_config_load(qs_config *cfg, const char *path, const char *const *sets, int nset,
                         qs_err *err);

/* Applies one "key.path=value" override (value parsed as a YAML scalar or flow list, with
 * the file's type rules; "key=" sets a string key to ""). Errors read "--set key: cause". */
qs_status qs_config_set(qs_config *cfg, const char *assignment, qs_err *err);

/* The QS_OUT_* mask of cfg's output.formats and output.gptq_export (hdf5 always). */
unsigned qs_config_formats(const qs_config *cfg);

/* Writes the resolved config as YAML (every key, documented order). `include_runtime`
 * = 0 leaves out keys that must not change results (threads), for the config hash. */
qs_status qs_config_dump(const qs_config *cfg, FILE *out, int include_runtime, qs_err *err);

/* Checks required keys (model, run_dir) and cross-field rules (sampling file needs
 * calib.offsets_file; search.target_bpw and search.max_bytes not both set; damp_max >=
 * damp). Messages start with "<source_path>: ". qs_config_load calls it last. */
qs_status qs_config_validate(const qs_config *cfg, qs_err *err);

/* The schema's keys in table (= dump) order, e.g. "calib.nsamples"; NULL out of range.
 * The strings are static. */
int qs_config_nkeys(void);
const char *qs_config_key_name(int i);

/* Writes one Markdown table row per key (key, type, default, range, meaning). */
qs_status qs_config_describe(FILE *out, qs_err *err);

/* Threads per rank from `threads` (the config value) and the environment: an explicit
 * threads >= 1 wins; 0 reads SLURM_CPUS_PER_TASK, else OMP_NUM_THREADS (its first entry
 * when it is a list such as "8,2"), else 1. slurm_cpus and omp are the variables' values
 * (NULL or "" = unset). *out is the count (1..4096), *from names where it came from
 * ("threads", "SLURM_CPUS_PER_TASK", "OMP_NUM_THREADS" or "default"). A set variable that
 * is not an integer in 1..4096 is QS_ERR_INPUT naming it and its value. */
qs_status qs_config_threads(int threads, const char *slurm_cpus, const char *omp, int *out,
                            const char **from, qs_err *err);

/* Releases every string the config owns and zeroes it. */
void qs_config_free(qs_config *cfg);

#endif /* QS_CONFIG_H */
