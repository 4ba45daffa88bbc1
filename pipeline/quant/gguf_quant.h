/* gguf_quant.h: quantizers that write GGUF (llama.cpp / ggml) weight blocks exactly.
 *
 * Types: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 (blocks of 32 weights) and the K-quants Q2_K, Q3_K,
 * Q4_K, Q5_K, Q6_K (super-blocks of 256 weights in sub-blocks of 16 or 32), as laid out in
 * ggml-common.h. Blocks run along a row of W (the input dimension of a linear): a row of n
 * weights is n / block_elems blocks of block_bytes (gguf_types.h), rows follow each other.
 * The bytes are exactly what a GGUF tensor of that type holds.
 *
 * Kernels only: pointers, sizes and row ranges in; no MPI, no files, no global state. Every
 * buffer is the caller's. Conventions as quant.h: W is (d_out, d_in) row-major float, H is
 * (d_in, d_in); "rows" are output channels.
 *
 * Three quantizers, all of which write the same block formats:
 *  - qs_gguf_quantize_rows: llama.cpp's own quantizer (round to nearest per block), with or
 *    without importance weights (its imatrix path), reproduced bit for bit;
 *  - qs_gguf_gptq_quantize_rows: GPTQ whose columns are rounded on the type's grid, with the
 *    block parameters fixed as the solve reaches each block (docs/quant.md "GGUF").
 * and one dequantizer, qs_gguf_dequantize_rows, which gives bit for bit the floats llama.cpp's
 * dequantize_row_* computes (fp16 factors widened to f32, its multiplication order).
 *
 * Row-range discipline (ggml_quantize_chunk's): every function works on any range of rows
 * (the caller offsets W and dst to the first row); RTN rows are independent, so any split of
 * a layer's rows gives the same bytes. The GPTQ solve processes fixed tiles of row_block rows
 * (as qs_gptq_quantize_rows): split at multiples of row_block.
 *
 * How a reconstruct stage uses it, per linear group (shared Hessian H (n, n)) and type t:
 *   qs_gptq_prepare(H, n, &qp, &f)            once per H (qp.act_order = p.act_order; damp)
 *   imp[j] = H[j][j]                           the importance (n,), caller-owned
 *   per linear W (d_out, n) and row range [r0, r1) (row_block multiples):
 *     dst = tensor + r0 * qs_gguf_row_bytes(t, n)   (tensor: (d_out, row_bytes) bytes)
 *     qs_gguf_gptq_quantize_rows(&f, &p, imp, W + r0 * n, d_out, r0, r1, dst, wq)
 *     qs_quant_error_rows(H, n, W + r0 * n, wq, r1 - r0, ...)  the error of these bytes
 *   The written tensor is the d_out * qs_gguf_row_bytes(t, n) bytes, exactly (GGUF stores a
 *   weight (d_out, d_in) as d_out rows of blocks), so a candidate's on-disk size is known
 *   before quantizing. Working memory of one call: the factor's n^2 floats (caller's) plus
 *   about row_block * n * 6 bytes and GPTQ's lazy-block buffers.
 */
#ifndef QS_GGUF_QUANT_H
#define QS_GGUF_QUANT_H

#include <stdint.h>

#include "gguf_types.h"
#include "quant.h"
#include "status.h"

/* 1 if t is one of the ten block types above (F32/F16/BF16 are not quantized here). */
int qs_gguf_quant_supported(qs_gguf_type t);

/* QS_ERR_INPUT (naming the type and n) unless t is supported and n >= 1 is a multiple of its
 * block size. */
qs_status qs_gguf_check_shape(qs_gguf_type t, int64_t n, qs_err *err);

/* Dequantizes nrows rows of n weights: src (nrows, qs_gguf_row_bytes(t, n)) bytes ->
 * out (nrows, n) float. Bit for bit llama.cpp's dequantize_row_<type>. */
qs_status qs_gguf_dequantize_rows(qs_gguf_type t, const void *src, int64_t nrows, int64_t n,
                                  float *out, qs_err *err);

/* llama.cpp's quantizer for nrows rows of n weights: W (nrows, n) -> dst (nrows, row_bytes).
 * imp == NULL: quantize_row_<type>_ref (what llama-quantize writes without an imatrix);
 * imp (n,), the importance of each input column (llama.cpp's imatrix; qshard passes
 * diag(H)): quantize_<type> with quant_weights, its importance-weighted search. Q8_0 has no
 * importance path (llama.cpp ignores it; so does this). The same bytes as llama.cpp's code
 * compiled without floating-point contraction (docs/quant.md "GGUF"). QS_ERR_INPUT on a bad
 * shape, a non-finite weight or importance (naming row and column), or a negative importance. */
qs_status qs_gguf_quantize_rows(qs_gguf_type t, const float *W, int64_t nrows, int64_t n,
                                const float *imp, void *dst, qs_err *err);

/* ---- GPTQ on the block grid --------------------------------------------------------- */

/* How the GPTQ solve chooses a block's parameters (from the weights it sees then). */
typedef enum qs_gguf_chooser {
    QS_GGUF_CHOOSE_REF = 0,     /* llama.cpp's rule without importance */
    QS_GGUF_CHOOSE_IMATRIX = 1, /* llama.cpp's importance rule with imp (imp NULL: REF) */
    QS_GGUF_CHOOSE_SEARCH = 2   /* IMATRIX, then (K-quants, dynamic) each sub-block's scale
                                   and min codes searched near the rounded fit for the least
                                   imp-weighted squared error on the written grid */
} qs_gguf_chooser;

typedef struct qs_gguf_params {
    qs_gguf_type type;
    int chooser;       /* qs_gguf_chooser; SEARCH searches only with dynamic parameters
                          (static parameters are exactly RTN's) */
    int act_order;     /* columns by descending diag(H); must match the factor; needs
                          static_groups (blocks are natural column ranges) */
    int static_groups; /* 1: every block's parameters up front from W (dead inputs zeroed),
                          i.e. exactly RTN's choice; 0: fixed when the solve reaches the block
                          (K-quants: d, dmin at the super-block, each sub-block's scale/min
                          code at the sub-block) from the error-updated weights */
    int block_size;    /* GPTQ lazy column block B (128) */
    int row_block;     /* rows per fixed solve tile (256) */
} qs_gguf_params;

/* Defaults for type t: chooser SEARCH, no act-order, dynamic parameters, B 128, row_block
 * 256. */
void qs_gguf_params_default(qs_gguf_params *p, qs_gguf_type t);
/* QS_ERR_INPUT naming the field if a parameter is out of range. */
qs_status qs_gguf_params_check(const qs_gguf_params *p, qs_err *err);

/* GPTQ into GGUF blocks for rows [r0, r1) of a (d_out, d_in = f->n) weight.
 *   f    the layer's factor from qs_gptq_prepare (act_order as p->act_order; damping is the
 *        factor's);
 *   imp  (d_in,) importance per input column for the IMATRIX and SEARCH choosers (qshard
 *        passes diag(H)),
 *        or NULL; not read by the REF chooser;
 *   W    points at row r0: (r1-r0, d_in) row-major, not modified;
 *   dst  (r1-r0, qs_gguf_row_bytes(type, d_in)) bytes: the blocks written;
 *   wq   (r1-r0, d_in) or NULL: the dequantized weights, bit for bit
 *        qs_gguf_dequantize_rows(dst) (so qs_quant_error_rows(H, W, wq) is the error of the
 *        bytes written).
 * r0 must be a multiple of p->row_block and r1 a multiple of it or d_out. d_in must be a
 * multiple of the type's block. Dead inputs (H_ii == 0) are quantized as zero weights.
 * QS_ERR_INPUT on non-finite W or imp, bad shapes or parameters. BLAS single-threaded by the
 * caller, as qs_gptq_quantize_rows. */
qs_status qs_gguf_gptq_quantize_rows(const qs_gptq_factor *f, const qs_gguf_params *p,
                                     const float *imp, const float *W, int64_t d_out, int64_t r0,
                                     int64_t r1, void *dst, float *wq, qs_err *err);
/* Plain scalar twin (the paper's column-by-column loop, updates in double). */
qs_status qs_gguf_gptq_quantize_rows_ref(const qs_gptq_factor *f, const qs_gguf_params *p,
                                         const float *imp, const float *W, int64_t d_out,
                                         int64_t r0, int64_t r1, void *dst, float *wq, qs_err *err);

#endif /* QS_GGUF_QUANT_H */
