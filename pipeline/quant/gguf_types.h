/* gguf_types.h: the GGML tensor types qshard writes into GGUF files: their numeric ids (as
 * stored in a GGUF tensor info), block sizes in weights and bytes, and names. The one table
 * of these facts: the GGUF quantizers (quant/) and the GGUF writer (export/) both read it.
 *
 * Facts from llama.cpp's ggml-common.h / gguf-py constants (GGML_QUANT_SIZES), checked with
 * the `gguf` package in tests. Blocks run along a row (the input dimension of a linear); a row
 * of n weights of type t takes n / block_elems(t) blocks (n must be a multiple).
 */
#ifndef QS_GGUF_TYPES_H
#define QS_GGUF_TYPES_H

#include <stddef.h>
#include <stdint.h>

/* Values are GGML's type ids (ggml_type), stored as-is in GGUF tensor infos. */
typedef enum qs_gguf_type {
    QS_GGUF_F32 = 0,
    QS_GGUF_F16 = 1,
    QS_GGUF_Q4_0 = 2,
    QS_GGUF_Q4_1 = 3,
    QS_GGUF_Q5_0 = 6,
    QS_GGUF_Q5_1 = 7,
    QS_GGUF_Q8_0 = 8,
    QS_GGUF_Q2_K = 10,
    QS_GGUF_Q3_K = 11,
    QS_GGUF_Q4_K = 12,
    QS_GGUF_Q5_K = 13,
    QS_GGUF_Q6_K = 14,
    QS_GGUF_BF16 = 30
} qs_gguf_type;

#define QS_GGUF_QK_LEGACY 32 /* weights per block of Q4_0 .. Q8_0 */
#define QS_GGUF_QK_K 256     /* weights per super-block of the K-quants */

/* 1 if t is one of the types above. */
int qs_gguf_type_known(int t);
/* Weights per block (1 for F32/F16/BF16). 0 for an unknown type. */
int64_t qs_gguf_block_elems(qs_gguf_type t);
/* Bytes per block. 0 for an unknown type. */
int64_t qs_gguf_block_bytes(qs_gguf_type t);
/* Bytes of a row of n weights; -1 if n is not a multiple of the block size. */
int64_t qs_gguf_row_bytes(qs_gguf_type t, int64_t n);
/* "Q4_K", "F16", ... (GGML's spelling); "?" for an unknown type. */
const char *qs_gguf_type_name(qs_gguf_type t);
/* Parses a GGML spelling (case-insensitive: "q4_k", "Q8_0"); 0 on success, -1 if unknown. */
int qs_gguf_type_parse(const char *s, qs_gguf_type *out);

#endif /* QS_GGUF_TYPES_H */
