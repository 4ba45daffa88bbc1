/* h5store.c: HDF5 files of arrays + attributes with reproducible bytes and temp->rename. */
#include "h5store.h"
#include "h5types.h"

#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

hid_t qs_h5_mem_type(qs_h5_type t) {
    switch (t) {
    case QS_H5_F32: return H5T_NATIVE_FLOAT;
    case QS_H5_F64: return H5T_NATIVE_DOUBLE;
    case QS_H5_I32: return H5T_NATIVE_INT32;
    case QS_H5_I64: return H5T_NATIVE_INT64;
    case QS_H5_U8: return H5T_NATIVE_UINT8;
    case QS_H5_U16: return H5T_NATIVE_UINT16;
    }
    return H5T_NATIVE_FLOAT;
}

hid_t qs_h5_file_type(qs_h5_type t) {
    switch (t) {
    case QS_H5_F32: return H5T_IEEE_F32LE;
    case QS_H5_F64: return H5T_IEEE_F64LE;
    case QS_H5_I32: return H5T_STD_I32LE;
    case QS_H5_I64: return H5T_STD_I64LE;
    case QS_H5_U8: return H5T_STD_U8LE;
    case QS_H5_U16: return H5T_STD_U16LE;
    }
    return H5T_IEEE_F32LE;
}

static size_t type_size(qs_h5_type t) {
    switch (t) {
    case QS_H5_F32: case QS_H5_I32: return 4;
    case QS_H5_F64: case QS_H5_I64: return 8;
    case QS_H5_U8: return 1;
    case QS_H5_U16: return 2;
    }
    return 4;
}

qs_status qs_h5_create(qs_h5 *h, const char *path, qs_err *err) {
    memset(h, 0, sizeof(*h));
    h->file = -1;
    snprintf(h->path, sizeof(h->path), "%s", path);
    int k = snprintf(h->tmp, sizeof(h->tmp), "%s.tmp.%ld", path, (long)getpid());
    if (k < 0 || (size_t)k >= sizeof(h->tmp))
        return QS_FAIL(err, QS_ERR_INPUT, "%s: path too long", path);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL); /* errors are reported through qs_err */
    hid_t fcpl = H5Pcreate(H5P_FILE_CREATE);
    H5Pset_obj_track_times(fcpl, 0); /* root group: no timestamps either */
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    /* fixed file format bounds: the bytes do not depend on the library's defaults */
    H5Pset_libver_bounds(fapl, H5F_LIBVER_V18, H5F_LIBVER_V18);
    errno = 0;
    hid_t f = H5Fcreate(h->tmp, H5F_ACC_TRUNC, fcpl, fapl);
    const int e = errno;
    H5Pclose(fcpl);
    H5Pclose(fapl);
    if (f < 0) {
        unlink(h->tmp); /* a full disk may have let the file exist without its superblock */
        return QS_FAIL(err, QS_ERR_RUNTIME, "%s: cannot create HDF5 file%s%s", h->path,
                       e ? ": " : "", e ? strerror(e) : "");
    }
    h->file = f;
    h->writing = 1;
    return QS_OK;
}

qs_status qs_h5_open(qs_h5 *h, const char *path, qs_err *err) {
    memset(h, 0, sizeof(*h));
    h->file = -1;
    snprintf(h->path, sizeof(h->path), "%s", path);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    if (access(path, R_OK) != 0)
        return QS_FAIL(err, QS_ERR_INPUT, "%s: cannot open: %s", path, strerror(errno));
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) return QS_FAIL(err, QS_ERR_INPUT, "%s: not a readable HDF5 file", path);
    h->file = f;
    return QS_OK;
}

/* Creates intermediate groups of "a/b/name" (timestamps off). */
static qs_status ensure_groups(qs_h5 *h, const char *name, qs_err *err) {
    char buf[512];
    snprintf(buf, sizeof(buf), "%s", name);
    for (char *p = buf + 1; *p; ++p) {
        if (*p != '/') continue;
        *p = '\0';
        if (H5Lexists((hid_t)h->file, buf, H5P_DEFAULT) <= 0) {
            hid_t gcpl = H5Pcreate(H5P_GROUP_CREATE);
            H5Pset_obj_track_times(gcpl, 0);
            hid_t g = H5Gcreate2((hid_t)h->file, buf, H5P_DEFAULT, gcpl, H5P_DEFAULT);
            H5Pclose(gcpl);
            if (g < 0) return QS_FAIL(err, QS_ERR_RUNTIME, "%s: cannot create group %s", h->path, buf);
            H5Gclose(g);
        }
        *p = '/';
    }
    return QS_OK;
}

qs_status qs_h5_write(qs_h5 *h, const char *name, qs_h5_type type, int ndim,
                      const int64_t *dims, const void *data, qs_err *err) {
    hsize_t hd[8];
    if (ndim < 0 || ndim > 8) return QS_FAIL(err, QS_ERR_INTERNAL, "h5: ndim %d", ndim);
    for (int i = 0; i < ndim; ++i) hd[i] = (hsize_t)dims[i];
    qs_status st = ensure_groups(h, name, err);
    if (st != QS_OK) return st;
    hid_t space = H5Screate_simple(ndim, hd, NULL);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_obj_track_times(dcpl, 0);
    hid_t ds = H5Dcreate2((hid_t)h->file, name, qs_h5_file_type(type), space, H5P_DEFAULT, dcpl,
                          H5P_DEFAULT);
    herr_t rc = -1;
    if (ds >= 0) rc = H5Dwrite(ds, qs_h5_mem_type(type), H5S_ALL, H5S_ALL, H5P_DEFAULT, data);
    if (ds >= 0) H5Dclose(ds);
    H5Pclose(dcpl);
    H5Sclose(space);
    if (ds < 0 || rc < 0)
        return QS_FAIL(err, QS_ERR_RUNTIME, "%s: cannot write dataset %s (disk full?)", h->path,
                       name);
    return QS_OK;
}

static hid_t open_object(qs_h5 *h, const char *object) {
    if (!object) return H5Oopen((hid_t)h->file, "/", H5P_DEFAULT);
    return H5Oopen((hid_t)h->file, object, H5P_DEFAULT);
}

static qs_status write_attr(qs_h5 *h, const char *object, const char *name, hid_t ftype,
                            hid_t mtype, const void *v, qs_err *err) {
    hid_t obj = open_object(h, object);
    if (obj < 0) return QS_FAIL(err, QS_ERR_INTERNAL, "%s: no object %s", h->path, object);
    hid_t space = H5Screate(H5S_SCALAR);
    if (H5Aexists(obj, name) > 0) H5Adelete(obj, name);
    hid_t a = H5Acreate2(obj, name, ftype, space, H5P_DEFAULT, H5P_DEFAULT);
    herr_t rc = a >= 0 ? H5Awrite(a, mtype, v) : -1;
    if (a >= 0) H5Aclose(a);
    H5Sclose(space);
    H5Oclose(obj);
    if (rc < 0) return QS_FAIL(err, QS_ERR_RUNTIME, "%s: cannot write attribute %s", h->path, name);
    return QS_OK;
}

qs_status qs_h5_attr_i64(qs_h5 *h, const char *object, const char *name, int64_t v,
                         qs_err *err) {
    return write_attr(h, object, name, H5T_STD_I64LE, H5T_NATIVE_INT64, &v, err);
}

qs_status qs_h5_attr_f64(qs_h5 *h, const char *object, const char *name, double v,
                         qs_err *err) {
    return write_attr(h, object, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &v, err);
}

qs_status qs_h5_attr_str(qs_h5 *h, const char *object, const char *name, const char *v,
                         qs_err *err) {
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, strlen(v) + 1);
    H5Tset_strpad(t, H5T_STR_NULLTERM);
    qs_status st = write_attr(h, object, name, t, t, v, err);
    H5Tclose(t);
    return st;
}

int qs_h5_has(qs_h5 *h, const char *name) {
    return H5Lexists((hid_t)h->file, name, H5P_DEFAULT) > 0;
}

qs_status qs_h5_read(qs_h5 *h, const char *name, qs_h5_type type, int *ndim, int64_t *dims,
                     void **data, qs_err *err) {
    *data = NULL;
    if (H5Lexists((hid_t)h->file, name, H5P_DEFAULT) <= 0)
        return QS_FAIL(err, QS_ERR_INPUT, "%s: no dataset %s", h->path, name);
    hid_t ds = H5Dopen2((hid_t)h->file, name, H5P_DEFAULT);
    if (ds < 0) return QS_FAIL(err, QS_ERR_INPUT, "%s: cannot open dataset %s", h->path, name);
    hid_t space = H5Dget_space(ds);
    hsize_t hd[8];
    int nd = H5Sget_simple_extent_ndims(space);
    qs_status st = QS_OK;
    if (nd < 0 || nd > 8) {
        st = QS_FAIL(err, QS_ERR_INPUT, "%s: dataset %s has rank %d", h->path, name, nd);
    } else {
        H5Sget_simple_extent_dims(space, hd, NULL);
        size_t n = 1;
        for (int i = 0; i < nd; ++i) {
            dims[i] = (int64_t)hd[i];
            n *= (size_t)hd[i];
        }
        *ndim = nd;
        *data = qs_malloc(n * type_size(type), err, name);
        if (!*data)
            st = QS_ERR_RUNTIME;
        else if (H5Dread(ds, qs_h5_mem_type(type), H5S_ALL, H5S_ALL, H5P_DEFAULT, *data) < 0) {
            free(*data);
            *data = NULL;
            st = QS_FAIL(err, QS_ERR_INPUT, "%s: cannot read dataset %s", h->path, name);
        }
    }
    H5Sclose(space);
    H5Dclose(ds);
    return st;
}

static qs_status read_attr(qs_h5 *h, const char *object, const char *name, hid_t mtype,
                           void *v, qs_err *err) {
    hid_t obj = open_object(h, object);
    if (obj < 0) return QS_FAIL(err, QS_ERR_INPUT, "%s: no object %s", h->path, object);
    qs_status st = QS_OK;
    if (H5Aexists(obj, name) <= 0) {
        st = QS_FAIL(err, QS_ERR_INPUT, "%s: no attribute %s", h->path, name);
    } else {
        hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
        if (a < 0 || H5Aread(a, mtype, v) < 0)
            st = QS_FAIL(err, QS_ERR_INPUT, "%s: cannot read attribute %s", h->path, name);
        if (a >= 0) H5Aclose(a);
    }
    H5Oclose(obj);
    return st;
}

qs_status qs_h5_read_attr_i64(qs_h5 *h, const char *object, const char *name, int64_t *v,
                              qs_err *err) {
    return read_attr(h, object, name, H5T_NATIVE_INT64, v, err);
}

qs_status qs_h5_read_attr_f64(qs_h5 *h, const char *object, const char *name, double *v,
                              qs_err *err) {
    return read_attr(h, object, name, H5T_NATIVE_DOUBLE, v, err);
}

qs_status qs_h5_commit(qs_h5 *h, qs_err *err) {
    if (h->file < 0) return QS_FAIL(err, QS_ERR_INTERNAL, "%s: commit of a closed file", h->path);
    herr_t rc = H5Fclose((hid_t)h->file);
    h->file = -1;
    if (!h->writing) return rc < 0 ? QS_FAIL(err, QS_ERR_RUNTIME, "%s: close failed", h->path) : QS_OK;
    if (rc < 0) {
        unlink(h->tmp);
        return QS_FAIL(err, QS_ERR_RUNTIME, "%s: close failed (disk full?)", h->path);
    }
    int fd = open(h->tmp, O_RDONLY);
    int ok = fd >= 0 && fsync(fd) == 0;
    if (fd >= 0) close(fd);
    if (!ok || rename(h->tmp, h->path) != 0) {
        int e = errno;
        unlink(h->tmp);
        return QS_FAIL(err, QS_ERR_RUNTIME, "%s: cannot finish writing: %s", h->path, strerror(e));
    }
    h->writing = 0;
    return QS_OK;
}

void qs_h5_abandon(qs_h5 *h) {
    if (h->file >= 0 && h->file != 0) H5Fclose((hid_t)h->file);
    if (h->writing && h->tmp[0]) unlink(h->tmp);
    h->file = -1;
    h->writing = 0;
}

qs_status qs_h5_read_into(qs_h5 *h, const char *name, qs_h5_type type, int64_t n, void *dst,
                          size_t elem, qs_err *err) {
    void *data = NULL;
    qs_status st = qs_h5_read_n(h, name, type, n, &data, err);
    if (st == QS_OK) memcpy(dst, data, (size_t)n * elem);
    free(data);
    return st;
}

qs_status qs_h5_read_n(qs_h5 *h, const char *name, qs_h5_type type, int64_t n, void **data,
                       qs_err *err) {
    int nd = 0;
    int64_t dims[8];
    qs_status st = qs_h5_read(h, name, type, &nd, dims, data, err);
    if (st != QS_OK) return st;
    int64_t total = 1;
    for (int i = 0; i < nd; ++i) total *= dims[i];
    if (total == n) return QS_OK;
    free(*data);
    *data = NULL;
    return QS_FAIL(err, QS_ERR_INPUT, "%s: dataset '%s' has %lld elements, expected %lld",
                   h->path, name, (long long)total, (long long)n);
}

qs_status qs_h5_check_closed(qs_err *err) {
    ssize_t n = H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL);
    if (n == 0) return QS_OK;
    if (n < 0) return QS_FAIL(err, QS_ERR_INTERNAL, "HDF5: cannot count open identifiers");
    static const unsigned kinds[5] = {H5F_OBJ_FILE, H5F_OBJ_DATASET, H5F_OBJ_GROUP,
                                      H5F_OBJ_DATATYPE, H5F_OBJ_ATTR};
    long long k[5];
    for (int i = 0; i < 5; ++i) k[i] = (long long)H5Fget_obj_count(H5F_OBJ_ALL, kinds[i]);
    char file[1024] = "?";
    hid_t first = -1;
    if (H5Fget_obj_ids(H5F_OBJ_ALL, H5F_OBJ_ALL, 1, &first) == 1 &&
        H5Fget_name(first, file, sizeof(file)) < 0)
        snprintf(file, sizeof(file), "?");
    return QS_FAIL(err, QS_ERR_INTERNAL,
                   "%lld HDF5 identifier%s still open at exit (files %lld, datasets %lld, "
                   "groups %lld, datatypes %lld, attributes %lld; first in %s): a missing "
                   "H5*close",
                   (long long)n, n == 1 ? "" : "s", k[0], k[1], k[2], k[3], k[4], file);
}
