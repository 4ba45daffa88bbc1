/* pack.h: the ONE place that knows the GPTQ checkpoint layout and its sizes.
 *
 * GPTQ tensors of a linear with d_out outputs, d_in inputs, b bits, G = ngroups:
 *   qweight (d_in*b/32, d_out) int32  codes packed along the input dimension
 *   qzeros  (G, d_out*b/32)    int32  zero points packed along the output dimension,
 *                                     stored as zero-1 in v1 and as zero in v2
 *   scales  (G, d_out)         fp16
 *   g_idx   (d_in,)            int32
 * Packing: along the packed dimension, value i sits at bit i*b of a little-endian stream of
 * 32-bit words (lowest index in the lowest bits). For 2, 4, 8 bits a word holds 32/b whole
 * values; for 3 bits 32 values fill 3 words and values 10 and 21 straddle word boundaries
 * (the GPTQ/AutoGPTQ 3-bit scheme). Packing unit (values per whole number of words): 16 at
 * 2 bits, 32 at 3, 8 at 4, 4 at 8; 5..7 bits have no GPTQ layout.
 * qshard's own tensors are layout-neutral (quant.h): codes (d_out, d_in), scales and zeros
 * (d_out, G). All buffers are the caller's.
 */
#ifndef QS_PACK_H
#define QS_PACK_H

#include <stdint.h>

#include "status.h"

/* Exact bytes of the four GPTQ tensors of one linear. */
typedef struct qs_pack_bytes {
    int64_t qweight;
    int64_t qzeros;
    int64_t scales;
    int64_t g_idx;
    int64_t total; /* sum of the four */
} qs_pack_bytes;

/* Values per packing unit (16, 32, 8, 4 for 2, 3, 4, 8 bits), 0 for bits without a layout. */
int qs_pack_unit(int bits);

/* Sizes of the GPTQ tensors; QS_ERR_INPUT (message says why) when the shape has no GPTQ
 * layout: bits not in {2,3,4,8}, d_in or d_out not a multiple of the packing unit. A
 * partial last group is allowed (G = ceil(d_in / group)). */
qs_status qs_pack_sizes(int64_t d_out, int64_t d_in, int bits, int group_size,
                        qs_pack_bytes *sizes, qs_err *err);

/* 1 if serving kernels can load the layer: packable (as qs_pack_sizes) and d_in a multiple
 * of the group size (any d_in for group -1). 0 otherwise; `why` (may be NULL) gets the
 * reason as a one-line message. */
int qs_pack_can_serve(int64_t d_out, int64_t d_in, int bits, int group_size, qs_err *why);

/* Packs codes (d_out, d_in), scales (d_out, G), zeros (d_out, G), g_idx (d_in) into
 * qweight, qzeros, scales_t (G, d_out) and g_idx_out (d_in), sized by qs_pack_sizes.
 * v1 = 1 stores zero-1 (zeros must be >= 1: quantize with zero_min1). QS_ERR_INPUT on a
 * code/zero/g_idx out of range or a shape without a layout. */
qs_status qs_pack_gptq(const uint8_t *codes, const uint16_t *scales, const int32_t *zeros,
                       const int32_t *g_idx, int64_t d_out, int64_t d_in, int bits,
                       int group_size, int v1, int32_t *qweight, int32_t *qzeros,
                       uint16_t *scales_t, int32_t *g_idx_out, qs_err *err);

/* Inverse of qs_pack_gptq: fills codes (d_out, d_in), scales (d_out, G), zeros (d_out, G)
 * (adding 1 back for v1) and g_idx (d_in). QS_ERR_INPUT if a g_idx is outside [0, G). */
qs_status qs_unpack_gptq(const int32_t *qweight, const int32_t *qzeros, const uint16_t *scales_t,
                         const int32_t *g_idx_in, int64_t d_out, int64_t d_in, int bits,
                         int group_size, int v1, uint8_t *codes, uint16_t *scales,
                         int32_t *zeros, int32_t *g_idx, qs_err *err);

/* Bit-stream primitives (exposed for tests and export code): value i of `count` b-bit
 * values at bit i*b of words[] (words must hold ceil(count*b/32) entries, zeroed by pack);
 * `stride` is the distance in words between consecutive words of the stream. */
void qs_pack_stream(const uint32_t *vals, int64_t count, int bits, uint32_t *words,
                    int64_t stride);
void qs_unpack_stream(const uint32_t *words, int64_t count, int bits, int64_t stride,
                      uint32_t *vals);

#endif /* QS_PACK_H */
