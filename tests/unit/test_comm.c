/* test_comm.c: mpi/comm.c on the ranks it is started with (a singleton, or mpiexec -n N) and
 * on the serial communicator:
 *  - qs_comm_agree: for statuses spread over the ranks in several patterns, every rank gets
 *    the most severe code and the message and line of the lowest rank with that code (the
 *    expected answer is computed here from the same patterns); a rank whose own status was
 *    OK gets the record too; the source file is kept only on the failing rank;
 *  - qs_comm_any, qs_comm_max_double, qs_comm_bcast (from the last rank), qs_comm_gatherv
 *    (per-rank sizes, one of them empty) and qs_comm_sum_double_ordered: the sum in rank
 *    order, bit for bit, on every rank, for values where another order gives other bits;
 *  - a ring of blocking and of nonblocking messages (qs_comm_test polled, then waited);
 *  - qs_comm_send_upper / isend_upper / recv_upper: a ring of upper triangles (packed and
 *    unpacked in place) arrive whole;
 *  - qs_comm_split: groups by color ordered by key (here: reversed rank), a rank with a
 *    negative color gets the serial comm, a message and a sum inside a group, qs_comm_free;
 *  - the serial communicator: agree returns the local status, reductions leave the values,
 *    gatherv copies, isend/irecv are internal errors.
 * Usage: test_comm --ranks N (the rank count it must find; CTest passes it). Every rank
 * checks; when any rank failed, every rank exits 1. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check_mpi.h"

/* ---- qs_comm_agree ---- */

enum { NPATTERN = 6 };

/* The status rank r of `size` contributes in pattern p. */
static qs_status pattern_status(int p, int r, int size) {
    static const qs_status by_rank[4] = {QS_STOPPED, QS_ERR_INPUT, QS_ERR_RUNTIME,
                                         QS_ERR_INTERNAL};
    switch (p) {
    case 0: return QS_OK;                                            /* nobody fails */
    case 1: return r == size - 1 ? QS_ERR_INPUT : QS_OK;             /* only the last rank */
    case 2: return QS_ERR_INPUT;                                     /* all: lowest wins */
    case 3: return by_rank[r % 4];                                   /* worse with rank */
    case 4: return r == 0 ? QS_ERR_RUNTIME : QS_ERR_INPUT;           /* worst on rank 0 */
    case 5: return r == 0 ? QS_STOPPED : QS_OK;                      /* a stop only */
    }
    return QS_OK;
}

static int severity(qs_status st) {
    switch (st) {
    case QS_OK: return 0;
    case QS_STOPPED: return 1;
    case QS_ERR_INPUT: return 2;
    case QS_ERR_RUNTIME: return 3;
    case QS_ERR_INTERNAL: return 4;
    }
    return 5;
}

static void test_agree(const qs_comm *c) {
    for (int p = 0; p < NPATTERN; ++p) {
        /* expected: the most severe status, from the lowest rank that has it */
        int root = 0;
        for (int r = 1; r < c->size; ++r)
            if (severity(pattern_status(p, r, c->size)) >
                severity(pattern_status(p, root, c->size)))
                root = r;
        qs_status want = pattern_status(p, root, c->size);
        char want_msg[64];
        snprintf(want_msg, sizeof(want_msg), "pattern %d: status of rank %d", p, root);

        qs_err err = {0};
        qs_status local = pattern_status(p, c->rank, c->size);
        const int line = __LINE__ + 2; /* the line of the QS_FAIL below, on every rank */
        if (local != QS_OK)
            QS_FAIL(&err, local, "pattern %d: status of rank %d", p, c->rank);
        qs_status got = qs_comm_agree(c, local, &err);
        CHECK(got == want, "pattern %d rank %d: agreed %d, want %d", p, c->rank, (int)got,
              (int)want);
        if (want == QS_OK) {
            CHECK(err.code == QS_OK && err.msg[0] == '\0', "pattern %d: record '%s' for OK", p,
                  err.msg);
            continue;
        }
        CHECK(err.code == want, "pattern %d rank %d: err.code %d", p, c->rank, (int)err.code);
        CHECK(strcmp(err.msg, want_msg) == 0, "pattern %d rank %d: message '%s', want '%s'", p,
              c->rank, err.msg, want_msg);
        CHECK(err.line == line, "pattern %d rank %d: line %d, want %d", p, c->rank, err.line,
              line);
        if (c->rank == root)
            CHECK(err.file && strcmp(err.file, __FILE__) == 0, "pattern %d: own file kept", p);
        else
            CHECK(err.file == NULL, "pattern %d rank %d: another rank's file kept", p, c->rank);
    }
}

/* ---- collectives ---- */

static void test_any_max_bcast(const qs_comm *c) {
    int last = c->size - 1;
    CHECK(qs_comm_any(c, 0) == 0, "any of no flag");
    CHECK(qs_comm_any(c, c->rank == last) == 1, "any of the last rank's flag");
    CHECK(qs_comm_any(c, 7) == 1, "any of every flag");

    double v[3] = {(double)c->rank, -(double)c->rank, c->rank == last ? 1e300 : -1e300};
    qs_comm_max_double(c, v, 3);
    CHECK(v[0] == (double)last && v[1] == 0.0 && v[2] == 1e300, "max: %g %g %g", v[0], v[1],
          v[2]);

    unsigned char buf[1000]; /* (1000,) */
    for (int i = 0; i < 1000; ++i)
        buf[i] = c->rank == last ? (unsigned char)(i * 7 + 3) : (unsigned char)0;
    qs_comm_bcast(c, buf, sizeof(buf), last);
    int bad = 0;
    for (int i = 0; i < 1000; ++i) bad += buf[i] != (unsigned char)(i * 7 + 3);
    CHECK(bad == 0, "bcast from rank %d: %d bytes differ", last, bad);
}

/* Rank r sends r + 2 bytes of value r + 1, except rank 1, which sends nothing. */
static size_t gather_len(int r) { return r == 1 ? 0 : (size_t)r + 2; }

static void test_gatherv(const qs_comm *c) {
    unsigned char mine[64]; /* (gather_len(rank),) */
    memset(mine, c->rank + 1, sizeof(mine));
    void *out = NULL;
    size_t *counts = NULL;
    qs_err err = {0};
    qs_status st = qs_comm_gatherv(c, mine, gather_len(c->rank), 0, &out, &counts, &err);
    CHECK(st == QS_OK, "gatherv: %s", err.msg);
    if (c->rank != 0) {
        CHECK(out == NULL && counts == NULL, "gatherv: a non-root rank received");
        return;
    }
    CHECK(out != NULL && counts != NULL, "gatherv: root received nothing");
    if (!out || !counts) return;
    const unsigned char *o = out;
    size_t off = 0;
    for (int r = 0; r < c->size; ++r) {
        CHECK(counts[r] == gather_len(r), "gatherv: count of rank %d is %zu", r, counts[r]);
        for (size_t i = 0; i < gather_len(r); ++i)
            CHECK(o[off + i] == (unsigned char)(r + 1), "gatherv: byte %zu of rank %d", i, r);
        off += gather_len(r);
    }
    free(out);
    free(counts);
}

enum { NSUM = 5 };

/* The value rank r contributes to element i of the ordered sum. Element 0 is 1, 1e16,
 * -1e16, ... over the ranks: in rank order (1 + 1e16) - 1e16 = 0 at 3 ranks, while
 * 1 + (1e16 - 1e16) = 1; element 4 adds a spread of magnitudes that rounds per step. */
static double sum_value(int r, int i) {
    switch (i) {
    case 0: return r == 0 ? 1.0 : (r % 2 ? 1e16 : -1e16);
    case 1: return 0.1 * (r + 1);
    case 2: return (double)r * r - 2.5;
    case 3: return r == 0 ? 1e-300 : -1e-300 * r;
    case 4: return 1.0 / (3.0 + r) * (r % 2 ? 1e8 : 1.0);
    }
    return 0.0;
}

static void test_sum_ordered(const qs_comm *c) {
    double v[NSUM], want[NSUM], rev[NSUM]; /* (NSUM,) */
    for (int i = 0; i < NSUM; ++i) {
        v[i] = sum_value(c->rank, i);
        /* one rank: the value itself; several: 0 + rank 0 + rank 1 + ... */
        want[i] = c->size == 1 ? sum_value(0, i) : 0.0;
        rev[i] = want[i];
        for (int r = 0; r < c->size && c->size > 1; ++r) {
            want[i] += sum_value(r, i);
            rev[i] += sum_value(c->size - 1 - r, i);
        }
    }
    qs_err err = {0};
    CHECK(qs_comm_sum_double_ordered(c, v, NSUM, &err) == QS_OK, "sum: %s", err.msg);
    CHECK(memcmp(v, want, sizeof(v)) == 0, "sum differs from the rank-order sum: %.17g %.17g "
          "%.17g %.17g %.17g", v[0], v[1], v[2], v[3], v[4]);
    if (c->size == 3) /* the values make the order visible (the check above can fail) */
        CHECK(memcmp(want, rev, sizeof(want)) != 0, "reverse order gives the same bits");
}

/* ---- point to point ---- */

enum { NMSG = 4096 };

static void fill(int32_t *m, int from) {
    for (int i = 0; i < NMSG; ++i) m[i] = from * 100000 + i;
}

static int count_bad(const int32_t *m, int from) {
    int bad = 0;
    for (int i = 0; i < NMSG; ++i) bad += m[i] != from * 100000 + i;
    return bad;
}

static void test_p2p(const qs_comm *c) {
    int next = (c->rank + 1) % c->size, prev = (c->rank + c->size - 1) % c->size;
    int32_t *out = malloc(sizeof(int32_t) * NMSG), *in = malloc(sizeof(int32_t) * NMSG);
    if (!out || !in) abort();
    fill(out, c->rank);
    if (c->size > 1) { /* blocking ring: rank 0 starts, the others pass it on */
        memset(in, 0, sizeof(int32_t) * NMSG);
        if (c->rank == 0) {
            qs_comm_send(c, out, sizeof(int32_t) * NMSG, next, 11);
            qs_comm_recv(c, in, sizeof(int32_t) * NMSG, prev, 11);
        } else {
            qs_comm_recv(c, in, sizeof(int32_t) * NMSG, prev, 11);
            qs_comm_send(c, out, sizeof(int32_t) * NMSG, next, 11);
        }
        CHECK(count_bad(in, prev) == 0, "blocking ring: message from rank %d", prev);
    }
    /* nonblocking ring (to itself at one rank) */
    memset(in, 0, sizeof(int32_t) * NMSG);
    qs_comm_req rs, rr;
    qs_err err = {0};
    CHECK(qs_comm_irecv(c, in, sizeof(int32_t) * NMSG, prev, 12, &rr, &err) == QS_OK,
          "irecv: %s", err.msg);
    CHECK(qs_comm_isend(c, out, sizeof(int32_t) * NMSG, next, 12, &rs, &err) == QS_OK,
          "isend: %s", err.msg);
    CHECK(rr.n == 1 && rs.n == 1, "one piece each: %d %d", rr.n, rs.n);
    for (int k = 0; k < 1000 && !qs_comm_test(c, &rr); ++k) {
    }
    qs_comm_wait(c, &rr);
    qs_comm_wait(c, &rs);
    CHECK(rr.n == 0 && rs.n == 0, "requests reset after completion");
    CHECK(count_bad(in, prev) == 0, "nonblocking ring: message from rank %d", prev);
    qs_comm_req none;
    memset(&none, 0, sizeof(none));
    CHECK(qs_comm_test(c, &none) == 1, "a zeroed request tests complete");
    qs_comm_wait(c, &none);
    free(out);
    free(in);
}

/* ---- upper triangles ---- */

/* Rank r sends the upper triangle of a (d, d) matrix to rank r + 1 (the last to rank 0),
 * blocking for d = 7 and without blocking for d = 300 (at one rank: to itself); the receiver's
 * upper triangle is the sender's, its lower one is not looked at. */
static void test_upper(const qs_comm *c) {
    for (int d = 7; d <= 300; d += 293) {
        float *out = malloc(sizeof(float) * (size_t)(d * d)); // (d, d)
        float *in = malloc(sizeof(float) * (size_t)(d * d));  // (d, d)
        if (!out || !in) abort();
        const int next = (c->rank + 1) % c->size, prev = (c->rank + c->size - 1) % c->size;
        for (int i = 0; i < d * d; ++i) {
            out[i] = (float)(c->rank * 1000000 + i);
            in[i] = -1.0f;
        }
        qs_comm_req rs;
        qs_err err = {0};
        if (d == 7 && c->size > 1) { /* blocking: even ranks send first */
            if (c->rank % 2 == 0) qs_comm_send_upper(c, out, d, next, 21);
            qs_comm_recv_upper(c, in, d, prev, 21);
            if (c->rank % 2 == 1) qs_comm_send_upper(c, out, d, next, 21);
        } else {
            CHECK(qs_comm_isend_upper(c, out, d, next, 22, &rs, &err) == QS_OK, "isend_upper: %s",
                  err.msg);
            qs_comm_recv_upper(c, in, d, prev, 22);
            qs_comm_wait(c, &rs);
        }
        int bad = 0;
        for (int i = 0; i < d; ++i)
            for (int j = i; j < d; ++j) bad += in[i * d + j] != (float)(prev * 1000000 + i * d + j);
        CHECK(bad == 0, "upper triangle d=%d from rank %d: %d wrong entries", d, prev, bad);
        free(out);
        free(in);
    }
}

/* ---- sub-communicators ---- */

/* Colors: even and odd ranks, the last rank of 3 or more left out (color -1); key: the
 * reversed rank, so a group's rank 0 is its highest member of c. */
static void test_split(const qs_comm *c) {
    const int left_out = c->size >= 3 && c->rank == c->size - 1;
    qs_comm g;
    qs_comm_split(c, left_out ? -1 : c->rank % 2, c->size - c->rank, &g);
    if (left_out) {
        CHECK(g.mpi == 0 && g.rank == 0 && g.size == 1, "left out: serial comm");
    } else {
        int members = 0, below = 0; /* members of my color, and those above me in c */
        for (int r = 0; r < c->size; ++r)
            if (r % 2 == c->rank % 2 && !(c->size >= 3 && r == c->size - 1)) {
                ++members;
                below += r > c->rank;
            }
        CHECK(g.size == members && g.rank == below && g.mpi == 1,
              "split: rank %d of %d, want %d of %d", g.rank, g.size, below, members);
        /* the sum of the members' ranks in c, in group order */
        double v = (double)c->rank;
        qs_err err = {0};
        CHECK(qs_comm_sum_double_ordered(&g, &v, 1, &err) == QS_OK, "sum: %s", err.msg);
        double want = 0.0;
        for (int r = c->size - 1; r >= 0; --r)
            if (r % 2 == c->rank % 2 && !(c->size >= 3 && r == c->size - 1)) want += r;
        CHECK(v == want, "group sum %g, want %g", v, want);
        if (g.size > 1) { /* group rank 1 sends its rank in c to group rank 0 */
            int x = c->rank;
            if (g.rank == 1) qs_comm_send(&g, &x, sizeof(x), 0, 5);
            if (g.rank == 0) {
                qs_comm_recv(&g, &x, sizeof(x), 1, 5);
                CHECK(x < c->rank && x % 2 == c->rank % 2, "message from group rank 1: %d", x);
            }
        }
    }
    qs_comm_free(&g);
    CHECK(g.mpi == 0 && g.size == 1, "freed comm is serial");
    qs_comm s, t;
    qs_comm_serial(&s);
    qs_comm_split(&s, 0, 0, &t);
    CHECK(t.mpi == 0 && t.size == 1, "split of the serial comm is serial");
    qs_comm_free(&t);
}

/* ---- the serial communicator ---- */

static void test_serial(void) {
    qs_comm s;
    qs_comm_serial(&s);
    CHECK(s.rank == 0 && s.size == 1 && s.mpi == 0, "serial: rank %d size %d mpi %d", s.rank,
          s.size, s.mpi);
    qs_err err = {0};
    QS_FAIL(&err, QS_ERR_INPUT, "serial failure");
    CHECK(qs_comm_agree(&s, QS_ERR_INPUT, &err) == QS_ERR_INPUT &&
              strcmp(err.msg, "serial failure") == 0 && err.file != NULL,
          "serial agree: local status and record");
    CHECK(qs_comm_any(&s, 0) == 0 && qs_comm_any(&s, 5) == 1, "serial any");
    double v[2] = {-0.0, 3.5};
    qs_err e2 = {0};
    CHECK(qs_comm_sum_double_ordered(&s, v, 2, &e2) == QS_OK && v[1] == 3.5 &&
              memcmp(&v[0], &(double){-0.0}, sizeof(double)) == 0,
          "serial sum leaves the values");
    qs_comm_max_double(&s, v, 2);
    CHECK(v[1] == 3.5, "serial max leaves the values");
    void *out = NULL;
    size_t *counts = NULL;
    CHECK(qs_comm_gatherv(&s, "abc", 3, 0, &out, &counts, &e2) == QS_OK && counts &&
              counts[0] == 3 && out && memcmp(out, "abc", 3) == 0,
          "serial gatherv copies");
    free(out);
    free(counts);
    int x = 1;
    qs_comm_req req;
    qs_err e3 = {0};
    CHECK(qs_comm_isend(&s, &x, sizeof(x), 0, 1, &req, &e3) == QS_ERR_INTERNAL &&
              strstr(e3.msg, "serial"),
          "serial isend: '%s'", e3.msg);
    qs_err e4 = {0};
    CHECK(qs_comm_irecv(&s, &x, sizeof(x), 0, 1, &req, &e4) == QS_ERR_INTERNAL &&
              strstr(e4.msg, "serial"),
          "serial irecv: '%s'", e4.msg);
}

int main(int argc, char **argv) {
    qs_comm c;
    qs_test_mpi_init(&c, &argc, &argv);
    test_serial();
    test_agree(&c);
    test_any_max_bcast(&c);
    test_gatherv(&c);
    test_sum_ordered(&c);
    test_p2p(&c);
    test_split(&c);
    test_upper(&c);
    return qs_test_mpi_finish(&c, "test_comm");
}
