# Synthetic models: the generator's unit test, and the bad-model generator's self test
# (its defect-free bases pass an independent strict validator, every case fails it).
qs_add_unit(test_synth unit/test_synth.c LABELS "io")
qs_add_script(test_make_bad_models LABELS "io"
  COMMAND ${QS_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/data/make_bad_models.py --selftest
  TIMEOUT 120)
