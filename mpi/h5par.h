/* h5par.h: parallel HDF5 files (Open MPI's MPI-IO driver): the only place that calls
 * H5Pset_fapl_mpio. Every rank opens the same file, creates the same groups, datasets and
 * attributes in the same order (collective, object timestamps off, no fill values, fixed
 * library-version bounds as io/h5store.c), then writes the rows it owns (independent or
 * collective transfers). Equal creation sequences and equal data give equal bytes at any
 * rank count.
 *
 * Failure model (docs/design.md): creating the file is agreed (every rank gets the same
 * status; a mix of opened and failed ranks aborts). A failing collective call (group,
 * dataset, attribute, collective write) leaves ranks out of step: it aborts every rank
 * with file:line. Independent writes return their status; the caller agrees on it before
 * the collective close. The file lives under `<path>.tmp.<pid of rank 0>` until
 * qs_h5par_close(keep = 1) renames it (rank 0, after fsync); keep = 0 removes it.
 *
 * Without MPI (a serial qs_comm) the same calls write through HDF5's default driver.
 * Ownership: qs_h5par owns its HDF5 file handle; close releases it.
 */
#ifndef QS_H5PAR_H
#define QS_H5PAR_H

#include <stdint.h>

#include "h5store.h"
#include "comm.h"
#include "status.h"

typedef struct qs_h5par {
    const qs_comm *comm;  /* borrowed */
    int64_t file;         /* hid_t, -1 when closed */
    char path[4096];      /* final name */
    char tmp[4096];       /* name while writing (same on every rank) */
} qs_h5par;

/* Collective: creates the file (truncating a stale temp file) and reserves `reserve` bytes
 * of disk for it (posix_fallocate on rank 0; 0 = no reservation). Reserving the whole file
 * up front is what keeps a full disk from failing inside HDF5's collective flush and close,
 * where ranks would hang or crash: it fails here instead, agreed, as QS_ERR_RUNTIME naming
 * the file, with nothing left behind. The space is reserved before HDF5 opens the file
 * (a file HDF5 holds cannot be closed on a full disk) and again after H5Fcreate truncated
 * it; should the disk fill up between the two, every rank aborts with file:line. Agreed
 * status. */
qs_status qs_h5par_create(qs_h5par *h, const qs_comm *c, const char *path, int64_t reserve,
                          qs_err *err);

/* Bytes to reserve for a file of `data` raw bytes in `ndatasets` datasets: the data plus a
 * bound on HDF5's metadata (superblock, groups, object headers, attributes). */
int64_t qs_h5par_reserve_bytes(int64_t data, int64_t ndatasets);

/* Collective: creates dataset `name` ("a/b" creates group a) of `type` and shape dims
 * (contiguous, allocated at creation, never filled). Aborts on failure. */
void qs_h5par_dataset(qs_h5par *h, const char *name, qs_h5_type type, int ndim,
                      const int64_t *dims);
/* Collective: creates group `name` (and its parents) if absent. Aborts on failure. */
void qs_h5par_group(qs_h5par *h, const char *name);

/* Collective: a scalar attribute on `object` (NULL = root group), same value on every rank.
 * Aborts on failure. */
void qs_h5par_attr_i64(qs_h5par *h, const char *object, const char *name, int64_t v);
void qs_h5par_attr_f64(qs_h5par *h, const char *object, const char *name, double v);
void qs_h5par_attr_str(qs_h5par *h, const char *object, const char *name, const char *v);

/* Writes rows [row0, row0 + nrows) (first dimension) of dataset `name` from data (nrows x
 * the other dimensions, row-major, in `type`). collective = 0: independent (only the
 * writing rank calls; returns a status naming the file and dataset); collective = 1: every
 * rank calls (nrows may be 0) and a failure aborts. */
qs_status qs_h5par_write_rows(qs_h5par *h, const char *name, qs_h5_type type, int64_t row0,
                              int64_t nrows, const void *data, int collective, qs_err *err);

/* Collective: closes the file; keep = 1 renames the temp file to the final name (rank 0,
 * after fsync; the directory is fsynced), keep = 0 removes it. Agreed status. */
qs_status qs_h5par_close(qs_h5par *h, int keep, qs_err *err);

#endif /* QS_H5PAR_H */
