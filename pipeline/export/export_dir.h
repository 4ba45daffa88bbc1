/* export_dir.h: the checkpoint directory every quantized-model writer produces (GPTQ,
 * compressed-tensors): one home for the directory, sharding, streaming and side-file facts.
 *
 * Layout (docs/export.md):
 *   model.safetensors, or model-0000k-of-0000n.safetensors + model.safetensors.index.json
 *     ({"metadata": {"total_size"}, "weight_map"}) when the data exceed shard_bytes; tensors
 *     go to shards greedily in declared order and are never split;
 *   config.json: the source's, with "quantization_config" replaced by the writer's object;
 *   any extra JSON file the writer adds (quantize_config.json for GPTQ);
 *   tokenizer*, vocab.json, merges.txt, added_tokens.json, chat_template.jinja/.json,
 *     generation_config.json, special_tokens_map.json copied from the source when present.
 * Everything is written in `<dir>.tmp.<pid>/` (each shard through st_writer: temp file,
 * fsync, rename); finish fsyncs and renames it to `<dir>` (an existing `<dir>` is refused at
 * begin unless overwrite, then moved aside and removed after the rename). On any error, or
 * free before finish, the temporary directory is removed.
 *
 * Use: begin -> declare every tensor (index = declaration order) -> layout -> put each tensor
 * whole, in declared order -> [write_json] -> finish -> free.
 * Ownership: begin allocates; qs_export_dir_free releases (always call it). Names are copied,
 * data buffers stay the caller's.
 */
#ifndef QS_EXPORT_DIR_H
#define QS_EXPORT_DIR_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "safetensors.h"
#include "status.h"

#define QS_EXPORT_MAX_DIMS 4

typedef struct qs_export_dir qs_export_dir;

/* Creates `<dir>.tmp.<pid>/` (the parent of `dir` must exist). `src_model_dir` holds the
 * source config.json (read at finish) and the side files. QS_ERR_INPUT if `dir` exists and
 * !overwrite. shard_bytes <= 0: one file. */
qs_status qs_export_dir_begin(qs_export_dir **d, const char *dir, const char *src_model_dir,
                              int64_t shard_bytes, int overwrite, qs_err *err);

/* The final directory (for messages). */
const char *qs_export_dir_path(const qs_export_dir *d);

/* Declares the next tensor; *index (may be NULL) gets its index. QS_ERR_INPUT on a repeated
 * name, a bad shape or dtype; QS_ERR_INTERNAL after layout. */
qs_status qs_export_dir_declare(qs_export_dir *d, const char *name, qs_dtype dt, int ndim,
                                const int64_t *shape, int64_t *index, qs_err *err);

/* Bytes of all tensor data declared so far; of tensor t; number of tensors. */
uint64_t qs_export_dir_data_bytes(const qs_export_dir *d);
uint64_t qs_export_dir_tensor_bytes(const qs_export_dir *d, int64_t t);
int64_t qs_export_dir_ntensors(const qs_export_dir *d);

/* Fixes the shards (no declarations after). QS_ERR_INPUT if nothing was declared or more
 * than 99999 shards would be needed. */
qs_status qs_export_dir_layout(qs_export_dir *d, qs_err *err);
int qs_export_dir_laid_out(const qs_export_dir *d);

/* Streams tensor t whole (nbytes must be its declared size); tensors must come in declared
 * order. A shard is opened at its first tensor and closed (fsynced, renamed) after its last. */
qs_status qs_export_dir_put(qs_export_dir *d, int64_t t, const void *data, size_t nbytes,
                            qs_err *err);

/* Writes `fname` (pretty JSON + newline) into the temporary directory. */
qs_status qs_export_dir_write_json(qs_export_dir *d, const char *fname, const cJSON *j,
                                   qs_err *err);

/* Checks every tensor was put (QS_ERR_INPUT naming the first missing one), writes the index
 * when sharded, config.json (the source's, "quantization_config" replaced by a copy of
 * `quant_config`), copies the side files, fsyncs and renames the directory. */
qs_status qs_export_dir_finish(qs_export_dir *d, const cJSON *quant_config, qs_err *err);

/* Releases; before a successful finish, removes the temporary directory. Safe on NULL. */
void qs_export_dir_free(qs_export_dir *d);

#endif /* QS_EXPORT_DIR_H */
