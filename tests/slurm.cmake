# tests/slurm.cmake: slurm/qshard.sbatch on a real local Slurm cluster (docs/slurm.md).
# The tests use the cluster that answers or start one with tests/slurm/cluster.sh (Debian's
# slurm-wlm + munge, root) and stop it again; they skip (77) without Slurm unless
# QS_REQUIRE_SLURM=1 (.ci/run sets it). One at a time (RESOURCE_LOCK): one cluster per
# machine, and each job takes both CPUs. Not in the sanitizer build (label nosan): these
# test the template and the scheduler; qshard's code runs under ASan in the mpi tests.
#  - test_slurm_requeue: USR1 -> exit 3 -> scontrol requeue -> --resume; outputs identical
#    to an uninterrupted mpiexec run
#  - test_slurm_submit: plain submissions (srun and mpirun launchers) and a bad config
#    (exit 2: failed, not requeued)
foreach(t test_slurm_requeue test_slurm_submit)
  qs_add_script(${t} LABELS "slurm;mpi;nosan"
    COMMAND ${QS_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/slurm/${t}.py TIMEOUT 600)
  set_property(TEST ${t} APPEND PROPERTY ENVIRONMENT
               "QS_MPIEXEC=${MPIEXEC_EXECUTABLE} --oversubscribe")
  set_property(TEST ${t} PROPERTY RESOURCE_LOCK slurm_cluster)
endforeach()
