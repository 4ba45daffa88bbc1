#!/usr/bin/python3
"""test_recon_fixture.py (label shared): sequential GPTQ (reconstruct.inputs: quantized) on
the real fixture tinyllama-a against the torch reference of ../shared/fixtures: calibration on
the 128 windows x 256 tokens of calib_offsets_128x256.txt, asymmetric, no act-order, damp 0.01,
perplexity on all of eval.u32 in 256-token windows. Reconstruct runs on 2 ranks, eval on 2.
GPTQ runs once per width; RTN (independent of the calibration data) once for both widths on
16 windows.
Checks: every perplexity at most 0.3% above the reference, GPTQ below RTN at 4 and 3 bits,
and the mean over (layer, linear) of error / RTN error under the same Hessian <= 0.56.
Usage: test_recon_fixture.py  (env: QS_BIN, QS_MPIEXEC, QS_SHARED_DIR, QS_REQUIRE_SHARED)"""
import os
import sys

import h5py
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import qstest as Q  # noqa: E402
from qstest import check  # noqa: E402

REF = {("rtn", 4): 4.6493, ("gptq", 4): 4.6251, ("rtn", 3): 5.0105, ("gptq", 3): 4.8197}
FP = 4.5833


def qs(n, *args):
    return Q.qs(n, *args, timeout=900)


def run(fx, tmp, method, bits, nsamples):
    """One run of `method` with candidates wBg128 for B in bits; returns its run directory
    (None when it failed). objective error: nothing to probe (the test reads recon/)."""
    name = f"{method}{''.join(map(str, bits))}"
    rd = os.path.join(tmp, name)
    cfg = Q.write_config(
        os.path.join(tmp, f"{name}.yaml"), f"{fx}/tinyllama-a", rd,
        calib={"tokens": f"{fx}/tokens/calib.u32", "nsamples": nsamples, "seqlen": 256,
               "sampling": "file",
               "offsets_file": f"{fx}/tokens/calib_offsets_128x256.txt"},
        quant={"method": method, "bits": bits, "group_size": [128], "sym": False,
               "act_order": False, "damp": 0.01},
        reconstruct={"inputs": "quantized", "rtn_baseline": True},
        search={"objective": "error", "max_bytes": "1TB"},  # every candidate fits
        eval={"tokens": f"{fx}/tokens/eval.u32", "seqlen": 256})
    r = qs(2, "run", cfg, "--set", "eval.tokens=")
    check(r.returncode == 0, f"run {name}: {r.stderr}")
    return (rd, cfg) if r.returncode == 0 else (None, cfg)


def main(fx, tmp):
    ppl, ratio = {}, {}
    # GPTQ: one run per width (layer l's Hessian sees the quantized layers before it at that
    # width, as the reference's sequential GPTQ). RTN does not depend on the calibration data:
    # one run with both widths on the first 16 windows gives the same RTN weights.
    runs = [("gptq", 4, run(fx, tmp, "gptq", [4], 128)), ("gptq", 3, run(fx, tmp, "gptq", [3], 128))]
    rtn = run(fx, tmp, "rtn", [3, 4], 16)
    runs += [("rtn", 4, rtn), ("rtn", 3, rtn)]
    for method, bits, (rd, cfg) in runs:
        if rd is None:
            continue
        r = qs(2, "eval", cfg, "--weights", f"recon:w{bits}g128")
        check(r.returncode == 0, f"eval {method} w{bits}: {r.stderr}")
        if r.returncode != 0:
            continue
        p = Q.eval_json(rd)["ppl"]
        ppl[(method, bits)] = p
        rs = []
        for l in range(4):
            with h5py.File(Q.layer_path(rd, "recon", l), "r") as f:
                t = f["table"]
                col = list(t["bits"][:]).index(bits)  # the candidate's column
                rs += list(t["error"][:, col] / t["error_rtn"][:, col])
        ratio[(method, bits)] = float(np.mean(rs))
        ref = REF[(method, bits)]
        print(f"{method} w{bits}g128: ppl {p:.4f} (reference {ref:.4f}, "
              f"{100 * (p / ref - 1):+.3f}%), mean error ratio vs RTN {ratio[(method, bits)]:.4f}")
        check(p <= ref * 1.003, f"{method} w{bits}: ppl {p:.5f} > reference {ref} + 0.3%")
        check(p > FP, f"{method} w{bits}: ppl {p} not above float {FP}")
    for bits in (4, 3):
        if ("gptq", bits) in ppl and ("rtn", bits) in ppl:
            check(ppl[("gptq", bits)] < ppl[("rtn", bits)], f"w{bits}: GPTQ not below RTN")
            check(ratio[("gptq", bits)] <= 0.56, f"w{bits}: error ratio {ratio[('gptq', bits)]}")
            check(abs(ratio[("rtn", bits)] - 1.0) < 1e-12, f"w{bits}: RTN ratio must be 1")
    check(len(ppl) == 4, "not every run finished")


fixtures = Q.need_shared("fixtures")
with Q.tempdir("qs_recon_fx_") as d:
    main(fixtures, d)
Q.finish()
