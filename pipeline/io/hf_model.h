/* model.h: a decoder checkpoint on disk = config.json (qs_hf_config) + safetensors
 * (qs_checkpoint), validated so that every tensor the architecture needs is present with
 * the right shape and a float dtype. Weights stay in the mmap until read, one tensor (or a
 * range of its rows) at a time, converted to f32 into a caller buffer.
 *
 * Tensor names follow Hugging Face: model.embed_tokens.weight, model.norm.weight,
 * lm_head.weight (absent when tied), model.layers.L.{input_layernorm,
 * post_attention_layernorm}.weight, model.layers.L.self_attn.{q,k,v,o}_proj.{weight,bias},
 * model.layers.L.mlp.{gate,up,down}_proj.{weight,bias}. A linear's weight is (d_out, d_in).
 *
 * Ownership: qs_model owns its checkpoint (mapping) and dir string; qs_model_close releases
 * them and is safe on a zeroed struct. Pointers returned by lookups live until close.
 */
#ifndef QS_MODEL_H
#define QS_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "hf_config.h"
#include "safetensors.h"
#include "status.h"

/* The seven linears of a decoder layer, in execution order. */
typedef enum qs_linear_kind {
    QS_LIN_Q = 0,
    QS_LIN_K = 1,
    QS_LIN_V = 2,
    QS_LIN_O = 3,
    QS_LIN_GATE = 4,
    QS_LIN_UP = 5,
    QS_LIN_DOWN = 6,
    QS_LIN_COUNT = 7
} qs_linear_kind;

/* The two RMSNorm weights of a decoder layer. */
typedef enum qs_norm_kind { QS_NORM_INPUT = 0, QS_NORM_POST_ATTN = 1 } qs_norm_kind;

typedef struct qs_model {
    char *dir;            /* owned: the model directory as given */
    qs_hf_config hf;
    qs_checkpoint ckpt;
    int64_t n_unused;     /* checkpoint tensors the architecture does not use (e.g. inv_freq) */
} qs_model;

/* Opens `dir`: reads dir/config.json and the checkpoint, and checks every required tensor
 * (shape, float dtype; lm_head.weight only when untied, accepted if present anyway).
 * Missing or misshapen tensors are QS_ERR_INPUT naming the file (shard, index, or model
 * dir), the tensor, and expected vs found shape. On failure `m` is closed. */
qs_status qs_model_open(qs_model *m, const char *dir, qs_err *err);
void qs_model_close(qs_model *m);

/* "self_attn.q_proj", ..., "mlp.down_proj"; and the short form "q_proj", ..., "down_proj". */
const char *qs_linear_name(qs_linear_kind k);
const char *qs_linear_short_name(qs_linear_kind k);
/* d_out x d_in of linear k under `hf` (the weight is (d_out, d_in)). */
void qs_linear_dims(const qs_hf_config *hf, qs_linear_kind k, int64_t *d_out, int64_t *d_in);
/* 1 when the config says linear k has a bias. */
int qs_linear_has_bias(const qs_hf_config *hf, qs_linear_kind k);
/* Writes "model.layers.<layer>.<qs_linear_name(k)>.weight" (or ".bias") into buf (n bytes).
 * Returns the snprintf length (>= n means truncated). */
int qs_linear_tensor_name(char *buf, size_t n, int64_t layer, qs_linear_kind k, int bias);
/* Writes "model.layers.<layer>.input_layernorm.weight" / post_attention_layernorm. */
int qs_norm_tensor_name(char *buf, size_t n, int64_t layer, qs_norm_kind k);
/* "model.embed_tokens.weight" when tied, else "lm_head.weight". */
const char *qs_model_lm_head_name(const qs_model *m);

/* Parameters over the tensors the architecture uses (from their actual shapes; a tied
 * lm_head counted once; unused tensors not counted). */
int64_t qs_model_param_count(const qs_model *m);

/* The validated tensor of linear k of `layer` (bias: NULL if the config has none). */
/* Bytes of the tensors a quantized output keeps unquantized, in their checkpoint dtype:
 * embeddings, final norm, lm_head (untied), the layers' norms and the linears' biases. */
int64_t qs_model_unquantized_bytes(const qs_model *m);

const qs_st_tensor *qs_model_linear(const qs_model *m, int64_t layer, qs_linear_kind k,
                                    int bias);

/* Reads the weight of linear k of `layer` as f32 into w (d_out, d_in). */
qs_status qs_model_read_linear(const qs_model *m, int64_t layer, qs_linear_kind k, float *w,
                               qs_err *err);
/* Reads rows [row0, row0 + nrows) of that weight into w (nrows, d_in). */
qs_status qs_model_read_linear_rows(const qs_model *m, int64_t layer, qs_linear_kind k,
                                    int64_t row0, int64_t nrows, float *w, qs_err *err);
/* Reads the bias of linear k into b (d_out,); QS_ERR_INTERNAL if it has none. */
qs_status qs_model_read_bias(const qs_model *m, int64_t layer, qs_linear_kind k, float *b,
                             qs_err *err);
/* Reads an RMSNorm weight of `layer` into g (hidden,). */
qs_status qs_model_read_norm(const qs_model *m, int64_t layer, qs_norm_kind k, float *g,
                             qs_err *err);
/* Reads the whole tensor `name` into out (numel,); `count` must equal its numel. */
qs_status qs_model_read_tensor(const qs_model *m, const char *name, float *out, int64_t count,
                               qs_err *err);
/* Reads rows [row0, row0 + nrows) of the 2-D tensor `name` into out (nrows, cols), e.g.
 * embedding rows or a slice of lm_head. */
qs_status qs_model_read_rows(const qs_model *m, const char *name, int64_t row0, int64_t nrows,
                             float *out, qs_err *err);

#endif /* QS_MODEL_H */
