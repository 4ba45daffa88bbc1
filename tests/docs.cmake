# tests/docs.cmake: README.md and docs/*.md against the code (tests across the rooms).
#  - test_docs_cli (label docs): every `qshard ...` command line quoted in README.md and
#    docs/*.md (code blocks and inline code) names a command of `qshard --help` and only
#    options (and listed values such as --weights sources) of `qshard <command> --help`;
#    every repository path the prose names exists (tests/cli/test_docs_cli.py)
qs_add_script(test_docs_cli MPI LABELS "docs" TIMEOUT 120
  COMMAND ${QS_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/cli/test_docs_cli.py)
