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
qs_add_test_program(bench_mckp bench/bench_mckp.c qs_quant)
