# pipeline/text (docs/text.md): the tokenizer.json pipeline in C, text sources, qshard tokenize.
qs_add_unit(test_text unit/test_text.c)
qs_add_script(test_tokenize_errors LABELS "mpi"
  COMMAND ${QS_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/text/test_tokenize_errors.py TIMEOUT 600)
set_property(TEST test_tokenize_errors APPEND PROPERTY ENVIRONMENT "QS_MPIEXEC=${MPIEXEC_EXECUTABLE} --oversubscribe")
# token ids equal to the tokenizers package (PyPI) on the fixture tokenizers
# ($QS_SHARED_DIR/fixtures/tokenizers, or $QS_TOKENIZER_DIR; tests/data/tokenizers/README.md)
qs_add_script(test_tokenize_ref LABELS "pypi;tokfixtures;mpi"
  COMMAND ${QS_PYPI} ${CMAKE_CURRENT_SOURCE_DIR}/text/test_tokenize_ref.py TIMEOUT 1200)
set_property(TEST test_tokenize_ref APPEND PROPERTY ENVIRONMENT "QS_MPIEXEC=${MPIEXEC_EXECUTABLE} --oversubscribe")
# the shared fixtures' calib.u32 again from its text: tok512.model as tokenizer.json
qs_add_script(test_tokenize_tinyllama LABELS "pypi;shared;mpi"
  COMMAND ${QS_PYPI} ${CMAKE_CURRENT_SOURCE_DIR}/text/test_tokenize_tinyllama.py TIMEOUT 600)
set_property(TEST test_tokenize_tinyllama APPEND PROPERTY ENVIRONMENT "QS_MPIEXEC=${MPIEXEC_EXECUTABLE} --oversubscribe")
