#!/usr/bin/python3
"""gguf_study.py: the numbers of docs/export.md "GGUF" (issue 18) on tinyllama-a.

Every number is the perplexity of a written run/gguf/model.gguf, evaluated by qshard from
that file (the eval stage with search.serve llamacpp reads the GGUF back: llama.cpp's
dequantization bit for bit, checked by test_gguf_pipeline), on all of eval.u32 in 256-token
windows (the fixtures' protocol), calibration: calib.u32 at the 128 x 256 offsets file,
one rank.

  1. GPTQ-into-GGUF against llama.cpp's quantizer on the same type (Q4_0, Q4_K, Q3_K, Q2_K),
     uniform: quant.method gptq (chooser search, sequential inputs) vs rtn with gguf_chooser
     imatrix (what llama-quantize --imatrix writes; importance = diag(H) of the same
     calibration on the float model, as llama.cpp's imatrix tool measures it) and rtn with
     gguf_chooser ref (llama-quantize without an imatrix). Same type, same bytes.
  2. search.serve llamacpp with a budget between two uniform types (--bpw, default 3.5 bits
     per quantized weight, between Q3_K's 3.4375 and Q4_K's 4.5): the mixed GGUF's
     perplexity and bytes (candidates Q2_K Q3_K Q4_K Q5_K Q6_K Q4_0 Q8_0, GPTQ, sequential,
     objective sensitivity), against the best uniform GGUF that fits (from 1).

Usage: gguf_study.py [--out DIR] [--bpw 3.5] [--types Q4_0,Q4_K,Q3_K,Q2_K]
       [--methods gptq,imatrix,ref] [--max-windows 0] [--probe-windows 8]
Prints a Markdown table and writes OUT_DIR/gguf_study.md and .json. Runs are resumed
(`qshard run --resume`), so a stopped study continues. About 3 minutes per run on one core.
Env: QS_BIN (qshard), QS_MPIEXEC, QS_SHARED_DIR (default ../shared of the repository)."""
import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
import qstest as Q  # noqa: E402

METHODS = {"gptq": {"method": "gptq", "gguf_chooser": "search"},
           "imatrix": {"method": "rtn", "gguf_chooser": "imatrix"},
           "ref": {"method": "rtn", "gguf_chooser": "ref"}}
# GPTQ: sequential (each layer calibrated on the quantized layers before it); RTN: float
# inputs, so its importance diag(H) comes from the unquantized model's activations, as
# llama.cpp's imatrix tool computes it
INPUTS = {"gptq": "quantized", "imatrix": "float", "ref": "float"}
LABEL = {"gptq": "GPTQ into the block grid (qshard)",
         "imatrix": "llama.cpp RTN, imatrix = diag(H)",
         "ref": "llama.cpp RTN, no imatrix"}
MIXED_TYPES = ["Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "Q4_0", "Q8_0"]


def run(cfg):
    r = Q.qs(1, "run", cfg, "--resume", timeout=None)
    if r.returncode != 0:
        sys.exit(f"qshard run {cfg}: exit {r.returncode}\n{r.stderr[-3000:]}")


def config(path, fx, rd, quant, search, inputs, max_windows):
    Q.write_config(path, f"{fx}/tinyllama-a", rd,
                   calib={"tokens": f"{fx}/tokens/calib.u32", "nsamples": 128, "seqlen": 256,
                          "sampling": "file",
                          "offsets_file": f"{fx}/tokens/calib_offsets_128x256.txt"},
                   quant=dict({"damp": 0.01}, **quant),
                   reconstruct={"inputs": inputs},
                   search=dict({"serve": "llamacpp"}, **search),
                   output={"formats": ["gguf"],
                           "gguf_tokenizer": f"{fx}/tokenizer/tok512.model"},
                   eval={"tokens": f"{fx}/tokens/eval.u32", "seqlen": 256,
                         "max_windows": max_windows, "float": False})
    return path


def result(rd):
    ev = Q.eval_json(rd)
    al = Q.read_json(os.path.join(rd, "search", "allocation.json"))
    return {"ppl": ev["ppl"], "windows": ev["windows"], "weights": ev["weights"],
            "gguf_bytes": os.path.getsize(os.path.join(rd, "gguf", "model.gguf")),
            "payload_bytes": al["payload_bytes"], "total_bytes": al["total_bytes"],
            "budget_bytes": al["budget_bytes"], "bpw": al["bpw"],
            "types": sorted({c for row in al["layers"] for c in row})}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="/tmp/qs-gguf-study")
    ap.add_argument("--bpw", type=float, default=3.5)
    ap.add_argument("--types", default="Q4_0,Q4_K,Q3_K,Q2_K")
    ap.add_argument("--methods", default="gptq,imatrix,ref")
    ap.add_argument("--max-windows", type=int, default=0)
    ap.add_argument("--probe-windows", type=int, default=8,
                    help="search.probe_windows of the mixed run (8 = the default)")
    ap.add_argument("--mixed-types", default=",".join(MIXED_TYPES),
                    help="the mixed run's candidates")
    ap.add_argument("--objective", default="sensitivity", help="the mixed run's objective")
    a = ap.parse_args()
    shared = os.environ.get("QS_SHARED_DIR") or os.path.join(Q.SRC, "..", "shared")
    fx = os.path.join(shared, "fixtures")
    if not os.path.isdir(os.path.join(fx, "tinyllama-a")):
        sys.exit(f"no fixtures at {fx}")
    os.makedirs(a.out, exist_ok=True)
    res = {}
    for t in a.types.split(","):
        for m in a.methods.split(","):
            name = f"{t}-{m}"
            rd = os.path.join(a.out, name)
            cfg = config(os.path.join(a.out, name + ".yaml"), fx, rd,
                         dict({"gguf_types": [t]}, **METHODS[m]),
                         {"max_bytes": "1GB", "objective": "error"}, INPUTS[m], a.max_windows)
            run(cfg)
            res[name] = result(rd)
            print(f"{name}: ppl {res[name]['ppl']:.6f}, {res[name]['gguf_bytes']} bytes",
                  flush=True)
    mixed = a.mixed_types.split(",")
    name = f"mixed-{a.bpw}" + ("" if a.probe_windows == 8 else f"-pw{a.probe_windows}") + \
        ("" if mixed == MIXED_TYPES else "-" + "-".join(mixed)) + \
        ("" if a.objective == "sensitivity" else "-" + a.objective)
    rd = os.path.join(a.out, name)
    cfg = config(os.path.join(a.out, name + ".yaml"), fx, rd,
                 {"gguf_types": mixed, "method": "gptq"},
                 {"target_bpw": a.bpw, "probe_windows": a.probe_windows,
                  "objective": a.objective}, "quantized", a.max_windows)
    run(cfg)
    res[name] = result(rd)
    print(f"{name}: ppl {res[name]['ppl']:.6f}, {res[name]['gguf_bytes']} bytes", flush=True)

    lines = ["| type | method | perplexity | GGUF file bytes | linear bytes (bpw) |",
             "|---|---|---:|---:|---:|"]
    for t in a.types.split(","):
        for m in a.methods.split(","):
            r = res[f"{t}-{m}"]
            lines.append(f"| {t} | {LABEL[m]} | {r['ppl']:.4f} | {r['gguf_bytes']:,} | "
                         f"{r['payload_bytes']:,} ({r['bpw']:.4f}) |")
    r = res[name]
    fits = [(res[k]["ppl"], k) for k in res
            if k.endswith("-gptq") and res[k]["bpw"] <= a.bpw]
    lines += ["", "| allocation | perplexity | GGUF file bytes | linear bytes (bpw) | budget |",
              "|---|---:|---:|---:|---:|",
              f"| mixed at {a.bpw} bpw (GPTQ; candidates {'/'.join(mixed)}; objective "
              f"{a.objective}" + (f" on {a.probe_windows} probe windows" if a.objective ==
                                  "sensitivity" else "") + f"; used {'/'.join(r['types'])}) | "
              f"{r['ppl']:.4f} | "
              f"{r['gguf_bytes']:,} | {r['payload_bytes']:,} ({r['bpw']:.4f}) | "
              f"{r['budget_bytes']:,} |"]
    if fits:
        k = min(fits)[1]
        u = res[k]
        lines.append(f"| best uniform that fits: {k.split('-')[0]} (GPTQ) | {u['ppl']:.4f} | "
                     f"{u['gguf_bytes']:,} | {u['payload_bytes']:,} ({u['bpw']:.4f}) | |")
    table = "\n".join(lines)
    print(table)
    with open(os.path.join(a.out, "gguf_study.md"), "w") as f:
        f.write(table + "\n")
    with open(os.path.join(a.out, "gguf_study.json"), "w") as f:
        json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
