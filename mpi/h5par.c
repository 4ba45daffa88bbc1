/* h5par.c: parallel HDF5 through MPI-IO with reproducible bytes (see h5par.h). */
#include "h5par.h"

#include "h5types.h"

#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static MPI_Comm handle(const qs_comm *c) { return MPI_Comm_f2c(c->fcomm); }

/* A failed collective call: every rank is out of step, so abort all. */
static void die(const qs_h5par *h, const char *what, const char *name, const char *file,
                int line) {
    qs_err e = {0};
    qs_err_set_at(&e, QS_ERR_RUNTIME, file, line, "%s: %s %s failed (parallel HDF5)", h->tmp,
                  what, name ? name : "");
    qs_comm_abort(h->comm, &e);
}
#define DIE(h, what, name) die((h), (what), (name), __FILE__, __LINE__)

int64_t qs_h5par_reserve_bytes(int64_t data, int64_t ndatasets) {
    /* measured: ~1.1 KiB of metadata per dataset with its attributes (object header, link,
     * B-tree/heap share); 4 KiB per dataset and 1 MiB for the file bound it */
    return data + 4096 * ndatasets + (1 << 20);
}

/* Rank 0: reserves n bytes of the temp file (a sparse or full disk fails here, not in
 * HDF5); create = 1 creates (truncates) it first. A failure removes it and names the file
 * being written. */
static qs_status reserve_space(const qs_h5par *h, int64_t n, int create, qs_err *err) {
    int fd = open(h->tmp, O_WRONLY | O_CLOEXEC | (create ? O_CREAT | O_TRUNC : 0), 0644);
    if (fd < 0)
        return QS_FAIL(err, QS_ERR_RUNTIME, "%s: cannot create: %s", h->path, strerror(errno));
    int rc = posix_fallocate(fd, 0, (off_t)n);
    close(fd);
    if (rc != 0) {
        unlink(h->tmp);
        return QS_FAIL(err, QS_ERR_RUNTIME, "%s: cannot reserve %.1f MiB: %s%s", h->path,
                       (double)n / 1048576.0, strerror(rc),
                       rc == ENOSPC ? " (disk full: free space and rerun with --resume)" : "");
    }
    return QS_OK;
}

qs_status qs_h5par_create(qs_h5par *h, const qs_comm *c, const char *path, int64_t reserve,
                          qs_err *err) {
    qs_status st = QS_OK;
    memset(h, 0, sizeof(*h));
    h->comm = c;
    h->file = -1;
    long pid = (long)getpid();
    if (c->mpi && c->size > 1) MPI_Bcast(&pid, 1, MPI_LONG, 0, handle(c));
    int k = snprintf(h->tmp, sizeof(h->tmp), "%s.tmp.%ld", path, pid);
    if (k < 0 || (size_t)k >= sizeof(h->tmp) || strlen(path) >= sizeof(h->path))
        st = QS_FAIL(err, QS_ERR_INPUT, "%s: path too long", path);
    snprintf(h->path, sizeof(h->path), "%s", path);
    st = qs_comm_agree(c, st, err);
    if (st != QS_OK) return st;
    /* 1. the space, before HDF5 has the file: once it has, a failed write inside its
     * collective flush leaves the ranks in different barriers (a hang), and nothing can
     * close the file cleanly */
    if (reserve > 0 && c->rank == 0) st = reserve_space(h, reserve, 1, err);
    st = qs_comm_agree(c, st, err);
    if (st != QS_OK) return st;
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL); /* errors are reported through qs_err */
    hid_t fcpl = H5Pcreate(H5P_FILE_CREATE);
    H5Pset_obj_track_times(fcpl, 0); /* root group without timestamps */
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    H5Pset_libver_bounds(fapl, H5F_LIBVER_V18, H5F_LIBVER_V18);
    if (c->mpi) {
        H5Pset_fapl_mpio(fapl, handle(c), MPI_INFO_NULL);
        /* metadata written collectively: the same bytes whoever owns which raw data */
        H5Pset_coll_metadata_write(fapl, 1);
        /* metadata reads stay independent: a dataset is opened by its writer alone */
    }
    hid_t f = H5Fcreate(h->tmp, H5F_ACC_TRUNC, fcpl, fapl);
    H5Pclose(fcpl);
    H5Pclose(fapl);
    int opened = f >= 0;
    if (!opened) st = QS_FAIL(err, QS_ERR_RUNTIME, "%s: cannot create HDF5 file", h->tmp);
    int any_failed = qs_comm_any(c, !opened);
    if (any_failed && qs_comm_any(c, opened)) {
        qs_err e = {0};
        QS_FAIL(&e, QS_ERR_RUNTIME, "%s: created on some ranks only (parallel HDF5)", h->tmp);
        qs_comm_abort(c, &e);
    }
    st = qs_comm_agree(c, st, err);
    if (st != QS_OK) {
        if (c->rank == 0) unlink(h->tmp);
        return st;
    }
    h->file = f;
    /* 2. H5Fcreate truncated the file: reserve again. Space taken by someone else in between
     * cannot be handled by closing the file (step 1's reason): abort with file:line. */
    if (reserve > 0 && c->rank == 0) st = reserve_space(h, reserve, 0, err);
    if (qs_comm_any(c, st != QS_OK)) {
        qs_err e = {0};
        QS_FAIL(&e, QS_ERR_RUNTIME, "%s: the disk filled up while the file was created "
                "(parallel HDF5 cannot close a file on a full disk): free space and rerun "
                "with --resume", h->path);
        qs_comm_abort(c, &e);
    }
    return QS_OK;
}

/* Creates the parent groups of "a/b/name" (or all of `name` when whole = 1). */
static void ensure_groups(qs_h5par *h, const char *name, int whole) {
    char buf[1024];
    if (snprintf(buf, sizeof(buf), "%s", name) >= (int)sizeof(buf)) DIE(h, "name too long", name);
    size_t n = strlen(buf);
    for (size_t i = 1; i <= n; ++i) {
        if (buf[i] != '/' && !(whole && buf[i] == '\0')) continue;
        char keep = buf[i];
        buf[i] = '\0';
        htri_t ex = H5Lexists((hid_t)h->file, buf, H5P_DEFAULT);
        if (ex < 0) DIE(h, "lookup of", buf);
        if (ex == 0) {
            hid_t gcpl = H5Pcreate(H5P_GROUP_CREATE);
            H5Pset_obj_track_times(gcpl, 0);
            hid_t g = H5Gcreate2((hid_t)h->file, buf, H5P_DEFAULT, gcpl, H5P_DEFAULT);
            H5Pclose(gcpl);
            if (g < 0) DIE(h, "creating group", buf);
            H5Gclose(g);
        }
        buf[i] = keep;
    }
}

void qs_h5par_group(qs_h5par *h, const char *name) { ensure_groups(h, name, 1); }

void qs_h5par_dataset(qs_h5par *h, const char *name, qs_h5_type type, int ndim,
                      const int64_t *dims) {
    hsize_t hd[8];
    if (ndim < 0 || ndim > 8) DIE(h, "dataset rank of", name);
    for (int i = 0; i < ndim; ++i) hd[i] = (hsize_t)dims[i];
    ensure_groups(h, name, 0);
    hid_t space = H5Screate_simple(ndim, hd, NULL);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_obj_track_times(dcpl, 0);
    H5Pset_alloc_time(dcpl, H5D_ALLOC_TIME_EARLY);
    H5Pset_fill_time(dcpl, H5D_FILL_TIME_NEVER); /* every byte is written by its owner */
    hid_t ds = H5Dcreate2((hid_t)h->file, name, qs_h5_file_type(type), space, H5P_DEFAULT, dcpl,
                          H5P_DEFAULT);
    H5Pclose(dcpl);
    H5Sclose(space);
    if (ds < 0) DIE(h, "creating dataset", name);
    H5Dclose(ds);
}

static void write_attr(qs_h5par *h, const char *object, const char *name, hid_t ftype,
                       hid_t mtype, const void *v) {
    hid_t obj = H5Oopen((hid_t)h->file, object ? object : "/", H5P_DEFAULT);
    if (obj < 0) DIE(h, "opening object", object);
    hid_t space = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(obj, name, ftype, space, H5P_DEFAULT, H5P_DEFAULT);
    herr_t rc = a >= 0 ? H5Awrite(a, mtype, v) : -1;
    if (a >= 0) H5Aclose(a);
    H5Sclose(space);
    H5Oclose(obj);
    if (rc < 0) DIE(h, "writing attribute", name);
}

void qs_h5par_attr_i64(qs_h5par *h, const char *object, const char *name, int64_t v) {
    write_attr(h, object, name, H5T_STD_I64LE, H5T_NATIVE_INT64, &v);
}

void qs_h5par_attr_f64(qs_h5par *h, const char *object, const char *name, double v) {
    write_attr(h, object, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &v);
}

void qs_h5par_attr_str(qs_h5par *h, const char *object, const char *name, const char *v) {
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, strlen(v) + 1);
    H5Tset_strpad(t, H5T_STR_NULLTERM);
    write_attr(h, object, name, t, t, v);
    H5Tclose(t);
}

/* One transfer of rows [row0, row0 + nrows). */
static qs_status write_piece(qs_h5par *h, hid_t ds, const char *name, qs_h5_type type,
                             int64_t row0, int64_t nrows, const void *data, int collective,
                             qs_err *err) {
    qs_status st = QS_OK;
    hid_t fspace = H5Dget_space(ds), mspace = -1, dxpl = -1;
    hsize_t dims[8], start[8], count[8];
    int nd = H5Sget_simple_extent_ndims(fspace);
    if (nd < 1 || nd > 8) QS_THROW(err, QS_ERR_INTERNAL, "%s: dataset %s rank %d", h->tmp, name, nd);
    H5Sget_simple_extent_dims(fspace, dims, NULL);
    if (row0 < 0 || nrows < 0 || (hsize_t)(row0 + nrows) > dims[0])
        QS_THROW(err, QS_ERR_INTERNAL, "%s: rows [%lld, %lld) outside dataset %s", h->tmp,
                 (long long)row0, (long long)(row0 + nrows), name);
    for (int i = 0; i < nd; ++i) {
        start[i] = 0;
        count[i] = dims[i];
    }
    start[0] = (hsize_t)row0;
    count[0] = (hsize_t)nrows;
    if (nrows > 0) {
        H5Sselect_hyperslab(fspace, H5S_SELECT_SET, start, NULL, count, NULL);
        mspace = H5Screate_simple(nd, count, NULL);
    } else {
        H5Sselect_none(fspace);
        mspace = H5Screate(H5S_NULL);
    }
    dxpl = H5Pcreate(H5P_DATASET_XFER);
    if (h->comm->mpi)
        H5Pset_dxpl_mpio(dxpl, collective ? H5FD_MPIO_COLLECTIVE : H5FD_MPIO_INDEPENDENT);
    if (H5Dwrite(ds, qs_h5_mem_type(type), mspace, fspace, dxpl, data) < 0)
        QS_THROW(err, QS_ERR_RUNTIME, "%s: cannot write dataset %s (disk full?)", h->tmp, name);
done:
    if (dxpl >= 0) H5Pclose(dxpl);
    if (mspace >= 0) H5Sclose(mspace);
    if (fspace >= 0) H5Sclose(fspace);
    return st;
}

qs_status qs_h5par_write_rows(qs_h5par *h, const char *name, qs_h5_type type, int64_t row0,
                              int64_t nrows, const void *data, int collective, qs_err *err) {
    qs_status st = QS_OK;
    hid_t ds = H5Dopen2((hid_t)h->file, name, H5P_DEFAULT);
    if (ds < 0) QS_THROW(err, QS_ERR_RUNTIME, "%s: cannot open dataset %s", h->tmp, name);
    if (collective) {
        st = write_piece(h, ds, name, type, row0, nrows, data, 1, err);
    } else {
        /* independent: pieces of at most 1 GiB (MPI-IO counts are int) */
        hid_t sp = H5Dget_space(ds);
        hsize_t dims[8];
        int nd = H5Sget_simple_extent_dims(sp, dims, NULL);
        H5Sclose(sp);
        size_t row_bytes = (size_t)H5Tget_size(qs_h5_mem_type(type));
        for (int i = 1; i < nd; ++i) row_bytes *= (size_t)dims[i];
        int64_t step = (int64_t)(((size_t)1 << 30) / (row_bytes ? row_bytes : 1));
        if (step < 1) step = 1;
        for (int64_t r = 0; r < nrows && st == QS_OK; r += step) {
            int64_t k = nrows - r < step ? nrows - r : step;
            st = write_piece(h, ds, name, type, row0 + r, k,
                             (const char *)data + (size_t)r * row_bytes, 0, err);
        }
    }
done:
    if (ds >= 0) H5Dclose(ds);
    if (st != QS_OK && collective) qs_comm_abort(h->comm, err);
    return st;
}

static int fsync_path(const char *path, int dir) {
    int fd = open(path, dir ? O_RDONLY | O_DIRECTORY : O_RDONLY);
    if (fd < 0) return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

qs_status qs_h5par_close(qs_h5par *h, int keep, qs_err *err) {
    qs_status st = QS_OK;
    if (h->file >= 0) {
        herr_t rc = H5Fclose((hid_t)h->file);
        h->file = -1;
        if (rc < 0) st = QS_FAIL(err, QS_ERR_RUNTIME, "%s: close failed (disk full?)", h->tmp);
    }
    st = qs_comm_agree(h->comm, st, err);
    if (h->comm->rank == 0) {
        if (st == QS_OK && keep) {
            if (fsync_path(h->tmp, 0) != 0 || rename(h->tmp, h->path) != 0) {
                int e = errno;
                unlink(h->tmp);
                st = QS_FAIL(err, QS_ERR_RUNTIME, "%s: cannot finish writing: %s", h->path,
                             strerror(e));
            } else {
                char dir[4096];
                snprintf(dir, sizeof(dir), "%s", h->path);
                char *slash = strrchr(dir, '/');
                if (slash) *slash = '\0';
                else snprintf(dir, sizeof(dir), ".");
                if (fsync_path(dir, 1) != 0)
                    st = QS_FAIL(err, QS_ERR_RUNTIME, "%s: fsync of the directory failed", dir);
            }
        } else {
            unlink(h->tmp);
        }
    }
    return qs_comm_agree(h->comm, st, err);
}
