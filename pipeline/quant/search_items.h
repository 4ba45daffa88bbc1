/* search_items.h: the pure logic of the mixed-precision search stage (stages/search.c):
 * from the per-layer candidate tables to knapsack items (tied fused groups, pins, allow rules,
 * serving restrictions), the byte budget, and back from a solution to per-linear
 * candidate names. No MPI, no files: the stage reads the tables and writes the outputs.
 *
 * Linear names for patterns are "layers.<l>.<lin>" with lin in q k v o gate up down
 * (qs_alloc_linear_name order = qs_linear_kind order). Patterns are fnmatch(3) globs.
 *
 * Ownership: qs_search_tables and qs_search_items own their arrays; the *_free functions
 * release them and are safe on zeroed structs.
 */
#ifndef QS_QUANT_SEARCH_H
#define QS_QUANT_SEARCH_H

#include <stdint.h>

#include "quant.h"
#include "status.h"

#define QS_SEARCH_NLIN 7 /* = QS_LIN_COUNT */
#define QS_SEARCH_MAX_CAND 64

/* Every layer's table, gathered in layer order. Index (l, k, c) = (l * 7 + k) * ncand + c. */
typedef struct qs_search_tables {
    int nlayers;
    int ncand;
    char name[QS_SEARCH_MAX_CAND][QS_QUANT_NAME_MAX]; /* (ncand) candidate names */
    int bits[QS_SEARCH_MAX_CAND];                     /* (ncand) */
    int group[QS_SEARCH_MAX_CAND];                    /* (ncand) */
    double *error;      /* (nlayers, 7, ncand) table/error */
    double *relative;   /* (nlayers, 7, ncand) table/relative */
    int64_t *bytes;     /* (nlayers, 7, ncand) exact GPTQ payload bytes, -1 = no layout */
    int32_t *can_serve; /* (nlayers, 7, ncand) */
    int64_t *d_out;     /* (nlayers, 7) */
    int64_t *d_in;      /* (nlayers, 7) */
} qs_search_tables;

/* Allocates the arrays for nlayers x ncand (zeroed); names/bits/groups are the caller's. */
qs_status qs_search_tables_alloc(qs_search_tables *t, int nlayers, int ncand, qs_err *err);
void qs_search_tables_free(qs_search_tables *t);

/* Constraints of the config (borrowed strings, validated for syntax by config.c). */
typedef struct qs_search_rules {
    int tie_fused;           /* q/k/v one item, gate/up one item */
    int serve_marlin;        /* only 4/8-bit symmetric candidates with can_serve */
    int need_export;         /* only candidates the GPTQ export can hold for the shape
                                (can_serve: input size a multiple of the group size) */
    int sym;                 /* quant.sym of the run (all candidates share it) */
    const uint8_t *servable; /* (nlayers, 7, ncand) or NULL: 0 where the run's output formats
                                or serving engine cannot take the candidate for the linear */
    const char *serve_what;  /* what servable stands for in messages ("llama.cpp"), or NULL */
    const char *const *pin;  /* (npin) "PATTERN=CAND" */
    int npin;
    const char *const *allow; /* (nallow) "PATTERN=CAND,CAND,..." */
    int nallow;
} qs_search_rules;

/* The knapsack: item i covers the linears in lin_mask[i] of layer[i]; every item has all
 * ncand choices (choice c = candidate c), disallowed ones masked. */
typedef struct qs_search_items {
    int n;
    int ncand;
    int *layer;         /* (n) */
    int *lin_mask;      /* (n) bit k = linear k */
    int *nchoice;       /* (n) all = ncand */
    int64_t *size;      /* (n, ncand) summed bytes of the item's linears (0 when masked) */
    double *cost;       /* (n, ncand) summed cost (0 when masked) */
    uint8_t *allowed;   /* (n, ncand) */
    int *pinned;        /* (n) -1 = free */
    int64_t nweights;   /* sum of d_out * d_in over all linears */
} qs_search_items;

/* Builds the items from the tables. `cost` is (nlayers, 7, ncand), the objective's per-linear
 * cost (>= 0, finite). Rules, in order: bytes == -1 is not allowed; servable == 0 is not
 * allowed; serve_marlin keeps
 * bits 4/8 with sym and can_serve; every matching allow rule intersects a linear's set; a
 * pin fixes a linear (a pin on one linear of a tied item pins the item). Errors
 * (QS_ERR_INPUT, one line): a rule naming an unknown candidate or matching no linear, two
 * pins of one linear or one tied item that differ, a pin on a candidate that is not
 * allowed, an item left without any candidate, serve marlin with sym false. */
qs_status qs_search_items_build(const qs_search_tables *t, const double *cost,
                                const qs_search_rules *r, qs_search_items *it, qs_err *err);
void qs_search_items_free(qs_search_items *it);

/* Replaces the costs of existing items (same shapes) from a new per-linear cost array. */
void qs_search_items_set_cost(qs_search_items *it, const qs_search_tables *t,
                              const double *cost);

/* The smallest and largest feasible payload (each item at its smallest / largest allowed
 * size); 1 if every item has exactly one allowed choice (the allocation is fixed). */
void qs_search_items_range(const qs_search_items *it, int64_t *min_bytes, int64_t *max_bytes,
                           int *fixed);

/* The payload budget. target_bpw > 0: floor(target_bpw * nweights / 8); else max_bytes >
 * 0: max_bytes - unquant_bytes; neither: INT64_MAX when `fixed`, else QS_ERR_INPUT asking
 * for a budget (cand_list names the candidates). A budget below min_bytes is QS_ERR_INPUT
 * naming the smallest feasible bpw / max_bytes. */
qs_status qs_search_budget(double target_bpw, int64_t max_bytes, int64_t nweights,
                           int64_t unquant_bytes, int64_t min_bytes, int fixed,
                           const char *cand_list, int64_t *budget, qs_err *err);

/* Expands a solution (choice per item) into names: names[(l * 7 + k)] = candidate name.
 * Re-sums the payload in int64 into *payload (over all linears). */
void qs_search_expand(const qs_search_items *it, const qs_search_tables *t, const int *choice,
                      char (*names)[QS_QUANT_NAME_MAX], int64_t *payload);

/* 1 if vLLM's gptq_marlin path serves every linear: names[(l * 7 + k)] (nnames = nlayers * 7)
 * are all 4/8-bit, sym, and can_serve for that linear. */
int qs_search_marlin_path(const qs_search_tables *t, char (*names)[QS_QUANT_NAME_MAX],
                          int64_t nnames, int sym);

#endif /* QS_QUANT_SEARCH_H */
