/* summary.h: the table `qshard run` ends with (size, bits per weight, perplexity of the
 * float checkpoint and of the written model), read from the run directory's files
 * (search/summary.json, eval.json, eval-float.json). Printing only; no MPI.
 *
 * Ownership: borrows everything; allocates nothing that outlives the call.
 */
#ifndef QS_SUMMARY_H
#define QS_SUMMARY_H

#include <stdio.h>

#include "hf_model.h"
#include "rundir.h"
#include "status.h"

/* Writes the table to `out`. Missing files leave their cells as "-" (e.g. no eval.tokens);
 * nothing here fails the run, so it returns nothing. */
void qs_summary_print(FILE *out, const qs_rundir *rd, const qs_model *model);

#endif /* QS_SUMMARY_H */
