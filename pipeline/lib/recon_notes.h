/* recon_notes.h: what the GPTQ factorization of each linear's Hessian met in one layer file
 * of the reconstruct stage (run/recon/ or run/final/ layer-NNN.h5, docs/reconstruct.md):
 * dead input columns (H_ii == 0: no calibration token activated the input, GPTQ zeroes the
 * weight column), damping raised above quant.damp (the damped Hessian was not positive
 * definite in fp32), and the fp64 fallback (fp32 failed at every damping up to
 * quant.damp_max). The facts come from the file's tables (table/ndead, table/damp,
 * table/damp_raised, table/fp64), so the reconstruct stage's log line (rank 0, once per layer
 * file it writes) and the run report's table (pipeline/report.c) say the same thing and
 * depend on nothing but the file: the same for any rank count.
 *
 * Ownership: plain values, no heap.
 */
#ifndef QS_RECON_NOTES_H
#define QS_RECON_NOTES_H

#include <stddef.h>
#include <stdint.h>

#include "hf_model.h"
#include "status.h"

/* One linear of one layer file: the largest value over its candidate columns (every GPTQ
 * candidate of a linear shares its Hessian group's factor, so they agree; an RTN run and a
 * float linear of the final pass record zeros). */
typedef struct qs_recon_note {
    int64_t d_in;   /* input columns of the linear (table/d_in) */
    int64_t ndead;  /* input columns with H_ii == 0 (their weights quantized to zero) */
    double damp;    /* damping finally used, as a fraction of mean diag(H) */
    int nraise;     /* x10 raises of quant.damp before the factorization succeeded */
    int fp64;       /* 1: fp32 failed at every damping, the factor was computed in fp64 */
} qs_recon_note;

typedef struct qs_recon_notes {
    qs_recon_note lin[QS_LIN_COUNT]; /* qs_linear_kind order: q k v o gate up down */
} qs_recon_notes;

/* Reads the notes of layer file `path` (either layout: (7, C) tables of the measure pass or
 * (7, 1) of the final pass). QS_ERR_INPUT naming the file and dataset when a table is
 * missing or misshapen. */
qs_status qs_recon_notes_read(const char *path, qs_recon_notes *n, qs_err *err);

/* 1 when the linear had dead columns, raised damping or the fp64 fallback. */
int qs_recon_note_any(const qs_recon_note *n);

/* The one-line summary of a layer's notes into buf (always NUL-terminated), e.g.
 *   "dead input columns: q,k,v 16 of 64, gate,up 8 of 64 (no calibration token activated
 *    them; their weights quantized to zero); damping raised: down 0.01 -> 1 (raised 2
 *    times); fp64 factorization: down"
 * Consecutive linears (qs_linear_kind order) with equal numbers are named together.
 * `damp_cfg` is quant.damp. Returns the number of linears with something to say (0: buf
 * is ""). */
int qs_recon_notes_line(const qs_recon_notes *n, double damp_cfg, char *buf, size_t len);

#endif /* QS_RECON_NOTES_H */
