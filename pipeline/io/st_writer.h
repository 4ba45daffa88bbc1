/* st_writer.h: a streaming safetensors writer (declare every tensor, then stream the bytes).
 *
 * The file is never held in memory: the caller declares each tensor (name, dtype, shape)
 * first, the writer lays the data out contiguously in the declared order, writes the JSON
 * header (names in the declared order, data_offsets relative to the end of the header,
 * optional "__metadata__": {"format": "pt"}, padded with spaces to a multiple of 8 bytes),
 * and the caller then streams each tensor's bytes in the declared order, in one or more
 * pieces. The bytes go to `<path>.tmp.<pid>`; qs_st_writer_finish checks that every tensor
 * got exactly its byte count, fsyncs, renames to `<path>` and fsyncs the directory, so a
 * reader never sees half a file. Any failure (or qs_st_writer_free before finish) unlinks
 * the temporary file. Errors name the file.
 *
 * Ownership: qs_st_writer_open allocates the writer; qs_st_writer_free releases it (always
 * call it, after finish or after an error). Names are copied at declaration.
 */
#ifndef QS_ST_WRITER_H
#define QS_ST_WRITER_H

#include <stddef.h>
#include <stdint.h>

#include "safetensors.h"
#include "status.h"

typedef struct qs_st_writer qs_st_writer;

/* Starts a writer for `path`; metadata_pt = 1 adds "__metadata__": {"format": "pt"}.
 * Nothing touches the disk until qs_st_writer_begin. */
qs_status qs_st_writer_open(qs_st_writer **w, const char *path, int metadata_pt, qs_err *err);

/* Declares the next tensor (0 <= ndim <= QS_ST_MAX_DIMS, 0 = a scalar; every dim >= 0).
 * QS_ERR_INPUT on a duplicate or empty name, a bad shape or a declaration after begin. */
qs_status qs_st_writer_declare(qs_st_writer *w, const char *name, qs_dtype dt, int ndim,
                               const int64_t *shape, qs_err *err);

/* Bytes of the data section declared so far (sum of all tensors). */
uint64_t qs_st_writer_data_bytes(const qs_st_writer *w);

/* Creates the temporary file and writes the header. */
qs_status qs_st_writer_begin(qs_st_writer *w, qs_err *err);

/* Streams `nbytes` bytes of tensor `name`, which must be the current tensor (the first
 * declared tensor not yet complete); a tensor may come in several pieces. QS_ERR_INPUT if
 * `name` is not the current tensor or the piece exceeds its remaining bytes. */
qs_status qs_st_writer_put(qs_st_writer *w, const char *name, const void *data, size_t nbytes,
                           qs_err *err);

/* Checks that every tensor is complete, fsyncs, renames to the final path and fsyncs the
 * directory. On failure the temporary file is removed. */
qs_status qs_st_writer_finish(qs_st_writer *w, qs_err *err);

/* Releases the writer; if it was not finished, closes and unlinks the temporary file.
 * Safe on NULL. */
void qs_st_writer_free(qs_st_writer *w);

/* fsyncs directory `dir` (after a rename inside it). QS_ERR_RUNTIME naming it on failure. */
qs_status qs_st_fsync_dir(const char *dir, qs_err *err);

#endif /* QS_ST_WRITER_H */
