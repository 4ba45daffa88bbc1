# export.cmake: the quantized-model writers (pipeline/export: gptq_export.c, ct_export.c on
# export_dir.c / export_items.c and io/st_writer.c), each checked by an independent numpy
# reader that the C test runs (tests/ref/gptq_decode.py, tests/ref/ct_decode.py).
qs_add_unit(test_gptq_export unit/test_gptq_export.c LABELS export
  ARGS ${CMAKE_CURRENT_SOURCE_DIR}/ref/gptq_decode.py)
qs_add_unit(test_ct_export unit/test_ct_export.c LABELS export
  ARGS ${CMAKE_CURRENT_SOURCE_DIR}/ref/ct_decode.py $<TARGET_FILE:qshard>)
qs_add_unit(test_engines unit/test_engines.c LABELS export
  ARGS ${CMAKE_SOURCE_DIR}/docs/export.md)

# GGUF (pipeline/export/gguf_file.c, gguf_model.c, gguf_vocab.c): the C unit test (layout,
# header bytes, positional writes, errors) and tests/gguf/test_gguf.py, which writes files
# through tests/tools/gguf_write.c and reads them back with llama.cpp's gguf-py (PyPI).
add_executable(gguf_write tools/gguf_write.c)
target_link_libraries(gguf_write PRIVATE qs_app)
qs_add_unit(test_gguf_file unit/test_gguf_file.c LABELS export)
qs_add_script(test_gguf_synth LABELS "pypi;export"
  COMMAND ${QS_PYPI} ${CMAKE_CURRENT_SOURCE_DIR}/gguf/test_gguf.py $<TARGET_FILE:gguf_write> synth
  TIMEOUT 300)
qs_add_script(test_gguf_fixture LABELS "pypi;shared;export"
  COMMAND ${QS_PYPI} ${CMAKE_CURRENT_SOURCE_DIR}/gguf/test_gguf.py $<TARGET_FILE:gguf_write> fixture
  TIMEOUT 300)
