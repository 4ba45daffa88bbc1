/* test_config.c: the YAML run config: defaults, every error kind (code, exact
 * file:line:col prefix, key in the message), --set (lists, relative paths), the dump
 * round trip, anchor/alias refusal, list bombs, the threads rule (explicit, SLURM_CPUS_PER_TASK,
 * OMP_NUM_THREADS, 1), and that docs/config.md (argv[1]) names
 * every schema key. Test files are written into a mkdtemp directory. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "config.h"

static char g_dir[256];

/* Writes `text` to g_dir/name; returns the path in a static buffer (one at a time). */
static const char *write_yaml(const char *name, const char *text) {
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

#define HEAD "model: /m\nrun_dir: /r\n"

/* Loads `text` from bad.yaml and expects QS_ERR_INPUT with a message that starts with
 * "<dir>/bad.yaml<suffix>" (suffix e.g. ":4:3: ") and contains `needle`. */
static void expect_err(int line, const char *text, const char *const *sets, int nset,
                       const char *suffix, const char *needle) {
    const char *path = write_yaml("bad.yaml", text);
    char prefix[600];
    snprintf(prefix, sizeof(prefix), "%s%s", path, suffix);
    qs_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    qs_err err = {0};
    qs_status st = qs_config_load(&cfg, path, sets, nset, &err);
    CHECK_AT(__FILE__, line,
             st == QS_ERR_INPUT && strncmp(err.msg, prefix, strlen(prefix)) == 0 &&
                 strstr(err.msg, needle),
             "status %d msg '%s' (want prefix '%s' and '%s')", (int)st, err.msg, prefix, needle);
    qs_config_free(&cfg);
}
#define EXPECT_ERR(text, suffix, needle) expect_err(__LINE__, text, NULL, 0, suffix, needle)

static void expect_set_err(int line, const char *assign, const char *msg_start) {
    qs_config cfg;
    qs_err err = {0};
    qs_status st0 = qs_config_init_defaults(&cfg, &err);
    CHECK_AT(__FILE__, line, st0 == QS_OK, "defaults: %s", err.msg);
    if (st0 != QS_OK) return;
    qs_status st = qs_config_set(&cfg, assign, &err);
    CHECK_AT(__FILE__, line,
             st == QS_ERR_INPUT && strncmp(err.msg, msg_start, strlen(msg_start)) == 0,
             "--set '%s': status %d msg '%s' (want '%s...')", assign, (int)st, err.msg, msg_start);
    qs_config_free(&cfg);
}
#define EXPECT_SET_ERR(a, m) expect_set_err(__LINE__, a, m)

static char *dump_str(const qs_config *cfg, int runtime) {
    char *buf = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&buf, &len);
    qs_err err = {0};
    qs_status st = qs_config_dump(cfg, m, runtime, &err);
    fclose(m);
    CHECK(st == QS_OK, "dump: %s", err.msg);
    return buf;
}

static int same_config(const qs_config *a, const qs_config *b) {
    char *da = dump_str(a, 1), *db = dump_str(b, 1);
    int same = strcmp(da, db) == 0;
    free(da);
    free(db);
    /* field by field for the parts most likely to drift */
    same = same && strcmp(a->model, b->model) == 0 && strcmp(a->run_dir, b->run_dir) == 0 &&
           a->quant.nbits == b->quant.nbits &&
           memcmp(a->quant.bits, b->quant.bits, sizeof(a->quant.bits)) == 0 &&
           a->quant.ngroup_size == b->quant.ngroup_size &&
           memcmp(a->quant.group_size, b->quant.group_size, sizeof(a->quant.group_size)) == 0 &&
           a->quant.damp == b->quant.damp && a->search.target_bpw == b->search.target_bpw &&
           a->search.max_bytes == b->search.max_bytes && a->calib.seed == b->calib.seed &&
           a->output.shard_bytes == b->output.shard_bytes && a->threads == b->threads &&
           strcmp(a->calib.tokens, b->calib.tokens) == 0 &&
           strcmp(a->reconstruct.propagate, b->reconstruct.propagate) == 0 &&
           strcmp(a->search.serve, b->search.serve) == 0;
    return same;
}

static void test_defaults(void) {
    qs_config cfg;
    qs_err err = {0};
    CHECK(qs_config_init_defaults(&cfg, &err) == QS_OK, "defaults: %s", err.msg);
    CHECK(strcmp(cfg.model, "") == 0 && strcmp(cfg.run_dir, "") == 0, "model/run_dir empty");
    CHECK(cfg.threads == 0, "threads");
    CHECK(cfg.calib.nsamples == 128 && cfg.calib.seqlen == 2048, "calib sizes");
    CHECK(cfg.calib.sampling == QS_SAMPLING_RANDOM && cfg.calib.seed == 0, "sampling");
    CHECK(cfg.calib.chunk_samples == 8 && cfg.calib.checkpoint_every == 16, "chunks");
    CHECK(strcmp(cfg.calib.tokens, "") == 0 && strcmp(cfg.calib.offsets_file, "") == 0,
          "calib paths");
    CHECK(cfg.quant.method == QS_METHOD_GPTQ, "method");
    CHECK(cfg.quant.nbits == 1 && cfg.quant.bits[0] == 4, "bits");
    CHECK(cfg.quant.ngroup_size == 1 && cfg.quant.group_size[0] == 128, "group_size");
    CHECK(!cfg.quant.sym && !cfg.quant.act_order && !cfg.quant.static_groups, "flags");
    CHECK(cfg.quant.damp == 0.01 && cfg.quant.damp_max == 1.0, "damp");
    CHECK(cfg.quant.block_size == 128 && cfg.quant.row_block == 256, "blocks");
    CHECK(cfg.reconstruct.inputs == QS_INPUTS_QUANTIZED, "inputs");
    CHECK(strcmp(cfg.reconstruct.propagate, "") == 0, "propagate");
    CHECK(cfg.search.target_bpw == 0 && cfg.search.max_bytes == 0, "search unset");
    CHECK(cfg.search.objective == QS_OBJECTIVE_SENSITIVITY && cfg.search.tie_fused == 1, "search");
    CHECK(strcmp(cfg.search.serve, "") == 0, "serve");
    CHECK(cfg.output.checkpoint_format == QS_CKPT_AUTO && cfg.output.gptq_export == 1, "out");
    CHECK(cfg.output.shard_bytes == ((int64_t)4 << 30), "shard_bytes");
    CHECK(strcmp(cfg.eval.tokens, "") == 0 && cfg.eval.seqlen == 2048 &&
              cfg.eval.max_windows == 0,
          "eval");
    qs_config_free(&cfg);
    qs_config_free(&cfg); /* freed config stays freeable */
    qs_config zero;
    memset(&zero, 0, sizeof(zero));
    qs_config_free(&zero);
}

static void test_full_file(void) {
    const char *path = write_yaml(
        "full.yaml",
        "# a full config\n"
        "model: model-dir\n"
        "run_dir: /abs/run\n"
        "threads: 4\n"
        "calib:\n"
        "  tokens: data/tok.u32\n"
        "  nsamples: 32\n"
        "  seqlen: 128\n"
        "  sampling: file\n"
        "  offsets_file: ./off.txt\n"
        "  seed: 18446744073709551615\n"
        "  chunk_samples: 4\n"
        "  checkpoint_every: 2\n"
        "quant:\n"
        "  method: rtn\n"
        "  bits: [2, 3, 4, 8]\n"
        "  group_size:\n"
        "    - -1\n"
        "    - 32\n"
        "  sym: true\n"
        "  act_order: true\n"
        "  static_groups: true\n"
        "  damp: 0.1\n"
        "  damp_max: 2\n"
        "  block_size: 64\n"
        "  row_block: 32\n"
        "reconstruct:\n"
        "  inputs: float\n"
        "  propagate: \"b4g128\"\n"
        "search:\n"
        "  max_bytes: 70GB\n"
        "  objective: sensitivity\n"
        "  tie_fused: false\n"
        "  serve: marlin\n"
        "output:\n"
        "  checkpoint_format: gptq_v2\n"
        "  gptq_export: false\n"
        "  shard_bytes: 1.5GiB\n"
        "eval:\n"
        "  tokens: /abs/eval.u32\n"
        "  seqlen: 256\n"
        "  max_windows: 16\n");
    qs_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    qs_err err = {0};
    CHECK(qs_config_load(&cfg, path, NULL, 0, &err) == QS_OK, "full: %s", err.msg);
    char want[600];
    snprintf(want, sizeof(want), "%s/model-dir", g_dir);
    CHECK(cfg.model && strcmp(cfg.model, want) == 0, "model resolved: %s", cfg.model);
    CHECK(cfg.run_dir && strcmp(cfg.run_dir, "/abs/run") == 0, "absolute stays");
    snprintf(want, sizeof(want), "%s/data/tok.u32", g_dir);
    CHECK(cfg.calib.tokens && strcmp(cfg.calib.tokens, want) == 0, "tokens: %s",
          cfg.calib.tokens);
    snprintf(want, sizeof(want), "%s/off.txt", g_dir);
    CHECK(cfg.calib.offsets_file && strcmp(cfg.calib.offsets_file, want) == 0, "offsets: %s",
          cfg.calib.offsets_file);
    CHECK(cfg.threads == 4 && cfg.calib.nsamples == 32 && cfg.calib.seqlen == 128, "ints");
    CHECK(cfg.calib.sampling == QS_SAMPLING_FILE, "sampling");
    CHECK(cfg.calib.seed == UINT64_MAX, "seed u64");
    CHECK(cfg.quant.method == QS_METHOD_RTN, "method");
    CHECK(cfg.quant.nbits == 4 && cfg.quant.bits[0] == 2 && cfg.quant.bits[3] == 8, "bits");
    CHECK(cfg.quant.ngroup_size == 2 && cfg.quant.group_size[0] == -1 &&
              cfg.quant.group_size[1] == 32,
          "group_size block list");
    CHECK(cfg.quant.sym && cfg.quant.act_order && cfg.quant.static_groups, "bools");
    CHECK(cfg.quant.damp == 0.1 && cfg.quant.damp_max == 2.0, "floats");
    CHECK(cfg.reconstruct.inputs == QS_INPUTS_FLOAT, "inputs");
    CHECK(strcmp(cfg.reconstruct.propagate, "b4g128") == 0, "propagate");
    CHECK(cfg.search.max_bytes == 70000000000LL, "70GB");
    CHECK(cfg.search.objective == QS_OBJECTIVE_SENSITIVITY && !cfg.search.tie_fused, "search");
    CHECK(strcmp(cfg.search.serve, "marlin") == 0, "serve");
    CHECK(cfg.output.checkpoint_format == QS_CKPT_GPTQ_V2 && !cfg.output.gptq_export, "out");
    CHECK(cfg.output.shard_bytes == ((int64_t)3 << 29), "1.5GiB = %lld",
          (long long)cfg.output.shard_bytes);
    CHECK(cfg.eval.seqlen == 256 && cfg.eval.max_windows == 16, "eval");

    /* round trip: load(dump) == cfg and dump(load(dump)) == dump byte for byte */
    char *d1 = dump_str(&cfg, 1);
    const char *p2 = write_yaml("dumped.yaml", d1);
    qs_config c2;
    memset(&c2, 0, sizeof(c2));
    CHECK(qs_config_load(&c2, p2, NULL, 0, &err) == QS_OK, "reload: %s", err.msg);
    CHECK(same_config(&cfg, &c2), "load(dump) == cfg");
    char *d2 = dump_str(&c2, 1);
    CHECK(strcmp(d1, d2) == 0, "dump stable:\n%s\n---\n%s", d1, d2);
    /* runtime keys left out */
    char *d3 = dump_str(&c2, 0);
    CHECK(strstr(d1, "threads: 4\n") && !strstr(d3, "threads"), "include_runtime");
    CHECK(strstr(d1, "bits: [2, 3, 4, 8]\n") != NULL, "flow list in dump");
    free(d1);
    free(d2);
    free(d3);
    qs_config_free(&c2);
    qs_config_free(&cfg);
}

static void test_roundtrip_strings(void) {
    /* strings that need escaping survive the dump */
    const char *path = write_yaml("esc.yaml", HEAD
                                  "reconstruct:\n"
                                  "  propagate: \"a \\\"q\\\" \\\\ \\t tab \\n nl: #x é\"\n");
    qs_config cfg, c2;
    memset(&cfg, 0, sizeof(cfg));
    memset(&c2, 0, sizeof(c2));
    qs_err err = {0};
    CHECK(qs_config_load(&cfg, path, NULL, 0, &err) == QS_OK, "esc: %s", err.msg);
    CHECK(cfg.reconstruct.propagate &&
              strcmp(cfg.reconstruct.propagate, "a \"q\" \\ \t tab \n nl: #x é") == 0,
          "escaped string: %s", cfg.reconstruct.propagate);
    char *d1 = dump_str(&cfg, 1);
    const char *p2 = write_yaml("esc2.yaml", d1);
    CHECK(qs_config_load(&c2, p2, NULL, 0, &err) == QS_OK, "esc reload: %s", err.msg);
    CHECK(same_config(&cfg, &c2), "escape round trip");
    char *d2 = dump_str(&c2, 1);
    CHECK(strcmp(d1, d2) == 0, "escape dump stable");
    free(d1);
    free(d2);
    qs_config_free(&cfg);
    qs_config_free(&c2);
}

static void test_defaults_roundtrip(void) {
    /* the dump of a default config (plus required keys) reloads to the same bytes */
    qs_config cfg, c2;
    memset(&c2, 0, sizeof(c2));
    qs_err err = {0};
    CHECK(qs_config_init_defaults(&cfg, &err) == QS_OK, "defaults");
    CHECK(qs_config_set(&cfg, "model=/m", &err) == QS_OK, "set model");
    CHECK(qs_config_set(&cfg, "run_dir=/r", &err) == QS_OK, "set run_dir");
    CHECK(qs_config_set(&cfg, "quant.damp=0.3", &err) == QS_OK, "set damp");
    /* the first load resolves checkpoint_format auto (asymmetric default: gptq_v2); from
     * then on the dump is stable */
    char *d0 = dump_str(&cfg, 1);
    qs_config c1;
    memset(&c1, 0, sizeof(c1));
    CHECK(strstr(d0, "checkpoint_format: auto\n") != NULL, "default auto:\n%s", d0);
    CHECK(qs_config_load(&c1, write_yaml("defaults0.yaml", d0), NULL, 0, &err) == QS_OK,
          "load defaults: %s", err.msg);
    CHECK(c1.output.checkpoint_format == QS_CKPT_GPTQ_V2, "auto resolves to gptq_v2 (asym)");
    char *d1 = dump_str(&c1, 1);
    const char *p = write_yaml("defaults.yaml", d1);
    CHECK(qs_config_load(&c2, p, NULL, 0, &err) == QS_OK, "reload defaults: %s", err.msg);
    char *d2 = dump_str(&c2, 1);
    CHECK(strcmp(d1, d2) == 0, "defaults dump stable");
    free(d0);
    qs_config_free(&c1);
    CHECK(c2.quant.damp == 0.3, "0.3 exact");
    CHECK(strstr(d1, "damp: 0.3\n") && strstr(d1, "shard_bytes: 4294967296\n") &&
              strstr(d1, "serve: \"\"\n"),
          "dump text:\n%s", d1);
    free(d1);
    free(d2);
    qs_config_free(&cfg);
    qs_config_free(&c2);
}

static void test_empty_section(void) {
    /* "quant:" with nothing under it keeps the defaults */
    const char *path = write_yaml("empty_sec.yaml", HEAD "quant:\n# all commented out\neval:\n");
    qs_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    qs_err err = {0};
    CHECK(qs_config_load(&cfg, path, NULL, 0, &err) == QS_OK, "empty section: %s", err.msg);
    CHECK(cfg.quant.nbits == 1 && cfg.quant.bits[0] == 4, "defaults kept");
    qs_config_free(&cfg);
}

static void test_set(void) {
    const char *path = write_yaml("set.yaml", HEAD "quant:\n  bits: [4]\n");
    const char *sets[] = {"quant.bits=[2,3,4]", "quant.group_size=-1", "calib.tokens=rel/t.u32",
                          "eval.tokens=/abs/e.u32", "search.max_bytes=12GiB",
                          "quant.sym=true",   "search.serve=marlin", "reconstruct.propagate=",
                          "calib.seed=7"};
    qs_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    qs_err err = {0};
    CHECK(qs_config_load(&cfg, path, sets, 9, &err) == QS_OK, "set: %s", err.msg);
    CHECK(cfg.quant.nbits == 3 && cfg.quant.bits[0] == 2 && cfg.quant.bits[2] == 4, "set list");
    CHECK(cfg.quant.ngroup_size == 1 && cfg.quant.group_size[0] == -1, "scalar as list");
    char cwd[512], want[700];
    CHECK(getcwd(cwd, sizeof(cwd)) != NULL, "getcwd");
    snprintf(want, sizeof(want), "%s/rel/t.u32", cwd);
    CHECK(cfg.calib.tokens && strcmp(cfg.calib.tokens, want) == 0,
          "--set path relative to cwd: %s", cfg.calib.tokens);
    CHECK(strcmp(cfg.eval.tokens, "/abs/e.u32") == 0, "--set absolute path");
    CHECK(cfg.search.max_bytes == ((int64_t)12 << 30), "12GiB");
    CHECK(cfg.quant.sym == 1 && strcmp(cfg.search.serve, "marlin") == 0, "bool/strenum");
    CHECK(cfg.output.checkpoint_format == QS_CKPT_GPTQ, "auto resolves to gptq (v1) for sym");
    CHECK(strcmp(cfg.reconstruct.propagate, "") == 0, "empty string set");
    CHECK(cfg.calib.seed == 7, "seed");
    qs_config_free(&cfg);

    /* sets apply after the file: a later set wins, and errors come from the set */
    const char *bad[] = {"quant.bits=[9]"};
    memset(&cfg, 0, sizeof(cfg));
    qs_err e2 = {0};
    CHECK(qs_config_load(&cfg, path, bad, 1, &e2) == QS_ERR_INPUT &&
              strncmp(e2.msg, "--set quant.bits: 9 is out of range", 35) == 0,
          "load with bad set: %s", e2.msg);
    qs_config_free(&cfg);

    /* a set can supply the required key */
    const char *p2 = write_yaml("nomodel.yaml", "run_dir: /r\n");
    const char *sm[] = {"model=/m"};
    memset(&cfg, 0, sizeof(cfg));
    qs_err e3 = {0};
    CHECK(qs_config_load(&cfg, p2, sm, 1, &e3) == QS_OK, "required via set: %s", e3.msg);
    qs_config_free(&cfg);
}

static void test_set_errors(void) {
    EXPECT_SET_ERR("quant.bitz=[4]", "--set quant.bitz: unknown key (did you mean 'quant.bits'?)");
    EXPECT_SET_ERR("quant.bits=hello", "--set quant.bits: expected an integer, got 'hello'");
    EXPECT_SET_ERR("quant.bits=[2,3,", "--set quant.bits: invalid YAML");
    EXPECT_SET_ERR("quant.bits=[[2]]", "--set quant.bits: expected a list of integers");
    EXPECT_SET_ERR("quant.bits={a: 1}", "--set quant.bits: expected a list of integers, got a mapping");
    EXPECT_SET_ERR("quant.bits=[]", "--set quant.bits: the list is empty");
    EXPECT_SET_ERR("quant.bits=[4,4]", "--set quant.bits: value 4 is listed twice");
    EXPECT_SET_ERR("quant.bits", "--set quant.bits: expected key=value");
    EXPECT_SET_ERR("quant=1", "--set quant: is a section");
    EXPECT_SET_ERR("calib.nsamples=1.5", "--set calib.nsamples: expected an integer, got '1.5'");
    EXPECT_SET_ERR("calib.nsamples=0", "--set calib.nsamples: 0 is out of range");
    EXPECT_SET_ERR("calib.nsamples=", "--set calib.nsamples: no value given");
    EXPECT_SET_ERR("quant.sym=yes", "--set quant.sym: expected true or false, got 'yes'");
    EXPECT_SET_ERR("quant.method=awq", "--set quant.method: invalid value 'awq' (valid: 'gptq', 'rtn')");
    EXPECT_SET_ERR("model=*x", "--set model: YAML anchors and aliases are not allowed");
    EXPECT_SET_ERR("model=[a", "--set model: expected a path, got a sequence");
    EXPECT_SET_ERR("quant.bits=[2, 3", "--set quant.bits: invalid YAML: ");
    EXPECT_SET_ERR("model=a: b", "--set model: expected a path, got a mapping");
    EXPECT_SET_ERR("model=&a x", "--set model: YAML anchors and aliases are not allowed");
    EXPECT_SET_ERR("threads=4 5", "--set threads: expected an integer, got '4 5'");
    EXPECT_SET_ERR("quant.damp=nan", "--set quant.damp: expected a number, got 'nan'");
    EXPECT_SET_ERR("quant.damp=-0.5", "--set quant.damp: -0.5 is out of range");
    EXPECT_SET_ERR("search.max_bytes=12XB", "--set search.max_bytes: expected a byte size");
    EXPECT_SET_ERR("search.max_bytes=99999999999TB", "--set search.max_bytes: 99999999999TB is out of range");
    EXPECT_SET_ERR("output.shard_bytes=0", "--set output.shard_bytes: 0 is out of range");
    EXPECT_SET_ERR("quant.bits=\"4\"", "--set quant.bits: expected an integer, got the string");
    EXPECT_SET_ERR("search.serve=exllama", "--set search.serve: invalid value 'exllama' (valid: '', 'marlin', 'llamacpp', 'vllm', 'gptqmodel')");
}

static void test_file_errors(void) {
    /* unknown key with suggestion, exact position */
    EXPECT_ERR(HEAD "quant:\n  bitz: [4]\n", ":4:3: ",
               "unknown key 'quant.bitz' (did you mean 'quant.bits'?)");
    EXPECT_ERR(HEAD "qaunt:\n  bits: [4]\n", ":3:1: ", "unknown key 'qaunt' (did you mean 'quant'?)");
    EXPECT_ERR(HEAD "calib:\n  bits: [4]\n", ":4:3: ",
               "unknown key 'calib.bits' (did you mean 'quant.bits'?)");
    EXPECT_ERR(HEAD "zzzzzzzzzz: 1\n", ":3:1: ", "unknown key 'zzzzzzzzzz'");
    /* wrong types */
    EXPECT_ERR(HEAD "quant:\n  bits: hello\n", ":4:9: ", "quant.bits: expected an integer, got 'hello'");
    EXPECT_ERR(HEAD "quant:\n  damp: {a: 1}\n", ":4:9: ", "quant.damp: expected a number, got a mapping");
    EXPECT_ERR(HEAD "threads: [1]\n", ":3:10: ", "threads: expected an integer, got a sequence");
    EXPECT_ERR(HEAD "calib:\n  nsamples: 1.5\n", ":4:13: ", "calib.nsamples: expected an integer, got '1.5'");
    EXPECT_ERR(HEAD "quant:\n  sym: yes\n", ":4:8: ", "quant.sym: expected true or false, got 'yes'");
    EXPECT_ERR(HEAD "calib: 3\n", ":3:8: ", "calib: expected a mapping, got a scalar");
    EXPECT_ERR(HEAD "model2:\n  x: 1\n", ":3:1: ", "unknown key 'model2'");
    EXPECT_ERR(HEAD "quant:\n  bits:\n    - [2]\n", ":5:7: ", "quant.bits: expected a list of integers");
    /* ranges */
    EXPECT_ERR(HEAD "quant:\n  bits: [4, 9]\n", ":4:13: ", "quant.bits: 9 is out of range (allowed: 2..8)");
    EXPECT_ERR(HEAD "quant:\n  group_size: [0]\n", ":4:16: ", "quant.group_size: 0 is out of range (allowed: -1 or 1..");
    EXPECT_ERR(HEAD "quant:\n  group_size: -2\n", ":4:15: ", "quant.group_size: -2 is out of range");
    EXPECT_ERR(HEAD "calib:\n  nsamples: -3\n", ":4:13: ", "calib.nsamples: -3 is out of range");
    EXPECT_ERR(HEAD "calib:\n  seqlen: 0\n", ":4:11: ", "calib.seqlen: 0 is out of range");
    EXPECT_ERR(HEAD "quant:\n  damp: -0.01\n", ":4:9: ", "quant.damp: -0.01 is out of range");
    EXPECT_ERR(HEAD "threads: -1\n", ":3:10: ", "threads: -1 is out of range");
    EXPECT_ERR(HEAD "threads: 99999999999999999999\n", ":3:10: ", "threads: 99999999999999999999 is out of range");
    EXPECT_ERR(HEAD "calib:\n  seed: -1\n", ":4:9: ", "calib.seed: expected a non-negative integer");
    /* enums */
    EXPECT_ERR(HEAD "quant:\n  method: awq\n", ":4:11: ",
               "quant.method: invalid value 'awq' (valid: 'gptq', 'rtn')");
    EXPECT_ERR(HEAD "calib:\n  sampling: rand\n", ":4:13: ",
               "calib.sampling: invalid value 'rand' (valid: 'random', 'consecutive', 'file')");
    /* duplicates */
    EXPECT_ERR("model: /m\nmodel: /m\nrun_dir: /r\n", ":2:1: ", "duplicate key 'model'");
    EXPECT_ERR(HEAD "quant:\n  bits: [4]\nquant:\n  sym: true\n", ":5:1: ", "duplicate key 'quant'");
    EXPECT_ERR(HEAD "quant:\n  bits: [4]\n  bits: [3]\n", ":5:3: ", "duplicate key 'quant.bits'");
    /* malformed YAML */
    EXPECT_ERR("model: /m\nrun_dir: /r\nquant:\n  bits: [2, 3\n", ":5:1: ", "invalid YAML: ");
    EXPECT_ERR("model: /m\nrun_dir: [unclosed\n", ":2:10: ", "run_dir: expected a path, got a sequence");
    EXPECT_ERR("model: \"/m\nrun_dir: /r\n", ":3:1: ", "invalid YAML: ");
    EXPECT_ERR("model: /m\n  run_dir: x\n", ":2:10: ", "invalid YAML: ");
    /* empty / not a mapping */
    EXPECT_ERR("", ": ", "empty config");
    EXPECT_ERR("# only a comment\n", ": ", "empty config");
    EXPECT_ERR("- a\n- b\n", ":1:1: ", "top level must be a mapping");
    EXPECT_ERR("just text\n", ":1:1: ", "top level must be a mapping");
    EXPECT_ERR(HEAD "---\nmodel: /x\n", ":3:1: ", "multiple YAML documents are not allowed");
    /* anchors and aliases, refused at once */
    EXPECT_ERR("model: /m\nrun_dir: &r /r\neval:\n  tokens: *r\n", ":2:10: ",
               "YAML anchors and aliases are not allowed (key 'run_dir')");
    EXPECT_ERR(HEAD "eval:\n  tokens: *r\n", ":4:11: ",
               "YAML anchors and aliases are not allowed (key 'eval.tokens')");
    EXPECT_ERR(HEAD "quant: &q\n  bits: [4]\n", ":3:8: ",
               "YAML anchors and aliases are not allowed (key 'quant')");
    EXPECT_ERR(HEAD "quant:\n  bits: [&b 4]\n", ":4:10: ",
               "YAML anchors and aliases are not allowed (key 'quant.bits')");
    EXPECT_ERR(HEAD "threads: !!int 3\n", ":3:10: ", "YAML tags are not allowed (key 'threads')");
    /* list bomb: 17 values, and deep nesting */
    EXPECT_ERR(HEAD "quant:\n  bits: [2,3,4,5,6,7,8,2,3,4,5,6,7,8,2,3,4,5,6,7,8]\n", ":4:42: ",
               "quant.bits: more than 16 values in the list");
    EXPECT_ERR(HEAD "quant:\n  bits: [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[4]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]\n",
               ":4:10: ", "quant.bits: expected a list of integers");
    EXPECT_ERR(HEAD "quant:\n  bits:\n    x: 1\n", ":5:5: ", "quant.bits: expected a list of integers, got a mapping");
    EXPECT_ERR(HEAD "quant:\n  x:\n    y: 1\n", ":4:3: ", "unknown key 'quant.x'");
    EXPECT_ERR(HEAD "[a]: 1\n", ":3:1: ", "keys must be scalars");
    EXPECT_ERR(HEAD "quant.bits: [4]\n", ":3:1: ", "key 'quant.bits' contains '.'");
    EXPECT_ERR(HEAD "quant:\n  bits.x: [4]\n", ":4:3: ", "key 'quant.bits.x' contains '.'");
    EXPECT_ERR(HEAD "quant:\n  block_size: 010\n", ":4:15: ",
               "quant.block_size: expected an integer, got '010'");
    EXPECT_ERR(HEAD "quant:\n  bits: [4]\n  sym: \"true\"\n", ":5:8: ",
               "quant.sym: expected true or false, got 'true'");
    EXPECT_ERR(HEAD "calib:\n  tokens: \xff\xfe\n", ":4:", "invalid YAML");
    EXPECT_ERR(HEAD "search:\n  target_bpw: 1e400\n", ":4:15: ", "search.target_bpw: 1e400 is out of range");
    EXPECT_ERR(HEAD "quant:\n\tbits: [4]\n", ":4:", "invalid YAML");
    /* required and cross-field */
    EXPECT_ERR("run_dir: /r\n", ": ", "missing required key 'model'");
    EXPECT_ERR("model: /m\n", ": ", "missing required key 'run_dir'");
    EXPECT_ERR("model: \"\"\nrun_dir: /r\n", ": ", "missing required key 'model'");
    EXPECT_ERR("model:\nrun_dir: /r\n", ":1:7: ", "model: no value given");
    EXPECT_ERR(HEAD "calib:\n  sampling: file\n", ": ",
               "calib.offsets_file is required when calib.sampling is file");
    EXPECT_ERR(HEAD "search:\n  target_bpw: 3.25\n  max_bytes: 70GB\n", ": ",
               "search.target_bpw and search.max_bytes are both set");
    EXPECT_ERR(HEAD "quant:\n  damp: 0.5\n  damp_max: 0.1\n", ": ", "quant.damp_max");
    EXPECT_ERR(HEAD "search:\n  tie_fused: false\n", ": ",
               "search.tie_fused: false needs output.gptq_export: false");

    /* a file that cannot be opened */
    qs_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    qs_err err = {0};
    CHECK(qs_config_load(&cfg, "nope.yaml", NULL, 0, &err) == QS_ERR_INPUT &&
              strcmp(err.msg, "nope.yaml: cannot open: No such file or directory") == 0,
          "cannot open: %s", err.msg);
    qs_config_free(&cfg);
}

static void test_relative_file_path(void) {
    /* the config named by a relative path: paths resolve against its directory */
    char cwd[512];
    CHECK(getcwd(cwd, sizeof(cwd)) != NULL, "getcwd");
    write_yaml("sub.yaml", "model: m\nrun_dir: ../r\n");
    CHECK(chdir("/") == 0, "chdir");
    char rel[600], want[700];
    snprintf(rel, sizeof(rel), "%s/sub.yaml", g_dir + 1); /* drop the leading '/' */
    qs_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    qs_err err = {0};
    CHECK(qs_config_load(&cfg, rel, NULL, 0, &err) == QS_OK, "relative: %s", err.msg);
    snprintf(want, sizeof(want), "%s/m", g_dir);
    CHECK(cfg.model && strcmp(cfg.model, want) == 0, "model: %s want %s", cfg.model, want);
    snprintf(want, sizeof(want), "%s", g_dir);
    *strrchr(want, '/') = '\0';
    strcat(want, "/r"); /* leading ".." pops the (symlink-free) config directory */
    CHECK(cfg.run_dir && strcmp(cfg.run_dir, want) == 0, "run_dir: %s", cfg.run_dir);
    CHECK(strcmp(cfg.source_path, rel) == 0, "source_path");
    qs_config_free(&cfg);
    CHECK(chdir(cwd) == 0, "chdir back");
}

static void test_docs(const char *docs_path) {
    FILE *f = fopen(docs_path, "rb");
    CHECK(f != NULL, "cannot open %s", docs_path);
    if (!f) return;
    char *text = malloc(1 << 20);
    size_t n = fread(text, 1, (1 << 20) - 1, f);
    text[n] = '\0';
    fclose(f);
    CHECK(qs_config_nkeys() > 30, "schema size %d", qs_config_nkeys());
    for (int i = 0; i < qs_config_nkeys(); ++i) {
        char pat[128];
        snprintf(pat, sizeof(pat), "`%s`", qs_config_key_name(i));
        CHECK(strstr(text, pat) != NULL, "docs/config.md lacks %s", pat);
    }
    CHECK(qs_config_key_name(qs_config_nkeys()) == NULL, "key_name out of range");
    free(text);
}

static void test_shipped_configs(const char *docs_path) {
    /* the shipped configs (configs/ next to docs/) load; demo: exact values */
    char root[600];
    snprintf(root, sizeof(root), "%s", docs_path);
    char *s = strrchr(root, '/');
    if (s) *s = '\0';
    s = strrchr(root, '/');
    if (s) *s = '\0';
    static const char *names[] = {"demo.yaml", "llama-70b.yaml", "sweep-base.yaml"};
    for (int i = 0; i < 3; ++i) {
        char p[700];
        snprintf(p, sizeof(p), "%s/configs/%s", root, names[i]);
        qs_config cfg;
        memset(&cfg, 0, sizeof(cfg));
        qs_err err = {0};
        const char *sets[] = {"model=/m", "run_dir=/r"};
        /* sweep-base leaves model/run_dir to --set */
        CHECK(qs_config_load(&cfg, p, sets, i == 2 ? 2 : 0, &err) == QS_OK, "%s: %s", names[i],
              err.msg);
        if (i == 0 && err.code == QS_OK) {
            CHECK(cfg.calib.nsamples == 32 && cfg.calib.seqlen == 128 &&
                      cfg.calib.chunk_samples == 8,
                  "demo calib");
            CHECK(cfg.quant.nbits == 4 && cfg.quant.ngroup_size == 2, "demo quant");
            CHECK(cfg.search.target_bpw == 3.25 && cfg.eval.max_windows == 16, "demo search");
            CHECK(strstr(cfg.model, "/demo-run/model") != NULL, "demo model: %s", cfg.model);
        }
        qs_config_free(&cfg);
    }
}

/* threads: explicit wins; 0 reads SLURM_CPUS_PER_TASK, else OMP_NUM_THREADS (first entry of
 * a list), else 1; a bad variable is an input error naming it. */
static void test_threads(void) {
    struct {
        int threads;
        const char *slurm, *omp;
        qs_status st;
        int want;
        const char *from;
    } cases[] = {
        {0, NULL, NULL, QS_OK, 1, "default"},
        {0, "", "", QS_OK, 1, "default"},
        {0, "8", NULL, QS_OK, 8, "SLURM_CPUS_PER_TASK"},
        {0, "8", "3", QS_OK, 8, "SLURM_CPUS_PER_TASK"},
        {0, NULL, "3", QS_OK, 3, "OMP_NUM_THREADS"},
        {0, "", "4,2", QS_OK, 4, "OMP_NUM_THREADS"},
        {2, "8", "3", QS_OK, 2, "threads"},
        {5, NULL, NULL, QS_OK, 5, "threads"},
        {0, "x", "3", QS_ERR_INPUT, 1, "SLURM_CPUS_PER_TASK"},
        {0, "0", NULL, QS_ERR_INPUT, 1, "SLURM_CPUS_PER_TASK"},
        {0, NULL, "-2", QS_ERR_INPUT, 1, "OMP_NUM_THREADS"},
        {0, NULL, "5000", QS_ERR_INPUT, 1, "OMP_NUM_THREADS"},
        {0, NULL, "2x", QS_ERR_INPUT, 1, "OMP_NUM_THREADS"},
        {3, "x", "y", QS_OK, 3, "threads"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); ++i) {
        qs_err err = {0};
        int n = -1;
        const char *from = NULL;
        qs_status st = qs_config_threads(cases[i].threads, cases[i].slurm, cases[i].omp, &n,
                                         &from, &err);
        CHECK(st == cases[i].st, "case %zu: status %d", i, (int)st);
        CHECK(from && strcmp(from, cases[i].from) == 0, "case %zu: from %s", i,
              from ? from : "(null)");
        if (st == QS_OK) CHECK(n == cases[i].want, "case %zu: %d threads", i, n);
        else
            CHECK(strstr(err.msg, cases[i].from) == err.msg &&
                      strstr(err.msg, "expected a thread count in 1..4096"),
                  "case %zu: message %s", i, err.msg);
    }
    qs_err err = {0};
    int n = 0;
    const char *from = NULL;
    qs_config_threads(0, "abc", NULL, &n, &from, &err);
    CHECK(strcmp(err.msg, "SLURM_CPUS_PER_TASK: expected a thread count in 1..4096 (threads: "
                          "0 reads it), got 'abc'") == 0,
          "message: %s", err.msg);
}

int main(int argc, char **argv) {
    qs_test_tmpdir(g_dir, sizeof(g_dir), "config");

    test_defaults();
    test_full_file();
    test_roundtrip_strings();
    test_defaults_roundtrip();
    test_empty_section();
    test_set();
    test_set_errors();
    test_file_errors();
    test_relative_file_path();
    test_threads();
    if (argc > 1) {
        test_docs(argv[1]);
        test_shipped_configs(argv[1]);
    } else {
        CHECK(argc > 1, "pass docs/config.md as the first argument");
    }

    qs_test_rm_rf(g_dir);
    return qs_test_finish("test_config");
}
