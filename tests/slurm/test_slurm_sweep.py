#!/usr/bin/python3
"""test_slurm_sweep.py: `qshard sweep` + a real Slurm job array + `qshard collect`.
  1. a sweep file over a base config of a small synthetic model (2 layers): grid
     quant.bits [[3], [4]] x quant.group_size [[32], [64]], parallel 2;
     `qshard sweep` writes points/000..003.yaml (each with its own run_dir runs/NNN and the
     grid's values, in grid order: first key slowest), points.csv and sweep.sbatch
     (--array=0-3%2);
  2. `sbatch -n 1 sweep.sbatch` runs the four points as array tasks (through the copy of
     slurm/qshard.sbatch, srun --mpi=pmix); waits until no task is left;
  3. `qshard collect`: results.csv has 4 rows, all done, each with size_bytes = the search
     summary's total_bytes and bpw = the payload bits per weight summed over the point's
     recon tables (h5py; one candidate per point, so the search takes it), bpw ordered w3g64 < w3g32 < w4g64 <
     w4g32, the perplexities equal to the point's eval files (quantized: the written
     export's; float) and a time; results.md
     holds the same 4 rows; every point's run directory has report.md;
  4. a sweep file with a misspelt key is exit 2 with one line naming the sweep file.
Uses a running cluster or starts one with tests/slurm/cluster.sh. Skips (77) without Slurm
unless QS_REQUIRE_SLURM=1."""
import csv
import json
import os
import sys
import time

import h5py

import slurmlib as S
from slurmlib import check, log

GRID = [(3, 32), (3, 64), (4, 32), (4, 64)]


def recon_size(run_dir):
    """(payload bytes, weights) summed over the recon tables of a one-candidate run."""
    b = w = 0
    l = 0
    while os.path.exists(os.path.join(run_dir, "recon", f"layer-{l:03d}.h5")):
        with h5py.File(os.path.join(run_dir, "recon", f"layer-{l:03d}.h5"), "r") as f:
            b += int(f["table/bytes"][()].sum())
            w += int((f["table/d_out"][()] * f["table/d_in"][()]).sum())
        l += 1
    return b, w


def main(c, tmp):
    model = S.make_model(tmp, layers=2, hidden=128, inter=384, tokens=32768)
    tokens = os.path.join(model, "tokens.u32")
    base = os.path.join(tmp, "base.yaml")
    with open(base, "w") as f:
        f.write(f"calib:\n  tokens: {tokens}\n  nsamples: 8\n  seqlen: 64\n  chunk_samples: 4\n"
                f"quant:\n  row_block: 64\n"
                f"eval:\n  tokens: {tokens}\n  seqlen: 64\n  max_windows: 4\n")
    sweep = os.path.join(tmp, "bits.yaml")
    with open(sweep, "w") as f:
        f.write("base: base.yaml\n"
                f"set:\n  model: {model}\n"
                "grid:\n  quant.bits: [[3], [4]]\n  quant.group_size: [[32], [64]]\n"
                "parallel: 2\n")
    out = os.path.join(tmp, "sweep")
    r = S.run([S.QS, "sweep", sweep, "--out", out])
    if not check(r.returncode == 0, f"qshard sweep: rc {r.returncode}: {r.stderr}"):
        return
    for i, (bits, gs) in enumerate(GRID):
        p = os.path.join(out, "points", f"{i:03d}.yaml")
        text = open(p).read() if os.path.exists(p) else ""
        check(f'run_dir: "{out}/runs/{i:03d}"' in text and f"bits: [{bits}]" in text and
              f"group_size: [{gs}]" in text, f"{p}: run_dir runs/{i:03d}, bits {bits}, group {gs}")
    with open(os.path.join(out, "points.csv")) as f:
        rows = list(csv.DictReader(f))
    check([(r["quant.bits"], r["quant.group_size"]) for r in rows] ==
          [(f"[{b}]", f"[{g}]") for b, g in GRID], f"points.csv: {rows}")
    script = open(os.path.join(out, "sweep.sbatch")).read()
    check("#SBATCH --array=0-3%2" in script, "sweep.sbatch: --array=0-3%2")

    # 2. the array
    t0 = time.time()
    jid = c.submit(["-n", "1", "-J", "qshard-sweep-test", os.path.join(out, "sweep.sbatch")],
                   env={"QSHARD": S.QS, "QSHARD_SIGNAL_GRACE": "0"})
    log(f"submitted array job {jid}")
    end = time.time() + 600
    left = None
    while time.time() < end:
        q = c.cmd(["squeue", "-h", "-j", jid, "-o", "%i %T"])
        left = q.stdout.strip()
        if q.returncode == 0 and not left:
            break
        time.sleep(0.5)
    check(not left, f"array {jid} finished within 600 s (left: {left})")
    log(f"array done in {time.time() - t0:.1f} s")

    # 3. collect
    r = S.run([S.QS, "collect", out])
    check(r.returncode == 0, f"qshard collect: rc {r.returncode}: {r.stderr}")
    res = []
    if os.path.exists(os.path.join(out, "results.csv")):
        with open(os.path.join(out, "results.csv")) as f:
            res = list(csv.DictReader(f))
    check(len(res) == 4 and all(x["status"] == "done" for x in res),
          f"results.csv: 4 done rows: {res}")
    bpws = []
    for i, x in enumerate(res):
        rd = os.path.join(out, "runs", f"{i:03d}")
        b, w = recon_size(rd)
        try:
            sm = json.load(open(os.path.join(rd, "search", "summary.json")))
        except (OSError, ValueError):
            sm = {}
        check(sm.get("payload_bytes") == b, f"point {i}: search payload {sm.get('payload_bytes')}"
              f" = the recon tables' {b} (one candidate)")
        check(x["size_bytes"] == str(sm.get("total_bytes")),
              f"point {i}: size_bytes {x['size_bytes']} = summary total {sm.get('total_bytes')}")
        bpw = float(x["bpw"] or "nan")
        check(abs(bpw - 8.0 * b / max(w, 1)) < 1e-3, f"point {i}: bpw {bpw} = {8.0 * b / w}")
        bpws.append(bpw)
        evals = {}
        for n in os.listdir(rd):
            if n.startswith("eval") and n.endswith(".json"):
                try:
                    e = json.load(open(os.path.join(rd, n)))
                    evals[e["weights"]] = e["ppl"]
                except (OSError, ValueError, KeyError):
                    pass
        pf = evals.pop("float", None)
        check(pf is not None and abs(float(x["ppl_float"] or "nan") - pf) < 1e-5 * pf,
              f"point {i}: float perplexity {x['ppl_float']} = the float eval file's {pf}")
        pq = list(evals.values())
        check(len(pq) == 1 and abs(float(x["ppl"] or "nan") - pq[0]) < 1e-5 * pq[0],
              f"point {i}: perplexity {x['ppl']} = the quantized eval file's {pq}")
        check(float(x["time_s"] or "0") > 0, f"point {i}: time {x['time_s']}")
        check(x["overrides"] == f"quant.bits=[{GRID[i][0]}] quant.group_size=[{GRID[i][1]}]",
              f"point {i}: overrides {x['overrides']}")
        check(os.path.exists(os.path.join(rd, "report.md")), f"point {i}: report.md")
    if len(bpws) == 4:
        check(bpws[1] < bpws[0] < bpws[3] < bpws[2], f"bpw order w3g64 < w3g32 < w4g64 < w4g32: "
              f"{bpws}")
    md = open(os.path.join(out, "results.md")).read() if res else ""
    check(sum(1 for l in md.splitlines() if l.startswith("| ") and l.endswith("| done |")) == 4,
          f"results.md: 4 done rows:\n{md}")

    # 4. a bad key: exit 2, one line naming the sweep file
    bad = os.path.join(tmp, "bad.yaml")
    with open(bad, "w") as f:
        f.write(f"base: base.yaml\nset: {{model: {model}}}\ngrid:\n  quant.bitz: [[3]]\n")
    r = S.run([S.QS, "sweep", bad, "--out", os.path.join(tmp, "bad")])
    lines = r.stderr.strip().splitlines()
    check(r.returncode == 2 and len(lines) == 1 and bad in lines[0] and "quant.bitz" in lines[0],
          f"bad sweep key: rc {r.returncode}, stderr {r.stderr!r}")
    check(not os.path.exists(os.path.join(tmp, "bad")), "bad sweep: nothing written")


def dump(tmp):
    logs = os.path.join(tmp, "sweep", "logs")
    for n in sorted(os.listdir(logs)) if os.path.isdir(logs) else []:
        print(f"--- {n} ---\n{open(os.path.join(logs, n)).read()}", file=sys.stderr)


S.run_test("qs_slurm_sweep_", main, dump)
