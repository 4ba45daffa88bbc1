/* test_gguf_file.c: the GGUF writer's layout, header bytes and positional writes
 * (pipeline/export/gguf_file.c) and the model helpers of gguf_model.c.
 *
 * A small GGUF parser written here from the format description reads the header back:
 * magic, version, counts, every key/value of every type, tensor infos (reversed dims),
 * offsets aligned and contiguous, data section start; file bytes at each offset and zero
 * padding. Two handles writing different tensors into one file (as two ranks would) give
 * the same bytes as one; a handle whose layout differs is refused. Error paths: bad keys,
 * names, shapes, block rows, alignment, writes past a tensor, incomplete commit, a full
 * disk (RLIMIT_FSIZE), close without commit -- each leaving no file behind. Encoders,
 * the q/k row permutation, tensor names and the file type. Fails via exit code.
 */
#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "gguf_file.h"
#include "gguf_model.h"
#include "half.h"


static char g_dir[256];

static int count_entries(const char *dir) {
    DIR *d = opendir(dir);
    int n = 0;
    if (!d) return -1;
    for (struct dirent *e; (e = readdir(d));)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
    closedir(d);
    return n;
}

static unsigned char *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    rewind(f);
    unsigned char *b = malloc(len > 0 ? (size_t)len : 1);
    if (b && fread(b, 1, (size_t)len, f) != (size_t)len) {
        free(b);
        b = NULL;
    }
    fclose(f);
    *n = (size_t)len;
    return b;
}

/* ---- a minimal independent GGUF reader ------------------------------------------------ */

typedef struct rd {
    const unsigned char *p;
    size_t n, pos;
    int bad;
} rd;

static uint64_t rd_le(rd *r, int k) {
    uint64_t v = 0;
    if (r->pos + (size_t)k > r->n) {
        r->bad = 1;
        return 0;
    }
    for (int i = 0; i < k; ++i) v |= (uint64_t)r->p[r->pos + i] << (8 * i);
    r->pos += (size_t)k;
    return v;
}

/* Reads a GGUF string into buf (NUL-terminated, truncated to cap); returns its length. */
static uint64_t rd_str(rd *r, char *buf, size_t cap) {
    uint64_t n = rd_le(r, 8);
    if (r->pos + n > r->n) {
        r->bad = 1;
        return 0;
    }
    size_t c = n < cap - 1 ? (size_t)n : cap - 1;
    memcpy(buf, r->p + r->pos, c);
    buf[c] = '\0';
    r->pos += (size_t)n;
    return n;
}

static int vsize(uint32_t t) {
    static const int s[] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
    return t < 13 ? s[t] : -1;
}

/* Skips one value of type t, appending a printable form to out. */
static void rd_value(rd *r, uint32_t t, char *out, size_t cap) {
    char tmp[256];
    size_t len = strlen(out);
    if (t == QS_GGUF_V_STRING) {
        uint64_t n = rd_str(r, tmp, sizeof(tmp));
        snprintf(out + len, cap - len, "s%llu:%s", (unsigned long long)n, tmp);
    } else if (t == QS_GGUF_V_ARRAY) {
        uint32_t et = (uint32_t)rd_le(r, 4);
        uint64_t n = rd_le(r, 8);
        snprintf(out + len, cap - len, "[%u*%llu:", et, (unsigned long long)n);
        for (uint64_t i = 0; i < n && !r->bad; ++i) {
            rd_value(r, et, out, cap);
            len = strlen(out);
            snprintf(out + len, cap - len, ",");
        }
        len = strlen(out);
        snprintf(out + len, cap - len, "]");
    } else if (vsize(t) > 0) {
        uint64_t v = rd_le(r, vsize(t));
        snprintf(out + len, cap - len, "%llx", (unsigned long long)v);
    } else {
        r->bad = 1;
    }
}

/* ---- tests --------------------------------------------------------------------------- */

static void test_header(void) {
    qs_err e = {0};
    qs_gguf_meta *m = NULL;
    qs_gguf_layout *L = NULL;
    CHECK(qs_gguf_meta_new(&m, &e) == QS_OK, "%s", e.msg);
    qs_gguf_meta_set_str(m, "general.architecture", "llama", &e);
    qs_gguf_meta_set_u8(m, "a.u8", 0xAB, &e);
    qs_gguf_meta_set_i16(m, "a.i16", -2, &e);
    qs_gguf_meta_set_f32(m, "a.f32", 1.0f, &e);
    qs_gguf_meta_set_f64(m, "a.f64", 2.0, &e);
    qs_gguf_meta_set_bool(m, "a.bool", 5, &e);
    qs_gguf_meta_set_u64(m, "a.u64", 0x0102030405060708ull, &e);
    const int32_t ai[] = {1, -1};
    const char *as[] = {"x", "", "yz"};
    qs_gguf_meta_set_array(m, "a.arr", QS_GGUF_V_INT32, ai, 2, &e);
    qs_gguf_meta_set_str_array(m, "a.sarr", as, NULL, 3, &e);
    qs_gguf_meta_set_u8(m, "a.u8", 0xCD, &e); /* replaced in place */
    CHECK(e.code == QS_OK, "%s", e.msg);
    CHECK(qs_gguf_meta_count(m) == 9 && qs_gguf_meta_has(m, "a.sarr") && !qs_gguf_meta_has(m, "b"),
          "count %lld", (long long)qs_gguf_meta_count(m));
    const qs_gguf_tensor_decl d[] = {
        {"w.q8", QS_GGUF_Q8_0, 2, {3, 64, 0, 0}},
        {"n.f32", QS_GGUF_F32, 1, {5, 0, 0, 0}},
        {"e.bf16", QS_GGUF_BF16, 3, {2, 3, 7, 0}},
        {"k.q6k", QS_GGUF_Q6_K, 2, {1, 512, 0, 0}},
    };
    CHECK(qs_gguf_layout_compute(m, d, 4, &L, &e) == QS_OK, "%s", e.msg);
    if (!L) {
        qs_gguf_meta_free(m);
        return;
    }
    const uint64_t nb[] = {3 * 2 * 34, 20, 2 * 3 * 7 * 2, 2 * 210};
    rd r = {L->header, (size_t)L->data_start, 0, 0};
    char buf[4096];
    CHECK(memcmp(L->header, "GGUF", 4) == 0, "magic");
    r.pos = 4;
    CHECK(rd_le(&r, 4) == 3, "version");
    CHECK(rd_le(&r, 8) == 4, "tensor count");
    CHECK(rd_le(&r, 8) == 10, "kv count (9 + general.alignment)");
    const char *want_kv[] = {
        "general.architecture=8:s5:llama", "a.u8=0:cd", "a.i16=3:fffe", "a.f32=6:3f800000",
        "a.f64=12:4000000000000000", "a.bool=7:1", "a.u64=10:102030405060708",
        "a.arr=9:[5*2:1,ffffffff,]", "a.sarr=9:[8*3:s1:x,s0:,s2:yz,]", "general.alignment=4:20"};
    for (int i = 0; i < 10; ++i) {
        char key[128], val[2048] = "";
        rd_str(&r, key, sizeof(key));
        uint32_t t = (uint32_t)rd_le(&r, 4);
        rd_value(&r, t, val, sizeof(val));
        snprintf(buf, sizeof(buf), "%s=%u:%s", key, t, val);
        CHECK(strcmp(buf, want_kv[i]) == 0, "kv %d: %s, want %s", i, buf, want_kv[i]);
    }
    uint64_t expect_off = 0;
    for (int i = 0; i < 4; ++i) {
        char name[128];
        rd_str(&r, name, sizeof(name));
        uint32_t nd = (uint32_t)rd_le(&r, 4);
        CHECK(strcmp(name, d[i].name) == 0 && nd == (uint32_t)d[i].ndim, "info %d: %s %u", i, name, nd);
        for (int k = 0; k < d[i].ndim; ++k) {
            uint64_t ne = rd_le(&r, 8);
            CHECK(ne == (uint64_t)d[i].shape[d[i].ndim - 1 - k], "%s: ne[%d] = %llu", name, k,
                  (unsigned long long)ne);
        }
        CHECK(rd_le(&r, 4) == (uint64_t)d[i].type, "%s: type", name);
        uint64_t off = rd_le(&r, 8);
        CHECK(off == expect_off && off % 32 == 0, "%s: offset %llu, want %llu", name,
              (unsigned long long)off, (unsigned long long)expect_off);
        CHECK(L->offset[i] == L->data_start + off && L->nbytes[i] == nb[i], "%s: layout %llu %llu",
              name, (unsigned long long)L->offset[i], (unsigned long long)L->nbytes[i]);
        expect_off += (nb[i] + 31) / 32 * 32;
    }
    CHECK(!r.bad && L->data_start == (r.pos + 31) / 32 * 32 && L->data_start % 32 == 0,
          "data start %llu after %zu header bytes", (unsigned long long)L->data_start, r.pos);
    for (size_t i = r.pos; i < L->data_start; ++i) CHECK(L->header[i] == 0, "header padding");
    CHECK(L->file_bytes == L->data_start + expect_off, "file bytes");
    CHECK(qs_gguf_layout_find(L, "e.bf16") == 2 && qs_gguf_layout_find(L, "zz") == -1, "find");
    CHECK(L->rows[2] == 6 && L->row_bytes[2] == 14 && L->rows[3] == 1 && L->row_bytes[3] == 420,
          "rows");
    qs_gguf_layout_free(L);
    L = NULL;

    /* a given general.alignment is used (and not repeated) */
    qs_gguf_meta_set_u32(m, "general.alignment", 64, &e);
    CHECK(qs_gguf_layout_compute(m, d, 4, &L, &e) == QS_OK, "%s", e.msg);
    if (L) {
        CHECK(L->alignment == 64 && L->data_start % 64 == 0, "alignment 64");
        for (int i = 0; i < 4; ++i) CHECK(L->offset[i] % 64 == 0, "offset %d not 64-aligned", i);
        r = (rd){L->header, (size_t)L->data_start, 16, 0};
        CHECK(rd_le(&r, 8) == 10, "kv count with a given alignment");
    }
    qs_gguf_layout_free(L);
    L = NULL;
    qs_gguf_meta_set_u32(m, "general.alignment", 48, &e);
    CHECK(qs_gguf_layout_compute(m, d, 4, &L, &e) == QS_ERR_INPUT &&
          strstr(e.msg, "general.alignment"), "alignment 48: %s", e.msg);
    qs_err_clear(&e);
    qs_gguf_meta_set_str(m, "general.alignment", "32", &e);
    CHECK(qs_gguf_layout_compute(m, d, 4, &L, &e) == QS_ERR_INPUT, "alignment as a string");
    qs_gguf_meta_free(m);
}

static void test_bad_input(void) {
    qs_err e = {0};
    qs_gguf_meta *m = NULL;
    qs_gguf_layout *L = NULL;
    qs_gguf_meta_new(&m, &e);
    CHECK(qs_gguf_meta_set_u32(m, "", 1, &e) == QS_ERR_INPUT, "empty key");
    qs_err_clear(&e);
    const int32_t one = 1;
    CHECK(qs_gguf_meta_set_array(m, "x", QS_GGUF_V_INT32, &one, 0, &e) == QS_ERR_INPUT, "empty arr");
    qs_err_clear(&e);
    CHECK(qs_gguf_meta_set_array(m, "x", QS_GGUF_V_STRING, &one, 1, &e) == QS_ERR_INPUT,
          "string elements through set_array");
    qs_err_clear(&e);
    CHECK(qs_gguf_meta_set_array(m, "x", QS_GGUF_V_ARRAY, &one, 1, &e) == QS_ERR_INPUT,
          "nested array");
    qs_err_clear(&e);
    char long_name[80];
    memset(long_name, 'a', 64);
    long_name[64] = '\0';
    struct {
        qs_gguf_tensor_decl d[2];
        int n;
        const char *needle;
    } cases[] = {
        {{{"", QS_GGUF_F32, 1, {4}}}, 1, "name length"},
        {{{long_name, QS_GGUF_F32, 1, {4}}}, 1, "name length 64"},
        {{{"a", QS_GGUF_F32, 1, {4}}, {"a", QS_GGUF_F32, 1, {4}}}, 2, "'a': declared twice"},
        {{{"a", QS_GGUF_F32, 0, {4}}}, 1, "'a': 0 dims"},
        {{{"a", QS_GGUF_F32, 5, {4, 1, 1, 1}}}, 1, "'a': 5 dims"},
        {{{"a", QS_GGUF_F32, 2, {0, 4}}}, 1, "'a': dim 0 is 0"},
        {{{"a", QS_GGUF_Q8_0, 2, {2, 33}}}, 1, "'a': row of 33 is not a multiple of the Q8_0"},
        {{{"a", QS_GGUF_Q4_K, 1, {128}}}, 1, "Q4_K block (256"},
        {{{"a", (qs_gguf_type)5, 1, {4}}}, 1, "'a': unknown type 5"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); ++i) {
        qs_err_clear(&e);
        qs_status st = qs_gguf_layout_compute(m, cases[i].d, cases[i].n, &L, &e);
        CHECK(st == QS_ERR_INPUT && strstr(e.msg, cases[i].needle) && L == NULL,
              "case %zu: %d %s (want '%s')", i, (int)st, e.msg, cases[i].needle);
        qs_gguf_layout_free(L);
        L = NULL;
    }
    qs_gguf_meta_free(m);
}

/* A layout of three tensors for the file tests; bytes of tensor t: (t * 13 + i) & 255. */
static qs_gguf_layout *small_layout(const char *arch, int extra) {
    qs_err e = {0};
    qs_gguf_meta *m = NULL;
    qs_gguf_layout *L = NULL;
    qs_gguf_meta_new(&m, &e);
    qs_gguf_meta_set_str(m, "general.architecture", arch, &e);
    const qs_gguf_tensor_decl d[] = {{"t0", QS_GGUF_F16, 2, {3, 5}},
                                     {"t1", QS_GGUF_Q4_0, 2, {2, 64}},
                                     {"t2", QS_GGUF_F32, 1, {9}},
                                     {"t3", QS_GGUF_F32, 1, {100}}};
    qs_gguf_layout_compute(m, d, extra ? 4 : 3, &L, &e);
    qs_gguf_meta_free(m);
    return L;
}

static unsigned char *tensor_bytes(const qs_gguf_layout *L, int64_t t) {
    unsigned char *b = malloc((size_t)L->nbytes[t]);
    for (uint64_t i = 0; i < L->nbytes[t]; ++i) b[i] = (unsigned char)((t * 13 + i) & 255);
    return b;
}

static void test_files(void) {
    qs_err e = {0};
    char path[512], path2[512], tmp[600];
    snprintf(path, sizeof(path), "%s/one.gguf", g_dir);
    snprintf(path2, sizeof(path2), "%s/two.gguf", g_dir);
    qs_gguf_layout *L = small_layout("llama", 0);
    qs_gguf_file *f = NULL, *g = NULL;

    /* serial: one handle writes everything (t1 in two pieces) */
    CHECK(qs_gguf_file_create(&f, path, 77, L, &e) == QS_OK, "%s", e.msg);
    qs_gguf_tmp_path(tmp, sizeof(tmp), path, 77);
    struct stat sb;
    CHECK(stat(tmp, &sb) == 0 && (uint64_t)sb.st_size == L->file_bytes, "temp file sized");
    for (int64_t t = 0; t < 3; ++t) {
        unsigned char *b = tensor_bytes(L, t);
        if (t == 1) {
            qs_gguf_file_write(f, t, 10, b + 10, (size_t)L->nbytes[t] - 10, &e);
            qs_gguf_file_write(f, t, 0, b, 10, &e);
        } else {
            qs_gguf_file_write(f, t, 0, b, (size_t)L->nbytes[t], &e);
        }
        CHECK(qs_gguf_file_written(f, t) == L->nbytes[t], "written %lld", (long long)t);
        free(b);
    }
    CHECK(e.code == QS_OK, "%s", e.msg);
    CHECK(qs_gguf_file_commit(f, 1, &e) == QS_OK, "%s", e.msg);
    qs_gguf_file_close(f);
    f = NULL;
    CHECK(stat(tmp, &sb) != 0, "temp file gone after commit");
    size_t n1 = 0, n2 = 0;
    unsigned char *one = slurp(path, &n1);
    CHECK(one && n1 == L->file_bytes && memcmp(one, L->header, (size_t)L->data_start) == 0,
          "file = header + data");
    for (int64_t t = 0; one && t < 3; ++t) {
        unsigned char *b = tensor_bytes(L, t);
        CHECK(memcmp(one + L->offset[t], b, (size_t)L->nbytes[t]) == 0, "tensor %lld bytes",
              (long long)t);
        uint64_t end = L->offset[t] + L->nbytes[t], next = t < 2 ? L->offset[t + 1] : L->file_bytes;
        for (uint64_t i = end; i < next; ++i) CHECK(one[i] == 0, "padding after %lld", (long long)t);
        free(b);
    }

    /* two writers (as two ranks): the creator writes t1, another handle t0 and t2 */
    CHECK(qs_gguf_file_create(&f, path2, 5, L, &e) == QS_OK, "%s", e.msg);
    qs_gguf_layout *L2 = small_layout("llama", 0); /* computed independently */
    CHECK(qs_gguf_file_open(&g, path2, 5, L2, &e) == QS_OK, "%s", e.msg);
    for (int64_t t = 0; t < 3; ++t) {
        unsigned char *b = tensor_bytes(L, t);
        qs_gguf_file_write(t == 1 ? f : g, t, 0, b, (size_t)L->nbytes[t], &e);
        free(b);
    }
    CHECK(qs_gguf_file_sync(g, &e) == QS_OK, "%s", e.msg);
    CHECK(qs_gguf_file_commit(g, 0, &e) == QS_ERR_INTERNAL, "commit by a non-creator");
    qs_err_clear(&e);
    qs_gguf_file_close(g);
    g = NULL;
    CHECK(qs_gguf_file_commit(f, 1, &e) == QS_ERR_INPUT && strstr(e.msg, "'t0' has 0 of"),
          "require_complete on the creator that wrote only t1: %s", e.msg);
    qs_gguf_file_close(f);
    f = NULL;
    CHECK(stat(path2, &sb) != 0, "failed commit left %s", path2);
    qs_err_clear(&e);
    CHECK(qs_gguf_file_create(&f, path2, 5, L, &e) == QS_OK, "%s", e.msg);
    CHECK(qs_gguf_file_open(&g, path2, 5, L2, &e) == QS_OK, "%s", e.msg);
    for (int64_t t = 0; t < 3; ++t) {
        unsigned char *b = tensor_bytes(L, t);
        qs_gguf_file_write(t == 1 ? f : g, t, 0, b, (size_t)L->nbytes[t], &e);
        free(b);
    }
    qs_gguf_file_sync(g, &e);
    qs_gguf_file_close(g);
    g = NULL;
    CHECK(qs_gguf_file_commit(f, 0, &e) == QS_OK, "%s", e.msg);
    qs_gguf_file_close(f);
    f = NULL;
    unsigned char *two = slurp(path2, &n2);
    CHECK(one && two && n1 == n2 && memcmp(one, two, n1) == 0, "two writers differ from one");
    free(one);
    free(two);
    qs_gguf_layout_free(L2);

    /* a writer whose layout differs is refused (size and header) */
    CHECK(qs_gguf_file_create(&f, path2, 6, L, &e) == QS_OK, "%s", e.msg);
    qs_gguf_layout *L3 = small_layout("qwen2", 0); /* same sizes, one key differs */
    qs_gguf_layout *L4 = small_layout("llama", 1); /* one more tensor */
    CHECK(L3->file_bytes == L->file_bytes, "same size");
    CHECK(qs_gguf_file_open(&g, path2, 6, L3, &e) == QS_ERR_RUNTIME && strstr(e.msg, "header differs"),
          "different header: %s", e.msg);
    qs_err_clear(&e);
    CHECK(qs_gguf_file_open(&g, path2, 6, L4, &e) == QS_ERR_RUNTIME && strstr(e.msg, "size"),
          "different size: %s", e.msg);
    qs_err_clear(&e);
    CHECK(qs_gguf_file_open(&g, path2, 9, L, &e) == QS_ERR_RUNTIME && strstr(e.msg, "tmp.9"),
          "wrong tag: %s", e.msg);
    qs_err_clear(&e);
    /* a write past the tensor */
    unsigned char b9[64] = {0};
    CHECK(qs_gguf_file_write(f, 2, 30, b9, 7, &e) == QS_ERR_INPUT && strstr(e.msg, "'t2'"),
          "write past the end: %s", e.msg);
    qs_err_clear(&e);
    /* close without commit: the creator removes the temporary file */
    qs_gguf_file_close(f);
    f = NULL;
    qs_gguf_layout_free(L3);
    qs_gguf_layout_free(L4);
    /* abandon by a non-creator removes it too */
    CHECK(qs_gguf_file_create(&f, path2, 8, L, &e) == QS_OK, "%s", e.msg);
    CHECK(qs_gguf_file_open(&g, path2, 8, L, &e) == QS_OK, "%s", e.msg);
    qs_gguf_file_abandon(g);
    g = NULL;
    qs_gguf_tmp_path(tmp, sizeof(tmp), path2, 8);
    CHECK(stat(tmp, &sb) != 0, "abandon left the temporary file");
    qs_gguf_file_close(f);
    f = NULL;
    unlink(path2);
    unlink(path);
    CHECK(count_entries(g_dir) == 0, "files left: %d", count_entries(g_dir));

    /* a full disk: a runtime error naming the file, nothing left */
    struct rlimit old, lim;
    getrlimit(RLIMIT_FSIZE, &old);
    signal(SIGXFSZ, SIG_IGN);
    lim = old;
    lim.rlim_cur = 64;
    CHECK(setrlimit(RLIMIT_FSIZE, &lim) == 0, "setrlimit");
    qs_status st = qs_gguf_file_create(&f, path, 3, L, &e);
    setrlimit(RLIMIT_FSIZE, &old);
    signal(SIGXFSZ, SIG_DFL);
    CHECK(st == QS_ERR_RUNTIME && strstr(e.msg, "one.gguf.tmp.3") && f == NULL, "disk full: %s",
          e.msg);
    CHECK(count_entries(g_dir) == 0, "disk full left %d files", count_entries(g_dir));
    qs_gguf_layout_free(L);
}

static void test_encode(void) {
    qs_err e = {0};
    const float x[] = {1.0f, -2.5f, 65504.0f, 1e-8f, 3.14159265f, -0.0f};
    unsigned char b[24];
    CHECK(qs_gguf_encode_float(QS_GGUF_F32, x, 6, b, &e) == QS_OK, "f32");
    for (int i = 0; i < 6; ++i) {
        uint32_t u = (uint32_t)b[4 * i] | (uint32_t)b[4 * i + 1] << 8 | (uint32_t)b[4 * i + 2] << 16 |
                     (uint32_t)b[4 * i + 3] << 24;
        CHECK(u == qs_f32_bits(x[i]), "f32 %d", i);
    }
    for (int k = 0; k < 2; ++k) {
        qs_gguf_type t = k ? QS_GGUF_BF16 : QS_GGUF_F16;
        CHECK(qs_gguf_encode_float(t, x, 6, b, &e) == QS_OK, "half");
        for (int i = 0; i < 6; ++i) {
            uint16_t h = (uint16_t)(b[2 * i] | b[2 * i + 1] << 8);
            CHECK(h == (k ? qs_f32_to_bf16(x[i]) : qs_f32_to_f16(x[i])), "%s %d", k ? "bf16" : "f16", i);
        }
    }
    CHECK(qs_gguf_encode_float(QS_GGUF_Q8_0, x, 6, b, &e) == QS_ERR_INPUT && strstr(e.msg, "Q8_0"),
          "block type: %s", e.msg);
}

static void test_model_helpers(void) {
    /* permutation: head of 4 rows [a0 a1 b0 b1] -> [a0 b0 a1 b1] (rows are 2 bytes) */
    const unsigned char src[16] = {0, 0, 1, 1, 2, 2, 3, 3, 10, 10, 11, 11, 12, 12, 13, 13};
    unsigned char dst[16];
    qs_gguf_permute_rows(src, dst, 8, 2, 4);
    const unsigned char want[16] = {0, 0, 2, 2, 1, 1, 3, 3, 10, 10, 12, 12, 11, 11, 13, 13};
    CHECK(memcmp(dst, want, 16) == 0, "permute_rows");
    const char *map[][2] = {
        {"model.embed_tokens.weight", "token_embd.weight"},
        {"model.norm.weight", "output_norm.weight"},
        {"lm_head.weight", "output.weight"},
        {"model.layers.0.input_layernorm.weight", "blk.0.attn_norm.weight"},
        {"model.layers.12.post_attention_layernorm.weight", "blk.12.ffn_norm.weight"},
        {"model.layers.3.self_attn.q_proj.weight", "blk.3.attn_q.weight"},
        {"model.layers.3.self_attn.k_proj.bias", "blk.3.attn_k.bias"},
        {"model.layers.3.self_attn.v_proj.weight", "blk.3.attn_v.weight"},
        {"model.layers.3.self_attn.o_proj.weight", "blk.3.attn_output.weight"},
        {"model.layers.7.mlp.gate_proj.weight", "blk.7.ffn_gate.weight"},
        {"model.layers.7.mlp.up_proj.weight", "blk.7.ffn_up.weight"},
        {"model.layers.7.mlp.down_proj.weight", "blk.7.ffn_down.weight"},
        {"model.layers.1.self_attn.rotary_emb.inv_freq", NULL},
        {"model.layers.x.mlp.up_proj.weight", NULL},
        {"model.layers.1.mlp.up_proj.scales", NULL},
    };
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); ++i) {
        char buf[64];
        int rc = qs_gguf_tensor_name(map[i][0], buf, sizeof(buf));
        CHECK(map[i][1] ? (rc == 0 && strcmp(buf, map[i][1]) == 0) : rc == -1, "name %s -> %s",
              map[i][0], rc == 0 ? buf : "(none)");
    }
    qs_gguf_model_tensor t[3];
    memset(t, 0, sizeof(t));
    t[0] = (qs_gguf_model_tensor){.ndim = 2, .shape = {100, 64}, .type = QS_GGUF_Q4_K};
    t[1] = (qs_gguf_model_tensor){.ndim = 2, .shape = {10, 64}, .type = QS_GGUF_F16};
    t[2] = (qs_gguf_model_tensor){.ndim = 1, .shape = {10000}, .type = QS_GGUF_F32};
    CHECK(qs_gguf_file_type(t, 3) == 14, "file type Q4_K_S");
    t[1].shape[0] = 100;
    CHECK(qs_gguf_file_type(t, 3) == 1, "tie -> lower type id (F16)");
    CHECK(strcmp(qs_gguf_arch_name(QS_ARCH_MISTRAL), "llama") == 0 &&
          strcmp(qs_gguf_arch_name(QS_ARCH_QWEN2), "qwen2") == 0, "arch names");
}

int main(void) {
    snprintf(g_dir, sizeof(g_dir), "/tmp/qs_gguf_test.%ld", (long)getpid());
    if (mkdir(g_dir, 0755) != 0) {
        fprintf(stderr, "cannot create %s\n", g_dir);
        return 1;
    }
    test_header();
    test_bad_input();
    test_files();
    test_encode();
    test_model_helpers();
    rmdir(g_dir);
    return qs_test_finish("test_gguf_file");
}
