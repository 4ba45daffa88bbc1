/* rundir.h: the run directory: layout, durable writes (temp -> fsync -> rename -> fsync
 * of the directory) and stage manifests.
 *
 * Layout (docs/design.md):
 *   run/config.resolved.yaml  run/plan/plan.json  run/calib/  run/recon/  run/search/
 *   run/final/  run/out/  and <stage>/manifest.json written last by each stage.
 *
 * A manifest names the stage, the config hash, the inputs' hashes and every output's
 * SHA-256 (path relative to the run directory). A stage is done when its manifest exists,
 * its config hash and inputs match, and every output listed is present with that checksum.
 *
 * Ownership: qs_rundir holds only its root path (owned); qs_manifest owns its entry
 * arrays; both have *_free functions that are safe on zeroed structs.
 */
#ifndef QS_RUNDIR_H
#define QS_RUNDIR_H

#include <stdint.h>
#include <stdio.h>

#include "status.h"

#define QS_PATH_MAX 4096

/* The run directory's layout: the one home of every path stages share (docs/design.md). */
#define QS_DIR_PLAN "plan"
#define QS_DIR_CALIB "calib"
#define QS_DIR_RECON "recon"
#define QS_DIR_SEARCH "search"
#define QS_DIR_FINAL "final"
#define QS_DIR_OUT "out"
#define QS_DIR_EXPORT "export"
#define QS_DIR_EXPORT_CT "export-ct" /* compressed-tensors export (output.formats) */
#define QS_DIR_GGUF "gguf"           /* the GGUF file (output.formats) */
#define QS_REL_GGUF "gguf/model.gguf"
#define QS_REL_RUN_JSON "run.json"
#define QS_REL_CONFIG "config.resolved.yaml"
#define QS_REL_PLAN "plan/plan.json"
#define QS_REL_ALLOCATION "search/allocation.json"
#define QS_REL_EVAL "eval.json"
#define QS_REL_EVAL_FLOAT "eval-float.json"
#define QS_REL_STOPPED "stopped.json"

/* "<dir>/layer-NNN.h5": a per-layer file of a stage directory (calib, recon, final). */
void qs_rundir_layer_rel(char *rel, size_t n, const char *dir, int layer);

typedef struct qs_rundir {
    char *root;
} qs_rundir;

/* Sets the root (does not create it). */
qs_status qs_rundir_init(qs_rundir *rd, const char *root, qs_err *err);
void qs_rundir_free(qs_rundir *rd);

/* Joins root and a relative path into out (QS_ERR_INPUT if it does not fit). */
qs_status qs_rundir_path(const qs_rundir *rd, const char *rel, char *out, size_t n,
                         qs_err *err);

/* mkdir -p of root/rel (rel may be ""). */
qs_status qs_rundir_mkdir(const qs_rundir *rd, const char *rel, qs_err *err);

/* mkdir -p of an absolute or relative path. */
qs_status qs_mkdir_p(const char *path, qs_err *err);

/* 1 if path exists (any type). */
int qs_path_exists(const char *path);

/* A file being written durably: write to `tmp`, then qs_atomic_commit renames it to
 * `path`. qs_atomic_abandon removes the temp file. Either must be called once. */
typedef struct qs_atomic {
    FILE *f;
    char path[QS_PATH_MAX];
    char tmp[QS_PATH_MAX];
} qs_atomic;

qs_status qs_atomic_open(qs_atomic *a, const char *path, qs_err *err);
/* Flushes, fsyncs, closes, renames and fsyncs the directory. Disk-full and I/O errors
 * are QS_ERR_RUNTIME naming the file; on failure the temp file is removed. */
qs_status qs_atomic_commit(qs_atomic *a, qs_err *err);
void qs_atomic_abandon(qs_atomic *a);

/* Writes a whole buffer durably to path. */
qs_status qs_write_file_atomic(const char *path, const void *data, size_t n, qs_err *err);

/* Reads a whole file into a NUL-terminated malloc'd buffer (caller frees). */
qs_status qs_read_file(const char *path, char **data, size_t *n, qs_err *err);
/* qs_read_file of a file that may hold at most max_bytes: a larger one is QS_ERR_INPUT
 * naming the file, its size and the limit (nothing is read). */
qs_status qs_read_file_max(const char *path, uint64_t max_bytes, char **data, size_t *n,
                           qs_err *err);

/* Removes temp files ("<name>.tmp.<pid>") left in root and its stage directories (two
 * levels) by a process that died before its rename (kill -9, node failure). Only for a
 * directory no other qshard is writing (the driver calls it on --resume). *nremoved may be
 * NULL. */
qs_status qs_rundir_remove_temps(const qs_rundir *rd, int *nremoved, qs_err *err);

/* fsync of a directory (after a rename into it). */
qs_status qs_fsync_dir(const char *dir, qs_err *err);

typedef struct qs_manifest_entry {
    char *name;   /* input name or output path relative to the run directory */
    char hash[65];
} qs_manifest_entry;

typedef struct qs_manifest {
    char stage[32];
    char config_hash[65];
    qs_manifest_entry *inputs;
    int ninputs;
    qs_manifest_entry *outputs;
    int noutputs;
} qs_manifest;

void qs_manifest_init(qs_manifest *m, const char *stage, const char *config_hash);
qs_status qs_manifest_add_input(qs_manifest *m, const char *name, const char *hash,
                                qs_err *err);
/* Hashes root/rel and records it as an output. */
qs_status qs_manifest_add_output(qs_manifest *m, const qs_rundir *rd, const char *rel,
                                 qs_err *err);
/* Writes root/<stage>/manifest.json durably (last step of a stage). */
qs_status qs_manifest_write(const qs_manifest *m, const qs_rundir *rd, qs_err *err);
/* Reads root/<stage>/manifest.json; *found = 0 when absent. Malformed = QS_ERR_INPUT. */
qs_status qs_manifest_read(qs_manifest *m, const qs_rundir *rd, const char *stage,
                           int *found, qs_err *err);
/* 1 when `have` (on disk) matches the expected stage/config hash/inputs of `want`
 * and every output of `have` still has its recorded checksum. */
qs_status qs_manifest_check(const qs_manifest *have, const qs_manifest *want,
                            const qs_rundir *rd, int *matches, qs_err *err);
void qs_manifest_free(qs_manifest *m);

/* ---- the run-directory lock ----
 * One qshard at a time per run directory: rank 0 takes an fcntl write lock on
 * <root>/lock (holding "PID HOST") before it changes anything, and holds it until exit
 * (the kernel drops it when the process dies, whatever kills it). */
#define QS_REL_LOCK "lock"

typedef struct qs_rundir_lock {
    int fd; /* -1 when not held */
} qs_rundir_lock;

/* Creates root if needed and takes the lock; another live holder is QS_ERR_INPUT
 * "ROOT: run directory in use by PID n on HOST". */
qs_status qs_rundir_lock_take(const qs_rundir *rd, qs_rundir_lock *lk, qs_err *err);
/* Releases the lock (safe when not held). */
void qs_rundir_lock_release(qs_rundir_lock *lk);

/* ---- unit records ----
 * A stage's output is made of units (e.g. one layer file); when a unit's files are
 * committed, the rank that wrote them records their SHA-256 in units/<dir>/<unit>.json
 * together with a key (a hash of the stage's config and inputs). On resume a unit is reused
 * only if its record has the expected key and every file it lists still has its checksum;
 * the stage's manifest is assembled from the records of its units. */
#define QS_DIR_UNITS "units"

/* Hashes the files rels[0..n) (relative to the run directory) and writes the record of
 * `unit` of stage folder `dir` with `key`, durably. */
qs_status qs_unit_record_write(const qs_rundir *rd, const char *dir, const char *unit,
                               const char *key, const char *const *rels, int n, qs_err *err);

/* Verifies the record of `unit`: *ok = 1 when it exists, carries `key`, and every file it
 * lists exists with its recorded SHA-256; otherwise *ok = 0 and `why` (size n) says what
 * differed ("no record", "other inputs", "recon/layer-003.h5: checksum differs", ...).
 * An unreadable or malformed record is "not ok", never an error. */
qs_status qs_unit_record_verify(const qs_rundir *rd, const char *dir, const char *unit,
                                const char *key, int *ok, char *why, size_t n, qs_err *err);

/* Adds the files of `unit`'s record (as recorded, in order) to m's outputs. QS_ERR_INPUT
 * when the record is missing or malformed. */
qs_status qs_unit_record_outputs(const qs_rundir *rd, const char *dir, const char *unit,
                                 qs_manifest *m, qs_err *err);

/* Removes every unit record of stage folder `dir` (a stage redone from scratch). */
qs_status qs_unit_records_clear(const qs_rundir *rd, const char *dir, qs_err *err);

#endif /* QS_RUNDIR_H */
