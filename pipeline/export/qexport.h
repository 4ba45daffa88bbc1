/* qexport.h: the quantized-checkpoint writer, one for every packed-integer format a serving
 * engine loads (GPTQ: gptq_export.h; compressed-tensors "pack-quantized": ct_export.h).
 *
 * The writer owns what every format shares: the export directory (export_dir.h: temp
 * directory, shards, index, config.json, side files of the source model), the declared-order
 * item table with fused ties and float modules (export_items.h), the linear's bias, the
 * order and state checks, and the commit. A format is a table (qs_qexport_format) of the few
 * things that differ: which schemes and shapes it takes, the tensors of one quantized linear,
 * how they are packed, and the quantization_config it describes them with.
 *
 * Use: begin with a format -> declare every linear and tensor (fixes the file layout) -> add
 * each in the declared order (one layer at a time: the caller never holds the model) ->
 * finish. Everything is written in `<dir>.tmp.<pid>/`, which finish renames to `<dir>`; on
 * any error or qs_qexport_free before finish the temporary directory is removed. After an
 * error the writer refuses further calls (QS_ERR_INTERNAL).
 *
 * Ownership: begin allocates the writer; qs_qexport_free releases it (always call it; safe
 * on NULL). Input buffers stay the caller's; names are copied. Formats are static tables.
 */
#ifndef QS_QEXPORT_H
#define QS_QEXPORT_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "export_dir.h"
#include "export_items.h" /* qs_gptq_scheme, qs_gptq_linear, qs_export_items */
#include "safetensors.h"
#include "status.h"

typedef struct qs_qexport_opts {
    int64_t shard_bytes;  /* data bytes per shard; <= 0 or total below it: one file */
    int v2;               /* GPTQ: 0 = checkpoint_format "gptq" (v1, zero-1 stored), 1 = "gptq_v2" */
    int static_groups;    /* act-order with natural groups (GPTQ: recorded; compressed-tensors:
                           * actorder "weight", no weight_g_idx) */
    int true_sequential;  /* GPTQ: recorded in the config */
    double damp_percent;  /* GPTQ: recorded in the config */
    int overwrite;        /* replace an existing `dir` (else it is a QS_ERR_INPUT) */
} qs_qexport_opts;

/* Defaults: 4 GiB shards, v1, static_groups 0, true_sequential 1, damp 0.01, no overwrite. */
void qs_qexport_opts_default(qs_qexport_opts *o);

/* One tensor of a quantized linear "<module>.<suffix>" of dtype dt, shape[0..ndim). */
typedef struct qs_qexport_part {
    const char *suffix; /* static: "qweight", "weight_packed", ... */
    qs_dtype dt;
    int ndim;           /* 1 or 2 */
    int64_t shape[2];
} qs_qexport_part;

#define QS_QEXPORT_PARTS_MAX 8

/* What one format adds to the writer. Callbacks see the directory, the options and the item
 * (export_items.h: module, scheme, dims, first tensor t0); none keeps state. */
typedef struct qs_qexport_format {
    const char *name;      /* "GPTQ", "compressed-tensors": in messages */
    size_t suffix_room;    /* the longest tensor-name suffix it appends to a module name */
    const char *side_json; /* a file that repeats the quantization_config, or NULL */
    /* QS_ERR_INPUT naming `module` when the format has no layout for the scheme at
     * (d_out, d_in). */
    qs_status (*check)(const char *module, int64_t d_out, int64_t d_in,
                       const qs_gptq_scheme *s, const qs_qexport_opts *o, qs_err *err);
    /* The linear's tensors (without its bias) in writing order into out
     * (QS_QEXPORT_PARTS_MAX); returns how many. */
    int (*parts)(int64_t d_out, int64_t d_in, const qs_gptq_scheme *s, const qs_qexport_opts *o,
                 qs_qexport_part *out);
    /* Packs `q` and writes the linear's tensors [it->t0, ...) (without its bias); QS_ERR_INPUT
     * naming the module on data the format cannot hold. */
    qs_status (*put)(qs_export_dir *d, const qs_export_item *it, const qs_gptq_linear *q,
                     const qs_qexport_opts *o, qs_err *err);
    /* The quantization_config object of config.json (and of side_json). */
    qs_status (*config)(const qs_export_items *its, const char *dir, const qs_qexport_opts *o,
                        cJSON **out, qs_err *err);
} qs_qexport_format;

typedef struct qs_qexport qs_qexport;

/* Creates `<dir>.tmp.<pid>/` (the parent of `dir` must exist). `src_model_dir` holds the
 * source config.json (required) and tokenizer files (optional). QS_ERR_INPUT if `dir`
 * exists and !opts->overwrite. */
qs_status qs_qexport_begin(qs_qexport **x, const qs_qexport_format *fmt, const char *dir,
                           const char *src_model_dir, const qs_qexport_opts *opts, qs_err *err);

/* Declares quantized linear `module` (e.g. "model.layers.3.self_attn.q_proj") of shape
 * (d_out, d_in): QS_ERR_INPUT naming the module when the format does not take the scheme
 * at that shape, the bias dtype is not F32/F16/BF16, or the name repeats or is too long.
 * has_bias: a (d_out,) bias "<module>.bias" in bias_dtype, written after its tensors. */
qs_status qs_qexport_declare_linear(qs_qexport *x, const char *module, int64_t d_out,
                                    int64_t d_in, const qs_gptq_scheme *scheme, int has_bias,
                                    qs_dtype bias_dtype, qs_err *err);

/* Declares a plain tensor (written as given). */
qs_status qs_qexport_declare_tensor(qs_qexport *x, const char *name, qs_dtype dt, int ndim,
                                    const int64_t *shape, qs_err *err);

/* Marks module `module` as left in float (for a fused member, its whole fused group): GPTQ
 * gives it a "-:<regex>$" dynamic key, compressed-tensors an "ignore" entry, so loaders
 * read its plain .weight (declared as a plain tensor). A fused group with float and
 * quantized members is a QS_ERR_INPUT when the layout is fixed. Only before the first add. */
qs_status qs_qexport_exclude(qs_qexport *x, const char *module, qs_err *err);

/* Bytes of all tensor data declared so far. */
uint64_t qs_qexport_data_bytes(const qs_qexport *x);

/* Writes the next declared item, which must be linear `module` (the format packs it; the
 * bias must be given exactly when one was declared). The first add fixes the layout (no
 * declarations after it) and checks that fused groups share one scheme. */
qs_status qs_qexport_add_linear(qs_qexport *x, const char *module, const qs_gptq_linear *q,
                                qs_err *err);

/* Writes the next declared item, which must be plain tensor `name` (nbytes must match). */
qs_status qs_qexport_add_tensor(qs_qexport *x, const char *name, const void *data,
                                size_t nbytes, qs_err *err);

/* Checks every item was written, writes the index (when sharded), config.json with the
 * format's quantization_config (and its side file), copies the tokenizer files, fsyncs and
 * renames the directory. */
qs_status qs_qexport_finish(qs_qexport *x, qs_err *err);

/* Releases the writer; before a successful finish, removes the temporary directory. */
void qs_qexport_free(qs_qexport *x);

#endif /* QS_QEXPORT_H */
