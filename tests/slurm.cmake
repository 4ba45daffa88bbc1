# tests/slurm.cmake: slurm/qshard.sbatch and sweeps on a real local Slurm cluster
# (docs/slurm.md). The tests use the cluster that answers or start one with
# tests/slurm/cluster.sh (Debian's slurm-wlm + munge, root) and stop it again; they skip (77)
# without Slurm unless QS_REQUIRE_SLURM=1 (.ci/run sets it). One at a time (RESOURCE_LOCK):
# one cluster per machine, and each job takes both CPUs. Not in the sanitizer build (label
# nosan): these test the template and the scheduler; qshard's code runs under ASan in the
# mpi tests.
#  - test_slurm_requeue: USR1 -> exit 3 -> scontrol requeue -> --resume; outputs identical
#    to an uninterrupted mpiexec run
#  - test_slurm_submit: plain submissions (srun and mpirun launchers) and a bad config
#    (exit 2: failed, not requeued)
#  - test_slurm_sweep: a 2x2 sweep as a real job array, collect: 4 done rows
set(QS_ROOM slurm)
foreach(t test_slurm_requeue test_slurm_submit)
  qs_add_script(${t} MPI LABELS "slurm;mpi;nosan" TIMEOUT 600
    COMMAND ${QS_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/slurm/${t}.py)
endforeach()
qs_add_script(test_slurm_sweep MPI LABELS "slurm;mpi;nosan;ops" TIMEOUT 900
  COMMAND ${QS_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/slurm/test_slurm_sweep.py)
set_tests_properties(test_slurm_requeue test_slurm_submit test_slurm_sweep PROPERTIES
  RESOURCE_LOCK slurm_cluster)
