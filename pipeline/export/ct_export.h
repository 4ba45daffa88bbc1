/* ct_export.h: the compressed-tensors format of the checkpoint writer (qexport.h):
 * qs_qexport_begin(&x, &qs_ct_format, ...) writes a checkpoint of format "pack-quantized"
 * (the weight-only INT layout vLLM loads as WNA16), layer by layer; and the converter of a
 * qshard GPTQ export into one.
 *
 * Per quantized linear <m> with O outputs, I inputs, b bits, G groups (1 for channel),
 * in this order (docs/export.md has the details and the sources they were checked against):
 *   <m>.weight_packed     I32 (O, I*b/32)  codes, unsigned q, packed along the input: value i
 *                                          of row o at bit i*b of the row's 32-bit words
 *   <m>.weight_scale      F16 (O, G)       fp16 scales
 *   <m>.weight_zero_point I32 (O*b/32, G)  asymmetric only: unsigned zero z (not z-1) packed
 *                                          along the output: value o of column g at bit o*b
 *   <m>.weight_shape      I64 (2,)         [O, I]
 *   <m>.weight_g_idx      I32 (I,)         act-order with non-static groups only
 *   <m>.bias              as declared      if the linear has one
 * A symmetric scheme stores no zero point: the implied zero is 2^(b-1) (qshard's symmetric
 * zero), and W = s * (q - z) as for GPTQ. Other tensors are written as given.
 * config.json "quantization_config": quant_method "compressed-tensors", format
 * "pack-quantized", quantization_status "compressed", one config_groups entry per distinct
 * scheme (in order of first use) whose targets are "re:<module regex>" (export_items.h:
 * members of a fused q/k/v or gate/up group share one regex that also names vLLM's fused
 * module), "ignore" = "lm_head" (unless it is a quantized linear) and every float module.
 * Schemes: 4-bit symmetric and asymmetric, 8-bit symmetric (what vLLM's pack-quantized
 * loader takes on GPU; its CPU backend takes 4-bit only); anything else is refused.
 *
 * Use, ownership and errors: qexport.h. Options used: static_groups (act-order with natural
 * groups: actorder "weight", no g_idx; else actorder "group" with weight_g_idx).
 */
#ifndef QS_CT_EXPORT_H
#define QS_CT_EXPORT_H

#include <stddef.h>
#include <stdint.h>

#include "qexport.h"

/* 1 if the writer takes the scheme (bits/sym only: 4 sym, 4 asym, 8 sym); else 0 and `why`
 * (may be NULL) gets a one-line reason. */
int qs_ct_scheme_supported(const qs_gptq_scheme *s, qs_err *why);

/* Exact bytes of the tensors a quantized linear (d_out, d_in) of `scheme` takes in the
 * export (weight_packed, weight_scale, weight_zero_point when asymmetric, weight_shape,
 * weight_g_idx with act-order unless static_groups; no bias). QS_ERR_INPUT with the reason
 * (as declare_linear) when the writer does not take the scheme or the shape. */
qs_status qs_ct_linear_bytes(int64_t d_out, int64_t d_in, const qs_gptq_scheme *scheme,
                             int static_groups, int64_t *bytes, qs_err *err);

/* The format: declare_linear refuses (naming the module) a scheme it does not take or a
 * shape without a packed layout (d_in and d_out multiples of 32/b, d_in a multiple of the
 * group size); add_linear a code, zero point or g_idx out of range, a symmetric zero point
 * other than 2^(b-1), or a non-natural g_idx where no g_idx is written (no desc_act, or
 * static_groups). */
extern const qs_qexport_format qs_ct_format;

/* Converts a GPTQ export written by qshard (docs/export.md; v1 or v2, with or without a
 * dynamic map) into a compressed-tensors export at `out_dir`: the same codes, scales and
 * zero points (so the same dequantized weights), biases attached, float modules ("-:" keys)
 * ignored, other tensors copied in file order, side files and config.json taken from
 * `gptq_dir`. opts->static_groups is taken from the GPTQ config. QS_ERR_INPUT naming the
 * module for a scheme compressed-tensors does not take here. */
qs_status qs_ct_export_from_gptq(const char *gptq_dir, const char *out_dir,
                                 const qs_qexport_opts *opts, int64_t *nlinears,
                                 qs_err *err);

#endif /* QS_CT_EXPORT_H */
