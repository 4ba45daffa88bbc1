/* h5store.h: small HDF5 files of named arrays and attributes (per-layer results in the
 * run directory). Files are written with object timestamps off and datasets created in
 * the caller's order, so equal data give equal bytes; a file is written under a temp name
 * and renamed by qs_h5_commit (never half a file under the final name).
 * No MPI here: a parallel writer gets its file-access property list from mpi/.
 *
 * Ownership: qs_h5 owns its HDF5 handles; close/commit/abandon release them.
 * Arrays returned by qs_h5_read_* are malloc'd; the caller frees them.
 */
#ifndef QS_H5STORE_H
#define QS_H5STORE_H

#include <stdint.h>

#include "status.h"

typedef enum qs_h5_type {
    QS_H5_F32 = 0,
    QS_H5_F64 = 1,
    QS_H5_I32 = 2,
    QS_H5_I64 = 3,
    QS_H5_U8 = 4,
    QS_H5_U16 = 5
} qs_h5_type;

typedef struct qs_h5 {
    int64_t file;               /* hid_t */
    int writing;
    char path[4096];
    char tmp[4096];
} qs_h5;

/* Creates `path` for writing (actually `path`.tmp.<pid> until commit). */
qs_status qs_h5_create(qs_h5 *h, const char *path, qs_err *err);
/* Opens an existing file read-only. Errors name the file. */
qs_status qs_h5_open(qs_h5 *h, const char *path, qs_err *err);

/* Writes dataset `name` ("group/name" creates the groups) of rank ndim with dims. */
qs_status qs_h5_write(qs_h5 *h, const char *name, qs_h5_type type, int ndim,
                      const int64_t *dims, const void *data, qs_err *err);
/* Attributes on the root group (or on a dataset when `object` is not NULL). */
qs_status qs_h5_attr_i64(qs_h5 *h, const char *object, const char *name, int64_t v,
                         qs_err *err);
qs_status qs_h5_attr_f64(qs_h5 *h, const char *object, const char *name, double v,
                         qs_err *err);
qs_status qs_h5_attr_str(qs_h5 *h, const char *object, const char *name, const char *v,
                         qs_err *err);

/* 1 if dataset (or group) `name` exists; "a/b/c" needs its groups to exist too. */
int qs_h5_has(qs_h5 *h, const char *name);

/* Reads a whole dataset: shape into dims (up to 8), element count into *n; data malloc'd
 * and converted to `type`. A missing dataset or a type HDF5 cannot convert is an error
 * naming the file and the dataset. */
qs_status qs_h5_read(qs_h5 *h, const char *name, qs_h5_type type, int *ndim, int64_t *dims,
                     void **data, qs_err *err);
/* qs_h5_read of a dataset that must hold exactly n elements (any shape); another count is
 * QS_ERR_INPUT naming the file and the dataset, with *data freed and NULL. */
qs_status qs_h5_read_n(qs_h5 *h, const char *name, qs_h5_type type, int64_t n, void **data,
                       qs_err *err);
/* qs_h5_read_n into the caller's buffer dst (n elements of elem bytes). */
qs_status qs_h5_read_into(qs_h5 *h, const char *name, qs_h5_type type, int64_t n, void *dst,
                          size_t elem, qs_err *err);
qs_status qs_h5_read_attr_i64(qs_h5 *h, const char *object, const char *name, int64_t *v,
                              qs_err *err);
qs_status qs_h5_read_attr_f64(qs_h5 *h, const char *object, const char *name, double *v,
                              qs_err *err);

/* Write mode: flush, close, fsync, rename to the final name. Read mode: close. */
qs_status qs_h5_commit(qs_h5 *h, qs_err *err);
/* Closes and (in write mode) removes the temp file. Safe on a zeroed struct. */
void qs_h5_abandon(qs_h5 *h);

/* Every HDF5 identifier this process opened is closed: QS_OK when
 * H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL) is 0 (no file, dataset, group, datatype or
 * attribute open), otherwise QS_ERR_INTERNAL naming the count per kind and the first
 * open object's file. qshard calls it as each command ends, before MPI_Finalize (which
 * ends the HDF5 library and would close leaked identifiers silently). Dataspaces and
 * property lists are not counted (HDF5 1.10 has no public count of them). */
qs_status qs_h5_check_closed(qs_err *err);

#endif /* QS_H5STORE_H */
