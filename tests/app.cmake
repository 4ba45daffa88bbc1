# tests/app.cmake: the top of pipeline/ (main.c and the CLI, driver, report, summary, svg,
# sweep): whole runs through the driver, resume, reports, bad input at the command line.
#  - test_ops (unit): progress bookkeeping/time format, the SVG writer, stale temp removal
#  - test_bad_inputs (mpi): every broken model and config through `qshard inspect|run|plan`:
#    exit 2 and one stderr line naming the file and the cause
#  - test_inspect_fixture (shared): `qshard inspect` on the real fixture
#  - test_kill_resume (mpi): SIGKILL of one rank mid-calibrate and mid-reconstruct, --resume
#    at another rank count: every output byte-identical to an uninterrupted run, finished
#    layer files untouched
#  - test_report (mpi): report.md + SVGs after a run (bars/points counted from the XML),
#    "not run" sections, allocation/pareto plots via `qshard report`; sweep/collect without
#    Slurm (points, bad keys exit 2, missing/done rows)
#  - test_dead_columns (mpi): dead Hessian columns (zero norm weights, an all-zero Hessian),
#    raised damping and the fp64 fallback of GPTQ: the layer files' tables, zeroed weight
#    columns, and report.md's "Dead columns and damping (GPTQ)" rows, equal at 1 and 2 ranks
#  - test_demo (mpi, ~20 s): `make demo` as the Makefile runs it (synth-model line and rank
#    count read from it, configs/demo.yaml as it is) without --quiet: the summary table's
#    numbers equal the run directory's records, README.md quotes the rows the current build
#    prints (`make demo-readme` rewrites them), and the progress lines with ETA are there, one
#    per unit, with consistent counts, percentages and ETAs (tests/mpi/test_demo.py)
#  - test_pipeline_fixture (shared): the whole pipeline on tinyllama-a, sequential GPTQ, mixed
#    allocation vs its uniform twin at the sizes of w3g128 and w4g128, perplexity on the
#    written GPTQ export (issue 12's acceptance; nosan: four full pipelines on a real model;
#    the sanitizer build covers the same code through test_search_mpi, test_recon_final and
#    test_write_mpi on synthetic models)
#  - test_gguf_pipeline (pypi, mpi): issue 18's served formats through whole runs: every GGUF
#    type with search.serve llamacpp, byte-identical model.gguf at 1, 2, 3 ranks, read back with
#    gguf-py (GGUFReader, quants.dequantize/quantize) bit for bit against qshard's reader and
#    the reconstruct's blocks; llama.cpp RTN bytes for method rtn; Q4_0/Q8_0 images equal to the
#    GPTQ and compressed-tensors exports (tests/gguf/test_gguf_pipeline.py)
set(QS_ROOM app)
qs_add_unit(test_ops LINK qs_app LABELS ops)
qs_add_script(test_bad_inputs MPI LABELS "mpi;san" TIMEOUT 900
  COMMAND ${QS_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/cli/test_bad_inputs.py)
# NaN / Inf in the embedding, a linear, a norm, the final norm and lm_head (bf16, f16, f32):
# exit 2 naming the file, tensor and element, before anything depending on it is written
qs_add_script(test_nan_weights MPI LABELS "mpi" TIMEOUT 600
  COMMAND ${QS_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/cli/test_nan_weights.py)
qs_add_script(test_inspect_fixture LABELS "shared"
  COMMAND ${QS_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/cli/test_inspect_fixture.py)
qs_add_script(test_kill_resume MPI LABELS "mpi;ops" TIMEOUT 900
  COMMAND ${QS_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/mpi/test_kill_resume.py)
qs_add_script(test_report MPI LABELS "mpi;ops;san" TIMEOUT 900
  COMMAND ${QS_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/mpi/test_report.py)
qs_add_script(test_dead_columns MPI LABELS "mpi;ops" TIMEOUT 600
  COMMAND ${QS_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/mpi/test_dead_columns.py)
qs_add_script(test_demo MPI LABELS "mpi;ops" TIMEOUT 900
  COMMAND ${QS_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/mpi/test_demo.py)
qs_add_script(test_pipeline_fixture MPI LABELS "shared;mpi;pipeline;nosan" TIMEOUT 2400
  COMMAND ${QS_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/mpi/test_pipeline_fixture.py)
qs_add_script(test_gguf_pipeline MPI LABELS "pypi;mpi;export" TIMEOUT 1800
  COMMAND ${QS_PYPI} ${CMAKE_CURRENT_SOURCE_DIR}/gguf/test_gguf_pipeline.py
          $<TARGET_FILE:gguf_dequant>)
