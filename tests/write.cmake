# tests/write.cmake: the write stage (stages/write.c, mpi/h5par.c), `qshard verify`, and eval
# of the written files (io/qsource.c); see docs/write.md.
#  - test_write_mpi: shards byte-identical at 1, 2, 3 ranks; h5dump -H; a numpy shard reader,
#    tests/ref/gptq_decode.py and recon's codes agree bit for bit for 2/3/4/8 bits, sym/asym,
#    act-order on/off, gptq v1/v2, a mixed allocation; dynamic patterns resolve; verify
#    (ok, tampered, missing); eval h5 = gptq = final at 1 and 3 ranks; resume skips.
qs_add_script(test_write_mpi LABELS "mpi;write"
  COMMAND ${QS_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/mpi/test_write_mpi.py TIMEOUT 900)
set_property(TEST test_write_mpi APPEND PROPERTY ENVIRONMENT
             "QS_MPIEXEC=${MPIEXEC_EXECUTABLE} --oversubscribe")
