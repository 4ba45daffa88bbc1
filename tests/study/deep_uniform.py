#!/usr/bin/python3
"""deep_uniform.py: the uniform baselines of the deep model (tests/data/make_deep_model.py) for
the mixed-precision study (docs/model.md, "A deeper trained model for studies"). Not run by
CTest (the model is generated; ~10 min per candidate on 2 ranks).

For every candidate wBgG (default w2g128 w3g128 w4g128 w3g64 w3g32): `qshard run` on the model
with that single candidate (GPTQ asymmetric, act_order off, damp 0.01, reconstruct.inputs
quantized, calibration on the 128 x 256-token windows of calib_offsets_128x256.txt of
calib.u32), then `qshard eval --weights gptq` on the written GPTQ export over all of eval.u32 in
256-token windows, as tests/mpi/test_pipeline_fixture.py does for tinyllama-a. Prints a table:
candidate, total bytes (search/summary.json: the whole written model, quantized linears with
their scales and zeros plus the unquantized tensors), bits per quantized weight (its bpw,
overhead included), perplexity, gap to the float perplexity of reference.json; writes OUT/uniform.md (the table) and OUT/uniform.json, and keeps each run
directory OUT/<candidate>/ (re-used when its eval.json exists and --fresh is not given).

Usage: deep_uniform.py --model DIR --out DIR [--cands w2g128,w3g128] [--ranks N] [--fresh]
  [--fixtures DIR] [--build DIR]   (env as tests/study/deep_check.py)"""
import argparse
import json
import os
import re
import shutil
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.dirname(HERE))

CANDS = "w2g128,w3g128,w4g128,w3g64,w3g32"


def parse_args():
    shared = os.environ.get("QS_SHARED_DIR") or os.path.join(REPO, "..", "shared")
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--cands", default=CANDS)
    ap.add_argument("--ranks", type=int, default=2)
    ap.add_argument("--fresh", action="store_true")
    ap.add_argument("--fixtures", default=os.path.join(shared, "fixtures"))
    ap.add_argument("--build", default=os.path.join(REPO, "build"))
    return ap.parse_args()


args = parse_args()
os.environ.setdefault("QS_BIN", os.path.join(os.path.abspath(args.build), "qshard"))
os.environ.setdefault("OMPI_ALLOW_RUN_AS_ROOT", "1")
os.environ.setdefault("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
import qstest as Q  # noqa: E402
from qstest import check  # noqa: E402


def need(path, what):
    if not os.path.exists(path):
        print(f"deep_uniform: {path}: {what} missing", file=sys.stderr)
        sys.exit(2)


def run_one(model, fx, out, cand):
    """{"cand", "total", "bpw", "ppl", "seconds"} of one uniform candidate, or None."""
    m = re.fullmatch(r"w(\d+)g(\d+)", cand)
    if not m:
        print(f"deep_uniform: --cands: {cand}: not wBgG", file=sys.stderr)
        sys.exit(2)
    rd = os.path.join(out, cand)
    if not args.fresh and os.path.exists(os.path.join(rd, "eval.json")):
        res = Q.read_json(os.path.join(rd, "deep_uniform.json"))
        print(f"{cand}: re-using {rd}")
        return res
    shutil.rmtree(rd, ignore_errors=True)
    cfg = Q.write_config(os.path.join(out, cand + ".yaml"), model, rd,
                         calib={"tokens": f"{fx}/tokens/calib.u32", "nsamples": 128,
                                "seqlen": 256, "sampling": "file",
                                "offsets_file": f"{fx}/tokens/calib_offsets_128x256.txt"},
                         quant={"method": "gptq", "bits": [int(m[1])],
                                "group_size": [int(m[2])], "sym": False, "act_order": False,
                                "damp": 0.01},
                         reconstruct={"inputs": "quantized"},
                         eval={"tokens": f"{fx}/tokens/eval.u32", "seqlen": 256})
    t0 = time.time()
    r = Q.qs(args.ranks, "run", cfg, "--set", "eval.tokens=", timeout=7200)
    if not check(r.returncode == 0, f"run {cand}: {r.stderr.strip()}"):
        return None
    r = Q.qs(args.ranks, "eval", cfg, "--weights", "gptq", timeout=3600)
    if not check(r.returncode == 0, f"eval {cand}: {r.stderr.strip()}"):
        return None
    ev = Q.eval_json(rd)
    sm = Q.read_json(os.path.join(rd, "search", "summary.json"))
    res = {"cand": cand, "total": sm["total_bytes"], "bpw": sm["bpw"], "ppl": ev["ppl"],
           "windows": ev["windows"], "seconds": round(time.time() - t0, 1)}
    with open(os.path.join(rd, "deep_uniform.json"), "w") as f:
        json.dump(res, f, indent=1)
    return res


def main(model, fx, out):
    need(os.path.join(model, "reference.json"), "deep model (make deep-model)")
    need(os.path.join(fx, "tokens", "calib_offsets_128x256.txt"), "fixtures (--fixtures DIR)")
    need(os.environ["QS_BIN"], "qshard build")
    os.makedirs(out, exist_ok=True)
    fp = Q.read_json(os.path.join(model, "reference.json"))["eval_ppl"]
    rows = []
    for cand in args.cands.split(","):
        res = run_one(model, fx, out, cand)
        if res is not None:
            rows.append(res)
            print(f"{cand}: ppl {res['ppl']:.4f} ({res['seconds']:.0f} s)", flush=True)
    lines = [f"float (transformers, reference.json): ppl {fp:.4f}", "",
             "| candidate | total bytes | bpw | ppl | ppl - float |",
             "|---|---:|---:|---:|---:|"]
    lines += [f"| {r['cand']} | {r['total']} | {r['bpw']:.4f} | {r['ppl']:.4f} | "
              f"{r['ppl'] - fp:.4f} |" for r in rows]
    text = "\n".join(lines) + "\n"
    print(text, end="")
    with open(os.path.join(out, "uniform.md"), "w") as f:
        f.write(text)
    with open(os.path.join(out, "uniform.json"), "w") as f:
        json.dump({"float_ppl": fp, "rows": rows}, f, indent=1)


main(os.path.abspath(args.model), os.path.abspath(args.fixtures), os.path.abspath(args.out))
Q.finish()
