/* layer_plan.h: the layer plan as data: which rank owns which contiguous range of decoder
 * layers, each layer's cost and each rank's memory from the one formula (memory.h).
 * Computed here (qs_plan_compute: the plan stage, `qshard plan`, and the stages that need
 * the schedule of the current rank count), stored as run/plan/plan.json by the plan stage.
 * The plan is a schedule, not an input: no other stage's manifest hashes it.
 *
 * Ownership: qs_plan owns its arrays; qs_plan_free releases them (safe on zeroed).
 */
#ifndef QS_PLAN_H
#define QS_PLAN_H

#include <stdint.h>
#include <stdio.h>

#include "memory.h"
#include "status.h"

typedef struct qs_plan {
    int nranks;
    int nlayers;
    double max_cost;           /* optimal largest per-rank cost */
    double *layer_cost;        /* (nlayers,) */
    int *layer_rank;           /* (nlayers,) owner of each layer */
    int *first;                /* (nranks + 1,) rank r owns [first[r], first[r+1]) */
    qs_mem_estimate *mem;      /* (nranks,) formula per rank */
} qs_plan;

qs_status qs_plan_alloc(qs_plan *p, int nranks, int nlayers, qs_err *err);
void qs_plan_free(qs_plan *p);

/* Serialises to JSON text (malloc'd, caller frees). */
qs_status qs_plan_to_json(const qs_plan *p, char **text, qs_err *err);
/* Parses JSON text written by qs_plan_to_json; `path` names the file in errors. */
qs_status qs_plan_from_json(qs_plan *p, const char *text, const char *path, qs_err *err);

/* The optimal contiguous split of the decoder layers over nranks (layer costs of
 * qs_layer_cost, min-max split of partition.h) and each rank's memory from the formula. */
qs_status qs_plan_compute(const qs_hf_config *hf, const qs_config *cfg, int nranks,
                          qs_plan *out, qs_err *err);

/* Human-readable table: ranks, layer ranges, cost share and memory. */
void qs_plan_print(const qs_plan *p, FILE *out);

#endif /* QS_PLAN_H */
