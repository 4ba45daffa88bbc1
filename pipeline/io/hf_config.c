/* hf_config.c: config.json of Llama / Mistral / Qwen2 -> qs_hf_config (cJSON), with the
 * Hugging Face defaults of each architecture and strict types (see hf_config.h). */
#include "hf_config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "rundir.h"

#define CONFIG_MAX_BYTES (16u << 20)
#define INT_FIELD_MAX 2147483647LL /* sizes beyond int32 are surely a typo */

const char *qs_arch_name(qs_arch arch) {
    switch (arch) {
    case QS_ARCH_LLAMA: return "llama";
    case QS_ARCH_MISTRAL: return "mistral";
    case QS_ARCH_QWEN2: return "qwen2";
    }
    return "?";
}

/* Item `key` of `obj`, or NULL when absent or JSON null (null means "use the default"). */
static const cJSON *item(const cJSON *obj, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    return (v && !cJSON_IsNull(v)) ? v : NULL;
}

/* The number field `key` of obj into *v, NULL when it is absent and not required; a missing
 * required key or a value that is not a JSON number ("must be <what>") is QS_ERR_INPUT.
 * `pre` prefixes the key in messages ("" or "rope_scaling."). */
static qs_status number_item(const char *path, const cJSON *obj, const char *pre,
                             const char *key, int required, const char *what,
                             const cJSON **v, qs_err *err) {
    *v = item(obj, key);
    if (!*v && required)
        return QS_FAIL(err, QS_ERR_INPUT, "%s: key '%s%s' is missing", path, pre, key);
    if (*v && !cJSON_IsNumber(*v))
        return QS_FAIL(err, QS_ERR_INPUT, "%s: key '%s%s' must be %s", path, pre, key, what);
    return QS_OK;
}

/* An integer field: JSON number that is integral and in [lo, hi] (read through valuedouble,
 * since valueint saturates); def when absent and not required. */
static qs_status get_int(const char *path, const cJSON *obj, const char *pre, const char *key,
                         int required, int64_t def, int64_t lo, int64_t hi, int64_t *out,
                         qs_err *err) {
    const cJSON *v = NULL;
    qs_status st = number_item(path, obj, pre, key, required, "an integer", &v, err);
    if (st != QS_OK || !v) {
        if (st == QS_OK) *out = def;
        return st;
    }
    double d = v->valuedouble;
    if (!isfinite(d) || d != floor(d))
        return QS_FAIL(err, QS_ERR_INPUT, "%s: key '%s%s' must be an integer, got %.17g", path,
                       pre, key, d);
    if (d < (double)lo || d > (double)hi)
        return QS_FAIL(err, QS_ERR_INPUT, "%s: key '%s%s' = %.17g is out of range [%lld, %lld]",
                       path, pre, key, d, (long long)lo, (long long)hi);
    *out = (int64_t)d;
    return QS_OK;
}

/* A finite number > 0 (or >= 0 when allow_zero); def when absent and not required. */
static qs_status get_pos(const char *path, const cJSON *obj, const char *pre, const char *key,
                         int required, double def, int allow_zero, double *out, qs_err *err) {
    const cJSON *v = NULL;
    qs_status st = number_item(path, obj, pre, key, required, "a number", &v, err);
    if (st != QS_OK || !v) {
        if (st == QS_OK) *out = def;
        return st;
    }
    double d = v->valuedouble;
    if (!isfinite(d) || d < 0.0 || (d == 0.0 && !allow_zero))
        return QS_FAIL(err, QS_ERR_INPUT, "%s: key '%s%s' = %.17g must be a positive number",
                       path, pre, key, d);
    *out = d;
    return QS_OK;
}

static qs_status get_bool(const char *path, const cJSON *obj, const char *key, int def,
                          int *out, qs_err *err) {
    const cJSON *v = item(obj, key);
    if (!v) {
        *out = def;
        return QS_OK;
    }
    if (!cJSON_IsBool(v))
        return QS_FAIL(err, QS_ERR_INPUT, "%s: key '%s' must be true or false", path, key);
    *out = cJSON_IsTrue(v) ? 1 : 0;
    return QS_OK;
}

/* A string field or NULL when absent/null; wrong type is an error. */
static qs_status get_str(const char *path, const cJSON *obj, const char *pre, const char *key,
                         const char **out, qs_err *err) {
    const cJSON *v = item(obj, key);
    *out = NULL;
    if (!v) return QS_OK;
    if (!cJSON_IsString(v))
        return QS_FAIL(err, QS_ERR_INPUT, "%s: key '%s%s' must be a string", path, pre, key);
    *out = v->valuestring;
    return QS_OK;
}

/* cJSON keeps every duplicate key and returns the first: refuse them instead. */
static qs_status no_duplicate_keys(const char *path, const cJSON *obj, const char *pre,
                                   qs_err *err) {
    for (const cJSON *a = obj->child; a; a = a->next)
        for (const cJSON *b = a->next; b; b = b->next)
            if (strcmp(a->string, b->string) == 0)
                return QS_FAIL(err, QS_ERR_INPUT, "%s: duplicate key '%s%s'", path, pre,
                               a->string);
    return QS_OK;
}

/* Line and column (1-based) of byte `pos` in text, for JSON syntax errors. */
static void line_col(const char *text, size_t pos, int *line, int *col) {
    *line = 1;
    *col = 1;
    for (size_t i = 0; i < pos && text[i]; ++i) {
        if (text[i] == '\n') {
            ++*line;
            *col = 1;
        } else {
            ++*col;
        }
    }
}

static qs_status parse_arch(const char *path, const cJSON *root, qs_hf_config *cfg,
                            qs_err *err) {
    static const struct {
        const char *cls, *type;
        qs_arch arch;
    } known[] = {{"LlamaForCausalLM", "llama", QS_ARCH_LLAMA},
                 {"MistralForCausalLM", "mistral", QS_ARCH_MISTRAL},
                 {"Qwen2ForCausalLM", "qwen2", QS_ARCH_QWEN2}};
    const size_t nk = sizeof(known) / sizeof(known[0]);
    const cJSON *archs = item(root, "architectures");
    const char *mtype = NULL;
    qs_status st = get_str(path, root, "", "model_type", &mtype, err);
    if (st != QS_OK) return st;
    if (archs) {
        if (!cJSON_IsArray(archs) || cJSON_GetArraySize(archs) < 1 ||
            !cJSON_IsString(archs->child))
            return QS_FAIL(err, QS_ERR_INPUT,
                           "%s: key 'architectures' must be a non-empty list of strings", path);
        const char *a = archs->child->valuestring;
        for (size_t i = 0; i < nk; ++i)
            if (strcmp(a, known[i].cls) == 0) {
                cfg->arch = known[i].arch;
                snprintf(cfg->architecture, sizeof(cfg->architecture), "%s", a);
                return QS_OK;
            }
        return QS_FAIL(err, QS_ERR_INPUT,
                       "%s: key 'architectures': unknown architecture '%.60s' (qshard reads "
                       "LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM)",
                       path, a);
    }
    if (!mtype)
        return QS_FAIL(err, QS_ERR_INPUT,
                       "%s: key 'architectures' (or 'model_type') is missing: unknown "
                       "architecture",
                       path);
    for (size_t i = 0; i < nk; ++i)
        if (strcmp(mtype, known[i].type) == 0) {
            cfg->arch = known[i].arch;
            snprintf(cfg->architecture, sizeof(cfg->architecture), "%s", known[i].cls);
            return QS_OK;
        }
    return QS_FAIL(err, QS_ERR_INPUT,
                   "%s: key 'model_type': unknown architecture '%.60s' (qshard reads llama, "
                   "mistral, qwen2)",
                   path, mtype);
}

/* RoPE: `rope_parameters` {rope_type, rope_theta, ...} (newer) or top-level rope_theta +
 * `rope_scaling` {type|rope_type, factor, ...} (older). */
static qs_status parse_rope(const char *path, const cJSON *root, qs_hf_config *cfg,
                            qs_err *err) {
    qs_status st = QS_OK;
    const cJSON *rp = item(root, "rope_parameters");
    const cJSON *rs = item(root, "rope_scaling");
    const cJSON *params = NULL;
    const char *pre = "";
    double top_theta = 10000.0;
    QS_CHECK(get_pos(path, root, "", "rope_theta", 0, 10000.0, 0, &top_theta, err));
    cfg->rope.theta = top_theta;
    if (rp) {
        if (!cJSON_IsObject(rp))
            QS_THROW(err, QS_ERR_INPUT, "%s: key 'rope_parameters' must be an object", path);
        params = rp;
        pre = "rope_parameters.";
        QS_CHECK(get_pos(path, rp, pre, "rope_theta", 0, top_theta, 0, &cfg->rope.theta, err));
    } else if (rs) {
        if (!cJSON_IsObject(rs))
            QS_THROW(err, QS_ERR_INPUT, "%s: key 'rope_scaling' must be an object or null",
                     path);
        params = rs;
        pre = "rope_scaling.";
    }
    cfg->rope.type = QS_ROPE_DEFAULT;
    cfg->rope.factor = 1.0;
    cfg->rope.original_max_position = cfg->max_position_embeddings;
    if (!params) goto done;
    QS_CHECK(no_duplicate_keys(path, params, pre, err));
    const char *type = NULL, *type2 = NULL;
    QS_CHECK(get_str(path, params, pre, "rope_type", &type, err));
    QS_CHECK(get_str(path, params, pre, "type", &type2, err));
    if (!type) type = type2;
    if (!type) {
        if (rp) type = "default";
        else QS_THROW(err, QS_ERR_INPUT, "%s: key 'rope_scaling.rope_type' is missing", path);
    }
    if (strcmp(type, "default") == 0) {
        cfg->rope.type = QS_ROPE_DEFAULT;
    } else if (strcmp(type, "linear") == 0) {
        cfg->rope.type = QS_ROPE_LINEAR;
        QS_CHECK(get_pos(path, params, pre, "factor", 1, 0, 0, &cfg->rope.factor, err));
    } else if (strcmp(type, "llama3") == 0) {
        cfg->rope.type = QS_ROPE_LLAMA3;
        QS_CHECK(get_pos(path, params, pre, "factor", 1, 0, 0, &cfg->rope.factor, err));
        QS_CHECK(get_pos(path, params, pre, "low_freq_factor", 1, 0, 0,
                         &cfg->rope.low_freq_factor, err));
        QS_CHECK(get_pos(path, params, pre, "high_freq_factor", 1, 0, 0,
                         &cfg->rope.high_freq_factor, err));
        QS_CHECK(get_int(path, params, pre, "original_max_position_embeddings", 1, 0, 1,
                         INT_FIELD_MAX, &cfg->rope.original_max_position, err));
        if (!(cfg->rope.high_freq_factor > cfg->rope.low_freq_factor))
            QS_THROW(err, QS_ERR_INPUT,
                     "%s: key '%shigh_freq_factor' must exceed low_freq_factor (%g <= %g)",
                     path, pre, cfg->rope.high_freq_factor, cfg->rope.low_freq_factor);
    } else {
        QS_THROW(err, QS_ERR_INPUT,
                 "%s: key '%srope_type': unsupported rope type '%.40s' (qshard reads default, "
                 "linear, llama3)",
                 path, pre, type);
    }
done:
    return st;
}

/* The window as written: absent -> def; null -> 0 (no window); else an integer >= 1. */
static qs_status get_window(const char *path, const cJSON *root, int64_t def, int64_t *out,
                            qs_err *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, "sliding_window");
    if (!v) {
        *out = def;
        return QS_OK;
    }
    if (cJSON_IsNull(v)) {
        *out = 0;
        return QS_OK;
    }
    qs_status st = get_int(path, root, "", "sliding_window", 1, 0, 0, INT_FIELD_MAX, out, err);
    if (st == QS_OK && *out == 0)
        st = QS_FAIL(err, QS_ERR_INPUT,
                     "%s: key 'sliding_window' = 0 would hide every key; use null for no "
                     "window", path);
    return st;
}

/* Qwen2's per-layer attention types, as transformers' Qwen2Config resolves them:
 *   sliding_window = use_sliding_window (default false) ? sliding_window (default 4096,
 *     null = none) : none;
 *   layer_types given: its entries ("full_attention", "sliding_attention"; the legacy
 *     "attention" means full), one per layer;
 *   else layer l slides iff a window is set and l >= max_window_layers (default 28).
 * A sliding_attention layer without a window makes transformers' forward fail: refused. */
static qs_status parse_qwen2_window(const char *path, const cJSON *root, qs_hf_config *cfg,
                                    qs_err *err) {
    qs_status st = QS_OK;
    int use = 0;
    const int64_t L = cfg->num_hidden_layers;
    QS_CHECK(get_bool(path, root, "use_sliding_window", 0, &use, err));
    cfg->sliding_window = 0;
    if (use) QS_CHECK(get_window(path, root, 4096, &cfg->sliding_window, err));
    const cJSON *lt = item(root, "layer_types");
    if (lt) {
        if (!cJSON_IsArray(lt) || cJSON_GetArraySize(lt) != (int)L)
            QS_THROW(err, QS_ERR_INPUT,
                     "%s: key 'layer_types' must be a list of num_hidden_layers (%lld) strings",
                     path, (long long)L);
        int64_t i = 0;
        for (const cJSON *c = lt->child; c; c = c->next, ++i) {
            const char *t = cJSON_IsString(c) ? c->valuestring : "";
            int sliding = strcmp(t, "sliding_attention") == 0;
            int full = strcmp(t, "full_attention") == 0 || strcmp(t, "attention") == 0;
            if (!sliding && !full)
                QS_THROW(err, QS_ERR_INPUT,
                         "%s: key 'layer_types' entry %lld is not \"full_attention\" or "
                         "\"sliding_attention\"",
                         path, (long long)i);
            if (sliding && cfg->sliding_window == 0)
                QS_THROW(err, QS_ERR_INPUT,
                         "%s: key 'layer_types' entry %lld is sliding_attention but there is "
                         "no window (use_sliding_window false or sliding_window null)",
                         path, (long long)i);
            cfg->layer_sliding[i] = (unsigned char)sliding;
        }
    } else if (cfg->sliding_window > 0) {
        int64_t mwl = 0;
        QS_CHECK(get_int(path, root, "", "max_window_layers", 0, 28, 0, INT_FIELD_MAX, &mwl,
                         err));
        for (int64_t l = mwl; l < L; ++l) cfg->layer_sliding[l] = 1;
    }
done:
    return st;
}

qs_status qs_hf_config_read(qs_hf_config *cfg, const char *path, qs_err *err) {
    qs_status st = QS_OK;
    char *text = NULL;
    size_t len = 0;
    cJSON *root = NULL;
    const char *end_parse = NULL;
    memset(cfg, 0, sizeof(*cfg));

    QS_CHECK(qs_read_file_max(path, CONFIG_MAX_BYTES, &text, &len, err));
    /* length includes the terminating NUL so require_null_terminated can see it */
    root = memchr(text, '\0', len) ? NULL : cJSON_ParseWithLengthOpts(text, len + 1, &end_parse, 1);
    if (!root) {
        int line = 0, col = 0;
        line_col(text, end_parse ? (size_t)(end_parse - text) : 0, &line, &col);
        QS_THROW(err, QS_ERR_INPUT, "%s:%d:%d: invalid JSON", path, line, col);
    }
    if (!cJSON_IsObject(root)) QS_THROW(err, QS_ERR_INPUT, "%s: not a JSON object", path);
    QS_CHECK(no_duplicate_keys(path, root, "", err));
    QS_CHECK(parse_arch(path, root, cfg, err));

    const int64_t M = INT_FIELD_MAX;
    QS_CHECK(get_int(path, root, "", "hidden_size", 1, 0, 1, M, &cfg->hidden_size, err));
    QS_CHECK(get_int(path, root, "", "intermediate_size", 1, 0, 1, M, &cfg->intermediate_size,
                     err));
    QS_CHECK(get_int(path, root, "", "num_attention_heads", 1, 0, 1, M,
                     &cfg->num_attention_heads, err));
    QS_CHECK(get_int(path, root, "", "num_hidden_layers", 1, 0, 1, QS_HF_MAX_LAYERS,
                     &cfg->num_hidden_layers, err));
    QS_CHECK(get_int(path, root, "", "vocab_size", 1, 0, 1, M, &cfg->vocab_size, err));
    QS_CHECK(get_int(path, root, "", "num_key_value_heads", 0, cfg->num_attention_heads, 1, M,
                     &cfg->num_key_value_heads, err));
    if (!item(root, "head_dim") && cfg->hidden_size % cfg->num_attention_heads != 0)
        QS_THROW(err, QS_ERR_INPUT,
                 "%s: key 'hidden_size' %lld is not divisible by num_attention_heads %lld (and "
                 "no head_dim is given)",
                 path, (long long)cfg->hidden_size, (long long)cfg->num_attention_heads);
    QS_CHECK(get_int(path, root, "", "head_dim", 0,
                     cfg->hidden_size / cfg->num_attention_heads, 1, M, &cfg->head_dim, err));
    if (cfg->head_dim % 2 != 0)
        QS_THROW(err, QS_ERR_INPUT, "%s: key 'head_dim' = %lld must be even (RoPE rotates pairs)",
                 path, (long long)cfg->head_dim);
    if (cfg->num_attention_heads % cfg->num_key_value_heads != 0)
        QS_THROW(err, QS_ERR_INPUT,
                 "%s: key 'num_key_value_heads' = %lld does not divide num_attention_heads %lld",
                 path, (long long)cfg->num_key_value_heads, (long long)cfg->num_attention_heads);
    int64_t max_pos_default = cfg->arch == QS_ARCH_LLAMA     ? 2048
                              : cfg->arch == QS_ARCH_MISTRAL ? 4096 * 32
                                                             : 32768;
    QS_CHECK(get_int(path, root, "", "max_position_embeddings", 0, max_pos_default, 1, M,
                     &cfg->max_position_embeddings, err));
    QS_CHECK(get_pos(path, root, "", "rms_norm_eps", 0, 1e-6, 0, &cfg->rms_norm_eps, err));
    QS_CHECK(get_bool(path, root, "tie_word_embeddings", 0, &cfg->tie_word_embeddings, err));

    const char *act = NULL;
    QS_CHECK(get_str(path, root, "", "hidden_act", &act, err));
    if (act && strcmp(act, "silu") != 0)
        QS_THROW(err, QS_ERR_INPUT, "%s: key 'hidden_act': unsupported activation '%.40s' "
                 "(qshard computes silu)", path, act);
    const char *dt = NULL;
    QS_CHECK(get_str(path, root, "", "torch_dtype", &dt, err));
    if (!dt) QS_CHECK(get_str(path, root, "", "dtype", &dt, err));
    if (dt) snprintf(cfg->torch_dtype, sizeof(cfg->torch_dtype), "%s", dt);

    switch (cfg->arch) {
    case QS_ARCH_LLAMA:
        QS_CHECK(get_bool(path, root, "attention_bias", 0, &cfg->attention_bias, err));
        QS_CHECK(get_bool(path, root, "mlp_bias", 0, &cfg->mlp_bias, err));
        cfg->qkv_bias = cfg->attention_bias;
        cfg->o_bias = cfg->attention_bias;
        break;
    case QS_ARCH_MISTRAL: /* no biases anywhere; one window for every layer (absent = HF
                             default 4096, null = none); layer_types is ignored, as
                             MistralForCausalLM ignores it */
        QS_CHECK(get_window(path, root, 4096, &cfg->sliding_window, err));
        for (int64_t l = 0; l < cfg->num_hidden_layers; ++l)
            cfg->layer_sliding[l] = cfg->sliding_window > 0;
        break;
    case QS_ARCH_QWEN2: /* q/k/v always carry biases, o_proj and the MLP never */
        cfg->qkv_bias = 1;
        QS_CHECK(parse_qwen2_window(path, root, cfg, err));
        break;
    }
    QS_CHECK(parse_rope(path, root, cfg, err));
done:
    cJSON_Delete(root);
    free(text);
    if (st != QS_OK) {
        qs_arch keep = cfg->arch;
        memset(cfg, 0, sizeof(*cfg));
        cfg->arch = keep;
    }
    return st;
}

int64_t qs_hf_config_layer_window(const qs_hf_config *cfg, int64_t layer) {
    if (layer < 0 || layer >= cfg->num_hidden_layers || layer >= QS_HF_MAX_LAYERS) return 0;
    return cfg->layer_sliding[layer] ? cfg->sliding_window : 0;
}

int64_t qs_hf_config_layer_params(const qs_hf_config *cfg) {
    int64_t h = cfg->hidden_size, in = cfg->intermediate_size;
    int64_t q = cfg->num_attention_heads * cfg->head_dim;
    int64_t kv = cfg->num_key_value_heads * cfg->head_dim;
    int64_t layer = h * q + 2 * h * kv + q * h + 3 * h * in + 2 * h;
    if (cfg->qkv_bias) layer += q + 2 * kv;
    if (cfg->o_bias) layer += h;
    if (cfg->mlp_bias) layer += 2 * in + h;
    return layer;
}

int64_t qs_hf_config_param_count(const qs_hf_config *cfg) {
    int64_t h = cfg->hidden_size;
    int64_t p = cfg->num_hidden_layers * qs_hf_config_layer_params(cfg) + cfg->vocab_size * h + h;
    if (!cfg->tie_word_embeddings) p += cfg->vocab_size * h;
    return p;
}
