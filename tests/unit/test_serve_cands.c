/* test_serve_cands.c: candidates with kinds (integer grid + GGUF types), their exact bytes in
 * every output format, the exact GGUF images of integer candidates, the serving rules of
 * search.serve, and the config-time refusals of qs_cands_check_model (exit-2 lines naming
 * the candidate, linear, format or engine). The model is a tinyllama-a-shaped config.json
 * written into a mkdtemp directory (hidden 256, intermediate 768, 4 heads, 2 KV heads of 64). */
#include "candidates.h"
#include "check.h"
#include "config.h"
#include "ct_export.h"
#include "gguf_types.h"
#include "hf_config.h"
#include "pack.h"

static char g_dir[256];

static const char *write_file(const char *name, const char *text) {
    static char path[512];
    snprintf(path, sizeof(path), "%s/%s", g_dir, name);
    FILE *f = fopen(path, "wb");
    if (!f) {
        fprintf(stderr, "cannot write %s\n", path);
        exit(1);
    }
    fputs(text, f);
    fclose(f);
    return path;
}

static qs_hf_config g_hf, g_hf640; /* intermediate 768 / 640 */
static const qs_hf_config *g_model = &g_hf;

/* Loads HEAD + body + sets into cfg; returns the status. */
static qs_status load(qs_config *cfg, const char *body, qs_err *err) {
    char text[2048];
    /* the model directory is g_dir: config.json and a (stand-in) tokenizer.model */
    snprintf(text, sizeof(text), "model: %s\nrun_dir: /r\n%s", g_dir, body);
    memset(cfg, 0, sizeof(*cfg));
    return qs_config_load(cfg, write_file("c.yaml", text), NULL, 0, err);
}

/* Expects qs_cands_check_model to refuse `body` with QS_ERR_INPUT and a message holding
 * `needle`. */
static void expect_refused(int line, const char *body, const char *needle) {
    qs_config cfg;
    qs_err err = {0};
    qs_status st = load(&cfg, body, &err);
    if (st == QS_OK) st = qs_cands_check_model(g_model, &cfg, &err);
    CHECK_AT(__FILE__, line, st == QS_ERR_INPUT && strstr(err.msg, needle),
             "status %d msg '%s' (want '%s')", (int)st, err.msg, needle);
    qs_config_free(&cfg);
}
#define REFUSED(body, needle) expect_refused(__LINE__, body, needle)

static void expect_ok(int line, const char *body) {
    qs_config cfg;
    qs_err err = {0};
    qs_status st = load(&cfg, body, &err);
    if (st == QS_OK) st = qs_cands_check_model(g_model, &cfg, &err);
    CHECK_AT(__FILE__, line, st == QS_OK, "refused: %s", err.msg);
    qs_config_free(&cfg);
}
#define ACCEPTED(body) expect_ok(__LINE__, body)

static void test_kinds_and_bytes(void) {
    qs_config cfg;
    qs_cands cs;
    qs_err err = {0};
    CHECK(load(&cfg,
               "quant:\n  bits: [4, 8]\n  group_size: [32, 128]\n  sym: true\n"
               "  gguf_types: [q4_k, Q8_0]\noutput:\n  formats: [hdf5]\n",
               &err) == QS_OK,
          "load: %s", err.msg);
    CHECK(qs_cands_from_config(&cfg, &cs, &err) == QS_OK, "cands: %s", err.msg);
    CHECK(cs.n == 6 && cs.ngguf == 2, "n %d ngguf %d", cs.n, cs.ngguf);
    const char *want[6] = {"w4g32", "w4g128", "w8g32", "w8g128", "Q4_K", "Q8_0"};
    for (int c = 0; c < 6 && c < cs.n; ++c) CHECK(strcmp(cs.name[c], want[c]) == 0, "name %d %s", c, cs.name[c]);
    CHECK(cs.kind[4] == QS_CAND_GGUF && cs.g[4].type == QS_GGUF_Q4_K, "Q4_K kind");
    CHECK(cs.kind[0] == QS_CAND_INT, "int kind");
    CHECK(cs.g[4].chooser == QS_GGUF_CHOOSE_SEARCH, "default chooser");
    /* exact images */
    qs_gguf_type t;
    CHECK(qs_cand_gguf_image(&cs, 0, &t) && t == QS_GGUF_Q4_0, "w4g32 sym -> Q4_0");
    CHECK(qs_cand_gguf_image(&cs, 2, &t) && t == QS_GGUF_Q8_0, "w8g32 sym -> Q8_0");
    CHECK(!qs_cand_gguf_image(&cs, 1, &t), "w4g128 has no image");
    CHECK(qs_cand_gguf_type(&cs, 4) == QS_GGUF_Q4_K && qs_cand_gguf_type(&cs, 1) == -1, "types");
    /* bytes: GGUF d_out x row bytes; GPTQ pack sizes; compressed-tensors */
    int64_t b = 0;
    CHECK(qs_cand_bytes(&cs, 4, 768, 256, QS_OUT_GGUF, &cfg, &b, &err) == QS_OK &&
              b == 768 * 144,
          "Q4_K bytes %lld", (long long)b);
    CHECK(qs_cand_bytes(&cs, 4, 256, 768, QS_OUT_HDF5, &cfg, &b, &err) == QS_OK &&
              b == 256 * 3 * 144,
          "Q4_K hdf5 bytes %lld", (long long)b);
    CHECK(qs_cand_bytes(&cs, 5, 256, 256, QS_OUT_GGUF, &cfg, &b, &err) == QS_OK &&
              b == 256 * 8 * 34,
          "Q8_0 bytes %lld", (long long)b);
    CHECK(qs_cand_bytes(&cs, 0, 256, 256, QS_OUT_GGUF, &cfg, &b, &err) == QS_OK &&
              b == 256 * 8 * 18,
          "w4g32 as Q4_0 bytes %lld", (long long)b);
    qs_err e2 = {0};
    CHECK(qs_cand_bytes(&cs, 1, 256, 256, QS_OUT_GGUF, &cfg, &b, &e2) == QS_ERR_INPUT &&
              strstr(e2.msg, "w4g128 has no GGUF form") && b == -1,
          "w4g128 in GGUF: %s", e2.msg);
    e2 = (qs_err){0};
    CHECK(qs_cand_bytes(&cs, 4, 256, 256, QS_OUT_GPTQ, &cfg, &b, &e2) == QS_ERR_INPUT &&
              strstr(e2.msg, "no GPTQ layout"),
          "Q4_K in GPTQ: %s", e2.msg);
    e2 = (qs_err){0};
    CHECK(qs_cand_bytes(&cs, 4, 256, 128, QS_OUT_GGUF, &cfg, &b, &e2) == QS_ERR_INPUT &&
              strstr(e2.msg, "not a multiple of its block of 256"),
          "Q4_K at 128 inputs: %s", e2.msg);
    qs_pack_bytes pb;
    qs_pack_sizes(256, 768, 4, 128, &pb, &err);
    CHECK(qs_cand_bytes(&cs, 1, 256, 768, QS_OUT_GPTQ, &cfg, &b, &err) == QS_OK && b == pb.total,
          "w4g128 GPTQ bytes %lld", (long long)b);
    /* compressed-tensors, symmetric: packed + fp16 scales + shape, no zero point, no g_idx */
    CHECK(qs_cand_bytes(&cs, 1, 256, 768, QS_OUT_CT, &cfg, &b, &err) == QS_OK &&
              b == 256 * 768 / 2 + 256 * 6 * 2 + 16,
          "w4g128 CT bytes %lld", (long long)b);
    qs_config_free(&cfg);
    /* asymmetric act-order compressed-tensors: zero points and weight_g_idx */
    CHECK(load(&cfg, "quant:\n  act_order: true\n", &err) == QS_OK, "load: %s", err.msg);
    CHECK(qs_cands_from_config(&cfg, &cs, &err) == QS_OK, "cands: %s", err.msg);
    CHECK(qs_cand_bytes(&cs, 0, 256, 768, QS_OUT_CT, &cfg, &b, &err) == QS_OK &&
              b == 256 * 768 / 2 + 256 * 6 * 2 + 256 / 8 * 6 * 4 + 16 + 768 * 4,
          "w4g128 asym act-order CT bytes %lld", (long long)b);
    qs_config_free(&cfg);
    /* search.serve llamacpp: the integer grid is not used */
    CHECK(load(&cfg,
               "quant:\n  gguf_types: [Q3_K, Q2_K]\n  gguf_chooser: imatrix\n"
               "search:\n  serve: llamacpp\noutput:\n  formats: [gguf]\n",
               &err) == QS_OK,
          "load: %s", err.msg);
    CHECK(qs_cands_from_config(&cfg, &cs, &err) == QS_OK, "cands: %s", err.msg);
    CHECK(cs.n == 2 && strcmp(cs.name[0], "Q3_K") == 0 && strcmp(cs.name[1], "Q2_K") == 0,
          "llamacpp candidates n %d", cs.n);
    CHECK(cs.g[0].chooser == QS_GGUF_CHOOSE_IMATRIX, "chooser imatrix");
    CHECK(qs_cands_budget_format(&cfg) == QS_OUT_GGUF, "budget format gguf");
    CHECK(!qs_cands_tie_fused(&cfg), "llama.cpp: no ties");
    qs_config_free(&cfg);
}

static void test_budget_formats(void) {
    qs_config cfg;
    qs_err err = {0};
    CHECK(load(&cfg, "", &err) == QS_OK, "%s", err.msg);
    CHECK(qs_config_formats(&cfg) == (QS_OUT_GPTQ | QS_OUT_HDF5), "default formats");
    CHECK(qs_cands_budget_format(&cfg) == QS_OUT_GPTQ, "default budget: GPTQ");
    CHECK(qs_cands_tie_fused(&cfg), "default ties");
    qs_config_free(&cfg);
    CHECK(load(&cfg, "output:\n  gptq_export: false\n", &err) == QS_OK, "%s", err.msg);
    CHECK(qs_config_formats(&cfg) == QS_OUT_HDF5, "gptq_export false drops gptq");
    CHECK(qs_cands_budget_format(&cfg) == QS_OUT_HDF5, "hdf5 budget");
    qs_config_free(&cfg);
    CHECK(load(&cfg,
               "quant:\n  sym: true\nsearch:\n  serve: vllm\n"
               "output:\n  formats: [gptq, compressed-tensors]\n",
               &err) == QS_OK,
          "%s", err.msg);
    CHECK(qs_cands_budget_format(&cfg) == QS_OUT_CT, "vllm + ct: CT budget");
    qs_config_free(&cfg);
}

static void test_servable(void) {
    qs_config cfg;
    qs_cands cs;
    qs_err err = {0};
    char why[256];
    /* vLLM: 4/8 sym; 2-bit and asym refused; CT without GPTQ takes 4-bit asym */
    CHECK(load(&cfg, "quant:\n  bits: [2, 4]\n  sym: false\nsearch:\n  serve: vllm\n",
               &err) == QS_OK,
          "%s", err.msg);
    qs_cands_from_config(&cfg, &cs, &err);
    CHECK(!qs_cand_servable(&cs, 1, 256, 256, &cfg, why, sizeof(why)) &&
              strstr(why, "vLLM loads 4/8-bit symmetric"),
          "vllm asym gptq: %s", why);
    qs_config_free(&cfg);
    CHECK(load(&cfg,
               "quant:\n  bits: [4]\nsearch:\n  serve: vllm\n"
               "output:\n  formats: [compressed-tensors]\n",
               &err) == QS_OK,
          "%s", err.msg);
    qs_cands_from_config(&cfg, &cs, &err);
    CHECK(qs_cand_servable(&cs, 0, 256, 256, &cfg, why, sizeof(why)), "ct asym 4: %s", why);
    qs_config_free(&cfg);
    CHECK(load(&cfg, "quant:\n  bits: [4]\n  group_size: [96]\n  sym: true\n"
                     "search:\n  serve: vllm\noutput:\n  gptq_export: false\n",
               &err) == QS_OK,
          "%s", err.msg);
    qs_cands_from_config(&cfg, &cs, &err);
    CHECK(!qs_cand_servable(&cs, 0, 256, 768, &cfg, why, sizeof(why)) &&
              strstr(why, "group sizes -1, 32, 64, 128"),
          "vllm group 96: %s", why);
    qs_config_free(&cfg);
    /* GPTQ export: input size a multiple of the group size */
    CHECK(load(&cfg, "quant:\n  group_size: [96]\n", &err) == QS_OK, "%s", err.msg);
    qs_cands_from_config(&cfg, &cs, &err);
    CHECK(!qs_cand_servable(&cs, 0, 256, 256, &cfg, why, sizeof(why)) &&
              strstr(why, "GPTQ export"),
          "gptq g96 at 256: %s", why);
    CHECK(qs_cand_servable(&cs, 0, 256, 768, &cfg, why, sizeof(why)), "gptq g96 at 768: %s",
          why);
    qs_config_free(&cfg);
}

static void test_refusals(void) {
    ACCEPTED("");
    ACCEPTED("quant:\n  gguf_types: [Q4_K, Q6_K]\nsearch:\n  serve: llamacpp\n"
             "output:\n  formats: [gguf]\n");
    ACCEPTED("quant:\n  bits: [4, 8]\n  group_size: [32]\n  sym: true\n"
             "  gguf_types: [Q4_K]\noutput:\n  formats: [gguf, hdf5]\n");
    ACCEPTED("quant:\n  bits: [4]\n  sym: true\nsearch:\n  serve: vllm\n"
             "output:\n  formats: [gptq, compressed-tensors]\n");
    REFUSED("quant:\n  gguf_types: [Q4_X]\n", "quant.gguf_types: 'Q4_X' is not a GGUF block type");
    REFUSED("quant:\n  gguf_types: [F16]\n", "quant.gguf_types: 'F16' is not a GGUF block type");
    REFUSED("quant:\n  gguf_types: [Q4_K]\n",
            "GGUF candidate Q4_K has no GPTQ layout; drop gptq from output.formats");
    REFUSED("quant:\n  gguf_types: [Q4_K]\noutput:\n  formats: [compressed-tensors]\n",
            "GGUF candidate Q4_K has no compressed-tensors layout");
    REFUSED("quant:\n  gguf_types: [Q4_K]\noutput:\n  formats: [gguf]\n",
            "output.formats has gguf but candidate w4g128 has no GGUF form");
    REFUSED("quant:\n  gguf_types: [Q4_K]\nsearch:\n  serve: llamacpp\n",
            "search.serve: llamacpp needs gguf in output.formats");
    REFUSED("search:\n  serve: llamacpp\noutput:\n  formats: [gguf]\n",
            "search.serve: llamacpp needs GGUF candidates (quant.gguf_types");
    REFUSED("quant:\n  bits: [3, 4]\noutput:\n  formats: [compressed-tensors]\n",
            "output.formats has compressed-tensors: w3g128 asym: the compressed-tensors export "
            "takes");
    REFUSED("quant:\n  act_order: true\n  gguf_types: [Q4_K]\nsearch:\n  serve: llamacpp\n"
            "output:\n  formats: [gguf]\n",
            "Q4_K with quant.act_order needs quant.static_groups: true");
    REFUSED("quant:\n  sym: true\n  act_order: true\nsearch:\n  serve: vllm\n"
            "output:\n  formats: [compressed-tensors]\n",
            "search.serve: vllm with compressed-tensors and quant.act_order needs "
            "quant.static_groups: true");
    REFUSED("quant:\n  bits: [2, 3]\nsearch:\n  serve: vllm\n",
            "no candidate can be served by vLLM for self_attn.q_proj (256 x 256) (vLLM loads "
            "4/8-bit symmetric");
    REFUSED("quant:\n  bits: [4]\nsearch:\n  serve: vllm\n", "; set quant.sym: true)");
    /* the GGUF file needs a vocabulary: g_dir has a tokenizer.model, g_dir/empty none */
    char body[512];
    snprintf(body, sizeof(body),
             "quant:\n  gguf_types: [Q4_K]\nsearch:\n  serve: llamacpp\n"
             "output:\n  formats: [gguf]\n  gguf_tokenizer: %s/empty\n", g_dir);
    REFUSED(body, "/empty holds no tokenizer.model or tokenizer.json");
    snprintf(body, sizeof(body),
             "quant:\n  gguf_types: [Q4_K]\nsearch:\n  serve: llamacpp\n"
             "output:\n  formats: [gguf]\n  gguf_tokenizer: %s/tokenizer.model\n", g_dir);
    ACCEPTED(body);
    REFUSED("quant:\n  gguf_types: [Q4_K, Q4_K]\n", "quant.gguf_types: 'Q4_K' is listed twice");
    REFUSED("output:\n  formats: [gguf, llamafile]\n",
            "output.formats: 'llamafile' is not a format");
    REFUSED("search:\n  tie_fused: false\noutput:\n  formats: [compressed-tensors]\n",
            "search.tie_fused: false cannot be written as compressed-tensors");
}

/* A GGUF candidate is quantized for every linear: a type whose block does not divide some
 * input size (down_proj's 640 inputs and the K-quants' 256) is refused naming both. */
static void test_block_shapes(void) {
    g_model = &g_hf640;
    REFUSED("quant:\n  gguf_types: [Q4_0, Q4_K]\nsearch:\n  serve: llamacpp\n"
            "output:\n  formats: [gguf]\n",
            "quant.gguf_types: Q4_K cannot hold mlp.down_proj (256 x 640): its input size is not "
            "a multiple of the type's block of 256 weights");
    ACCEPTED("quant:\n  gguf_types: [Q4_0, Q8_0]\nsearch:\n  serve: llamacpp\n"
             "output:\n  formats: [gguf]\n");
    g_model = &g_hf;
}

int main(void) {
    qs_test_tmpdir(g_dir, sizeof(g_dir), "serve_cands");
    write_file("tokenizer.model", "stand-in: only its presence is checked here");
    char empty[300];
    snprintf(empty, sizeof(empty), "%s/empty", g_dir);
    mkdir(empty, 0755);
    const char *cj = write_file(
        "config.json",
        "{\"architectures\": [\"LlamaForCausalLM\"], \"model_type\": \"llama\", "
        "\"hidden_size\": 256, \"intermediate_size\": 768, \"num_attention_heads\": 4, "
        "\"num_key_value_heads\": 2, \"head_dim\": 64, \"num_hidden_layers\": 2, "
        "\"vocab_size\": 512, \"rms_norm_eps\": 1e-5, \"max_position_embeddings\": 1024, "
        "\"tie_word_embeddings\": false}");
    qs_err err = {0};
    if (qs_hf_config_read(&g_hf, cj, &err) != QS_OK) {
        fprintf(stderr, "config.json: %s\n", err.msg);
        return 1;
    }
    test_kinds_and_bytes();
    test_budget_formats();
    test_servable();
    test_refusals();
    const char *cj640 = write_file(
        "config640.json",
        "{\"architectures\": [\"LlamaForCausalLM\"], \"model_type\": \"llama\", "
        "\"hidden_size\": 256, \"intermediate_size\": 640, \"num_attention_heads\": 4, "
        "\"num_key_value_heads\": 2, \"head_dim\": 64, \"num_hidden_layers\": 2, "
        "\"vocab_size\": 512, \"rms_norm_eps\": 1e-5, \"max_position_embeddings\": 1024, "
        "\"tie_word_embeddings\": false}");
    CHECK(qs_hf_config_read(&g_hf640, cj640, &err) == QS_OK, "config640.json: %s", err.msg);
    test_block_shapes();
    qs_test_rm_rf(g_dir);
    return qs_test_finish("test_serve_cands");
}
