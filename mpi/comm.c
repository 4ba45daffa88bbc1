/* comm.c: qs_comm over MPI: agree-on-error, abort, ordered reductions, pipeline p2p. */
#include "comm.h"

#include <limits.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static MPI_Comm handle(const qs_comm *c) { return MPI_Comm_f2c(c->fcomm); }

void qs_comm_serial(qs_comm *c) {
    memset(c, 0, sizeof(*c));
    c->rank = 0;
    c->size = 1;
}

qs_status qs_comm_init(qs_comm *c, int *argc, char ***argv, qs_err *err) {
    qs_comm_serial(c);
    int provided = 0;
    if (MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
        return QS_FAIL(err, QS_ERR_RUNTIME, "MPI_Init_thread failed");
    MPI_Comm dup;
    MPI_Comm_dup(MPI_COMM_WORLD, &dup);
    c->fcomm = (int)MPI_Comm_c2f(dup);
    c->mpi = 1;
    MPI_Comm_rank(dup, &c->rank);
    MPI_Comm_size(dup, &c->size);
    return QS_OK;
}

void qs_comm_finalize(qs_comm *c) {
    if (!c->mpi) return;
    MPI_Comm h = handle(c);
    MPI_Comm_free(&h);
    MPI_Finalize();
    c->mpi = 0;
}

void qs_comm_split(const qs_comm *c, int color, int key, qs_comm *out) {
    qs_comm_serial(out);
    if (!c->mpi) return;
    MPI_Comm sub;
    MPI_Comm_split(handle(c), color >= 0 ? color : MPI_UNDEFINED, key, &sub);
    if (sub == MPI_COMM_NULL) return;
    out->fcomm = (int)MPI_Comm_c2f(sub);
    out->mpi = 1;
    MPI_Comm_rank(sub, &out->rank);
    MPI_Comm_size(sub, &out->size);
}

void qs_comm_free(qs_comm *c) {
    if (c->mpi) {
        MPI_Comm h = handle(c);
        MPI_Comm_free(&h);
    }
    qs_comm_serial(c);
}

static int severity(qs_status st) {
    switch (st) {
    case QS_OK: return 0;
    case QS_STOPPED: return 1;
    case QS_ERR_INPUT: return 2;
    case QS_ERR_RUNTIME: return 3;
    case QS_ERR_INTERNAL: return 4;
    }
    return 4;
}

qs_status qs_comm_agree(const qs_comm *c, qs_status local, qs_err *err) {
    if (!c->mpi || c->size == 1) return local;
    /* (severity, lowest rank with that severity): MAXLOC on (severity, rank) takes the
     * smallest index among equal values */
    int in[2] = {severity(local), c->rank};
    int out[2];
    MPI_Allreduce(in, out, 1, MPI_2INT, MPI_MAXLOC, handle(c));
    if (out[0] == 0) return QS_OK;
    int root = out[1];
    struct {
        int code;
        int line;
        char msg[QS_ERR_MSG_MAX];
        char file[128];
    } rec;
    memset(&rec, 0, sizeof(rec));
    if (c->rank == root) {
        rec.code = (int)err->code;
        rec.line = err->line;
        memcpy(rec.msg, err->msg, sizeof(rec.msg));
        if (err->file) snprintf(rec.file, sizeof(rec.file), "%s", err->file);
    }
    MPI_Bcast(&rec, (int)sizeof(rec), MPI_BYTE, root, handle(c));
    if (c->rank != root) {
        qs_err_clear(err);
        err->code = (qs_status)rec.code;
        err->line = rec.line;
        memcpy(err->msg, rec.msg, sizeof(err->msg));
        err->file = NULL; /* the source file of another rank is not kept */
    }
    return (qs_status)rec.code;
}

void qs_comm_abort(const qs_comm *c, const qs_err *err) {
    if (err && err->code == QS_ERR_INTERNAL)
        fprintf(stderr, "qshard: internal error at %s:%d (rank %d): %s\n",
                err->file ? err->file : "?", err->line, c->rank, err->msg);
    else
        fprintf(stderr, "qshard: error (rank %d, %s:%d): %s\n", c->rank,
                err && err->file ? err->file : "?", err ? err->line : 0,
                err ? err->msg : "unknown failure");
    fflush(stderr);
    if (c->mpi) MPI_Abort(MPI_COMM_WORLD, 1);
    exit(1);
}

int qs_comm_any(const qs_comm *c, int flag) {
    if (!c->mpi || c->size == 1) return flag != 0;
    int in = flag != 0, out = 0;
    MPI_Allreduce(&in, &out, 1, MPI_INT, MPI_LOR, handle(c));
    return out;
}

void qs_comm_barrier(const qs_comm *c) {
    if (c->mpi && c->size > 1) MPI_Barrier(handle(c));
}

/* MPI counts are int: move big buffers in pieces of at most 1 GiB. */
#define QS_MPI_PIECE ((size_t)1 << 30)

void qs_comm_bcast(const qs_comm *c, void *buf, size_t nbytes, int root) {
    if (!c->mpi || c->size == 1) return;
    unsigned char *p = buf;
    for (size_t off = 0; off < nbytes; off += QS_MPI_PIECE) {
        size_t n = nbytes - off < QS_MPI_PIECE ? nbytes - off : QS_MPI_PIECE;
        MPI_Bcast(p + off, (int)n, MPI_BYTE, root, handle(c));
    }
}

qs_status qs_comm_gatherv(const qs_comm *c, const void *buf, size_t nbytes, int root,
                          void **out, size_t **counts, qs_err *err) {
    qs_status st = QS_OK;
    *out = NULL;
    *counts = NULL;
    int *icounts = NULL, *displs = NULL;
    if (!c->mpi || c->size == 1) {
        *counts = qs_malloc(sizeof(size_t), err, "gather counts");
        *out = qs_malloc(nbytes, err, "gather buffer");
        if (!*counts || !*out) {
            free(*counts);
            free(*out);
            *counts = NULL;
            *out = NULL;
            return QS_ERR_RUNTIME;
        }
        (*counts)[0] = nbytes;
        memcpy(*out, buf, nbytes);
        return QS_OK;
    }
    if (nbytes > INT_MAX)
        return QS_FAIL(err, QS_ERR_INTERNAL, "gatherv of %zu bytes exceeds INT_MAX", nbytes);
    int mine = (int)nbytes;
    if (c->rank == root) {
        icounts = qs_malloc(sizeof(int) * (size_t)c->size, err, "gather counts");
        displs = qs_malloc(sizeof(int) * (size_t)c->size, err, "gather displs");
        *counts = qs_malloc(sizeof(size_t) * (size_t)c->size, err, "gather counts");
        if (!icounts || !displs || !*counts) QS_THROW(err, QS_ERR_RUNTIME, "out of memory");
    }
    MPI_Gather(&mine, 1, MPI_INT, icounts, 1, MPI_INT, root, handle(c));
    if (c->rank == root) {
        long long total = 0;
        for (int r = 0; r < c->size; ++r) {
            displs[r] = (int)total;
            total += icounts[r];
            (*counts)[r] = (size_t)icounts[r];
        }
        if (total > INT_MAX) QS_THROW(err, QS_ERR_INTERNAL, "gatherv total exceeds INT_MAX");
        *out = qs_malloc((size_t)total, err, "gather buffer");
        if (!*out) QS_THROW(err, QS_ERR_RUNTIME, "out of memory");
    }
    MPI_Gatherv(buf, mine, MPI_BYTE, *out, icounts, displs, MPI_BYTE, root, handle(c));
done:
    free(icounts);
    free(displs);
    if (st != QS_OK) {
        free(*out);
        free(*counts);
        *out = NULL;
        *counts = NULL;
        /* other ranks are in the collective already: this is an abort situation */
        qs_comm_abort(c, err);
    }
    return st;
}

#define ORDERED_SINK_TAG 4301

qs_status qs_comm_ordered_sink(const qs_comm *c, const void *buf, size_t nbytes, int root,
                               qs_comm_sink sink, void *ctx, qs_err *err) {
    qs_status st = QS_OK;
    void *sizes = NULL;
    size_t *counts = NULL;
    unsigned char *rbuf = NULL;
    if (!c->mpi || c->size == 1) return nbytes ? sink(ctx, buf, nbytes, err) : QS_OK;
    uint64_t mine = nbytes;
    QS_CHECK(qs_comm_gatherv(c, &mine, sizeof(mine), root, &sizes, &counts, err));
    if (c->rank != root) {
        if (nbytes) qs_comm_send(c, buf, nbytes, root, ORDERED_SINK_TAG);
        goto done;
    }
    size_t rcap = 0;
    qs_status sink_st = QS_OK;
    for (int r = 0; r < c->size; ++r) {
        uint64_t n;
        memcpy(&n, (unsigned char *)sizes + sizeof(uint64_t) * (size_t)r, sizeof(n));
        if (n == 0) continue;
        const void *part = buf;
        if (r != root) {
            if (n > rcap) {
                unsigned char *nb = realloc(rbuf, (size_t)n);
                if (!nb) { /* other ranks are blocked in their sends: abort all */
                    qs_err e = {0};
                    QS_FAIL(&e, QS_ERR_RUNTIME, "out of memory (%llu bytes from rank %d)",
                            (unsigned long long)n, r);
                    qs_comm_abort(c, &e);
                }
                rbuf = nb;
                rcap = (size_t)n;
            }
            qs_comm_recv(c, rbuf, (size_t)n, r, ORDERED_SINK_TAG);
            part = rbuf;
        }
        if (sink_st == QS_OK) sink_st = sink(ctx, part, (size_t)n, err);
    }
    st = sink_st;
done:
    free(sizes);
    free(counts);
    free(rbuf);
    return st;
}

void qs_comm_max_double(const qs_comm *c, double *vals, int n) {
    if (!c->mpi || c->size == 1) return;
    MPI_Allreduce(MPI_IN_PLACE, vals, n, MPI_DOUBLE, MPI_MAX, handle(c));
}

qs_status qs_comm_sum_double_ordered(const qs_comm *c, double *vals, int n, qs_err *err) {
    if (!c->mpi || c->size == 1) return QS_OK;
    void *all = NULL;
    size_t *counts = NULL;
    qs_status st = qs_comm_gatherv(c, vals, sizeof(double) * (size_t)n, 0, &all, &counts, err);
    if (st != QS_OK) return st;
    if (c->rank == 0) {
        const double *a = all;
        for (int i = 0; i < n; ++i) {
            double s = 0.0;
            for (int r = 0; r < c->size; ++r) s += a[(size_t)r * (size_t)n + (size_t)i];
            vals[i] = s;
        }
    }
    free(all);
    free(counts);
    qs_comm_bcast(c, vals, sizeof(double) * (size_t)n, 0);
    return QS_OK;
}

void qs_comm_send(const qs_comm *c, const void *buf, size_t nbytes, int dest, int tag) {
    const unsigned char *p = buf;
    for (size_t off = 0; off < nbytes; off += QS_MPI_PIECE) {
        size_t n = nbytes - off < QS_MPI_PIECE ? nbytes - off : QS_MPI_PIECE;
        MPI_Send(p + off, (int)n, MPI_BYTE, dest, tag, handle(c));
    }
}

void qs_comm_recv(const qs_comm *c, void *buf, size_t nbytes, int src, int tag) {
    unsigned char *p = buf;
    for (size_t off = 0; off < nbytes; off += QS_MPI_PIECE) {
        size_t n = nbytes - off < QS_MPI_PIECE ? nbytes - off : QS_MPI_PIECE;
        MPI_Recv(p + off, (int)n, MPI_BYTE, src, tag, handle(c), MPI_STATUS_IGNORE);
    }
}

/* ---- nonblocking pipeline p2p ---- */

_Static_assert(sizeof(MPI_Request) <= 16, "MPI_Request fits the opaque slot");

static qs_status start_pieces(const qs_comm *c, void *buf, size_t nbytes, int peer, int tag,
                              int is_send, qs_comm_req *req, qs_err *err) {
    memset(req, 0, sizeof(*req));
    size_t pieces = nbytes == 0 ? 1 : (nbytes + QS_MPI_PIECE - 1) / QS_MPI_PIECE;
    if (pieces > QS_COMM_REQ_MAX)
        return QS_FAIL(err, QS_ERR_INTERNAL, "message of %zu bytes exceeds %d pieces", nbytes,
                       QS_COMM_REQ_MAX);
    unsigned char *p = buf;
    for (size_t i = 0; i < pieces; ++i) {
        size_t off = i * QS_MPI_PIECE;
        size_t n = nbytes - off < QS_MPI_PIECE ? nbytes - off : QS_MPI_PIECE;
        MPI_Request r;
        if (is_send)
            MPI_Isend(p + off, (int)n, MPI_BYTE, peer, tag, handle(c), &r);
        else
            MPI_Irecv(p + off, (int)n, MPI_BYTE, peer, tag, handle(c), &r);
        memcpy(req->raw[i], &r, sizeof(r));
    }
    req->n = (int)pieces;
    return QS_OK;
}

qs_status qs_comm_isend(const qs_comm *c, const void *buf, size_t nbytes, int dest, int tag,
                        qs_comm_req *req, qs_err *err) {
    if (!c->mpi) return QS_FAIL(err, QS_ERR_INTERNAL, "isend on a serial communicator");
    return start_pieces(c, (void *)(uintptr_t)buf, nbytes, dest, tag, 1, req, err);
}

qs_status qs_comm_irecv(const qs_comm *c, void *buf, size_t nbytes, int src, int tag,
                        qs_comm_req *req, qs_err *err) {
    if (!c->mpi) return QS_FAIL(err, QS_ERR_INTERNAL, "irecv on a serial communicator");
    return start_pieces(c, buf, nbytes, src, tag, 0, req, err);
}

/* ---- upper triangles ---- */

/* Rows of the upper triangle of (d, d) m moved to its first d(d+1)/2 floats, in row order
 * (front to back: a row's packed place never lies past its own or a later row's start). */
static void upper_pack(float *m, int64_t d) {
    int64_t off = 0;
    for (int64_t i = 0; i < d; off += d - i, ++i)
        memmove(m + off, m + i * d + i, sizeof(float) * (size_t)(d - i));
}

/* The inverse (back to front: a row's place never lies before its packed data or an earlier
 * row's). */
static void upper_unpack(float *m, int64_t d) {
    int64_t off = d * (d + 1) / 2;
    for (int64_t i = d - 1; i >= 0; --i) {
        off -= d - i;
        memmove(m + i * d + i, m + off, sizeof(float) * (size_t)(d - i));
    }
}

qs_status qs_comm_isend_upper(const qs_comm *c, float *m, int64_t d, int dest, int tag,
                              qs_comm_req *req, qs_err *err) {
    upper_pack(m, d);
    return qs_comm_isend(c, m, sizeof(float) * (size_t)(d * (d + 1) / 2), dest, tag, req, err);
}

void qs_comm_send_upper(const qs_comm *c, float *m, int64_t d, int dest, int tag) {
    upper_pack(m, d);
    qs_comm_send(c, m, sizeof(float) * (size_t)(d * (d + 1) / 2), dest, tag);
}

void qs_comm_recv_upper(const qs_comm *c, float *m, int64_t d, int src, int tag) {
    qs_comm_recv(c, m, sizeof(float) * (size_t)(d * (d + 1) / 2), src, tag);
    upper_unpack(m, d);
}

void qs_comm_wait(const qs_comm *c, qs_comm_req *req) {
    (void)c;
    MPI_Request r[QS_COMM_REQ_MAX];
    for (int i = 0; i < req->n; ++i) memcpy(&r[i], req->raw[i], sizeof(MPI_Request));
    if (req->n > 0) MPI_Waitall(req->n, r, MPI_STATUSES_IGNORE);
    memset(req, 0, sizeof(*req));
}

int qs_comm_test(const qs_comm *c, qs_comm_req *req) {
    (void)c;
    if (req->n == 0) return 1;
    MPI_Request r[QS_COMM_REQ_MAX];
    for (int i = 0; i < req->n; ++i) memcpy(&r[i], req->raw[i], sizeof(MPI_Request));
    int done = 0;
    MPI_Testall(req->n, r, &done, MPI_STATUSES_IGNORE);
    if (done) {
        memset(req, 0, sizeof(*req));
        return 1;
    }
    for (int i = 0; i < req->n; ++i) memcpy(req->raw[i], &r[i], sizeof(MPI_Request));
    return 0;
}
