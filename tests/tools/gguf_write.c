/* gguf_write.c: a test driver of the GGUF writer (pipeline/export/gguf_*.c) for the
 * Python checks in tests/gguf/. Not part of qshard's command line.
 *
 *   gguf_write model MODEL_DIR OUT.gguf [--tokenizer PATH] [--name NAME]
 *              [--type f32|f16|bf16] [--tensor-type GGUF_NAME=TYPE]...
 *              [--raw GGUF_NAME=FILE]... [--writers N]
 *     A model's GGUF: every tensor from the checkpoint in its (default or given) float
 *     type, except those given by --raw: FILE holds the tensor's bytes in the checkpoint's
 *     row order (e.g. Q8_0 blocks from gguf-py's quantizer), permuted here like the rest.
 *     --writers N: N processes (fork) each compute the layout themselves and write their
 *     own tensors into the one file, as MPI ranks would (block N belongs to writer
 *     N % writers, token_embd/rope_freqs to writer 0, output_norm/output to the last);
 *     writer 0 creates and commits.
 *   gguf_write kv OUT.gguf [--alignment A]
 *     A file with one key of every metadata value type, arrays of every scalar type and of
 *     strings, and tensors of several types with deterministic bytes (see kv_file).
 * Errors: one line "qshard: error: <msg>" on stderr, exit 2 (bad input) or 1.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "gguf_file.h"
#include "gguf_model.h"
#include "gguf_vocab.h"
#include "hf_model.h"

#define MAX_OVERRIDES 256

typedef struct opts {
    const char *model_dir, *out, *tokenizer, *name;
    qs_gguf_type type;
    int writers;
    uint32_t alignment;
    int ntt, nraw;
    char *tt_name[MAX_OVERRIDES];
    qs_gguf_type tt_type[MAX_OVERRIDES];
    char *raw_name[MAX_OVERRIDES];
    char *raw_file[MAX_OVERRIDES];
} opts;

static qs_status read_file(const char *path, unsigned char **out, size_t *n, qs_err *err) {
    qs_status st = QS_OK;
    FILE *f = fopen(path, "rb");
    unsigned char *b = NULL;
    *out = NULL;
    if (!f) QS_THROW(err, QS_ERR_INPUT, "%s: cannot open", path);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    rewind(f);
    b = malloc(len > 0 ? (size_t)len : 1);
    if (!b || fread(b, 1, (size_t)len, f) != (size_t)len)
        QS_THROW(err, QS_ERR_RUNTIME, "%s: read failed", path);
    *out = b;
    *n = (size_t)len;
    b = NULL;
done:
    if (f) fclose(f);
    free(b);
    return st;
}

/* ---- model mode ---------------------------------------------------------------------- */

typedef struct built {
    qs_model model;
    qs_gguf_meta *meta;
    qs_gguf_model_tensor *t;   /* (n,) */
    int64_t n;
    qs_gguf_layout *L;
} built;

static void built_free(built *b) {
    qs_gguf_layout_free(b->L);
    free(b->t);
    qs_gguf_meta_free(b->meta);
    qs_model_close(&b->model);
    memset(b, 0, sizeof(*b));
}

/* Everything a writer computes on its own: model, metadata, tensor list, layout. */
static qs_status build(const opts *o, built *b, qs_err *err) {
    qs_status st = QS_OK;
    qs_gguf_tensor_decl *d = NULL;
    memset(b, 0, sizeof(*b));
    QS_CHECK(qs_model_open(&b->model, o->model_dir, err));
    QS_CHECK(qs_gguf_model_tensors(&b->model.hf, o->type, &b->t, &b->n, err));
    for (int i = 0; i < o->ntt; ++i) {
        int found = 0;
        for (int64_t k = 0; k < b->n; ++k)
            if (strcmp(b->t[k].name, o->tt_name[i]) == 0) {
                b->t[k].type = o->tt_type[i];
                found = 1;
            }
        if (!found) QS_THROW(err, QS_ERR_INPUT, "--tensor-type: no tensor '%s'", o->tt_name[i]);
    }
    QS_CHECK(qs_gguf_meta_new(&b->meta, err));
    const char *name = o->name;
    if (!name) {
        const char *slash = strrchr(o->model_dir, '/');
        name = slash && slash[1] ? slash + 1 : o->model_dir;
    }
    QS_CHECK(qs_gguf_meta_add_model(b->meta, &b->model.hf, o->model_dir, name,
                                    qs_gguf_file_type(b->t, b->n),
                                    err));
    QS_CHECK(qs_gguf_meta_add_vocab(b->meta, &b->model.hf, o->model_dir, o->tokenizer, err));
    d = calloc((size_t)b->n, sizeof(*d));
    if (!d) QS_THROW(err, QS_ERR_RUNTIME, "out of memory");
    qs_gguf_model_decls(b->t, b->n, d);
    QS_CHECK(qs_gguf_layout_compute(b->meta, d, b->n, &b->L, err));
done:
    free(d);
    return st;
}

static int owner_of(const qs_gguf_model_tensor *t, int writers) {
    if (t->layer >= 0) return (int)(t->layer % writers);
    if (strcmp(t->name, "output_norm.weight") == 0 || strcmp(t->name, "output.weight") == 0)
        return writers - 1;
    return 0;
}

/* Writes the tensors writer `me` owns. */
static qs_status write_mine(const opts *o, const built *b, qs_gguf_file *f, int me,
                            qs_err *err) {
    qs_status st = QS_OK;
    unsigned char *bytes = NULL;
    for (int64_t k = 0; k < b->n; ++k) {
        if (owner_of(&b->t[k], o->writers) != me) continue;
        int raw = -1;
        for (int i = 0; i < o->nraw; ++i)
            if (strcmp(o->raw_name[i], b->t[k].name) == 0) raw = i;
        if (raw >= 0) {
            size_t n = 0;
            QS_CHECK(read_file(o->raw_file[raw], &bytes, &n, err));
            QS_CHECK(qs_gguf_write_tensor_bytes(f, b->L, k, &b->t[k], bytes, n, err));
            free(bytes);
            bytes = NULL;
        } else {
            QS_CHECK(qs_gguf_write_checkpoint_tensor(f, b->L, k, &b->model, &b->t[k], err));
        }
        if (qs_gguf_file_written(f, k) != b->L->nbytes[k])
            QS_THROW(err, QS_ERR_INTERNAL, "%s: incomplete", b->t[k].name);
    }
    QS_CHECK(qs_gguf_file_sync(f, err));
done:
    free(bytes);
    return st;
}

static qs_status run_model(const opts *o, qs_err *err) {
    qs_status st = QS_OK;
    built b;
    qs_gguf_file *f = NULL;
    pid_t kids[64];
    int nkids = 0;
    memset(&b, 0, sizeof(b));
    for (int i = 0; i < o->nraw; ++i) {
        int typed = 0;
        for (int k = 0; k < o->ntt; ++k) typed |= strcmp(o->tt_name[k], o->raw_name[i]) == 0;
        if (!typed) QS_THROW(err, QS_ERR_INPUT, "--raw %s needs a --tensor-type", o->raw_name[i]);
    }
    QS_CHECK(build(o, &b, err));
    const long tag = (long)getpid();
    QS_CHECK(qs_gguf_file_create(&f, o->out, tag, b.L, err));
    fflush(NULL);
    for (int w = 1; w < o->writers; ++w) {
        pid_t pid = fork();
        if (pid < 0) QS_THROW(err, QS_ERR_RUNTIME, "fork failed");
        if (pid == 0) {
            /* a writer: its own layout, the creator's temporary file */
            built bw;
            qs_gguf_file *fw = NULL;
            qs_err ew = {0};
            qs_status s = build(o, &bw, &ew);
            if (s == QS_OK) s = qs_gguf_file_open(&fw, o->out, tag, bw.L, &ew);
            if (s == QS_OK) s = write_mine(o, &bw, fw, w, &ew);
            if (s != QS_OK) fprintf(stderr, "qshard: error: writer %d: %s\n", w, ew.msg);
            qs_gguf_file_close(fw);
            built_free(&bw);
            _exit(qs_status_exit_code(s));
        }
        kids[nkids++] = pid;
    }
    qs_status mine = write_mine(o, &b, f, 0, err);
    int bad = 0;
    for (int i = 0; i < nkids; ++i) {
        int ws = 0;
        waitpid(kids[i], &ws, 0);
        if (!WIFEXITED(ws) || WEXITSTATUS(ws) != 0) bad = 1;
    }
    nkids = 0;
    QS_CHECK(mine);
    if (bad) QS_THROW(err, QS_ERR_RUNTIME, "%s: a writer failed", o->out);
    QS_CHECK(qs_gguf_file_commit(f, o->writers == 1, err));
done:
    for (int i = 0; i < nkids; ++i) waitpid(kids[i], NULL, 0);
    if (st != QS_OK) qs_gguf_file_abandon(f);
    else qs_gguf_file_close(f);
    built_free(&b);
    return st;
}

/* ---- kv mode: every value type ------------------------------------------------------- */

static qs_status run_kv(const opts *o, qs_err *err) {
    qs_status st = QS_OK;
    qs_gguf_meta *m = NULL;
    qs_gguf_layout *L = NULL;
    qs_gguf_file *f = NULL;
    unsigned char *data = NULL;
    QS_CHECK(qs_gguf_meta_new(&m, err));
    QS_CHECK(qs_gguf_meta_set_str(m, "general.architecture", "llama", err));
    QS_CHECK(qs_gguf_meta_set_u8(m, "test.u8", 200, err));
    QS_CHECK(qs_gguf_meta_set_i8(m, "test.i8", -100, err));
    QS_CHECK(qs_gguf_meta_set_u16(m, "test.u16", 60000, err));
    QS_CHECK(qs_gguf_meta_set_i16(m, "test.i16", -30000, err));
    QS_CHECK(qs_gguf_meta_set_u32(m, "test.u32", 4000000000u, err));
    QS_CHECK(qs_gguf_meta_set_i32(m, "test.i32", -2000000000, err));
    QS_CHECK(qs_gguf_meta_set_u64(m, "test.u64", 10000000000000000000ull, err));
    QS_CHECK(qs_gguf_meta_set_i64(m, "test.i64", -9000000000000000000ll, err));
    QS_CHECK(qs_gguf_meta_set_f32(m, "test.f32", 3.25f, err));
    QS_CHECK(qs_gguf_meta_set_f64(m, "test.f64", -1.5e300, err));
    QS_CHECK(qs_gguf_meta_set_bool(m, "test.bool_true", 1, err));
    QS_CHECK(qs_gguf_meta_set_bool(m, "test.bool_false", 0, err));
    QS_CHECK(qs_gguf_meta_set_str(m, "test.str", "h\xC3\xA9llo \xE2\x96\x81world", err));
    QS_CHECK(qs_gguf_meta_set_strn(m, "test.str_nul", "a\0b", 3, err));
    QS_CHECK(qs_gguf_meta_set_str(m, "test.replaced", "first", err));
    {
        const uint8_t a_u8[] = {0, 1, 255};
        const int8_t a_i8[] = {-128, 0, 127};
        const uint16_t a_u16[] = {0, 65535};
        const int16_t a_i16[] = {-32768, 32767};
        const uint32_t a_u32[] = {0, 4294967295u, 7};
        const int32_t a_i32[] = {-2147483647 - 1, 2147483647};
        const uint64_t a_u64[] = {0, 18446744073709551615ull};
        const int64_t a_i64[] = {-9223372036854775807ll - 1, 9223372036854775807ll};
        const float a_f32[] = {-0.5f, 1e-30f, 65504.0f};
        const double a_f64[] = {3.141592653589793, -2.5e-310};
        const uint8_t a_bool[] = {1, 0, 1};
        const char *a_str[] = {"", "<s>", "\xE2\x96\x81the", "x y"};
        QS_CHECK(qs_gguf_meta_set_array(m, "test.arr_u8", QS_GGUF_V_UINT8, a_u8, 3, err));
        QS_CHECK(qs_gguf_meta_set_array(m, "test.arr_i8", QS_GGUF_V_INT8, a_i8, 3, err));
        QS_CHECK(qs_gguf_meta_set_array(m, "test.arr_u16", QS_GGUF_V_UINT16, a_u16, 2, err));
        QS_CHECK(qs_gguf_meta_set_array(m, "test.arr_i16", QS_GGUF_V_INT16, a_i16, 2, err));
        QS_CHECK(qs_gguf_meta_set_array(m, "test.arr_u32", QS_GGUF_V_UINT32, a_u32, 3, err));
        QS_CHECK(qs_gguf_meta_set_array(m, "test.arr_i32", QS_GGUF_V_INT32, a_i32, 2, err));
        QS_CHECK(qs_gguf_meta_set_array(m, "test.arr_u64", QS_GGUF_V_UINT64, a_u64, 2, err));
        QS_CHECK(qs_gguf_meta_set_array(m, "test.arr_i64", QS_GGUF_V_INT64, a_i64, 2, err));
        QS_CHECK(qs_gguf_meta_set_array(m, "test.arr_f32", QS_GGUF_V_FLOAT32, a_f32, 3, err));
        QS_CHECK(qs_gguf_meta_set_array(m, "test.arr_f64", QS_GGUF_V_FLOAT64, a_f64, 2, err));
        QS_CHECK(qs_gguf_meta_set_array(m, "test.arr_bool", QS_GGUF_V_BOOL, a_bool, 3, err));
        QS_CHECK(qs_gguf_meta_set_str_array(m, "test.arr_str", a_str, NULL, 4, err));
    }
    QS_CHECK(qs_gguf_meta_set_str(m, "test.replaced", "second", err)); /* keeps its place */
    if (o->alignment) QS_CHECK(qs_gguf_meta_set_u32(m, "general.alignment", o->alignment, err));
    /* tensors: bytes t*7 + i (mod 251) for tensor t, byte i */
    const qs_gguf_tensor_decl d[] = {
        {"t.f32", QS_GGUF_F32, 2, {3, 5, 0, 0}},
        {"t.f16", QS_GGUF_F16, 2, {2, 64, 0, 0}},
        {"t.bf16", QS_GGUF_BF16, 1, {4, 0, 0, 0}},
        {"t.q8_0", QS_GGUF_Q8_0, 2, {3, 64, 0, 0}},
        {"t.q4_k", QS_GGUF_Q4_K, 3, {2, 1, 256, 0}},
        {"t.f32_4d", QS_GGUF_F32, 4, {2, 3, 1, 5}},
    };
    const int64_t nt = (int64_t)(sizeof(d) / sizeof(d[0]));
    QS_CHECK(qs_gguf_layout_compute(m, d, nt, &L, err));
    QS_CHECK(qs_gguf_file_create(&f, o->out, (long)getpid(), L, err));
    for (int64_t t = 0; t < nt; ++t) {
        data = malloc((size_t)L->nbytes[t]);
        if (!data) QS_THROW(err, QS_ERR_RUNTIME, "out of memory");
        for (uint64_t i = 0; i < L->nbytes[t]; ++i) data[i] = (unsigned char)((t * 7 + i) % 251);
        /* in two pieces, to exercise offsets inside a tensor */
        const uint64_t half = L->nbytes[t] / 2;
        QS_CHECK(qs_gguf_file_write(f, t, 0, data, (size_t)half, err));
        QS_CHECK(qs_gguf_file_write(f, t, half, data + half, (size_t)(L->nbytes[t] - half), err));
        free(data);
        data = NULL;
    }
    QS_CHECK(qs_gguf_file_commit(f, 1, err));
done:
    free(data);
    if (st != QS_OK) qs_gguf_file_abandon(f);
    else qs_gguf_file_close(f);
    qs_gguf_layout_free(L);
    qs_gguf_meta_free(m);
    return st;
}

static int usage(void) {
    fprintf(stderr, "usage: gguf_write model MODEL_DIR OUT [options] | kv OUT [--alignment A]\n");
    return 2;
}

int main(int argc, char **argv) {
    opts o;
    qs_err err = {0};
    qs_status st;
    memset(&o, 0, sizeof(o));
    o.type = QS_GGUF_F16;
    o.writers = 1;
    if (argc < 3) return usage();
    int kv = strcmp(argv[1], "kv") == 0;
    int i = 2;
    if (kv) {
        o.out = argv[i++];
    } else if (strcmp(argv[1], "model") == 0 && argc >= 4) {
        o.model_dir = argv[i++];
        o.out = argv[i++];
    } else {
        return usage();
    }
    for (; i < argc; ++i) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) return usage();
        ++i;
        if (!strcmp(a, "--tokenizer")) o.tokenizer = v;
        else if (!strcmp(a, "--name")) o.name = v;
        else if (!strcmp(a, "--writers")) o.writers = atoi(v);
        else if (!strcmp(a, "--alignment")) o.alignment = (uint32_t)strtoul(v, NULL, 10);
        else if (!strcmp(a, "--type")) {
            if (qs_gguf_type_parse(v, &o.type) != 0) return usage();
        } else if ((!strcmp(a, "--tensor-type") || !strcmp(a, "--raw")) && strchr(v, '=')) {
            char *s = strdup(v), *eq = strchr(s, '=');
            *eq = '\0';
            if (!strcmp(a, "--raw")) {
                if (o.nraw == MAX_OVERRIDES) return usage();
                o.raw_name[o.nraw] = s;
                o.raw_file[o.nraw++] = eq + 1;
            } else {
                if (o.ntt == MAX_OVERRIDES || qs_gguf_type_parse(eq + 1, &o.tt_type[o.ntt]) != 0)
                    return usage();
                o.tt_name[o.ntt++] = s;
            }
        } else {
            return usage();
        }
    }
    if (o.writers < 1 || o.writers > 64) return usage();
    st = kv ? run_kv(&o, &err) : run_model(&o, &err);
    if (st != QS_OK) fprintf(stderr, "qshard: error: %s\n", err.msg);
    for (int k = 0; k < o.ntt; ++k) free(o.tt_name[k]);
    for (int k = 0; k < o.nraw; ++k) free(o.raw_name[k]);
    return qs_status_exit_code(st);
}
