# io tests: half conversions, safetensors validation (incl. a sparse >4 GiB file), config.json
# parsing, synthetic models, the broken-model suite (tests/data/make_bad_models.py) and the
# real fixture (label shared).
qs_add_unit(test_safetensors unit/test_safetensors.c LABELS io)
qs_add_unit(test_hf_config unit/test_hf_config.c LABELS io)

set(QS_IO_BAD_DIR ${CMAKE_CURRENT_BINARY_DIR}/io_bad_models)
add_test(NAME io_make_bad_models
  COMMAND ${QS_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/data/make_bad_models.py ${QS_IO_BAD_DIR})
set_tests_properties(io_make_bad_models PROPERTIES LABELS "io" FIXTURES_SETUP io_bad_models
  ENVIRONMENT "${QS_TEST_ENV}")

qs_add_unit(test_model_io unit/test_model_io.c LABELS io ARGS --bad ${QS_IO_BAD_DIR})
set_tests_properties(test_model_io PROPERTIES FIXTURES_REQUIRED io_bad_models)

add_test(NAME test_model_io_shared COMMAND test_model_io --shared ${QS_SHARED_DIR})
set_tests_properties(test_model_io_shared PROPERTIES LABELS "unit;io;shared"
  ENVIRONMENT "${QS_TEST_ENV}" SKIP_RETURN_CODE 77)
