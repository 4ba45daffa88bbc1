/* alloc.h: a per-layer allocation of quantization candidates — which candidate each linear
 * of each decoder layer gets. The search stage writes it (run/search/allocation.json), the
 * final reconstruct pass, the writers, eval and the report read it. It is the contract
 * between those stages, so it is plain data with a stable JSON form.
 *
 * JSON form (keys in this order, written by qs_alloc_write_json):
 *   { "format": "qshard-allocation-1",
 *     "objective": "error", "budget_bytes": N, "payload_bytes": N, "total_bytes": N,
 *     "quantized_weights": N, "bpw": x, "predicted": x,
 *     "linears": ["q","k","v","o","gate","up","down"],
 *     "layers": [ ["w4g128","w4g128","w4g128","w3g128","w4g32","w4g32","w3g128"], ... ] }
 * An empty name "" means the linear stays unquantized (float). Summary fields are
 * informational (0 when unknown) and not read back into decisions.
 *
 * Ownership: a qs_alloc owns its arrays; qs_alloc_free releases them. A zero-initialised
 * qs_alloc may be freed.
 */
#ifndef QS_ALLOC_H
#define QS_ALLOC_H

#include <stdint.h>

#include "hf_model.h"
#include "quant.h"
#include "status.h"

typedef struct qs_alloc {
    int64_t nlayers;
    char (*cand)[QS_LIN_COUNT][QS_QUANT_NAME_MAX]; /* (nlayers, 7) candidate names, "" = float */
    char objective[32];     /* "error" | "relative" | "sensitivity" | "uniform" | ... */
    int64_t budget_bytes;   /* the budget the search solved for (0 = none) */
    int64_t payload_bytes;  /* GPTQ payload of the quantized linears (pack.c sizes) */
    int64_t total_bytes;    /* payload + unquantized tensors */
    int64_t quantized_weights; /* number of quantized weights (sum d_out * d_in) */
    double bpw;             /* payload_bytes * 8 / quantized_weights */
    double predicted;       /* the objective's predicted total */
} qs_alloc;

/* Allocates nlayers x 7 empty names (all float). */
qs_status qs_alloc_init(qs_alloc *a, int64_t nlayers, qs_err *err);
/* Every linear of every layer gets `cand`. */
qs_status qs_alloc_uniform(qs_alloc *a, int64_t nlayers, const char *cand, qs_err *err);
void qs_alloc_free(qs_alloc *a);

/* The short linear names used in files ("q", "k", ..., "down"); NULL out of range. */
const char *qs_alloc_linear_name(int lin);

/* JSON text (owned by the caller, free()) and back. Parsing checks the format tag, the
 * linear list, the layer count against `expect_layers` (>= 0; -1 = any) and name lengths;
 * errors are QS_ERR_INPUT naming `what` (a path or "allocation"). */
qs_status qs_alloc_to_json(const qs_alloc *a, char **text, qs_err *err);
qs_status qs_alloc_from_json(qs_alloc *a, const char *text, const char *what,
                             int64_t expect_layers, qs_err *err);

/* File forms: atomic write (temp -> rename); read = qs_read_file + qs_alloc_from_json. */
qs_status qs_alloc_write_json(const qs_alloc *a, const char *path, qs_err *err);
qs_status qs_alloc_read_json(qs_alloc *a, const char *path, int64_t expect_layers,
                             qs_err *err);

/* 1 if both allocations name the same candidates everywhere (summaries ignored). */
int qs_alloc_same(const qs_alloc *a, const qs_alloc *b);

#endif /* QS_ALLOC_H */
