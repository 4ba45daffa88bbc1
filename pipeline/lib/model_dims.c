/* model_dims.c: qs_model_dims from a parsed Hugging Face config (model/ sees no io/ type:
 * this file turns the config's per-layer attention types into plain per-layer windows). */
#include "hf_config.h"
#include "layer.h"

#include <string.h>

_Static_assert(QS_HF_MAX_LAYERS == QS_MODEL_MAX_LAYERS, "layer bounds of io/ and model/ agree");

void qs_model_dims_from_hf(qs_model_dims *d, const qs_hf_config *cfg) {
    memset(d, 0, sizeof(*d));
    d->hidden = cfg->hidden_size;
    d->inter = cfg->intermediate_size;
    d->heads = cfg->num_attention_heads;
    d->kv_heads = cfg->num_key_value_heads;
    d->head_dim = cfg->head_dim;
    d->vocab = cfg->vocab_size;
    d->nlayers = cfg->num_hidden_layers;
    d->eps = cfg->rms_norm_eps;
    switch (cfg->rope.type) {
    case QS_ROPE_LINEAR: d->rope.scaling = QS_ROPE_SCALING_LINEAR; break;
    case QS_ROPE_LLAMA3: d->rope.scaling = QS_ROPE_SCALING_LLAMA3; break;
    case QS_ROPE_DEFAULT:
    default: d->rope.scaling = QS_ROPE_SCALING_NONE; break;
    }
    d->rope.theta = cfg->rope.theta;
    d->rope.factor = cfg->rope.factor;
    d->rope.low_freq_factor = cfg->rope.low_freq_factor;
    d->rope.high_freq_factor = cfg->rope.high_freq_factor;
    d->rope.original_max_position = cfg->rope.original_max_position;
    for (int64_t l = 0; l < cfg->num_hidden_layers && l < QS_MODEL_MAX_LAYERS; ++l)
        d->layer_window[l] = qs_hf_config_layer_window(cfg, l);
    d->qkv_bias = cfg->qkv_bias;
    d->o_bias = cfg->o_bias;
    d->mlp_bias = cfg->mlp_bias;
}
