/* gptq_export.h: the Hugging Face GPTQ format of the checkpoint writer (qexport.h):
 * qs_qexport_begin(&x, &qs_gptq_format, ...) writes a GPTQ checkpoint directory.
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
 * Use, ownership and errors: qexport.h. Options used: v2 (checkpoint_format "gptq_v2" with
 * zeros stored as they are; else "gptq", v1, zero-1 stored), static_groups, true_sequential
 * and damp_percent (recorded in the config).
 */
#ifndef QS_GPTQ_EXPORT_H
#define QS_GPTQ_EXPORT_H

#include "qexport.h"

/* 1 if vLLM's gptq_marlin kernel serves the scheme: 4 or 8 bits, symmetric, group size
 * -1/32/64/128 (vLLM gptq_marlin.py TYPE_MAP, marlin_utils supported group sizes). The
 * exporter's top-level fields are Marlin-servable only when every linear is. */
int qs_gptq_scheme_marlin(const qs_gptq_scheme *s);

/* The format: takes every scheme qs_pack_can_serve does (2/3/4/8 bits) at that shape;
 * add_linear refuses codes/zeros/g_idx out of range, or a non-natural g_idx without
 * desc_act, naming the module. */
extern const qs_qexport_format qs_gptq_format;

#endif /* QS_GPTQ_EXPORT_H */
