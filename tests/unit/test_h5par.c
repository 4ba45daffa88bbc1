/* test_h5par.c: mpi/h5par.c on the ranks it is started with (mpiexec -n N): collective create,
 * groups, datasets and attributes declared in one order on every rank, rows written by their
 * owners (independent transfers) and collectively, the agreed close that renames the temp
 * file. Checks: the file exists only under its temp name while open and only under its final
 * name after; io/h5store reads back every dataset and attribute; two runs give the same
 * bytes, and so does the serial communicator (HDF5's default driver, rank 0 alone); close
 * with keep = 0 leaves nothing; a file in a missing directory is an agreed QS_ERR_RUNTIME
 * naming it; an independent write outside its dataset or to an absent one returns an error
 * naming the file and the dataset, which the ranks agree on before closing.
 * Usage: test_h5par --ranks N (the rank count it must find; CTest passes it). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check_mpi.h"
#include "h5par.h"
#include "h5store.h"

enum { R = 10, C = 6 };

static float w_at(int64_t r, int64_t c) { return (float)(r * 10 + c) + 0.5f; }

/* Rows [*b, *e) of R owned by rank `rank` of `size` (contiguous, in rank order). */
static void rows_of(int rank, int size, int64_t *b, int64_t *e) {
    *b = (int64_t)R * rank / size;
    *e = (int64_t)R * (rank + 1) / size;
}

/* Writes the test file at `path` on communicator c; returns the status of the close. */
static qs_status write_file(const qs_comm *c, const char *path) {
    qs_h5par h;
    qs_err err = {0};
    qs_status st = qs_h5par_create(&h, c, path, 0, &err);
    CHECK(st == QS_OK, "create %s: %s", path, err.msg);
    if (st != QS_OK) return st;
    CHECK(qs_test_exists(h.tmp) && !qs_test_exists(path), "%s: only the temp name while open",
          path);
    const int64_t dw[2] = {R, C}, di[1] = {R}, db[2] = {R, 3}, dc[2] = {R, 2};
    qs_h5par_group(&h, "meta/sub");
    qs_h5par_dataset(&h, "a/w", QS_H5_F32, 2, dw);
    qs_h5par_dataset(&h, "a/i", QS_H5_I64, 1, di);
    qs_h5par_dataset(&h, "b/bytes", QS_H5_U8, 2, db);
    qs_h5par_dataset(&h, "c", QS_H5_F64, 2, dc);
    qs_h5par_attr_i64(&h, NULL, "layers", 7);
    qs_h5par_attr_f64(&h, NULL, "eps", 1e-5);
    qs_h5par_attr_str(&h, NULL, "name", "qshard h5par");
    qs_h5par_attr_i64(&h, "a/w", "bits", 4);

    int64_t b, e;
    rows_of(c->rank, c->size, &b, &e);
    int64_t n = e - b;
    float w[R * C];         /* (n, C) */
    int64_t iv[R];          /* (n,) */
    unsigned char u[R * 3]; /* (n, 3) */
    double d[R * 2];        /* (n, 2) */
    for (int64_t r = 0; r < n; ++r) {
        for (int64_t k = 0; k < C; ++k) w[r * C + k] = w_at(b + r, k);
        iv[r] = -(b + r) * 1000;
        for (int64_t k = 0; k < 3; ++k) u[r * 3 + k] = (unsigned char)(b + r + k * 50);
        d[r * 2] = 1.0 / (double)(b + r + 1);
        d[r * 2 + 1] = -(double)(b + r);
    }
    qs_status ws = QS_OK;
    if (n > 0) { /* independent: only owners write */
        ws = qs_h5par_write_rows(&h, "a/w", QS_H5_F32, b, n, w, 0, &err);
        if (ws == QS_OK) ws = qs_h5par_write_rows(&h, "a/i", QS_H5_I64, b, n, iv, 0, &err);
        if (ws == QS_OK) ws = qs_h5par_write_rows(&h, "b/bytes", QS_H5_U8, b, n, u, 0, &err);
        CHECK(ws == QS_OK, "independent writes: %s", err.msg);
    }
    ws = qs_comm_agree(c, ws, &err);
    /* collective: every rank calls, with its rows (maybe none) */
    if (ws == QS_OK) ws = qs_h5par_write_rows(&h, "c", QS_H5_F64, b, n, d, 1, &err);
    qs_err cerr = {0};
    st = qs_h5par_close(&h, ws == QS_OK, &cerr);
    CHECK(st == QS_OK, "close %s: %s", path, cerr.msg);
    CHECK(!qs_test_exists(h.tmp), "%s: temp name gone after close", path);
    return ws != QS_OK ? ws : st;
}

/* Reads `path` back with io/h5store and checks every value. */
static void check_contents(const char *path) {
    qs_h5 h;
    qs_err err = {0};
    CHECK(qs_h5_open(&h, path, &err) == QS_OK, "open %s: %s", path, err.msg);
    int nd = 0;
    int64_t dims[8];
    float *w = NULL;
    CHECK(qs_h5_read(&h, "a/w", QS_H5_F32, &nd, dims, (void **)&w, &err) == QS_OK && nd == 2 &&
              dims[0] == R && dims[1] == C,
          "a/w: %s", err.msg);
    int bad = 0;
    for (int64_t r = 0; w && r < R; ++r)
        for (int64_t k = 0; k < C; ++k) bad += w[r * C + k] != w_at(r, k);
    CHECK(w && bad == 0, "a/w: %d values differ", bad);
    free(w);
    int64_t *iv = NULL;
    CHECK(qs_h5_read_n(&h, "a/i", QS_H5_I64, R, (void **)&iv, &err) == QS_OK, "a/i: %s",
          err.msg);
    bad = 0;
    for (int64_t r = 0; iv && r < R; ++r) bad += iv[r] != -r * 1000;
    CHECK(iv && bad == 0, "a/i: %d values differ", bad);
    free(iv);
    unsigned char *u = NULL;
    CHECK(qs_h5_read_n(&h, "b/bytes", QS_H5_U8, R * 3, (void **)&u, &err) == QS_OK,
          "b/bytes: %s", err.msg);
    bad = 0;
    for (int64_t r = 0; u && r < R; ++r)
        for (int64_t k = 0; k < 3; ++k) bad += u[r * 3 + k] != (unsigned char)(r + k * 50);
    CHECK(u && bad == 0, "b/bytes: %d values differ", bad);
    free(u);
    double *d = NULL;
    CHECK(qs_h5_read_n(&h, "c", QS_H5_F64, R * 2, (void **)&d, &err) == QS_OK, "c: %s",
          err.msg);
    bad = 0;
    for (int64_t r = 0; d && r < R; ++r)
        bad += d[r * 2] != 1.0 / (double)(r + 1) || d[r * 2 + 1] != -(double)r;
    CHECK(d && bad == 0, "c (collective): %d rows differ", bad);
    free(d);
    int64_t layers = 0, bits = 0;
    double eps = 0;
    CHECK(qs_h5_read_attr_i64(&h, NULL, "layers", &layers, &err) == QS_OK && layers == 7,
          "attribute layers %lld: %s", (long long)layers, err.msg);
    CHECK(qs_h5_read_attr_f64(&h, NULL, "eps", &eps, &err) == QS_OK && eps == 1e-5,
          "attribute eps %g: %s", eps, err.msg);
    CHECK(qs_h5_read_attr_i64(&h, "a/w", "bits", &bits, &err) == QS_OK && bits == 4,
          "attribute a/w bits %lld: %s", (long long)bits, err.msg);
    qs_h5_abandon(&h);
}

static void test_errors(const qs_comm *c, const char *dir) {
    /* a missing directory: every rank gets the same error naming the file */
    qs_h5par h;
    qs_err err = {0};
    qs_status st = qs_h5par_create(&h, c, "/nonexistent-qs-dir/x.h5", 0, &err);
    CHECK(st == QS_ERR_RUNTIME && strstr(err.msg, "/nonexistent-qs-dir/x.h5") && h.file < 0,
          "create in a missing directory: %d '%s'", (int)st, err.msg);

    /* rows outside the dataset and an absent dataset: the writer's status, then agreed */
    char path[512];
    snprintf(path, sizeof(path), "%s/bad.h5", dir);
    qs_err e1 = {0};
    /* a reservation the disk cannot hold (an exabyte): refused at create, agreed, naming the
     * file, and nothing left behind -- a full disk never reaches HDF5's collective close */
    char big[512];
    snprintf(big, sizeof(big), "%s/huge.h5", dir);
    qs_err eb = {0};
    qs_status sb = qs_h5par_create(&h, c, big, (int64_t)1 << 60, &eb);
    CHECK(sb == QS_ERR_RUNTIME && strstr(eb.msg, "huge.h5") && h.file < 0,
          "an unreservable file: %d '%s'", (int)sb, eb.msg);
    CHECK(access(big, F_OK) != 0, "%s is left behind", big);

    CHECK(qs_h5par_create(&h, c, path, 0, &e1) == QS_OK, "create %s: %s", path, e1.msg);
    const int64_t dw[2] = {R, C};
    qs_h5par_dataset(&h, "a/w", QS_H5_F32, 2, dw);
    float w[2 * C] = {0}; /* (2, C) */
    qs_status ws = QS_OK;
    if (c->rank == c->size - 1) {
        qs_err e2 = {0};
        ws = qs_h5par_write_rows(&h, "a/w", QS_H5_F32, R - 1, 2, w, 0, &e2);
        CHECK(ws == QS_ERR_INTERNAL && strstr(e2.msg, "a/w") && strstr(e2.msg, "bad.h5"),
              "rows outside the dataset: %d '%s'", (int)ws, e2.msg);
        qs_err e3 = {0};
        qs_status s3 = qs_h5par_write_rows(&h, "nope", QS_H5_F32, 0, 1, w, 0, &e3);
        CHECK(s3 == QS_ERR_RUNTIME && strstr(e3.msg, "nope") && strstr(e3.msg, "bad.h5"),
              "absent dataset: %d '%s'", (int)s3, e3.msg);
        e1 = e2;
    }
    ws = qs_comm_agree(c, ws, &e1);
    CHECK(ws == QS_ERR_INTERNAL, "the ranks agree on the failed write: %d", (int)ws);
    qs_err e4 = {0};
    CHECK(qs_h5par_close(&h, 0, &e4) == QS_OK, "close keep = 0: %s", e4.msg);
    CHECK(!qs_test_exists(path) && qs_test_count_entries(dir, "bad.h5") == 0,
          "keep = 0 leaves no file");
}

int main(int argc, char **argv) {
    qs_comm c;
    qs_test_mpi_init(&c, &argc, &argv);
    char dir[256] = {0};
    if (c.rank == 0) qs_test_tmpdir(dir, sizeof(dir), "h5par");
    qs_comm_bcast(&c, dir, sizeof(dir), 0);

    char p1[512], p2[512], ps[512];
    snprintf(p1, sizeof(p1), "%s/one.h5", dir);
    snprintf(p2, sizeof(p2), "%s/two.h5", dir);
    snprintf(ps, sizeof(ps), "%s/serial.h5", dir);
    CHECK(write_file(&c, p1) == QS_OK, "first run");
    CHECK(write_file(&c, p2) == QS_OK, "second run");
    if (c.rank == 0) {
        qs_comm s;
        qs_comm_serial(&s);
        CHECK(write_file(&s, ps) == QS_OK, "serial run");
        check_contents(p1);
        check_contents(ps);
        CHECK(qs_test_files_equal(p1, p2), "two runs at %d rank(s) differ", c.size);
        CHECK(qs_test_files_equal(p1, ps), "%d rank(s) differ from the serial file", c.size);
    }
    test_errors(&c, dir);
    qs_comm_barrier(&c);
    if (c.rank == 0) qs_test_rm_rf(dir);

    return qs_test_mpi_finish(&c, "test_h5par");
}
