/* gguf_image.c: integer codes as Q4_0 / Q8_0 blocks (see gguf_image.h). */
#include "gguf_image.h"

#include <string.h>

qs_status qs_gguf_from_codes(qs_gguf_type t, int bits, const uint8_t *codes,
                             const uint16_t *scales, const int32_t *zeros,
                             const int32_t *g_idx, int64_t nrows, int64_t d_in, void *dst,
                             qs_err *err) {
    const int64_t QK = QS_GGUF_QK_LEGACY, nb = d_in / QK;
    if (!((t == QS_GGUF_Q4_0 && bits == 4) || (t == QS_GGUF_Q8_0 && bits == 8)))
        return QS_FAIL(err, QS_ERR_INPUT, "%s is not the image of %d-bit codes",
                       qs_gguf_type_name(t), bits);
    if (d_in <= 0 || d_in % QK != 0)
        return QS_FAIL(err, QS_ERR_INPUT, "%s image: input size %lld is not a multiple of 32",
                       qs_gguf_type_name(t), (long long)d_in);
    for (int64_t j = 0; j < d_in; ++j)
        if (g_idx[j] != j / QK)
            return QS_FAIL(err, QS_ERR_INPUT, "%s image: g_idx[%lld] = %d is not natural",
                           qs_gguf_type_name(t), (long long)j, (int)g_idx[j]);
    const int32_t zero = 1 << (bits - 1);
    const int64_t bb = qs_gguf_block_bytes(t);
    uint8_t *out = dst;
    for (int64_t r = 0; r < nrows; ++r)
        for (int64_t b = 0; b < nb; ++b) {
            const uint8_t *q = codes + r * d_in + b * QK;
            uint8_t *blk = out + (r * nb + b) * bb;
            const uint16_t d = scales[r * nb + b];
            if (zeros[r * nb + b] != zero)
                return QS_FAIL(err, QS_ERR_INPUT, "%s image: row %lld group %lld: zero %d, "
                               "not the symmetric %d", qs_gguf_type_name(t), (long long)r,
                               (long long)b, (int)zeros[r * nb + b], (int)zero);
            blk[0] = (uint8_t)(d & 0xff); /* ggml_half d, little-endian */
            blk[1] = (uint8_t)(d >> 8);
            for (int64_t j = 0; j < QK; ++j)
                if (q[j] >= (1u << bits))
                    return QS_FAIL(err, QS_ERR_INPUT, "%s image: row %lld: code %d out of range",
                                   qs_gguf_type_name(t), (long long)r, (int)q[j]);
            if (t == QS_GGUF_Q4_0) {
                /* qs[j] = x[j] | x[j + 16] << 4, x the unsigned nibble (w = (x - 8) d) */
                for (int64_t j = 0; j < QK / 2; ++j)
                    blk[2 + j] = (uint8_t)(q[j] | (q[j + QK / 2] << 4));
            } else {
                for (int64_t j = 0; j < QK; ++j) {
                    const int8_t v = (int8_t)((int)q[j] - zero);
                    memcpy(blk + 2 + j, &v, 1);
                }
            }
        }
    return QS_OK;
}
