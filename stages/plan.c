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

qs_status qs_stage_plan_compute(const qs_hf_config *hf, const qs_config *cfg, int nranks,
                                qs_plan *out, qs_err *err) {
    qs_status st = QS_OK;
    int L = (int)hf->num_hidden_layers;
    QS_CHECK(qs_plan_alloc(out, nranks, L, err));
    for (int l = 0; l < L; ++l) out->layer_cost[l] = qs_layer_cost(hf, cfg, l);
    QS_CHECK(qs_partition_contiguous(out->layer_cost, L, nranks, out->first, &out->max_cost,
                                     err));
    for (int r = 0; r < nranks; ++r) {
        for (int l = out->first[r]; l < out->first[r + 1]; ++l) out->layer_rank[l] = r;
        out->mem[r] = qs_mem_for_rank(hf, cfg, r, nranks, out->first[r],
                                      out->first[r + 1] - out->first[r]);
    }
done:
    if (st != QS_OK) qs_plan_free(out);
    return st;
}

/* Candidates vs the model's shapes, before anything runs (stage.h). */
qs_status qs_stage_plan_check(const qs_hf_config *hf, const qs_config *cfg, qs_err *err) {
    static const char *const MOD[QS_LIN_COUNT] = {
        "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
        "mlp.gate_proj",    "mlp.up_proj",      "mlp.down_proj"};
    /* the items the search ties (q/k/v, gate/up) must share one usable candidate */
    static const int ITEMS[4] = {0x07, 0x08, 0x30, 0x40};
    qs_model_dims d;
    qs_model_dims_from_hf(&d, hf);
    const int exporting = cfg->output.gptq_export;
    for (int it = 0; it < 4; ++it) {
        int masks[QS_LIN_COUNT], nm = 0;
        if (cfg->search.tie_fused) {
            masks[nm++] = ITEMS[it];
        } else {
            for (int k = 0; k < QS_LIN_COUNT; ++k)
                if (ITEMS[it] & (1 << k)) masks[nm++] = 1 << k;
        }
        for (int m = 0; m < nm; ++m) {
            int usable = 0, bad_k = -1;
            char why[QS_ERR_MSG_MAX] = "";
            for (int b = 0; b < cfg->quant.nbits && !usable; ++b)
                for (int g = 0; g < cfg->quant.ngroup_size && !usable; ++g) {
                    int ok = 1;
                    for (int k = 0; k < QS_LIN_COUNT && ok; ++k) {
                        if (!(masks[m] & (1 << k))) continue;
                        int64_t d_out, d_in;
                        qs_linear_shape(&d, (qs_linear_kind)k, &d_out, &d_in);
                        qs_err e = {0};
                        qs_pack_bytes sz;
                        const int bits = cfg->quant.bits[b], gs = cfg->quant.group_size[g];
                        ok = exporting ? qs_pack_can_serve(d_out, d_in, bits, gs, &e)
                                       : qs_pack_sizes(d_out, d_in, bits, gs, &sz, &e) == QS_OK;
                        if (!ok) {
                            bad_k = k;
                            snprintf(why, sizeof(why), "%s", e.msg);
                        }
                    }
                    usable = ok;
                }
            if (!usable) {
                int64_t d_out, d_in;
                qs_linear_shape(&d, (qs_linear_kind)(bad_k < 0 ? 0 : bad_k), &d_out, &d_in);
                return QS_FAIL(err, QS_ERR_INPUT,
                               "%s: no candidate of quant.bits x quant.group_size can be %s for "
                               "%s (%lld x %lld) (%s)%s",
                               cfg->source_path && cfg->source_path[0] ? cfg->source_path
                                                                       : "config",
                               exporting ? "exported as GPTQ" : "packed",
                               MOD[bad_k < 0 ? 0 : bad_k], (long long)d_out, (long long)d_in,
                               why,
                               exporting ? "; choose a group size that divides the input size "
                                           "or set output.gptq_export: false"
                                         : "");
            }
        }
    }
    return QS_OK;
}

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
        QS_CHECK(qs_stage_plan_compute(&ctx->model->hf, ctx->cfg, ctx->comm->size, &plan, err));
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
