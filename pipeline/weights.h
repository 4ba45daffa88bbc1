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

#include "io/model.h"
#include "model/layer.h"
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

/* One tensor `name` of shape (rows, cols) (cols = 0 for a vector of rows) converted to f32
 * into out (rows * max(cols, 1),). Missing tensor or wrong shape: QS_ERR_INPUT.
 * Afterwards the tensor's pages of the (read-only) checkpoint mapping are dropped from this
 * process (madvise DONTNEED): RSS keeps only the f32 copy; a later read re-faults them. */
qs_status qs_weights_read(const qs_model *m, const char *name, int64_t rows, int64_t cols,
                          float *out, qs_err *err);

/* Bytes qs_weights_load_layer allocates for one layer of these dims. */
int64_t qs_weights_layer_bytes(const qs_model_dims *d);

#endif /* QS_WEIGHTS_H */
