/* weights.h: f32 copies of a checkpoint's weights for the fp32 kernels: one decoder
 * layer at a time (a rank loads only the layers it owns), the embeddings, and the final
 * norm + lm_head. bf16/f16/f32 tensors are converted on load (io/safetensors); every
 * tensor's shape is checked against config.json, so a mismatch is a QS_ERR_INPUT naming
 * the shard file and the tensor. Every load drops the converted bf16 pages from the
 * process (qs_weights_read), so a rank's RSS holds its share once.
 *
 * Ownership: qs_layer_f32 and qs_ends_f32 own one buffer each and point into it;
 * qs_layer_f32_free / qs_ends_f32_free release them (safe on zeroed structs).
 */
#ifndef QS_WEIGHTS_H
#define QS_WEIGHTS_H

#include <stdint.h>

#include "hf_model.h"
#include "quant.h"
#include "layer.h"
#include "status.h"

typedef struct qs_layer_f32 {
    qs_layer_weights w;  /* borrowed pointers into buf (NULL for absent biases) */
    float *buf;          /* (nfloats,) owned */
    int64_t nfloats;
} qs_layer_f32;

/* Loads decoder layer `layer` of m (dims from qs_model_dims_from_hf(&m->hf)). */
qs_status qs_weights_load_layer(const qs_model *m, const qs_model_dims *d, int layer,
                                qs_layer_f32 *out, qs_err *err);
void qs_layer_f32_free(qs_layer_f32 *lw);

/* Allocates a zeroed layer buffer with qs_weights_load_layer's layout and pointers (to be
 * filled by the caller, e.g. from a broadcast of another rank's loaded buffer: equal dims
 * give equal layouts). Release with qs_layer_f32_free. */
qs_status qs_layer_f32_alloc(const qs_model_dims *d, qs_layer_f32 *out, qs_err *err);

/* The writable address of a tensor the layer's borrowed pointer p refers to (p must point
 * into lw->buf, else NULL): lets a stage replace a linear's weights in place. */
float *qs_layer_f32_mut(qs_layer_f32 *lw, const float *p);

/* The ends of the model: embeddings (first pipeline rank) and/or final norm + lm_head
 * (last pipeline rank). With tied embeddings (config.json tie_word_embeddings, or no
 * lm_head.weight tensor while tied) lm_head points at the embeddings, loaded once. */
typedef struct qs_ends_f32 {
    float *embed;        /* (vocab, hidden) or NULL when not requested (unless tied) */
    float *final_norm;   /* (hidden) or NULL */
    float *lm_head;      /* (vocab, hidden) or NULL; may equal embed */
    float *buf;          /* owned; everything above points into it */
} qs_ends_f32;

qs_status qs_weights_load_ends(const qs_model *m, const qs_model_dims *d, int want_embed,
                               int want_head, qs_ends_f32 *out, qs_err *err);
void qs_ends_f32_free(qs_ends_f32 *e);

/* Reads part `part` of `nparts` (contiguous row ranges) of tensor `name` in ~4 MB tiles and
 * fails with QS_ERR_INPUT naming the file, the tensor and the element at the first NaN/Inf
 * (the conversion's own check: io/safetensors.h). A missing tensor is QS_OK. For the
 * preflight check of tensors that are first read late in a run (final norm, lm_head). */
qs_status qs_weights_check_finite(const qs_model *m, const char *name, int part, int nparts,
                                  qs_err *err);

/* One tensor `name` of shape (rows, cols) (cols = 0 for a vector of rows) converted to f32
 * into out (rows * max(cols, 1),). Missing tensor or wrong shape: QS_ERR_INPUT.
 * Afterwards the tensor's pages of the (read-only) checkpoint mapping are dropped from this
 * process (madvise DONTNEED): RSS keeps only the f32 copy; a later read re-faults them. */
qs_status qs_weights_read(const qs_model *m, const char *name, int64_t rows, int64_t cols,
                          float *out, qs_err *err);

/* Bytes qs_weights_load_layer allocates for one layer of these dims. */
int64_t qs_weights_layer_bytes(const qs_model_dims *d);

/* ---- the quantized linears of a layer (io/model.h's qs_linear_kind order) ---- */
/* Short key used in run-directory files ("q", "k", "v", "o", "gate", "up", "down"), the
 * input group (linears of a group share their Hessian), the (d_out, d_in) shape and the
 * weight pointer of linear k. */
const char *qs_linear_key(qs_linear_kind k);
qs_linear_group qs_linear_group_of(qs_linear_kind k);
void qs_linear_shape(const qs_model_dims *d, qs_linear_kind k, int64_t *d_out, int64_t *d_in);
const float *qs_linear_weight(const qs_layer_weights *w, qs_linear_kind k);

/* Replaces the seven linears of lw by the dequantized weights of `candidate` (e.g.
 * "w4g128" or "Q4_K") stored in a reconstruct layer file (run/recon/layer-NNN.h5: datasets
 * <linear>/<candidate>/{codes,scales,zeros,g_idx}, or <linear>/<candidate>/blocks for a GGUF
 * type, docs/reconstruct.md). Dequantization is qs_quant_dequant_rows (GGUF:
 * qs_gguf_dequantize_rows, llama.cpp's), bit for bit the quantizer's own wq. A missing dataset or a shape
 * that does not match d is QS_ERR_INPUT naming the file and the dataset. */
qs_status qs_weights_apply_recon(qs_layer_f32 *lw, const qs_model_dims *d, const char *path,
                                 const char *candidate, qs_err *err);

/* The same with one candidate per linear (cands[k] for qs_linear_kind k, e.g. a row of a
 * qs_alloc); an empty name keeps that linear's float weights. */
qs_status qs_weights_apply_recon_lins(qs_layer_f32 *lw, const qs_model_dims *d, const char *path,
                                      const char (*cands)[QS_QUANT_NAME_MAX], qs_err *err);

#endif /* QS_WEIGHTS_H */
