/* search_kl.h: the search stage's measured objective and refinement (docs/search.md):
 *
 * - objective kl: for every item with a choice and each of its live candidates, the KL
 *   divergence of the next-token distribution from the float model's with only that item
 *   quantized at that candidate (lib/kl_probe.h: the pass starts at the item's layer from
 *   its cached float input), cached in search/kl.json after each measurement so a stopped
 *   search resumes; the item's cost is that KL (the predicted total is their sum);
 * - search.refine: from the exact optimum, N whole-model KL evaluations of neighbouring
 *   allocations at the same budget (one item a level up, random others a level down until
 *   the payload fits: EvoPress's level switching), keeping each that lowers the measured
 *   KL; the steps go to search/refine.csv.
 * Both are collective; rank 0 holds the items and tables and makes every decision from
 * values that are the same at any rank count, so the result is too.
 *
 * Ownership: everything borrowed; results are written into the caller's arrays.
 */
#ifndef QS_SEARCH_KL_H
#define QS_SEARCH_KL_H

#include <stdint.h>

#include "kl_probe.h"
#include "search_items.h"
#include "stage.h"

/* Collective: the per-linear costs (nlayers, 7, ncand) of objective kl into cost (rank 0;
 * other ranks pass NULL for it, t and items): the item's KL on its first linear, 0 on its
 * other linears and for items without a choice. `key` (64 hex + NUL, rank 0) keys the cache.
 * *nmeasured = the number of (item, candidate) measurements the costs rest on. */
qs_status qs_search_kl_costs(const qs_stage_ctx *ctx, qs_kl_probe *probe,
                             const qs_search_items *it, const qs_search_tables *t,
                             const char *key, double *cost, int64_t *nmeasured, qs_err *err);

/* What the refinement did (on every rank). */
typedef struct qs_search_refine_result {
    int64_t evals;     /* neighbours measured */
    int64_t accepted;  /* of them kept */
    double kl_start;   /* measured KL of the exact optimum */
    double kl_end;     /* of the returned allocation */
} qs_search_refine_result;

/* Collective: refines choice (it->n, rank 0: in = the exact optimum, out = the refined
 * allocation, never above budget) with search.refine evaluations. */
qs_status qs_search_refine(const qs_stage_ctx *ctx, qs_kl_probe *probe,
                           const qs_search_items *it, const qs_search_tables *t,
                           int64_t budget, int *choice, qs_search_refine_result *res,
                           qs_err *err);

#endif /* QS_SEARCH_KL_H */
