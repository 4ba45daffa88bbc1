# export.cmake: the GPTQ checkpoint writer (pipeline/io/st_writer.c, gptq_export.c), checked
# by an independent numpy reader (tests/ref/gptq_decode.py) that the C test runs.
qs_add_unit(test_gptq_export unit/test_gptq_export.c LABELS export
  ARGS ${CMAKE_CURRENT_SOURCE_DIR}/ref/gptq_decode.py)

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
