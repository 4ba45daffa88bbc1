# quant.cmake: tests of the quantization kernels (pipeline/quant/), and the GPTQ benchmark.
qs_add_unit(test_quant unit/test_quant.c LABELS quant)
qs_add_unit(test_quant_gptq unit/test_quant_gptq.c LABELS quant)
qs_add_unit(test_quant_pack unit/test_quant_pack.c LABELS quant)

# numpy GPTQ written from the paper cross-checks the C kernels: the script makes layers,
# runs this helper on them (files in a temp dir) and compares.
add_executable(test_quant_refdump unit/test_quant_refdump.c)
target_link_libraries(test_quant_refdump PRIVATE qs_app)
qs_add_script(test_quant_numpy LABELS "quant;unit" TIMEOUT 300
  COMMAND ${QS_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/ref/gptq_ref.py
          $<TARGET_FILE:test_quant_refdump>)

# Benchmark (not a test): ./build/tests/bench_gptq [--quick]
add_executable(bench_gptq bench/bench_gptq.c)
target_link_libraries(bench_gptq PRIVATE qs_app)

# GGUF block types (docs/quant.md "GGUF"): layouts, llama.cpp's quantizers bit for bit.
qs_add_unit(test_gguf_quant unit/test_gguf_quant.c LABELS quant)
qs_add_unit(test_gguf_gptq unit/test_gguf_gptq.c LABELS quant)

# The GGUF blocks against the gguf package (llama.cpp's Python reader, PyPI): the C helper
# writes bytes and qshard's floats, the script decodes them with gguf.quants.
add_executable(test_gguf_dump unit/test_gguf_dump.c)
target_link_libraries(test_gguf_dump PRIVATE qs_app)
qs_add_script(test_gguf_numpy LABELS "quant;pypi" TIMEOUT 300
  COMMAND ${QS_PYPI} ${CMAKE_CURRENT_SOURCE_DIR}/ref/gguf_check.py
          $<TARGET_FILE:test_gguf_dump>)

# Benchmark (not a test): ./build/tests/bench_gguf errors MODEL_DIR RUN_DIR | speed [--quick]
# (tests/bench/bench_gguf.sh makes the calibration run and runs both)
add_executable(bench_gguf bench/bench_gguf.c)
target_link_libraries(bench_gguf PRIVATE qs_app)
