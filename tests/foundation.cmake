# Foundation tests: partition, run directory, CLI, plan over MPI, bad inputs.
qs_add_unit(test_partition unit/test_partition.c)
qs_add_unit(test_rundir unit/test_rundir.c)
qs_add_script(test_plan_mpi LABELS "mpi"
  COMMAND ${QS_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/mpi/test_plan_mpi.py)
set_property(TEST test_plan_mpi APPEND PROPERTY ENVIRONMENT "QS_MPIEXEC=${MPIEXEC_EXECUTABLE} --oversubscribe")
qs_add_script(test_bad_inputs LABELS "mpi"
  COMMAND ${QS_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/cli/test_bad_inputs.py TIMEOUT 900)
set_property(TEST test_bad_inputs APPEND PROPERTY ENVIRONMENT "QS_MPIEXEC=${MPIEXEC_EXECUTABLE} --oversubscribe")
qs_add_script(test_inspect_fixture LABELS "shared"
  COMMAND ${QS_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/cli/test_inspect_fixture.py)
qs_add_unit(test_tokens unit/test_tokens.c LABELS io)
qs_add_unit(test_alloc unit/test_alloc.c)
