# tests/export.cmake: pipeline/export, the quantized-model writer (qexport.c with the formats
# gptq_export.c and ct_export.c, on export_dir.c / export_items.c and io/st_writer.c), each
# checked by an independent numpy reader that the C test runs (tests/ref/gptq_decode.py,
# tests/ref/ct_decode.py); the engines'
# verdicts (engines.c) against docs/export.md; GGUF files (gguf_file.c, gguf_model.c,
# gguf_vocab.c): the C unit test (layout, header bytes, positional writes, errors) and
# tests/gguf/test_gguf.py, which writes files through tests/tools/gguf_write.c and reads them
# back with llama.cpp's gguf-py (PyPI); test_gguf_read: the GGUF reader (gguf_read.c) on
# written files (values, q/k un-permutation, every truncation and corruption refused);
# tests/tools/gguf_dequant.c prints the reader's values for test_gguf_pipeline (app.cmake).
set(QS_ROOM export)
qs_add_unit(test_gptq_export LINK qs_export LABELS export
            ARGS ${CMAKE_CURRENT_SOURCE_DIR}/ref/gptq_decode.py)
qs_add_unit(test_ct_export LINK qs_app LABELS export
            ARGS ${CMAKE_CURRENT_SOURCE_DIR}/ref/ct_decode.py $<TARGET_FILE:qshard>)
qs_add_unit(test_engines LINK qs_export LABELS export ARGS ${CMAKE_SOURCE_DIR}/docs/export.md)
qs_add_unit(test_gguf_file LINK qs_export LABELS export)
qs_add_unit(test_gguf_read LINK qs_export LABELS export)

qs_add_test_program(gguf_write tools/gguf_write.c qs_app)
qs_add_test_program(gguf_dequant tools/gguf_dequant.c qs_export)
qs_add_script(test_gguf_synth LABELS "pypi;export;san" TIMEOUT 300
  COMMAND ${QS_PYPI} ${CMAKE_CURRENT_SOURCE_DIR}/gguf/test_gguf.py $<TARGET_FILE:gguf_write> synth)
qs_add_script(test_gguf_fixture LABELS "pypi;shared;export" TIMEOUT 300
  COMMAND ${QS_PYPI} ${CMAKE_CURRENT_SOURCE_DIR}/gguf/test_gguf.py $<TARGET_FILE:gguf_write> fixture)
