/* plan.c (stage): assigns contiguous ranges of decoder layers to ranks with the optimal
 * min-max split of the layer costs (mpi/partition), records each rank's memory from the
 * one formula (pipeline/memory.c), and writes run/plan/plan.json + manifest.
 * Inputs hashed: config hash, model fingerprint and the rank count (a new rank count
 * redoes the plan only).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "memory.h"
#include "partition.h"
#include "layer_plan.h"
#include "pack.h"
#include "weights.h"
#include "sha256.h"
#include "stage.h"

qs_status qs_stage_plan_run(const qs_stage_ctx *ctx, const qs_stage_args *args, qs_err *err) {
    (void)args;
    qs_status st = QS_OK;
    qs_plan plan;
    qs_manifest want, have;
    char *text = NULL;
    char path[QS_PATH_MAX], ranks_hash[65], nr[32];
    int found = 0, matches = 0;
    memset(&plan, 0, sizeof(plan));
    qs_manifest_init(&want, "plan", ctx->config_hash);
    memset(&have, 0, sizeof(have));

    snprintf(nr, sizeof(nr), "nranks=%d", ctx->comm->size);
    qs_sha256_hex(nr, strlen(nr), ranks_hash);
    if (ctx->comm->rank == 0) {
        QS_CHECK(qs_manifest_add_input(&want, "model", ctx->model_hash, err));
        QS_CHECK(qs_manifest_add_input(&want, "nranks", ranks_hash, err));
        QS_CHECK(qs_manifest_read(&have, ctx->rd, "plan", &found, err));
        if (found) QS_CHECK(qs_manifest_check(&have, &want, ctx->rd, &matches, err));
        if (matches) {
            qs_log_info(ctx->log, "plan: up to date, skipped");
            goto done;
        }
        QS_CHECK(qs_plan_compute(&ctx->model->hf, ctx->cfg, ctx->comm->size, &plan, err));
        QS_CHECK(qs_plan_to_json(&plan, &text, err));
        QS_CHECK(qs_rundir_mkdir(ctx->rd, "plan", err));
        QS_CHECK(qs_rundir_path(ctx->rd, "plan/plan.json", path, sizeof(path), err));
        QS_CHECK(qs_write_file_atomic(path, text, strlen(text), err));
        QS_CHECK(qs_manifest_add_output(&want, ctx->rd, "plan/plan.json", err));
        QS_CHECK(qs_manifest_write(&want, ctx->rd, err));
        if (!ctx->log->quiet) qs_plan_print(&plan, stdout);
    }
done:
    /* rank 0 did the work; everyone learns the outcome (no one is blocked before this) */
    st = qs_comm_agree(ctx->comm, st, err);
    free(text);
    qs_plan_free(&plan);
    qs_manifest_free(&want);
    qs_manifest_free(&have);
    return st;
}
