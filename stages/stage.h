/* stage.h: what a stage is, and the context the driver hands it.
 *
 * A stage is a thin description (qs_stage): its name and run-directory folder, an `open`
 * step that reads and checks every input it needs and names its inputs' hashes and its
 * units (the resumable pieces of its output, e.g. one per layer), a `run` step that does
 * the units the driver marks to do, and `close`. The driver (pipeline/driver.c) owns
 * everything around them: skip-if-done (the stage's manifest matches its inputs and its
 * outputs' checksums), verification of the units a resumed stage would reuse (each unit's
 * record holds the SHA-256 of its files, written when the unit finished), and the manifest,
 * written last from the unit records. Stages never call each other and never read or
 * write manifests; they talk through the run directory.
 *
 * Ownership: the context only borrows; the driver owns everything it points to. A stage's
 * state is its own (released by its close).
 */
#ifndef QS_STAGE_H
#define QS_STAGE_H

#include <stdint.h>

#include "comm.h"
#include "config.h"
#include "hf_model.h"
#include "log.h"
#include "pool.h"
#include "rundir.h"
#include "status.h"

#define QS_UNIT_NAME_MAX 64
#define QS_UNIT_LAYER "layer-%03d" /* the unit name of a per-layer stage */

/* Work a stage left out because no output needs it (docs/design.md "Work that is
 * skipped"): recorded in timings.json ("skipped") and logged in one line. */
typedef struct qs_stage_skip {
    char what[64];              /* what was not done, a plural noun ("layer solves") */
    int64_t count;              /* how many were not done (0: nothing skipped) */
    int64_t of;                 /* of how many the full work has */
    char why[256];              /* the reason, one clause */
} qs_stage_skip;

/* The units of one stage run (driver-owned arrays). */
typedef struct qs_stage_units {
    int n;                             /* number of units (0: the stage writes only its
                                          manifest) */
    char (*name)[QS_UNIT_NAME_MAX];    /* (n) unit names, e.g. "layer-003" */
    unsigned char *todo;               /* (n) 1 = do it; 0 = verified, reused */
} qs_stage_units;

typedef struct qs_stage_ctx {
    const qs_config *cfg;
    const qs_comm *comm;
    const qs_rundir *rd;
    const qs_model *model;      /* opened and validated by the driver on every rank */
    const qs_log *log;
    char config_hash[65];       /* of the resolved config without runtime keys */
    char model_hash[65];        /* fingerprint: config.json + safetensors headers + sizes */
    const volatile int *stop;   /* set (by the driver's signal handler) to request a stop */
    qs_progress *progress;      /* driver-owned, may be NULL: qs_progress_begin/step at unit
                                   boundaries (rank 0 prints, with ETA) */
    qs_stage_skip *skipped;     /* driver-owned, zeroed per stage, may be NULL: filled by
                                   qs_stage_skipped (common.h) */
    double *busy;               /* driver-owned, may be NULL: a stage may add this rank's
                                   compute seconds (timings.json "busy_s") */
    qs_pool *pool;              /* driver-owned, may be NULL (one thread): the rank's
                                   `threads` workers for the heavy loops (pool.h) */
    /* set by the driver for the stage being run */
    const char *dir;            /* the stage's run-directory folder ("recon") */
    const qs_stage_units *units;
    char unit_key[65];          /* hash of the stage's config and inputs: unit records
                                   carry it, so a record of other inputs is never reused */
} qs_stage_ctx;

/* What `open` tells the driver. */
typedef struct qs_stage_open {
    qs_manifest inputs;         /* driver-initialised (stage dir, config hash); the stage
                                   adds its inputs' hashes in a fixed order */
    int nunits;                 /* units the stage will produce */
    char (*unit_name)[QS_UNIT_NAME_MAX]; /* (nunits) driver-allocated after set_units */
    int nothing_to_do;          /* 1: the stage has nothing to do in this run (why: log) */
    char why[256];
} qs_stage_open;

typedef struct qs_stage {
    const char *name;           /* "reconstruct-final" (log lines, timings.json) */
    const char *dir;            /* folder of its manifest and unit records ("final") */
    int pass;                   /* for stages that run twice (reconstruct: 0 measure, 1 final) */
    int needs_eval;             /* runs only when eval.tokens is set */
    /* Collective. Reads and checks every input (bad input is agreed before anything
     * blocks), adds the inputs' hashes to o->inputs, declares the units (qs_stage_set_units)
     * and keeps what run needs in *state. */
    qs_status (*open)(const qs_stage_ctx *ctx, int pass, void **state, qs_stage_open *o,
                      qs_err *err);
    /* Collective. Does every unit whose ctx->units->todo is set; the rank that wrote a
     * unit's files calls qs_stage_unit_done. Returns QS_OK, QS_STOPPED (every finished unit
     * is durable) or an error agreed by all ranks; failures where ranks may be blocked
     * abort. */
    qs_status (*run)(const qs_stage_ctx *ctx, void *state, qs_err *err);
    void (*close)(void *state);
} qs_stage;

/* Declares n units (names from the printf-style pattern with the unit index, e.g.
 * "layer-%03d"). Local. */
qs_status qs_stage_set_units(qs_stage_open *o, int n, const char *pattern, qs_err *err);

/* A unit finished: hashes its output files (paths relative to the run directory, in the
 * order the manifest will list them) and writes its record durably. Local: called by the
 * rank that wrote the files, after they are committed. */
qs_status qs_stage_unit_done(const qs_stage_ctx *ctx, int unit, const char *const *rels,
                             int nrels, qs_err *err);

/* The stages, in the driver's order. */
extern const qs_stage qs_stage_plan;
extern const qs_stage qs_stage_calibrate;
extern const qs_stage qs_stage_reconstruct;       /* pass 0: every candidate -> recon/ */
extern const qs_stage qs_stage_search;
extern const qs_stage qs_stage_reconstruct_final; /* pass 1: the allocation -> final/ */
extern const qs_stage qs_stage_write;
extern const qs_stage qs_stage_eval;

#endif /* QS_STAGE_H */
