/* gguf_read.h: reads a GGUF v3 file back (qshard's own or llama.cpp's converter's): the
 * header, the metadata qshard needs to undo the layout (general.architecture,
 * general.alignment, <arch>.attention.head_count / head_count_kv; other keys are skipped),
 * every tensor info, and a tensor's values as f32 in Hugging Face's row order: block types
 * dequantized with qs_gguf_dequantize_rows (bit for bit llama.cpp's), F16/BF16 widened
 * exactly, and for the llama architecture the attn_q / attn_k rows (weights and biases)
 * un-permuted from GGML's interleaved RoPE order (the inverse of qs_gguf_permute_rows). So
 * eval of a written GGUF file computes on exactly the weights llama.cpp loads.
 *
 * Every length, count, offset and type is checked against the file's size before use; a bad
 * file is one QS_ERR_INPUT naming the file and what is wrong. The file is mapped read-only.
 *
 * Ownership: qs_gguf_reader_open fills *r (the map and the tensor table); qs_gguf_reader_close
 * releases them (safe on a zeroed struct).
 */
#ifndef QS_GGUF_READ_H
#define QS_GGUF_READ_H

#include <stddef.h>
#include <stdint.h>

#include "gguf_file.h"
#include "status.h"

typedef struct qs_gguf_rtensor {
    char name[QS_GGUF_NAME_MAX];
    qs_gguf_type type;
    int ndim;
    int64_t shape[QS_GGUF_MAX_DIMS]; /* row-major: shape[ndim-1] is the row length */
    int64_t rows;                    /* product of all dims but the last */
    uint64_t offset;                 /* absolute file offset of the data */
    uint64_t nbytes;                 /* rows * row bytes */
} qs_gguf_rtensor;

typedef struct qs_gguf_reader {
    char path[4096];
    unsigned char *map;              /* (size,) read-only mapping */
    size_t size;
    uint32_t version, alignment;
    char arch[64];                   /* general.architecture */
    int64_t head_count, head_count_kv; /* 0 when absent */
    qs_gguf_rtensor *t;              /* (ntensors,) owned, in file order */
    int64_t ntensors;
} qs_gguf_reader;

qs_status qs_gguf_reader_open(qs_gguf_reader *r, const char *path, qs_err *err);
void qs_gguf_reader_close(qs_gguf_reader *r);

/* Index of tensor `name`, -1 if absent. */
int64_t qs_gguf_reader_find(const qs_gguf_reader *r, const char *name);

/* Tensor i as f32 into out (count = all its elements), rows in Hugging Face order (see
 * above). QS_ERR_INPUT naming the file and tensor for a count mismatch, an unknown type or
 * rows the un-permutation cannot split into heads. */
qs_status qs_gguf_reader_f32(const qs_gguf_reader *r, int64_t i, float *out, int64_t count,
                             qs_err *err);

#endif /* QS_GGUF_READ_H */
