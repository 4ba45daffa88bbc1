# tests/io.cmake: pipeline/io (safetensors, st_writer, hf_config, hf_model, tokens, h5store,
# synth).
#  - test_safetensors: the reader on hand-made files, a sparse file beyond 4 GiB, checkpoints
#  - test_hf_config: config.json parsing (defaults, RoPE layouts, errors)
#  - test_tokens: token files and calibration windows
#  - test_synth: synthetic models and tokens (layouts, determinism, pinned SHA-256, errors)
#  - test_make_bad_models: the broken-model generator's self test (its defect-free bases
#    pass an independent strict validator, every case fails it)
#  - test_model_io: synthetic models through qs_model_open and every broken model of
#    tests/data/make_bad_models.py (written by the fixture io_make_bad_models);
#    test_model_io_shared: the real fixture (label shared)
#  - test_h5_closed: the negative control of the HDF5 leak guards (it leaks on purpose): a
#    file and a dataset left open make qs_h5_check_closed (run as every qshard command
#    ends) an internal error naming the count; in the sanitizer build test_h5_closed_lsan
#    also drops a string HDF5 allocated and passes only when LeakSanitizer reports it with
#    tests/lsan.supp (a suppression covering any stack through libhdf5 would hide it)
set(QS_ROOM io)
qs_add_unit(test_safetensors LINK qs_io LABELS io)
qs_add_unit(test_hf_config LINK qs_io LABELS io)
qs_add_unit(test_tokens LINK qs_io LABELS io)
qs_add_unit(test_synth LINK qs_io LABELS io)
qs_add_unit(test_h5_closed LINK qs_io LABELS io)
if(QS_SANITIZE)
  add_test(NAME test_h5_closed_lsan COMMAND test_h5_closed --lose-buffer)
  # CMake's '.' matches newlines: the report, then the frame of the lost string's read
  set_tests_properties(test_h5_closed_lsan PROPERTIES LABELS "unit;io"
    ENVIRONMENT "${QS_TEST_ENV}"
    PASS_REGULAR_EXPRESSION "ERROR: LeakSanitizer: detected memory leaks.* in H5Aread .*test_h5_closed.c")
endif()
qs_add_script(test_make_bad_models LABELS "io" TIMEOUT 120
  COMMAND ${QS_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/data/make_bad_models.py --selftest)

set(QS_IO_BAD_DIR ${CMAKE_CURRENT_BINARY_DIR}/io_bad_models)
add_test(NAME io_make_bad_models
  COMMAND ${QS_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/data/make_bad_models.py ${QS_IO_BAD_DIR})
set_tests_properties(io_make_bad_models PROPERTIES LABELS "io" FIXTURES_SETUP io_bad_models
  ENVIRONMENT "${QS_TEST_ENV}")

qs_add_unit(test_model_io LINK qs_io LABELS io ARGS --bad ${QS_IO_BAD_DIR})
set_tests_properties(test_model_io PROPERTIES FIXTURES_REQUIRED io_bad_models)

add_test(NAME test_model_io_shared COMMAND test_model_io --shared ${QS_SHARED_DIR})
set_tests_properties(test_model_io_shared PROPERTIES LABELS "unit;io;shared"
  ENVIRONMENT "${QS_TEST_ENV}" SKIP_RETURN_CODE 77)
