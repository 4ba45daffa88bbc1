# tests/calib.cmake: the calibrate and eval stages (stages/calibrate.c, stages/eval.c,
# pipeline/weights.c); see docs/calibrate.md.
#  - test_calib_fixture: weight loader + forward on the real fixture vs transformers' logits
#  - test_eval_fixture: `qshard eval` perplexity on the fixture at 1, 2, 3 ranks
#  - test_calib_mpi: byte-identical Hessians/stats at 1, 2, 3 ranks, kill/resume, bad tokens
#  - test_calib_ref: layer 0 q/k/v Hessian vs an fp64 numpy reference (N = 32768, d = 512)
#  - bench_sgemm: helper executable for tests/bench/bench_calib.py (not a test)
qs_add_unit(test_calib_fixture ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_calib_fixture.c
            LABELS "shared;calib" ARGS ${QS_SHARED_DIR})
qs_add_script(test_eval_fixture LABELS "shared;mpi;calib"
  COMMAND ${QS_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/mpi/test_eval_fixture.py TIMEOUT 900)
qs_add_script(test_calib_mpi LABELS "mpi;calib"
  COMMAND ${QS_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/mpi/test_calib_mpi.py TIMEOUT 900)
qs_add_script(test_calib_ref LABELS "mpi;calib"
  COMMAND ${QS_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/mpi/test_calib_ref.py)
foreach(t test_eval_fixture test_calib_mpi test_calib_ref)
  set_property(TEST ${t} APPEND PROPERTY ENVIRONMENT
               "QS_MPIEXEC=${MPIEXEC_EXECUTABLE} --oversubscribe")
endforeach()

add_executable(bench_sgemm ${CMAKE_CURRENT_SOURCE_DIR}/bench/bench_sgemm.c)
target_link_libraries(bench_sgemm PRIVATE qs_app)
