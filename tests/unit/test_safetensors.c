/* test_safetensors.c: the safetensors reader on hand-made files (valid forms and edge
 * cases), a sparse file whose second tensor starts beyond 4 GiB, and checkpoints (symlinked
 * shards, single file preferred over an index). The f16/bf16 conversions: test_half.c. */
#include <fcntl.h>
#include <ftw.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "half.h"
#include "safetensors.h"
#include "synth.h"

static char g_tmp[512];

/* ---- hand-made files ---- */

/* Writes 8-byte prefix (hlen = strlen(header) unless prefix >= 0), header, data. */
static void write_st(const char *path, const char *header, const void *data, size_t dlen,
                     long long prefix) {
    FILE *f = fopen(path, "wb");
    uint64_t n = prefix >= 0 ? (uint64_t)prefix : strlen(header);
    unsigned char p[8];
    for (int i = 0; i < 8; ++i) p[i] = (unsigned char)(n >> (8 * i));
    fwrite(p, 1, 8, f);
    fwrite(header, 1, strlen(header), f);
    if (dlen) fwrite(data, 1, dlen, f);
    fclose(f);
}

static qs_status open_text(const char *header, const void *data, size_t dlen, qs_err *err,
                           qs_st_file *f) {
    char path[600];
    snprintf(path, sizeof(path), "%s/t.safetensors", g_tmp);
    write_st(path, header, data, dlen, -1);
    qs_err_clear(err);
    return qs_st_open(f, path, err);
}

static void expect_bad(const char *header, size_t dlen, const char *word) {
    static unsigned char zeros[4096];
    qs_err err = {0};
    qs_st_file f;
    qs_status st = open_text(header, zeros, dlen, &err, &f);
    CHECK(st == QS_ERR_INPUT && strstr(err.msg, word) && strstr(err.msg, "t.safetensors"),
          "header %s: status %d msg '%s' (want '%s')", header, (int)st, err.msg, word);
    CHECK(f.map == NULL && f.tensors == NULL, "not closed on failure");
    qs_st_close(&f);
}

static void test_valid_files(void) {
    /* F32 (2,2), F16 (3,), BF16 (2,), I32 (1,), an empty (0, 4) tensor, metadata, spaces */
    unsigned char data[16 + 6 + 4 + 4];
    float f32[4] = {1.5f, -2.0f, 0.25f, 3.0e-39f}; /* includes an f32 subnormal */
    for (int i = 0; i < 4; ++i) {
        uint32_t u = qs_f32_bits(f32[i]);
        for (int b = 0; b < 4; ++b) data[4 * i + b] = (unsigned char)(u >> (8 * b));
    }
    uint16_t h16[3] = {0x3c00, 0x0001, 0xfc00}; /* 1, smallest subnormal, -inf */
    for (int i = 0; i < 3; ++i) {
        data[16 + 2 * i] = (unsigned char)h16[i];
        data[17 + 2 * i] = (unsigned char)(h16[i] >> 8);
    }
    uint16_t b16[2] = {0x4049, 0x7fc0}; /* 3.140625, nan */
    for (int i = 0; i < 2; ++i) {
        data[22 + 2 * i] = (unsigned char)b16[i];
        data[23 + 2 * i] = (unsigned char)(b16[i] >> 8);
    }
    data[26] = 7, data[27] = 0, data[28] = 0, data[29] = 0;
    const char *hdr =
        "{\"__metadata__\":{\"format\":\"pt\",\"note\":\"x\"},"
        "\"i\":{\"dtype\":\"I32\",\"shape\":[1],\"data_offsets\":[26,30]},"
        "\"w\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]},"
        "\"e\":{\"dtype\":\"F32\",\"shape\":[0,4],\"data_offsets\":[16,16]},"
        "\"h\":{\"dtype\":\"F16\",\"shape\":[3],\"data_offsets\":[16,22]},"
        "\"b\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[22,26]}}      ";
    qs_err err = {0};
    qs_st_file f;
    qs_status st = open_text(hdr, data, sizeof(data), &err, &f);
    CHECK(st == QS_OK, "valid file: %s", err.msg);
    if (st != QS_OK) return;
    CHECK(f.ntensors == 5 && f.nmeta == 2, "counts %lld %lld", (long long)f.ntensors,
          (long long)f.nmeta);
    CHECK(strcmp(f.tensors[0].name, "w") == 0 && strcmp(f.tensors[4].name, "i") == 0,
          "sorted by offset");
    uint64_t base = 8 + strlen(hdr);
    const qs_st_tensor *w = qs_st_find(&f, "w"), *h = qs_st_find(&f, "h"),
                       *b = qs_st_find(&f, "b"), *i = qs_st_find(&f, "i"),
                       *e = qs_st_find(&f, "e");
    CHECK(w && h && b && i && e && !qs_st_find(&f, "zz") && !qs_st_find(&f, "__metadata__"),
          "find");
    if (!(w && h && b && i && e)) goto out;
    CHECK(w->offset == base && w->nbytes == 16 && w->ndim == 2 && qs_st_numel(w) == 4, "w");
    CHECK(e->nbytes == 0 && qs_st_numel(e) == 0, "empty tensor");
    float out[4];
    CHECK(qs_st_read_f32(w, 0, 4, out, &err) == QS_OK && memcmp(out, f32, 16) == 0, "f32 read");
    CHECK(qs_st_read_f32(w, 2, 2, out, &err) == QS_OK && out[0] == 0.25f, "f32 range");
    CHECK(qs_st_read_f32(h, 0, 3, out, &err) == QS_OK && out[0] == 1.0f &&
              out[1] == ldexpf(1.0f, -24) && isinf(out[2]) && out[2] < 0,
          "f16 read");
    CHECK(qs_st_read_f32(b, 0, 2, out, &err) == QS_OK && out[0] == 3.140625f && isnan(out[1]),
          "bf16 read");
    qs_err_clear(&err);
    CHECK(qs_st_read_f32(i, 0, 1, out, &err) == QS_ERR_INPUT, "i32 read refused");
    qs_err_clear(&err);
    CHECK(qs_st_read_f32(w, 3, 2, out, &err) == QS_ERR_INTERNAL, "range check");
    CHECK(i->data[0] == 7, "i32 raw data");
out:
    qs_st_close(&f);
    qs_st_close(&f); /* idempotent */

    /* an empty header object with no data is a valid (empty) file */
    st = open_text("{}", NULL, 0, &err, &f);
    CHECK(st == QS_OK && f.ntensors == 0, "empty object: %s", err.msg);
    qs_st_close(&f);
}

static void test_bad_headers(void) {
    const char *T = "\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}";
    char h[512];
    snprintf(h, sizeof(h), "{%s,%s}", T, T);
    expect_bad(h, 16, "duplicate tensor name");
    expect_bad("{\"t\":{\"dtype\":\"F32\",\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[0,8]}}",
               8, "duplicate key");
    expect_bad("{\"__metadata__\":{},\"__metadata__\":{}}", 0, "duplicate");
    expect_bad("{\"__metadata__\":{\"a\":1}}", 0, "not a string");
    expect_bad("{\"t\":{\"dtype\":\"F32\",\"shape\":[2]}}", 8, "data_offsets");
    expect_bad("{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", 8, "end before");
    expect_bad("{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0]}}", 8, "two numbers");
    expect_bad("{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,\"8\"]}}", 8,
               "non-negative");
    expect_bad("{\"t\":{\"dtype\":\"F32\",\"shape\":[2.5],\"data_offsets\":[0,8]}}", 8,
               "shape entry 0");
    expect_bad("{\"t\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}",
               4, "dimensions");
    expect_bad("{\"t\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,16],"
               "\"data_offsets\":[0,8]}}",
               8, "overflow");
    expect_bad("{\"t\":{\"dtype\":\"BOOL\",\"shape\":[2],\"data_offsets\":[0,2]}}", 2, "BOOL");
    expect_bad("{\"t\":{\"dtype\":\"I8\",\"shape\":[2],\"data_offsets\":[0,2]}}", 2, "unsupported");
    expect_bad("{\"t\":{\"dtype\":3,\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "not a string");
    expect_bad("{\"t\":[1]}", 0, "not a JSON object");
    expect_bad(" {}", 0, "not a JSON object");
    expect_bad("{} x", 0, "trailing characters");
    expect_bad("{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 4, "truncated");
    expect_bad("{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,9007199254740994]}}", 8,
               "2^53");

    /* header length prefix vs file */
    char path[600];
    qs_err err = {0};
    qs_st_file f;
    snprintf(path, sizeof(path), "%s/p.safetensors", g_tmp);
    write_st(path, "{}", NULL, 0, 3);
    CHECK(qs_st_open(&f, path, &err) == QS_ERR_INPUT && strstr(err.msg, "file size"), "%s",
          err.msg);
    qs_err_clear(&err);
    write_st(path, "{}", NULL, 0, 100000001);
    CHECK(qs_st_open(&f, path, &err) == QS_ERR_INPUT && strstr(err.msg, "limit"), "%s", err.msg);
    qs_err_clear(&err);
    snprintf(path, sizeof(path), "%s/nope.safetensors", g_tmp);
    CHECK(qs_st_open(&f, path, &err) == QS_ERR_INPUT && strstr(err.msg, "nope.safetensors"),
          "%s", err.msg);
    qs_err_clear(&err);
    CHECK(qs_st_open(&f, g_tmp, &err) == QS_ERR_INPUT && strstr(err.msg, "regular"), "%s",
          err.msg);
}

/* A sparse file: a 4.5 GiB F32 tensor, then a small one whose data begins beyond 4 GiB.
 * Only the header and the last page are written; no data page of the big tensor is read. */
static void test_sparse_big(void) {
    char path[600];
    snprintf(path, sizeof(path), "%s/big.safetensors", g_tmp);
    const uint64_t big_n = 1207959552ull; /* 4.5 GiB / 4 */
    const uint64_t big_b = big_n * 4;
    char hdr[256];
    snprintf(hdr, sizeof(hdr),
             "{\"a_big\":{\"dtype\":\"F32\",\"shape\":[%llu],\"data_offsets\":[0,%llu]},"
             "\"b_small\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[%llu,%llu]}}",
             (unsigned long long)big_n, (unsigned long long)big_b, (unsigned long long)big_b,
             (unsigned long long)(big_b + 8));
    write_st(path, hdr, NULL, 0, -1);
    uint64_t data0 = 8 + strlen(hdr);
    int fd = open(path, O_RDWR);
    int ok = fd >= 0 && ftruncate(fd, (off_t)(data0 + big_b + 8)) == 0;
    float small[2] = {42.0f, -0.5f};
    unsigned char sb[8];
    for (int i = 0; i < 2; ++i)
        for (int b = 0; b < 4; ++b)
            sb[4 * i + b] = (unsigned char)(qs_f32_bits(small[i]) >> (8 * b));
    ok = ok && pwrite(fd, sb, 8, (off_t)(data0 + big_b)) == 8;
    if (fd >= 0) close(fd);
    CHECK(ok, "cannot build the sparse file");
    if (!ok) return;
    qs_err err = {0};
    qs_st_file f;
    qs_status st = qs_st_open(&f, path, &err);
    CHECK(st == QS_OK, "sparse open: %s", err.msg);
    if (st == QS_OK) {
        const qs_st_tensor *a = qs_st_find(&f, "a_big"), *b = qs_st_find(&f, "b_small");
        CHECK(a && a->nbytes == big_b && a->offset == data0 && qs_st_numel(a) == (int64_t)big_n,
              "big tensor");
        CHECK(b && b->offset == data0 + big_b && b->offset > (1ull << 32) && b->nbytes == 8,
              "small tensor beyond 4 GiB at %llu", b ? (unsigned long long)b->offset : 0ull);
        CHECK(f.size == data0 + big_b + 8, "size");
        float out[2] = {0, 0};
        CHECK(b && qs_st_read_f32(b, 0, 2, out, &err) == QS_OK && out[0] == 42.0f &&
                  out[1] == -0.5f,
              "small tensor values");
        /* the last elements of the big tensor (a hole: zeros) */
        CHECK(a && qs_st_read_f32(a, (int64_t)big_n - 2, 2, out, &err) == QS_OK &&
                  out[0] == 0.0f,
              "big tensor tail");
    }
    qs_st_close(&f);
    unlink(path);
}

static void test_checkpoints(void) {
    qs_synth_opts o;
    qs_err err = {0};
    char dir[600], link_dir[600], src[800], dst[800];
    qs_synth_opts_default(&o);
    o.layers = 2, o.hidden = 32, o.heads = 2, o.vocab = 32, o.shards = 4;
    snprintf(dir, sizeof(dir), "%s/ck", g_tmp);
    CHECK(qs_synth_write(&o, dir, &err) == QS_OK, "%s", err.msg);
    qs_checkpoint ck;
    CHECK(qs_ckpt_open(&ck, dir, &err) == QS_OK, "%s", err.msg);
    CHECK(ck.nshards == 4 && ck.index_path != NULL, "4 shards");
    const qs_st_tensor *t = qs_ckpt_find(&ck, "model.norm.weight");
    const char *file = qs_ckpt_file_of(&ck, "model.norm.weight");
    CHECK(t && file && strstr(file, "model-0000"), "find across shards");
    CHECK(!qs_ckpt_find(&ck, "nope") && !qs_ckpt_file_of(&ck, "nope"), "absent");
    int64_t n = 0;
    for (int s = 0; s < ck.nshards; ++s) n += ck.shards[s].ntensors;
    CHECK(n == ck.nentries && n == 2 * 9 + 3, "entries %lld", (long long)n);
    qs_ckpt_close(&ck);
    qs_ckpt_close(&ck);

    /* a directory of symlinks (as in the Hugging Face cache) */
    snprintf(link_dir, sizeof(link_dir), "%s/links", g_tmp);
    mkdir(link_dir, 0755);
    const char *names[] = {"model-00001-of-00004.safetensors", "model-00002-of-00004.safetensors",
                           "model-00003-of-00004.safetensors", "model-00004-of-00004.safetensors",
                           "model.safetensors.index.json", "config.json"};
    for (int i = 0; i < 6; ++i) {
        snprintf(src, sizeof(src), "%s/%s", dir, names[i]);
        snprintf(dst, sizeof(dst), "%s/%s", link_dir, names[i]);
        CHECK(symlink(src, dst) == 0, "symlink %s", dst);
    }
    CHECK(qs_ckpt_open(&ck, link_dir, &err) == QS_OK && ck.nshards == 4, "symlinks: %s",
          err.msg);
    qs_ckpt_close(&ck);

    /* model.safetensors wins over an index (as in transformers) */
    o.shards = 1;
    snprintf(src, sizeof(src), "%s/one", g_tmp);
    CHECK(qs_synth_write(&o, src, &err) == QS_OK, "%s", err.msg);
    snprintf(dst, sizeof(dst), "%s/model.safetensors", link_dir);
    snprintf(src, sizeof(src), "%s/one/model.safetensors", g_tmp);
    CHECK(symlink(src, dst) == 0, "symlink");
    CHECK(qs_ckpt_open(&ck, link_dir, &err) == QS_OK && ck.nshards == 1 && !ck.index_path,
          "single file preferred: %s", err.msg);
    qs_ckpt_close(&ck);

    /* a dangling symlink is a clear error naming the shard */
    snprintf(dst, sizeof(dst), "%s/model-00002-of-00004.safetensors", link_dir);
    unlink(dst);
    CHECK(symlink("/nonexistent/qs-shard", dst) == 0, "symlink");
    snprintf(dst, sizeof(dst), "%s/model.safetensors", link_dir);
    unlink(dst);
    qs_err_clear(&err);
    CHECK(qs_ckpt_open(&ck, link_dir, &err) == QS_ERR_INPUT &&
              strstr(err.msg, "model-00002-of-00004.safetensors"),
          "dangling: %s", err.msg);
    CHECK(ck.shards == NULL && ck.dir == NULL, "closed on failure");
    qs_err_clear(&err);
    CHECK(qs_ckpt_open(&ck, "/nonexistent/qs-model", &err) == QS_ERR_INPUT &&
              strstr(err.msg, "/nonexistent/qs-model"),
          "%s", err.msg);
}

int main(void) {
    qs_test_tmpdir(g_tmp, sizeof(g_tmp), "st");
    test_valid_files();
    test_bad_headers();
    test_sparse_big();
    test_checkpoints();
    qs_test_rm_rf(g_tmp);
    return qs_test_finish("test_safetensors");
}
