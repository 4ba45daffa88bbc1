# tests/model.cmake: the fp32 decoder kernels (pipeline/model/).
#  - test_model_forward: layer/model forward vs the numpy reference tests/ref/forward_ref.py
#  - test_model_hessian: Hessian/statistics accumulation vs fp64
#  - test_model_kernels: RoPE bands, GQA mapping, window edge, small kernels, contracts
#  - test_model_window: per-layer sliding windows (Mistral, Qwen2 max_window_layers and
#    layer_types) on the tiny checkpoints of tests/data/window/ vs transformers' logits
#  - test_window_mpi: the same checkpoints through `qshard eval` / `qshard run` with the
#    layers split over 1, 2, 3 ranks (each rank applies its layers' own windows)
#  - bench_forward: benchmark executable only (not a test); see docs/model.md
qs_add_unit(test_model_forward ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_model_forward.c
            LABELS model ARGS ${CMAKE_CURRENT_SOURCE_DIR}/ref/forward_ref.py)
qs_add_unit(test_model_hessian ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_model_hessian.c
            LABELS model)
qs_add_unit(test_model_kernels ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_model_kernels.c
            LABELS model)
qs_add_unit(test_model_window ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_model_window.c
            LABELS model ARGS ${CMAKE_CURRENT_SOURCE_DIR}/data/window)
qs_add_script(test_window_mpi LABELS "model;mpi"
  COMMAND ${QS_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/mpi/test_window_mpi.py)
set_property(TEST test_window_mpi APPEND PROPERTY ENVIRONMENT
             "QS_MPIEXEC=${MPIEXEC_EXECUTABLE} --oversubscribe")

add_executable(bench_forward ${CMAKE_CURRENT_SOURCE_DIR}/bench/bench_forward.c)
target_link_libraries(bench_forward PRIVATE qs_app)
