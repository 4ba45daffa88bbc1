# export.cmake: the GPTQ checkpoint writer (pipeline/io/st_writer.c, gptq_export.c), checked
# by an independent numpy reader (tests/ref/gptq_decode.py) that the C test runs.
qs_add_unit(test_gptq_export unit/test_gptq_export.c LABELS export
  ARGS ${CMAKE_CURRENT_SOURCE_DIR}/ref/gptq_decode.py)
