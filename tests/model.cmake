# tests/model.cmake: pipeline/model, the fp32 decoder kernels.
#  - test_model_forward: layer/model forward vs the numpy reference tests/ref/forward_ref.py
#  - test_model_hessian: Hessian/statistics accumulation vs fp64
#  - test_model_threads: the layer forward, Hessian partials and the head on the thread pool:
#    byte-identical at 1-4 threads, the tiles vs the untiled kernels, blocks vs one ssyrk
#  - test_model_kernels: RoPE bands, GQA mapping, window edge, small kernels, contracts
#  - test_model_window: per-layer sliding windows (Mistral, Qwen2 max_window_layers and
#    layer_types) on the tiny checkpoints of tests/data/window/ vs transformers' logits
#  - test_window_mpi: the same checkpoints through `qshard eval` / `qshard run` with the
#    layers split over 1, 2, 3 ranks (each rank applies its layers' own windows)
#  - bench_forward, bench_hessian: benchmark executables only (not tests); see docs/model.md
set(QS_ROOM model)
qs_add_unit(test_model_forward LINK qs_model LABELS model
            ARGS ${CMAKE_CURRENT_SOURCE_DIR}/ref/forward_ref.py)
qs_add_unit(test_model_hessian LINK qs_model LABELS model)
qs_add_unit(test_model_kernels LINK qs_model LABELS model)
qs_add_unit(test_model_threads LINK qs_model LABELS model)
qs_add_unit(test_model_window LINK qs_lib LABELS model
            ARGS ${CMAKE_CURRENT_SOURCE_DIR}/data/window)
qs_add_script(test_window_mpi MPI LABELS "model;mpi;san"
  COMMAND ${QS_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/mpi/test_window_mpi.py)

qs_add_test_program(bench_forward bench/bench_forward.c qs_model)
qs_add_test_program(bench_hessian bench/bench_hessian.c qs_model)
