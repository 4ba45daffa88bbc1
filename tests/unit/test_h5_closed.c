/* test_h5_closed.c: the negative control of qshard's two HDF5 leak guards (issue 21, 10).
 * It leaks on purpose and must stay leaky: never "fix" it.
 *
 *  - default: qs_h5_check_closed (what every qshard command runs as it ends) is QS_OK with
 *    nothing open; after a file is created and a dataset opened and neither is closed, it
 *    is QS_ERR_INTERNAL naming the count ("2 HDF5 identifiers", files 1, datasets 1) and
 *    the file. The handles stay open to the end: LeakSanitizer does not report them (HDF5's
 *    ID table still points at them, and the library closes them at exit), which is why
 *    the count check exists; the test passes in the sanitizer build too.
 *  - --lose-buffer: also reads a variable-length string attribute, for which HDF5 mallocs
 *    the string, and drops the pointer without H5free_memory. The program itself exits 0;
 *    in the sanitizer build LeakSanitizer must report that allocation (stack through
 *    H5Aread) with tests/lsan.supp, so a suppression wide enough to cover any stack through
 *    libhdf5 fails test_h5_closed_lsan (tests/io.cmake).
 * Usage: test_h5_closed [--lose-buffer] */
#include <hdf5.h>
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "h5store.h"

/* Reads back a variable-length string attribute written on `file` and loses HDF5's copy. */
static void lose_buffer(hid_t file) {
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, H5T_VARIABLE);
    hid_t space = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(file, "note", t, space, H5P_DEFAULT, H5P_DEFAULT);
    const char *v = "deliberately lost";
    char *back = NULL; /* malloc'd by HDF5: the caller must H5free_memory it */
    CHECK(a >= 0 && H5Awrite(a, t, &v) >= 0 && H5Aread(a, t, &back) >= 0, "vlen attribute");
    CHECK(back && strcmp(back, v) == 0, "read back '%s'", back ? back : "(null)");
    back = NULL; /* the leak LeakSanitizer must see */
    if (a >= 0) H5Aclose(a);
    H5Sclose(space);
    H5Tclose(t);
}

int main(int argc, char **argv) {
    int lose = argc > 1 && strcmp(argv[1], "--lose-buffer") == 0;
    char dir[4096], path[4200];
    qs_test_tmpdir(dir, sizeof(dir), "h5_closed");
    snprintf(path, sizeof(path), "%s/leak.h5", dir);
    qs_err err = {0};
    CHECK(qs_h5_check_closed(&err) == QS_OK, "nothing open yet: %s", err.msg);

    qs_h5 h;
    qs_err e2 = {0};
    const int64_t dims[1] = {4};
    const float x[4] = {1, 2, 3, 4}; /* (4,) */
    CHECK(qs_h5_create(&h, path, &e2) == QS_OK, "create: %s", e2.msg);
    CHECK(qs_h5_write(&h, "x", QS_H5_F32, 1, dims, x, &e2) == QS_OK, "write: %s", e2.msg);
    hid_t ds = H5Dopen2((hid_t)h.file, "x", H5P_DEFAULT); /* never closed */
    CHECK(ds >= 0, "open dataset x");
    if (lose) lose_buffer((hid_t)h.file);

    qs_err e3 = {0};
    qs_status st = qs_h5_check_closed(&e3);
    printf("check: %s\n", e3.msg);
    CHECK(st == QS_ERR_INTERNAL, "an open file and dataset must be an internal error, got %d",
          (int)st);
    CHECK(strstr(e3.msg, "2 HDF5 identifiers still open") != NULL, "count: %s", e3.msg);
    CHECK(strstr(e3.msg, "files 1, datasets 1, groups 0, datatypes 0, attributes 0") != NULL,
          "kinds: %s", e3.msg);
    CHECK(strstr(e3.msg, "leak.h5") != NULL, "names the file: %s", e3.msg);
    /* the file and the dataset stay open: the control must not be fixed */
    qs_test_rm_rf(dir);
    return qs_test_finish("test_h5_closed");
}
