#!/usr/bin/python3
"""test_report.py: run/timings.json, run/report.md and its SVG plots, and sweep/collect
without Slurm (docs/slurm.md).
  1. `mpiexec -n 2 qshard run` (3 layers, candidates w3g64 w4g64, search target_bpw 3.5,
     eval): timings.json has one attempt (2 ranks, done) with the stages in order, a wall
     time per rank and busy seconds for reconstruct; calibrate (quantized inputs) records
     its 3 of 3 layers skipped and no busy time;
  2. report.md has every section and the line of what calibrate skipped, and no dead-columns
     table (one sentence per recon/ and final/: nothing happened); report/error_per_layer.svg parses as XML and holds 3
     points per candidate whose data-y equal the summed table/error of the recon files, an
     "allocation" series (the allocation's candidates) and a "final" series (final/ tables
     of the final reconstruct pass); bits_per_layer.svg has 3 bars equal
     to the payload bits per weight of search/allocation.json from the recon tables;
     pareto.svg has one point per row of search/pareto.csv (bpw, predicted) and the chosen
     point (summary.json bpw, predicted);
  3. a copy of the run without search/ and the eval*.json files: `qshard report` says "not run" for
     allocation, Pareto and perplexity and writes no bits / Pareto SVG;
     a run stopped after its first reconstruct layer (exit 3) has timings.json with a
     "stopped" attempt and a report of the layers so far; its --resume at 3 ranks adds a
     second attempt (total_s = the sum);
  4. `qshard report` of a directory without run.json: exit 2, one line;
  5. sweep + collect without Slurm: 2 points (grid quant.bits [[3],[4]]), point 0 run with
     mpiexec, point 1 not: collect gives one done row (size = the search summary's
     total_bytes, bpw = the recon tables' payload bits per weight) and one missing row.
Usage: test_report.py  (env: QS_BIN, QS_MPIEXEC)"""
import csv
import os
import shutil
import sys
import xml.etree.ElementTree as ET

import h5py

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import qstest as Q  # noqa: E402
from qstest import check  # noqa: E402

NS = "{http://www.w3.org/2000/svg}"
NL = 3


def svg(path):
    """(bars [(x, y)], points {series: [(x, y)]}) read from the XML."""
    root = ET.parse(path).getroot()
    bars = [(float(e.get("data-x")), float(e.get("data-y"))) for e in root.iter(NS + "rect")
            if e.get("class") == "bar"]
    pts = {}
    for e in root.iter(NS + "circle"):
        if e.get("class") == "point":
            pts.setdefault(e.get("data-series"), []).append(
                (float(e.get("data-x")), float(e.get("data-y"))))
    return bars, pts


def tables(run_dir):
    out = []
    for l in range(NL):
        with h5py.File(Q.layer_path(run_dir, "recon", l), "r") as f:
            out.append({k: f["table/" + k][()] for k in
                        ("error", "bytes", "bits", "group_size", "d_out", "d_in")})
    return out


def close(a, b):
    return abs(a - b) <= 1e-9 * max(1.0, abs(a), abs(b))


def main(tmp):
    model = os.path.join(tmp, "model")
    if not Q.synth_model(model, layers=NL, hidden=128, intermediate=384, heads=4, kv_heads=2,
                         vocab=512, tokens=32768):
        return
    tokens = os.path.join(model, "tokens.u32")
    base = {"calib": {"tokens": tokens, "nsamples": 8, "seqlen": 64, "chunk_samples": 4},
            "quant": {"bits": [3, 4], "group_size": [64], "row_block": 64},
            "search": {"target_bpw": 3.5},
            "eval": {"tokens": tokens, "seqlen": 64, "max_windows": 4}}
    rd = os.path.join(tmp, "run")
    cfg = Q.write_config(os.path.join(tmp, "cfg.yaml"), model, rd, **base)
    r = Q.qs(2, "run", cfg)
    if not check(r.returncode == 0, f"run: rc {r.returncode}: {r.stderr}"):
        return

    # 1. timings
    tm = Q.read_json(os.path.join(rd, "timings.json"))
    a = tm["attempts"]
    check(len(a) == 1 and a[0]["ranks"] == 2 and a[0]["status"] == "done" and
          a[0]["resume"] == 0, f"timings: one attempt at 2 ranks, done: {a}")
    names = [s["name"] for s in a[0]["stages"]]
    check(names[:3] == ["plan", "calibrate", "reconstruct"] and "search" in names and
          "eval" in names and len(set(names)) == len(names), f"timings stages {names}")
    for s in a[0]["stages"]:
        check(len(s["ranks"]) == 2 and all(x["wall_s"] >= 0 and x["cpu_s"] >= 0
                                            for x in s["ranks"]), f"{s['name']}: per-rank times")
        if s["name"] == "reconstruct":
            check(all(isinstance(x["busy_s"], float) and x["busy_s"] > 0 for x in s["ranks"]),
                  f"{s['name']}: busy seconds on every rank: {s['ranks']}")
        if s["name"] == "calibrate":  # quantized inputs: nothing to compute, recorded
            check(s.get("skipped", {}).get("count") == NL and
                  all(x["busy_s"] is None for x in s["ranks"]),
                  f"calibrate: skipped {s.get('skipped')}, busy {s['ranks']}")
    check(len(a[0]["peak_rss_bytes"]) == 2 and min(a[0]["peak_rss_bytes"]) > 1e6,
          "timings: peak RSS per rank")
    # the attempt's peak covers every stage: reconstruct resets the high-water mark for its
    # own record (recon/rss/), and the stages after it use less
    for r in range(2):
        rec = Q.read_json(os.path.join(rd, "recon", "rss", f"rank-{r:03d}.json"))
        check(a[0]["peak_rss_bytes"][r] >= rec["peak_rss_bytes"],
              f"timings: rank {r} peak {a[0]['peak_rss_bytes'][r]} below reconstruct's "
              f"{rec['peak_rss_bytes']}")
    check(close(tm["total_s"], a[0]["total_s"]), "timings: total_s = the attempt's")

    # 2. the report
    md = open(os.path.join(rd, "report.md")).read()
    for sec in ("## Timings", "## Memory per rank (plan)", "## Allocation", "## Error per layer",
                "## Perplexity", "## Pareto frontier", "## Config"):
        check(sec in md, f"report.md has {sec}")
    check("not run" not in md, "report.md: every section filled")
    check(f"- calibrate: {NL} of {NL} layers (" in md, "report.md: what calibrate skipped")
    for sub in ("recon", "final"):  # nothing happened: one sentence per folder, no table
        check(f"{sub}/ ({NL} layer file(s)): 0 of {7 * NL} (layer, linear) pairs had dead input "
              "columns, 0 raised the damping, 0 used the fp64 fallback." in md,
              f"report.md: no dead columns or damping in {sub}/")
    check("| pass | layer | linear |" not in md, "report.md: no dead-columns table")
    ppl = Q.eval_json(rd)["ppl"]
    check(f"{ppl:.6f}" in md, "report.md: the perplexity of eval.json")
    t = tables(rd)
    cands = [f"w{b}g{g}" for b, g in zip(t[0]["bits"], t[0]["group_size"])]
    check(cands == ["w3g64", "w4g64"], f"candidates {cands}")
    al = Q.read_json(os.path.join(rd, "search", "allocation.json"))
    alloc = al["layers"]
    check(len(alloc) == NL and all(len(x) == 7 and all(c in cands for c in x) for x in alloc),
          f"allocation {alloc}")
    _, pts = svg(os.path.join(rd, "report", "error_per_layer.svg"))
    check(sorted(pts) == sorted(cands + ["allocation", "final"]),
          f"error plot series {sorted(pts)}")
    want_f = []
    for l in range(NL):
        with h5py.File(Q.layer_path(rd, "final", l), "r") as f:
            want_f.append(float(f["table/error"][()].sum()))
    got_f = [y for _, y in pts.get("final", [])]
    check(len(got_f) == NL and all(close(g, w) for g, w in zip(got_f, want_f)),
          f"final-pass error series {got_f} vs {want_f}")
    for c, name in enumerate(cands):
        want = [(float(l), float(t[l]["error"][:, c].sum())) for l in range(NL)]
        got = pts.get(name, [])
        check(len(got) == NL and all(g[0] == w[0] and close(g[1], w[1])
                                     for g, w in zip(got, want)),
              f"error plot {name}: {got} vs {want}")
    want_a = [sum(float(t[l]["error"][k, cands.index(alloc[l][k])]) for k in range(7))
              for l in range(NL)]
    got_a = [y for _, y in pts.get("allocation", [])]
    check(len(got_a) == NL and all(close(g, w) for g, w in zip(got_a, want_a)),
          f"allocation error series {got_a} vs {want_a}")
    bars, _ = svg(os.path.join(rd, "report", "bits_per_layer.svg"))
    want = []
    for l in range(NL):
        b = w = 0
        for k in range(7):
            c = cands.index(alloc[l][k])
            b += int(t[l]["bytes"][k, c])
            w += int(t[l]["d_out"][k] * t[l]["d_in"][k])
        want.append((float(l), 8.0 * b / w))
    check(len(bars) == NL and all(g[0] == x[0] and close(g[1], x[1]) for g, x in zip(bars, want)),
          f"bits bars {bars} vs {want}")
    rows = list(csv.DictReader(open(os.path.join(rd, "search", "pareto.csv"))))
    prow = [(float(x["bpw"]), float(x["predicted"])) for x in rows]
    _, pts = svg(os.path.join(rd, "report", "pareto.svg"))
    got = pts.get("frontier", [])
    check(len(prow) > 1 and len(got) == len(prow) and
          all(close(g[0], p[0]) and close(g[1], p[1]) for g, p in zip(got, prow)),
          f"pareto frontier points {got} vs {prow}")
    sm = Q.read_json(os.path.join(rd, "search", "summary.json"))
    ch = pts.get("chosen", [])
    check(len(ch) == 1 and close(ch[0][0], sm["bpw"]) and close(ch[0][1], sm["predicted"]),
          f"pareto chosen point {ch} vs summary {sm}")

    # 3. without search and eval: "not run"
    rd2 = os.path.join(tmp, "run-nosearch")
    shutil.copytree(rd, rd2)
    for x in ("search", "report"):
        shutil.rmtree(os.path.join(rd2, x))
    for n in os.listdir(rd2):
        if n.startswith("eval") and n.endswith(".json"):
            os.remove(os.path.join(rd2, n))
    r = Q.run([Q.QS, "report", rd2])
    check(r.returncode == 0, f"qshard report: rc {r.returncode}: {r.stderr}")
    md = open(os.path.join(rd2, "report.md")).read()
    for sec in ("Allocation", "Pareto frontier", "Perplexity"):
        check(f"## {sec}\n\nnot run" in md, f"report without search/eval: {sec} not run")
    check("## Error per layer\n\nnot run" not in md, "error per layer still reported")
    for n in ("bits_per_layer.svg", "pareto.svg"):
        check(not os.path.exists(os.path.join(rd2, "report", n)), f"no {n} without search")
    check(os.path.exists(os.path.join(rd2, "report", "error_per_layer.svg")), "error plot")

    # 3b. a stopped run (exit 3) gets a report; its resume adds a second attempt
    rd3 = os.path.join(tmp, "run-stop")
    cfg3 = Q.write_config(os.path.join(tmp, "cfg-stop.yaml"), model, rd3, **base)
    r = Q.qs(2, "run", cfg3, env={"QS_TEST_STOP_AFTER_LAYERS": "1"})
    check(r.returncode == 3, f"stopped run: rc {r.returncode}: {r.stderr}")
    a = Q.read_json(os.path.join(rd3, "timings.json"))["attempts"]
    check(len(a) == 1 and a[0]["status"] == "stopped" and
          a[0]["stages"][-1] == dict(a[0]["stages"][-1], name="reconstruct", status="stopped"),
          f"stopped attempt: {a}")
    md = open(os.path.join(rd3, "report.md")).read() if os.path.exists(
        os.path.join(rd3, "report.md")) else ""
    check("of 3 layer file(s) (the rest not written yet)" in md,
          "report of the stopped run: error table of the layers written so far")
    r = Q.qs(3, "run", cfg3, "--resume")
    check(r.returncode == 0, f"resumed run: rc {r.returncode}: {r.stderr}")
    tm3 = Q.read_json(os.path.join(rd3, "timings.json"))
    a = tm3["attempts"]
    check([(x["ranks"], x["resume"], x["status"]) for x in a] == [(2, 0, "stopped"),
                                                                (3, 1, "done")],
          f"two attempts: {[(x['ranks'], x['resume'], x['status']) for x in a]}")
    check(close(tm3["total_s"], sum(x["total_s"] for x in a)), "total_s sums the attempts")
    check("### Attempt 2: 3 rank(s), --resume, done" in open(os.path.join(rd3, "report.md")).read(),
          "report: both attempts")

    # 4. not a run directory
    r = Q.run([Q.QS, "report", tmp])
    check(r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and tmp in r.stderr,
          f"report of a non-run dir: rc {r.returncode}, {r.stderr!r}")

    # 5. sweep + collect without Slurm
    Q.write_config(os.path.join(tmp, "base.yaml"), None, None,
                   **dict(base, quant=dict(base["quant"], bits=[4]),
                          search={"objective": "error"}))
    sw = os.path.join(tmp, "sw.yaml")
    with open(sw, "w") as f:
        f.write(f"base: base.yaml\nset: {{model: {model}}}\ngrid: {{quant.bits: [[3], [4]]}}\n")
    r = Q.run([Q.QS, "sweep", sw])
    out = os.path.join(tmp, "sw")
    check(r.returncode == 0 and os.path.exists(os.path.join(out, "points", "001.yaml")),
          f"sweep: rc {r.returncode}: {r.stderr}")
    check("#SBATCH --array=0-1%4" in open(os.path.join(out, "sweep.sbatch")).read(),
          "sweep.sbatch: default parallel 4")
    r = Q.qs(2, "run", os.path.join(out, "points", "000.yaml"))
    check(r.returncode == 0, f"point 0: rc {r.returncode}: {r.stderr}")
    r = Q.run([Q.QS, "collect", out])
    check(r.returncode == 0, f"collect: rc {r.returncode}: {r.stderr}")
    rows = list(csv.DictReader(open(os.path.join(out, "results.csv"))))
    check([x["status"] for x in rows] == ["done", "missing"], f"collect statuses {rows}")
    if rows:
        b = w = 0
        for l in range(NL):
            with h5py.File(Q.layer_path(os.path.join(out, "runs", "000"), "recon", l), "r") as f:
                b += int(f["table/bytes"][()].sum())
                w += int((f["table/d_out"][()] * f["table/d_in"][()]).sum())
        sm = Q.read_json(os.path.join(out, "runs", "000", "search", "summary.json"))
        check(rows[0]["size_bytes"] == str(sm["total_bytes"]) and sm["payload_bytes"] == b and
              abs(float(rows[0]["bpw"]) - 8 * b / w) < 1e-3,
              f"point 0 size {rows[0]['size_bytes']} / bpw {rows[0]['bpw']} vs {sm} / {b} / {w}")
        check(rows[1]["size_bytes"] == "" and rows[1]["ppl_float"] == "", "missing row empty")


with Q.tempdir("qs_report_") as d:
    main(d)
Q.finish()
