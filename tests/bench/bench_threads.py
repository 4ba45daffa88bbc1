#!/usr/bin/python3
"""bench_threads.py: threads per rank. Times calibrate and reconstruct (float inputs, GPTQ
w4g128) of one rank at threads 1 and 2 on a synthetic Llama, and in the same run the machine's
GEMM peak: P1 = one single-threaded sgemm process alone (tests/bench_sgemm), P2 = two running
at once (their sum), R = P2 / P1. Each stage's throughput is its model FLOPs / its time, shown
as a fraction of P1 (1 thread) or P2 (2 threads); the speed-up at 2 threads is compared with
0.9 R (issue 22's target for calibrate). The run directories of the two thread counts must be
byte-identical (Q.run_file_hashes). Not a test: the machine is shared; say what `uptime`
showed. Model FLOPs (per the code's work, not a cost model):
  calibrate, per token and layer: 2 x linear parameters (the seven projections)
    + 4 x seqlen x q_dim (scores and P.V over the full seqlen x seqlen tile)
    + (2 h^2 + q^2 + i^2) (the Hessian partials: X^T X upper blocks of the four inputs)
  reconstruct, per linear (d_out, d_in) x candidate: d_out d_in^2 (GPTQ's lazy updates; its
    error comes from the solve's own sums, docs/quant.md "The error without a product")
    + per linear 2 d_out d_in^2 (W H W^T, once); per input group 2/3 d^3 (the factor: one
    Cholesky and one triangular inverse)
Usage: bench_threads.py BUILD_DIR [--layers 4] [--hidden 1024] [--samples 16] [--seqlen 512]
       [--chunk 2]   (env QS_MPIEXEC, default "mpiexec --oversubscribe")"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import qstest as Q  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("build")
for name, default in (("layers", 4), ("hidden", 1024), ("samples", 16), ("seqlen", 512),
                      ("chunk", 2)):
    p.add_argument("--" + name, type=int, default=default)
a = p.parse_args()
qs = os.path.join(a.build, "qshard")
mpiexec = os.environ.get("QS_MPIEXEC", "mpiexec --oversubscribe").split()
env = {k: v for k, v in os.environ.items() if k not in ("SLURM_CPUS_PER_TASK", "OMP_NUM_THREADS")}
env.update(OPENBLAS_NUM_THREADS="1", OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
# Open MPI binds a rank to one core when it starts 2 or fewer: the rank's threads would share
# it (qshard then runs one thread, qs_pool_fit); let it use every core
env.update(OMPI_MCA_hwloc_base_binding_policy="none")


def load():
    return open("/proc/loadavg").read().split()[0]


tmp = tempfile.mkdtemp(prefix="qs_bench_threads_")
try:
    model = os.path.join(tmp, "m")
    subprocess.run([qs, "synth-model", "--arch", "llama", "--layers", str(a.layers), "--hidden",
                    str(a.hidden), "--tokens", str(a.samples * a.seqlen * 4), model],
                   check=True, capture_output=True)
    h, i, q, kv, hd, lin = Q.linear_shapes(model)
    T, L, N = a.seqlen, a.layers, a.samples * a.seqlen
    calib_flops = L * N * (2 * sum(o * n for o, n in lin) + 4 * T * q + 2 * h * h + q * q + i * i)
    recon_flops = L * (sum(3 * o * n * n for o, n in lin) + 2 / 3 * (2 * h ** 3 + q ** 3 + i ** 3))
    print(f"load before: {load()}")
    P1 = Q.sgemm_gflops(a.build, 1, 5, env)
    P2 = Q.sgemm_gflops(a.build, 2, 5, env)
    R = P2 / P1
    times, hashes = {}, {}
    for t in (1, 2):
        rd = os.path.join(tmp, f"run{t}")
        cfg = Q.write_config(os.path.join(tmp, f"cfg{t}.yaml"), model, rd,
                             calib={"tokens": f"{model}/tokens.u32", "nsamples": a.samples,
                                    "seqlen": T, "chunk_samples": a.chunk},
                             quant={"bits": [4], "group_size": [128]},
                             reconstruct={"inputs": "float"},
                             # intermediate 2752 has no GPTQ layout at group 128
                             output={"gptq_export": False})
        with open(cfg) as f:
            text = f.read()
        with open(cfg, "w") as f:
            f.write(f"threads: {t}\n" + text)
        r = subprocess.run(mpiexec + ["-n", "1", qs, "run", cfg], capture_output=True,
                           text=True, env=env)
        if r.returncode != 0:
            raise SystemExit(f"bench_threads: run at {t} thread(s): exit {r.returncode}: "
                             f"{r.stderr.strip()[:2000]}")
        out = r.stdout + r.stderr
        times[t] = {s: float(re.findall(rf"\] {s}: done in ([0-9.]+) s", out)[0])
                    for s in ("calibrate", "reconstruct")}
        hashes[t] = Q.run_file_hashes(rd)
    print(f"load after: {load()}")
    print(f"model: {L} layers, hidden {h}, intermediate {i}, heads {q // hd}/{kv // hd}; "
          f"calibration {a.samples} x {T} tokens, chunks of {a.chunk}")
    print(f"GEMM peak: P1 = {P1:.1f} GFLOP/s (1 sgemm process), P2 = {P2:.1f} GFLOP/s "
          f"(2 at once), R = P2/P1 = {R:.3f}")
    for s, fl in (("calibrate", calib_flops), ("reconstruct", recon_flops)):
        t1, t2 = times[1][s], times[2][s]
        g1, g2 = fl / t1 / 1e9, fl / t2 / 1e9
        print(f"{s:12s} {fl / 1e9:8.1f} GFLOP: 1 thread {t1:6.2f} s {g1:5.1f} GFLOP/s "
              f"({g1 / P1:.2f} P1); 2 threads {t2:6.2f} s {g2:5.1f} GFLOP/s ({g2 / P2:.2f} P2); "
              f"speed-up {t1 / t2:.3f} vs 0.9 R = {0.9 * R:.3f}")
    diff = Q.diff_hashes(hashes[1], hashes[2])
    print(f"run directories at 1 and 2 threads: {'byte-identical' if not diff else diff}")
    if diff:
        sys.exit(1)
finally:
    shutil.rmtree(tmp, ignore_errors=True)
