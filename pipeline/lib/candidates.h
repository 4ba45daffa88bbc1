/* candidates.h: the quantization candidates of a run — the one enumeration of the grid
 * quant.bits x quant.group_size (list order: bits outer, group sizes inner) with the
 * solver knobs of the config, the choice of the candidate that feeds the next layer in the
 * sequential mode, and the config-time check that every linear of the model has a candidate
 * its writers can hold. Used by the reconstruct stage, the memory formula, the plan check
 * and the search.
 *
 * Ownership: qs_cands is a plain value (fixed arrays); nothing to free.
 */
#ifndef QS_CANDIDATES_H
#define QS_CANDIDATES_H

#include "config.h"
#include "hf_model.h"
#include "layer.h"
#include "quant.h"
#include "status.h"

#define QS_CANDS_MAX (QS_MAX_CANDIDATE_LIST * QS_MAX_CANDIDATE_LIST)

typedef struct qs_cands {
    int n;                                  /* number of candidates */
    int gptq;                               /* quant.method gptq (else rtn) */
    int propagate;                          /* index feeding the next layer (sequential) */
    qs_quant_params p[QS_CANDS_MAX];        /* (n) */
    char name[QS_CANDS_MAX][QS_QUANT_NAME_MAX]; /* (n) "w4g128" */
} qs_cands;

/* The grid of cfg (cfg NULL: the single default candidate w4g128 of qs_quant_params_default)
 * with every knob of cfg->quant; zero_min1 for asymmetric candidates of a GPTQ v1 export.
 * QS_ERR_INPUT for a parameter out of range, a candidate listed twice or an empty grid.
 * propagate is 0 (see qs_cands_choose_propagate). */
qs_status qs_cands_from_config(const qs_config *cfg, qs_cands *cs, qs_err *err);

/* Sets cs->propagate: reconstruct.propagate when named (QS_ERR_INPUT if it is not a
 * candidate); else, with a budget (search.target_bpw or search.max_bytes), the candidate a
 * uniform allocation at the budget would use: the largest exact GPTQ payload bpw (pack.h
 * sizes of one layer) within the budget's bpw, else the smallest; else 0. */
qs_status qs_cands_choose_propagate(const qs_config *cfg, const qs_model *model,
                                    const qs_model_dims *d, qs_cands *cs, qs_err *err);

/* Index of the candidate named `name`, -1 if none. */
int qs_cands_find(const qs_cands *cs, const char *name);

/* Refuses (QS_ERR_INPUT, one line) a config whose candidates cannot serve some linear of the
 * model: every linear (every tied q/k/v and gate/up item with search.tie_fused) needs one
 * candidate with a GPTQ layout, and with output.gptq_export one the export can hold (input
 * size a multiple of the group size). Called before any stage runs, so a config the writers
 * would refuse fails at once, not after hours of reconstruction. */
qs_status qs_cands_check_model(const qs_hf_config *hf, const qs_config *cfg, qs_err *err);

#endif /* QS_CANDIDATES_H */
