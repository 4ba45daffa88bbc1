#!/usr/bin/python3
"""test_eval_fixture.py: `qshard eval` on the real fixture (tinyllama-a, bf16 weights, fp32
compute) over the whole of tokens/eval.u32 with 256-token windows at 1, 2 and 3 ranks: the
perplexity is within 0.05% of transformers' 4.58331 and bit-identical at every rank count
(eval.json ppl and nll_sum). `--weights` other than float is exit 2 with one error line.
Skips (77) without ../shared unless QS_REQUIRE_SHARED=1.
Usage: test_eval_fixture.py  (env: QS_BIN, QS_MPIEXEC, QS_SHARED_DIR)"""
import json
import os
import subprocess
import sys
import tempfile

QS = os.environ["QS_BIN"]
MPIEXEC = os.environ.get("QS_MPIEXEC", "mpiexec").split()
shared = os.environ.get("QS_SHARED_DIR", "")
fx = os.path.join(shared, "fixtures")
if not os.path.isdir(os.path.join(fx, "tinyllama-a")):
    if os.environ.get("QS_REQUIRE_SHARED") == "1":
        print("fixture missing", file=sys.stderr)
        sys.exit(1)
    print("skip: no shared fixtures")
    sys.exit(77)

REF = 4.58331
failures = []
tmp = tempfile.mkdtemp(prefix="qs_eval_")
cfg = os.path.join(tmp, "cfg.yaml")
with open(cfg, "w") as f:
    f.write(f"model: {fx}/tinyllama-a\nrun_dir: {tmp}/run\n"
            f"calib:\n  tokens: {fx}/tokens/calib.u32\n"
            f"eval:\n  tokens: {fx}/tokens/eval.u32\n  seqlen: 256\n")
results = {}
for n in (1, 2, 3):
    r = subprocess.run(MPIEXEC + ["-n", str(n), QS, "eval", cfg, "--weights", "float", "--quiet"],
                       capture_output=True, text=True, timeout=900)
    if r.returncode != 0:
        failures.append(f"eval n={n}: rc {r.returncode} {r.stderr}")
        continue
    ev = json.load(open(os.path.join(tmp, "run", "eval.json")))
    results[n] = (ev["ppl"], ev["nll_sum"], ev["tokens"], ev["windows"])
    print(f"{n} rank(s): ppl {ev['ppl']:.6f} over {ev['windows']} windows")
    if abs(ev["ppl"] - REF) > 5e-4 * REF:
        failures.append(f"n={n}: ppl {ev['ppl']} not within 0.05% of {REF}")
    ntok = os.path.getsize(os.path.join(fx, "tokens", "eval.u32")) // 4
    if ev["windows"] != ntok // 256 or ev["tokens"] != ev["windows"] * 255:
        failures.append(f"n={n}: windows/tokens {ev['windows']}/{ev['tokens']}")
if len(set(results.values())) != 1:
    failures.append(f"results differ between rank counts: {results}")
# through the launcher like every MPI test: a singleton MPI process (no mpiexec) crashes
# LeakSanitizer's tracer at exit in the sanitizer build ("Tracer caught signal 11")
r = subprocess.run(MPIEXEC + ["-n", "1", QS, "eval", cfg, "--weights", "int4"],
                   capture_output=True, text=True, timeout=300)
lines = [l for l in r.stderr.strip().splitlines() if l.strip()]
ours = [l for l in lines if l.startswith("qshard:")]
if (r.returncode != 2 or not lines or len(ours) != 1 or not lines[0].startswith("qshard: error: ")
        or "--weights" not in lines[0]):
    failures.append(f"--weights int4: rc {r.returncode}, stderr {r.stderr!r}")
for f_ in failures:
    print("FAIL:", f_, file=sys.stderr)
sys.exit(1 if failures else 0)
