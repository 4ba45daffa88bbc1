# tests/quant.cmake: pipeline/quant (RTN, GPTQ, packing, error, the MCKP solver, search
# items) and its benchmarks.
#  - test_quant: names, the group rule, RTN against its scalar twin, edge cases
#  - test_quant_gptq: the blocked GPTQ kernel against its twin, damping, dead columns
#  - test_quant_pack: GPTQ packing (bit positions, v1 zeros, round trips)
#  - test_quant_numpy: numpy GPTQ written from the paper (tests/ref/gptq_ref.py) cross-checks
#    the C kernels through the helper test_quant_refdump (files in a temp dir)
#  - test_mckp: the exact mixed-precision solver (random vs brute force, GLPK, Llama-70B)
#  - test_search: search items (tied groups, layouts, serve marlin, allow rules, pins and
#    their conflicts), budgets, integer re-sum, optimality vs brute force
#  - bench_prepare: the GPTQ factor, tiled vs the LAPACK chain (not a test):
#    ./build/tests/bench_prepare [--quick] [n ...]
#  - bench_gptq, bench_mckp: benchmarks (not tests): ./build/tests/bench_gptq [--quick],
#    ./build/tests/bench_mckp [--glpk]
set(QS_ROOM quant)
qs_add_unit(test_quant LINK qs_quant LABELS quant)
qs_add_unit(test_quant_gptq LINK qs_quant LABELS quant)
qs_add_unit(test_quant_pack LINK qs_quant LABELS quant)
qs_add_test_program(test_quant_refdump unit/test_quant_refdump.c qs_quant)
qs_add_script(test_quant_numpy LABELS "quant;unit" TIMEOUT 300
  COMMAND ${QS_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/ref/gptq_ref.py
          $<TARGET_FILE:test_quant_refdump>)
qs_add_unit(test_mckp LINK qs_quant LABELS quant)
qs_add_unit(test_search LINK qs_quant LABELS search)

qs_add_test_program(bench_gptq bench/bench_gptq.c qs_quant)
qs_add_test_program(bench_prepare bench/bench_prepare.c qs_quant)
qs_add_test_program(bench_mckp bench/bench_mckp.c qs_quant)

# GGUF block types (docs/quant.md "GGUF"): layouts, llama.cpp's quantizers bit for bit.
qs_add_unit(test_gguf_quant LINK qs_export LABELS quant)
qs_add_unit(test_gguf_gptq LINK qs_quant LABELS quant)
# The GGUF blocks against the gguf package (llama.cpp's Python reader, PyPI): the C helper
# writes bytes and qshard's floats, the script decodes them with gguf.quants.
qs_add_test_program(test_gguf_dump unit/test_gguf_dump.c qs_quant)
qs_add_script(test_gguf_numpy LABELS "quant;pypi" TIMEOUT 300
  COMMAND ${QS_PYPI} ${CMAKE_CURRENT_SOURCE_DIR}/ref/gguf_check.py
          $<TARGET_FILE:test_gguf_dump>)
# Benchmark (not a test): ./build/tests/bench_gguf errors MODEL_DIR RUN_DIR | speed [--quick]
# (tests/bench/bench_gguf.sh makes the calibration run and runs both)
qs_add_test_program(bench_gguf bench/bench_gguf.c qs_app)
