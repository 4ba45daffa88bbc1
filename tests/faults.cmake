# tests/faults.cmake: the fault matrix (issue 20; docs/reliability.md), across the rooms:
# tests/faults/test_faults.py injects one fault per row into `qshard run` on a 4-layer
# synthetic Llama (kill -9 of a rank inside each stage, flipped / truncated / deleted
# outputs, a full disk in each stage, NaN weights, USR1 / TERM to the launcher, a second run
# on a live run directory, a moved run directory) and checks the exact exit code, the one
# error line, and byte-identical outputs after --resume. Ranks are held at a known point of
# a stage by the test knob QS_TEST_HOLD (stages/common.h) instead of racing a timer.
#
# Every row runs in both builds (label san: CI's sanitizer step runs all 55 rows too). The
# rows are split four ways so that no row runs twice and the parts run in parallel:
#  - test_faults_san, test_faults_enospc_san: one kill -9 with resumes at 1 and 3 ranks, one
#    byte flip, one ENOSPC (the parallel HDF5 write), one NaN (lm_head), TERM to the sbatch
#    template's launcher: the quick first check
#  - test_faults, test_faults_enospc: every other row
# The enospc tests mount a tmpfs (root): without permission they skip (77), or fail with
# QS_REQUIRE_ROOT=1, as .ci/run sets it.
# `ctest -L faults -V | grep '^fault matrix'` prints the counts docs/reliability.md gives.
set(QS_FAULTS ${CMAKE_CURRENT_SOURCE_DIR}/faults/test_faults.py)
set(QS_FAULT_GROUPS kill,damage,nan,signal,rundir)
qs_add_script(test_faults MPI LABELS "faults;mpi;san" TIMEOUT 2400
  COMMAND ${QS_PYTHON} ${QS_FAULTS} --part rest --groups ${QS_FAULT_GROUPS})
qs_add_script(test_faults_enospc MPI LABELS "faults;mpi;root;san" TIMEOUT 1800
  COMMAND ${QS_PYTHON} ${QS_FAULTS} --part rest --groups enospc)
qs_add_script(test_faults_san MPI LABELS "faults;mpi;san" TIMEOUT 1800
  COMMAND ${QS_PYTHON} ${QS_FAULTS} --part san --groups ${QS_FAULT_GROUPS})
qs_add_script(test_faults_enospc_san MPI LABELS "faults;mpi;root;san" TIMEOUT 1200
  COMMAND ${QS_PYTHON} ${QS_FAULTS} --part san --groups enospc)

# test_input_warnings: a calibration that reads its token file more than once is a warning
# recorded in timings.json ("warnings") and report.md, not a refusal (issue 20, point 9)
qs_add_script(test_input_warnings MPI LABELS "faults;mpi;san" TIMEOUT 600
  COMMAND ${QS_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/faults/test_input_warnings.py)
