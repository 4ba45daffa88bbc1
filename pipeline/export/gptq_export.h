/* gptq_export.h: writes a Hugging Face GPTQ checkpoint directory, layer by layer.
 *
 * Output (docs/export.md has the details):
 *   model.safetensors, or model-0000k-of-0000n.safetensors + model.safetensors.index.json
 *     when the data exceed opts.shard_bytes (tensors are never split);
 *   per quantized linear <m>: <m>.qweight, <m>.qzeros (I32), <m>.scales (F16), <m>.g_idx
 *     (I32) packed by quant/pack.c (the one place that knows the layout), <m>.bias if any;
 *   other tensors (embeddings, norms, lm_head, ...) as given, in their declared dtype;
 *   config.json (the source's, with "quantization_config" added), quantize_config.json;
 *   tokenizer*, vocab.json, merges.txt, added_tokens.json, generation_config.json,
 *   special_tokens_map.json copied from the source directory when present.
 * Mixed allocations get a "dynamic" map with one "+:<regex>$" key per module, or per fused
 * group (q/k/v with vLLM's qkv_proj, gate/up with gate_up_proj) of a layer, so both HF
 * module names and vLLM's fused names resolve to the module's own scheme. The top-level
 * bits/group_size/sym/desc_act are the scheme used by the most modules (ties: the one
 * declared first).
 *
 * Use: begin -> declare every linear and tensor (fixes the file layout) -> add each in the
 * declared order (one layer at a time: the caller never holds the model) -> finish.
 * Everything is written in `<dir>.tmp.<pid>/`, which finish renames to `<dir>`; on any error
 * or qs_gptq_export_free before finish the temporary directory is removed.
 *
 * Ownership: begin allocates the exporter; qs_gptq_export_free releases it (always call it).
 * Input buffers stay the caller's; names are copied.
 */
#ifndef QS_GPTQ_EXPORT_H
#define QS_GPTQ_EXPORT_H

#include <stddef.h>
#include <stdint.h>

#include "export_items.h" /* qs_gptq_scheme, qs_gptq_linear */
#include "safetensors.h"
#include "status.h"

typedef struct qs_gptq_export_opts {
    int64_t shard_bytes;  /* data bytes per shard; <= 0 or total below it: one file */
    int v2;               /* 0: checkpoint_format "gptq" (v1, zero-1 stored; default), 1: "gptq_v2" */
    int static_groups;    /* recorded in the config */
    int true_sequential;  /* recorded in the config */
    double damp_percent;  /* recorded in the config */
    int overwrite;        /* replace an existing `dir` (else it is a QS_ERR_INPUT) */
} qs_gptq_export_opts;

/* Defaults: 4 GiB shards, v1, static_groups 0, true_sequential 1, damp 0.01, no overwrite. */
/* 1 if vLLM's gptq_marlin kernel serves the scheme: 4 or 8 bits, symmetric, group size
 * -1/32/64/128 (vLLM gptq_marlin.py TYPE_MAP, marlin_utils supported group sizes). The
 * exporter's top-level fields are Marlin-servable only when every linear is. */
int qs_gptq_scheme_marlin(const qs_gptq_scheme *s);

void qs_gptq_export_opts_default(qs_gptq_export_opts *o);

typedef struct qs_gptq_export qs_gptq_export;

/* Creates `<dir>.tmp.<pid>/` (the parent of `dir` must exist). `src_model_dir` holds the
 * source config.json (required) and tokenizer files (optional). QS_ERR_INPUT if `dir`
 * exists and !opts->overwrite. */
qs_status qs_gptq_export_begin(qs_gptq_export **x, const char *dir, const char *src_model_dir,
                               const qs_gptq_export_opts *opts, qs_err *err);

/* Declares quantized linear `module` (e.g. "model.layers.3.self_attn.q_proj") of shape
 * (d_out, d_in). QS_ERR_INPUT naming the module if the scheme has no GPTQ layout for this
 * shape (qs_pack_can_serve), or a name repeats. has_bias: a (d_out,) bias in bias_dtype. */
qs_status qs_gptq_export_declare_linear(qs_gptq_export *x, const char *module, int64_t d_out,
                                        int64_t d_in, const qs_gptq_scheme *scheme, int has_bias,
                                        qs_dtype bias_dtype, qs_err *err);

/* Declares a plain tensor (written as given). */
qs_status qs_gptq_export_declare_tensor(qs_gptq_export *x, const char *name, qs_dtype dt,
                                        int ndim, const int64_t *shape, qs_err *err);

/* Marks module `module` (e.g. "model.layers.3.self_attn.o_proj") as left in float: the
 * dynamic map gets a "-:<regex>$" key for it (for a fused member, for its whole fused
 * group), placed before the "+:" keys, so GPTQModel and vLLM load its plain .weight. Its
 * tensors are declared as plain tensors. A fused group with float and quantized members is
 * a QS_ERR_INPUT when the layout is fixed. Only before the first add. */
qs_status qs_gptq_export_exclude(qs_gptq_export *x, const char *module, qs_err *err);

/* Bytes of all tensor data declared so far. */
uint64_t qs_gptq_export_data_bytes(const qs_gptq_export *x);

/* Writes the next declared item, which must be linear `module`: packs with qs_pack_gptq and
 * streams qweight, qzeros, scales, g_idx (and bias). The first add fixes the layout (no
 * declarations after it) and checks that fused groups share one scheme. QS_ERR_INPUT
 * naming the module on a code/zero/g_idx out of range, or a non-natural g_idx without
 * desc_act. */
qs_status qs_gptq_export_add_linear(qs_gptq_export *x, const char *module,
                                    const qs_gptq_linear *q, qs_err *err);

/* Writes the next declared item, which must be plain tensor `name` (nbytes must match). */
qs_status qs_gptq_export_add_tensor(qs_gptq_export *x, const char *name, const void *data,
                                    size_t nbytes, qs_err *err);

/* Checks every item was written, writes the index (when sharded), config.json,
 * quantize_config.json, copies the tokenizer files, fsyncs and renames the directory. */
qs_status qs_gptq_export_finish(qs_gptq_export *x, qs_err *err);

/* Releases the exporter; before a successful finish, removes the temporary directory.
 * Safe on NULL. */
void qs_gptq_export_free(qs_gptq_export *x);

#endif /* QS_GPTQ_EXPORT_H */
