# config.cmake: the YAML run configuration (pipeline/config.c). test_config also checks
# that docs/config.md names every schema key and that configs/*.yaml load.
qs_add_unit(test_config unit/test_config.c LABELS config
            ARGS ${CMAKE_SOURCE_DIR}/docs/config.md)
