/* test_hf_config.c: config.json of Llama / Mistral / Qwen2: required keys, Hugging Face
 * defaults, both RoPE layouts (rope_theta + rope_scaling, rope_parameters), sliding windows,
 * biases, and one-line errors naming the file and key. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "hf_config.h"

static char g_path[600];

#define LLAMA_BASE                                                                   \
    "\"architectures\":[\"LlamaForCausalLM\"],\"hidden_size\":64,\"intermediate_size\":128," \
    "\"num_attention_heads\":4,\"num_hidden_layers\":2,\"vocab_size\":100"

static qs_status parse(const char *text, qs_hf_config *c, qs_err *err) {
    FILE *f = fopen(g_path, "wb");
    fwrite(text, 1, strlen(text), f);
    fclose(f);
    qs_err_clear(err);
    return qs_hf_config_read(c, g_path, err);
}

static void ok(const char *text, qs_hf_config *c) {
    qs_err err = {0};
    CHECK(parse(text, c, &err) == QS_OK, "%s -> %s", text, err.msg);
}

static void bad(const char *text, const char *word) {
    qs_err err = {0};
    qs_hf_config c;
    qs_status st = parse(text, &c, &err);
    CHECK(st == QS_ERR_INPUT && strstr(err.msg, word) && strstr(err.msg, "config.json"),
          "%s -> %d '%s' (want '%s')", text, (int)st, err.msg, word);
}

static void test_llama(void) {
    qs_hf_config c;
    ok("{" LLAMA_BASE "}", &c);
    CHECK(c.arch == QS_ARCH_LLAMA && strcmp(c.architecture, "LlamaForCausalLM") == 0, "arch");
    CHECK(c.num_key_value_heads == 4 && c.head_dim == 16, "defaults kv %lld hd %lld",
          (long long)c.num_key_value_heads, (long long)c.head_dim);
    CHECK(c.rms_norm_eps == 1e-6 && c.max_position_embeddings == 2048, "eps/maxpos");
    CHECK(!c.tie_word_embeddings && !c.qkv_bias && !c.o_bias && !c.mlp_bias, "flags");
    CHECK(c.sliding_window == 0 && c.rope.type == QS_ROPE_DEFAULT && c.rope.theta == 10000.0,
          "rope");
    CHECK(c.torch_dtype[0] == '\0', "dtype");
    /* 2 layers x (3 x 64x64 ... ) computed by hand */
    int64_t layer = 64 * 64 * 4 + 3 * 64 * 128 + 2 * 64;
    CHECK(qs_hf_config_param_count(&c) == 2 * layer + 2 * 100 * 64 + 64, "params %lld",
          (long long)qs_hf_config_param_count(&c));

    ok("{" LLAMA_BASE ",\"num_key_value_heads\":2,\"head_dim\":32,\"attention_bias\":true,"
       "\"mlp_bias\":true,\"tie_word_embeddings\":true,\"rms_norm_eps\":1e-5,\"torch_dtype\":"
       "\"bfloat16\",\"max_position_embeddings\":4096,\"rope_theta\":500000.0,\"hidden_act\":"
       "\"silu\",\"pad_token_id\":null,\"rope_scaling\":null}",
       &c);
    CHECK(c.num_key_value_heads == 2 && c.head_dim == 32, "gqa head_dim");
    CHECK(c.qkv_bias && c.o_bias && c.mlp_bias && c.attention_bias, "biases");
    CHECK(c.tie_word_embeddings && c.rms_norm_eps == 1e-5, "tie eps");
    CHECK(strcmp(c.torch_dtype, "bfloat16") == 0 && c.max_position_embeddings == 4096, "misc");
    CHECK(c.rope.theta == 500000.0 && c.rope.type == QS_ROPE_DEFAULT, "theta");
    int64_t q = 4 * 32, kv = 2 * 32;
    layer = 64 * q * 2 + 2 * 64 * kv + 3 * 64 * 128 + 2 * 64 + q + 2 * kv + 64 + 2 * 128 + 64;
    CHECK(qs_hf_config_param_count(&c) == 2 * layer + 100 * 64 + 64, "tied params");

    /* model_type alone names the architecture; the newer "dtype" key */
    ok("{\"model_type\":\"llama\",\"hidden_size\":64,\"intermediate_size\":128,"
       "\"num_attention_heads\":4,\"num_hidden_layers\":2,\"vocab_size\":100,"
       "\"dtype\":\"float16\"}",
       &c);
    CHECK(c.arch == QS_ARCH_LLAMA && strcmp(c.architecture, "LlamaForCausalLM") == 0 &&
              strcmp(c.torch_dtype, "float16") == 0,
          "model_type");
}

static void test_rope(void) {
    qs_hf_config c;
    /* Llama 3.1 style */
    ok("{" LLAMA_BASE ",\"max_position_embeddings\":131072,\"rope_theta\":500000.0,"
       "\"rope_scaling\":{\"factor\":8.0,\"low_freq_factor\":1.0,\"high_freq_factor\":4.0,"
       "\"original_max_position_embeddings\":8192,\"rope_type\":\"llama3\"}}",
       &c);
    CHECK(c.rope.type == QS_ROPE_LLAMA3 && c.rope.factor == 8.0 && c.rope.low_freq_factor == 1.0 &&
              c.rope.high_freq_factor == 4.0 && c.rope.original_max_position == 8192 &&
              c.rope.theta == 500000.0,
          "llama3");
    /* older "type" key, linear */
    ok("{" LLAMA_BASE ",\"rope_scaling\":{\"type\":\"linear\",\"factor\":2.0}}", &c);
    CHECK(c.rope.type == QS_ROPE_LINEAR && c.rope.factor == 2.0 && c.rope.theta == 10000.0,
          "linear");
    /* the newer rope_parameters object (as in the fixture) */
    ok("{" LLAMA_BASE ",\"rope_parameters\":{\"rope_theta\":10000.0,\"rope_type\":\"default\"}}",
       &c);
    CHECK(c.rope.type == QS_ROPE_DEFAULT && c.rope.theta == 10000.0 && c.rope.factor == 1.0,
          "rope_parameters default");
    ok("{" LLAMA_BASE ",\"rope_parameters\":{\"rope_theta\":500000.0,\"rope_type\":\"llama3\","
       "\"factor\":32.0,\"low_freq_factor\":1.0,\"high_freq_factor\":4.0,"
       "\"original_max_position_embeddings\":8192}}",
       &c);
    CHECK(c.rope.type == QS_ROPE_LLAMA3 && c.rope.theta == 500000.0 && c.rope.factor == 32.0,
          "rope_parameters llama3");
    ok("{" LLAMA_BASE ",\"rope_theta\":20000,\"rope_parameters\":{\"rope_type\":\"linear\","
       "\"factor\":4}}",
       &c);
    CHECK(c.rope.type == QS_ROPE_LINEAR && c.rope.theta == 20000.0 && c.rope.factor == 4.0,
          "rope_parameters without theta takes rope_theta");
    bad("{" LLAMA_BASE ",\"rope_scaling\":{\"rope_type\":\"yarn\",\"factor\":4.0}}", "yarn");
    bad("{" LLAMA_BASE ",\"rope_scaling\":{\"rope_type\":\"dynamic\",\"factor\":4.0}}", "dynamic");
    bad("{" LLAMA_BASE ",\"rope_scaling\":{\"rope_type\":\"llama3\",\"factor\":8.0,"
        "\"high_freq_factor\":4.0,\"original_max_position_embeddings\":8192}}",
        "rope_scaling.low_freq_factor");
    bad("{" LLAMA_BASE ",\"rope_scaling\":{\"rope_type\":\"llama3\",\"factor\":8.0,"
        "\"low_freq_factor\":4.0,\"high_freq_factor\":4.0,\"original_max_position_embeddings\":"
        "8192}}",
        "high_freq_factor");
    bad("{" LLAMA_BASE ",\"rope_scaling\":{\"rope_type\":\"linear\"}}", "rope_scaling.factor");
    bad("{" LLAMA_BASE ",\"rope_scaling\":{\"factor\":2.0}}", "rope_type");
    bad("{" LLAMA_BASE ",\"rope_scaling\":[1]}", "rope_scaling");
    bad("{" LLAMA_BASE ",\"rope_parameters\":{\"rope_type\":\"linear\",\"factor\":-1}}",
        "rope_parameters.factor");
    bad("{" LLAMA_BASE ",\"rope_theta\":0}", "rope_theta");
}

/* The per-layer windows of c as a string of digits-per-layer: '-' full, 'W' sliding. */
static const char *pattern(const qs_hf_config *c, char *buf) {
    int64_t l = 0;
    for (; l < c->num_hidden_layers && l < 16; ++l)
        buf[l] = qs_hf_config_layer_window(c, l) == 0                 ? '-'
                 : qs_hf_config_layer_window(c, l) == c->sliding_window ? 'W'
                                                                       : '?';
    buf[l] = '\0';
    return buf;
}

static void test_mistral_qwen2(void) {
    qs_hf_config c;
    char pat[32];
    const char *m = "\"architectures\":[\"MistralForCausalLM\"],\"hidden_size\":64,"
                    "\"intermediate_size\":128,\"num_attention_heads\":4,"
                    "\"num_key_value_heads\":1,\"num_hidden_layers\":2,\"vocab_size\":100";
    char buf[1024];
    snprintf(buf, sizeof(buf), "{%s}", m);
    ok(buf, &c);
    CHECK(c.arch == QS_ARCH_MISTRAL && c.sliding_window == 4096 &&
              strcmp(pattern(&c, pat), "WW") == 0 && c.max_position_embeddings == 131072,
          "mistral defaults (window %lld, layers %s)", (long long)c.sliding_window, pat);
    CHECK(!c.qkv_bias && !c.o_bias && !c.mlp_bias, "no biases");
    snprintf(buf, sizeof(buf), "{%s,\"sliding_window\":null,\"attention_bias\":true}", m);
    ok(buf, &c);
    CHECK(c.sliding_window == 0 && strcmp(pattern(&c, pat), "--") == 0 && !c.qkv_bias,
          "null window (layers %s); mistral ignores bias flags", pat);
    snprintf(buf, sizeof(buf), "{%s,\"sliding_window\":32}", m);
    ok(buf, &c);
    CHECK(c.sliding_window == 32 && qs_hf_config_layer_window(&c, 0) == 32 &&
              qs_hf_config_layer_window(&c, 1) == 32 && qs_hf_config_layer_window(&c, 2) == 0,
          "window 32 on every layer");
    /* MistralForCausalLM ignores layer_types and use_sliding_window: one global window */
    snprintf(buf, sizeof(buf), "{%s,\"sliding_window\":32,\"use_sliding_window\":false,"
             "\"layer_types\":[\"full_attention\",\"full_attention\"]}", m);
    ok(buf, &c);
    CHECK(strcmp(pattern(&c, pat), "WW") == 0, "mistral ignores layer_types (layers %s)", pat);
    snprintf(buf, sizeof(buf), "{%s,\"sliding_window\":0}", m);
    bad(buf, "sliding_window");
    snprintf(buf, sizeof(buf), "{%s,\"sliding_window\":-4}", m);
    bad(buf, "sliding_window");
    snprintf(buf, sizeof(buf), "{%s,\"sliding_window\":\"4096\"}", m);
    bad(buf, "sliding_window");

    const char *q = "\"architectures\":[\"Qwen2ForCausalLM\"],\"hidden_size\":64,"
                    "\"intermediate_size\":128,\"num_attention_heads\":4,"
                    "\"num_key_value_heads\":2,\"num_hidden_layers\":4,\"vocab_size\":100";
    snprintf(buf, sizeof(buf), "{%s,\"sliding_window\":4096,\"use_sliding_window\":false,"
             "\"max_window_layers\":0,\"tie_word_embeddings\":true}", q);
    ok(buf, &c);
    CHECK(c.arch == QS_ARCH_QWEN2 && c.qkv_bias == 1 && c.o_bias == 0 && !c.mlp_bias, "qwen2 bias");
    CHECK(c.sliding_window == 0 && strcmp(pattern(&c, pat), "----") == 0 &&
              c.max_position_embeddings == 32768,
          "qwen2 window off (layers %s)", pat);
    int64_t layer = 64 * 64 * 2 + 2 * 64 * 32 + 3 * 64 * 128 + 2 * 64 + 64 + 2 * 32;
    CHECK(qs_hf_config_param_count(&c) == 4 * layer + 100 * 64 + 64, "qwen2 params");
    /* max_window_layers: layers >= it slide */
    snprintf(buf, sizeof(buf), "{%s,\"sliding_window\":16,\"use_sliding_window\":true,"
             "\"max_window_layers\":2}", q);
    ok(buf, &c);
    CHECK(c.sliding_window == 16 && strcmp(pattern(&c, pat), "--WW") == 0 &&
              qs_hf_config_layer_window(&c, 2) == 16,
          "max_window_layers 2 (layers %s)", pat);
    snprintf(buf, sizeof(buf), "{%s,\"sliding_window\":16,\"use_sliding_window\":true,"
             "\"max_window_layers\":0}", q);
    ok(buf, &c);
    CHECK(strcmp(pattern(&c, pat), "WWWW") == 0, "max_window_layers 0 (layers %s)", pat);
    /* default max_window_layers 28 >= 4 layers: no layer slides; default window 4096 */
    snprintf(buf, sizeof(buf), "{%s,\"use_sliding_window\":true}", q);
    ok(buf, &c);
    CHECK(c.sliding_window == 4096 && strcmp(pattern(&c, pat), "----") == 0,
          "defaults: window %lld, layers %s", (long long)c.sliding_window, pat);
    /* sliding_window null: transformers' None, no window anywhere */
    snprintf(buf, sizeof(buf), "{%s,\"use_sliding_window\":true,\"sliding_window\":null,"
             "\"max_window_layers\":0}", q);
    ok(buf, &c);
    CHECK(c.sliding_window == 0 && strcmp(pattern(&c, pat), "----") == 0,
          "null window (layers %s)", pat);
    /* layer_types wins over max_window_layers; any order; legacy "attention" = full */
    snprintf(buf, sizeof(buf), "{%s,\"sliding_window\":16,\"use_sliding_window\":true,"
             "\"max_window_layers\":0,\"layer_types\":[\"sliding_attention\","
             "\"full_attention\",\"sliding_attention\",\"attention\"]}", q);
    ok(buf, &c);
    CHECK(strcmp(pattern(&c, pat), "W-W-") == 0, "layer_types (layers %s)", pat);
    snprintf(buf, sizeof(buf), "{%s,\"use_sliding_window\":false,\"layer_types\":["
             "\"full_attention\",\"full_attention\",\"full_attention\",\"full_attention\"]}", q);
    ok(buf, &c);
    CHECK(strcmp(pattern(&c, pat), "----") == 0, "layer_types all full (layers %s)", pat);
    /* errors: what transformers refuses to run */
    snprintf(buf, sizeof(buf),
             "{%s,\"use_sliding_window\":true,\"layer_types\":[\"full_attention\"]}", q);
    bad(buf, "layer_types");
    snprintf(buf, sizeof(buf), "{%s,\"use_sliding_window\":true,\"layer_types\":["
             "\"full_attention\",\"chunked_attention\",\"full_attention\",\"full_attention\"]}", q);
    bad(buf, "layer_types' entry 1");
    snprintf(buf, sizeof(buf), "{%s,\"use_sliding_window\":true,\"layer_types\":["
             "\"full_attention\",\"full_attention\",3,\"full_attention\"]}", q);
    bad(buf, "layer_types' entry 2");
    snprintf(buf, sizeof(buf), "{%s,\"use_sliding_window\":false,\"layer_types\":["
             "\"full_attention\",\"full_attention\",\"full_attention\",\"sliding_attention\"]}", q);
    bad(buf, "no window");
    snprintf(buf, sizeof(buf), "{%s,\"use_sliding_window\":true,\"sliding_window\":null,"
             "\"layer_types\":[\"sliding_attention\",\"full_attention\",\"full_attention\","
             "\"full_attention\"]}", q);
    bad(buf, "no window");
    snprintf(buf, sizeof(buf), "{%s,\"use_sliding_window\":true,\"sliding_window\":0}", q);
    bad(buf, "sliding_window");
    snprintf(buf, sizeof(buf), "{%s,\"use_sliding_window\":true,\"max_window_layers\":-1}", q);
    bad(buf, "max_window_layers");
    snprintf(buf, sizeof(buf), "{%s,\"use_sliding_window\":1}", q);
    bad(buf, "use_sliding_window");
    /* Llama has no window: the keys are ignored */
    ok("{" LLAMA_BASE ",\"sliding_window\":8,\"use_sliding_window\":true,"
       "\"layer_types\":[\"sliding_attention\",\"sliding_attention\"]}", &c);
    CHECK(c.sliding_window == 0 && strcmp(pattern(&c, pat), "--") == 0, "llama (layers %s)", pat);
    /* per-layer types are stored inline: at most QS_HF_MAX_LAYERS layers */
    snprintf(buf, sizeof(buf),
             "{\"architectures\":[\"LlamaForCausalLM\"],\"hidden_size\":64,\"intermediate_size\":"
             "128,\"num_attention_heads\":4,\"num_hidden_layers\":%d,\"vocab_size\":100}",
             QS_HF_MAX_LAYERS + 1);
    bad(buf, "num_hidden_layers");
}

static void test_errors(void) {
    bad("", "invalid JSON");
    bad("{" LLAMA_BASE ",}", "invalid JSON");
    bad("{" LLAMA_BASE "} {}", "invalid JSON");
    bad("[]", "not a JSON object");
    bad("{\"hidden_size\":64}", "architecture");
    bad("{\"architectures\":[],\"hidden_size\":64}", "architectures");
    bad("{\"architectures\":[\"GemmaForCausalLM\"]}", "GemmaForCausalLM");
    bad("{\"model_type\":\"gpt2\"}", "gpt2");
    bad("{\"architectures\":[\"LlamaForCausalLM\"],\"hidden_size\":64,\"num_attention_heads\":4,"
        "\"num_hidden_layers\":2,\"vocab_size\":100}",
        "intermediate_size");
    bad("{" LLAMA_BASE ",\"hidden_size\":65}", "duplicate key 'hidden_size'");
    bad("{\"architectures\":[\"LlamaForCausalLM\"],\"hidden_size\":0,\"intermediate_size\":128,"
        "\"num_attention_heads\":4,\"num_hidden_layers\":2,\"vocab_size\":100}",
        "hidden_size");
    bad("{\"architectures\":[\"LlamaForCausalLM\"],\"hidden_size\":3e9,\"intermediate_size\":128,"
        "\"num_attention_heads\":4,\"num_hidden_layers\":2,\"vocab_size\":100}",
        "out of range");
    bad("{\"architectures\":[\"LlamaForCausalLM\"],\"hidden_size\":\"64\","
        "\"intermediate_size\":128,"
        "\"num_attention_heads\":4,\"num_hidden_layers\":2,\"vocab_size\":100}",
        "must be an integer");
    bad("{\"architectures\":[\"LlamaForCausalLM\"],\"hidden_size\":64,\"intermediate_size\":128,"
        "\"num_attention_heads\":4,\"num_hidden_layers\":2.5,\"vocab_size\":100}",
        "num_hidden_layers");
    bad("{\"architectures\":[\"LlamaForCausalLM\"],\"hidden_size\":66,\"intermediate_size\":128,"
        "\"num_attention_heads\":4,\"num_hidden_layers\":2,\"vocab_size\":100}",
        "divisible");
    bad("{" LLAMA_BASE ",\"num_key_value_heads\":3}", "num_key_value_heads");
    bad("{" LLAMA_BASE ",\"head_dim\":15}", "head_dim");
    bad("{" LLAMA_BASE ",\"tie_word_embeddings\":1}", "tie_word_embeddings");
    bad("{" LLAMA_BASE ",\"rms_norm_eps\":-1}", "rms_norm_eps");
    bad("{" LLAMA_BASE ",\"hidden_act\":\"gelu\"}", "gelu");
    qs_err err = {0};
    qs_hf_config c;
    CHECK(qs_hf_config_read(&c, "/nonexistent/config.json", &err) == QS_ERR_INPUT &&
              strstr(err.msg, "/nonexistent/config.json"),
          "%s", err.msg);
    /* a NUL byte inside the file */
    FILE *f = fopen(g_path, "wb");
    fwrite("{\"a\":1}\0{", 1, 9, f);
    fclose(f);
    qs_err_clear(&err);
    CHECK(qs_hf_config_read(&c, g_path, &err) == QS_ERR_INPUT, "NUL byte");
}

int main(void) {
    char dir[512];
    qs_test_tmpdir(dir, sizeof(dir), "hf_config");
    snprintf(g_path, sizeof(g_path), "%s/config.json", dir);
    test_llama();
    test_rope();
    test_mistral_qwen2();
    test_errors();
    qs_test_rm_rf(dir);
    return qs_test_finish("test_hf_config");
}
