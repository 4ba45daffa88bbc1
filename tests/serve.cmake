# serve.cmake: issue 18, serve what you search: candidates with kinds (integer grid, GGUF
# types), exact bytes per output format, search.serve's engine rules and the config-time
# refusals (lib/candidates.c).
qs_add_unit(test_serve_cands unit/test_serve_cands.c LABELS export)
