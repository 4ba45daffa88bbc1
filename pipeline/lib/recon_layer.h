/* recon_layer.h: one layer's reconstruction results and how they move and land: per
 * linear x candidate the codes, fp16 scales, zeros, g_idx (integer candidates) or the GGUF
 * block bytes (GGUF candidates), per-row errors and the GPTQ damping record (qs_recon_layer), a piece of it (a row range of one linear x candidate,
 * the unit of work that ranks compute and send to the layer's writer), the solve of one
 * piece (GPTQ or RTN, the error under H and the RTN baseline), the exchange of pieces
 * between ranks, and the layer file run/<dir>/layer-NNN.h5 (layout: docs/reconstruct.md).
 * Used by the reconstruct stage (measure and final pass).
 *
 * Ownership: a qs_recon_layer owns its qs_recon_lin arrays (allocated on demand by
 * qs_recon_layer_get); qs_recon_layer_free / qs_recon_lin_free release them and are safe on
 * zeroed values.
 */
#ifndef QS_RECON_LAYER_H
#define QS_RECON_LAYER_H

#include <stddef.h>
#include <stdint.h>

#include "candidates.h"
#include "comm.h"
#include "layer.h"
#include "pool.h"
#include "quant.h"
#include "rundir.h"
#include "status.h"

/* One linear x candidate of one layer: rows [base, base + n) of the result (the layer's
 * writer holds all rows, base 0; a rank that only computes pieces holds one piece at a
 * time). */
typedef struct qs_recon_lin {
    int64_t base;     /* first row held */
    uint8_t *codes;   /* (n, d_in) integer candidate; NULL for a GGUF one */
    uint16_t *scales; /* (n, G) fp16 bits; integer */
    int32_t *zeros;   /* (n, G); integer */
    int32_t *g_idx;   /* (d_in); integer */
    uint8_t *blocks;  /* (n, row_bytes) GGUF candidate: its GGUF tensor rows; else NULL */
    double *err;      /* (n) per-row dW H dW^T */
    double *wnorm;    /* (n) per-row W H W^T */
    double *err_rtn;  /* (n) per-row error of RTN under the same H */
    qs_gptq_info info;
} qs_recon_lin;

typedef struct qs_recon_layer {
    int64_t d_out[QS_LIN_COUNT], d_in[QS_LIN_COUNT], G[QS_LIN_COUNT * QS_CANDS_MAX];
    int64_t rb[QS_LIN_COUNT * QS_CANDS_MAX]; /* [lin * ncand + c]: GGUF row bytes, 0 for an
                                                integer candidate */
    int ncand;
    qs_recon_lin *lc; /* (NLIN * ncand), [lin * ncand + c], arrays allocated on demand */
} qs_recon_layer;

void qs_recon_lin_free(qs_recon_lin *o);
/* Rows [base, base + n) of a linear with k inputs and G groups per row (integer candidate). */
qs_status qs_recon_lin_alloc(qs_recon_lin *o, int64_t base, int64_t n, int64_t k, int64_t G,
                             qs_err *err);
/* Rows [base, base + n) of linear lin x candidate c of lr, of either kind. */
qs_status qs_recon_layer_alloc_rows(const qs_recon_layer *lr, int lin, int c, qs_recon_lin *o,
                                    int64_t base, int64_t n, qs_err *err);

/* Shapes and group counts of a layer for the candidates cs (result arrays not yet made). */
qs_status qs_recon_layer_init(qs_recon_layer *lr, const qs_model_dims *d, const qs_cands *cs,
                              qs_err *err);
void qs_recon_layer_free(qs_recon_layer *lr);
/* All rows of (lin, c), allocated on first use; NULL when out of memory. */
qs_recon_lin *qs_recon_layer_get(qs_recon_layer *lr, int lin, int c, qs_err *err);

/* A piece: rows [r0, r1) of one linear x candidate of one layer. */
typedef struct qs_recon_piece {
    int layer, lin, cand;
    int64_t r0, r1;
    int owner;  /* computing rank */
    int writer; /* rank that writes the layer file */
} qs_recon_piece;

/* Bytes of a piece on the wire (qs_recon_piece_io). */
size_t qs_recon_piece_bytes(const qs_recon_layer *lr, const qs_recon_piece *pc);
/* Serialises (pack = 1) the rows of a piece from o into buf, or fills them (pack = 0). */
void qs_recon_piece_io(qs_recon_lin *o, const qs_recon_layer *lr, const qs_recon_piece *pc,
                       unsigned char *buf, int pack);

/* Quantizes rows [r0, r1) of W (d_out, d_in) with candidate c into o (which holds rows from
 * o->base <= r0), then the per-row errors: an integer GPTQ candidate's from the solve's own
 * sums (qs_gptq_error_rows, no matrix product), any other's (or when heavy damping makes
 * that inexact) by qs_quant_error_rows with row tiles of row_block rows from r0 (r0 is a
 * tile boundary); W H W^T of the rows only if wnorm; and, only with cs->rtn_baseline
 * (reconstruct.rtn_baseline), the RTN error under the same H (gptq method; else err_rtn is
 * NaN). f is the prepared factor (gptq) or NULL. A GGUF candidate: GPTQ on the type's block
 * grid (qs_gguf_gptq_quantize_rows) or llama.cpp's RTN (qs_gguf_quantize_rows, importance
 * diag(H) unless quant.gguf_chooser is ref); err is the error of the bytes written; err_rtn
 * is llama.cpp's RTN with importance diag(H) under the same H (the per-linear comparison of
 * GPTQ-into-GGUF with what llama-quantize --imatrix writes). */
qs_status qs_recon_solve_piece(const qs_cands *cs, int c, const float *H,
                               const qs_gptq_factor *f, const float *W, int64_t d_out,
                               int64_t d_in, int64_t r0, int64_t r1, int wnorm,
                               qs_recon_lin *o, qs_err *err);

/* One piece to solve for qs_recon_solve_pieces: candidate c, rows [r0, r1) of W into o. */
typedef struct qs_recon_task {
    int c;
    const float *H;           /* (d_in, d_in) the group's Hessian */
    const qs_gptq_factor *f;  /* the prepared factor (gptq) or NULL */
    const float *W;           /* (d_out, d_in) the whole linear */
    int64_t d_out, d_in, r0, r1;
    qs_recon_lin *o;          /* holds rows [o->base, ..) covering [r0, r1) */
    int wnorm;                /* 1: also W H W^T of the rows (the first candidate of the
                                 linear in this pass; the others' o->wnorm stay 0) */
} qs_recon_task;

/* qs_recon_solve_piece for every task, each one task of pool (NULL: in order on this
 * thread). Tasks write disjoint rows of their o; the per-linear fields every piece of an o
 * writes alike are written once: g_idx by its lowest-index task (the others' go to
 * per-worker scratch), info from that task after the run, so no two threads write the same
 * bytes. The bytes do not depend on the thread
 * count; the error is the lowest failing task's. Each running task holds one piece's solve
 * scratch (docs/design.md, S per thread). */
qs_status qs_recon_solve_pieces(qs_pool *pool, const qs_cands *cs, const qs_recon_task *t,
                                int64_t n, qs_err *err);

/* Collective over the ranks named in pcs: moves every piece from its owner to its layer's
 * writer, in piece order (blocking sends and receives in one global order cannot
 * deadlock). lrs[i] is the result of layer base + i (the writer's holds all rows). An owner
 * sends pbuf[i] when pbuf and pbuf[i] are set (packed when computed), else packs it from
 * lrs. An allocation failure aborts all ranks (peers are inside the exchange). */
qs_status qs_recon_exchange(const qs_comm *comm, const qs_recon_piece *pcs, int npc,
                            qs_recon_layer *lrs, int base, unsigned char *const *pbuf,
                            qs_err *err);

/* Where and how a stage pass writes its layer files. */
typedef struct qs_recon_file {
    const qs_rundir *rd;
    const char *dir;            /* "recon" (measure pass) or "final" */
    const char *config_hash;    /* (64 hex) recorded in meta/config_hash */
    const char *input_hash;     /* (64 hex) recorded in meta/input_hash */
    int quantized_inputs;       /* root attribute "inputs" */
} qs_recon_file;

/* Writes run/<dir>/layer-NNN.h5 durably. sel NULL: every candidate, tables (7, C); sel[k] =
 * the candidate of linear k or -1 (float, no datasets): tables (7, 1) and table/bits,
 * table/group_size per linear (7), 0 for a float linear. A GGUF candidate's results are
 * <lin>/<cand>/blocks (d_out, row_bytes) u8 (attribute gguf_type); its table/bits and
 * table/group_size are the type's nominal bits and block (qs_cand_bits); and, only when the
 * run has GGUF candidates (so files of integer-only runs keep their bytes), table/gguf_type
 * holds the GGML type id per column (-1: integer candidate, or float). */
qs_status qs_recon_layer_write(const qs_recon_file *f, int layer, qs_recon_layer *lr,
                               const qs_cands *cs, const int *sel, qs_err *err);

/* Writes run/<dir>/layer-NNN.h5 for the selection sel (as qs_recon_layer_write) from the
 * measure pass's layer file src (every candidate of cs): the selected candidates' codes,
 * scales, zeros, g_idx and table columns are read back and written by the same writer, so
 * the file's bytes equal what qs_recon_layer_write gives for results equal to src's — the
 * final pass's results of a layer whose inputs equal the measure pass's. src must carry
 * f->config_hash and src_input_hash (64 hex) and cs's candidates in order (QS_ERR_INPUT
 * otherwise). d: the model's dimensions. */
qs_status qs_recon_layer_write_from(const qs_recon_file *f, int layer, const char *src,
                                    const char *src_input_hash, const qs_model_dims *d,
                                    const qs_cands *cs, const int *sel, qs_err *err);

#endif /* QS_RECON_LAYER_H */
