#!/usr/bin/python3
"""mem_check.py: checks every rank's peak RSS of a stage of `qshard run` (calibrate or
reconstruct) against that stage's part of the per-rank memory formula (qs_mem_for_stage;
run/plan/plan.json memory_bytes.total is the peak over the stages) plus one fixed
per-process baseline (MPI, OpenBLAS, HDF5, libc). Not a CTest test (minutes, ~10 GiB of
RAM, ~3 GB of disk per run); run by hand:

    tests/bench/mem_check.py BUILD_DIR [--work DIR] [--keep] [--ranks 1 3] [--tol 0.10]
        [--stage calibrate|reconstruct] [--inputs quantized|float] [--nsamples 8]
        [--chunk 4] [--layers 8 18]

--stage reconstruct reads run/recon/rss/rank-NNN.json (the reconstruct stage resets the
peak RSS when its work starts, so the number is its own); the config has one candidate
w4g128 and reconstruct.inputs from --inputs (float for --stage calibrate: the stage computes
for float inputs only).

1. Synthetic Llama models of the same width (hidden 2048, intermediate 5504, 16 heads,
   16 kv heads, vocab 32000, bf16, untied): a 3-layer baseline model and the two checked
   models of 8 (~1.07 GB) and 18 (~2.08 GB) layers.
2. The baseline B is measured once: peak - formula of the 3-layer model at 1 rank. The same
   B is then used for both models and every rank count.
3. For each checked model and rank count: `qshard run` (nsamples 8, seqlen 128,
   chunk_samples 4; one BLAS thread), every rank's VmHWM from run/calib/rss/rank-NNN.json
   (written by the calibrate stage), its formula from plan.json; the check is
   |peak - (formula + B)| <= tol x (formula + B) for every rank (a rank that owns no
   layers has formula 0, so it must stay within tol of B).
Run directories are deleted after each measurement (layer files are ~170 MB each).
Exit 0 if every rank passes, 1 otherwise. (env QS_MPIEXEC, default
"mpiexec --oversubscribe")"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

p = argparse.ArgumentParser()
p.add_argument("build")
p.add_argument("--work", help="scratch directory (default: a new temp dir)")
p.add_argument("--keep", action="store_true", help="keep models and the scratch dir")
p.add_argument("--ranks", type=int, nargs="+", default=[1, 3])
p.add_argument("--layers", type=int, nargs="+", default=[8, 18],
               help="layer counts of the checked models")
p.add_argument("--baseline-layers", type=int, default=3)
p.add_argument("--tol", type=float, default=0.10)
p.add_argument("--stage", choices=["calibrate", "reconstruct"], default="calibrate")
p.add_argument("--inputs", choices=["quantized", "float"], default="quantized")
p.add_argument("--nsamples", type=int, default=8)
p.add_argument("--chunk", type=int, default=4)
a = p.parse_args()

qs = os.path.abspath(os.path.join(a.build, "qshard"))
mpiexec = os.environ.get("QS_MPIEXEC", "mpiexec --oversubscribe").split()
env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMPI_ALLOW_RUN_AS_ROOT="1",
           OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
DIMS = ["--hidden", "2048", "--intermediate", "5504", "--heads", "16", "--kv-heads", "16",
        "--vocab", "32000", "--dtype", "bf16"]
MiB = 1048576.0
work = a.work or tempfile.mkdtemp(prefix="qs_mem_check_")
os.makedirs(work, exist_ok=True)


def model(layers):
    out = os.path.join(work, f"m{layers}")
    if not os.path.exists(os.path.join(out, "config.json")):
        subprocess.run([qs, "synth-model", "--arch", "llama", "--layers", str(layers)] + DIMS +
                       ["--tokens", "4096", out], check=True, env=env,
                       stdout=subprocess.DEVNULL)
    size = sum(os.path.getsize(os.path.join(out, f)) for f in os.listdir(out)
               if f.endswith(".safetensors"))
    return out, size


def run(mdir, n):
    """-> [(rank, first, count, peak, formula)] for one `qshard run` at n ranks."""
    rd = os.path.join(work, f"run-{os.path.basename(mdir)}-{n}")
    shutil.rmtree(rd, ignore_errors=True)
    cfg = rd + ".yaml"
    with open(cfg, "w") as f:
        f.write(f"model: {mdir}\nrun_dir: {rd}\ncalib:\n  tokens: {mdir}/tokens.u32\n"
                f"  nsamples: {a.nsamples}\n  seqlen: 128\n  chunk_samples: {a.chunk}\n"
                f"quant:\n  bits: [4]\n  group_size: [128]\n"
                # calibrate computes for float inputs only
                f"reconstruct:\n  inputs: {'float' if a.stage == 'calibrate' else a.inputs}\n")
    r = subprocess.run(mpiexec + ["-n", str(n), qs, "run", cfg], env=env,
                       capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"qshard run failed ({r.returncode}): {r.stderr.strip()}")
    with open(os.path.join(rd, "plan", "plan.json")) as f:
        plan = json.load(f)
    rows = []
    for rk in range(n):
        parts = {}
        for st, sub in (("calibrate", "calib"), ("reconstruct", "recon")):
            p = os.path.join(rd, sub, "rss", f"rank-{rk:03d}.json")
            if os.path.exists(p):  # calibrate runs for float inputs only
                with open(p) as f:
                    parts[st] = json.load(f)
        formula = int(plan["ranks"][rk]["memory_bytes"]["total"])
        peak_formula = max(parts[s]["formula_bytes"] for s in parts)
        if formula != peak_formula:
            sys.exit(f"rank {rk}: plan.json formula {formula} != max over the stages {peak_formula}")
        j = parts[a.stage]
        rows.append((rk, j["first"], j["count"], j["peak_rss_bytes"], j["formula_bytes"],
                     j.get("start_rss_bytes", 0)))
    shutil.rmtree(rd, ignore_errors=True)
    os.remove(cfg)
    return rows


bdir, bsize = model(a.baseline_layers)
(_, _, _, bpeak, bform, _), = run(bdir, 1)
B = bpeak - bform
print(f"stage {a.stage}" + (f" (inputs {a.inputs})" if a.stage == "reconstruct" else "") +
      f", nsamples {a.nsamples}, chunk_samples {a.chunk}")
print(f"baseline: {a.baseline_layers}-layer model ({bsize / 1e9:.2f} GB) at 1 rank: peak "
      f"{bpeak / MiB:.1f} MiB - formula {bform / MiB:.1f} MiB = B = {B / MiB:.1f} MiB")
print()
print(f"{'model':>14} {'ranks':>5} {'rank':>4} {'layers':>8} {'formula MiB':>11} "
      f"{'+B MiB':>9} {'peak MiB':>9} {'dev':>7}  ok")
ok_all = True
for L in a.layers:
    mdir, size = model(L)
    for n in a.ranks:
        for rk, first, count, peak, formula, start in run(mdir, n):
            want = formula + B
            dev = (peak - want) / want
            ok = abs(dev) <= a.tol
            ok_all &= ok
            print(f"{L:3d}L {size / 1e9:5.2f} GB {n:5d} {rk:4d} {first:3d}+{count:<4d} "
                  f"{formula / MiB:11.1f} {want / MiB:9.1f} {peak / MiB:9.1f} "
                  f"{100 * dev:+6.1f}%  {'yes' if ok else 'NO'}" +
                  (f"   (RSS at the stage's start {start / MiB:.1f} MiB)" if start else ""))
    if not a.keep:
        shutil.rmtree(mdir, ignore_errors=True)
if not a.keep:
    shutil.rmtree(work, ignore_errors=True)
print()
print(f"every rank within {100 * a.tol:.0f}% of formula + B: {'yes' if ok_all else 'NO'}")
sys.exit(0 if ok_all else 1)
