# tests/stages.cmake: the stages (stages/, one file per stage), each run through
# `mpiexec -n N qshard run|eval` on synthetic models (the fixture ones: label shared).
#
# plan (stages/plan.c)
#  - test_plan_mpi: 4 and 9 layers at 1, 2, 3, 7 ranks: every layer owned once, ranges
#    contiguous, the largest per-rank cost optimal; `qshard plan --json` equal; resume rules
set(QS_ROOM stages)
qs_add_script(test_plan_mpi MPI LABELS "mpi"
  COMMAND ${QS_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/mpi/test_plan_mpi.py)

# calibrate (stages/calibrate.c; docs/calibrate.md)
#  - test_calib_mpi: byte-identical Hessians/stats at 1, 2, 3 ranks, kill/resume, bad tokens
#  - test_calib_ref: layer 0 q/k/v Hessian vs an fp64 numpy reference (N = 32768, d = 512)
#  - bench_sgemm: helper executable for tests/bench/bench_calib.py (not a test)
qs_add_script(test_calib_mpi MPI LABELS "mpi;calib" TIMEOUT 900
  COMMAND ${QS_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/mpi/test_calib_mpi.py)
qs_add_script(test_calib_ref MPI LABELS "mpi;calib"
  COMMAND ${QS_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/mpi/test_calib_ref.py)
#  - test_calib_2d: the 2-D schedule (stages x replicas): 2 layers at 1-4 ranks (every rank
#    busy), 3 layers at 4 ranks (auto and calib.replicas 2) and 3 ranks (one idle): calib/
#    and the whole float-input run byte-identical to 1 rank; kill/resume 4 -> 3, 3 -> 4 ranks
qs_add_script(test_calib_2d MPI LABELS "mpi;calib;san" TIMEOUT 600
  COMMAND ${QS_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/mpi/test_calib_2d.py)
qs_add_test_program(bench_sgemm bench/bench_sgemm.c "qs_core;PkgConfig::OPENBLAS")
# BLAS choice (docs/design.md "BLAS choice"; docs/performance.md)
#  - bench_blas: qshard's BLAS/LAPACK calls timed single-threaded, with bit-stability
#    checks (not a test); tests/bench/bench_blas.sh also builds it against BLIS and runs both
qs_add_test_program(bench_blas bench/bench_blas.c "PkgConfig::OPENBLAS;m")

# threads per rank (pipeline/base/pool.c through every stage; docs/slurm.md "Threads per rank")
#  - test_threads_mpi: the run directory byte-identical at threads 1, 2, 3 x ranks 1, 2 with
#    quantized and float inputs; the threads rule through the environment, recorded per stage
#    in timings.json; a bad SLURM_CPUS_PER_TASK is exit 2
qs_add_script(test_threads_mpi MPI LABELS "mpi;threads" TIMEOUT 900
  COMMAND ${QS_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/mpi/test_threads_mpi.py)

# eval (stages/eval.c)
#  - test_eval_fixture (shared): `qshard eval` perplexity on the fixture at 1, 2, 3 ranks
qs_add_script(test_eval_fixture MPI LABELS "shared;mpi;calib" TIMEOUT 900
  COMMAND ${QS_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/mpi/test_eval_fixture.py)

# reconstruct (stages/reconstruct.c) and eval of its candidates (--weights recon:CANDIDATE,
# final); docs/reconstruct.md
#  - test_recon_mpi: byte-identical recon files at 1, 2, 3 ranks (float and quantized
#    inputs), table sanity, layer 0 equal in both modes, kill/resume across rank counts,
#    eval of a candidate equal at 1 and 3 ranks, bad --weights values
#  - test_recon_final: the final pass with an allocation written by the test: byte-identical
#    final/ at 1, 2, 3 ranks, layer 0 == recon's, uniform allocation == recon, eval
#    --weights final, stop + resume across rank counts, bad allocation, float inputs
#  - test_recon_fixture (shared): sequential GPTQ/RTN on tinyllama-a vs the torch reference
#    perplexities and GPTQ/RTN error ratios
qs_add_script(test_recon_mpi MPI LABELS "mpi;recon" TIMEOUT 900
  COMMAND ${QS_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/mpi/test_recon_mpi.py)
qs_add_script(test_recon_final MPI LABELS "mpi;recon" TIMEOUT 900
  COMMAND ${QS_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/mpi/test_recon_final.py)
qs_add_script(test_recon_fixture MPI LABELS "shared;mpi;recon" TIMEOUT 1200
  COMMAND ${QS_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/mpi/test_recon_fixture.py)

# search (stages/search.c; docs/search.md)
#  - test_search_mpi: qshard run on a synthetic model at 1, 2, 3 ranks: outputs
#    byte-identical, size <= budget, tied items, pins, brute-force optimality, error cases,
#    eval alloc:PATH
#  - test_objective_study: a 3-allocation miniature of tests/study/objective_study.py
qs_add_script(test_search_mpi MPI LABELS "mpi;search" TIMEOUT 900
  COMMAND ${QS_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/mpi/test_search_mpi.py)
#  - test_kl_search: objective kl and search.refine at 1, 2, 3 ranks: byte-identical, KL
#    values against an independent float64 numpy forward, brute-force optimum, cache
qs_add_script(test_kl_search MPI LABELS "mpi;search;san" TIMEOUT 900
  COMMAND ${QS_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/mpi/test_kl_search.py)
qs_add_script(test_objective_study MPI LABELS "mpi;search" TIMEOUT 900
  COMMAND ${QS_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/study/objective_study.py --miniature)

# work no output needs (docs/design.md "Work that is skipped"; stages/search.c,
# stages/reconstruct.c, stages/calibrate.c)
#  - test_skips: probes only for units with a choice (none with one candidate), final pass
#    layers copied from recon/ up to the first that differs, recorded in timings.json and
#    summary.json; out/, export/, eval.json, final/ byte-identical to QS_NO_SKIP runs
qs_add_script(test_skips MPI LABELS "mpi;search;recon" TIMEOUT 900
  COMMAND ${QS_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/mpi/test_skips.py)

# write (stages/write.c over mpi/h5par.c), `qshard verify`, eval of the written files
# (export/qsource.c); docs/write.md
#  - test_write_mpi: shards byte-identical at 1, 2, 3 ranks; h5dump -H; a numpy shard reader,
#    tests/ref/gptq_decode.py and recon's codes agree bit for bit for 2/3/4/8 bits, sym/asym,
#    act-order on/off, gptq v1/v2, a mixed allocation; dynamic patterns resolve; verify
#    (ok, tampered, missing); eval h5 = gptq = final at 1 and 3 ranks; resume skips.
qs_add_script(test_write_mpi MPI LABELS "mpi;write" TIMEOUT 900
  COMMAND ${QS_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/mpi/test_write_mpi.py)
