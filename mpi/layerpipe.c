/* layerpipe.c: the rank-to-rank layer pipeline (see layerpipe.h). */
#include "layerpipe.h"

#include <stdlib.h>
#include <string.h>

/* Message tags repeat every TAG_SPAN chunks (MPI guarantees tags up to 32767). */
#define TAG_SPAN 30000

qs_status qs_layerpipe_init(qs_layerpipe *p, const qs_comm *comm, const int *first,
                            int64_t nsamples, int64_t chunk, int64_t sample_floats,
                            qs_err *err) {
    memset(p, 0, sizeof(*p));
    p->comm = comm;
    p->prev = p->next = -1;
    p->nsamples = nsamples;
    p->chunk = chunk;
    p->sample_floats = sample_floats;
    const int rank = comm->rank;
    p->active = first[rank + 1] > first[rank];
    if (!p->active) return QS_OK;
    for (int r = rank - 1; r >= 0; --r)
        if (first[r + 1] > first[r]) {
            p->prev = r;
            break;
        }
    for (int r = rank + 1; r < comm->size; ++r)
        if (first[r + 1] > first[r]) {
            p->next = r;
            break;
        }
    const size_t n = (size_t)(chunk * sample_floats);
    p->buf[0] = qs_malloc(sizeof(float) * n, err, "pipeline chunk buffer");
    p->buf[1] = qs_malloc(sizeof(float) * n, err, "pipeline chunk buffer");
    if (!p->buf[0] || !p->buf[1]) {
        qs_layerpipe_free(p);
        return QS_ERR_RUNTIME;
    }
    return QS_OK;
}

int64_t qs_layerpipe_nchunks(const qs_layerpipe *p) {
    return p->chunk > 0 ? (p->nsamples + p->chunk - 1) / p->chunk : 0;
}

/* Samples in chunk c. */
static int64_t chunk_samples(const qs_layerpipe *p, int64_t c) {
    const int64_t s0 = c * p->chunk;
    return p->nsamples - s0 < p->chunk ? p->nsamples - s0 : p->chunk;
}

static size_t chunk_bytes(const qs_layerpipe *p, int64_t c) {
    return sizeof(float) * (size_t)(chunk_samples(p, c) * p->sample_floats);
}

qs_status qs_layerpipe_run(qs_layerpipe *p, int64_t c0, int64_t c1, qs_layerpipe_fn source,
                           qs_layerpipe_fn compute, void *ctx, qs_err *err) {
    return qs_layerpipe_run_every(p, c0, c1, 1, source, compute, ctx, err);
}

qs_status qs_layerpipe_run_every(qs_layerpipe *p, int64_t c0, int64_t c1, int64_t step,
                                 qs_layerpipe_fn source, qs_layerpipe_fn compute, void *ctx,
                                 qs_err *err) {
    qs_status st = QS_OK;
    const qs_comm *comm = p->comm;
    if (step < 1) {
        st = QS_FAIL(err, QS_ERR_INTERNAL, "layer pipeline: step %lld", (long long)step);
        qs_comm_abort(comm, err);
    }
    for (int64_t c = c0, j = 0; c < c1 && p->active; c += step, ++j) {
        const int b = (int)(j % 2);
        const int64_t s0 = c * p->chunk, ns = chunk_samples(p, c);
        const int tag = (int)(c % TAG_SPAN);
        float *x = p->buf[b]; // (ns, sample_floats)
        if (p->prev < 0) {
            qs_comm_wait(comm, &p->sreq[b]);
            st = source(ctx, c, s0, ns, x, err);
        } else {
            if (!p->rreq_posted) {
                qs_comm_wait(comm, &p->sreq[b]);
                st = qs_comm_irecv(comm, x, chunk_bytes(p, c), p->prev, tag, &p->rreq, err);
            }
            if (st == QS_OK) qs_comm_wait(comm, &p->rreq);
            p->rreq_posted = 0;
            /* pre-post the next chunk's receive into the other buffer */
            if (st == QS_OK && c + step < c1) {
                qs_comm_wait(comm, &p->sreq[1 - b]);
                st = qs_comm_irecv(comm, p->buf[1 - b], chunk_bytes(p, c + step), p->prev,
                                   (int)((c + step) % TAG_SPAN), &p->rreq, err);
                p->rreq_posted = st == QS_OK;
            }
        }
        if (st == QS_OK) st = compute(ctx, c, s0, ns, x, err);
        if (st == QS_OK && p->next >= 0)
            st = qs_comm_isend(comm, x, chunk_bytes(p, c), p->next, tag, &p->sreq[b], err);
        /* neighbours are blocked in the pipeline: a failure here aborts every rank */
        if (st != QS_OK) qs_comm_abort(comm, err);
    }
    return st;
}

void qs_layerpipe_drain(qs_layerpipe *p) {
    qs_comm_wait(p->comm, &p->sreq[0]);
    qs_comm_wait(p->comm, &p->sreq[1]);
}

void qs_layerpipe_poke(qs_layerpipe *p) {
    if (p->next >= 0) {
        qs_comm_test(p->comm, &p->sreq[0]);
        qs_comm_test(p->comm, &p->sreq[1]);
    }
    if (p->prev >= 0) qs_comm_test(p->comm, &p->rreq);
}

void qs_layerpipe_free(qs_layerpipe *p) {
    free(p->buf[0]);
    free(p->buf[1]);
    p->buf[0] = p->buf[1] = NULL;
}
