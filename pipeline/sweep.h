/* sweep.h: research sweeps (`qshard sweep`, `qshard collect`; docs/slurm.md "Sweeps").
 *
 * SWEEP.yaml:
 *   base: sweep-base.yaml          # the base config (relative to the sweep file)
 *   set: {model: /models/x}        # optional: overrides for every point
 *   grid:                          # optional: cartesian product, first key slowest
 *     quant.bits: [[3], [4]]
 *     quant.group_size: [[32], [128]]
 *   points:                        # optional: explicit list of override maps (each point
 *     - {search.target_bpw: 3.0}   #   is combined with every grid combination)
 *   parallel: 4                    # K of --array=0-N%K (default 4)
 *   sbatch: ["--ntasks=2"]         # optional: extra #SBATCH lines of the array script
 *   out: sweeps/bits               # optional output directory (--out wins; default: the
 *                                  #   sweep file's path without .yaml)
 * Every point's config is loaded through the normal config loader (strict keys, types,
 * ranges) with run_dir = OUT/runs/NNN; a bad key or value is QS_ERR_INPUT naming the sweep
 * file and the point.
 *
 * Output: OUT/points/NNN.yaml (resolved configs), OUT/points.csv (point, run_dir, one
 * column per swept key), OUT/qshard.sbatch (a copy of slurm/qshard.sbatch) and
 * OUT/sweep.sbatch (job array: task i execs the copy on points/NNN.yaml, so requeue and
 * --resume work per task), OUT/logs/ for the tasks' output.
 *
 * Collect: OUT/results.csv and OUT/results.md, one row per point: point, overrides,
 * size_bytes, bpw, ppl, ppl_float, time_s, status (done | failed | missing).
 */
#ifndef QS_SWEEP_H
#define QS_SWEEP_H

#include "status.h"

typedef struct qs_sweep_opts {
    const char *sweep_path;
    const char *out_dir;    /* NULL: from the sweep file or its path */
    const char *qshard_bin; /* absolute path of the qshard binary for the array script */
    const char *template_path; /* slurm/qshard.sbatch to copy; NULL: search next to the binary */
} qs_sweep_opts;

/* Writes the sweep directory; prints a summary on stdout. */
qs_status qs_sweep_write(const qs_sweep_opts *o, qs_err *err);

/* Reads OUT/points.csv and every point's run directory; writes OUT/results.csv and
 * OUT/results.md and prints the markdown table. */
qs_status qs_sweep_collect(const char *out_dir, qs_err *err);

#endif /* QS_SWEEP_H */
