#!/usr/bin/python3
"""bench_gptq_ref.py: qshard's GPTQ against the reference implementation (IST-DASLab/gptq,
gptq.py + quant.py, run unchanged on CPU torch) on the same layer shapes, the same Hessian and
weights, the same threads. Not a test: a benchmark command (docs/performance.md).

Per shape (d_out x d_in) the Hessian H = 2/N X^T X of a random X (N rows, --rows) and W are
made once by build/tests/bench_gptq (--dir: raw float32 files in the work directory); then,
alternating inside one run (rounds x shapes x threads; the order of the two contenders flips
every round): qshard's `qs_gptq_prepare` (damped Cholesky inverse, one thread as in the
product) and quantize (pieces of row_block rows on a pool of T threads), and the reference's
`GPTQ.fasterquant` (w4 asym per-channel groups of 128, blocksize 128, percdamp 0.01, act_order
off; its total includes its own Cholesky inverse) under torch.set_num_threads(T). Times: best
over the rounds. In the same run, the machine's GEMM peak (tests/qstest.py sgemm_gflops: P1 =
one single-threaded sgemm process, P2 = two at once) before and after, and `uptime` load.

Quality, once per shape on the 1-thread outputs: the layer error tr((W-Q) H (W-Q)^T) in float64
for both, and the share of weights where they agree (|Q_ref - Q_qshard| < 1e-4, far below one
quantization step of these weights). qshard's outputs at 1 and 2 threads must be byte-identical.

The reference is not part of this repository: --ref DIR is a checkout holding gptq.py and
quant.py, or a bare git directory of it (the two files are read with `git show HEAD:...`).
gptq.py imports transformers only for isinstance checks (a stub stands in) and calls
torch.cuda.synchronize() (a no-op on CPU here); nothing else is changed.

With --bound, every round also runs `bench_gptq --bound` on each shape (one thread): the
time of the BLAS/LAPACK calls and the single rounding pass that any blocked GPTQ on this
machine's BLAS needs (bench_gptq.c's comment), so the last table says how far the 1-thread
reference time is from that floor (ref / floor: the most any such implementation could reach).

Usage: bench_gptq_ref.py BUILD_DIR --ref DIR [--venv DIR] [--shapes 4096x4096,...]
       [--threads 1,2] [--rounds 2] [--rows 2048] [--work DIR] [--keep] [--env K=V ...]
       [--bound]
  --env: extra environment of qshard's runs only (e.g. OPENBLAS_CORETYPE=SkylakeX)
  --venv: a venv with torch and numpy (quant.py imports it; default $QS_TORCH_VENV, else
          /work/venv-torch, as tests/data/deep_setup.sh makes it)
(internal: --worker ref|err runs inside the venv's python.)"""
import argparse
import contextlib
import filecmp
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import types

HERE = os.path.dirname(os.path.abspath(__file__))


def f32(torch, path, *shape):
    n = 1
    for s in shape:
        n *= s
    return torch.from_file(path, shared=False, size=n, dtype=torch.float32).reshape(*shape)


def worker_ref(a):
    """Runs the reference fasterquant once; prints {"time": s} and writes its Q."""
    import torch
    import torch.nn as nn
    torch.set_num_threads(a.threads)
    sys.modules.setdefault("transformers", types.SimpleNamespace(Conv1D=type("Conv1D", (), {})))
    torch.cuda.synchronize = lambda *x, **k: None  # CPU: nothing to wait for
    sys.path.insert(0, a.ref)
    from gptq import GPTQ  # noqa: E402 (the reference's own files)
    from quant import Quantizer  # noqa: E402
    d_out, n = a.d_out, a.d_in
    base = os.path.join(a.work, f"{d_out}x{n}")
    H, W = f32(torch, base + ".H.f32", n, n), f32(torch, base + ".W.f32", d_out, n)
    layer = nn.Linear(n, d_out, bias=False)
    layer.weight.data = W.clone()
    g = GPTQ(layer)
    g.H = H.clone()
    g.quantizer = Quantizer()
    g.quantizer.configure(4, perchannel=True, sym=False, mse=False)
    with contextlib.redirect_stdout(io.StringIO()):  # its own "time" / "error" prints
        t = time.perf_counter()
        g.fasterquant(blocksize=128, percdamp=0.01, groupsize=128, actorder=False)
        t = time.perf_counter() - t
    path = f"{base}.ref{a.threads}.f32"
    with open(path, "wb") as f:
        f.truncate(4 * d_out * n)
    out = torch.from_file(path, shared=True, size=d_out * n, dtype=torch.float32)
    out.copy_(layer.weight.data.reshape(-1))  # written through the shared mapping
    del out
    print(json.dumps({"time": t}))


def worker_err(a):
    """Layer errors tr(D H D^T), D = W - Q, in float64, of the reference's and qshard's Q."""
    import torch
    torch.set_num_threads(a.threads)
    d_out, n = a.d_out, a.d_in
    base = os.path.join(a.work, f"{d_out}x{n}")
    H = f32(torch, base + ".H.f32", n, n).double()
    W = f32(torch, base + ".W.f32", d_out, n)
    out = {}
    Qs = {k: f32(torch, f"{base}.{k}.f32", d_out, n) for k in ("ref1", "wq1")}
    for k, Q in Qs.items():
        D = (W - Q).double()
        out[k] = float(((D @ H) * D).sum())
    out["agree"] = float(((Qs["ref1"] - Qs["wq1"]).abs() < 1e-4).double().mean())
    out["wHw"] = float(((W.double() @ H) * W.double()).sum())
    print(json.dumps(out))


def load():
    return open("/proc/loadavg").read().split()[0]


def others():
    """What else runs: the busiest processes (ps), for the report."""
    r = subprocess.run(["ps", "-eo", "pcpu,etime,args", "--sort=-pcpu"], capture_output=True,
                       text=True)
    return "\n".join("    " + ln[:160] for ln in r.stdout.splitlines()[1:7])


def ref_files(ref, dest):
    """gptq.py and quant.py of --ref (a checkout or a bare git directory) copied into dest."""
    os.makedirs(dest, exist_ok=True)
    for name in ("gptq.py", "quant.py"):
        src = os.path.join(ref, name)
        if os.path.isfile(src):
            shutil.copy(src, dest)
        else:
            text = subprocess.run(["git", "--git-dir", ref, "show", "HEAD:" + name], check=True,
                                  capture_output=True).stdout
            with open(os.path.join(dest, name), "wb") as f:
                f.write(text)
    return dest


def main():
    p = argparse.ArgumentParser()
    p.add_argument("build", nargs="?")
    p.add_argument("--ref")
    p.add_argument("--venv", default=os.environ.get("QS_TORCH_VENV", "/work/venv-torch"))
    p.add_argument("--shapes", default="4096x4096,11008x4096,4096x11008")
    p.add_argument("--threads", default="1,2")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--rows", type=int, default=2048)
    p.add_argument("--work")
    p.add_argument("--keep", action="store_true")
    p.add_argument("--env", action="append", default=[])
    p.add_argument("--bound", action="store_true")
    p.add_argument("--worker", choices=("ref", "err"))
    p.add_argument("--d-out", type=int)
    p.add_argument("--d-in", type=int)
    a = p.parse_args()
    if a.worker:
        a.threads = int(a.threads)
        return worker_ref(a) if a.worker == "ref" else worker_err(a)
    if not a.build or not a.ref:
        sys.exit("usage: bench_gptq_ref.py BUILD_DIR --ref DIR (see the file comment)")
    sys.path.insert(0, os.path.join(HERE, ".."))
    import qstest as Q
    py = os.path.join(a.venv, "bin", "python")
    shapes = [tuple(int(x) for x in s.split("x")) for s in a.shapes.split(",")]
    threads = [int(t) for t in a.threads.split(",")]
    work = a.work or tempfile.mkdtemp(prefix="qs_bench_gptq_ref_")
    os.makedirs(work, exist_ok=True)
    refdir = ref_files(a.ref, os.path.join(work, "ref"))
    env = {k: v for k, v in os.environ.items() if k not in ("SLURM_CPUS_PER_TASK",)}
    env["OPENBLAS_NUM_THREADS"] = "1"
    bench = os.path.join(a.build, "tests", "bench_gptq")

    qenv = dict(env, **dict(kv.split("=", 1) for kv in a.env))
    if a.env:
        print(f"qshard's runs with {' '.join(a.env)}")

    def qshard(s, t):
        r = subprocess.run([bench, "--shape", f"{s[0]}x{s[1]}", "--rows", str(a.rows),
                            "--threads", str(t), "--dir", work, "--zero-min1", "0"],
                           check=True, capture_output=True, text=True, env=qenv)
        w = r.stdout.split("\n")[2].split()
        return float(w[4]), float(w[7]), float(r.stdout.split()[4])  # prepare, quantize, peak

    def bound(s):
        r = subprocess.run([bench, "--bound", "--shape", f"{s[0]}x{s[1]}", "--rows", str(a.rows),
                            "--dir", work, "--zero-min1", "0"],
                           check=True, capture_output=True, text=True, env=qenv)
        w = [ln for ln in r.stdout.split("\n") if "bound measured" in ln][0].split()
        return float(w[5]), float(w[8])  # measured, strict

    def venv(kind, s, t):
        e = dict(env, OMP_NUM_THREADS=str(t), MKL_NUM_THREADS=str(t))
        r = subprocess.run([py, os.path.abspath(__file__), "--worker", kind, "--threads", str(t),
                            "--ref", refdir, "--work", work, "--d-out", str(s[0]),
                            "--d-in", str(s[1])], capture_output=True, text=True, env=e)
        if r.returncode != 0:
            sys.exit(f"bench_gptq_ref: {kind} worker on {s}: exit {r.returncode}\n{r.stderr}")
        return json.loads(r.stdout.strip().split("\n")[-1])

    print(f"load before: {load()}  ({time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())})")
    print(f"uptime: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")
    print(f"busiest processes:\n{others()}")
    P1, P2 = Q.sgemm_gflops(a.build, 1, 5, env), Q.sgemm_gflops(a.build, 2, 5, env)
    print(f"GEMM peak before: P1 {P1:.1f} GFLOP/s, P2 {P2:.1f} GFLOP/s (two processes)")
    best = {}
    for rnd in range(a.rounds):
        for s in shapes:
            for t in threads:
                order = ("qshard", "ref") if rnd % 2 == 0 else ("ref", "qshard")
                for who in order:
                    if who == "qshard":
                        prep, quant, pk = qshard(s, t)
                        v = (prep + quant, prep, quant)
                        print(f"round {rnd} {s[0]}x{s[1]} T={t} qshard prepare {prep:.3f} s "
                              f"quantize {quant:.3f} s  (its 2048^3 peak {pk:.1f})  load {load()}",
                              flush=True)
                    else:
                        v = (venv("ref", s, t)["time"],)
                        print(f"round {rnd} {s[0]}x{s[1]} T={t} reference {v[0]:.3f} s  "
                              f"load {load()}", flush=True)
                    k = (s, t, who)
                    if k not in best or v[0] < best[k][0]:
                        best[k] = v
            if a.bound and 1 in threads:  # a one-thread floor, beside the T=1 rows
                v = bound(s)
                print(f"round {rnd} {s[0]}x{s[1]} T=1 bound {v[0]:.3f} s (factor at S: "
                      f"{v[1]:.3f} s)  load {load()}", flush=True)
                k = (s, 1, "bound")
                best[k] = tuple(min(x, y) for x, y in zip(best.get(k, v), v))
    errs = {s: venv("err", s, max(threads)) for s in shapes}
    same = {s: all(filecmp.cmp(f"{work}/{s[0]}x{s[1]}.wq{threads[0]}.f32",
                               f"{work}/{s[0]}x{s[1]}.wq{t}.f32", shallow=False)
                   for t in threads) for s in shapes}
    P1b, P2b = Q.sgemm_gflops(a.build, 1, 5, env), Q.sgemm_gflops(a.build, 2, 5, env)
    print(f"GEMM peak after: P1 {P1b:.1f} GFLOP/s, P2 {P2b:.1f} GFLOP/s")
    print(f"load after: {load()}")
    print(f"busiest processes:\n{others()}")
    print(f"uptime: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")
    print()
    print("| shape (d_out x d_in) | T | qshard prepare | qshard quantize | qshard total "
          "| reference total | ref / qshard |")
    print("|---|---|---|---|---|---|---|")
    for s in shapes:
        for t in threads:
            q, r = best[(s, t, "qshard")], best[(s, t, "ref")]
            print(f"| {s[0]} x {s[1]} | {t} | {q[1]:.2f} s | {q[2]:.2f} s | {q[0]:.2f} s "
                  f"| {r[0]:.2f} s | {r[0] / q[0]:.2f} |")
    if a.bound and 1 in threads:
        print()
        print("| shape | T | reference | qshard | floor | floor, factor at S | ref / qshard "
              "| ref / floor | ref / floor, factor at S |")
        print("|---|---|---|---|---|---|---|---|---|")
        for s in shapes:
            q, r, b = best[(s, 1, "qshard")], best[(s, 1, "ref")], best[(s, 1, "bound")]
            print(f"| {s[0]} x {s[1]} | 1 | {r[0]:.2f} s | {q[0]:.2f} s | {b[0]:.2f} s "
                  f"| {b[1]:.2f} s | {r[0] / q[0]:.2f} | {r[0] / b[0]:.2f} | {r[0] / b[1]:.2f} |")
    print()
    print("| shape | tr(DHD^T) reference | tr(DHD^T) qshard | qshard / ref - 1 | same value "
          "| tr(WHW^T) | qshard bytes 1 = 2 threads |")
    print("|---|---|---|---|---|---|---|")
    for s in shapes:
        e = errs[s]
        print(f"| {s[0]} x {s[1]} | {e['ref1']:.6g} | {e['wq1']:.6g} | "
              f"{e['wq1'] / e['ref1'] - 1:+.2e} | {100 * e['agree']:.2f}% | {e['wHw']:.6g} "
              f"| {'yes' if same[s] else 'NO'} |")
    if not a.keep and not a.work:
        shutil.rmtree(work)
    if not all(same.values()):
        sys.exit("bench_gptq_ref: qshard's bytes differ between thread counts")


if __name__ == "__main__":
    main()
