#!/usr/bin/python3
"""objective_study.py: which search objective predicts perplexity best (issue 12, docs/search.md).

On a run whose config has reconstruct.inputs: float and search.objective: sensitivity (so the
run directory holds the recon tables, the sensitivity probes and the optimum of every
objective: search/optimum-{error,relative,sensitivity}.json) and its twin with objective kl
(RUN_DIR-kl: search/kl.json, optimum-kl.json, and with --refine N the refined allocation,
measured as one more row), draw N random feasible
allocations near the run's budget (seeded), predict each one's total under every objective
(the stage's formulas, from the recon tables and search/sensitivity.json), measure each
one's perplexity with `qshard eval --weights alloc:PATH`, and report per objective the
Spearman rank correlation between prediction and perplexity and the perplexity of the
objective's optimum, and its regret: the optimum's perplexity minus the lowest perplexity
measured among all the allocations of the study. --budgets B1,B2 runs one study per
search.target_bpw (run directories RUN_DIR-bpwB). Prints a Markdown table (and writes it to
OUT_DIR/study.md, study-bpwB.md).
With inputs: float the evaluated weights are exactly those the export would hold.

Usage:
  objective_study.py --config RUN.yaml [--n 20] [--seed 0] [--ranks 2] [--out DIR]
                     [--eval-windows K] [--probe-windows K] [--fixtures DIR] [--run-dir DIR]
      runs `qshard run RUN.yaml --resume` first (stages up to date are skipped; without the
      eval stage: the study evaluates what it needs). docs/search.md's run is the committed
      tests/study/objective_tinyllama.yaml; --fixtures DIR gives its fixture paths (model,
      calib.tokens, calib.offsets_file, eval.tokens) under another fixture directory than the
      ../shared/fixtures the file names, --run-dir another run directory (both as --set on
      every qshard call). --eval-windows K (evaluated windows) and --probe-windows K
      (search.probe_windows) make a quick check, not the docs' numbers.
  objective_study.py --miniature
      CTest: a synthetic model, 4 allocations, checks the table's shape
Env: QS_BIN (qshard), QS_MPIEXEC (default "mpiexec --oversubscribe")."""
import argparse
import json
import math
import os
import random
import sys

import h5py
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import qstest as Q  # noqa: E402

OBJECTIVES = ["error", "relative", "sensitivity", "kl"]
MASKS = [7, 8, 48, 64]  # the tied items' linear masks: q/k/v, o, gate/up, down
SETS = []  # --set KEY=VALUE pairs of --fixtures / --run-dir, passed to every qshard call
FIXTURE_FILES = {"model": "tinyllama-a", "calib.tokens": "tokens/calib.u32",
                 "calib.offsets_file": "tokens/calib_offsets_128x256.txt",
                 "eval.tokens": "tokens/eval.u32"}
GROUPS_TIED = [(0, 1, 2), (3,), (4, 5), (6,)]


def qs(ranks, *args):
    args = args[:2] + tuple(SETS) + args[2:]  # command, config, the --set pairs, the rest
    r = Q.qs(ranks, *args, timeout=None)
    if r.returncode != 0:
        sys.exit(f"objective_study: qshard {' '.join(args)}: exit {r.returncode}: {r.stderr.strip()}")
    return r


def read_yaml_run_dir(config):
    """run_dir of the resolved config (qshard writes it to config.resolved.yaml); we find it by
    running `qshard run` first, so read it from the config text (a plain top-level key),
    unless --run-dir set it."""
    for v in SETS[1::2]:
        if v.startswith("run_dir="):
            return os.path.abspath(v.split("=", 1)[1])
    base = os.path.dirname(os.path.abspath(config))
    for line in open(config):
        if line.startswith("run_dir:"):
            v = line.split(":", 1)[1].split("#")[0].strip().strip('"').strip("'")
            return v if os.path.isabs(v) else os.path.normpath(os.path.join(base, v))
    sys.exit(f"{config}: no top-level run_dir")


def load_run(run_dir):
    al = json.load(open(os.path.join(run_dir, "search", "allocation.json")))
    L = len(al["layers"])
    err, rel, size = [], [], []
    names = None
    for l in range(L):
        with h5py.File(Q.layer_path(run_dir, "recon", l), "r") as f:
            err.append(f["table/error"][()])
            rel.append(f["table/relative"][()])
            size.append(f["table/bytes"][()])
            if names is None:
                names = [f"w{b}g{g}" for b, g in zip(f["table/bits"][()], f["table/group_size"][()])]
    sens = json.load(open(os.path.join(run_dir, "search", "sensitivity.json")))
    return al, np.array(err), np.array(rel), np.array(size), names, sens


def sensitivity_costs(err, names, sens):
    """The stage's formula: per unit u = (layer, group) with group qkv / o / gate_up / down,
    error * s_u / sum_{k in u} error[l, k, probe], s_u floored at 1e-3 of the largest."""
    L = err.shape[0]
    p = names.index(sens["probe"])
    fl = sens["float_loss"]
    d = [x - fl for x in sens["loss"]]
    mx = max(0.0, max(d))
    out = np.empty_like(err)
    groups = [(0, 1, 2), (3,), (4, 5), (6,)]
    for l in range(L):
        for g, ks in enumerate(groups):
            s = max(d[l * 4 + g], 1e-3 * mx)
            e = float(sum(err[l, k, p] for k in ks))
            f = (s / e if e > 0 else s) if mx > 0 else 1.0
            for k in ks:
                out[l, k] = err[l, k] * f
    return out


def kl_costs(run_dir, names, L):
    """Objective kl's per-linear costs from search/kl.json (the stage's: the item's KL on its
    first linear, 0 on the others and on items without a choice)."""
    kl = json.load(open(os.path.join(run_dir, "search", "kl.json")))
    out = np.zeros((L, 7, len(names)))
    for t, v in zip(kl["tasks"], kl["kl"]):
        l, mask, cand = t.split()
        k = (int(mask) & -int(mask)).bit_length() - 1
        out[int(l), k, names.index(cand)] = max(v, 0.0)
    return out


def random_allocation(rng, size, budget, tied=True):
    """A random feasible allocation near the budget: random start, shrink random items until
    it fits, then grow random items by one step while they fit (stop after 50 misses)."""
    L, _, C = size.shape
    groups = GROUPS_TIED if tied else [(k,) for k in range(7)]
    items = [(l, g) for l in range(L) for g in groups]
    isize = [[int(sum(size[l][k][c] for k in g)) if all(size[l][k][c] >= 0 for k in g) else None
              for c in range(C)] for l, g in items]
    order = [sorted((c for c in range(C) if s[c] is not None), key=lambda c: s[c]) for s in isize]
    pos = [rng.randrange(len(o)) for o in order]
    total = sum(isize[i][order[i][pos[i]]] for i in range(len(items)))
    while total > budget:
        i = rng.randrange(len(items))
        if pos[i] > 0:
            total -= isize[i][order[i][pos[i]]] - isize[i][order[i][pos[i] - 1]]
            pos[i] -= 1
    misses = 0
    while misses < 50:
        i = rng.randrange(len(items))
        if pos[i] + 1 < len(order[i]):
            step = isize[i][order[i][pos[i] + 1]] - isize[i][order[i][pos[i]]]
            if total + step <= budget:
                total += step
                pos[i] += 1
                misses = 0
                continue
        misses += 1
    layers = [[None] * 7 for _ in range(L)]
    for i, (l, g) in enumerate(items):
        for k in g:
            layers[l][k] = order[i][pos[i]]
    return layers, total


def spearman(x, y):
    def ranks(v):
        v = np.asarray(v, dtype=float)
        o = np.argsort(v, kind="stable")
        r = np.empty(len(v))
        i = 0
        while i < len(v):  # average ranks of ties
            j = i
            while j + 1 < len(v) and v[o[j + 1]] == v[o[i]]:
                j += 1
            r[o[i:j + 1]] = (i + j) / 2.0
            i = j + 1
        return r
    if len(x) < 2:
        return float("nan")
    rx, ry = ranks(x), ranks(y)
    sx, sy = np.std(rx), np.std(ry)
    if sx == 0 or sy == 0:
        return float("nan")
    return float(np.mean((rx - rx.mean()) * (ry - ry.mean())) / (sx * sy))


def write_alloc(path, layers, names, payload, nweights, objective="random"):
    doc = {"format": "qshard-allocation-1", "objective": objective, "budget_bytes": 0,
           "payload_bytes": payload, "total_bytes": 0, "quantized_weights": nweights,
           "bpw": payload * 8 / nweights, "predicted": 0,
           "linears": ["q", "k", "v", "o", "gate", "up", "down"],
           "layers": [[names[c] for c in row] for row in layers]}
    with open(path, "w") as f:
        json.dump(doc, f, indent=1)


def eval_ppl(config, ranks, alloc_path, run_dir, sets=()):
    qs(ranks, "eval", config, "--weights", f"alloc:{alloc_path}", *sets)
    return json.load(open(os.path.join(run_dir, "eval.json")))["ppl"]


def study(config, n, seed, ranks, out_dir, eval_windows=0, probe_windows=0, budget_bpw=0.0,
          refine=0, refine_windows=0):
    """One budget (the config's, or search.target_bpw = budget_bpw): the run with objective
    sensitivity and its twin with objective kl (and search.refine = refine), N random
    allocations measured against every objective's optimum."""
    sets = ("--set", f"eval.max_windows={eval_windows}") if eval_windows > 0 else ()
    probes = ("--set", f"search.probe_windows={probe_windows}") if probe_windows > 0 else ()
    run_dir = read_yaml_run_dir(config)
    if budget_bpw > 0:
        run_dir = f"{run_dir}-bpw{budget_bpw:g}"
        probes += ("--set", f"search.target_bpw={budget_bpw!r}")
    probes += ("--set", f"run_dir={run_dir}")
    for rd, extra in ((run_dir, ()), (run_dir + "-kl", ("--set", "search.objective=kl",
                                                        "--set", f"search.refine={refine}",
                                                        "--set",
                                                        f"search.refine_windows={refine_windows}",
                                                        "--set", f"run_dir={run_dir}-kl"))):
        resume = ("--resume",) if os.path.exists(os.path.join(rd, "run.json")) else ()
        qs(ranks, "run", config, *resume, "--set", "eval.tokens=", *probes, *extra)
    sets = sets + ("--set", f"run_dir={run_dir}")
    qs(ranks, "eval", config, "--weights", "float", *sets)
    fl = json.load(open(os.path.join(run_dir, "eval.json")))["ppl"]
    al, err, rel, size, names, sens = load_run(run_dir)
    budget = al["budget_bytes"]
    nweights = al["quantized_weights"]
    costs = {"error": err, "relative": rel, "sensitivity": sensitivity_costs(err, names, sens),
             "kl": kl_costs(run_dir + "-kl", names, err.shape[0])}
    os.makedirs(out_dir, exist_ok=True)
    rng = random.Random(seed)
    preds = {o: [] for o in OBJECTIVES}
    ppls, bpws = [], []
    for i in range(n):
        layers, payload = random_allocation(rng, size, budget)
        path = os.path.join(out_dir, f"random-{i:02d}.json")
        write_alloc(path, layers, names, payload, nweights)
        for o in OBJECTIVES:
            c = costs[o]
            preds[o].append(float(sum(c[l][k][layers[l][k]] for l in range(len(layers)) for k in range(7))))
        ppls.append(eval_ppl(config, ranks, path, run_dir, sets))
        bpws.append(payload * 8 / nweights)
        print(f"random {i:2d}: bpw {bpws[-1]:.4f} ppl {ppls[-1]:.4f} " +
              " ".join(f"{o} {preds[o][-1]:.6g}" for o in OBJECTIVES), file=sys.stderr)
    rows = []
    for o in OBJECTIVES:
        opt = os.path.join(run_dir + ("-kl" if o == "kl" else ""), "search", f"optimum-{o}.json")
        oa = json.load(open(opt))
        rows.append((o, spearman(preds[o], ppls), eval_ppl(config, ranks, opt, run_dir, sets),
                     oa["bpw"]))
    if refine > 0:  # the refined allocation: no prediction of its own (measured KL)
        ra = os.path.join(run_dir + "-kl", "search", "allocation.json")
        rows.append((f"kl + refine {refine}", float("nan"),
                     eval_ppl(config, ranks, ra, run_dir, sets), json.load(open(ra))["bpw"]))
    best = min(ppls + [p for _, _, p, _ in rows])
    lines = [f"Budget {budget} B ({budget * 8 / nweights:.4f} bpw), {n} random allocations "
             f"(seed {seed}, bpw {min(bpws):.4f}..{max(bpws):.4f}, ppl {min(ppls):.4f}..{max(ppls):.4f}); "
             f"float ppl {fl:.4f}; regret = ppl of the optimum - the lowest ppl measured "
             f"({best:.4f}).", "",
             "| objective | Spearman ρ (prediction vs ppl) | ppl of the optimum | regret | bpw of the optimum |",
             "|---|---|---|---|---|"]
    for o, rho, p, b in rows:
        rs = "-" if math.isnan(rho) else f"{rho:.3f}"
        lines.append(f"| {o} | {rs} | {p:.4f} | {p - best:.4f} | {b:.4f} |")
    text = "\n".join(lines) + "\n"
    with open(os.path.join(out_dir, f"study{'-bpw%g' % budget_bpw if budget_bpw else ''}.md"), "w") as f:
        f.write(text)
    print(text)
    return rows, ppls


def miniature(tmp):
    model = os.path.join(tmp, "m")
    if not Q.synth_model(model, layers=3, hidden=128, intermediate=320, heads=4, kv_heads=2,
                         vocab=300, tokens=20000):
        return
    cfg = Q.write_config(
        os.path.join(tmp, "study.yaml"), model, f"{tmp}/run",
        calib={"tokens": f"{model}/tokens.u32", "nsamples": 12, "seqlen": 64, "chunk_samples": 4},
        quant={"bits": [2, 3, 4, 8], "group_size": [32], "row_block": 32, "block_size": 32},
        reconstruct={"inputs": "float"},
        search={"target_bpw": 4.0, "objective": "sensitivity", "probe_windows": 3},
        eval={"tokens": f"{model}/tokens.u32", "seqlen": 64, "max_windows": 4})
    rows, ppls = study(cfg, 4, 1, 2, os.path.join(tmp, "study"), refine=3)
    ok = [o for o, _, _, _ in rows] == OBJECTIVES + ["kl + refine 3"] and len(ppls) == 4
    rows = rows[:len(OBJECTIVES)]
    ok = ok and all(math.isfinite(p) and p > 1 for _, _, p, _ in rows) and all(p > 1 for p in ppls)
    # a NaN rank correlation (constant ranks) is a failure: the study would say nothing
    ok = ok and all(math.isfinite(r) and -1.0 - 1e-12 <= r <= 1.0 + 1e-12 for _, r, _, _ in rows)
    ok = ok and all(b <= 4.0 + 1e-12 for _, _, _, b in rows)
    ok = ok and open(os.path.join(tmp, "study", "study.md")).read().count("\n| ") == 6
    Q.check(ok, f"objective_study miniature: unexpected result {rows} {ppls}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config")
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ranks", type=int, default=2)
    ap.add_argument("--out")
    ap.add_argument("--eval-windows", type=int, default=0,
                    help="evaluate at most this many windows (eval.max_windows; 0 = the config's)")
    ap.add_argument("--probe-windows", type=int, default=0,
                    help="search.probe_windows of the run (0 = the config's)")
    ap.add_argument("--fixtures", help="the fixture directory of objective_tinyllama.yaml's paths")
    ap.add_argument("--run-dir", help="run directory (--set run_dir=DIR)")
    ap.add_argument("--budgets", default="",
                    help="comma-separated search.target_bpw values, one study each "
                         "(default: the config's budget)")
    ap.add_argument("--refine", type=int, default=0,
                    help="search.refine of the kl run (its allocation measured as a row)")
    ap.add_argument("--refine-windows", type=int, default=0,
                    help="search.refine_windows of the kl run (0 = the probe windows)")
    ap.add_argument("--miniature", action="store_true")
    a = ap.parse_args()
    if a.fixtures:
        for key, rel in FIXTURE_FILES.items():
            SETS.extend(["--set", f"{key}={os.path.join(os.path.abspath(a.fixtures), rel)}"])
    if a.run_dir:
        SETS.extend(["--set", f"run_dir={os.path.abspath(a.run_dir)}"])
    if a.miniature:
        with Q.tempdir("qs_study_") as d:
            miniature(d)
        Q.finish()
    if not a.config:
        ap.error("--config or --miniature")
    out = a.out or os.path.join(read_yaml_run_dir(a.config), "study")
    for b in [float(x) for x in a.budgets.split(",") if x] or [0.0]:
        study(a.config, a.n, a.seed, a.ranks, out, a.eval_windows, a.probe_windows, b, a.refine,
              a.refine_windows)


if __name__ == "__main__":
    main()
