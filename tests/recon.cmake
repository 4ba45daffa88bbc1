# tests/recon.cmake: the reconstruct stage (stages/reconstruct.c) and eval of its
# candidates (stages/eval.c --weights recon:CANDIDATE); see docs/reconstruct.md.
#  - test_recon_mpi: byte-identical recon files at 1, 2, 3 ranks (float and quantized
#    inputs), table sanity, layer 0 equal in both modes, kill/resume across rank counts,
#    eval of a candidate equal at 1 and 3 ranks, bad --weights values
#  - test_recon_final: the final pass with an allocation written by the test: byte-identical
#    final/ at 1, 2, 3 ranks, layer 0 == recon's, uniform allocation == recon, eval
#    --weights final, stop + resume across rank counts, bad allocation, float inputs
#  - test_recon_fixture (shared): sequential GPTQ/RTN on tinyllama-a vs the torch reference
#    perplexities and GPTQ/RTN error ratios
qs_add_script(test_recon_mpi LABELS "mpi;recon"
  COMMAND ${QS_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/mpi/test_recon_mpi.py TIMEOUT 900)
qs_add_script(test_recon_final LABELS "mpi;recon"
  COMMAND ${QS_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/mpi/test_recon_final.py TIMEOUT 900)
qs_add_script(test_recon_fixture LABELS "shared;mpi;recon"
  COMMAND ${QS_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/mpi/test_recon_fixture.py TIMEOUT 1200)
foreach(t test_recon_mpi test_recon_final test_recon_fixture)
  set_property(TEST ${t} APPEND PROPERTY ENVIRONMENT
               "QS_MPIEXEC=${MPIEXEC_EXECUTABLE} --oversubscribe")
endforeach()
