/* checksums.h: `qshard-checksums.json`, written beside an export's tensor files (a GPTQ or
 * compressed-tensors directory, the GGUF file's directory) so that a copied export can be
 * checked without the run directory: {"format": "qshard-checksums-1", "sha256": {file name:
 * SHA-256 hex}} for every *.safetensors and *.gguf file of the directory, names sorted.
 * Loaders ignore the file (it is neither a tensor file nor a config they read).
 *
 * Ownership: nothing is kept.
 */
#ifndef QS_CHECKSUMS_H
#define QS_CHECKSUMS_H

#include <stdint.h>

#include "status.h"

#define QS_CHECKSUMS_FILE "qshard-checksums.json"

/* Writes dir/qshard-checksums.json durably (temp file, fsync, rename). */
qs_status qs_checksums_write(const char *dir, qs_err *err);

/* Checks dir/qshard-checksums.json when present (*checked = number of files it lists, 0 when
 * absent): every listed file exists with that SHA-256 and every tensor file of the directory
 * is listed. QS_ERR_INPUT naming the file on a mismatch. */
qs_status qs_checksums_verify(const char *dir, int64_t *checked, qs_err *err);

#endif /* QS_CHECKSUMS_H */
