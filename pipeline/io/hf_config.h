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

/* Upper bound on num_hidden_layers (per-layer attention types are stored inline). */
#define QS_HF_MAX_LAYERS 1024

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
    /* Attention window, as transformers resolves it: a query at position i sees keys
     * j with 0 <= i - j < sliding_window (itself and sliding_window - 1 before it).
     * 0 = no window (Mistral `sliding_window: null`; Qwen2 `use_sliding_window: false` or
     * `sliding_window: null`). */
    int64_t sliding_window;
    /* (num_hidden_layers) 1 = layer l is "sliding_attention" (uses sliding_window), 0 =
     * "full_attention". Mistral: every layer when sliding_window > 0. Qwen2: `layer_types`
     * when given, else layers l >= max_window_layers when sliding_window > 0. Llama: none.
     * Entries past num_hidden_layers are 0. */
    unsigned char layer_sliding[QS_HF_MAX_LAYERS];
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
 * inconsistent heads (heads % kv_heads != 0), more than QS_HF_MAX_LAYERS layers, a
 * `layer_types` list transformers would not run (wrong length, unknown type,
 * sliding_attention without a window) are QS_ERR_INPUT naming the file and key.
 * Required keys: architectures[0] or model_type, hidden_size, intermediate_size,
 * num_attention_heads, num_hidden_layers, vocab_size. Everything else takes the Hugging
 * Face default of the architecture (see docs/formats.md). `cfg` is zeroed first. */
qs_status qs_hf_config_read(qs_hf_config *cfg, const char *path, qs_err *err);

/* The attention window of layer `layer` (0 <= layer < num_hidden_layers): sliding_window
 * for a sliding_attention layer, 0 (full causal) otherwise. */
int64_t qs_hf_config_layer_window(const qs_hf_config *cfg, int64_t layer);

/* Parameters of one decoder layer (they all have the same shape): linears, biases, norms. */
int64_t qs_hf_config_layer_params(const qs_hf_config *cfg);
/* Parameter count of the whole model from the config alone (tied embeddings counted once). */
int64_t qs_hf_config_param_count(const qs_hf_config *cfg);

/* "llama", "mistral", "qwen2" (the model_type). */
const char *qs_arch_name(qs_arch arch);

#endif /* QS_HF_CONFIG_H */
