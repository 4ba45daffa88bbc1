#!/usr/bin/python3
"""bench_7b.py: a 7B-shaped synthetic Llama (32 layers, hidden 4096, intermediate 11008, 32
heads, vocab 32000, bf16: 13.5 GB on disk) quantized end to end by `qshard run` under a
per-rank memory cap smaller than the model (issue 22's benchmark; not a test: about two hours
on this 2-core machine).

What it does:
  1. `qshard synth-model` writes the model and its token file into DIR (kept: reruns reuse it).
  2. The machine's GEMM peak in the same run (tests/bench_sgemm, single-threaded sgemm 1024^3):
     P1 = one process alone, P2 = two at once (their sum).
  3. `qshard plan CONFIG --ranks R` (the per-rank memory formula) and `qshard run` with the
     default pipeline (reconstruct.inputs quantized, GPTQ) on 2 candidates (w4g128, w3g128),
     search.objective error, search.target_bpw 4.25 (w4g128's size, so the search has a
     choice per linear and the exact optimum is uniform w4g128 = the propagate candidate: the
     final pass is skipped), no eval, each rank in its own memory cgroup (v1 memory
     controller; the limit counts page cache too, so the mmapped checkpoint's pages must be
     reclaimable for the run to pass), R ranks x T threads.
  4. Prints per stage: wall s, CPU s, model GFLOP (formulas below) and GFLOP/s as a fraction
     of the peak for the stage's worker count (P1 for one worker, P2 for two); per rank: peak
     RSS from timings.json and recon/rss/ against the formula, the cgroup's max usage.
Model FLOPs (the code's work; N calibration tokens, T seqlen, per layer):
  reconstruct (quantized inputs), per layer:
    2 forwards (the Hessian pass on the float layer, the propagation through the quantized
    one): 2 x (2 x linear params x N + 4 x T x q_dim x N)
    + the Hessian partials N x (2 h^2 + q^2 + i^2)
    + per linear (d_out, d_in) and candidate d_out d_in^2 (GPTQ's lazy updates; its error
      comes from the solve's sums) + per linear 2 d_out d_in^2 (W H W^T, once; as
      tests/bench/bench_threads.py)
    + per Hessian group 2/3 d^3 (its factor, shared by the candidates)
  write: not compute (bytes/s printed instead).
Usage: bench_7b.py BUILD_DIR --dir DIR [--ranks 1] [--threads 2] [--cap-gib 8]
       [--layers 32] [--hidden 4096] [--intermediate 11008] [--heads 32] [--vocab 32000]
       [--samples 16] [--seqlen 512]   (as root: the cgroups; env QS_MPIEXEC)"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import qstest as Q  # noqa: E402

CG = "/sys/fs/cgroup/memory"

p = argparse.ArgumentParser()
p.add_argument("build")
p.add_argument("--dir", required=True)
for name, default in (("ranks", 1), ("threads", 2), ("cap-gib", 8), ("layers", 32),
                      ("hidden", 4096), ("intermediate", 11008), ("heads", 32),
                      ("vocab", 32000), ("samples", 16), ("seqlen", 512)):
    p.add_argument("--" + name, type=int, default=default)
a = p.parse_args()
qs = os.path.abspath(os.path.join(a.build, "qshard"))
mpiexec = os.environ.get("QS_MPIEXEC", "mpiexec --oversubscribe").split()
env = {k: v for k, v in os.environ.items() if k not in ("SLURM_CPUS_PER_TASK", "OMP_NUM_THREADS")}
env.update(OPENBLAS_NUM_THREADS="1", OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
# Open MPI binds a rank to one core when it starts 2 or fewer: the rank's threads would share
# it (qshard then runs one thread, qs_pool_fit); let it use every core
env.update(OMPI_MCA_hwloc_base_binding_policy="none")


def load():
    return open("/proc/loadavg").read().split()[0]


def gib(b):
    return b / 2 ** 30


os.makedirs(a.dir, exist_ok=True)
model = os.path.join(a.dir, "model")
opts = ["--arch", "llama", "--layers", str(a.layers), "--hidden", str(a.hidden),
        "--intermediate", str(a.intermediate), "--heads", str(a.heads), "--vocab", str(a.vocab),
        "--dtype", "bf16", "--shards", "4", "--tokens", str(a.samples * a.seqlen * 2)]
stamp = os.path.join(model, "synth-options.txt")
if not os.path.exists(stamp) or open(stamp).read() != " ".join(opts):
    shutil.rmtree(model, ignore_errors=True)
    t0 = time.time()
    subprocess.run([qs, "synth-model", *opts, model], check=True, capture_output=True)
    with open(stamp, "w") as f:
        f.write(" ".join(opts))
    print(f"synth-model: {time.time() - t0:.0f} s")
disk = sum(os.path.getsize(os.path.join(model, f)) for f in os.listdir(model)
           if f.endswith(".safetensors"))
h, i, q, kv, hd, lin = Q.linear_shapes(model)
T, L, N = a.seqlen, a.layers, a.samples * a.seqlen
params = sum(o * n for o, n in lin)
ncand = 2
recon_flops = L * (2 * (2 * params * N + 4 * T * q * N) + N * (2 * h * h + q * q + i * i)
                   + (ncand + 2) * sum(o * n * n for o, n in lin)
                   + 2 / 3 * (2 * h ** 3 + q ** 3 + i ** 3))

run = os.path.join(a.dir, "run")
shutil.rmtree(run, ignore_errors=True)
cfg = Q.write_config(os.path.join(a.dir, "bench7b.yaml"), model, run,
                     calib={"tokens": f"{model}/tokens.u32", "nsamples": a.samples, "seqlen": T},
                     quant={"bits": [4, 3], "group_size": [128]},
                     search={"target_bpw": 4.25, "objective": "error"})
with open(cfg) as f:
    text = f.read()
with open(cfg, "w") as f:
    f.write(f"threads: {a.threads}\n" + text)

plan = subprocess.run([qs, "plan", cfg, "--ranks", str(a.ranks)], capture_output=True, text=True,
                      env=env)
print(plan.stdout.strip())

# each rank in its own memory cgroup: a wrapper moves itself there, then runs qshard
cap = a.cap_gib * 2 ** 30
wrapper = os.path.join(a.dir, "capped.sh")
with open(wrapper, "w") as f:
    f.write("#!/bin/sh\n"
            f"g={CG}/qs-bench7b-$OMPI_COMM_WORLD_RANK\n"
            "mkdir -p $g && echo $$ > $g/cgroup.procs && exec \"$@\"\n")
os.chmod(wrapper, 0o755)
for r in range(a.ranks):
    g = f"{CG}/qs-bench7b-{r}"
    if os.path.isdir(g):
        os.rmdir(g)
    os.makedirs(g)
    with open(f"{g}/memory.limit_in_bytes", "w") as f:
        f.write(str(cap))

print(f"load before: {load()}")
P1 = Q.sgemm_gflops(a.build, 1, 5, env)
P2 = Q.sgemm_gflops(a.build, 2, 5, env)
t0 = time.time()
r = subprocess.run(mpiexec + ["-n", str(a.ranks), wrapper, qs, "run", cfg], capture_output=True,
                   text=True, env=env)
wall = time.time() - t0
print(f"load after: {load()}")
with open(os.path.join(a.dir, "run.log"), "w") as f:
    f.write(r.stdout + r.stderr)
cg_max = []
for rr in range(a.ranks):
    g = f"{CG}/qs-bench7b-{rr}"
    cg_max.append(int(open(f"{g}/memory.max_usage_in_bytes").read()))
    fails = int(open(f"{g}/memory.failcnt").read())
    print(f"rank {rr}: cgroup limit {gib(cap):.1f} GiB, max usage {gib(cg_max[-1]):.2f} GiB "
          f"(RSS + page cache), limit hit {fails} times")
if r.returncode != 0:
    raise SystemExit(f"bench_7b: qshard run exit {r.returncode}: {r.stderr.strip()[-3000:]}")

vocab = Q.read_json(os.path.join(model, "config.json"))["vocab_size"]
print(f"model: {L} layers, hidden {h}, intermediate {i}, heads {q // hd}/{kv // hd}, vocab "
      f"{vocab}, {disk / 1e9:.2f} GB of safetensors; calibration {a.samples} x {T} "
      f"tokens; {a.ranks} rank(s) x {a.threads} thread(s); per-rank cap {a.cap_gib} GiB")
print(f"GEMM peak: P1 = {P1:.1f} GFLOP/s (1 sgemm process), P2 = {P2:.1f} GFLOP/s (2 at once)")
workers = a.ranks * a.threads
peak = P1 if workers == 1 else P2
tim = Q.read_json(os.path.join(run, "timings.json"))
att = tim["attempts"][-1]
print(f"total: {wall:.0f} s wall (timings.json {att['total_s']:.0f} s)")
for st in att["stages"]:
    cpu = sum(x["cpu_s"] or 0 for x in st["ranks"])
    line = f"  {st['name']:18s} {st['wall_s']:9.1f} s wall {cpu:9.1f} s CPU"
    if st["name"] == "reconstruct":
        g = recon_flops / st["wall_s"] / 1e9
        line += (f"  {recon_flops / 1e12:.1f} TFLOP, {g:.1f} GFLOP/s = {g / peak:.2f} of the "
                 f"peak for {workers} worker(s)")
    if "skipped" in st:
        sk = st["skipped"]
        line += f"  (skipped {sk['count']} of {sk['of']} {sk['what']})"
    print(line)
for rr, b in enumerate(att["peak_rss_bytes"]):
    rec = Q.read_json(os.path.join(run, "recon", "rss", f"rank-{rr:03d}.json"))
    print(f"rank {rr}: peak RSS {gib(b):.2f} GiB; reconstruct's peak "
          f"{gib(rec['peak_rss_bytes']):.2f} GiB vs formula {gib(rec['formula_bytes']):.2f} GiB "
          f"({rec['peak_rss_bytes'] / rec['formula_bytes'] - 1:+.1%})")
summ = Q.read_json(os.path.join(run, "search", "summary.json"))
print("search summary:", json.dumps({k: summ[k] for k in list(summ)[:8]}))
