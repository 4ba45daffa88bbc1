#!/usr/bin/python3
"""test_search_mpi.py: the search stage through `mpiexec -n N qshard run` on a synthetic model
(3 layers, hidden 128, intermediate 320, GQA; candidates w2g32 w3g32 w4g32 w8g32, float inputs).
  (1) objective error, target_bpw 4.5, pin layers.0.o=w8g32: search/allocation.json,
      allocation.md, pareto.csv, summary.json byte-identical at 1, 2 and 3 ranks; payload <=
      budget = floor(4.5 * weights / 8); payload re-summed from the recon tables; total =
      payload + unquantized bytes from the safetensors headers; q/k/v and gate/up share
      candidates; the pin holds; the predicted total is the brute-force optimum (meet in the
      middle over the 12 items); Pareto rows within their budgets, predicted non-increasing,
      from the smallest to the largest feasible size; a --resume run skips the stage.
      optimum-error.json equals the allocation, optimum-relative.json within the budget.
  (2) search.max_bytes = that total: feasible, total <= max_bytes; objective relative; tie_fused
      false (7 items per layer); objective sensitivity identical at 1 and 3 ranks (incl.
      sensitivity.json), resume reuses the cache.
  (3) eval --weights alloc:PATH equals --weights final (float inputs: both from recon/) and is
      the same at 1 and 2 ranks; a missing file is exit 2.
  (4) errors, exit 2 with one line: infeasible target_bpw (names the smallest feasible bpw),
      infeasible max_bytes, serve marlin with sym false, serve marlin without a servable
      candidate, a pin pattern matching nothing, pins conflicting inside a tied item, a
      malformed pin, several candidates and no budget.
Usage: test_search_mpi.py  (env: QS_BIN, QS_MPIEXEC)"""
import bisect
import itertools
import json
import math
import os
import sys

import h5py
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import qstest as Q  # noqa: E402
from qstest import check, qs  # noqa: E402

NL = 3
LINS = Q.LINS
CANDS = ["w2g32", "w3g32", "w4g32", "w8g32"]
OUTS = ["allocation.json", "allocation.md", "pareto.csv", "summary.json"]


def write_config(path, model, run_dir, search, bits=(2, 3, 4, 8), sym=False, output=None):
    Q.write_config(path, model, run_dir,
                   calib={"tokens": f"{model}/tokens.u32", "nsamples": 12, "seqlen": 64,
                          "chunk_samples": 4, "seed": 5},
                   quant={"bits": list(bits), "group_size": [32], "row_block": 32,
                          "block_size": 32, "sym": sym},
                   reconstruct={"inputs": "float"},
                   search=search, output=output,
                   eval={"tokens": f"{model}/tokens.u32", "seqlen": 64, "max_windows": 6})


def outputs(run_dir, extra=()):
    out = {}
    for name in OUTS + list(extra):
        with open(os.path.join(run_dir, "search", name), "rb") as f:
            out[name] = f.read()
    return out


def tables(run_dir):
    err, rel, size = [], [], []
    for l in range(NL):
        with h5py.File(Q.layer_path(run_dir, "recon", l), "r") as f:
            err.append(f["table/error"][()])
            rel.append(f["table/relative"][()])
            size.append(f["table/bytes"][()])
            nw = int(np.sum(f["table/d_out"][()] * f["table/d_in"][()]))
    return np.array(err), np.array(rel), np.array(size), nw * NL


def unquantized_bytes(model):
    hdr, _ = Q.safetensors_header(os.path.join(model, "model.safetensors"))
    tot = 0
    for name, t in hdr.items():
        if name == "__metadata__":
            continue
        if ".layers." in name and any(name.endswith(f".{p}_proj.weight") for p in LINS):
            continue
        tot += t["data_offsets"][1] - t["data_offsets"][0]
    return tot


GROUPS = [(0, 1, 2), (3,), (4, 5), (6,)]


def items(err, size, tied=True):
    """(cost, size) per item and candidate, layer-major."""
    groups = GROUPS if tied else [(k,) for k in range(7)]
    out = []
    for l in range(NL):
        for g in groups:
            out.append([(sum(err[l][k][c] for k in g), int(sum(size[l][k][c] for k in g)))
                        for c in range(len(CANDS))])
    return out


def brute_min(its, budget, pinned=None):
    """Minimum cost over all choices with size <= budget (meet in the middle)."""
    pinned = pinned or {}
    choices = [[c for c in range(len(CANDS)) if pinned.get(i, c) == c] for i in range(len(its))]
    h = len(its) // 2

    def enum(lo, hi):
        res = []
        for combo in itertools.product(*choices[lo:hi]):
            c = sum(its[lo + j][x][0] for j, x in enumerate(combo))
            s = sum(its[lo + j][x][1] for j, x in enumerate(combo))
            res.append((s, c))
        return res
    a, b = enum(0, h), sorted(enum(h, len(its)))
    bs = [s for s, _ in b]
    pm, best = [], math.inf
    for _, c in b:
        best = min(best, c)
        pm.append(best)
    out = math.inf
    for s, c in a:
        k = bisect.bisect_right(bs, budget - s) - 1
        if k >= 0:
            out = min(out, c + pm[k])
    return out


def main(tmp):
    model = os.path.join(tmp, "m")
    if not Q.synth_model(model, layers=NL, hidden=128, intermediate=320, heads=4, kv_heads=2,
                         vocab=300, tokens=20000):
        return
    base = {"target_bpw": 4.5, "objective": "error", "pin": ["layers.0.o=w8g32"]}

    # (1) rank-count determinism and the checks of one allocation
    ref = None
    for n in (1, 2, 3):
        rd = os.path.join(tmp, f"e{n}")
        cfg = os.path.join(tmp, f"e{n}.yaml")
        write_config(cfg, model, rd, base)
        r = qs(n, "run", cfg, "--set", "eval.tokens=")
        check(r.returncode == 0, f"run n={n}: rc {r.returncode} {r.stderr}")
        if r.returncode != 0:
            continue
        o = outputs(rd)
        if ref is None:
            ref = o
        else:
            diff = [k for k in OUTS if o[k] != ref[k]]
            check(not diff, f"n={n}: {diff} differ from 1 rank")
    if ref is None:
        return
    rd = os.path.join(tmp, "e1")
    err, rel, size, nw = tables(rd)
    al = json.loads(ref["allocation.json"])
    summ = json.loads(ref["summary.json"])
    budget = math.floor(4.5 * nw / 8)
    payload = sum(int(size[l][k][CANDS.index(al["layers"][l][k])]) for l in range(NL) for k in range(7))
    unq = unquantized_bytes(model)
    check(al["budget_bytes"] == budget, f"budget {al['budget_bytes']} != {budget}")
    check(al["payload_bytes"] == payload <= budget, f"payload {al['payload_bytes']} {payload} > {budget}")
    check(al["quantized_weights"] == nw, "quantized weights")
    check(al["total_bytes"] == payload + unq, f"total {al['total_bytes']} != {payload} + {unq}")
    check(abs(al["bpw"] - payload * 8 / nw) < 1e-12, "bpw")
    for l in range(NL):
        row = al["layers"][l]
        check(row[0] == row[1] == row[2] and row[4] == row[5], f"layer {l}: tied {row}")
    check(al["layers"][0][3] == "w8g32", f"pin: {al['layers'][0]}")
    its = items(err, size)
    want = brute_min(its, budget, pinned={1: 3})
    check(abs(al["predicted"] - want) <= 1e-9 * want, f"predicted {al['predicted']} != brute {want}")
    # engines of the GPTQ export (asymmetric, so checkpoint_format auto = v2): vLLM and its
    # CPU backend refuse the first linear's asymmetric scheme, transformers a mixed export
    b0 = int(al["layers"][0][0][1:].split("g")[0])
    mixed = len({c for row in al["layers"] for c in row}) > 1
    want = (("loads in GPTQModel; " if mixed else "loads in transformers, GPTQModel; ") +
            f"not in vLLM (w{b0} asym), vLLM-CPU (w{b0} asym)" +
            (", transformers (no dynamic map)" if mixed else ""))
    check(summ["payload_bytes"] == payload and summ["engines"] == want,
          f"summary {summ}, engines should be {want!r}")
    rows = ref["pareto.csv"].decode().strip().splitlines()
    check(rows[0] == "budget_bytes,payload_bytes,bpw,predicted,allocation", f"pareto header {rows[0]}")
    prev = math.inf
    lo = sum(min(s for _, s in it) for i, it in enumerate(its) if i != 1) + its[1][3][1]
    hi = sum(max(s for _, s in it) for i, it in enumerate(its) if i != 1) + its[1][3][1]
    body = [r.split(",") for r in rows[1:]]
    check(len(body) == 24 and int(body[0][0]) == lo and int(body[-1][0]) == hi,
          f"pareto range {len(body)} rows {body[0][0]}..{body[-1][0]} want {lo}..{hi}")
    for b in body:
        check(int(b[1]) <= int(b[0]) and float(b[3]) <= prev * (1 + 1e-9), f"pareto row {b[:4]}")
        prev = float(b[3])
        check(len(b[4].split()) == 12, "pareto allocation column")
    md = ref["allocation.md"].decode()
    check(md.count("\n| ") == NL + 1 and "| 0 | " in md, "allocation.md table")
    man = Q.manifest(rd, "search")
    opt = ["optimum-error.json", "optimum-relative.json"]
    check(sorted(man.get("outputs", {})) == sorted("search/" + x for x in OUTS + opt),
          f"manifest outputs {man.get('outputs')}")
    check(set(man.get("inputs", {})) == {"model", "recon"}, f"manifest inputs {man.get('inputs')}")
    oe = Q.read_json(os.path.join(rd, "search", "optimum-error.json"))
    orel = Q.read_json(os.path.join(rd, "search", "optimum-relative.json"))
    check(oe["layers"] == al["layers"] and oe["predicted"] == al["predicted"], "optimum-error = allocation")
    check(orel["objective"] == "relative" and orel["payload_bytes"] <= budget and orel["layers"][0][3] == "w8g32",
          "optimum-relative: budget and pin")
    r = qs(2, "run", os.path.join(tmp, "e1.yaml"), "--set", "eval.tokens=", "--resume")
    check(r.returncode == 0 and outputs(rd) == ref, f"--resume: {r.stderr}")

    # (2) max_bytes, relative, untied, sensitivity
    rdm = os.path.join(tmp, "mb")
    cfg = os.path.join(tmp, "mb.yaml")
    write_config(cfg, model, rdm, {"max_bytes": al["total_bytes"], "objective": "error"})
    r = qs(2, "run", cfg, "--set", "eval.tokens=")
    check(r.returncode == 0, f"max_bytes run: {r.stderr}")
    if r.returncode == 0:
        a2 = Q.read_json(os.path.join(rdm, "search", "allocation.json"))
        check(a2["total_bytes"] <= al["total_bytes"] and a2["budget_bytes"] == al["total_bytes"] - unq,
              f"max_bytes: total {a2['total_bytes']} budget {a2['budget_bytes']}")
        want = brute_min(its, al["total_bytes"] - unq)
        check(abs(a2["predicted"] - want) <= 1e-9 * want, f"max_bytes predicted {a2['predicted']} != {want}")
    rdr = os.path.join(tmp, "rel")
    cfg = os.path.join(tmp, "rel.yaml")
    write_config(cfg, model, rdr, {"target_bpw": 4.0, "objective": "relative", "tie_fused": False},
                 output={"gptq_export": False})
    r = qs(3, "run", cfg, "--set", "eval.tokens=")
    check(r.returncode == 0, f"relative run: {r.stderr}")
    if r.returncode == 0:
        a3 = Q.read_json(os.path.join(rdr, "search", "allocation.json"))
        b = math.floor(4.0 * nw / 8)
        check(a3["objective"] == "relative" and a3["payload_bytes"] <= b, "relative: budget")
        rows = open(os.path.join(rdr, "search", "pareto.csv")).read().splitlines()
        check(len(rows[1].split(",")[4].split()) == 21, "untied: 21 items")
        pred = sum(rel[l][k][CANDS.index(a3["layers"][l][k])] for l in range(NL) for k in range(7))
        check(abs(pred - a3["predicted"]) <= 1e-9 * pred, "relative: predicted = summed relative errors")
    sref = None
    for n in (1, 3):
        rds = os.path.join(tmp, f"sens{n}")
        cfg = os.path.join(tmp, f"sens{n}.yaml")
        write_config(cfg, model, rds,
                     {"target_bpw": 4.0, "objective": "sensitivity", "probe_windows": 3})
        r = qs(n, "run", cfg, "--set", "eval.tokens=")
        check(r.returncode == 0, f"sensitivity n={n}: {r.stderr}")
        if r.returncode == 0:
            o = outputs(rds, ["sensitivity.json"])
            sj = json.loads(o["sensitivity.json"])
            sj.pop("key")  # hashes the recon manifest, which names this run's config
            o["sensitivity.json"] = sj
            if sref is None:
                sref = o
                s = sj
                check(len(s["loss"]) == 4 * NL and s["probe"] == "w2g32" and s["windows"] == 3,
                      f"sensitivity.json {s}")
            else:
                check(o == sref, "sensitivity outputs differ between 1 and 3 ranks")
    if sref is not None:
        rds = os.path.join(tmp, "sens1")
        os.remove(os.path.join(rds, "search", "manifest.json"))
        os.remove(os.path.join(rds, "search", "allocation.json"))
        ino = os.stat(os.path.join(rds, "search", "sensitivity.json")).st_ino
        r = qs(2, "run", os.path.join(tmp, "sens1.yaml"), "--set", "eval.tokens=", "--resume")
        o = outputs(rds, ["sensitivity.json"])
        o["sensitivity.json"] = json.loads(o["sensitivity.json"])
        o["sensitivity.json"].pop("key")
        check(r.returncode == 0 and o == sref, f"sensitivity resume {r.stderr}")
        # every probe cached: the file is not rewritten (a write renames a new inode in)
        check(os.stat(os.path.join(rds, "search", "sensitivity.json")).st_ino == ino,
              "sensitivity resume: probes not taken from the cache")

    # (3) eval of an allocation file
    cfg = os.path.join(tmp, "e1.yaml")
    path = os.path.join(tmp, "alloc-copy.json")
    with open(path, "wb") as f:
        f.write(ref["allocation.json"])
    res = {}
    for n, w in ((1, f"alloc:{path}"), (2, f"alloc:{path}"), (2, "final")):
        r = qs(n, "eval", cfg, "--weights", w)
        check(r.returncode == 0, f"eval {w} n={n}: {r.stderr}")
        if r.returncode == 0:
            ev = Q.eval_json(rd)
            res[(n, w[:5])] = ev["nll_sum"]
    check(len(set(res.values())) == 1 and len(res) == 3, f"eval alloc/final differ: {res}")
    r = qs(2, "eval", cfg, "--weights", f"alloc:{tmp}/nope.json")
    check(Q.one_error(r, "not found"), f"eval missing alloc: {r.returncode} {Q.qshard_lines(r)}")

    # (4) error cases: exit 2 with one line
    cases = [
        ("infeasible_bpw", {"target_bpw": 2.0}, {}, ">= "),
        ("infeasible_bytes", {"max_bytes": 1000}, {}, "search.max_bytes >="),
        ("marlin_asym", {"target_bpw": 4.5, "serve": "marlin"}, {}, "quant.sym"),
        ("marlin_none", {"target_bpw": 3.5, "serve": "marlin"}, {"bits": (2, 3), "sym": True},
         "no candidate is servable"),
        ("pin_nomatch", {"target_bpw": 4.5, "pin": ["layer.0.*=w4g32"]}, {}, "matches no linear"),
        ("pin_unknown", {"target_bpw": 4.5, "pin": ["layers.0.*=w5g32"]}, {}, "not a candidate"),
        ("pin_tied", {"target_bpw": 4.5, "pin": ["layers.1.q=w4g32", "layers.1.v=w8g32"]}, {},
         "tied"),
        ("pin_syntax", {"target_bpw": 4.5, "pin": ["layers.1.q"]}, {}, "PATTERN=CAND"),
        ("no_budget", {"objective": "error"}, {}, "search.target_bpw or search.max_bytes"),
    ]
    for name, search, kw, needle in cases:
        cfg = os.path.join(tmp, f"bad_{name}.yaml")
        write_config(cfg, model, os.path.join(tmp, f"bad_{name}"), search, **kw)
        r = qs(2, "run", cfg, "--set", "eval.tokens=")
        check(Q.one_error(r, needle),
              f"{name}: rc {r.returncode}, {Q.qshard_lines(r)} (want '{needle}')")


with Q.tempdir("qs_search_") as d:
    main(d)
Q.finish()
