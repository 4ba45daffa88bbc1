/* verify.h: `qshard verify DIR`: checks what qshard wrote, without MPI. DIR is a run
 * directory (every output of out/manifest.json present with its SHA-256, the HDF5 shards'
 * shapes and dtypes, and run/export and run/gguf/model.gguf when present), a GPTQ export
 * (index, shapes, schemes resolved through `dynamic`) or a *.gguf file (header, tensor infos,
 * every tensor decoded); an export directory's qshard-checksums.json (export/checksums.h)
 * first, when present (a compressed-tensors export: only that). docs/write.md.
 */
#ifndef QS_VERIFY_H
#define QS_VERIFY_H

#include <stddef.h>

#include "status.h"

/* A mismatch is QS_ERR_INPUT naming the file; `summary` (n bytes) gets one line per check. */
qs_status qs_verify_dir(const char *dir, char *summary, size_t n, qs_err *err);

#endif /* QS_VERIFY_H */
