# tests/model.cmake: pipeline/model, the fp32 decoder kernels.
#  - test_model_forward: layer/model forward vs the numpy reference tests/ref/forward_ref.py
#  - test_model_hessian: Hessian/statistics accumulation vs fp64
#  - test_model_kernels: RoPE bands, GQA mapping, window edge, small kernels, contracts
#  - bench_forward: benchmark executable only (not a test); see docs/model.md
set(QS_ROOM model)
qs_add_unit(test_model_forward LINK qs_model LABELS model
            ARGS ${CMAKE_CURRENT_SOURCE_DIR}/ref/forward_ref.py)
qs_add_unit(test_model_hessian LINK qs_model LABELS model)
qs_add_unit(test_model_kernels LINK qs_model LABELS model)

qs_add_test_program(bench_forward bench/bench_forward.c qs_model)
