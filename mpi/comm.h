/* comm.h: the only door to MPI. Stages talk to other ranks through these functions;
 * nothing else in qshard includes mpi.h (parallel HDF5 gets its property list from mpi/).
 *
 * Failure model (../shared/DESIGN.md "Failure and stop"):
 *  - bad input: every rank computes a local status, then all call qs_comm_agree() before
 *    any blocking call; all ranks take the same branch, finalize and exit with the code;
 *    rank 0 prints the message of the lowest failing rank.
 *  - runtime failure where other ranks may already be blocked, and internal errors:
 *    qs_comm_abort() prints file:line and calls MPI_Abort.
 * A qs_comm is a plain value owned by the caller (no global state besides MPI's own).
 * Without MPI initialised (commands that do not run the pipeline) a "serial" comm of
 * rank 0, size 1 makes every function a local no-op.
 */
#ifndef QS_COMM_H
#define QS_COMM_H

#include <stddef.h>
#include <stdint.h>

#include "status.h"

typedef struct qs_comm {
    int rank;
    int size;
    int mpi;          /* 1 when MPI is initialised and this comm uses it */
    int fcomm;        /* Fortran handle of the duplicated world communicator */
} qs_comm;

/* Initialises MPI (thread level FUNNELED) and duplicates MPI_COMM_WORLD. */
qs_status qs_comm_init(qs_comm *c, int *argc, char ***argv, qs_err *err);

/* A rank-0-of-1 communicator that never touches MPI. */
void qs_comm_serial(qs_comm *c);

/* Frees the communicator and finalizes MPI (no-op for a serial comm). */
void qs_comm_finalize(qs_comm *c);

/* Collective over c: splits it into groups of the ranks with the same color >= 0, ordered by
 * key (ties by rank in c), like MPI_Comm_split. A rank with color < 0 joins no group and gets
 * a serial comm (rank 0 of 1, no MPI). A serial c gives a serial comm. *out is owned by the
 * caller: release it with qs_comm_free (before qs_comm_finalize of c). */
void qs_comm_split(const qs_comm *c, int color, int key, qs_comm *out);

/* Frees a comm made by qs_comm_split (safe on a serial or zeroed comm); *c becomes serial. */
void qs_comm_free(qs_comm *c);

/* Collective: combines every rank's status. Returns QS_OK if all are OK; otherwise the
 * most severe code (INTERNAL > RUNTIME > INPUT > STOPPED), and copies the failing record
 * of the lowest failing rank into *err on every rank (so rank 0 can print it). */
qs_status qs_comm_agree(const qs_comm *c, qs_status local, qs_err *err);

/* Prints "qshard: internal error at file:line: msg" (or "qshard: error: msg") and
 * aborts every rank. Does not return. */
void qs_comm_abort(const qs_comm *c, const qs_err *err);

/* Collective: logical OR of a flag over all ranks (signal flags at unit boundaries). */
int qs_comm_any(const qs_comm *c, int flag);

/* Collective: barrier. */
void qs_comm_barrier(const qs_comm *c);

/* Collective: broadcast `nbytes` bytes from `root`. */
void qs_comm_bcast(const qs_comm *c, void *buf, size_t nbytes, int root);

/* Collective: every rank contributes `nbytes` (may differ per rank); rank `root`
 * receives the concatenation in rank order into a newly malloc'd *out (caller frees)
 * with per-rank sizes in *counts (size entries, malloc'd, caller frees). Non-root ranks
 * get *out = NULL, *counts = NULL. */
qs_status qs_comm_gatherv(const qs_comm *c, const void *buf, size_t nbytes, int root,
                          void **out, size_t **counts, qs_err *err);

/* Collective: every rank's `nbytes` bytes reach `sink` on rank `root` in rank order (rank 0's,
 * then rank 1's, ...), one call per rank with a non-empty buffer, without gathering them all
 * into one buffer (each rank's part travels point to point, any size). The root keeps
 * receiving after a sink failure (no rank is left blocked) and returns the first one.
 * Other ranks return QS_OK. A serial comm calls sink once with buf. */
typedef qs_status (*qs_comm_sink)(void *ctx, const void *buf, size_t nbytes, qs_err *err);
qs_status qs_comm_ordered_sink(const qs_comm *c, const void *buf, size_t nbytes, int root,
                               qs_comm_sink sink, void *ctx, qs_err *err);

/* Collective: element-wise max / sum of doubles in rank order (sum is computed on rank 0
 * in rank order, then broadcast, so the result does not depend on MPI's reduction tree). */
void qs_comm_max_double(const qs_comm *c, double *vals, int n);
qs_status qs_comm_sum_double_ordered(const qs_comm *c, double *vals, int n, qs_err *err);

/* Point-to-point for the layer pipeline (blocking). */
void qs_comm_send(const qs_comm *c, const void *buf, size_t nbytes, int dest, int tag);
void qs_comm_recv(const qs_comm *c, void *buf, size_t nbytes, int src, int tag);

/* Nonblocking point-to-point for the layer pipeline. A request is a plain value owned by
 * the caller; a message larger than 1 GiB travels in pieces (at most QS_COMM_REQ_MAX
 * pieces). Every started request must be completed with qs_comm_wait (or a qs_comm_test
 * that returned 1) before its buffer is reused or freed. A zeroed request is "none":
 * wait and test return at once. */
#define QS_COMM_REQ_MAX 16
typedef struct qs_comm_req {
    int n;                                        /* pieces in flight (0 = none) */
    unsigned char raw[QS_COMM_REQ_MAX][16];       /* MPI_Request handles (opaque here) */
} qs_comm_req;

/* QS_ERR_INTERNAL when nbytes needs more than QS_COMM_REQ_MAX pieces. */
qs_status qs_comm_isend(const qs_comm *c, const void *buf, size_t nbytes, int dest, int tag,
                        qs_comm_req *req, qs_err *err);
qs_status qs_comm_irecv(const qs_comm *c, void *buf, size_t nbytes, int src, int tag,
                        qs_comm_req *req, qs_err *err);
/* The upper triangle (row i, columns j >= i) of a (d, d) f32 row-major matrix m, for chunk
 * partials of a Hessian (pipeline/model/hessian.h: only the upper triangle is meaningful):
 * the sender packs it in place into m's first d(d+1)/2 floats (m's (d, d) layout is lost
 * until it is written again) and sends them as one contiguous message (MPI moves contiguous
 * bytes best: single copy, no progress needed from the sender); the receiver gets them into
 * m and unpacks them in place (m's strict lower triangle is left undefined). The isend's
 * request follows the rules below; recv_upper must match a send_upper or isend_upper of the
 * same d. */
qs_status qs_comm_isend_upper(const qs_comm *c, float *m, int64_t d, int dest, int tag,
                              qs_comm_req *req, qs_err *err);
void qs_comm_send_upper(const qs_comm *c, float *m, int64_t d, int dest, int tag);
void qs_comm_recv_upper(const qs_comm *c, float *m, int64_t d, int src, int tag);

/* Blocks until the request completes; resets it to none. */
void qs_comm_wait(const qs_comm *c, qs_comm_req *req);
/* Drives progress; returns 1 (and resets the request) when it has completed. Calling it
 * between compute steps lets a large send move while this rank computes. */
int qs_comm_test(const qs_comm *c, qs_comm_req *req);

#endif /* QS_COMM_H */
