# tests/lib.cmake: pipeline/lib (weights, memory, alloc, layer_plan, partition, model_dims).
#  - test_alloc: allocation JSON round trip, uniform allocations, rejected inputs
#  - test_partition: contiguous layer ranges vs brute force, calibrate's stages x replicas
#    grid (its rule with brute-force splits; named shapes), even splits, LPT jobs
#  - test_serve_cands: candidate kinds, bytes per format, serving rules, config-time refusals
#  - test_recon_notes: a layer file's GPTQ record (dead columns, raised damping, fp64) read
#    from its tables and the one-line summary the reconstruct stage logs
#  - test_calib_fixture (shared): the weight loader + forward on the real fixture vs
#    transformers' logits; a missing tensor or a wrong shape names the tensor
set(QS_ROOM lib)
qs_add_unit(test_alloc LINK qs_lib)
qs_add_unit(test_partition LINK qs_lib)
qs_add_unit(test_calib_fixture LINK qs_lib LABELS "shared;calib" ARGS ${QS_SHARED_DIR})
qs_add_unit(test_serve_cands LINK qs_lib LABELS export)
qs_add_unit(test_recon_notes LINK qs_lib)
