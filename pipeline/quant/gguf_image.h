/* gguf_image.h: the GGUF blocks that are an exact image of integer codes — symmetric 4-bit
 * with group 32 as Q4_0 and symmetric 8-bit with group 32 as Q8_0 (natural groups: g_idx
 * j / 32). The fp16 scale is the block's d and the codes shift by the symmetric zero
 * (q - 8 for Q4_0's nibbles, q - 128 as Q8_0's int8), so llama.cpp's dequantization,
 * (nibble - 8) * d or int8 * d, gives the same floats as qs_quant_dequant_rows.
 *
 * Kernel only: caller's buffers, no state.
 */
#ifndef QS_GGUF_IMAGE_H
#define QS_GGUF_IMAGE_H

#include <stdint.h>

#include "gguf_types.h"
#include "status.h"

/* codes (nrows, d_in), scales / zeros (nrows, d_in / 32) of a symmetric candidate with
 * `bits` 4 or 8 and group 32 -> dst (nrows, qs_gguf_row_bytes(t, d_in)) with t Q4_0 (bits
 * 4) or Q8_0 (bits 8). g_idx (d_in,) must be natural. QS_ERR_INPUT (naming row and group)
 * for another type or shape, a zero point other than 2^(bits-1), a non-natural g_idx or a
 * code out of range. */
qs_status qs_gguf_from_codes(qs_gguf_type t, int bits, const uint8_t *codes,
                             const uint16_t *scales, const int32_t *zeros,
                             const int32_t *g_idx, int64_t nrows, int64_t d_in, void *dst,
                             qs_err *err);

#endif /* QS_GGUF_IMAGE_H */
