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
 * Ownership: qs_st_file owns its mapping and its tensor table; qs_st_file_close releases
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
    QS_DTYPE_I32 = 3
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
} qs_st_file;

/* Opens and validates one safetensors file. Errors name `path` and the cause. */
qs_status qs_st_open(qs_st_file *f, const char *path, qs_err *err);
void qs_st_close(qs_st_file *f);

/* Finds a tensor by name (NULL if absent). */
const qs_st_tensor *qs_st_find(const qs_st_file *f, const char *name);

size_t qs_dtype_size(qs_dtype dt);
const char *qs_dtype_name(qs_dtype dt);
int64_t qs_st_numel(const qs_st_tensor *t);

/* Converts elements [start, start+count) of a F32/F16/BF16 tensor to f32 in `out`
 * (count,). I32 tensors are a QS_ERR_INPUT here (use the raw data). */
qs_status qs_st_read_f32(const qs_st_tensor *t, int64_t start, int64_t count, float *out,
                         qs_err *err);

/* A checkpoint: all shards of a model directory, with a name -> (shard, tensor) lookup. */
typedef struct qs_checkpoint {
    char *dir;                     /* owned */
    qs_st_file *shards;            /* (nshards,) */
    int nshards;
    /* name lookup: sorted array of (name, shard, index) */
    struct qs_ckpt_entry { const char *name; int shard; int64_t index; } *entries;
    int64_t nentries;
} qs_checkpoint;

/* Opens `dir`: model.safetensors, or model.safetensors.index.json and the shards it names
 * (plain file names inside `dir`; symlinks allowed; "..", "/" and absolute names refused).
 * Every name in the weight_map must be in the shard it names, and vice versa no tensor may
 * appear in two shards. */
qs_status qs_ckpt_open(qs_checkpoint *ck, const char *dir, qs_err *err);
void qs_ckpt_close(qs_checkpoint *ck);
const qs_st_tensor *qs_ckpt_find(const qs_checkpoint *ck, const char *name);
/* Path of the shard holding `t`'s file, for error messages. */
const char *qs_ckpt_file_of(const qs_checkpoint *ck, const char *name);

#endif /* QS_SAFETENSORS_H */
