# mckp.cmake: tests of the exact mixed-precision solver (pipeline/quant/mckp.c) and its
# benchmark.
qs_add_unit(test_mckp unit/test_mckp.c LABELS quant)
target_include_directories(test_mckp PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/unit)

# Benchmark (not a test): ./build/tests/bench_mckp [--glpk]
add_executable(bench_mckp bench/bench_mckp.c)
target_link_libraries(bench_mckp PRIVATE qs_app)
target_include_directories(bench_mckp PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/unit)
