# tests/core.cmake: pipeline/core (config, log, rundir, sha256).
#  - test_config: the YAML run configuration; also that docs/config.md names every schema
#    key and that configs/*.yaml load; the
#    threads rule (explicit > SLURM_CPUS_PER_TASK > OMP_NUM_THREADS > 1, bad values named)
#  - test_rundir: SHA-256 known answers, atomic writes, manifests (match, mismatch, tampered)
set(QS_ROOM core)
qs_add_unit(test_config LINK qs_core LABELS config ARGS ${CMAKE_SOURCE_DIR}/docs/config.md)
qs_add_unit(test_rundir LINK qs_core)
