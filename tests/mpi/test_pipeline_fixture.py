#!/usr/bin/python3
"""test_pipeline_fixture.py (label shared): issue 12's acceptance on the real fixture
tinyllama-a, through the whole pipeline (plan -> calibrate -> reconstruct -> search ->
reconstruct-final -> write -> eval) with reconstruct.inputs: quantized, asymmetric GPTQ,
damp 0.01, calibration on the 128 x 256-token windows of calib_offsets_128x256.txt.

For B in (3, 4): the uniform twin (the single candidate wBg128) and the mixed allocation
over {2,3,4,8} bits x {32,128} groups with search.max_bytes = the twin's total bytes (its
measure pass propagates wBg128, as the twin does). The perplexity of each is measured by
`qshard eval --weights gptq` on the written GPTQ export (all of eval.u32 in 256-token
windows). Checks: mixed total bytes <= the twin's; at 3 bits the mixed perplexity is strictly
lower, at 4 bits not higher; each export passes `qshard verify`.
Prints a table (docs/search.md records it).
Usage: test_pipeline_fixture.py  (env: QS_BIN, QS_MPIEXEC, QS_SHARED_DIR, QS_REQUIRE_SHARED)"""
import json
import os
import subprocess
import sys
import tempfile

QS = os.environ["QS_BIN"]
MPIEXEC = os.environ.get("QS_MPIEXEC", "mpiexec").split()
SHARED = os.environ.get("QS_SHARED_DIR", "")
RANKS = 2
failures = []


def check(cond, msg):
    if not cond:
        failures.append(msg)
        print("FAIL:", msg, file=sys.stderr)


def qs(n, *args):
    return subprocess.run(MPIEXEC + ["-n", str(n), QS, *args, "--quiet"], capture_output=True,
                          text=True, timeout=1800)


def write_config(path, fx, rd, bits, groups, extra):
    with open(path, "w") as f:
        f.write(f"model: {fx}/tinyllama-a\nrun_dir: {rd}\n"
                f"calib:\n  tokens: {fx}/tokens/calib.u32\n  nsamples: 128\n"
                f"  seqlen: 256\n  sampling: file\n"
                f"  offsets_file: {fx}/tokens/calib_offsets_128x256.txt\n"
                f"quant:\n  method: gptq\n  bits: {bits}\n  group_size: {groups}\n"
                f"  sym: false\n  act_order: false\n  damp: 0.01\n"
                f"{extra}"
                f"eval:\n  tokens: {fx}/tokens/eval.u32\n  seqlen: 256\n")


def run_one(tmp, fx, name, bits, groups, extra):
    rd = os.path.join(tmp, name)
    cfg = os.path.join(tmp, name + ".yaml")
    write_config(cfg, fx, rd, bits, groups, extra)
    r = qs(RANKS, "run", cfg, "--set", "eval.tokens=")
    check(r.returncode == 0, f"run {name}: {r.stderr.strip()}")
    if r.returncode != 0:
        return None
    r = qs(RANKS, "eval", cfg, "--weights", "gptq")
    check(r.returncode == 0, f"eval {name}: {r.stderr.strip()}")
    if r.returncode != 0:
        return None
    v = subprocess.run([QS, "verify", rd], capture_output=True, text=True)
    check(v.returncode == 0, f"verify {name}: {v.stderr.strip()}")
    ev = json.load(open(os.path.join(rd, "eval.json")))
    sm = json.load(open(os.path.join(rd, "search", "summary.json")))
    al = json.load(open(os.path.join(rd, "search", "allocation.json")))
    return {"ppl": ev["ppl"], "total": sm["total_bytes"], "payload": sm["payload_bytes"],
            "bpw": sm["bpw"], "vllm": sm.get("engines", ""), "layers": al["layers"]}


def main():
    fx = os.path.join(SHARED, "fixtures")
    if not SHARED or not os.path.isdir(fx):
        if os.environ.get("QS_REQUIRE_SHARED") == "1":
            print("FAIL: shared fixtures missing", file=sys.stderr)
            sys.exit(1)
        print("skip: no shared fixtures")
        sys.exit(77)
    tmp = tempfile.mkdtemp(prefix="qs_pipe_fx_")
    rows = []
    for b in (3, 4):
        u = run_one(tmp, fx, f"uniform{b}", f"[{b}]", "[128]",
                    "reconstruct:\n  inputs: quantized\n")
        if u is None:
            continue
        m = run_one(tmp, fx, f"mixed{b}", "[2, 3, 4, 8]", "[32, 128]",
                    f"reconstruct:\n  inputs: quantized\n  propagate: w{b}g128\n"
                    f"search:\n  max_bytes: {u['total']}\n")
        if m is None:
            continue
        rows.append((b, u, m))
        check(m["total"] <= u["total"], f"w{b}: mixed {m['total']} B > uniform {u['total']} B")
        if b == 3:
            check(m["ppl"] < u["ppl"], f"w3: mixed ppl {m['ppl']} not below uniform {u['ppl']}")
        else:
            check(m["ppl"] <= u["ppl"], f"w4: mixed ppl {m['ppl']} above uniform {u['ppl']}")
    print("| budget | allocation | total bytes | bpw | perplexity (GPTQ export) | engines of the GPTQ export |")
    print("|---|---|---|---|---|---|")
    for b, u, m in rows:
        print(f"| w{b}g128 size | uniform w{b}g128 | {u['total']} | {u['bpw']:.4f} | "
              f"{u['ppl']:.4f} | {u['vllm']} |")
        print(f"| w{b}g128 size | mixed | {m['total']} | {m['bpw']:.4f} | {m['ppl']:.4f} | "
              f"{m['vllm']} |")
    for b, u, m in rows:
        print(f"mixed w{b} allocation (q,k,v,o,gate,up,down per layer):")
        for l, row in enumerate(m["layers"]):
            print(f"  layer {l}: {' '.join(row)}")
    check(len(rows) == 2, "not every run finished")


if __name__ == "__main__":
    main()
    if failures:
        print(f"{len(failures)} failure(s)", file=sys.stderr)
        sys.exit(1)
    print("ok")
