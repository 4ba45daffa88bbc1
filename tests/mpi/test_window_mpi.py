#!/usr/bin/python3
"""test_window_mpi.py: per-layer sliding windows through the stages, layers split over ranks.
On the tiny Qwen2 checkpoints of tests/data/window/ (qwen2_mwl: layers 0-1 full, 2-3 window
6; qwen2_types: windows 4, full, 4, full), where a rank that used its local layer index
instead of the model's would apply another layer's window:
  - `qshard eval --weights float` over tokens.u32 (one 32-token window) at 1, 2 and 3 ranks
    gives the same nll_sum at every rank count, within 31 * 2e-4 of the NLL of transformers'
    logits (logits.f32, computed here in float64; 2e-4 = twice test_model_window's logits
    tolerance, the most one token's NLL can move when every logit moves by 1e-4);
  - `qshard run` on qwen2_mwl at 1 and 2 ranks (rank 1 owns layers 2-3 at 2 ranks): every
    calibration dataset (calib/layer-NNN.h5) and the final eval.json are identical.
Usage: test_window_mpi.py  (env: QS_BIN, QS_MPIEXEC, QS_SOURCE_DIR)"""
import json
import os
import subprocess
import sys
import tempfile

import h5py
import numpy as np

QS = os.environ["QS_BIN"]
MPIEXEC = os.environ.get("QS_MPIEXEC", "mpiexec").split()
DATA = os.path.join(os.environ["QS_SOURCE_DIR"], "tests", "data", "window")
TOL_LOGIT = 1e-4
failures = []


def check(cond, msg):
    if not cond:
        failures.append(msg)
        print("FAIL:", msg, file=sys.stderr)


def qshard(n, *args):
    return subprocess.run(MPIEXEC + ["-n", str(n), QS, *args, "--quiet"], capture_output=True,
                          text=True, timeout=600)


def ref_nll_sum(d, T):
    tok = np.fromfile(os.path.join(d, "tokens.u32"), dtype="<u4").astype(np.int64)
    lg = np.fromfile(os.path.join(d, "logits.f32"), dtype="<f4").astype(np.float64)
    lg = lg.reshape(T, -1)[:-1]
    m = lg.max(axis=1)
    lse = m + np.log(np.exp(lg - m[:, None]).sum(axis=1))
    return float((lse - lg[np.arange(T - 1), tok[1:]]).sum())


def write_config(path, d, run_dir):
    with open(path, "w") as f:
        f.write(f"model: {d}\nrun_dir: {run_dir}\n"
                f"calib:\n  tokens: {d}/tokens.u32\n  nsamples: 4\n  seqlen: 16\n"
                f"quant:\n  group_size: [16]\n"
                # calibrate computes its layer files for reconstruct's float inputs only
                f"reconstruct:\n  inputs: float\n"
                f"eval:\n  tokens: {d}/tokens.u32\n  seqlen: 32\n")


def calib_datasets(run_dir):
    out = {}
    for name in sorted(os.listdir(os.path.join(run_dir, "calib"))):
        if not name.endswith(".h5"):
            continue
        with h5py.File(os.path.join(run_dir, "calib", name), "r") as f:
            f.visititems(lambda k, v: out.__setitem__((name, k), v[()].tobytes())
                         if isinstance(v, h5py.Dataset) else None)
    return out


tmp = tempfile.mkdtemp(prefix="qs_window_")
for case in ("qwen2_mwl", "qwen2_types"):
    d = os.path.join(DATA, case)
    T = json.load(open(os.path.join(d, "expect.json")))["seqlen"]
    ref = ref_nll_sum(d, T)
    got = {}
    for n in (1, 2, 3):
        cfg = os.path.join(tmp, f"{case}-eval{n}.yaml")
        write_config(cfg, d, os.path.join(tmp, f"{case}-eval{n}"))
        r = qshard(n, "eval", cfg, "--weights", "float")
        check(r.returncode == 0, f"{case} eval n={n}: rc {r.returncode} {r.stderr.strip()}")
        if r.returncode != 0:
            continue
        ev = json.load(open(os.path.join(tmp, f"{case}-eval{n}", "eval.json")))
        got[n] = ev["nll_sum"]
        print(f"{case}: {n} rank(s) nll_sum {ev['nll_sum']:.9g}, transformers {ref:.9g}, "
              f"diff {ev['nll_sum'] - ref:.2g}")
        check(ev["tokens"] == T - 1, f"{case} n={n}: {ev['tokens']} tokens")
        check(abs(ev["nll_sum"] - ref) <= (T - 1) * 2 * TOL_LOGIT,
              f"{case} n={n}: nll_sum {ev['nll_sum']} vs transformers {ref}")
    check(len(set(got.values())) == 1, f"{case}: nll_sum differs between rank counts: {got}")

d = os.path.join(DATA, "qwen2_mwl")
runs = {}
for n in (1, 2):
    rd = os.path.join(tmp, f"run{n}")
    cfg = os.path.join(tmp, f"run{n}.yaml")
    write_config(cfg, d, rd)
    r = qshard(n, "run", cfg)
    check(r.returncode == 0, f"run n={n}: rc {r.returncode} {r.stderr.strip()}")
    if r.returncode == 0:
        ev = json.load(open(os.path.join(rd, "eval.json")))
        runs[n] = (calib_datasets(rd), ev["nll_sum"], ev["weights"])
        print(f"run {n} rank(s): {len(runs[n][0])} calib datasets, eval ({ev['weights']}) "
              f"nll_sum {ev['nll_sum']:.9g}")
if len(runs) == 2:
    check(len(runs[1][0]) >= 4 * 9, f"only {len(runs[1][0])} calib datasets")
    diff = [k for k in runs[1][0] if runs[1][0][k] != runs[2][0].get(k)]
    check(not diff and runs[1][0].keys() == runs[2][0].keys(),
          f"calib datasets differ between 1 and 2 ranks: {diff[:4]}")
    check(runs[1][1:] == runs[2][1:], f"run eval differs: {runs[1][1:]} vs {runs[2][1:]}")
sys.exit(1 if failures else 0)
