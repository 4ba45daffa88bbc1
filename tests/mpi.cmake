# tests/mpi.cmake: mpi/ (comm: agree, ordered reductions, point to point; h5par: parallel
# HDF5). These unit tests are MPI programs: each runs through ${QS_MPIEXEC} at the rank
# counts listed (test_comm also as a singleton, without a launcher).
#  - test_comm: agree on one rank's error (severity order, lowest failing rank's message on
#    every rank), any, bcast, gatherv, max, qs_comm_sum_double_ordered (rank-order sum, the
#    same bits on every rank), blocking and nonblocking point to point, the serial comm
#  - test_h5par: collective create, declare groups/datasets/attributes, write rows, agreed
#    close; read back with h5store; bytes identical across two runs and to the serial
#    (default driver) file; keep = 0 removes the file; errors name the file
set(QS_ROOM mpi)
qs_add_mpi_unit(test_comm LINK qs_mpi SINGLETON RANKS 1 2 3)
qs_add_mpi_unit(test_h5par LINK qs_mpi RANKS 1 2)
