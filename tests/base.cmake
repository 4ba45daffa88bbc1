# tests/base.cmake: pipeline/base (status, half).
#  - test_half: f16 and bf16 widening (exhaustive, against an arithmetic reference),
#    narrowing with ties to even at every midpoint, overflow, underflow, NaN kept quiet
set(QS_ROOM base)
qs_add_unit(test_half LINK qs_base)
