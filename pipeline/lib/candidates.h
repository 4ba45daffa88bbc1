/* candidates.h: the quantization candidates of a run — the one enumeration of the integer
 * grid quant.bits x quant.group_size (list order: bits outer, group sizes inner) followed by
 * the GGUF block types of quant.gguf_types, with the solver knobs of the config; the exact
 * on-disk bytes of a candidate in each output format; which candidates the run's formats and
 * serving engine (search.serve) can hold; the choice of the candidate that feeds the next
 * layer in the sequential mode; and the config-time check that every linear of the model has
 * a candidate its writers and engine can hold. Used by the reconstruct stage, the memory
 * formula, the plan check, the search and the writers.
 *
 * Two kinds of candidate:
 *   QS_CAND_INT   integer grid (qs_quant_params p[c]): codes, fp16 scales, zeros; named
 *                 "w4g128";
 *   QS_CAND_GGUF  a GGML block type (qs_gguf_params g[c]): the bytes of a GGUF tensor of
 *                 that type, (d_out, row_bytes); named by the type, "Q4_K".
 * Names are unique in a run. With search.serve llamacpp the integer grid is not used at all
 * (llama.cpp loads GGUF types only; the exact images of integer candidates, w4 sym g32 = Q4_0
 * and w8 sym g32 = Q8_0, are GGUF candidates of their own).
 *
 * Ownership: qs_cands is a plain value (fixed arrays); nothing to free.
 */
#ifndef QS_CANDIDATES_H
#define QS_CANDIDATES_H

#include "config.h"
#include "gguf_quant.h"
#include "hf_model.h"
#include "layer.h"
#include "quant.h"
#include "status.h"

#define QS_CANDS_MAX (QS_MAX_CANDIDATE_LIST * QS_MAX_CANDIDATE_LIST + QS_MAX_CANDIDATE_LIST)

typedef enum qs_cand_kind { QS_CAND_INT = 0, QS_CAND_GGUF = 1 } qs_cand_kind;

/* search.serve, parsed. */
typedef enum qs_serve {
    QS_SERVE_NONE = 0,
    QS_SERVE_MARLIN = 1,    /* vLLM's gptq_marlin: 4/8-bit symmetric (search_items.c's rule) */
    QS_SERVE_LLAMACPP = 2,  /* llama.cpp: GGUF candidates, no fused ties */
    QS_SERVE_VLLM = 3,      /* vLLM 0.32: 4/8-bit symmetric, groups -1/32/64/128; with the
                               compressed-tensors export (and no GPTQ export) also 4-bit asym */
    QS_SERVE_GPTQMODEL = 4  /* GPTQModel: any GPTQ layout */
} qs_serve;

typedef struct qs_cands {
    int n;                                  /* number of candidates */
    int gptq;                               /* quant.method gptq (else rtn) */
    int rtn_baseline;                       /* reconstruct.rtn_baseline: also RTN's error
                                               of each candidate under the same H */
    int propagate;                          /* index feeding the next layer (sequential) */
    int ngguf;                              /* how many are QS_CAND_GGUF */
    qs_quant_params fp;                     /* the GPTQ factor's knobs (act_order, damp,
                                               damp_max): one factor serves every candidate */
    int kind[QS_CANDS_MAX];                 /* (n) qs_cand_kind */
    qs_quant_params p[QS_CANDS_MAX];        /* (n) integer candidates (others: fp's knobs) */
    qs_gguf_params g[QS_CANDS_MAX];         /* (n) GGUF candidates */
    char name[QS_CANDS_MAX][QS_QUANT_NAME_MAX]; /* (n) "w4g128", "Q4_K" */
} qs_cands;

/* search.serve of cfg (QS_SERVE_NONE for "" or NULL). */
qs_serve qs_serve_of(const qs_config *cfg);
/* "llama.cpp", "vLLM", "GPTQModel", "vLLM gptq_marlin", "" */
const char *qs_serve_name(qs_serve s);

/* The candidates of cfg (cfg NULL: the single default candidate w4g128 of
 * qs_quant_params_default) with every knob of cfg->quant; zero_min1 for asymmetric
 * candidates of a GPTQ v1 export. QS_ERR_INPUT for a parameter out of range, an unknown or
 * unquantizable GGUF type name, a candidate listed twice or an empty list. propagate is 0
 * (see qs_cands_choose_propagate). */
qs_status qs_cands_from_config(const qs_config *cfg, qs_cands *cs, qs_err *err);

/* Index of the candidate named `name`, -1 if none. */
int qs_cands_find(const qs_cands *cs, const char *name);

/* 1 and *t when integer candidate c is an exact image of a GGUF type: symmetric 4-bit
 * (-> Q4_0) or 8-bit (-> Q8_0) with group 32 and natural groups (no act-order, or static
 * groups): the same scale in fp16 and the same codes (q - 2^(b-1)). 0 otherwise. */
int qs_cand_gguf_image(const qs_cands *cs, int c, qs_gguf_type *t);

/* The GGUF type candidate c is written as in a GGUF file (its own type, or its image);
 * -1 when it has none. */
int qs_cand_gguf_type(const qs_cands *cs, int c);

/* The nominal bits of GGUF type t (Q2_K 2, Q3_K 3, Q4_* 4, Q5_* 5, Q6_K 6, Q8_0 8). */
int qs_gguf_nominal_bits(qs_gguf_type t);
/* What the layer tables record for candidate c: bits (integer) or the nominal bits of its
 * GGUF type; group size (integer) or the type's block of weights (32, 256). */
int qs_cand_bits(const qs_cands *cs, int c);
int qs_cand_group(const qs_cands *cs, int c);
/* The name of a table column: gguf_type >= 0 -> the type's name ("Q4_K"), else "w<bits>g<group>"
 * as qs_quant_name. */
void qs_cand_column_name(int bits, int group_size, int gguf_type, char *buf, size_t n);

/* Exact bytes of candidate c for a (d_out, d_in) linear in output format fmt (one QS_OUT_*
 * bit): QS_OUT_GPTQ the four GPTQ tensors (pack.h); QS_OUT_CT the compressed-tensors
 * tensors (ct_export.h, act-order g_idx unless static groups); QS_OUT_GGUF d_out x the row
 * bytes of its GGUF type; QS_OUT_HDF5 what the shards hold (GPTQ tensors for integer
 * candidates, GGUF blocks for GGUF ones). QS_ERR_INPUT, with the reason, when the format has
 * no layout for the candidate at that shape. */
qs_status qs_cand_bytes(const qs_cands *cs, int c, int64_t d_out, int64_t d_in, unsigned fmt,
                        const qs_config *cfg, int64_t *bytes, qs_err *err);

/* The format whose bytes the search's budget counts (one QS_OUT_* bit): search.serve
 * llamacpp -> GGUF; vllm -> compressed-tensors when written, else GPTQ; gptqmodel and
 * marlin -> GPTQ; no engine: the first written of GPTQ, compressed-tensors, GGUF, else
 * HDF5. */
unsigned qs_cands_budget_format(const qs_config *cfg);

/* The GGUF float type of the checkpoint's tensors (its embeddings' dtype: BF16, F16, F32),
 * in which a GGUF file keeps its 2-D float tensors (llama.cpp's converter's default). */
qs_gguf_type qs_model_gguf_float_type(const qs_model *m);

/* Bytes of the tensors that stay unquantized (embeddings, norms, head, biases, and GGUF's
 * generated rope_freqs) as format fmt writes them: GGUF -> 1-D tensors F32 and 2-D ones in
 * the checkpoint's float type (llama.cpp's converter); every other format -> the checkpoint's
 * bytes (qs_model_unquantized_bytes). */
int64_t qs_cands_unquantized_bytes(const qs_model *m, unsigned fmt);

/* 1 if candidate c can be written in every format cfg writes and loaded by its engine
 * (search.serve) for a (d_out, d_in) linear; else 0, and why (n bytes, may be NULL) gets
 * the reason. The shape rules of the GPTQ export (input size a multiple of the group size)
 * and of compressed-tensors are included; marlin's rule is search_items.c's. */
int qs_cand_servable(const qs_cands *cs, int c, int64_t d_out, int64_t d_in,
                     const qs_config *cfg, char *why, size_t n);

/* 1 if the search ties q/k/v and gate/up (search.tie_fused, but never for llama.cpp: GGUF
 * keeps the projections apart). */
int qs_cands_tie_fused(const qs_config *cfg);

/* Sets cs->propagate: reconstruct.propagate when named (QS_ERR_INPUT if it is not a
 * candidate); else, with a budget (search.target_bpw or search.max_bytes), the candidate a
 * uniform allocation at the budget would use: the largest exact bpw (qs_cand_bytes in the
 * budget's format, one layer) within the budget's bpw, else the smallest; else 0. */
qs_status qs_cands_choose_propagate(const qs_config *cfg, const qs_model *model,
                                    const qs_model_dims *d, qs_cands *cs, qs_err *err);

/* Refuses (QS_ERR_INPUT, one line) a config whose candidates its writers or engine cannot
 * take: a GGUF candidate with a GPTQ or compressed-tensors export, an integer candidate
 * without an exact GGUF image with the GGUF file, a scheme compressed-tensors does not take,
 * search.serve llamacpp without gguf in output.formats or without GGUF types, vLLM with
 * compressed-tensors act-order groups (it needs quant.static_groups); and one whose
 * candidates leave some linear (every tied q/k/v and gate/up item with qs_cands_tie_fused)
 * without a candidate that qs_cand_servable allows, naming the linear and the engine or
 * format. Called before any stage runs, so a config the writers would refuse fails at once,
 * not after hours of reconstruction. */
qs_status qs_cands_check_model(const qs_hf_config *hf, const qs_config *cfg, qs_err *err);

/* With a budget (search.target_bpw or search.max_bytes): QS_ERR_INPUT naming the config file
 * when it is below the smallest payload any allocation can have (every search item at its
 * smallest servable candidate in the budget's format, tied q/k/v and gate/up sharing one;
 * the search's own message and suggested value, qs_search_budget). Pins and allow rules
 * can only raise that smallest payload: the search still checks the exact one. Called
 * before any stage runs, so a budget no candidate can meet fails at once, not after the
 * calibrate and reconstruct stages. */
qs_status qs_cands_check_budget(const qs_model *model, const qs_config *cfg, qs_err *err);

#endif /* QS_CANDIDATES_H */
