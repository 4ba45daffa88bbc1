#!/usr/bin/python3
"""test_skips.py: work no output needs is skipped, and the outputs stay the bytes of a run
that does it anyway (the debug knob QS_NO_SKIP, docs/design.md "Work that is skipped").
Synthetic model (3 layers, hidden 128, intermediate 320, GQA; 12 windows of 64 tokens in
chunks of 4), `mpiexec -n 2 qshard run`, reconstruct.inputs quantized.
  (0) in both cases calibrate computes nothing (quantized inputs: reconstruct computes every
      Hessian itself): no calib/layer-*.h5, calib/manifest.json lists no output,
      timings.json: calibrate skipped 3 of 3 layers; the QS_NO_SKIP=all run writes them, and
      recon/'s datasets are the same in both runs.
  (1) one candidate (RTN w4g-1, issue 22's shape): nothing to choose, so the search runs no
      sensitivity probe (summary.json probes 0 of 12 units, 0 evals; no sensitivity.json;
      timings.json: search skipped 13 of 13 evaluations) and the final pass solves no layer
      (timings.json: 3 of 3 layer solves skipped; final/'s datasets are recon/'s). Against
      QS_NO_SKIP=all in another run directory (13 probe evaluations, every layer solved):
      the same allocation, out/, export/ and eval.json byte-identical, final/'s datasets and
      attributes identical. In the same run directory, final/ redone with
      QS_NO_SKIP=final: every final/ file byte-identical (whole files).
  (2) two candidates (GPTQ w4g32, w8g32; propagate w4g32), layer 0 pinned to w4g32 and
      layer 1 to w8g32: the 8 units of layers 0 and 1 have no choice, so 4 of 12 units are
      probed (5 evaluations; sensitivity.json has null for the others); layers 0 and 1 of
      the final pass are copied from recon/ (layer 1 is the first that differs from the
      propagate candidate, its inputs are still the measure pass's), layer 2 is solved
      (timings.json: 2 of 3 layer solves skipped). Against QS_NO_SKIP=all: the same
      allocation, out/, export/, eval.json byte-identical; final/ datasets identical; final/
      redone in place with QS_NO_SKIP=final byte-identical.
  (3) the plan's memory per rank (`qshard plan --ranks 1 --json`) counts calibrate only for
      float inputs: with quantized inputs it is the same for 3 and 32 layers of one width
      (reconstruct holds one layer at a time), with float inputs the 32-layer plan is larger
      (calibrate holds every layer of its rank).
Usage: test_skips.py  (env: QS_BIN, QS_MPIEXEC)"""
import json
import os
import shutil
import sys

import h5py
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import qstest as Q  # noqa: E402
from qstest import check, qs  # noqa: E402

NL = 3
U = 4 * NL
LINS = Q.LINS


def write_config(path, model, run_dir, quant, search, propagate=None):
    rec = {"inputs": "quantized"}
    if propagate:
        rec["propagate"] = propagate
    Q.write_config(path, model, run_dir,
                   calib={"tokens": f"{model}/tokens.u32", "nsamples": 12, "seqlen": 64,
                          "chunk_samples": 4, "seed": 7},
                   quant=dict({"row_block": 32, "block_size": 32}, **quant),
                   reconstruct=rec, search=search,
                   eval={"tokens": f"{model}/tokens.u32", "seqlen": 64, "max_windows": 6})
    return path


def stage_timing(run_dir, name):
    """The last attempt's timings.json entry of stage `name` (None when absent)."""
    tm = Q.read_json(os.path.join(run_dir, "timings.json"))
    for s in tm["attempts"][-1]["stages"]:
        if s["name"] == name:
            return s
    return None


def skipped(run_dir, name):
    """(count, of) of the stage's "skipped" record in timings.json, (0, 0) when none."""
    s = stage_timing(run_dir, name)
    k = (s or {}).get("skipped")
    return (k["count"], k["of"]) if k else (0, 0)


def layer_data(run_dir, sub="final"):
    """sub/'s datasets (meta/ left out: it hashes the run's config and allocation) and
    root attributes per layer."""
    out = {}
    for l in range(NL):
        p = Q.layer_path(run_dir, sub, l)
        out.update(((l, k), v) for k, v in Q.h5_datasets(p, skip_prefix="meta/").items())
        out[(l, "attrs")] = Q.h5_attrs(p)
    return out


def final_files(run_dir):
    return {l: open(Q.layer_path(run_dir, "final", l), "rb").read() for l in range(NL)}


def same_as_recon(run_dir, layer, row, label):
    """final layer == recon's for the candidates of row (datasets and table columns)."""
    with h5py.File(Q.layer_path(run_dir, "final", layer), "r") as fin, \
            h5py.File(Q.layer_path(run_dir, "recon", layer), "r") as rec:
        cands = rec.attrs["candidates"]
        cands = (cands.decode() if isinstance(cands, bytes) else str(cands)).split(",")
        for k, cand in enumerate(row):
            c = cands.index(cand)
            for ds in ("codes", "scales", "zeros", "g_idx"):
                name = f"{LINS[k]}/{cand}/{ds}"
                check(np.array_equal(fin[name][()], rec[name][()]), f"{label}: {name} differs")
            for t in rec["table"]:
                if rec["table"][t].ndim != 2:
                    continue
                a, b = fin["table"][t][k, 0], rec["table"][t][k, c]
                check(np.array_equal(a, b, equal_nan=True),  # error_rtn: NaN in both
                      f"{label}: table/{t}[{LINS[k]}] {a} != recon {b}")


def run(n, cfg, env=None, *extra):
    r = qs(n, "run", cfg, *extra, env=env)
    check(r.returncode == 0, f"run {cfg} {env or ''} {extra}: rc {r.returncode} {r.stderr}")
    return r.returncode == 0


def compare_runs(a, b, label):
    """Two run directories of one config: the same allocation, written model and eval."""
    la = Q.read_json(os.path.join(a, "search", "allocation.json"))["layers"]
    lb = Q.read_json(os.path.join(b, "search", "allocation.json"))["layers"]
    check(la == lb, f"{label}: allocations differ: {la} vs {lb}")
    ha, hb = Q.output_hashes(a), Q.output_hashes(b)
    check(len(ha) > 3 and "eval.json" in ha, f"{label}: outputs {sorted(ha)}")
    diff = sorted(k for k in set(ha) | set(hb) if ha.get(k) != hb.get(k))
    check(not diff, f"{label}: outputs differ from the run without skips: {diff[:4]}")
    for sub in ("recon", "final"):
        fa, fb = layer_data(a, sub), layer_data(b, sub)
        diff = sorted(str(k) for k in set(fa) | set(fb) if fa.get(k) != fb.get(k))
        check(not diff, f"{label}: {sub}/ differs from the run without skips: {diff[:4]}")
    # calibrate: nothing computed with quantized inputs, everything with the knob
    calib = [n for n in os.listdir(os.path.join(a, "calib")) if n.endswith(".h5")]
    calib_b = [n for n in os.listdir(os.path.join(b, "calib")) if n.endswith(".h5")]
    check(not calib and not Q.manifest(a, "calib").get("outputs") and len(calib_b) == NL,
          f"{label}: calib/ layer files {calib} (without skips {calib_b})")
    check(skipped(a, "calibrate") == (NL, NL) and skipped(b, "calibrate") == (0, 0),
          f"{label}: calibrate skipped {skipped(a, 'calibrate')} / {skipped(b, 'calibrate')}")
    return la


def redo_final_in_place(run_dir, cfg, label):
    """final/ removed and redone with QS_NO_SKIP=final: the same file bytes."""
    before = final_files(run_dir)
    man = open(os.path.join(run_dir, "final", "manifest.json"), "rb").read()
    shutil.rmtree(os.path.join(run_dir, "final"))
    if not run(2, cfg, {"QS_NO_SKIP": "final"}, "--resume"):
        return
    check(skipped(run_dir, "reconstruct-final") == (0, 0),
          f"{label}: QS_NO_SKIP=final still skipped {skipped(run_dir, 'reconstruct-final')}")
    after = final_files(run_dir)
    check(before == after, f"{label}: final/ files differ from a full final pass: "
          f"{[l for l in range(NL) if before[l] != after[l]]}")
    check(open(os.path.join(run_dir, "final", "manifest.json"), "rb").read() == man,
          f"{label}: final/manifest.json differs from a full final pass")


def part1(tmp, model):
    quant = {"method": "rtn", "bits": [4], "group_size": [-1]}
    a, b = os.path.join(tmp, "one"), os.path.join(tmp, "one-noskip")
    cfg = write_config(os.path.join(tmp, "one.yaml"), model, a, quant, {})
    cfgb = write_config(os.path.join(tmp, "one-noskip.yaml"), model, b, quant, {})
    if not (run(2, cfg) and run(2, cfgb, {"QS_NO_SKIP": "all"})):
        return
    summ = Q.read_json(os.path.join(a, "search", "summary.json"))
    check(summ.get("probes") == {"units": U, "probed": 0, "evals": 0},
          f"one candidate: probes {summ.get('probes')}")
    check(not os.path.exists(os.path.join(a, "search", "sensitivity.json")),
          "one candidate: sensitivity.json written")
    check("search/sensitivity.json" not in Q.manifest(a, "search")["outputs"],
          "one candidate: search manifest lists sensitivity.json")
    check(skipped(a, "search") == (U + 1, U + 1), f"search skipped {skipped(a, 'search')}")
    check(skipped(a, "reconstruct-final") == (NL, NL),
          f"final skipped {skipped(a, 'reconstruct-final')}")
    for l in range(NL):
        same_as_recon(a, l, ["w4g-1"] * 7, f"one candidate l{l}")
    # the run that does it all anyway
    sb = Q.read_json(os.path.join(b, "search", "summary.json"))
    sj = Q.read_json(os.path.join(b, "search", "sensitivity.json"))
    check(sb.get("probes") == {"units": U, "probed": U, "evals": U + 1} and
          len([x for x in sj["loss"] if x is not None]) == U,
          f"QS_NO_SKIP=all: probes {sb.get('probes')}, loss {sj.get('loss')}")
    check(skipped(b, "search") == (0, 0) and skipped(b, "reconstruct-final") == (0, 0),
          f"QS_NO_SKIP=all skipped {skipped(b, 'search')} {skipped(b, 'reconstruct-final')}")
    compare_runs(a, b, "one candidate")
    redo_final_in_place(a, cfg, "one candidate")


def part2(tmp, model):
    quant = {"bits": [4, 8], "group_size": [32]}
    search = {"max_bytes": "1GB", "pin": ["layers.0.*=w4g32", "layers.1.*=w8g32"]}
    a, b = os.path.join(tmp, "pin"), os.path.join(tmp, "pin-noskip")
    cfg = write_config(os.path.join(tmp, "pin.yaml"), model, a, quant, search, "w4g32")
    cfgb = write_config(os.path.join(tmp, "pin-noskip.yaml"), model, b, quant, search, "w4g32")
    if not (run(2, cfg) and run(2, cfgb, {"QS_NO_SKIP": "all"})):
        return
    summ = Q.read_json(os.path.join(a, "search", "summary.json"))
    check(summ.get("probes") == {"units": U, "probed": 4, "evals": 5},
          f"pinned: probes {summ.get('probes')}")
    loss = Q.read_json(os.path.join(a, "search", "sensitivity.json"))["loss"]
    check(all(x is None for x in loss[:8]) and all(x is not None for x in loss[8:]),
          f"pinned: sensitivity.json loss {loss}")
    check(skipped(a, "search") == (8, U + 1), f"pinned: search skipped {skipped(a, 'search')}")
    check(skipped(a, "reconstruct-final") == (2, NL),
          f"pinned: final skipped {skipped(a, 'reconstruct-final')}")
    sb = Q.read_json(os.path.join(b, "search", "summary.json"))
    check(sb.get("probes") == {"units": U, "probed": U, "evals": U + 1},
          f"pinned, QS_NO_SKIP=all: probes {sb.get('probes')}")
    layers = compare_runs(a, b, "pinned")
    check(layers[0] == ["w4g32"] * 7 and layers[1] == ["w8g32"] * 7,
          f"pinned: allocation {layers}")
    for l in range(2):
        same_as_recon(a, l, layers[l], f"pinned l{l}")
    redo_final_in_place(a, cfg, "pinned")


def plan_totals(cfg, inputs):
    # no eval: eval holds its layers too
    r = Q.run([Q.QS, "plan", cfg, "--ranks", "1", "--json", "--set",
               f"reconstruct.inputs={inputs}", "--set", "eval.tokens="])
    if not check(r.returncode == 0, f"plan {cfg} {inputs}: rc {r.returncode} {r.stderr}"):
        return None
    return [rk["memory_bytes"]["total"] for rk in json.loads(r.stdout)["ranks"]]


def part3(tmp, model):
    m32 = os.path.join(tmp, "m32")
    if not Q.synth_model(m32, layers=32, hidden=128, intermediate=320, heads=4, kv_heads=2,
                         vocab=300):
        return
    quant = {"method": "rtn", "bits": [4], "group_size": [-1]}
    t = {}
    for name, m in (("3", model), ("32", m32)):
        cfg = write_config(os.path.join(tmp, f"plan{name}.yaml"), m, os.path.join(tmp, "p"),
                           quant, {})
        # the token file of the 3-layer model serves both (same vocabulary)
        with open(cfg) as f:
            text = f.read().replace(f"{m}/tokens.u32", f"{model}/tokens.u32")
        with open(cfg, "w") as f:
            f.write(text)
        for inputs in ("quantized", "float"):
            t[(name, inputs)] = plan_totals(cfg, inputs)
    check(t[("3", "quantized")] == t[("32", "quantized")] and
          t[("32", "float")][0] > t[("3", "float")][0] and
          t[("32", "float")][0] > t[("32", "quantized")][0],
          f"plan memory per rank (layers, inputs): {t}")


def main(tmp):
    model = os.path.join(tmp, "m")
    if not Q.synth_model(model, layers=NL, hidden=128, intermediate=320, heads=4, kv_heads=2,
                         vocab=300, tokens=20000):
        return
    part1(tmp, model)
    part2(tmp, model)
    part3(tmp, model)


with Q.tempdir("qs_skips_") as d:
    main(d)
Q.finish()
