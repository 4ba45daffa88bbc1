# Synthetic models: generator unit test and the bad-model generator smoke test.
qs_add_unit(test_synth unit/test_synth.c LABELS "io")
target_link_libraries(test_synth PRIVATE PkgConfig::CJSON m)
