# tests/base.cmake: pipeline/base (status, half, the thread pool).
#  - test_half: f16 and bf16 widening (exhaustive, against an arithmetic reference),
#    narrowing with ties to even at every midpoint, overflow, underflow, NaN kept quiet
set(QS_ROOM base)
qs_add_unit(test_half LINK qs_base)
#  - test_status: the error convention: first error wins, one line, qs_err_prefix (context
#    before the message, cut at its size), exit codes
qs_add_unit(test_status LINK qs_base)
#  - test_pool: the thread pool: every task once at 1, 2, 3, 8 threads and on a NULL pool,
#    worker indices in range, the same results through per-worker scratch, the lowest
#    failing task's error at any thread count, a reentrant run refused, bad thread counts
qs_add_unit(test_pool LINK qs_base)
