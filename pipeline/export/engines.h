/* engines.h: which serving engines load a file qshard writes, from the schemes in it.
 *
 * One home for the loader facts (../shared/SERVING.md and issue 18's table, both checked
 * against the engines' sources and by loading real exports; docs/export.md prints the same
 * table from qs_engines_verdict):
 *   vLLM 0.32/0.33, GPTQ: only 4- and 8-bit symmetric schemes (any other is refused at load,
 *     "Unsupported quantization config: bits=..., sym=..."), group sizes -1/32/64/128,
 *     `dynamic` honoured; v1/v2 does not matter (symmetric: qzeros unused).
 *   vLLM, compressed-tensors pack-quantized: 4-bit symmetric/asymmetric and 8-bit symmetric;
 *     actorder "group" (weight_g_idx) is refused since 0.32.
 *   vLLM's CPU backend: 4-bit only (uint4b8 for GPTQ and symmetric, uint4 asymmetric
 *     compressed-tensors), even group sizes or -1, in/out sizes multiples of 32.
 *   transformers 5.24 + optimum + gptqmodel 7.7: GPTQ without `dynamic` (a mixed export fails
 *     with a size mismatch); v1 symmetric and asymmetric measured; v2 read from the source
 *     (gptqmodel converts only checkpoint_format "gptq"; its CPU kernels take v2).
 *   GPTQModel.load: every GPTQ export with `dynamic`, except asymmetric v1, which it refuses
 *     unless meta.quantizer names gptqmodel >= 0.9.0 (qshard never claims that); v2 loads.
 *   compressed-tensors in transformers / GPTQModel: not checked here (needs torch).
 * Shapes are not considered (the writers refuse what has no packed layout); the CPU backend's
 * multiple-of-32 rule is in the docs.
 */
#ifndef QS_ENGINES_H
#define QS_ENGINES_H

#include <stddef.h>
#include <stdint.h>

#include "export_items.h" /* qs_gptq_scheme */
#include "quant.h"         /* QS_QUANT_NAME_MAX */

typedef enum qs_export_format {
    QS_FORMAT_GPTQ_V1 = 0, /* checkpoint_format "gptq" */
    QS_FORMAT_GPTQ_V2 = 1, /* checkpoint_format "gptq_v2" */
    QS_FORMAT_CT = 2       /* compressed-tensors pack-quantized */
} qs_export_format;

typedef enum qs_engine {
    QS_ENGINE_VLLM = 0,       /* vLLM 0.32 on GPU */
    QS_ENGINE_VLLM_CPU = 1,   /* vLLM 0.32 CPU backend */
    QS_ENGINE_TRANSFORMERS = 2, /* transformers 5.24 (+ optimum + gptqmodel 7.7 for GPTQ) */
    QS_ENGINE_GPTQMODEL = 3,  /* GPTQModel.load 7.7 */
    QS_ENGINE_COUNT = 4
} qs_engine;

typedef struct qs_engine_verdict {
    int loads;      /* 1 loads, 0 refused, -1 not checked */
    char why[128];  /* for 0 and -1: the reason ("w3 asym", "no dynamic map") */
} qs_engine_verdict;

/* What a written file holds. */
typedef struct qs_engines_in {
    qs_export_format format;
    const qs_gptq_scheme *schemes; /* (n,) the schemes of the quantized linears (repeats ok) */
    int64_t n;
    int has_float;     /* some linear left in float (GPTQ: a "-:" dynamic key) */
    int static_groups; /* compressed-tensors: act-order written as actorder "weight" */
} qs_engines_in;

/* Short engine name: "vLLM", "vLLM-CPU", "transformers", "GPTQModel". */
const char *qs_engine_name(qs_engine e);

/* Fills out[QS_ENGINE_COUNT]. */
void qs_engines_verdict(const qs_engines_in *in, qs_engine_verdict out[QS_ENGINE_COUNT]);

/* One line for summaries: "loads in vLLM, GPTQModel; not in vLLM-CPU (w8), transformers
 * (no dynamic map)" (truncated to cap). Returns buf. */
char *qs_engines_line(const qs_engines_in *in, char *buf, size_t cap);

/* The same for an allocation given as candidate names "w<bits>g<group>" per linear ("" =
 * float), all with symmetry `sym` and act-order `desc_act`: what the GPTQ export (format v1
 * or v2) of that allocation loads in. Unparsable names count as float. */
char *qs_engines_line_names(char (*names)[QS_QUANT_NAME_MAX], int64_t nnames, int sym, int desc_act,
                            qs_export_format format, char *buf, size_t cap);

#endif /* QS_ENGINES_H */
