/* gguf_file.h: GGUF v3 files (llama.cpp's format) laid out up front and written at known
 * offsets, so that several processes can write their own tensors into one file.
 *
 * A GGUF file is: a header (magic "GGUF", version 3, tensor count, key/value count), the
 * metadata key/values, one info per tensor (name, dims, GGML type, data offset), zero
 * padding to the alignment, then every tensor's data, each starting at a multiple of the
 * alignment (general.alignment, 32 by default) and zero-padded to the next one. llama.cpp
 * requires the tensors' data to follow each other in info order, so the whole layout is a
 * function of the ordered key/values and the ordered (name, type, shape) list alone.
 *
 * Use (serial or per MPI rank; the write stage coordinates the ranks, this file never
 * calls MPI):
 *   1. every rank builds the same qs_gguf_meta and the same tensor list (same order) and
 *      calls qs_gguf_layout_compute: header bytes and every tensor's absolute offset, the
 *      same bytes on every rank;
 *   2. one rank (the creator) calls qs_gguf_file_create(path, tag): it creates
 *      `<path>.tmp.<tag>` (tag: e.g. that rank's pid, broadcast to the others), writes the
 *      header and sizes the file; then (after a barrier) the other ranks
 *      qs_gguf_file_open the same temporary file, which also checks that its header equals
 *      their own layout's;
 *   3. each rank writes the bytes of the tensors it owns with qs_gguf_file_write (a whole
 *      tensor or consecutive pieces of it, e.g. row ranges) and qs_gguf_file_sync;
 *   4. the ranks agree that every tensor was written (qs_gguf_file_written counts the
 *      bytes each handle wrote); the creator then qs_gguf_file_commit (fsync, rename to
 *      `path`, fsync of the directory), or on any failure qs_gguf_file_abandon (unlink).
 * Padding bytes are never written: the file is sized with ftruncate, so they read as zero.
 * Writes of different handles must not overlap. Bytes are the same for any number of
 * writers because every byte has one fixed place.
 *
 * Shapes are given in row-major (numpy / Hugging Face) order, shape[ndim-1] being the
 * contiguous row; the file stores GGML's reversed order (ne[0] = row length). A row of a
 * block type (gguf_types.h) must be a whole number of blocks. Names must be shorter than
 * 64 bytes (GGML_MAX_NAME), at most 4 dims (GGML_MAX_DIMS).
 *
 * Ownership: qs_gguf_meta_new / qs_gguf_layout_compute / qs_gguf_file_create|open allocate;
 * qs_gguf_meta_free / qs_gguf_layout_free / qs_gguf_file_close|abandon release (all safe on
 * NULL). Keys, strings and names are copied; value arrays are encoded at the call. A file
 * handle keeps a pointer to its layout, which must outlive it.
 */
#ifndef QS_GGUF_FILE_H
#define QS_GGUF_FILE_H

#include <stddef.h>
#include <stdint.h>

#include "gguf_types.h"
#include "status.h"

#define QS_GGUF_VERSION 3
#define QS_GGUF_MAX_DIMS 4          /* GGML_MAX_DIMS */
#define QS_GGUF_NAME_MAX 64         /* GGML_MAX_NAME: names are at most 63 bytes */
#define QS_GGUF_DEFAULT_ALIGNMENT 32

/* Metadata value types, as stored (gguf_type in ggml). */
typedef enum qs_gguf_vtype {
    QS_GGUF_V_UINT8 = 0,
    QS_GGUF_V_INT8 = 1,
    QS_GGUF_V_UINT16 = 2,
    QS_GGUF_V_INT16 = 3,
    QS_GGUF_V_UINT32 = 4,
    QS_GGUF_V_INT32 = 5,
    QS_GGUF_V_FLOAT32 = 6,
    QS_GGUF_V_BOOL = 7,
    QS_GGUF_V_STRING = 8,
    QS_GGUF_V_ARRAY = 9,
    QS_GGUF_V_UINT64 = 10,
    QS_GGUF_V_INT64 = 11,
    QS_GGUF_V_FLOAT64 = 12
} qs_gguf_vtype;

/* ---- metadata ------------------------------------------------------------------------ */

/* An ordered list of key/values. Setting an existing key replaces its value in place (the
 * key keeps its position): a GGUF file never holds a key twice. */
typedef struct qs_gguf_meta qs_gguf_meta;

qs_status qs_gguf_meta_new(qs_gguf_meta **m, qs_err *err);
void qs_gguf_meta_free(qs_gguf_meta *m);

/* Keys: 1..65535 bytes. QS_ERR_INPUT naming the key on a bad key or value. */
qs_status qs_gguf_meta_set_u8(qs_gguf_meta *m, const char *key, uint8_t v, qs_err *err);
qs_status qs_gguf_meta_set_i8(qs_gguf_meta *m, const char *key, int8_t v, qs_err *err);
qs_status qs_gguf_meta_set_u16(qs_gguf_meta *m, const char *key, uint16_t v, qs_err *err);
qs_status qs_gguf_meta_set_i16(qs_gguf_meta *m, const char *key, int16_t v, qs_err *err);
qs_status qs_gguf_meta_set_u32(qs_gguf_meta *m, const char *key, uint32_t v, qs_err *err);
qs_status qs_gguf_meta_set_i32(qs_gguf_meta *m, const char *key, int32_t v, qs_err *err);
qs_status qs_gguf_meta_set_u64(qs_gguf_meta *m, const char *key, uint64_t v, qs_err *err);
qs_status qs_gguf_meta_set_i64(qs_gguf_meta *m, const char *key, int64_t v, qs_err *err);
qs_status qs_gguf_meta_set_f32(qs_gguf_meta *m, const char *key, float v, qs_err *err);
qs_status qs_gguf_meta_set_f64(qs_gguf_meta *m, const char *key, double v, qs_err *err);
qs_status qs_gguf_meta_set_bool(qs_gguf_meta *m, const char *key, int v, qs_err *err);
/* A NUL-terminated string (UTF-8 expected, written as its bytes). */
qs_status qs_gguf_meta_set_str(qs_gguf_meta *m, const char *key, const char *s, qs_err *err);
/* A string of n bytes (may contain any byte). */
qs_status qs_gguf_meta_set_strn(qs_gguf_meta *m, const char *key, const char *s, size_t n,
                                qs_err *err);

/* An array of n >= 1 scalars of type `elem` (any type but STRING and ARRAY), read from
 * `values` in host layout: uint8_t, int8_t, uint16_t, ..., float, double; BOOL elements are
 * uint8_t 0/1. Nested arrays are not offered (ggml's reader refuses them). */
qs_status qs_gguf_meta_set_array(qs_gguf_meta *m, const char *key, qs_gguf_vtype elem,
                                 const void *values, uint64_t n, qs_err *err);
/* An array of n >= 1 strings: s[i] of len[i] bytes (len NULL: NUL-terminated strings). */
qs_status qs_gguf_meta_set_str_array(qs_gguf_meta *m, const char *key, const char *const *s,
                                     const size_t *len, uint64_t n, qs_err *err);

int64_t qs_gguf_meta_count(const qs_gguf_meta *m);
/* 1 if `key` is set. */
int qs_gguf_meta_has(const qs_gguf_meta *m, const char *key);

/* ---- layout -------------------------------------------------------------------------- */

/* One tensor of the file. */
typedef struct qs_gguf_tensor_decl {
    const char *name;                 /* < 64 bytes, unique */
    qs_gguf_type type;
    int ndim;                         /* 1..4 */
    int64_t shape[QS_GGUF_MAX_DIMS];  /* row-major order: shape[ndim-1] = row length */
} qs_gguf_tensor_decl;

typedef struct qs_gguf_layout {
    uint32_t alignment;
    int64_t ntensors;
    uint64_t data_start;    /* file offset of the data section = header bytes (aligned) */
    uint64_t file_bytes;    /* data_start + sum of the padded tensor sizes */
    unsigned char *header;  /* (data_start,) owned: everything before the first tensor */
    char **names;           /* (ntensors,) owned */
    qs_gguf_type *types;    /* (ntensors,) */
    int64_t *rows;          /* (ntensors,) product of all dims but the last */
    uint64_t *row_bytes;    /* (ntensors,) bytes of one row */
    uint64_t *offset;       /* (ntensors,) absolute file offset of the tensor's data */
    uint64_t *nbytes;       /* (ntensors,) rows * row_bytes (without padding) */
} qs_gguf_layout;

/* Computes the layout of `meta` + tensors t (n >= 0, in file order). The alignment is the
 * u32 value of meta's "general.alignment" (a power of two) when set; otherwise 32, and the
 * header then carries "general.alignment" = 32 as its last key/value (meta is not changed).
 * QS_ERR_INPUT naming the tensor on a bad name, duplicate, shape, or a row that is not a
 * whole number of blocks of its type. */
qs_status qs_gguf_layout_compute(const qs_gguf_meta *meta, const qs_gguf_tensor_decl *t,
                                 int64_t n, qs_gguf_layout **out, qs_err *err);
void qs_gguf_layout_free(qs_gguf_layout *L);
/* Index of tensor `name`, or -1. */
int64_t qs_gguf_layout_find(const qs_gguf_layout *L, const char *name);

/* ---- the file ------------------------------------------------------------------------ */

typedef struct qs_gguf_file qs_gguf_file;

/* "<path>.tmp.<tag>" into buf (n bytes); returns the snprintf length. */
int qs_gguf_tmp_path(char *buf, size_t n, const char *path, long tag);

/* Creator: creates `<path>.tmp.<tag>` (replacing a stale one), writes L->header and sizes
 * the file to L->file_bytes. The parent directory of `path` must exist. */
qs_status qs_gguf_file_create(qs_gguf_file **f, const char *path, long tag,
                              const qs_gguf_layout *L, qs_err *err);
/* Other writers: opens the creator's `<path>.tmp.<tag>`; QS_ERR_RUNTIME naming it if its
 * size or header differ from L's (the ranks computed different layouts). */
qs_status qs_gguf_file_open(qs_gguf_file **f, const char *path, long tag,
                            const qs_gguf_layout *L, qs_err *err);

/* Writes n bytes at byte `off` of tensor t's data (pwrite at L->offset[t] + off).
 * QS_ERR_INPUT if the piece runs past the tensor. */
qs_status qs_gguf_file_write(qs_gguf_file *f, int64_t t, uint64_t off, const void *data,
                             size_t n, qs_err *err);
/* Bytes this handle wrote into tensor t so far. */
uint64_t qs_gguf_file_written(const qs_gguf_file *f, int64_t t);
/* fsync of this handle's writes (each writer, before the ranks agree). */
qs_status qs_gguf_file_sync(qs_gguf_file *f, qs_err *err);
/* Creator only: fsync, rename to `path` (replacing it), fsync of the directory. With
 * require_complete, first checks that this handle wrote every tensor completely (serial
 * use; in parallel use the ranks agree on that themselves). On failure the temporary file
 * is removed. */
qs_status qs_gguf_file_commit(qs_gguf_file *f, int require_complete, qs_err *err);
/* Releases the handle; a creator that did not commit removes the temporary file. */
void qs_gguf_file_close(qs_gguf_file *f);
/* Removes the temporary file (whichever handle calls it) and releases the handle. */
void qs_gguf_file_abandon(qs_gguf_file *f);

/* ---- tensor bytes -------------------------------------------------------------------- */

/* Encodes src (n,) as F32, F16 or BF16 little-endian into dst (n * 4 or n * 2 bytes),
 * rounding to nearest even (base/half.h). QS_ERR_INPUT for block types (their bytes come
 * from the quantizers). */
qs_status qs_gguf_encode_float(qs_gguf_type t, const float *src, int64_t n, void *dst,
                               qs_err *err);

#endif /* QS_GGUF_FILE_H */
