# tests/pipeline.cmake: the whole pipeline on the real fixture (issue 12's acceptance).
#  - test_pipeline_fixture (shared): tinyllama-a, sequential GPTQ, mixed allocation vs its
#    uniform twin at the sizes of w3g128 and w4g128, perplexity on the written GPTQ export
#    (nosan: four full pipelines on a real model; the sanitizer build covers the same code
#    through test_search_mpi, test_recon_final and test_write_mpi on synthetic models)
qs_add_script(test_pipeline_fixture LABELS "shared;mpi;pipeline;nosan"
  COMMAND ${QS_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/mpi/test_pipeline_fixture.py TIMEOUT 2400)
set_property(TEST test_pipeline_fixture APPEND PROPERTY ENVIRONMENT
             "QS_MPIEXEC=${MPIEXEC_EXECUTABLE} --oversubscribe")
