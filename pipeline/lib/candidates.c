/* candidates.c: the candidate list of a run, its bytes per format and the serving rules
 * (see candidates.h). */
#include "candidates.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ct_export.h"
#include "gguf_model.h"
#include "pack.h"
#include "rundir.h"
#include "search_items.h"
#include "weights.h"

static const char *const MOD[QS_LIN_COUNT] = {
    "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
    "mlp.gate_proj",    "mlp.up_proj",      "mlp.down_proj"};

qs_serve qs_serve_of(const qs_config *cfg) {
    const char *s = cfg ? cfg->search.serve : NULL;
    if (!s || !s[0]) return QS_SERVE_NONE;
    if (strcmp(s, "marlin") == 0) return QS_SERVE_MARLIN;
    if (strcmp(s, "llamacpp") == 0) return QS_SERVE_LLAMACPP;
    if (strcmp(s, "vllm") == 0) return QS_SERVE_VLLM;
    if (strcmp(s, "gptqmodel") == 0) return QS_SERVE_GPTQMODEL;
    return QS_SERVE_NONE;
}

const char *qs_serve_name(qs_serve s) {
    switch (s) {
    case QS_SERVE_MARLIN: return "vLLM gptq_marlin";
    case QS_SERVE_LLAMACPP: return "llama.cpp";
    case QS_SERVE_VLLM: return "vLLM";
    case QS_SERVE_GPTQMODEL: return "GPTQModel";
    default: return "";
    }
}

static int chooser_of(const char *s) {
    if (s && strcmp(s, "ref") == 0) return QS_GGUF_CHOOSE_REF;
    if (s && strcmp(s, "imatrix") == 0) return QS_GGUF_CHOOSE_IMATRIX;
    return QS_GGUF_CHOOSE_SEARCH;
}

/* The GGUF candidates of cfg->quant.gguf_types, appended to cs. */
static qs_status add_gguf(const qs_config *cfg, qs_cands *cs, qs_err *err) {
    for (int i = 0; i < cfg->quant.ngguf_types; ++i) {
        const char *s = cfg->quant.gguf_types[i];
        qs_gguf_type t;
        if (qs_gguf_type_parse(s, &t) != 0 || !qs_gguf_quant_supported(t))
            return QS_FAIL(err, QS_ERR_INPUT,
                           "quant.gguf_types: '%s' is not a GGUF block type qshard quantizes "
                           "(Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q2_K Q3_K Q4_K Q5_K Q6_K)",
                           s);
        const int c = cs->n;
        qs_gguf_params *g = &cs->g[c];
        qs_gguf_params_default(g, t);
        g->chooser = chooser_of(cfg->quant.gguf_chooser);
        g->act_order = cfg->quant.act_order;
        g->static_groups = cfg->quant.static_groups;
        g->block_size = cfg->quant.block_size;
        g->row_block = cfg->quant.row_block;
        if (g->act_order && !g->static_groups)
            return QS_FAIL(err, QS_ERR_INPUT,
                           "quant.gguf_types: %s with quant.act_order needs quant.static_groups: "
                           "true (GGUF blocks are natural column ranges)",
                           qs_gguf_type_name(t));
        qs_status st = qs_gguf_params_check(g, err);
        if (st != QS_OK) return st;
        cs->p[c] = cs->fp;
        cs->kind[c] = QS_CAND_GGUF;
        snprintf(cs->name[c], QS_QUANT_NAME_MAX, "%s", qs_gguf_type_name(t));
        if (qs_cands_find(cs, cs->name[c]) >= 0)
            return QS_FAIL(err, QS_ERR_INPUT, "quant.gguf_types: %s is listed twice",
                           cs->name[c]);
        cs->n++;
        cs->ngguf++;
    }
    return QS_OK;
}

qs_status qs_cands_from_config(const qs_config *cfg, qs_cands *cs, qs_err *err) {
    memset(cs, 0, sizeof(*cs));
    if (!cfg) {
        qs_quant_params_default(&cs->p[0]);
        qs_quant_name(&cs->p[0], cs->name[0], QS_QUANT_NAME_MAX);
        cs->fp = cs->p[0];
        cs->n = 1;
        cs->gptq = 1;
        return QS_OK;
    }
    cs->gptq = cfg->quant.method == QS_METHOD_GPTQ;
    cs->rtn_baseline = cfg->reconstruct.rtn_baseline;
    qs_quant_params_default(&cs->fp);
    cs->fp.sym = cfg->quant.sym;
    cs->fp.act_order = cfg->quant.act_order;
    cs->fp.static_groups = cfg->quant.static_groups;
    cs->fp.damp = cfg->quant.damp;
    cs->fp.damp_max = cfg->quant.damp_max;
    cs->fp.block_size = cfg->quant.block_size;
    cs->fp.row_block = cfg->quant.row_block;
    const int grid = qs_serve_of(cfg) != QS_SERVE_LLAMACPP;
    for (int b = 0; grid && b < cfg->quant.nbits; ++b)
        for (int g = 0; g < cfg->quant.ngroup_size; ++g) {
            qs_quant_params *p = &cs->p[cs->n];
            *p = cs->fp;
            p->bits = cfg->quant.bits[b];
            p->group_size = cfg->quant.group_size[g];
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
            cs->kind[cs->n] = QS_CAND_INT;
            cs->n++;
        }
    qs_status st = add_gguf(cfg, cs, err);
    if (st != QS_OK) return st;
    if (cs->n == 0)
        return QS_FAIL(err, QS_ERR_INPUT,
                       grid ? "quant: no candidates (quant.bits or quant.group_size empty)"
                            : "search.serve: llamacpp needs GGUF candidates (quant.gguf_types, "
                              "e.g. [Q4_K, Q3_K])");
    return QS_OK;
}

int qs_cands_find(const qs_cands *cs, const char *name) {
    for (int i = 0; i < cs->n; ++i)
        if (strcmp(cs->name[i], name) == 0) return i;
    return -1;
}

int qs_cand_gguf_image(const qs_cands *cs, int c, qs_gguf_type *t) {
    const qs_quant_params *p = &cs->p[c];
    if (cs->kind[c] != QS_CAND_INT || !p->sym || p->group_size != QS_GGUF_QK_LEGACY) return 0;
    if (p->act_order && !p->static_groups) return 0;
    if (p->bits != 4 && p->bits != 8) return 0;
    *t = p->bits == 4 ? QS_GGUF_Q4_0 : QS_GGUF_Q8_0;
    return 1;
}

int qs_cand_gguf_type(const qs_cands *cs, int c) {
    qs_gguf_type t;
    if (cs->kind[c] == QS_CAND_GGUF) return (int)cs->g[c].type;
    return qs_cand_gguf_image(cs, c, &t) ? (int)t : -1;
}

int qs_gguf_nominal_bits(qs_gguf_type t) {
    switch (t) {
    case QS_GGUF_Q2_K: return 2;
    case QS_GGUF_Q3_K: return 3;
    case QS_GGUF_Q4_0:
    case QS_GGUF_Q4_1:
    case QS_GGUF_Q4_K: return 4;
    case QS_GGUF_Q5_0:
    case QS_GGUF_Q5_1:
    case QS_GGUF_Q5_K: return 5;
    case QS_GGUF_Q6_K: return 6;
    case QS_GGUF_Q8_0: return 8;
    default: return 16;
    }
}

int qs_cand_bits(const qs_cands *cs, int c) {
    return cs->kind[c] == QS_CAND_GGUF ? qs_gguf_nominal_bits(cs->g[c].type) : cs->p[c].bits;
}

int qs_cand_group(const qs_cands *cs, int c) {
    return cs->kind[c] == QS_CAND_GGUF ? (int)qs_gguf_block_elems(cs->g[c].type)
                                       : cs->p[c].group_size;
}

void qs_cand_column_name(int bits, int group_size, int gguf_type, char *buf, size_t n) {
    if (gguf_type >= 0) {
        snprintf(buf, n, "%s", qs_gguf_type_name((qs_gguf_type)gguf_type));
        return;
    }
    qs_quant_params p;
    qs_quant_params_default(&p);
    p.bits = bits;
    p.group_size = group_size;
    qs_quant_name(&p, buf, n);
}

/* The scheme of integer candidate c as the exports write it. */
static qs_gptq_scheme scheme_of(const qs_cands *cs, int c) {
    const qs_quant_params *p = &cs->p[c];
    qs_gptq_scheme s = {p->bits, p->group_size, p->sym, p->act_order};
    return s;
}

qs_status qs_cand_bytes(const qs_cands *cs, int c, int64_t d_out, int64_t d_in, unsigned fmt,
                        const qs_config *cfg, int64_t *bytes, qs_err *err) {
    *bytes = -1;
    if (fmt == QS_OUT_GGUF || cs->kind[c] == QS_CAND_GGUF) {
        const int t = qs_cand_gguf_type(cs, c);
        if (fmt != QS_OUT_GGUF && fmt != QS_OUT_HDF5)
            return QS_FAIL(err, QS_ERR_INPUT, "%s is a GGUF block type: no %s layout",
                           cs->name[c], fmt == QS_OUT_GPTQ ? "GPTQ" : "compressed-tensors");
        if (t < 0)
            return QS_FAIL(err, QS_ERR_INPUT,
                           "%s has no GGUF form (only symmetric w4g32 = Q4_0 and w8g32 = Q8_0 "
                           "are exact images)",
                           cs->name[c]);
        const int64_t rb = qs_gguf_row_bytes((qs_gguf_type)t, d_in);
        if (rb < 0)
            return QS_FAIL(err, QS_ERR_INPUT, "%s: input size %lld is not a multiple of its "
                           "block of %lld weights",
                           cs->name[c], (long long)d_in,
                           (long long)qs_gguf_block_elems((qs_gguf_type)t));
        *bytes = d_out * rb;
        return QS_OK;
    }
    if (fmt == QS_OUT_CT) {
        const qs_gptq_scheme s = scheme_of(cs, c);
        return qs_ct_linear_bytes(d_out, d_in, &s, cfg ? cfg->quant.static_groups : 0, bytes,
                                  err);
    }
    qs_pack_bytes sz;
    qs_status st = qs_pack_sizes(d_out, d_in, cs->p[c].bits, cs->p[c].group_size, &sz, err);
    if (st == QS_OK) *bytes = sz.total;
    return st;
}

unsigned qs_cands_budget_format(const qs_config *cfg) {
    const unsigned fm = qs_config_formats(cfg);
    switch (qs_serve_of(cfg)) {
    case QS_SERVE_LLAMACPP: return QS_OUT_GGUF;
    case QS_SERVE_VLLM: return (fm & QS_OUT_CT) ? QS_OUT_CT : QS_OUT_GPTQ;
    case QS_SERVE_GPTQMODEL:
    case QS_SERVE_MARLIN: return QS_OUT_GPTQ;
    default: break;
    }
    if (fm & QS_OUT_GPTQ) return QS_OUT_GPTQ;
    if (fm & QS_OUT_CT) return QS_OUT_CT;
    if (fm & QS_OUT_GGUF) return QS_OUT_GGUF;
    return QS_OUT_HDF5;
}

qs_gguf_type qs_model_gguf_float_type(const qs_model *m) {
    const qs_st_tensor *t = qs_ckpt_find(&m->ckpt, "model.embed_tokens.weight");
    if (t && t->dtype == QS_DTYPE_F32) return QS_GGUF_F32;
    if (t && t->dtype == QS_DTYPE_F16) return QS_GGUF_F16;
    return QS_GGUF_BF16;
}

int64_t qs_cands_unquantized_bytes(const qs_model *m, unsigned fmt) {
    if (fmt != QS_OUT_GGUF) return qs_model_unquantized_bytes(m);
    qs_gguf_model_tensor *t = NULL;
    int64_t n = 0, s = 0;
    qs_err e = {0};
    if (qs_gguf_model_tensors(&m->hf, qs_model_gguf_float_type(m), &t, &n, &e) != QS_OK)
        return qs_model_unquantized_bytes(m);
    for (int64_t i = 0; i < n; ++i) {
        if (t[i].linear >= 0 && !t[i].bias) continue;
        int64_t rows = 1;
        for (int k = 0; k + 1 < t[i].ndim; ++k) rows *= t[i].shape[k];
        s += rows * qs_gguf_row_bytes(t[i].type, t[i].shape[t[i].ndim - 1]);
    }
    free(t);
    return s;
}

int qs_cands_tie_fused(const qs_config *cfg) {
    return cfg->search.tie_fused && qs_serve_of(cfg) != QS_SERVE_LLAMACPP;
}

/* 0 and the reason when search.serve's engine does not load candidate c (shape aside). */
static int engine_loads(const qs_cands *cs, int c, const qs_config *cfg, char *why, size_t n) {
    const qs_serve sv = qs_serve_of(cfg);
    const unsigned fm = qs_config_formats(cfg);
    const qs_quant_params *p = &cs->p[c];
    const int gguf = cs->kind[c] == QS_CAND_GGUF;
    switch (sv) {
    case QS_SERVE_LLAMACPP:
        if (gguf) return 1;
        snprintf(why, n, "llama.cpp loads GGUF block types only");
        return 0;
    case QS_SERVE_VLLM: {
        const int g = p->group_size;
        if (gguf) {
            snprintf(why, n, "vLLM does not load GGUF block types here");
            return 0;
        }
        if (!(g == -1 || g == 32 || g == 64 || g == 128)) {
            snprintf(why, n, "vLLM takes group sizes -1, 32, 64, 128");
            return 0;
        }
        if ((p->bits == 4 || p->bits == 8) && p->sym) return 1;
        /* compressed-tensors (without a GPTQ export that vLLM would refuse) takes 4-bit
         * asymmetric */
        if (p->bits == 4 && !p->sym && (fm & QS_OUT_CT) && !(fm & QS_OUT_GPTQ)) return 1;
        snprintf(why, n, "vLLM loads 4/8-bit symmetric weights%s%s",
                 (fm & QS_OUT_CT) ? " (and 4-bit asymmetric compressed-tensors without a GPTQ "
                                    "export)"
                                  : "",
                 p->sym ? "" : "; set quant.sym: true");
        return 0;
    }
    case QS_SERVE_GPTQMODEL:
    case QS_SERVE_MARLIN:
        if (!gguf) return 1;
        snprintf(why, n, "%s loads GPTQ layouts only", qs_serve_name(sv));
        return 0;
    default: return 1;
    }
}

int qs_cand_servable(const qs_cands *cs, int c, int64_t d_out, int64_t d_in,
                     const qs_config *cfg, char *why, size_t n) {
    static const unsigned FMT[3] = {QS_OUT_GPTQ, QS_OUT_CT, QS_OUT_GGUF};
    static const char *const FNAME[3] = {"GPTQ export", "compressed-tensors export",
                                         "GGUF file"};
    char dummy[8];
    if (!why) why = dummy, n = sizeof(dummy);
    why[0] = '\0';
    const unsigned fm = qs_config_formats(cfg);
    int64_t b = 0;
    qs_err e = {0};
    /* the shards always: a layout of their own */
    if (qs_cand_bytes(cs, c, d_out, d_in, QS_OUT_HDF5, cfg, &b, &e) != QS_OK) {
        snprintf(why, n, "%s", e.msg);
        return 0;
    }
    for (int f = 0; f < 3; ++f) {
        if (!(fm & FMT[f])) continue;
        e = (qs_err){0};
        if (qs_cand_bytes(cs, c, d_out, d_in, FMT[f], cfg, &b, &e) != QS_OK) {
            snprintf(why, n, "%s: %s", FNAME[f], e.msg);
            return 0;
        }
        if (FMT[f] == QS_OUT_GPTQ &&
            !qs_pack_can_serve(d_out, d_in, cs->p[c].bits, cs->p[c].group_size, &e)) {
            snprintf(why, n, "%s: %s", FNAME[f], e.msg);
            return 0;
        }
    }
    return engine_loads(cs, c, cfg, why, n);
}

/* Exact bpw of candidate c over one layer's linears in format fmt; -1 when some linear has
 * no layout. */
static double layer_bpw(const qs_model_dims *d, const qs_cands *cs, int c, unsigned fmt,
                        const qs_config *cfg) {
    double bits = 0.0, w = 0.0;
    for (int k = 0; k < QS_LIN_COUNT; ++k) {
        int64_t o, i, b;
        qs_err e = {0};
        qs_linear_shape(d, (qs_linear_kind)k, &o, &i);
        if (qs_cand_bytes(cs, c, o, i, fmt, cfg, &b, &e) != QS_OK) return -1.0;
        bits += (double)b * 8.0;
        w += (double)o * (double)i;
    }
    return bits / w;
}

qs_status qs_cands_choose_propagate(const qs_config *cfg, const qs_model *model,
                                    const qs_model_dims *d, qs_cands *cs, qs_err *err) {
    const char *want = cfg->reconstruct.propagate;
    const unsigned fmt = qs_cands_budget_format(cfg);
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
        budget = ((double)cfg->search.max_bytes -
                  (double)qs_cands_unquantized_bytes(model, fmt)) *
                 8.0 / (w * (double)d->nlayers);
    }
    int below = -1, smallest = -1;
    double bbest = -1.0, sbest = INFINITY;
    for (int c = 0; c < cs->n; ++c) {
        const double bpw = layer_bpw(d, cs, c, fmt, cfg);
        if (bpw < 0) continue;
        if (bpw <= budget && bpw > bbest) bbest = bpw, below = c;
        if (bpw < sbest) sbest = bpw, smallest = c;
    }
    if (below >= 0) cs->propagate = below;
    else if (smallest >= 0) cs->propagate = smallest;
    return QS_OK;
}

/* The format and engine rules that do not depend on shapes. */
static qs_status check_formats(const qs_cands *cs, const qs_config *cfg, const char *file,
                               qs_err *err) {
    const unsigned fm = qs_config_formats(cfg);
    const qs_serve sv = qs_serve_of(cfg);
    if (sv == QS_SERVE_LLAMACPP && !(fm & QS_OUT_GGUF))
        return QS_FAIL(err, QS_ERR_INPUT,
                       "%s: search.serve: llamacpp needs gguf in output.formats (llama.cpp "
                       "loads GGUF files)",
                       file);
    if (fm & QS_OUT_GGUF) {
        /* the GGUF file needs a vocabulary (llama.cpp loads none without one) */
        const char *tok = cfg->output.gguf_tokenizer && cfg->output.gguf_tokenizer[0]
                              ? cfg->output.gguf_tokenizer
                              : cfg->model;
        struct stat sb;
        char p1[4200], p2[4200];
        snprintf(p1, sizeof(p1), "%s/tokenizer.model", tok);
        snprintf(p2, sizeof(p2), "%s/tokenizer.json", tok);
        const int ok = stat(tok, &sb) == 0 &&
                       (!S_ISDIR(sb.st_mode) || qs_path_exists(p1) || qs_path_exists(p2));
        if (!ok)
            return QS_FAIL(err, QS_ERR_INPUT,
                           "%s: output.formats has gguf but %s holds no tokenizer.model or "
                           "tokenizer.json (the GGUF file needs a vocabulary); set "
                           "output.gguf_tokenizer",
                           file, tok);
    }
    if (sv == QS_SERVE_VLLM && (fm & QS_OUT_CT) && cfg->quant.act_order &&
        !cfg->quant.static_groups)
        return QS_FAIL(err, QS_ERR_INPUT,
                       "%s: search.serve: vllm with compressed-tensors and quant.act_order needs "
                       "quant.static_groups: true (vLLM refuses actorder group with "
                       "weight_g_idx)",
                       file);
    for (int c = 0; c < cs->n; ++c) {
        const int gguf = cs->kind[c] == QS_CAND_GGUF;
        qs_gguf_type t;
        qs_err why = {0};
        if (gguf && (fm & (QS_OUT_GPTQ | QS_OUT_CT)))
            return QS_FAIL(err, QS_ERR_INPUT,
                           "%s: GGUF candidate %s has no %s layout; drop %s from output.formats "
                           "(e.g. output.formats: [gguf])",
                           file, cs->name[c],
                           (fm & QS_OUT_GPTQ) ? "GPTQ" : "compressed-tensors",
                           (fm & QS_OUT_GPTQ) ? "gptq" : "compressed-tensors");
        if (!gguf && (fm & QS_OUT_GGUF) && !qs_cand_gguf_image(cs, c, &t))
            return QS_FAIL(err, QS_ERR_INPUT,
                           "%s: output.formats has gguf but candidate %s has no GGUF form (only "
                           "symmetric w4g32 = Q4_0 and w8g32 = Q8_0 are exact images); use "
                           "quant.gguf_types with search.serve: llamacpp",
                           file, cs->name[c]);
        if (!gguf && (fm & QS_OUT_CT)) {
            const qs_gptq_scheme s = scheme_of(cs, c);
            if (!qs_ct_scheme_supported(&s, &why))
                return QS_FAIL(err, QS_ERR_INPUT,
                               "%s: output.formats has compressed-tensors: %s; drop it from "
                               "quant.bits or compressed-tensors from output.formats",
                               file, why.msg);
        }
    }
    return QS_OK;
}

/* The search's items of one layer as linear masks (bit k = linear k): q/k/v and gate/up
 * tied (qs_cands_tie_fused), o and down alone; or every linear alone. Returns the count. */
static int item_masks(const qs_config *cfg, int masks[QS_LIN_COUNT]) {
    static const int ITEMS[4] = {0x07, 0x08, 0x30, 0x40};
    int nm = 0;
    for (int it = 0; it < 4; ++it) {
        if (qs_cands_tie_fused(cfg)) {
            masks[nm++] = ITEMS[it];
        } else {
            for (int k = 0; k < QS_LIN_COUNT; ++k)
                if (ITEMS[it] & (1 << k)) masks[nm++] = 1 << k;
        }
    }
    return nm;
}

qs_status qs_cands_check_model(const qs_hf_config *hf, const qs_config *cfg, qs_err *err) {
    /* the items the search ties (q/k/v, gate/up) must share one usable candidate */
    const char *file =
        cfg->source_path && cfg->source_path[0] ? cfg->source_path : "config";
    qs_cands cs;
    qs_model_dims d;
    qs_status st = qs_cands_from_config(cfg, &cs, err);
    if (st != QS_OK) return st;
    QS_CHECK(check_formats(&cs, cfg, file, err));
    qs_model_dims_from_hf(&d, hf);
    /* a GGUF candidate is quantized for every linear: its blocks must divide every input */
    for (int c = 0; c < cs.n; ++c)
        for (int k = 0; k < QS_LIN_COUNT && cs.kind[c] == QS_CAND_GGUF; ++k) {
            int64_t d_out, d_in;
            qs_linear_shape(&d, (qs_linear_kind)k, &d_out, &d_in);
            if (qs_gguf_row_bytes(cs.g[c].type, d_in) < 0)
                QS_THROW(err, QS_ERR_INPUT,
                         "%s: quant.gguf_types: %s cannot hold %s (%lld x %lld): its input size "
                         "is not a multiple of the type's block of %lld weights",
                         file, cs.name[c], MOD[k], (long long)d_out, (long long)d_in,
                         (long long)qs_gguf_block_elems(cs.g[c].type));
        }
    const unsigned fm = qs_config_formats(cfg);
    const qs_serve sv = qs_serve_of(cfg);
    const int exporting = (fm & QS_OUT_GPTQ) != 0;
    int masks[QS_LIN_COUNT];
    const int nm = item_masks(cfg, masks);
    for (int m = 0; m < nm; ++m) {
        int usable = 0, bad_k = -1;
        char why[QS_ERR_MSG_MAX] = "";
        for (int c = 0; c < cs.n && !usable; ++c) {
            int ok = 1;
            for (int k = 0; k < QS_LIN_COUNT && ok; ++k) {
                if (!(masks[m] & (1 << k))) continue;
                int64_t d_out, d_in;
                qs_linear_shape(&d, (qs_linear_kind)k, &d_out, &d_in);
                ok = qs_cand_servable(&cs, c, d_out, d_in, cfg, why, sizeof(why));
                if (!ok) bad_k = k;
            }
            usable = ok;
        }
        if (!usable) {
            int64_t d_out, d_in;
            const int k = bad_k < 0 ? 0 : bad_k;
            qs_linear_shape(&d, (qs_linear_kind)k, &d_out, &d_in);
            if (sv != QS_SERVE_NONE && sv != QS_SERVE_MARLIN)
                QS_THROW(err, QS_ERR_INPUT,
                         "%s: no candidate can be served by %s for %s (%lld x %lld) (%s)",
                         file, qs_serve_name(sv), MOD[k], (long long)d_out,
                         (long long)d_in, why);
            QS_THROW(err, QS_ERR_INPUT,
                     "%s: no candidate of quant.bits x quant.group_size can be %s for "
                     "%s (%lld x %lld) (%s)%s",
                     file, exporting ? "exported as GPTQ" : "written", MOD[k],
                     (long long)d_out, (long long)d_in, why,
                     exporting ? "; choose a group size that divides the input size "
                                 "or set output.gptq_export: false"
                               : "");
        }
    }
done:
    return st;
}

qs_status qs_cands_check_budget(const qs_model *model, const qs_config *cfg, qs_err *err) {
    const char *file =
        cfg->source_path && cfg->source_path[0] ? cfg->source_path : "config";
    if (cfg->search.target_bpw <= 0 && cfg->search.max_bytes <= 0) return QS_OK;
    qs_cands cs;
    qs_model_dims d;
    qs_status st = qs_cands_from_config(cfg, &cs, err);
    if (st != QS_OK) return st;
    qs_model_dims_from_hf(&d, &model->hf);
    const unsigned fmt = qs_cands_budget_format(cfg);
    int masks[QS_LIN_COUNT];
    const int nm = item_masks(cfg, masks);
    int64_t lo = 0, w = 0; /* one layer: the smallest payload, the weights */
    for (int m = 0; m < nm; ++m) {
        int64_t best = -1;
        for (int c = 0; c < cs.n; ++c) {
            int64_t sum = 0;
            int ok = 1;
            for (int k = 0; k < QS_LIN_COUNT && ok; ++k) {
                if (!(masks[m] & (1 << k))) continue;
                int64_t o, i, b = 0;
                qs_err e = {0};
                qs_linear_shape(&d, (qs_linear_kind)k, &o, &i);
                ok = qs_cand_servable(&cs, c, o, i, cfg, NULL, 0) &&
                     qs_cand_bytes(&cs, c, o, i, fmt, cfg, &b, &e) == QS_OK;
                sum += b;
            }
            if (ok && (best < 0 || sum < best)) best = sum;
        }
        if (best < 0) return QS_OK; /* no usable candidate: qs_cands_check_model says so */
        lo += best;
    }
    for (int k = 0; k < QS_LIN_COUNT; ++k) {
        int64_t o, i;
        qs_linear_shape(&d, (qs_linear_kind)k, &o, &i);
        w += o * i;
    }
    int64_t budget = 0;
    qs_err e = {0};
    st = qs_search_budget(cfg->search.target_bpw, cfg->search.max_bytes, w * d.nlayers,
                          qs_cands_unquantized_bytes(model, fmt), lo * d.nlayers, 0, "", &budget,
                          &e);
    return st == QS_OK ? QS_OK : QS_FAIL(err, st, "%s: %s", file, e.msg);
}
