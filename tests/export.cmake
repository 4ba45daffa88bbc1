# tests/export.cmake: pipeline/export, the GPTQ checkpoint writer (gptq_export.c over
# io/st_writer.c), checked by an independent numpy reader (tests/ref/gptq_decode.py) that
# the C test runs.
set(QS_ROOM export)
qs_add_unit(test_gptq_export LINK qs_export LABELS export
            ARGS ${CMAKE_CURRENT_SOURCE_DIR}/ref/gptq_decode.py)
