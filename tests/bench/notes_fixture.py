#!/usr/bin/python3
"""notes_fixture.py: dead input columns, raised damping and the fp64 fallback of GPTQ on the
real fixture tinyllama-a (docs/reconstruct.md "Dead columns, raised damping, fp64"): three
runs of w4g128 (asymmetric, no act-order, sequential inputs, 2 ranks, one BLAS thread, no
eval) that differ only in the calibration set and quant.damp —
  offsets:  the 128 x 256 windows of calib_offsets_128x256.txt, damp 0.01 (the reference's);
  short:    1 random window of 64 tokens (fewer tokens than hidden 256), damp 0.01;
  short-d0: the same window, damp 0;
and prints per run report.md's sentences of the section "Dead columns and damping (GPTQ)",
its first table row and the run's warning lines. Not a test (needs ../shared; ~20 s).
Usage: notes_fixture.py BUILD_DIR_OR_QSHARD [SHARED_DIR]  (env QS_MPIEXEC, default
"mpiexec --oversubscribe")"""
import os
import sys
import tempfile

build = sys.argv[1]
os.environ["QS_BIN"] = build if os.path.isfile(build) else os.path.join(build, "qshard")
os.environ.update(OPENBLAS_NUM_THREADS="1", OMPI_ALLOW_RUN_AS_ROOT="1",
                  OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import qstest as Q  # noqa: E402

fx = os.path.join(sys.argv[2] if len(sys.argv) > 2 else
                  os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..",
                               "shared"), "fixtures")
SHORT = {"nsamples": 1, "seqlen": 64, "sampling": "random"}
RUNS = [("offsets", {"nsamples": 128, "seqlen": 256, "sampling": "file",
                     "offsets_file": f"{fx}/tokens/calib_offsets_128x256.txt"}, 0.01),
        ("short", SHORT, 0.01), ("short-d0", SHORT, 0.0)]
work = tempfile.mkdtemp(prefix="qs_notes_fixture_")
for name, calib, damp in RUNS:
    rd = os.path.join(work, name)
    cfg = Q.write_config(os.path.join(work, name + ".yaml"), f"{fx}/tinyllama-a", rd,
                         calib=dict(calib, tokens=f"{fx}/tokens/calib.u32"),
                         quant={"bits": [4], "group_size": [128], "sym": False,
                                "act_order": False, "damp": damp},
                         reconstruct={"inputs": "quantized"},
                         search={"objective": "error", "max_bytes": "1TB"})
    r = Q.qs(2, "run", cfg, quiet=False)
    if r.returncode != 0:
        raise SystemExit(f"{name}: qshard run failed ({r.returncode}): {r.stderr}")
    md = open(os.path.join(rd, "report.md")).read()
    sec = md.split("## Dead columns and damping (GPTQ)\n\n", 1)[1].split("\n## ", 1)[0]
    lines = sec.splitlines()
    rows = [x for x in lines if x.startswith("| recon") or x.startswith("| final")]
    print(f"== {name} (quant.damp {damp})")
    for x in lines:
        if x.startswith(("recon/", "final/")):
            print(x)
    print(f"table rows: {len(rows)}" + (f", first: {rows[0]}" if rows else ""))
    for x in r.stdout.splitlines():
        if "warning:" in x:
            print(x.split("] ", 1)[-1])
print(f"run directories in {work}")
