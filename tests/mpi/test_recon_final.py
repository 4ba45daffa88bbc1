#!/usr/bin/python3
"""test_recon_final.py: the final reconstruct pass (stages/reconstruct.c, pass 1) through
`mpiexec -n N qshard run` on a synthetic model (3 layers, hidden 128, intermediate 320, GQA;
20 windows of 64 tokens in chunks of 3; row_block 32; candidates bits [4, 8] x groups
[32, 48]; reconstruct.inputs quantized; propagate w4g32).
The test plays the search stage: it writes run/search/allocation.json itself (the JSON form
of pipeline/alloc.h; when the search stage ran, its manifest is updated to name this file)
and runs `qshard run --resume`: the measure pass and search are up to date, the final pass
runs.
  (1) a mixed allocation (different candidates per layer and linear, some linears float):
      every dataset and attribute of final/layer-NNN.h5 is byte-identical at 1, 2 and 3
      ranks; only the allocated candidate of each linear is stored, float linears have no
      datasets (bits 0); final/manifest.json lists the layers and the allocation's SHA-256.
  (2) final layer 0 equals recon layer 0 for the chosen candidates (same Hessian): codes,
      scales, zeros, g_idx and the table columns (wnorm computed once per linear, by its
      first candidate in each pass, equal in every column; error_rtn NaN, the baseline
      being off by default); layer 2 differs from recon (its inputs
      come from the allocation, not from the propagate candidate).
  (3) a uniform allocation of the propagate candidate gives final == recon (that
      candidate's datasets and table columns) on every layer: the same sequential process;
      `qshard eval --weights final` then equals `--weights recon:w4g32` exactly, and with
      the mixed allocation it gives the same perplexity at 1 and 3 ranks.
  (4) stop after a layer (QS_TEST_STOP_AFTER_LAYERS=1, exit 3, no manifest) at 2 ranks,
      --resume at 3 ranks: the same bytes as (1).
  (5) an allocation naming a candidate the config does not have: exit 2, one error line.
  (6) inputs float: the final pass computes nothing; final/manifest.json records recon/'s
      manifest and the allocation; eval --weights final reads recon/.
Usage: test_recon_final.py  (env: QS_BIN, QS_MPIEXEC)"""
import hashlib
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
LINS = Q.LINS
CANDS = ["w4g32", "w4g48", "w8g32", "w8g48"]
PROP = "w4g32"
MIXED = [["w4g48", "w8g32", "", "w4g32", "w8g48", "w4g32", "w8g32"],
         ["w8g32", "w8g32", "w4g48", "", "w4g32", "w4g48", "w4g32"],
         ["w4g32", "w4g48", "w8g48", "w8g32", "", "w4g32", "w4g48"]]
TABLES = ["error", "wnorm", "relative", "error_rtn", "bytes", "can_serve", "damp", "damp_abs",
          "damp_raised", "fp64", "ndead"]


def write_config(path, model, run_dir, inputs):
    Q.write_config(path, model, run_dir,
                   calib={"tokens": f"{model}/tokens.u32", "nsamples": 20, "seqlen": 64,
                          "chunk_samples": 3, "checkpoint_every": 100, "seed": 3},
                   quant={"bits": [4, 8], "group_size": [32, 48], "row_block": 32,
                          "block_size": 32},
                   reconstruct={"inputs": inputs, "propagate": PROP},
                   search={"max_bytes": "1GB"},
                   # untied q/k/v and group 48 (not servable): shards yes, GPTQ export no
                   output={"gptq_export": False},
                   eval={"tokens": f"{model}/tokens.u32", "seqlen": 64, "max_windows": 8})


def write_alloc(run_dir, layers):
    os.makedirs(os.path.join(run_dir, "search"), exist_ok=True)
    doc = {"format": "qshard-allocation-1", "objective": "error", "budget_bytes": 0,
           "payload_bytes": 0, "total_bytes": 0, "quantized_weights": 0, "bpw": 0,
           "predicted": 0, "linears": LINS, "layers": layers}
    path = os.path.join(run_dir, "search", "allocation.json")
    with open(path, "w") as f:
        json.dump(doc, f, indent=1)
    h = hashlib.sha256(open(path, "rb").read()).hexdigest()
    # when the search stage ran, record this allocation as its output so that it stays
    # up to date (the test plays the search: its choice is this allocation)
    man = os.path.join(run_dir, "search", "manifest.json")
    if os.path.exists(man):
        m = json.load(open(man))
        m["outputs"]["search/allocation.json"] = h
        with open(man, "w") as f:
            json.dump(m, f, indent=1)
    return h


def data(run_dir, sub):
    """{(layer, dataset): (dtype, shape, bytes)} + attributes of every layer file of sub;
    meta/ holds this run's config and input hashes (the config names its run_dir)."""
    out = {}
    for l in range(NL):
        p = Q.layer_path(run_dir, sub, l)
        out.update(((l, k), v) for k, v in Q.h5_datasets(p, skip_prefix="meta/").items())
        out[(l, "attrs")] = Q.h5_attrs(p)
    return out


def same_as_recon(rd, layer, alloc_row, label):
    """final layer `layer` == recon's for the candidates of alloc_row (datasets, tables)."""
    with h5py.File(Q.layer_path(rd, "final", layer), "r") as fin, \
            h5py.File(Q.layer_path(rd, "recon", layer), "r") as rec:
        for k, lin in enumerate(alloc_row):
            if not lin:
                continue
            c = CANDS.index(lin)
            for ds in ("codes", "scales", "zeros", "g_idx"):
                name = f"{LINS[k]}/{lin}/{ds}"
                check(np.array_equal(fin[name][()], rec[name][()]), f"{label}: {name} differs")
            for t in TABLES:
                a, b = fin["table"][t][k, 0], rec["table"][t][k, c]
                # error_rtn is NaN in both without reconstruct.rtn_baseline
                check(np.array_equal(a, b, equal_nan=True),
                      f"{label}: table/{t}[{LINS[k]}] {a} != recon {b}")
        # the default: no RTN baseline; W H W^T is the linear's, the same in every column
        t = rec["table"]
        check(np.all(np.isnan(t["error_rtn"][()])), f"{label}: error_rtn without the baseline")
        wn = t["wnorm"][()]
        check(np.all(wn > 0) and np.all(wn == wn[:, :1]), f"{label}: wnorm differs by column")


def ppl(rd):
    ev = Q.eval_json(rd)
    return ev["weights"], ev["ppl"], ev["nll_sum"]


def main(tmp):
    model = os.path.join(tmp, "m")
    if not Q.synth_model(model, layers=NL, hidden=128, intermediate=320, heads=4, kv_heads=2,
                         vocab=300, tokens=20000):
        return
    rd = os.path.join(tmp, "q")
    cfg = os.path.join(tmp, "q.yaml")
    write_config(cfg, model, rd, "quantized")
    r = qs(1, "run", cfg, "--set", "eval.tokens=")
    check(r.returncode == 0, f"first run: rc {r.returncode} {r.stderr}")
    if r.returncode != 0:
        return
    # (1) mixed allocation, 1 / 2 / 3 ranks (final/ removed between the runs)
    ahash = write_alloc(rd, MIXED)
    ref = None
    for n in (1, 2, 3):
        shutil.rmtree(os.path.join(rd, "final"), ignore_errors=True)
        r = qs(n, "run", cfg, "--set", "eval.tokens=", "--resume")
        check(r.returncode == 0, f"final n={n}: rc {r.returncode} {r.stderr}")
        if r.returncode != 0:
            continue
        d = data(rd, "final")
        if ref is None:
            ref = d
        else:
            diff = [k for k in set(ref) | set(d) if d.get(k) != ref.get(k)]
            check(not diff, f"final at {n} ranks differs from 1 rank: {sorted(diff)[:4]}")
    if ref is None:
        return
    man = Q.manifest(rd, "final")
    check(len(man.get("outputs", [])) == NL, f"final manifest outputs {man.get('outputs')}")
    check(ahash in json.dumps(man.get("inputs")), f"final manifest inputs lack the allocation hash: {man.get('inputs')}")
    for l in range(NL):
        for k, lin in enumerate(LINS):
            cand = MIXED[l][k]
            names = {n for (ll, n) in ref if ll == l and n.startswith(lin + "/")}
            want = {f"{lin}/{cand}/{x}" for x in ("codes", "scales", "zeros", "g_idx")} if cand else set()
            check(names == want, f"final l{l} {lin}: datasets {sorted(names)} != {sorted(want)}")
        with h5py.File(Q.layer_path(rd, "final", l), "r") as f:
            bits = list(f["table/bits"][()])
            check(bits == [int(c[1]) if c else 0 for c in MIXED[l]], f"final l{l}: table/bits {bits}")
            check(f["table/error"].shape == (7, 1), f"final l{l}: table shape {f['table/error'].shape}")
    # a --resume with everything done skips (bytes unchanged)
    r = qs(2, "run", cfg, "--set", "eval.tokens=", "--resume")
    check(r.returncode == 0 and data(rd, "final") == ref, f"--resume rerun: rc {r.returncode}")
    # (2) layer 0 as recon; layer 2 not
    same_as_recon(rd, 0, MIXED[0], "mixed l0")
    with h5py.File(Q.layer_path(rd, "final", 2), "r") as fin, \
            h5py.File(Q.layer_path(rd, "recon", 2), "r") as rec:
        check(not np.array_equal(fin["q/w4g32/codes"][()], rec["q/w4g32/codes"][()]),
              "final layer 2 equals recon: the allocation did not propagate")
    # eval of the final weights: same at 1 and 3 ranks
    ev = {}
    for n in (1, 3):
        r = qs(n, "eval", cfg, "--weights", "final")
        check(r.returncode == 0, f"eval final n={n}: {r.stderr}")
        if r.returncode == 0:
            ev[n] = ppl(rd)
    check(len(ev) == 2 and ev[1] == ev[3] and ev[1][0] == "final", f"eval final over ranks: {ev}")
    # (4) stop after a layer at 2 ranks, resume at 3
    shutil.rmtree(os.path.join(rd, "final"))
    r = qs(2, "run", cfg, "--set", "eval.tokens=", "--resume", env={"QS_TEST_STOP_AFTER_LAYERS": "1"})
    check(r.returncode == 3, f"stop: rc {r.returncode} {r.stderr}")
    have = [l for l in range(NL) if os.path.exists(Q.layer_path(rd, "final", l))]
    check(0 < len(have) < NL and not os.path.exists(os.path.join(rd, "final", "manifest.json")),
          f"stop: final layer files {have}")
    r = qs(3, "run", cfg, "--set", "eval.tokens=", "--resume")
    check(r.returncode == 0, f"resume: rc {r.returncode} {r.stderr}")
    if r.returncode == 0:
        d = data(rd, "final")
        diff = [k for k in set(ref) | set(d) if d.get(k) != ref.get(k)]
        check(not diff, f"stop 2 ranks + resume 3 ranks differs: {sorted(diff)[:4]}")
    # (3) uniform allocation of the propagate candidate: final == recon on every layer
    write_alloc(rd, [[PROP] * 7 for _ in range(NL)])
    r = qs(3, "run", cfg, "--set", "eval.tokens=", "--resume")
    check(r.returncode == 0, f"uniform: rc {r.returncode} {r.stderr}")
    if r.returncode == 0:
        for l in range(NL):
            same_as_recon(rd, l, [PROP] * 7, f"uniform l{l}")
        r1 = qs(2, "eval", cfg, "--weights", "final")
        a = ppl(rd) if r1.returncode == 0 else None
        r2 = qs(2, "eval", cfg, "--weights", f"recon:{PROP}")
        b = ppl(rd) if r2.returncode == 0 else None
        check(a is not None and b is not None and a[1:] == b[1:],
              f"eval final (uniform) {a} != recon:{PROP} {b}")
    # (5) a candidate the config does not have
    bad = [row[:] for row in MIXED]
    bad[1][2] = "w3g128"
    write_alloc(rd, bad)
    r = qs(2, "run", cfg, "--set", "eval.tokens=", "--resume")
    check(Q.one_error(r, "allocation.json", "w3g128"),
          f"bad allocation: rc {r.returncode}, stderr {r.stderr!r}")
    # (6) inputs float: final/ only records the allocation and recon/
    rf = os.path.join(tmp, "f")
    cfgf = os.path.join(tmp, "f.yaml")
    write_config(cfgf, model, rf, "float")
    r = qs(2, "run", cfgf, "--set", "eval.tokens=")
    check(r.returncode == 0, f"float run: rc {r.returncode} {r.stderr}")
    fh = write_alloc(rf, MIXED)
    r = qs(2, "run", cfgf, "--set", "eval.tokens=", "--resume")
    check(r.returncode == 0, f"float final: rc {r.returncode} {r.stderr}")
    if r.returncode == 0:
        man = Q.manifest(rf, "final")
        rh = hashlib.sha256(open(os.path.join(rf, "recon", "manifest.json"), "rb").read()).hexdigest()
        txt = json.dumps(man.get("inputs"))
        check(fh in txt and rh in txt and not man.get("outputs"),
              f"float final manifest: {man}")
        check(not [x for x in os.listdir(os.path.join(rf, "final")) if x.endswith(".h5")],
              "float final: layer files written")
        r = qs(1, "eval", cfgf, "--weights", "final")
        check(r.returncode == 0 and ppl(rf)[0] == "final", f"float eval final: {r.stderr}")


with Q.tempdir("qs_recon_final_") as d:
    main(d)
Q.finish()
