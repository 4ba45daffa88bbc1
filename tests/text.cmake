# tests/text.cmake: pipeline/text (docs/text.md), the tokenizer.json pipeline in C, text
# sources, qshard tokenize, and calibration from text.
#  - test_text: the tokenizer pieces on hand-made tokenizer.json files
#  - test_tokenize_errors: qshard tokenize's one-line errors and exit codes, 1-3 ranks
#  - test_tokenize_ref (pypi, tokfixtures): token ids equal to the tokenizers package on real
#    tokenizer.json files ($QS_SHARED_DIR/fixtures/tokenizers or $QS_TOKENIZER_DIR;
#    tests/data/tokenizers/README.md)
#  - test_tokenize_tinyllama (pypi, shared): the fixture's calib.u32 again from its text
#    (tok512.model as tokenizer.json), and tinyllama-a calibrated from that text gives the
#    same output bytes as from calib.u32
set(QS_ROOM text)
qs_add_unit(test_text LINK qs_lib LABELS text)
qs_add_script(test_tokenize_errors MPI LABELS "mpi"
  COMMAND ${QS_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/text/test_tokenize_errors.py)
qs_add_script(test_tokenize_ref MPI LABELS "pypi;tokfixtures;mpi" TIMEOUT 1200
  COMMAND ${QS_PYPI} ${CMAKE_CURRENT_SOURCE_DIR}/text/test_tokenize_ref.py)
qs_add_script(test_tokenize_tinyllama MPI LABELS "pypi;shared;mpi"
  COMMAND ${QS_PYPI} ${CMAKE_CURRENT_SOURCE_DIR}/text/test_tokenize_tinyllama.py)
