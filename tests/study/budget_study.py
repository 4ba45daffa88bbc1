#!/usr/bin/python3
"""budget_study.py: mixed precision against the best uniform model that fits, at budgets
between the uniform points (issue 19, docs/search.md "Mixed vs uniform between the uniform
sizes").

For a base config (candidates, calibration, quantizer, reconstruct mode, objective):
1. the float model's perplexity (`qshard eval --weights float`);
2. one uniform run per candidate (quant.bits / quant.group_size reduced to it, no budget):
   its exact payload bpw (search/allocation.json) and the perplexity of its written export
   (the eval stage's eval.json);
3. one mixed run per budget (search.target_bpw = B, every candidate; `--objective` and
   `--refine` as given): payload bpw and the perplexity of its written export;
then per budget the best uniform model whose payload fits (lowest perplexity among those at
or under B) and the share of that uniform model's quantization gap (ppl - float ppl) the
mixed model closes. Budgets equal to a uniform size are allowed (--uniform-sizes adds every
uniform candidate's exact bpw): there mixed must not be worse. Prints a Markdown table and
writes it with a CSV to OUT/.

Usage:
  budget_study.py --config BASE.yaml --out DIR [--budgets 2.5,2.75,3,3.5,4,4.5]
                  [--uniform-sizes] [--uniform w4g128,w4g32] [--objective kl] [--refine N]
                  [--ranks 2] [--eval-windows K] [--fixtures DIR]
--uniform runs only the named uniform candidates (the others are larger than every budget,
so none of them can be the best uniform model that fits); default: every candidate.
Runs already complete in OUT are reused (`qshard run --resume`). Env: QS_BIN, QS_MPIEXEC."""
import argparse
import json
import math
import os
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import qstest as Q  # noqa: E402

FIXTURE_FILES = {"model": "tinyllama-a", "calib.tokens": "tokens/calib.u32",
                 "calib.offsets_file": "tokens/calib_offsets_128x256.txt",
                 "eval.tokens": "tokens/eval.u32"}


def qs(ranks, *args):
    r = Q.qs(ranks, *args, timeout=None)
    if r.returncode != 0:
        sys.exit(f"budget_study: qshard {' '.join(args)}: exit {r.returncode}: {r.stderr.strip()[-600:]}")
    return r


def yaml_list(config, key):
    """The flow list `key: [a, b]` under quant: in the base config (plain text)."""
    m = re.search(rf"^\s+{key}:\s*\[([^\]]*)\]", open(config).read(), re.M)
    if not m:
        sys.exit(f"{config}: quant.{key} must be a flow list like [2, 3, 4]")
    return [int(v) for v in m.group(1).split(",") if v.strip()]


def seed_kl_cache(run_dir, siblings):
    """A new mixed run starts with the newest sibling's search/kl.json: the search uses it
    only where its key matches (same recon results, windows and choices: in quantized mode
    budgets with the same propagate candidate), and measures afresh otherwise."""
    have = [p for p in (os.path.join(d, "search", "kl.json") for d in siblings) if os.path.exists(p)]
    if have and not os.path.exists(run_dir):
        os.makedirs(os.path.join(run_dir, "search"))
        src = max(have, key=os.path.getmtime)
        with open(src, "rb") as f, open(os.path.join(run_dir, "search", "kl.json"), "wb") as g:
            g.write(f.read())


def run(ranks, config, sets, run_dir, extra):
    args = ["run", config, *sets, "--set", f"run_dir={run_dir}", *extra]
    if os.path.exists(os.path.join(run_dir, "run.json")):
        args.append("--resume")
    qs(ranks, *args)
    al = Q.read_json(os.path.join(run_dir, "search", "allocation.json"))
    ev = Q.read_json(os.path.join(run_dir, "eval.json"))
    return {"bpw": al["bpw"], "payload": al["payload_bytes"], "total": al["total_bytes"],
            "ppl": ev["ppl"], "windows": ev["windows"], "layers": al["layers"]}


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--budgets", default="2.5,2.75,3,3.5,4,4.5")
    ap.add_argument("--uniform-sizes", action="store_true")
    ap.add_argument("--uniform", default="")
    ap.add_argument("--objective", default="kl")
    ap.add_argument("--refine", type=int, default=0)
    ap.add_argument("--refine-windows", type=int, default=0)
    ap.add_argument("--ranks", type=int, default=2)
    ap.add_argument("--eval-windows", type=int, default=0)
    ap.add_argument("--fixtures")
    a = ap.parse_args()
    out = os.path.abspath(a.out)
    os.makedirs(out, exist_ok=True)
    sets = []
    if a.fixtures:
        for key, rel in FIXTURE_FILES.items():
            sets += ["--set", f"{key}={os.path.join(os.path.abspath(a.fixtures), rel)}"]
    if a.eval_windows > 0:
        sets += ["--set", f"eval.max_windows={a.eval_windows}"]
    bits, groups = yaml_list(a.config, "bits"), yaml_list(a.config, "group_size")
    # 1. float
    fdir = os.path.join(out, "float")
    qs(a.ranks, "eval", a.config, *sets, "--set", f"run_dir={fdir}", "--weights", "float")
    fl = Q.read_json(os.path.join(fdir, "eval.json"))["ppl"]
    # 2. uniform
    uni = {}
    for b in bits:
        for g in groups:
            name = f"w{b}g{g}"
            if a.uniform and name not in a.uniform.split(","):
                continue
            uni[name] = run(a.ranks, a.config, sets, os.path.join(out, f"uniform-{name}"),
                            ["--set", f"quant.bits=[{b}]", "--set", f"quant.group_size=[{g}]",
                             "--set", "search.target_bpw=0", "--set", "search.refine=0",
                             "--set", "search.refine_windows=0"])
            print(f"uniform {name}: bpw {uni[name]['bpw']:.4f} ppl {uni[name]['ppl']:.4f}",
                  file=sys.stderr)
    # 3. mixed
    budgets = [float(x) for x in a.budgets.split(",") if x]
    if a.uniform_sizes:
        budgets += [u["bpw"] for u in uni.values()]
    budgets = sorted(set(budgets))
    rows = []
    for B in budgets:
        fits = [(u["ppl"], n) for n, u in uni.items() if u["bpw"] <= B + 1e-12]
        if not fits:
            print(f"budget {B}: no uniform candidate fits, skipped", file=sys.stderr)
            continue
        up, un = min(fits)
        tag = f"mixed-{B:.6g}-{a.objective}" + (f"-refine{a.refine}" if a.refine else "")
        seed_kl_cache(os.path.join(out, tag), [os.path.join(out, d) for d in os.listdir(out)
                                               if d.startswith("mixed-")])
        m = run(a.ranks, a.config, sets, os.path.join(out, tag),
                ["--set", f"search.target_bpw={B!r}", "--set", f"search.objective={a.objective}",
                 "--set", f"search.refine={a.refine}",
                 "--set", f"search.refine_windows={a.refine_windows}"])
        gap = up - fl
        closed = (up - m["ppl"]) / gap if gap > 0 else float("nan")
        rows.append((B, un, uni[un]["bpw"], up, m["bpw"], m["ppl"], closed))
        print(f"budget {B:.4f}: uniform {un} {up:.4f}, mixed {m['bpw']:.4f} {m['ppl']:.4f} "
              f"({100 * closed:.1f}% of the gap)", file=sys.stderr)
    wins = {r[0]: r for r in rows}
    lines = [f"Float ppl {fl:.4f}; objective {a.objective}"
             + (f", search.refine {a.refine}" if a.refine else "")
             + f"; perplexity of each written export on {next(iter(uni.values()))['windows']} "
             "windows.", "",
             "| budget (bpw) | best uniform that fits | its bpw | its ppl | mixed bpw | mixed ppl "
             "| gap closed |", "|---:|---|---:|---:|---:|---:|---:|"]
    for B, un, ub, up, mb, mp, closed in rows:
        lines.append(f"| {B:.4f} | {un} | {ub:.4f} | {up:.4f} | {mb:.4f} | {mp:.4f} | "
                     f"{100 * closed:.1f}% |")
    text = "\n".join(lines) + "\n"
    tag = f"{a.objective}" + (f"-refine{a.refine}" if a.refine else "")
    with open(os.path.join(out, f"budget-{tag}.md"), "w") as f:
        f.write(text)
    with open(os.path.join(out, f"budget-{tag}.csv"), "w") as f:
        f.write("budget_bpw,uniform,uniform_bpw,uniform_ppl,mixed_bpw,mixed_ppl,gap_closed\n")
        for r in rows:
            f.write(",".join(str(x) for x in r) + "\n")
    print(text)
    bad = [r for r in wins.values() if not (r[5] <= r[3])]
    if bad:
        print(f"budget_study: mixed worse than uniform at {[r[0] for r in bad]}", file=sys.stderr)
    return 0 if math.isfinite(fl) else 1


if __name__ == "__main__":
    sys.exit(main())
