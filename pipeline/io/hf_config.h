/* hf_config.h: a Hugging Face decoder config.json (Llama, Mistral, Qwen2) in typed form.
 *
 * Read with cJSON. RoPE is accepted both as top-level `rope_theta` + `rope_scaling` and as
 * the newer `rope_parameters` object (types: default, linear, llama3).
 * Ownership: plain values only; nothing to free.
 */
#ifndef QS_HF_CONFIG_H
#define QS_HF_CONFIG_H

#include <stdint.h>

#include "status.h"

typedef enum qs_arch { QS_ARCH_LLAMA = 0, QS_ARCH_MISTRAL = 1, QS_ARCH_QWEN2 = 2 } qs_arch;

typedef enum qs_rope_type {
    QS_ROPE_DEFAULT = 0,
    QS_ROPE_LINEAR = 1,
    QS_ROPE_LLAMA3 = 2
} qs_rope_type;

typedef struct qs_hf_config {
    qs_arch arch;
    char architecture[64];     /* e.g. "LlamaForCausalLM" */
    int64_t hidden_size;
    int64_t intermediate_size;
    int64_t num_attention_heads;
    int64_t num_key_value_heads;
    int64_t head_dim;          /* may differ from hidden / heads */
    int64_t num_hidden_layers;
    int64_t vocab_size;
    int64_t max_position_embeddings;
    double rms_norm_eps;
    int tie_word_embeddings;
    int attention_bias;        /* q/k/v/o biases (Llama/Mistral flag) */
    int qkv_bias;              /* q/k/v biases present (Qwen2 always; else attention_bias) */
    int o_bias;                /* o_proj bias present */
    int mlp_bias;              /* gate/up/down biases */
    int64_t sliding_window;    /* 0 = none */
    int64_t sliding_window_first_layer; /* layers >= this use the window (Mistral 0; Qwen2
                                           max_window_layers or layer_types) */
    char torch_dtype[16];      /* as written ("bfloat16", ...) or "" */
    struct {
        qs_rope_type type;
        double theta;
        double factor;                 /* linear, llama3 */
        double low_freq_factor;        /* llama3 */
        double high_freq_factor;       /* llama3 */
        int64_t original_max_position; /* llama3 */
    } rope;
} qs_hf_config;

/* Parses `path` (a config.json). Unknown architectures, missing or non-positive sizes,
 * inconsistent heads (heads % kv_heads != 0) are QS_ERR_INPUT naming the file and key.
 * Required keys: architectures[0] or model_type, hidden_size, intermediate_size,
 * num_attention_heads, num_hidden_layers, vocab_size. Everything else takes the Hugging
 * Face default of the architecture (see docs/formats.md). `cfg` is zeroed first. */
qs_status qs_hf_config_read(qs_hf_config *cfg, const char *path, qs_err *err);

/* Parameters of one decoder layer (they all have the same shape): linears, biases, norms. */
int64_t qs_hf_config_layer_params(const qs_hf_config *cfg);
/* Parameter count of the whole model from the config alone (tied embeddings counted once). */
int64_t qs_hf_config_param_count(const qs_hf_config *cfg);

/* "llama", "mistral", "qwen2" (the model_type). */
const char *qs_arch_name(qs_arch arch);

#endif /* QS_HF_CONFIG_H */
