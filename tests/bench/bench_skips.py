#!/usr/bin/python3
"""bench_skips.py: per-stage seconds of `qshard run` on issue 22's example — an 8-layer
synthetic Llama (hidden 1024, `qshard synth-model` defaults otherwise: intermediate 2752,
16 heads, vocab 512, bf16), 32 x 512 calibration tokens, one RTN candidate w4g-1,
`reconstruct.inputs: quantized`, 1 rank, one BLAS thread — with the redundant work skipped
(the default) and, with --no-skip, with the debug knob QS_NO_SKIP=all that does it anyway
(docs/design.md "Work that is skipped"). Prints wall and CPU seconds per stage from the
run's timings.json (CPU seconds are the fairer number on a shared machine) and what each
stage skipped. Not a test (minutes of one core).
Usage: bench_skips.py BUILD_DIR_OR_QSHARD [--no-skip] [--dir DIR] [--layers 8]
       [--hidden 1024] [--samples 32] [--seqlen 512]
(env QS_MPIEXEC, default "mpiexec --oversubscribe")"""
import argparse
import json
import os
import shutil
import subprocess
import tempfile
import time

p = argparse.ArgumentParser()
p.add_argument("build")
p.add_argument("--no-skip", action="store_true")
p.add_argument("--dir", default=None, help="work directory (default: a new temp dir)")
p.add_argument("--layers", type=int, default=8)
p.add_argument("--hidden", type=int, default=1024)
p.add_argument("--samples", type=int, default=32)
p.add_argument("--seqlen", type=int, default=512)
a = p.parse_args()
qs = a.build if os.path.isfile(a.build) else os.path.join(a.build, "qshard")
mpiexec = os.environ.get("QS_MPIEXEC", "mpiexec --oversubscribe").split()
env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMPI_ALLOW_RUN_AS_ROOT="1",
           OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
env.pop("QS_NO_SKIP", None)
if a.no_skip:
    env["QS_NO_SKIP"] = "all"

work = a.dir or tempfile.mkdtemp(prefix="qs_bench_skips_")
os.makedirs(work, exist_ok=True)
model = os.path.join(work, "m")
if not os.path.exists(os.path.join(model, "config.json")):
    subprocess.run([qs, "synth-model", "--arch", "llama", "--layers", str(a.layers),
                    "--hidden", str(a.hidden), "--tokens", str(a.samples * a.seqlen + 4096),
                    model], check=True)
rd = os.path.join(work, "run-noskip" if a.no_skip else "run")
shutil.rmtree(rd, ignore_errors=True)
cfg = os.path.join(work, "noskip.yaml" if a.no_skip else "skip.yaml")
with open(cfg, "w") as f:
    f.write(f"model: {model}\nrun_dir: {rd}\n"
            f"calib:\n  tokens: {model}/tokens.u32\n  nsamples: {a.samples}\n"
            f"  seqlen: {a.seqlen}\n"
            "quant:\n  method: rtn\n  bits: [4]\n  group_size: [-1]\n"
            "reconstruct:\n  inputs: quantized\n")
t0 = time.time()
r = subprocess.run(mpiexec + ["-n", "1", qs, "run", cfg], capture_output=True, text=True,
                   env=env)
wall = time.time() - t0
if r.returncode != 0:
    raise SystemExit(f"qshard run failed ({r.returncode}): {r.stderr}")
tm = json.load(open(os.path.join(rd, "timings.json")))
att = tm["attempts"][-1]
print(f"{'no-skip (QS_NO_SKIP=all)' if a.no_skip else 'skips on (default)'}: {cfg}")
print(f"  {'stage':<18} {'wall s':>8} {'cpu s':>8}")
cpu = 0.0
for s in att["stages"]:
    sk = s.get("skipped")
    what = f"  skipped {sk['count']} of {sk['of']} {sk['what']}" if sk else ""
    c = s["ranks"][0]["cpu_s"]
    cpu += c
    print(f"  {s['name']:<18} {s['wall_s']:8.2f} {c:8.2f}{what}")
print(f"  {'total':<18} {att['total_s']:8.2f} {cpu:8.2f} (process wall {wall:.2f} s)")
