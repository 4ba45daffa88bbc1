/* candidates.c: the candidate grid of a run (see candidates.h). */
#include "candidates.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "pack.h"
#include "weights.h"

qs_status qs_cands_from_config(const qs_config *cfg, qs_cands *cs, qs_err *err) {
    memset(cs, 0, sizeof(*cs));
    if (!cfg) {
        qs_quant_params_default(&cs->p[0]);
        qs_quant_name(&cs->p[0], cs->name[0], QS_QUANT_NAME_MAX);
        cs->n = 1;
        cs->gptq = 1;
        return QS_OK;
    }
    cs->gptq = cfg->quant.method == QS_METHOD_GPTQ;
    for (int b = 0; b < cfg->quant.nbits; ++b)
        for (int g = 0; g < cfg->quant.ngroup_size; ++g) {
            qs_quant_params *p = &cs->p[cs->n];
            qs_quant_params_default(p);
            p->bits = cfg->quant.bits[b];
            p->group_size = cfg->quant.group_size[g];
            p->sym = cfg->quant.sym;
            p->act_order = cfg->quant.act_order;
            p->static_groups = cfg->quant.static_groups;
            p->damp = cfg->quant.damp;
            p->damp_max = cfg->quant.damp_max;
            p->block_size = cfg->quant.block_size;
            p->row_block = cfg->quant.row_block;
            /* GPTQ v1 stores zero - 1 unsigned: asymmetric zeros must be >= 1 */
            p->zero_min1 = cfg->output.checkpoint_format == QS_CKPT_GPTQ && !p->sym;
            qs_status st = qs_quant_params_check(p, err);
            if (st != QS_OK) return st;
            qs_quant_name(p, cs->name[cs->n], QS_QUANT_NAME_MAX);
            if (qs_cands_find(cs, cs->name[cs->n]) >= 0)
                return QS_FAIL(err, QS_ERR_INPUT,
                               "quant: candidate %s is listed twice (quant.bits x "
                               "quant.group_size)",
                               cs->name[cs->n]);
            cs->n++;
        }
    if (cs->n == 0)
        return QS_FAIL(err, QS_ERR_INPUT,
                       "quant: no candidates (quant.bits or quant.group_size empty)");
    return QS_OK;
}

int qs_cands_find(const qs_cands *cs, const char *name) {
    for (int i = 0; i < cs->n; ++i)
        if (strcmp(cs->name[i], name) == 0) return i;
    return -1;
}

/* Exact GPTQ payload bits per weight of candidate c over one layer's linears; -1 when some
 * linear has no GPTQ layout. */
static double layer_bpw(const qs_model_dims *d, const qs_quant_params *p) {
    double bits = 0.0, w = 0.0;
    for (int k = 0; k < QS_LIN_COUNT; ++k) {
        int64_t o, i;
        qs_pack_bytes sz;
        qs_err e = {0};
        qs_linear_shape(d, (qs_linear_kind)k, &o, &i);
        if (qs_pack_sizes(o, i, p->bits, p->group_size, &sz, &e) != QS_OK) return -1.0;
        bits += (double)sz.total * 8.0;
        w += (double)o * (double)i;
    }
    return bits / w;
}

qs_status qs_cands_choose_propagate(const qs_config *cfg, const qs_model *model,
                                    const qs_model_dims *d, qs_cands *cs, qs_err *err) {
    const char *want = cfg->reconstruct.propagate;
    cs->propagate = 0;
    if (want && want[0]) {
        cs->propagate = qs_cands_find(cs, want);
        if (cs->propagate < 0)
            return QS_FAIL(err, QS_ERR_INPUT,
                           "reconstruct.propagate: '%s' is not a candidate (first: %s)", want,
                           cs->name[0]);
        return QS_OK;
    }
    if (cfg->search.target_bpw <= 0 && cfg->search.max_bytes <= 0) return QS_OK;
    /* the candidate a uniform allocation at the budget would use; ties -> the first */
    double budget = cfg->search.target_bpw;
    if (budget <= 0) {
        double w = 0.0;
        for (int k = 0; k < QS_LIN_COUNT; ++k) {
            int64_t o, i;
            qs_linear_shape(d, (qs_linear_kind)k, &o, &i);
            w += (double)o * (double)i;
        }
        budget = ((double)cfg->search.max_bytes - (double)qs_model_unquantized_bytes(model)) *
                 8.0 / (w * (double)d->nlayers);
    }
    int below = -1, smallest = -1;
    double bbest = -1.0, sbest = INFINITY;
    for (int c = 0; c < cs->n; ++c) {
        const double bpw = layer_bpw(d, &cs->p[c]);
        if (bpw < 0) continue;
        if (bpw <= budget && bpw > bbest) bbest = bpw, below = c;
        if (bpw < sbest) sbest = bpw, smallest = c;
    }
    if (below >= 0) cs->propagate = below;
    else if (smallest >= 0) cs->propagate = smallest;
    return QS_OK;
}

qs_status qs_cands_check_model(const qs_hf_config *hf, const qs_config *cfg, qs_err *err) {
    static const char *const MOD[QS_LIN_COUNT] = {
        "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
        "mlp.gate_proj",    "mlp.up_proj",      "mlp.down_proj"};
    /* the items the search ties (q/k/v, gate/up) must share one usable candidate */
    static const int ITEMS[4] = {0x07, 0x08, 0x30, 0x40};
    qs_cands cs;
    qs_model_dims d;
    qs_status st = qs_cands_from_config(cfg, &cs, err);
    if (st != QS_OK) return st;
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
            for (int c = 0; c < cs.n && !usable; ++c) {
                int ok = 1;
                for (int k = 0; k < QS_LIN_COUNT && ok; ++k) {
                    if (!(masks[m] & (1 << k))) continue;
                    int64_t d_out, d_in;
                    qs_linear_shape(&d, (qs_linear_kind)k, &d_out, &d_in);
                    qs_err e = {0};
                    qs_pack_bytes sz;
                    const int bits = cs.p[c].bits, gs = cs.p[c].group_size;
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
                const int k = bad_k < 0 ? 0 : bad_k;
                qs_linear_shape(&d, (qs_linear_kind)k, &d_out, &d_in);
                return QS_FAIL(err, QS_ERR_INPUT,
                               "%s: no candidate of quant.bits x quant.group_size can be %s for "
                               "%s (%lld x %lld) (%s)%s",
                               cfg->source_path && cfg->source_path[0] ? cfg->source_path
                                                                       : "config",
                               exporting ? "exported as GPTQ" : "packed", MOD[k],
                               (long long)d_out, (long long)d_in, why,
                               exporting ? "; choose a group size that divides the input size "
                                           "or set output.gptq_export: false"
                                         : "");
            }
        }
    }
    return QS_OK;
}
