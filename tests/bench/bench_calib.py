#!/usr/bin/python3
"""bench_calib.py: times the calibrate stage at 1 and 2 ranks (one BLAS thread each) on a
synthetic Llama (hidden 1024, 8 layers) and, in the same run, R = throughput of two
concurrent single-threaded sgemm processes / one alone. Reports the 2-rank speed-up against
0.9 R (the pipeline's share of what two cores can give on this machine). Not a test.
Usage: bench_calib.py BUILD_DIR [--samples 32] [--seqlen 512] [--chunk 2]
(env QS_MPIEXEC, default "mpiexec --oversubscribe")"""
import argparse
import os
import re
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import qstest as Q  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("build")
p.add_argument("--samples", type=int, default=32)
p.add_argument("--seqlen", type=int, default=512)
p.add_argument("--chunk", type=int, default=2)
p.add_argument("--hidden", type=int, default=1024)
p.add_argument("--layers", type=int, default=8)
a = p.parse_args()
qs = os.path.join(a.build, "qshard")
mpiexec = os.environ.get("QS_MPIEXEC", "mpiexec --oversubscribe").split()
env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMPI_ALLOW_RUN_AS_ROOT="1",
           OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")


def sgemm(k):
    return Q.sgemm_gflops(a.build, k, 5, env)


tmp = tempfile.mkdtemp(prefix="qs_bench_calib_")
model = os.path.join(tmp, "m")
subprocess.run([qs, "synth-model", "--arch", "llama", "--layers", str(a.layers), "--hidden",
                str(a.hidden), "--tokens", str(a.samples * a.seqlen * 4), model], check=True)
one = sgemm(1)
two = sgemm(2)
R = two / one
times = {}
for n in (1, 2):
    rd = os.path.join(tmp, f"run{n}")
    cfg = os.path.join(tmp, f"cfg{n}.yaml")
    with open(cfg, "w") as f:
        f.write(f"model: {model}\nrun_dir: {rd}\ncalib:\n  tokens: {model}/tokens.u32\n"
                f"  nsamples: {a.samples}\n  seqlen: {a.seqlen}\n  chunk_samples: {a.chunk}\n"
                # calibrate computes for reconstruct's float inputs only
                "reconstruct:\n  inputs: float\n"
                # intermediate 2752 has no GPTQ layout at group 128; the export is not timed
                "output:\n  gptq_export: false\n")
    t0 = time.time()
    r = subprocess.run(mpiexec + ["-n", str(n), qs, "run", cfg, "--verbose"],
                       capture_output=True, text=True, env=env)
    wall = time.time() - t0
    if r.returncode != 0:
        raise SystemExit(f"bench_calib: qshard run at {n} rank(s): exit {r.returncode}: "
                         f"{r.stderr.strip()[:2000]}")
    m = re.findall(r"calibrate: done in ([0-9.]+) s", r.stdout)
    rss = re.findall(r"calibrate: rank (\d+): .*peak RSS ([0-9.]+) MiB \(formula ([0-9.]+) MiB",
                     r.stdout)
    times[n] = max(float(x) for x in m) if m else float("nan")
    print(f"{n} rank(s): calibrate {times[n]:.2f} s (process wall {wall:.2f} s); "
          f"peak RSS vs formula (MiB): {rss}")
nchunks = -(-a.samples // a.chunk)
S = times[1] / times[2]
print(f"sgemm 1 alone {one:.1f} GFLOP/s, 2 concurrent {two:.1f} GFLOP/s: R = {R:.3f}")
print(f"speed-up at 2 ranks {S:.3f}; 0.9 R = {0.9 * R:.3f}; pipeline-fill bound "
      f"2n/(n+1) = {2 * nchunks / (nchunks + 1):.3f} for n = {nchunks} chunks; "
      f"{'meets' if S >= 0.9 * R else 'below'} 0.9 R")
