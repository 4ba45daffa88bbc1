/* test_gguf_read.c: qshard's GGUF reader (pipeline/export/gguf_read.c) on files written by
 * the GGUF writer (gguf_file.c): a llama-architecture file with attn_q / attn_k weights and
 * biases permuted per head by qs_gguf_permute_rows, F32 / F16 / BF16 / Q8_0 / Q4_K tensors,
 * alignment 32 and 64, extra metadata of every kind before the keys the reader needs:
 *   - tensor names, types, shapes, offsets as the writer's layout;
 *   - values: F32 exact, F16/BF16 widened exactly, blocks equal to qs_gguf_dequantize_rows,
 *     llama q/k rows back in Hugging Face order (the inverse of the writer's permutation),
 *     a qwen2 file not un-permuted;
 *   - bad input: every truncation of the file, a wrong magic or version, an unknown tensor
 *     type, a tensor whose data runs past the end, a misaligned offset and an element count
 *     mismatch are one QS_ERR_INPUT naming the file, never a crash.
 * Fails via exit code.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "gguf_file.h"
#include "gguf_model.h"
#include "gguf_quant.h"
#include "gguf_read.h"
#include "half.h"

static char g_dir[256];

#define HEADS 4
#define KV 2
#define HD 8           /* rows per head */
#define NIN 256        /* row length (one Q4_K super-block) */

typedef struct tspec {
    const char *name;
    qs_gguf_type type;
    int ndim;
    int64_t rows, cols; /* ndim 1: (cols,) */
} tspec;

static const tspec SPECS[] = {
    {"token_embd.weight", QS_GGUF_BF16, 2, 16, NIN},
    {"blk.0.attn_norm.weight", QS_GGUF_F32, 1, 1, NIN},
    {"blk.0.attn_q.weight", QS_GGUF_Q4_K, 2, HEADS * HD, NIN},
    {"blk.0.attn_q.bias", QS_GGUF_F32, 1, 1, HEADS * HD},
    {"blk.0.attn_k.weight", QS_GGUF_Q8_0, 2, KV * HD, NIN},
    {"blk.0.attn_k.bias", QS_GGUF_F32, 1, 1, KV * HD},
    {"blk.0.attn_v.weight", QS_GGUF_F16, 2, KV * HD, NIN},
};
#define NT ((int)(sizeof(SPECS) / sizeof(SPECS[0])))

/* Deterministic weights of tensor i in Hugging Face row order: (rows, cols). */
static void weights(int i, float *w, int64_t n) {
    uint64_t s = 1234 + (uint64_t)i;
    for (int64_t j = 0; j < n; ++j) w[j] = qs_test_nrand(&s) * 0.1f;
}

/* Writes the file; want[i] gets tensor i as the reader must return it (HF order). */
static void write_file(const char *path, const char *arch, uint32_t align, float **want) {
    qs_err e = {0};
    qs_gguf_meta *m = NULL;
    qs_gguf_layout *L = NULL;
    qs_gguf_file *f = NULL;
    qs_gguf_tensor_decl d[NT];
    char key[96];
    CHECK(qs_gguf_meta_new(&m, &e) == QS_OK, "%s", e.msg);
    /* keys of every kind before the ones the reader uses */
    const char *strs[3] = {"a", "bc", "def"};
    const float fl[3] = {1.f, 2.f, 3.f};
    qs_gguf_meta_set_str_array(m, "tokenizer.ggml.tokens", strs, NULL, 3, &e);
    qs_gguf_meta_set_array(m, "tokenizer.ggml.scores", QS_GGUF_V_FLOAT32, fl, 3, &e);
    qs_gguf_meta_set_u64(m, "x.u64", 7, &e);
    qs_gguf_meta_set_bool(m, "x.bool", 1, &e);
    qs_gguf_meta_set_str(m, "general.architecture", arch, &e);
    snprintf(key, sizeof(key), "%s.attention.head_count", arch);
    qs_gguf_meta_set_u32(m, key, HEADS, &e);
    snprintf(key, sizeof(key), "%s.attention.head_count_kv", arch);
    qs_gguf_meta_set_u32(m, key, KV, &e);
    if (align != 32) qs_gguf_meta_set_u32(m, "general.alignment", align, &e);
    for (int i = 0; i < NT; ++i) {
        d[i].name = SPECS[i].name;
        d[i].type = SPECS[i].type;
        d[i].ndim = SPECS[i].ndim;
        d[i].shape[0] = SPECS[i].ndim == 1 ? SPECS[i].cols : SPECS[i].rows;
        d[i].shape[1] = SPECS[i].cols;
    }
    CHECK(qs_gguf_layout_compute(m, d, NT, &L, &e) == QS_OK, "layout: %s", e.msg);
    CHECK(qs_gguf_file_create(&f, path, 1, L, &e) == QS_OK, "create: %s", e.msg);
    const int llama = strcmp(arch, "llama") == 0;
    for (int i = 0; i < NT && f; ++i) {
        const tspec *t = &SPECS[i];
        const int64_t n = t->rows * t->cols;
        float *w = malloc(sizeof(float) * (size_t)n);
        unsigned char *b = malloc((size_t)L->nbytes[i]), *pb = malloc((size_t)L->nbytes[i]);
        weights(i, w, n);
        want[i] = malloc(sizeof(float) * (size_t)n);
        if (qs_gguf_quant_supported(t->type)) {
            CHECK(qs_gguf_quantize_rows(t->type, w, t->rows, t->cols, NULL, b, &e) == QS_OK,
                  "%s", e.msg);
            qs_gguf_dequantize_rows(t->type, b, t->rows, t->cols, want[i], &e);
        } else {
            qs_gguf_encode_float(t->type, w, n, b, &e);
            for (int64_t j = 0; j < n; ++j) {
                uint16_t h;
                memcpy(&h, (unsigned char *)b + 2 * j, 2);
                want[i][j] = t->type == QS_GGUF_F32  ? w[j]
                             : t->type == QS_GGUF_F16 ? qs_f16_to_f32(h)
                                                      : qs_bf16_to_f32(h);
            }
        }
        /* llama: q/k rows (weights: rows of blocks; biases: single values) permuted */
        const int q = strstr(t->name, ".attn_q.") != NULL, k = strstr(t->name, ".attn_k.") != NULL;
        if (llama && (q || k)) {
            const int64_t nrow = t->ndim == 1 ? t->cols : t->rows;
            const size_t rb = (size_t)L->nbytes[i] / (size_t)nrow;
            qs_gguf_permute_rows(b, pb, nrow, rb, nrow / (q ? HEADS : KV));
            memcpy(b, pb, (size_t)L->nbytes[i]);
        }
        CHECK(qs_gguf_file_write(f, i, 0, b, (size_t)L->nbytes[i], &e) == QS_OK, "%s", e.msg);
        free(w);
        free(b);
        free(pb);
    }
    CHECK(f && qs_gguf_file_commit(f, 1, &e) == QS_OK, "commit: %s", e.msg);
    qs_gguf_file_close(f);
    qs_gguf_layout_free(L);
    qs_gguf_meta_free(m);
}

static void check_file(const char *path, float *const *want) {
    qs_gguf_reader r;
    qs_err e = {0};
    CHECK(qs_gguf_reader_open(&r, path, &e) == QS_OK, "open %s: %s", path, e.msg);
    CHECK(r.ntensors == NT, "%lld tensors", (long long)r.ntensors);
    CHECK(r.head_count == HEADS && r.head_count_kv == KV, "heads %lld %lld",
          (long long)r.head_count, (long long)r.head_count_kv);
    for (int i = 0; i < NT && i < r.ntensors; ++i) {
        const tspec *t = &SPECS[i];
        const qs_gguf_rtensor *g = &r.t[i];
        const int64_t n = t->rows * t->cols;
        CHECK(strcmp(g->name, t->name) == 0 && g->type == t->type && g->ndim == t->ndim &&
                  g->shape[g->ndim - 1] == t->cols && g->rows == (t->ndim == 1 ? 1 : t->rows),
              "tensor %d: %s type %d", i, g->name, (int)g->type);
        CHECK(g->offset % r.alignment == 0, "%s: offset %llu", g->name,
              (unsigned long long)g->offset);
        float *got = malloc(sizeof(float) * (size_t)n);
        CHECK(qs_gguf_reader_f32(&r, i, got, n, &e) == QS_OK, "%s: %s", t->name, e.msg);
        CHECK(memcmp(got, want[i], sizeof(float) * (size_t)n) == 0, "%s: values differ", t->name);
        qs_err e2 = {0};
        CHECK(qs_gguf_reader_f32(&r, i, got, n - 1, &e2) == QS_ERR_INPUT &&
                  strstr(e2.msg, t->name),
              "count mismatch: %s", e2.msg);
        free(got);
    }
    CHECK(qs_gguf_reader_find(&r, "blk.0.attn_k.weight") == 4 &&
              qs_gguf_reader_find(&r, "output.weight") == -1,
          "find");
    qs_gguf_reader_close(&r);
}

/* Every truncation and a few corruptions: QS_ERR_INPUT naming the file, no crash. */
static void check_bad(const char *path) {
    size_t n = 0;
    unsigned char *b = qs_test_read_file(path, &n);
    char bad[300];
    snprintf(bad, sizeof(bad), "%s/bad.gguf", g_dir);
    CHECK(b != NULL && n > 64, "read %s", path);
    if (!b) return;
    int nbad = 0;
    qs_gguf_reader r;
    for (size_t len = 0; len < n; len += (len < 2048 ? 1 : 509)) {
        qs_err e = {0};
        qs_test_write_file(bad, b, len);
        qs_status st = qs_gguf_reader_open(&r, bad, &e);
        nbad += st == QS_ERR_INPUT && strstr(e.msg, "bad.gguf") != NULL;
        if (st == QS_OK) qs_gguf_reader_close(&r);
        CHECK(st != QS_OK, "truncated at %zu accepted", len);
    }
    CHECK(nbad > 0, "truncations refused");
    /* corruptions at known places: magic, version, a tensor type, a data offset */
    struct {
        size_t at;
        unsigned char v;
        const char *needle;
    } cases[] = {{0, 'X', "no GGUF magic"}, {4, 2, "version 2"}};
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); ++c) {
        unsigned char *x = malloc(n);
        qs_err e = {0};
        memcpy(x, b, n);
        x[cases[c].at] = cases[c].v;
        qs_test_write_file(bad, x, n);
        CHECK(qs_gguf_reader_open(&r, bad, &e) == QS_ERR_INPUT && strstr(e.msg, cases[c].needle),
              "corruption %zu: %s", c, e.msg);
        free(x);
    }
    /* the last tensor's info: name, n_dims, dims, type (u32), offset (u64) just before the
     * padding; find it by its name */
    const char *nm = SPECS[NT - 1].name;
    size_t at = 0;
    for (size_t i = 0; i + strlen(nm) < n; ++i)
        if (memcmp(b + i, nm, strlen(nm)) == 0) at = i;
    CHECK(at > 0, "tensor info found");
    const size_t type_at = at + strlen(nm) + 4 + 2 * 8, off_at = type_at + 4;
    if (at == 0 || off_at + 8 > n) {
        free(b);
        return;
    }
    unsigned char *x = malloc(n);
    qs_err e = {0};
    memcpy(x, b, n);
    x[type_at] = 99;
    qs_test_write_file(bad, x, n);
    CHECK(qs_gguf_reader_open(&r, bad, &e) == QS_ERR_INPUT && strstr(e.msg, "bad type 99"),
          "unknown type: %s", e.msg);
    memcpy(x, b, n);
    x[off_at + 5] = 0x40; /* a huge offset */
    qs_test_write_file(bad, x, n);
    e = (qs_err){0};
    CHECK(qs_gguf_reader_open(&r, bad, &e) == QS_ERR_INPUT && strstr(e.msg, "runs past the end"),
          "offset past the end: %s", e.msg);
    memcpy(x, b, n);
    x[off_at] ^= 0x01; /* misaligned */
    qs_test_write_file(bad, x, n);
    e = (qs_err){0};
    CHECK(qs_gguf_reader_open(&r, bad, &e) == QS_ERR_INPUT && strstr(e.msg, "not aligned"),
          "misaligned offset: %s", e.msg);
    free(x);
    free(b);
}

int main(void) {
    qs_test_tmpdir(g_dir, sizeof(g_dir), "gguf_read");
    const char *arch[2] = {"llama", "qwen2"};
    for (int a = 0; a < 2; ++a)
        for (uint32_t align = 32; align <= 64; align *= 2) {
            char path[300];
            float *want[NT] = {0};
            snprintf(path, sizeof(path), "%s/%s-%u.gguf", g_dir, arch[a], (unsigned)align);
            write_file(path, arch[a], align, want);
            check_file(path, want);
            if (a == 0 && align == 32) check_bad(path);
            for (int i = 0; i < NT; ++i) free(want[i]);
        }
    qs_test_rm_rf(g_dir);
    return qs_test_finish("test_gguf_read");
}
