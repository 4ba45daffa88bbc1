/* test_recon_notes.c: lib/recon_notes.h, the GPTQ record of one layer file.
 *  - qs_recon_notes_read on layer-file tables written with h5store: a (7, C) measure-pass
 *    table (the largest value over the candidate columns per linear) and a (7, 1) final-pass
 *    table; a table of the wrong shape and a missing one are QS_ERR_INPUT naming the file;
 *  - qs_recon_notes_line: nothing to say -> 0 and ""; dead columns, raised damping and the
 *    fp64 fallback each in their clause, consecutive linears with equal numbers named
 *    together (q,k,v; up,down), others apart; a short buffer stays NUL-terminated.
 * Exit 0 on success. */
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "h5store.h"
#include "recon_notes.h"

#define C 2 /* candidate columns of the measure-pass table */

/* A layer file with tables of `cols` columns: linear k, column c gets ndead[k] + c (so the
 * largest column is the last), damp 0.01 * (1 + raised), raised[k], fp64[k]. */
static int write_tables(const char *path, int cols, const int64_t ndead[7], const int raised[7],
                        const int fp64[7], int bad_shape) {
    qs_h5 h;
    qs_err e = {0};
    int64_t nd[7 * C], din[7] = {64, 64, 64, 64, 64, 64, 128};
    double damp[7 * C];
    int32_t nr[7 * C], f64[7 * C];
    for (int k = 0; k < 7; ++k)
        for (int c = 0; c < cols; ++c) {
            const int i = k * cols + c;
            nd[i] = ndead[k] ? ndead[k] + c : 0;
            nr[i] = raised[k];
            damp[i] = raised[k] ? 1.0 : 0.01;
            f64[i] = fp64[k];
        }
    int64_t dims[2] = {bad_shape ? 6 : 7, cols}, d7 = 7;
    int ok = qs_h5_create(&h, path, &e) == QS_OK;
    ok = ok && qs_h5_write(&h, "table/ndead", QS_H5_I64, 2, dims, nd, &e) == QS_OK;
    ok = ok && qs_h5_write(&h, "table/damp", QS_H5_F64, 2, dims, damp, &e) == QS_OK;
    ok = ok && qs_h5_write(&h, "table/damp_raised", QS_H5_I32, 2, dims, nr, &e) == QS_OK;
    ok = ok && qs_h5_write(&h, "table/fp64", QS_H5_I32, 2, dims, f64, &e) == QS_OK;
    ok = ok && qs_h5_write(&h, "table/d_in", QS_H5_I64, 1, &d7, din, &e) == QS_OK;
    ok = ok && qs_h5_commit(&h, &e) == QS_OK;
    if (!ok) qs_h5_abandon(&h);
    CHECK(ok, "writing %s: %s", path, e.msg);
    return ok;
}

static void test_read(const char *dir) {
    char path[600];
    qs_recon_notes n;
    qs_err e = {0};
    const int64_t ndead[7] = {16, 16, 16, 0, 8, 8, 0};
    const int raised[7] = {0, 0, 0, 0, 0, 0, 2}, fp64[7] = {0, 0, 0, 1, 0, 0, 0};
    snprintf(path, sizeof(path), "%s/recon.h5", dir);
    if (write_tables(path, C, ndead, raised, fp64, 0)) {
        CHECK(qs_recon_notes_read(path, &n, &e) == QS_OK, "read (7, C): %s", e.msg);
        CHECK(n.lin[0].ndead == 16 + C - 1 && n.lin[4].ndead == 8 + C - 1 && n.lin[3].ndead == 0,
              "largest ndead over the columns: q %lld gate %lld o %lld",
              (long long)n.lin[0].ndead, (long long)n.lin[4].ndead, (long long)n.lin[3].ndead);
        CHECK(n.lin[6].nraise == 2 && n.lin[6].damp == 1.0 && n.lin[0].damp == 0.01,
              "damping: down raised %d to %g, q %g", n.lin[6].nraise, n.lin[6].damp,
              n.lin[0].damp);
        CHECK(n.lin[3].fp64 == 1 && n.lin[0].fp64 == 0, "fp64 of o and q");
        CHECK(n.lin[6].d_in == 128 && n.lin[0].d_in == 64, "d_in");
        CHECK(qs_recon_note_any(&n.lin[0]) && qs_recon_note_any(&n.lin[3]) &&
                  qs_recon_note_any(&n.lin[6]),
              "something to say for q (dead), o (fp64), down (raised)");
    }
    snprintf(path, sizeof(path), "%s/final.h5", dir);
    if (write_tables(path, 1, ndead, raised, fp64, 0)) {
        CHECK(qs_recon_notes_read(path, &n, &e) == QS_OK, "read (7, 1): %s", e.msg);
        CHECK(n.lin[0].ndead == 16 && n.lin[5].ndead == 8, "final table: q %lld up %lld",
              (long long)n.lin[0].ndead, (long long)n.lin[5].ndead);
    }
    snprintf(path, sizeof(path), "%s/bad.h5", dir);
    if (write_tables(path, C, ndead, raised, fp64, 1)) {
        qs_err e2 = {0};
        CHECK(qs_recon_notes_read(path, &n, &e2) == QS_ERR_INPUT && strstr(e2.msg, path) &&
                  strstr(e2.msg, "table/ndead"),
              "misshapen table: %s", e2.msg);
    }
    snprintf(path, sizeof(path), "%s/missing.h5", dir);
    qs_err e3 = {0};
    CHECK(qs_recon_notes_read(path, &n, &e3) != QS_OK && strstr(e3.msg, path),
          "missing file: %s", e3.msg);
}

static void test_line(void) {
    qs_recon_notes n;
    char buf[1024];
    memset(&n, 0, sizeof(n));
    for (int k = 0; k < 7; ++k) n.lin[k].d_in = k == 6 ? 128 : 64;
    for (int k = 0; k < 7; ++k) n.lin[k].damp = 0.01;
    CHECK(qs_recon_notes_line(&n, 0.01, buf, sizeof(buf)) == 0 && buf[0] == 0, "nothing: '%s'",
          buf);
    for (int k = 0; k < 3; ++k) n.lin[k].ndead = 16;
    n.lin[4].ndead = n.lin[5].ndead = 8;
    CHECK(qs_recon_notes_line(&n, 0.01, buf, sizeof(buf)) == 5, "5 linears");
    CHECK(strcmp(buf, "dead input columns: q,k,v 16 of 64, gate,up 8 of 64 (no calibration "
                      "token activated them; their weights quantized to zero)") == 0,
          "dead line: '%s'", buf);
    /* k differs: q and v are named apart; up and down (other groups, equal numbers) together */
    n.lin[1].ndead = 0;
    n.lin[4].ndead = 0;
    n.lin[6].ndead = 8;
    n.lin[6].d_in = 64;
    n.lin[6].nraise = 2;
    n.lin[6].damp = 1.0;
    n.lin[3].fp64 = 1;
    CHECK(qs_recon_notes_line(&n, 0.01, buf, sizeof(buf)) == 5, "q v o up down");
    CHECK(strcmp(buf, "dead input columns: q 16 of 64, v 16 of 64, up,down 8 of 64 (no "
                      "calibration token activated them; their weights quantized to zero); "
                      "damping raised: down 0.01 -> 1 (raised 2 times); fp64 factorization: "
                      "o") == 0,
          "mixed line: '%s'", buf);
    char small[24];
    memset(small, 'x', sizeof(small));
    qs_recon_notes_line(&n, 0.01, small, sizeof(small));
    CHECK(memchr(small, 0, sizeof(small)) != NULL && strncmp(small, "dead input columns", 18) == 0,
          "short buffer terminated");
}

int main(void) {
    char dir[512];
    qs_test_tmpdir(dir, sizeof(dir), "recon_notes");
    test_read(dir);
    test_line();
    qs_test_rm_rf(dir);
    return qs_test_finish("test_recon_notes");
}
