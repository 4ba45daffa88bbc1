#!/usr/bin/python3
"""recon_fixture.py: the table of docs/reconstruct.md "Results on the fixture" (tinyllama-a).

For each reconstruct.inputs mode (quantized = GPTQ's sequential mode, float = every layer on
calibrate's Hessians of the float model) and each width B in (4, 3): one run with the single
candidate wBg128 (GPTQ, asymmetric, no act-order, damp 0.01, calibration on the 128 x 256-token
windows of calib_offsets_128x256.txt, 2 ranks), then `qshard eval --weights recon:wBg128` on
all of eval.u32 in 256-token windows (751 windows). RTN does not use the Hessian: one RTN run
with both widths (16 windows) gives the RTN rows of both modes. Also the float perplexity
(`qshard eval --weights float`) and, per GPTQ run, the error ratio: the mean over (layer,
linear) of table/error / table/error_rtn (RTN's error under the same Hessian), and the
reconstruct stage's busy seconds per rank (timings.json).
The reference column is the torch sequential GPTQ of ../shared/fixtures (constants here, as in
tests/mpi/test_recon_fixture.py, which checks the quantized column against it in CTest).

Usage: recon_fixture.py [--out DIR] [--inputs quantized,float] [--bits 4,3] [--ranks 2]
                        [--nsamples 128] [--eval-windows 0]
  --nsamples / --eval-windows limit the calibration windows / evaluated windows (quick checks;
  the docs' numbers are at the defaults). Prints a Markdown table and writes it to
  OUT/recon_fixture.md. Runs are resumed (`qshard run --resume`).
Env: QS_BIN (qshard), QS_MPIEXEC, QS_SHARED_DIR (default ../shared of the repository)."""
import argparse
import os
import sys

import h5py
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import qstest as Q  # noqa: E402

REF = {("rtn", 4): 4.6493, ("gptq", 4): 4.6251, ("rtn", 3): 5.0105, ("gptq", 3): 4.8197,
       "fp": 4.5833, ("ratio", 4): 0.531, ("ratio", 3): 0.543}


def qs(ranks, *args):
    r = Q.qs(ranks, *args, timeout=None)
    if r.returncode != 0:
        sys.exit(f"recon_fixture: qshard {' '.join(args)}: exit {r.returncode}: {r.stderr.strip()}")
    return r


def config(a, fx, name, method, bits, inputs, nsamples):
    """Runs the pipeline for one table column entry; run directories are named by what they
    hold (method, widths, mode, windows), so several invocations can share --out."""
    name += "".join(map(str, bits)) + ("" if nsamples == 128 else f"-n{nsamples}")
    rd = os.path.join(a.out, name)
    cfg = Q.write_config(
        os.path.join(a.out, f"{name}.yaml"), f"{fx}/tinyllama-a", rd,
        calib={"tokens": f"{fx}/tokens/calib.u32", "nsamples": nsamples, "seqlen": 256,
               "sampling": "file", "offsets_file": f"{fx}/tokens/calib_offsets_128x256.txt"},
        quant={"method": method, "bits": bits, "group_size": [128], "sym": False,
               "act_order": False, "damp": 0.01},
        reconstruct={"inputs": inputs, "rtn_baseline": True},
        search={"objective": "error", "max_bytes": "1TB"},  # every candidate fits, no probes
        eval={"tokens": f"{fx}/tokens/eval.u32", "seqlen": 256, "max_windows": a.eval_windows})
    # the run without its eval stage: the table evaluates recon:<candidate> below
    qs(a.ranks, "run", cfg, "--resume", "--set", "eval.tokens=")
    return cfg, rd


def evaluate(a, cfg, rd, weights):
    qs(a.ranks, "eval", cfg, "--weights", weights)
    return Q.eval_json(rd)


def error_ratio(rd, bits):
    rs = []
    for l in range(4):
        with h5py.File(Q.layer_path(rd, "recon", l), "r") as f:
            t = f["table"]
            col = list(t["bits"][:]).index(bits)
            rs += list(t["error"][:, col] / t["error_rtn"][:, col])
    return float(np.mean(rs))


def busy(rd, stage="reconstruct"):
    tm = Q.read_json(os.path.join(rd, "timings.json"))
    for att in reversed(tm["attempts"]):
        for st in att["stages"]:
            if st["name"] == stage and st["status"] == "done":
                return [r["busy_s"] or 0.0 for r in st["ranks"]]
    return []


def table(a, res, fl):
    modes = a.inputs.split(",")
    head = "| | reference | " + " | ".join(
        f"qshard {m} inputs" + (" | Δ" if m == "quantized" else "") for m in modes) + " |"
    lines = [head, "|" + "---|" * (head.count("|") - 1),
             "| FP | 4.5833 | " + " | ".join(f"{fl:.4f}" + (" | " if m == "quantized" else "")
                                            for m in modes) + " |"]
    for b in a.bits:
        for method in ("rtn", "gptq"):
            ref = REF[(method, b)]
            cells = []
            for m in modes:
                p = res[(m, method, b)]["ppl"]
                cells.append(f"{p:.4f}" + (f" | {100 * (p / ref - 1):+.3f}%" if m == "quantized" else ""))
            lines.append(f"| {method.upper()} w{b}g128 | {ref:.4f} | " + " | ".join(cells) + " |")
    for b in a.bits:
        cells = [f"{res[(m, 'gptq', b)]['ratio']:.4f}" + (" | " if m == "quantized" else "")
                 for m in modes]
        lines.append(f"| error ratio w{b} | {REF[('ratio', b)]:.3f} | " + " | ".join(cells) + " |")
    return lines


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="/tmp/qs-recon-fixture")
    ap.add_argument("--inputs", default="quantized,float")
    ap.add_argument("--bits", default="4,3")
    ap.add_argument("--ranks", type=int, default=2)
    ap.add_argument("--nsamples", type=int, default=128)
    ap.add_argument("--eval-windows", type=int, default=0, help="0 = all of eval.u32")
    a = ap.parse_args()
    a.bits = [int(b) for b in a.bits.split(",")]
    a.out = os.path.abspath(a.out)
    shared = os.environ.get("QS_SHARED_DIR") or os.path.join(Q.SRC, "..", "shared")
    fx = os.path.join(shared, "fixtures")
    if not os.path.isdir(os.path.join(fx, "tinyllama-a")):
        sys.exit(f"recon_fixture: no fixtures at {fx} (set QS_SHARED_DIR)")
    os.makedirs(a.out, exist_ok=True)
    res, notes = {}, []
    # RTN: one run, both widths, 16 windows (RTN ignores the calibration data and the mode)
    cfg, rd = config(a, fx, "rtn", "rtn", a.bits, "quantized", min(16, a.nsamples))
    fl = evaluate(a, cfg, rd, "float")
    for b in a.bits:
        ev = evaluate(a, cfg, rd, f"recon:w{b}g128")
        for m in a.inputs.split(","):
            res[(m, "rtn", b)] = {"ppl": ev["ppl"]}
    for m in a.inputs.split(","):
        for b in a.bits:
            cfg, rd = config(a, fx, f"gptq-{m}-", "gptq", [b], m, a.nsamples)
            ev = evaluate(a, cfg, rd, f"recon:w{b}g128")
            res[(m, "gptq", b)] = {"ppl": ev["ppl"], "ratio": error_ratio(rd, b)}
            notes.append(f"gptq w{b}g128, {m} inputs: reconstruct busy s per rank "
                         f"{', '.join(f'{s:.2f}' for s in busy(rd))}; perplexity over "
                         f"{ev['windows']} windows, nll_sum {ev['nll_sum']:.10g}")
            print(notes[-1], file=sys.stderr, flush=True)
    text = "\n".join(table(a, res, fl["ppl"]) + [""] + notes) + "\n"
    with open(os.path.join(a.out, "recon_fixture.md"), "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
