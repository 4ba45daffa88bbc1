# tests/ops.cmake: operations (issue 13; docs/slurm.md): kill -9 + resume at another rank
# count, the run report, sweeps and collect.
#  - test_kill_resume (mpi): SIGKILL of one rank mid-reconstruct, --resume at 3 ranks:
#    every output byte-identical to an uninterrupted run, finished layer files untouched
#  - test_report (mpi): report.md + SVGs after a run (bars/points counted from the XML),
#    "not run" sections, allocation/pareto plots via `qshard report`; sweep/collect without
#    Slurm (points, bad keys exit 2, missing/done rows)
#  - test_ops (unit): progress bookkeeping/time format, the SVG writer, stale temp removal
#  - test_slurm_sweep (slurm): a 2x2 sweep as a real job array, collect: 4 done rows
qs_add_unit(test_ops unit/test_ops.c LABELS ops)
foreach(t test_kill_resume test_report)
  qs_add_script(${t} LABELS "mpi;ops"
    COMMAND ${QS_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/mpi/${t}.py TIMEOUT 900)
  set_property(TEST ${t} APPEND PROPERTY ENVIRONMENT
               "QS_MPIEXEC=${MPIEXEC_EXECUTABLE} --oversubscribe")
endforeach()
qs_add_script(test_slurm_sweep LABELS "slurm;mpi;nosan;ops"
  COMMAND ${QS_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/slurm/test_slurm_sweep.py TIMEOUT 900)
set_property(TEST test_slurm_sweep APPEND PROPERTY ENVIRONMENT
             "QS_MPIEXEC=${MPIEXEC_EXECUTABLE} --oversubscribe")
set_property(TEST test_slurm_sweep PROPERTY RESOURCE_LOCK slurm_cluster)
