/* export_items.h: what the quantized-checkpoint writer (qexport.h) knows about the items it
 * writes in every format (GPTQ, compressed-tensors): the quantization scheme of a linear, the module-name regex that the
 * loaders match (HF names and vLLM's fused names), the declared-order item table, the
 * fused-module ties and the float (excluded) modules. One home for these facts.
 *
 * Module regex (`qs_export_module_regex`): the module name with every regex metacharacter
 * escaped and a final '$'; for a member of a fused family (q/k/v -> vLLM's qkv_proj,
 * gate/up -> gate_up_proj) the leaf is the alternation of the members and the fused name,
 * "model\.layers\.3\.self_attn\.(q_proj|k_proj|v_proj|qkv_proj)$", so Python's re.match
 * (start-anchored, as GPTQModel, vLLM and compressed-tensors use it) matches the HF names
 * and the fused name, and "layers.1" never matches "layers.11". Members of one fused
 * family of one layer share one regex: that is how the writers find fused groups.
 *
 * Ownership: a qs_export_items owns its names and regexes; qs_export_items_free releases
 * them (safe on a zeroed struct). Linear buffers (qs_gptq_linear) stay the caller's.
 */
#ifndef QS_EXPORT_ITEMS_H
#define QS_EXPORT_ITEMS_H

#include <stddef.h>
#include <stdint.h>

#include "export_dir.h"
#include "safetensors.h"
#include "status.h"

#define QS_EXPORT_KEY_MAX 1024

/* The quantization scheme of one linear. */
typedef struct qs_gptq_scheme {
    int bits;       /* 2, 3, 4 or 8 */
    int group_size; /* -1 or >= 1 */
    int sym;
    int desc_act;   /* act-order: g_idx may be any grouping; otherwise it must be j / group */
} qs_gptq_scheme;

/* One quantized linear in qshard's layout-neutral form (quant.h), G = ngroups. */
typedef struct qs_gptq_linear {
    const uint8_t *codes;   /* (d_out, d_in) in [0, 2^bits) */
    const uint16_t *scales; /* (d_out, G) fp16 bits */
    const int32_t *zeros;   /* (d_out, G); >= 1 for GPTQ v1 (quantize with zero_min1) */
    const int32_t *g_idx;   /* (d_in,) group of each input column */
    const void *bias;       /* (d_out,) in the declared bias dtype, or NULL if none declared */
} qs_gptq_linear;

int qs_export_scheme_eq(const qs_gptq_scheme *a, const qs_gptq_scheme *b);
/* "w4g128 asym desc_act" into buf. */
void qs_export_scheme_name(const qs_gptq_scheme *s, char *buf, size_t cap);

/* prefix (e.g. "+:", "-:", "re:") + the module regex into buf; -1 if it does not fit. */
int qs_export_module_regex(const char *prefix, const char *module, char *buf, size_t cap);

/* 1 if g_idx (d_in,) is the natural grouping j / group_size (all 0 for group -1). */
int qs_export_g_idx_natural(const int32_t *g_idx, int64_t d_in, int group_size);

typedef struct qs_export_item {
    char *name;              /* owned: module (linear) or tensor name */
    int linear;
    qs_gptq_scheme scheme;   /* linear only */
    int64_t d_out, d_in;     /* linear only */
    int has_bias;
    qs_dtype bias_dt;
    char *regex;             /* owned: module regex without prefix (linear only) */
    int64_t t0, nt;          /* its tensors [t0, t0 + nt) in the export directory */
} qs_export_item;

typedef struct qs_export_items {
    const char *dir;         /* not owned: the export directory, for messages */
    qs_export_item *v;       /* (n,) in declared order */
    int64_t n, cap;
    char **excl;             /* (nexcl,) owned regexes of float modules (fused: the group's) */
    int64_t nexcl;
    int64_t next;            /* the next item to write */
    int fixed;               /* 1 after the first write: no more declarations */
    int failed;              /* 1 after an error: the writer is unusable */
} qs_export_items;

/* Appends an item (a linear when scheme != NULL: its regex is computed). QS_ERR_INPUT on a
 * repeated name or a name too long; QS_ERR_INTERNAL once fixed or failed. *out points into
 * the table (valid until the next push). */
qs_status qs_export_items_push(qs_export_items *x, const char *name, const qs_gptq_scheme *scheme,
                               qs_export_item **out, qs_err *err);

/* Marks module `module` as left in float (for a fused member: its whole group). */
qs_status qs_export_items_exclude(qs_export_items *x, const char *module, qs_err *err);

/* The fused-module rules, checked when the layout is fixed: members of one fused group
 * share one scheme, and a fused group is not part float, part quantized (QS_ERR_INPUT
 * naming both modules: vLLM loads a fused linear with one scheme). */
qs_status qs_export_items_check_ties(const qs_export_items *x, qs_err *err);

/* The next item to write, if it is `name` of the right kind (QS_ERR_INPUT naming what is
 * expected otherwise; QS_ERR_INTERNAL after an error or finish). */
qs_status qs_export_items_next(qs_export_items *x, const char *name, int linear,
                               qs_export_item **out, qs_err *err);

/* Fixes the layout once (the first write or finish): QS_ERR_INPUT if nothing was declared,
 * then the fused ties, then the shards of `d`; items.fixed = 1. */
qs_status qs_export_items_fix(qs_export_items *x, qs_export_dir *d, qs_err *err);

/* Entry checks of a writer's add_*: not after an error or finish (QS_ERR_INTERNAL), the
 * layout fixed, then qs_export_items_next. */
qs_status qs_export_items_begin_add(qs_export_items *x, qs_export_dir *d, int finished,
                                    const char *name, int linear, qs_export_item **out,
                                    qs_err *err);

/* QS_ERR_INPUT naming the first declared item not written. */
qs_status qs_export_items_all_written(const qs_export_items *x, qs_err *err);

/* 1 if some quantized linear has leaf name "lm_head". */
int qs_export_items_lm_head(const qs_export_items *x);

void qs_export_items_free(qs_export_items *x);

#endif /* QS_EXPORT_ITEMS_H */
