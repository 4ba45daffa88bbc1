/* layerpipe.h: the rank-to-rank layer pipeline of calibrate and eval. Decoder layers are
 * owned in contiguous ranges (the plan); chunks of samples flow from the first owning rank
 * to the last. Each active rank holds two chunk buffers: while it computes chunk c in one,
 * the send of chunk c-1 and the receive of chunk c+1 progress in the other (nonblocking,
 * pre-posted), so after the pipeline fills every rank computes at once.
 *
 * The caller supplies what a chunk is on this rank: `source` fills the first rank's chunk
 * (embeddings), `compute` runs this rank's layers on it (and the head on the last rank).
 * Neither knows about MPI. Bytes never depend on the rank count: a chunk's arithmetic is
 * the same wherever it runs.
 *
 * Failure: a callback's failure inside qs_layerpipe_run aborts every rank (qs_comm_abort
 * with the callback's file:line), because neighbours are blocked in the pipeline.
 *
 * Ownership: qs_layerpipe owns its two buffers; qs_layerpipe_free releases them and is
 * safe on a zeroed value.
 */
#ifndef QS_LAYERPIPE_H
#define QS_LAYERPIPE_H

#include <stdint.h>

#include "comm.h"
#include "status.h"

/* The pipeline runs on any communicator: the world, or a sub-communicator of qs_comm_split
 * (one replica's ranks in calibrate's 2-D schedule). */
typedef struct qs_layerpipe {
    const qs_comm *comm;
    int active;              /* this rank owns at least one layer */
    int prev, next;          /* nearest ranks before / after owning layers, -1 at the ends */
    int64_t nsamples;        /* samples in the whole stream */
    int64_t chunk;           /* samples per chunk (the last may be shorter) */
    int64_t sample_floats;   /* floats per sample (seqlen x hidden) */
    float *buf[2];           /* (chunk x sample_floats) each, active ranks only */
    qs_comm_req sreq[2];     /* the sends of the two buffers */
    qs_comm_req rreq;        /* the pre-posted receive */
    int rreq_posted;
} qs_layerpipe;

/* Chunk callbacks: chunk c holds samples [s0, s0 + ns); x is (ns, sample_floats). */
typedef qs_status (*qs_layerpipe_fn)(void *ctx, int64_t c, int64_t s0, int64_t ns, float *x,
                                     qs_err *err);

/* Sets the pipeline up from the plan's layer ranges: first[r] .. first[r+1] are rank r's
 * layers (first has comm->size + 1 entries). Allocates the buffers on active ranks.
 * Local (not collective): the caller agrees on the status. */
qs_status qs_layerpipe_init(qs_layerpipe *p, const qs_comm *comm, const int *first,
                            int64_t nsamples, int64_t chunk, int64_t sample_floats,
                            qs_err *err);

/* Number of chunks of the stream. */
int64_t qs_layerpipe_nchunks(const qs_layerpipe *p);

/* Runs chunks [c0, c1) through this rank's part of the pipeline (nothing on an inactive
 * rank): source on the first rank, receive elsewhere, then compute, then send to the next
 * owner. Receives of the next chunk are pre-posted inside the range only, so when it returns
 * every message of the range has been received; qs_layerpipe_drain completes the sends.
 * A callback failure aborts all ranks (does not return). */
qs_status qs_layerpipe_run(qs_layerpipe *p, int64_t c0, int64_t c1, qs_layerpipe_fn source,
                           qs_layerpipe_fn compute, void *ctx, qs_err *err);

/* qs_layerpipe_run over every step-th chunk of [c0, c1) only: c0, c0 + step, ... (one
 * replica's share of the stream when several pipelines split the chunks, calibrate's 2-D
 * schedule; step >= 1). The two buffers alternate per chunk run, whatever step is. */
qs_status qs_layerpipe_run_every(qs_layerpipe *p, int64_t c0, int64_t c1, int64_t step,
                                 qs_layerpipe_fn source, qs_layerpipe_fn compute, void *ctx,
                                 qs_err *err);

/* Completes this rank's outstanding sends (call before reusing what was sent or at a
 * checkpoint boundary; every rank's messages are then delivered). */
void qs_layerpipe_drain(qs_layerpipe *p);

/* Lets pending messages move (call from inside a long compute step). */
void qs_layerpipe_poke(qs_layerpipe *p);

void qs_layerpipe_free(qs_layerpipe *p);

#endif /* QS_LAYERPIPE_H */
