/* plan.c (stage): assigns contiguous ranges of decoder layers to ranks with the optimal
 * min-max split of the layer costs, and calibrate's 2-D schedule (stages x replicas)
 * (qs_plan_compute: lib/layer_plan.c, memory from the one formula of lib/memory.c) and
 * writes run/plan/plan.json (one unit). Inputs: the model fingerprint and the rank count
 * with a forced calib.replicas (a new rank or replica count redoes the plan only; no other
 * stage's manifest hashes the plan).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "layer_plan.h"
#include "sha256.h"
#include "stage.h"

static qs_status plan_open(const qs_stage_ctx *ctx, int pass, void **state, qs_stage_open *o,
                           qs_err *err) {
    (void)pass;
    (void)state;
    char nr[64], ranks_hash[65];
    /* calib.replicas is a runtime key (outside the config hash): a forced value is an input */
    if (ctx->cfg->calib.replicas > 0)
        snprintf(nr, sizeof(nr), "nranks=%d replicas=%d", ctx->comm->size,
                 ctx->cfg->calib.replicas);
    else
        snprintf(nr, sizeof(nr), "nranks=%d", ctx->comm->size);
    qs_sha256_hex(nr, strlen(nr), ranks_hash);
    qs_status st = qs_manifest_add_input(&o->inputs, "model", ctx->model_hash, err);
    if (st == QS_OK) st = qs_manifest_add_input(&o->inputs, "nranks", ranks_hash, err);
    if (st == QS_OK) st = qs_stage_set_units(o, 1, "plan", err);
    return st;
}

/* Rank 0 computes and writes the plan; everyone learns the outcome. */
static qs_status plan_run(const qs_stage_ctx *ctx, void *state, qs_err *err) {
    (void)state;
    qs_status st = QS_OK;
    qs_plan plan;
    char *text = NULL, path[QS_PATH_MAX];
    memset(&plan, 0, sizeof(plan));
    if (ctx->comm->rank == 0 && ctx->units->todo[0]) {
        const char *rel = QS_REL_PLAN;
        QS_CHECK(qs_plan_compute(&ctx->model->hf, ctx->cfg, ctx->comm->size, &plan, err));
        QS_CHECK(qs_plan_to_json(&plan, &text, err));
        QS_CHECK(qs_rundir_path(ctx->rd, rel, path, sizeof(path), err));
        QS_CHECK(qs_write_file_atomic(path, text, strlen(text), err));
        QS_CHECK(qs_stage_unit_done(ctx, 0, &rel, 1, err));
        if (!ctx->log->quiet) qs_plan_print(&plan, stdout);
    }
done:
    /* no one is blocked before this */
    st = qs_comm_agree(ctx->comm, st, err);
    free(text);
    qs_plan_free(&plan);
    return st;
}

const qs_stage qs_stage_plan = {"plan", QS_DIR_PLAN, 0, 0, plan_open, plan_run, NULL};
