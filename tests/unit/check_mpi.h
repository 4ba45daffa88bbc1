/* check_mpi.h: check.h for the unit tests that are MPI programs (test_comm, test_h5par; see
 * qs_add_mpi_unit in tests/CMakeLists.txt, which passes `--ranks N` last).
 *   qs_test_mpi_init(&c, &argc, &argv)  qs_comm_init, then checks that the job has the
 *                                       `--ranks N` ranks (exit 1 if MPI does not start)
 *   qs_test_mpi_finish(&c, name)        agrees on the failures of all ranks, finalizes MPI
 *                                       and returns the exit code: 1 on every rank when
 *                                       any rank failed
 */
#ifndef QS_TEST_CHECK_MPI_H
#define QS_TEST_CHECK_MPI_H

#include "check.h"
#include "comm.h"

static inline void qs_test_mpi_init(qs_comm *c, int *argc, char ***argv) {
    qs_err err = {0};
    if (qs_comm_init(c, argc, argv, &err) != QS_OK) {
        fprintf(stderr, "FAIL: MPI init: %s\n", err.msg);
        exit(1);
    }
    int want = *argc >= 3 && strcmp((*argv)[*argc - 2], "--ranks") == 0
                   ? atoi((*argv)[*argc - 1])
                   : -1;
    CHECK(c->mpi == 1 && c->size == want && c->rank >= 0 && c->rank < c->size,
          "started at %d rank(s), rank %d (mpi %d); want --ranks %d", c->size, c->rank, c->mpi,
          want);
}

static inline int qs_test_mpi_finish(qs_comm *c, const char *name) {
    int any = qs_comm_any(c, qs_test_failures != 0);
    int rank = c->rank;
    qs_comm_finalize(c);
    if (any && qs_test_failures == 0) {
        printf("%s: rank %d ok, another rank failed\n", name, rank);
        return 1;
    }
    return qs_test_finish(name);
}

#endif /* QS_TEST_CHECK_MPI_H */
