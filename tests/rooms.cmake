# The rooms and their arrows (docs/design.md): for each room, a header it may include
# compiles and a header of every room it must not see fails to compile, with the room's
# real include path (the transitive INCLUDE_DIRECTORIES CMake builds it with).
function(qs_add_arrows room allowed)
  add_test(NAME test_arrows_${room}
    COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/rooms/check_arrows.sh ${CMAKE_C_COMPILER} ${room}
            "$<TARGET_PROPERTY:${room},INCLUDE_DIRECTORIES>" ${allowed} ${ARGN})
  set_tests_properties(test_arrows_${room} PROPERTIES LABELS "unit;rooms")
endfunction()
# room       control         forbidden: a header of each room above (or beside) it
qs_add_arrows(qs_base   half.h     config.h layer.h quant.h safetensors.h comm.h gptq_export.h weights.h stage.h driver.h)
qs_add_arrows(qs_core   status.h   layer.h quant.h safetensors.h comm.h gptq_export.h weights.h stage.h driver.h)
qs_add_arrows(qs_model  status.h   config.h rundir.h quant.h safetensors.h comm.h gptq_export.h weights.h stage.h driver.h)
qs_add_arrows(qs_quant  half.h     config.h rundir.h layer.h safetensors.h comm.h gptq_export.h weights.h stage.h driver.h)
qs_add_arrows(qs_io     config.h   layer.h quant.h comm.h gptq_export.h weights.h stage.h driver.h)
qs_add_arrows(qs_mpi    h5store.h  layer.h quant.h gptq_export.h weights.h stage.h driver.h)
qs_add_arrows(qs_export quant.h    layer.h comm.h weights.h stage.h driver.h)
qs_add_arrows(qs_lib    comm.h     stage.h driver.h)
qs_add_arrows(qs_stages weights.h  driver.h report.h)
qs_add_arrows(qs_text   config.h   layer.h quant.h safetensors.h comm.h gptq_export.h weights.h stage.h driver.h)

# Orchestration functions stay under ~120 lines (issue 17): every function of pipeline/,
# stages/ and mpi/ over 120 lines fails, unless tests/rooms/long_functions.allow names it
# (numerical kernels only, each with its reason); a stale allow-list entry fails too.
# `python3 tests/rooms/long_functions.py --list --max N . pipeline stages mpi` lists them.
qs_add_script(test_function_length LABELS "unit;rooms"
  COMMAND ${QS_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/rooms/long_functions.py --max 120
          --allow ${CMAKE_CURRENT_SOURCE_DIR}/rooms/long_functions.allow
          ${CMAKE_SOURCE_DIR} pipeline stages mpi)

# docs/design.md describes the layout as it is (issue 17): every repository path named in it
# or in README.md's Layout block exists, and every room (pipeline/ and its source folders,
# stages/, mpi/) and every C file of a room is named in design.md.
# `python3 tests/rooms/design_paths.py . --list` prints every path it checked.
qs_add_script(test_design_paths LABELS "unit;rooms"
  COMMAND ${QS_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/rooms/design_paths.py ${CMAKE_SOURCE_DIR})
