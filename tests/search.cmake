# search.cmake: the search stage (stages/search.c, pipeline/quant/search.c; docs/search.md).
#  - test_search: items (tied groups, layouts, serve marlin, allow rules, pins and their
#    conflicts), budgets, integer re-sum, optimality vs brute force
#  - test_search_mpi: qshard run on a synthetic model at 1, 2, 3 ranks: outputs byte-identical,
#    size <= budget, tied items, pins, brute-force optimality, error cases, eval alloc:PATH
#  - test_objective_study: a 3-allocation miniature of tests/study/objective_study.py
qs_add_unit(test_search unit/test_search.c LABELS search)
qs_add_script(test_search_mpi LABELS "mpi;search"
  COMMAND ${QS_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/mpi/test_search_mpi.py TIMEOUT 900)
qs_add_script(test_objective_study LABELS "mpi;search"
  COMMAND ${QS_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/study/objective_study.py --miniature
  TIMEOUT 900)
foreach(t test_search_mpi test_objective_study)
  set_property(TEST ${t} APPEND PROPERTY ENVIRONMENT
               "QS_MPIEXEC=${MPIEXEC_EXECUTABLE} --oversubscribe")
endforeach()
