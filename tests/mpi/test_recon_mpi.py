#!/usr/bin/python3
"""test_recon_mpi.py: the reconstruct stage through `mpiexec -n N qshard run` on a synthetic
model (3 layers, hidden 128, intermediate 320, GQA; 20 windows of 64 tokens in chunks of 3 so
the last chunk is short; row_block 32 so q/k/v/o/gate/up/down split into several row tiles).
Candidates bits [4, 5] x groups [32, 48]: 5 bits has no GPTQ layout (bytes -1, not servable),
group 48 does not divide 128 (packable, not servable).
  (1) inputs: float and inputs: quantized: every dataset and attribute of every
      recon/layer-NNN.h5 is byte-identical at 1, 2 and 3 ranks; table sanity (relative =
      error / wnorm, bytes = the GPTQ tensor sizes, can_serve, GPTQ error < RTN error under
      the same H, zero points >= 1 (v1 export), g_idx natural); the manifest lists every
      layer; a --resume run skips the stage.
  (2) layer 0 of the quantized mode (Hessian summed from chunk partials spread over ranks)
      equals layer 0 of the float mode (calibrate's Hessian): same inputs, same chunk order.
  (3) kill/resume: QS_TEST_STOP_AFTER_LAYERS=1 stops after the first layer(s) (exit 3, the
      finished layer files stay), --resume at another rank count gives the same bytes.
  (4) eval --weights recon:w4g32 gives the same perplexity (ppl and nll_sum) from the run
      reconstructed at 1 rank evaluated at 1 and 3 ranks and from the run reconstructed at
      2 ranks evaluated at 2 ranks; it differs from float; a malformed or unknown candidate
      is exit 2 with one error line.
Usage: test_recon_mpi.py  (env: QS_BIN, QS_MPIEXEC)"""
import os
import sys

import h5py
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import qstest as Q  # noqa: E402
from qstest import check, qs  # noqa: E402

NL = 3
LINS = Q.LINS
SHAPES = {"q": (128, 128), "k": (64, 128), "v": (64, 128), "o": (128, 128),
          "gate": (320, 128), "up": (320, 128), "down": (128, 320)}
CANDS = [(4, 32), (4, 48), (5, 32), (5, 48)]


def write_config(path, model, run_dir, inputs):
    Q.write_config(path, model, run_dir,
                   calib={"tokens": f"{model}/tokens.u32", "nsamples": 20, "seqlen": 64,
                          "chunk_samples": 3, "checkpoint_every": 100, "seed": 3},
                   quant={"bits": [4, 5], "group_size": [32, 48], "row_block": 32,
                          "block_size": 32},
                   reconstruct={"inputs": inputs, "rtn_baseline": True},
                   # a budget (several candidates); leaves propagate alone
                   search={"max_bytes": "1GB"},
                   # v1: zero points >= 1 (auto is v2 for asym)
                   output={"checkpoint_format": "gptq"},
                   eval={"tokens": f"{model}/tokens.u32", "seqlen": 64, "max_windows": 8})


def recon_data(run_dir):
    """{(layer, dataset): (dtype, shape, bytes)} + attributes of every recon layer file;
    meta/ holds this run's config and input hashes (the config names its run_dir)."""
    out = {}
    for l in range(NL):
        p = Q.layer_path(run_dir, "recon", l)
        out.update(((l, k), v) for k, v in Q.h5_datasets(p, skip_prefix="meta/").items())
        out[(l, "attrs")] = Q.h5_attrs(p)
    return out


def gptq_bytes(d_out, d_in, bits, group):
    unit = {2: 16, 3: 32, 4: 8, 8: 4}.get(bits)
    if unit is None or d_in % unit or d_out % unit:
        return -1
    G = -(-d_in // group) if group > 0 else 1
    return d_in * bits // 32 * d_out * 4 + G * d_out * bits // 32 * 4 + G * d_out * 2 + d_in * 4


def check_tables(run_dir, label):
    for l in range(NL):
        with h5py.File(Q.layer_path(run_dir, "recon", l), "r") as f:
            t = f["table"]
            err, wn, rel, rtn = (t[k][()] for k in ("error", "wnorm", "relative", "error_rtn"))
            check(err.shape == (7, 4), f"{label} l{l}: table shape {err.shape}")
            check(np.all(err > 0) and np.all(wn > 0), f"{label} l{l}: non-positive errors")
            check(np.allclose(rel, err / wn, rtol=1e-12), f"{label} l{l}: relative != error/wnorm")
            check(np.all(err.sum(0) < rtn.sum(0)), f"{label} l{l}: GPTQ not below RTN {err.sum(0)} {rtn.sum(0)}")
            check(list(t["bits"][()]) == [4, 4, 5, 5] and list(t["group_size"][()]) == [32, 48, 32, 48],
                  f"{label} l{l}: candidate order")
            for i, lin in enumerate(LINS):
                d_out, d_in = SHAPES[lin]
                for c, (b, g) in enumerate(CANDS):
                    want = gptq_bytes(d_out, d_in, b, g)
                    check(t["bytes"][i, c] == want, f"{label} l{l} {lin} w{b}g{g}: bytes {t['bytes'][i, c]} != {want}")
                    serve = int(want >= 0 and d_in % g == 0)
                    check(t["can_serve"][i, c] == serve, f"{label} l{l} {lin} w{b}g{g}: can_serve")
                    grp = f[f"{lin}/w{b}g{g}"]
                    G = -(-d_in // g)
                    check(grp["codes"].shape == (d_out, d_in) and grp["scales"].shape == (d_out, G),
                          f"{label} l{l} {lin}: shapes")
                    z = grp["zeros"][()]
                    check(z.min() >= 1 and z.max() <= 2 ** b - 1, f"{label} l{l} {lin}: zeros range")
                    check(np.array_equal(grp["g_idx"][()], np.arange(d_in) // g), f"{label} {lin}: g_idx")
                    check(grp["codes"][()].max() <= 2 ** b - 1, f"{label} {lin}: codes range")
            check(np.all(t["damp"][()] >= 0.01), f"{label} l{l}: damp")


def main(tmp):
    model = os.path.join(tmp, "m")
    if not Q.synth_model(model, layers=NL, hidden=128, intermediate=320, heads=4, kv_heads=2,
                         vocab=300, tokens=20000):
        return
    refs = {}
    for inputs in ("float", "quantized"):
        ref = None
        for n in (1, 2, 3):
            rd = os.path.join(tmp, f"{inputs}{n}")
            cfg = os.path.join(tmp, f"{inputs}{n}.yaml")
            write_config(cfg, model, rd, inputs)
            r = qs(n, "run", cfg, "--set", "eval.tokens=")
            check(r.returncode == 0, f"{inputs} n={n}: rc {r.returncode} {r.stderr}")
            if r.returncode != 0:
                continue
            data = recon_data(rd)
            if ref is None:
                ref = data
                check_tables(rd, f"{inputs} n=1")
                man = Q.manifest(rd, "recon")
                check(len(man.get("outputs", [])) == NL, f"{inputs}: manifest outputs {man.get('outputs')}")
                r2 = qs(n, "run", cfg, "--set", "eval.tokens=", "--resume")
                check(r2.returncode == 0 and recon_data(rd) == ref, f"{inputs}: --resume rerun")
            else:
                diff = [k for k in ref if data.get(k) != ref[k]]
                check(not diff, f"{inputs}: datasets at {n} ranks differ from 1 rank: {diff[:4]}")
        refs[inputs] = ref
    # (2) layer 0 equal in both modes
    if refs.get("float") and refs.get("quantized"):
        k0 = [k for k in refs["float"] if k[0] == 0 and k[1] != "attrs"]
        diff = [k for k in k0 if refs["float"][k] != refs["quantized"].get(k)]
        check(not diff, f"layer 0 quantized-mode != float-mode: {diff[:4]}")
        k1 = [k for k in refs["float"] if k[0] == 1 and k[1] == "table/error"]
        check(refs["float"][k1[0]] != refs["quantized"][k1[0]], "layer 1 should differ between modes")
    # (3) kill / resume at another rank count
    for inputs, n1, n2 in (("quantized", 2, 3), ("float", 1, 2)):
        rd = os.path.join(tmp, f"kill_{inputs}")
        cfg = os.path.join(tmp, f"kill_{inputs}.yaml")
        write_config(cfg, model, rd, inputs)
        r = qs(n1, "run", cfg, "--set", "eval.tokens=", env={"QS_TEST_STOP_AFTER_LAYERS": "1"})
        check(r.returncode == 3, f"kill {inputs}: rc {r.returncode} {r.stderr}")
        have = [l for l in range(NL) if os.path.exists(Q.layer_path(rd, "recon", l))]
        check(0 < len(have) < NL and not os.path.exists(os.path.join(rd, "recon", "manifest.json")),
              f"kill {inputs}: layer files {have}")
        r = qs(n2, "run", cfg, "--set", "eval.tokens=", "--resume")
        check(r.returncode == 0, f"resume {inputs}: rc {r.returncode} {r.stderr}")
        if r.returncode == 0 and refs.get(inputs):
            diff = [k for k in refs[inputs] if recon_data(rd).get(k) != refs[inputs][k]]
            check(not diff, f"resume {inputs} {n1}->{n2}: differs {diff[:4]}")
    # (4) eval of a candidate: (reconstruct ranks, eval ranks) -> (ppl, nll_sum)
    cfg = os.path.join(tmp, "quantized1.yaml")
    ppl = {}
    for rn, n in ((1, 1), (1, 3), (2, 2)):
        r = qs(n, "eval", os.path.join(tmp, f"quantized{rn}.yaml"), "--weights", "recon:w4g32")
        check(r.returncode == 0, f"eval of quantized{rn} n={n}: {r.stderr}")
        if r.returncode == 0:
            ev = Q.eval_json(os.path.join(tmp, f"quantized{rn}"))
            check(ev["weights"] == "recon:w4g32", f"eval.json weights {ev['weights']}")
            ppl[n] = (ev["ppl"], ev["nll_sum"])
    print(f"recon:w4g32 (ppl, nll_sum) by eval ranks (reconstructed at 1 rank: eval at 1, 3; "
          f"at 2 ranks: eval at 2): {ppl}")
    check(len(ppl) == 3 and ppl[1] == ppl[3] == ppl[2], f"eval recon ppl differs over ranks: {ppl}")
    r = qs(1, "eval", cfg)
    if r.returncode == 0 and 1 in ppl:
        fl = Q.eval_json(os.path.join(tmp, "quantized1"))["ppl"]
        check(fl != ppl[1][0] and abs(fl - ppl[1][0]) / fl < 0.5, f"float {fl} vs recon {ppl[1][0]}")
    for bad in ("recon:w9g32", "recon:x", "recon:w4g64", "int4"):
        r = qs(2, "eval", cfg, "--weights", bad)
        check(Q.one_error(r), f"--weights {bad}: rc {r.returncode}, stderr {r.stderr!r}")


with Q.tempdir("qs_recon_") as d:
    main(d)
Q.finish()
