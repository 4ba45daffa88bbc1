/* layer_plan.h: the layer plan as data: which rank owns which contiguous range of decoder
 * layers, each layer's cost and each rank's memory from the one formula (memory.h), and
 * calibrate's 2-D schedule: S pipeline stages (contiguous layer ranges, the optimal split
 * of calibrate's layer costs) x D replicas (qs_partition_grid; calib.replicas, 0 = chosen).
 * Rank r < S x D is stage r % S of replica r / S; ranks from S x D on idle in calibrate.
 * With D = 1 and ranks <= layers, S = ranks (the 1-D pipeline).
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
    int calib_stages;          /* S: calibrate's pipeline stages */
    int calib_replicas;        /* D: pipelines, each taking every D-th chunk */
    double calib_max_cost;     /* largest stage cost (qs_layer_cost_calibrate) */
    int *calib_first;          /* (S + 1,) stage s computes [calib_first[s], calib_first[s+1]) */
    int64_t calib_shipped;     /* bytes of chunk partials replicas > 0 send to replica 0 */
} qs_plan;

/* Rank `rank`'s part of calibrate's 2-D schedule: its stage (returned; -1 when it idles in
 * calibrate, with *role = {0, 0, -1}) and role (stage layers, replica). */
int qs_plan_calib_role(const qs_plan *p, int rank, qs_mem_calib *role);

qs_status qs_plan_alloc(qs_plan *p, int nranks, int nlayers, qs_err *err);
void qs_plan_free(qs_plan *p);

/* Serialises to JSON text (malloc'd, caller frees). */
qs_status qs_plan_to_json(const qs_plan *p, char **text, qs_err *err);
/* Parses JSON text written by qs_plan_to_json; `path` names the file in errors. */
qs_status qs_plan_from_json(qs_plan *p, const char *text, const char *path, qs_err *err);

/* The optimal contiguous split of the decoder layers over nranks (layer costs of
 * qs_layer_cost, min-max split of partition.h), calibrate's 2-D schedule for
 * cfg->calib.replicas (qs_partition_grid over qs_layer_cost_calibrate; the chunk count
 * from calib.nsamples and calib.chunk_samples) and each rank's memory from the formula. */
qs_status qs_plan_compute(const qs_hf_config *hf, const qs_config *cfg, int nranks,
                          qs_plan *out, qs_err *err);

/* Human-readable table: ranks, layer ranges, cost share, calibrate's stage and replica,
 * memory; a line with calibrate's S x D and what the replicas ship. */
void qs_plan_print(const qs_plan *p, FILE *out);

#endif /* QS_PLAN_H */
