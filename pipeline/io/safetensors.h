/* safetensors.h: read-only access to safetensors files through mmap, validated like the
 * reference reader, and a checkpoint (one file or shards + model.safetensors.index.json).
 *
 * Validation: 8-byte little-endian header length capped (100 MB) and inside the file,
 * JSON header object, each entry {dtype, shape, data_offsets}, offsets integral, <= 2^53,
 * sorted, contiguous from 0, non-overlapping and ending exactly at the file end, byte length
 * = dtype size x prod(shape) (overflow-checked), no duplicate names. "__metadata__" is kept
 * as string pairs. Dtypes F32/F16/BF16 (converted to f32 on access) and I32 are accepted;
 * any other dtype is a QS_ERR_INPUT naming the file and tensor.
 *
 * Ownership: qs_st_file owns its mapping and its tensor table; qs_st_close releases
 * both (safe on a zeroed struct). Tensor data pointers stay valid until close.
 */
#ifndef QS_SAFETENSORS_H
#define QS_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "status.h"

#define QS_ST_MAX_DIMS 8

typedef enum qs_dtype {
    QS_DTYPE_F32 = 0,
    QS_DTYPE_F16 = 1,
    QS_DTYPE_BF16 = 2,
    QS_DTYPE_I32 = 3,
    QS_DTYPE_I64 = 4 /* compressed-tensors weight_shape; read as raw bytes only (not as f32) */
} qs_dtype;

typedef struct qs_st_tensor {
    char *name;                    /* owned */
    qs_dtype dtype;
    int ndim;
    int64_t shape[QS_ST_MAX_DIMS];
    uint64_t offset;               /* absolute byte offset of the data in the file */
    uint64_t nbytes;
    const unsigned char *data;     /* into the mapping */
} qs_st_tensor;

typedef struct qs_st_file {
    char *path;                    /* owned */
    unsigned char *map;            /* mmap of the whole file */
    uint64_t size;
    qs_st_tensor *tensors;         /* (ntensors,) sorted by data offset */
    int64_t ntensors;
    int64_t *by_name;              /* (ntensors,) indices into tensors, sorted by name */
    char **meta_keys;              /* (nmeta,) "__metadata__" keys, owned */
    char **meta_values;            /* (nmeta,) their string values, owned */
    int64_t nmeta;
    uint64_t header_len;           /* N of the 8-byte prefix; data starts at 8 + N */
} qs_st_file;

/* Opens and validates one safetensors file. Errors name `path` and the cause:
 * QS_ERR_INPUT for a missing/unreadable/invalid file, QS_ERR_RUNTIME for mmap/OOM.
 * No tensor data page is touched. On failure `f` is left closed (zeroed). */
qs_status qs_st_open(qs_st_file *f, const char *path, qs_err *err);
/* Releases everything; safe on a zeroed or already closed struct. */
void qs_st_close(qs_st_file *f);

/* Finds a tensor by name (NULL if absent); binary search over by_name. */
const qs_st_tensor *qs_st_find(const qs_st_file *f, const char *name);

/* Bytes of one element of `dt` (4, 2, 2, 4, 8), 0 for an unknown value. */
size_t qs_dtype_size(qs_dtype dt);
/* Safetensors spelling of `dt` ("F32", "F16", "BF16", "I32", "I64"; "?" when unknown), as
 * read here and written by st_writer. */
const char *qs_dtype_name(qs_dtype dt);
int64_t qs_st_numel(const qs_st_tensor *t);
/* Writes "(a, b, ...)" into out (n bytes, always terminated). */
void qs_shape_str(const int64_t *shape, int ndim, char *out, size_t n);

/* Converts elements [start, start+count) (flat, row-major) of a F32/F16/BF16 tensor to f32
 * in `out` (count,), exactly. A NaN or infinite element is QS_ERR_INPUT naming the tensor
 * and the element ((row, col) of a 2-D tensor), found in the same pass. I32 tensors are a
 * QS_ERR_INPUT here (use the raw data); a range outside the tensor is QS_ERR_INTERNAL.
 * Touches only the pages of that range. */
qs_status qs_st_read_f32(const qs_st_tensor *t, int64_t start, int64_t count, float *out,
                         qs_err *err);

/* A checkpoint: all shards of a model directory, with a name -> (shard, tensor) lookup. */
typedef struct qs_checkpoint {
    char *dir;                     /* owned */
    char *index_path;              /* owned; the index json, or NULL for one model.safetensors */
    qs_st_file *shards;            /* (nshards,) owned, sorted by file name */
    int nshards;
    /* name lookup: sorted array of (name, shard, index) */
    struct qs_ckpt_entry { const char *name; int shard; int64_t index; } *entries;
    int64_t nentries;
} qs_checkpoint;

/* Opens `dir`: model.safetensors (preferred when present, as Hugging Face does), or else
 * model.safetensors.index.json and the shards its weight_map names (plain file names inside
 * `dir`; symlinks allowed; "..", "/" and absolute names refused), each shard opened once.
 * Every name in the weight_map must be in the shard it names, every tensor of a shard must
 * be in the weight_map under that shard, and no tensor may appear in two shards.
 * Errors are QS_ERR_INPUT naming the index or shard file. On failure `ck` is closed. */
qs_status qs_ckpt_open(qs_checkpoint *ck, const char *dir, qs_err *err);
/* Releases everything; safe on a zeroed or already closed struct. */
void qs_ckpt_close(qs_checkpoint *ck);
/* Finds a tensor by name over all shards (NULL if absent). Pointer valid until close. */
const qs_st_tensor *qs_ckpt_find(const qs_checkpoint *ck, const char *name);
/* Path of the shard holding `t`'s file, for error messages. */
const char *qs_ckpt_file_of(const qs_checkpoint *ck, const char *name);
/* qs_st_read_f32 on a tensor of ck; an input error (a non-finite value, a non-float dtype)
 * names the file that holds the tensor. */
qs_status qs_ckpt_read_f32(const qs_checkpoint *ck, const qs_st_tensor *t, int64_t start,
                           int64_t count, float *out, qs_err *err);

#endif /* QS_SAFETENSORS_H */
