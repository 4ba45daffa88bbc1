#!/usr/bin/python3
"""bench_write.py: the write stage's times of docs/write.md "Numbers" (a benchmark, not a test).

A synthetic Llama (default: 8 layers, hidden 1024, intermediate 2816, 16 heads, 4 kv heads,
vocab 32000, bf16: 311 MB), one
candidate w4g128 with quant.method rtn (the earlier stages are quick and the allocation is
uniform), reconstruct.inputs float on 4 x 64 calibration tokens, no eval. The pipeline runs once
at 1 rank; then for every rank count and shard limit the write stage alone is redone
(out/ and export/ removed, `qshard run --resume`: every other stage is up to date) and its own
log lines give the time of the HDF5 shards (size, MiB/s) and of the GPTQ export (rank 0);
the stage total is timings.json's wall time of `write` (it includes the SHA-256 of every
output for the manifest). The shards of every rank count are compared with `cmp`, and
`qshard verify` runs on each run directory.

Usage: bench_write.py BUILD_DIR [--work DIR] [--ranks 1 2 3] [--shard-bytes 0 40MB]
       [--layers 8] [--hidden 1024] [--intermediate 2816] [--kv-heads 4] [--vocab 32000]
  --shard-bytes 0 = the default output.shard_bytes (4 GiB: one file). Smaller --layers /
  --hidden / --vocab make a quick check (not the docs' numbers).
Env: QS_MPIEXEC (default "mpiexec --oversubscribe")."""
import argparse
import json
import os
import re
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import qstest as Q  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("build")
p.add_argument("--work")
p.add_argument("--ranks", type=int, nargs="+", default=[1, 2, 3])
p.add_argument("--shard-bytes", nargs="+", default=["0", "40MB"])
for dim, default in (("layers", 8), ("hidden", 1024), ("intermediate", 2816), ("kv-heads", 4),
                     ("vocab", 32000)):  # the synthetic model
    p.add_argument("--" + dim, type=int, default=default)
a = p.parse_args()
Q.QS = os.path.abspath(os.path.join(a.build, "qshard"))
os.environ.update(OPENBLAS_NUM_THREADS="1", OMPI_ALLOW_RUN_AS_ROOT="1",
                  OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
work = os.path.abspath(a.work or tempfile.mkdtemp(prefix="qs_bench_write_"))
os.makedirs(work, exist_ok=True)
model = os.path.join(work, "model")
RE_SHARDS = re.compile(r"write: (\d+) shard\(s\), ([\d.]+) MiB in ([\d.]+) s \(([\d.]+) MiB/s\)")
RE_EXPORT = re.compile(r"write: GPTQ export \(.*\) in ([\d.]+) s")


def ok(r, what):
    if r.returncode != 0:
        sys.exit(f"bench_write: {what}: exit {r.returncode}\n{r.stderr[-2000:]}")
    return r


if not os.path.exists(os.path.join(model, "config.json")) and not Q.synth_model(
        model, layers=a.layers, hidden=a.hidden, intermediate=a.intermediate,
        kv_heads=a.kv_heads, vocab=a.vocab, dtype="bf16", tokens=4096):
    sys.exit("bench_write: synth-model failed")
mbytes = sum(os.path.getsize(os.path.join(model, f)) for f in os.listdir(model)
             if f.endswith(".safetensors"))
print(f"model: synthetic Llama, {a.layers} layers, hidden {a.hidden}, intermediate "
      f"{a.intermediate}, {a.kv_heads} kv heads, vocab {a.vocab}, bf16 ({mbytes / 1e6:.0f} MB); "
      f"uniform w4g128 (RTN)")
print(f"load average (1 min) at the start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
print()
print("| shard limit | ranks | HDF5 shards | export (rank 0) | stage total (incl. SHA-256 of outputs) |")
print("|---|---|---|---|---|")
rows_ok = True
for sb in a.shard_bytes:
    rd = os.path.join(work, f"run-{sb}")
    cfg = Q.write_config(
        os.path.join(work, f"run-{sb}.yaml"), model, rd,
        calib={"tokens": f"{model}/tokens.u32", "nsamples": 4, "seqlen": 64, "chunk_samples": 4},
        quant={"method": "rtn", "bits": [4], "group_size": [128]},
        reconstruct={"inputs": "float"}, output={"shard_bytes": sb} if sb != "0" else None)
    first = None
    for n in a.ranks:
        for sub in ("out", "export"):
            shutil.rmtree(os.path.join(rd, sub), ignore_errors=True)
        r = ok(Q.qs(n, "run", cfg, "--resume", quiet=False, timeout=None), f"run at {n} rank(s)")
        log = r.stdout + r.stderr
        m, e = RE_SHARDS.search(log), RE_EXPORT.search(log)
        tm = json.load(open(os.path.join(rd, "timings.json")))
        wall = [s["wall_s"] for s in tm["attempts"][-1]["stages"] if s["name"] == "write"]
        v = ok(Q.run([Q.QS, "verify", rd]), "verify")
        nst = len([f for f in os.listdir(os.path.join(rd, "export")) if f.endswith(".safetensors")])
        shards = sorted(f for f in os.listdir(os.path.join(rd, "out")) if f.endswith(".h5"))
        if first is None:
            first = (n, {f: open(os.path.join(rd, "out", f), "rb").read() for f in shards})
        same = sorted(first[1]) == shards and all(
            open(os.path.join(rd, "out", f), "rb").read() == first[1][f] for f in shards)
        rows_ok = rows_ok and same and m is not None and e is not None and len(wall) == 1
        print(f"| {'default' if sb == '0' else sb} | {n} | "
              + (f"{m.group(3)} s ({float(m.group(4)):.0f} MiB/s; {m.group(1)} file(s), "
                 f"{float(m.group(2)):.0f} MiB)" if m else "?") + " | "
              + (f"{e.group(1)} s ({nst} file(s))" if e else "?") + " | "
              + (f"{wall[0]:.2f} s" if wall else "?") + " |", flush=True)
        print(f"  ({n} rank(s): shards {'cmp-identical to' if same else 'DIFFER from'} the "
              f"{first[0]}-rank run's)", file=sys.stderr, flush=True)
        if n == a.ranks[0]:
            print("  verify: " + "; ".join(v.stdout.strip().splitlines()), file=sys.stderr)
print(f"load average (1 min) at the end: {os.getloadavg()[0]:.1f}")
sys.exit(0 if rows_ok else 1)
