# export.cmake: the quantized-model writers (pipeline/export: gptq_export.c, ct_export.c on
# export_dir.c / export_items.c and io/st_writer.c), each checked by an independent numpy
# reader that the C test runs (tests/ref/gptq_decode.py, tests/ref/ct_decode.py).
qs_add_unit(test_gptq_export unit/test_gptq_export.c LABELS export
  ARGS ${CMAKE_CURRENT_SOURCE_DIR}/ref/gptq_decode.py)
qs_add_unit(test_ct_export unit/test_ct_export.c LABELS export
  ARGS ${CMAKE_CURRENT_SOURCE_DIR}/ref/ct_decode.py $<TARGET_FILE:qshard>)
qs_add_unit(test_engines unit/test_engines.c LABELS export
  ARGS ${CMAKE_SOURCE_DIR}/docs/export.md)
