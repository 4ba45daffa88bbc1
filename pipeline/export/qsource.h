/* qsource.h: reads quantized linears back from what the write stage wrote — the HDF5
 * shards of run/out/ (docs/write.md), a GPTQ or a compressed-tensors (pack-quantized)
 * checkpoint directory (docs/export.md) or a GGUF file (gguf_read.h) — and dequantizes them
 * exactly like the quantizer (unpack with quant/pack.c into the layout-neutral codes, v1
 * zero+1, g_idx for act-order, then qs_quant_dequant_rows; GGUF blocks and
 * the shards' GGUF linears with qs_gguf_dequantize_rows, q/k rows un-permuted), so eval of
 * the written files equals eval of the run's allocation bit for bit. Also the structural
 * checks of `qshard verify`.
 *
 * GPTQ schemes are resolved like the loaders: the top-level quantization_config, then the
 * "dynamic" map in order, first start-anchored regex match wins ("-:" = not quantized,
 * "+:" or no prefix = override); patterns are POSIX extended regexes (the export writes
 * only escapes, alternation groups and '$', which mean the same in Python's re).
 *
 * Ownership: a qs_qsource owns its tables and (for GPTQ) the mapped checkpoint;
 * qs_qsource_close releases them and is safe on a zeroed struct.
 */
#ifndef QS_QSOURCE_H
#define QS_QSOURCE_H

#include <stdint.h>

#include "export_items.h" /* qs_gptq_scheme */
#include "gguf_read.h"
#include "safetensors.h"
#include "status.h"

typedef struct qs_qsource_dyn {
    char *pattern;   /* owned, without the +:/-: prefix */
    int negative;    /* "-:" (compressed-tensors: an "ignore" entry) */
    int exact;       /* compressed-tensors target without "re:": the module name itself */
    int bits, group_size, sym, desc_act; /* overrides; -2 = not given */
} qs_qsource_dyn;

typedef struct qs_qsource {
    int gptq;                 /* 0: HDF5 shards, 1: GPTQ export (see gguf, ct) */
    int ct;                   /* 1: a compressed-tensors export (ck, dyn); gptq is then 0 */
    int gguf;                 /* 1: a GGUF file (gr); gptq is then 0 */
    qs_gguf_reader gr;        /* GGUF */
    char dir[4096];
    /* HDF5: out/index.json weight_map (names[i] lives in shard files[i]) */
    char **names, **files;    /* (n,) owned */
    int64_t n;
    /* GPTQ and compressed-tensors */
    qs_checkpoint ck;
    int bits, group_size, sym, desc_act, v2;
    int static_groups;        /* quantization_config static_groups (0 when absent) */
    qs_qsource_dyn *dyn;      /* (ndyn,) owned, in map order */
    int ndyn;
} qs_qsource;

/* Opens run/out/ (reads index.json). Missing or malformed files: QS_ERR_INPUT naming them. */
qs_status qs_qsource_open_h5(qs_qsource *s, const char *out_dir, qs_err *err);
/* Opens a GPTQ export (config.json quantization_config, safetensors + index). */
qs_status qs_qsource_open_gptq(qs_qsource *s, const char *dir, qs_err *err);
/* Opens a compressed-tensors export (config.json quantization_config with format
 * pack-quantized, safetensors + index). Another format, a config group that is not integer
 * weights by group or channel, or a target that is not a regex this reader understands:
 * QS_ERR_INPUT naming config.json. */
qs_status qs_qsource_open_ct(qs_qsource *s, const char *dir, qs_err *err);
/* Opens a GGUF file (Hugging Face names are mapped with qs_gguf_tensor_name). */
qs_status qs_qsource_open_gguf(qs_qsource *s, const char *path, qs_err *err);
void qs_qsource_close(qs_qsource *s);

/* Full GPTQ scheme (bits, group, sym, desc_act) of `module` after the dynamic map;
 * *quantized = 0 for a "-:" match. */
void qs_qsource_scheme_of(const qs_qsource *s, const char *module, int *quantized,
                          qs_gptq_scheme *out);

/* A quantized linear unpacked into qshard's layout-neutral arrays (quant.h); owned. */
typedef struct qs_qsource_codes {
    uint8_t *codes;     /* (d_out, d_in) */
    uint16_t *scales;   /* (d_out, G) fp16 bits */
    int32_t *zeros;     /* (d_out, G) the zero points (v1: stored + 1) */
    int32_t *g_idx;     /* (d_in,) */
    int64_t d_out, d_in;
    int bits, group_size;
} qs_qsource_codes;

/* The codes of quantized linear `module` of a GPTQ or compressed-tensors source (shapes from
 * its tensors); *found = 0 when it has no <module>.qweight (.weight_packed). Free with
 * qs_qsource_codes_free. */
qs_status qs_qsource_codes_of(const qs_qsource *s, const char *module, qs_qsource_codes *c,
                              int *found, qs_err *err);
void qs_qsource_codes_free(qs_qsource_codes *c);

/* GPTQ scheme of `module` after the dynamic map; *quantized = 0 for a "-:" match. */
void qs_qsource_scheme(const qs_qsource *s, const char *module, int *quantized, int *bits,
                       int *group_size);

/* The dequantized weight of quantized linear `module` (e.g. "model.layers.0.self_attn.q_proj")
 * of shape (d_out, d_in) into w (d_out, d_in). *found = 0 (w untouched) when the source holds
 * no quantized form of the module (it was left in float). Shape mismatches and bad data
 * are QS_ERR_INPUT naming the file and tensor. */
qs_status qs_qsource_linear(const qs_qsource *s, const char *module, int64_t d_out,
                            int64_t d_in, float *w, int *found, qs_err *err);

/* A plain tensor `name` (norms, embeddings, lm_head, biases, linears left in float) as f32
 * into out (count,): BF16/F16/F32 converted exactly. *found = 0 when the source does not
 * hold it; a count mismatch or an integer tensor is QS_ERR_INPUT naming file and tensor. */
qs_status qs_qsource_tensor(const qs_qsource *s, const char *name, float *out, int64_t count,
                            int *found, qs_err *err);

/* Structural check of every quantized linear and tensor of the source: the four GPTQ
 * tensors (compressed-tensors: weight_packed, weight_scale, weight_zero_point when
 * asymmetric, weight_shape, weight_g_idx when present) with the shapes their scheme implies
 * (and dtypes), codes of g_idx in
 * range. QS_ERR_INPUT naming the file and tensor on the first mismatch. *nlinears, *ntensors
 * count what was checked. */
qs_status qs_qsource_verify(const qs_qsource *s, int64_t *nlinears, int64_t *ntensors,
                            qs_err *err);

#endif /* QS_QSOURCE_H */
