#!/usr/bin/python3
"""test_kl_search.py: search.objective kl and search.refine (docs/search.md), on a synthetic
3-layer Llama with candidates w2/w3/w4/w8 g32, float inputs:

- every output of search/ (kl.json, refine.csv, allocation, optima, summary) and of the later
  stages is byte-identical at 1, 2 and 3 ranks;
- the KL values are checked against an independent float64 numpy forward
  (tests/ref/forward_ref.py's layer) of the checkpoint and of recon's dequantized codes on
  the probe windows: one (item, candidate) per layer and group, and on search.refine_windows
  windows the whole-model KL of the exact optimum (refine.csv step 0) and of the returned
  allocation;
- the costs: allocation.json's `predicted` is the sum of kl.json's values of its choices; the
  optimum is the brute-force minimum of that sum within the budget (meet in the middle over
  the 12 items); refine keeps the best measured KL (non-increasing), never above the budget;
- a resumed search with the KL cache complete measures nothing again (kl.json untouched).
"""
import itertools
import json
import math
import os
import sys

import h5py
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "ref"))
import qstest as Q  # noqa: E402
import forward_ref as FR  # noqa: E402

check = Q.check
LINS = ["q", "k", "v", "o", "gate", "up", "down"]
HF = {"q": "self_attn.q_proj", "k": "self_attn.k_proj", "v": "self_attn.v_proj",
      "o": "self_attn.o_proj", "gate": "mlp.gate_proj", "up": "mlp.up_proj",
      "down": "mlp.down_proj"}
KEYS = {"q": "q_w", "k": "k_w", "v": "v_w", "o": "o_w", "gate": "gate_w", "up": "up_w",
        "down": "down_w"}
GROUPS = [(0, 1, 2), (3,), (4, 5), (6,)]
NL, SEQ, WIN, RWIN = 3, 64, 3, 4  # layers, seqlen, probe windows, refine windows


def checkpoint(model):
    """{name: float64 array} of the bf16 checkpoint."""
    hdr, base = Q.safetensors_header(os.path.join(model, "model.safetensors"))
    blob = open(os.path.join(model, "model.safetensors"), "rb").read()
    out = {}
    for k, e in hdr.items():
        if k == "__metadata__":
            continue
        a, b = e["data_offsets"]
        assert e["dtype"] == "BF16", e["dtype"]
        u = np.frombuffer(blob[base + a:base + b], dtype="<u2").astype(np.uint32) << 16
        out[k] = u.view(np.float32).astype(np.float64).reshape(e["shape"])
    return out


class Ref:
    """float64 forward of the checkpoint with some linears replaced by recon's codes."""

    def __init__(self, model, run_dir, windows=WIN):
        cfg = json.load(open(os.path.join(model, "config.json")))
        self.w = checkpoint(model)
        self.run_dir = run_dir
        self.spec = {"heads": cfg["num_attention_heads"], "kv_heads": cfg["num_key_value_heads"],
                     "head_dim": cfg["head_dim"], "eps": cfg["rms_norm_eps"],
                     "rope": {"type": "default", "theta": cfg["rope_theta"]}}
        toks = np.fromfile(os.path.join(model, "tokens.u32"), dtype="<u4").astype(np.int64)
        self.win = windows
        self.tokens = toks[:windows * SEQ].reshape(windows, SEQ)
        self.ref_lp = self.logprobs({})

    def recon(self, l, lin, cand):
        with h5py.File(Q.layer_path(self.run_dir, "recon", l), "r") as f:
            g = f[f"{lin}/{cand}"]
            codes = g["codes"][()].astype(np.float64)
            s = g["scales"][()].view(np.float16).astype(np.float64)
            z = g["zeros"][()].astype(np.float64)
            gi = g["g_idx"][()]
        return s[:, gi] * (codes - z[:, gi])

    def layer(self, l, quant):
        p = f"model.layers.{l}."
        L = {"input_norm": self.w[p + "input_layernorm.weight"],
             "post_norm": self.w[p + "post_attention_layernorm.weight"]}
        for lin in LINS:
            c = quant.get((l, lin))
            L[KEYS[lin]] = self.recon(l, lin, c) if c else self.w[p + HF[lin] + ".weight"]
        return L

    def logprobs(self, quant):
        x = self.w["model.embed_tokens.weight"][self.tokens.reshape(-1)]
        for l in range(NL):
            x = FR.layer_forward(self.spec, self.layer(l, quant), 0, x, self.win, SEQ)
        x = FR.rmsnorm(x, self.w["model.norm.weight"], self.spec["eps"])
        lg = (x @ self.w["lm_head.weight"].T).reshape(self.win, SEQ, -1)[:, :-1, :]
        m = lg.max(axis=-1, keepdims=True)
        return lg - (m + np.log(np.exp(lg - m).sum(axis=-1, keepdims=True)))

    def kl(self, quant):
        lq = self.logprobs(quant)
        return float((np.exp(self.ref_lp) * (self.ref_lp - lq)).sum(axis=-1).mean())


def alloc_quant(alloc):
    return {(l, LINS[k]): c for l, row in enumerate(alloc["layers"]) for k, c in enumerate(row) if c}


def close(a, b, what, rel=1e-5, absol=1e-9):
    check(abs(a - b) <= rel * abs(b) + absol, f"{what}: qshard {a!r} vs numpy {b!r}")


def check_values(model, rd):
    kl = Q.read_json(os.path.join(rd, "search", "kl.json"))
    tasks = [t.split() for t in kl["tasks"]]
    vals = kl["kl"]
    check(len(tasks) == NL * 4 * 4 and all(isinstance(v, float) for v in vals),
          f"kl.json: {len(tasks)} tasks, values {vals[:4]}")
    ref = Ref(model, rd)
    # one measurement per (layer, group), candidates in turn
    seen = set()
    for j, (l, mask, cand) in enumerate(tasks):
        l, mask = int(l), int(mask)
        if (l, mask) in seen or j % 3:
            continue
        seen.add((l, mask))
        quant = {(l, LINS[k]): cand for k in range(7) if mask & (1 << k)}
        close(vals[j], ref.kl(quant), f"kl.json task {j} (layer {l} mask {mask} {cand})")
    check(len(seen) >= 8, f"checked {len(seen)} (layer, group) pairs")
    # costs: predicted = sum over the optimum's items; the optimum is the brute-force one
    cost = {(int(l), int(m), c): v for (l, m, c), v in zip(tasks, vals)}
    opt = Q.read_json(os.path.join(rd, "search", "optimum-kl.json"))
    items = [(l, g) for l in range(NL) for g in GROUPS]
    pick = [opt["layers"][l][g[0]] for l, g in items]
    mask_of = {g: sum(1 << k for k in g) for g in GROUPS}
    pred = sum(max(cost[(l, mask_of[g], c)], 0.0) for (l, g), c in zip(items, pick))
    close(opt["predicted"], pred, "optimum-kl predicted = sum of its items' KL", rel=1e-12)
    sizes = {}
    for l in range(NL):
        with h5py.File(Q.layer_path(rd, "recon", l), "r") as f:
            b = f["table/bytes"][()]
            names = [f"w{x}g{y}" for x, y in zip(f["table/bits"][()], f["table/group_size"][()])]
        for g in GROUPS:
            for ci, c in enumerate(names):
                sizes[(l, g, c)] = int(sum(b[k][ci] for k in g))
    budget = opt["budget_bytes"]
    # meet in the middle over the 12 items
    half = len(items) // 2

    def enum(its):
        out = []
        for combo in itertools.product(names, repeat=len(its)):
            s = sum(sizes[(l, g, c)] for (l, g), c in zip(its, combo))
            e = sum(max(cost[(l, mask_of[g], c)], 0.0) for (l, g), c in zip(its, combo))
            out.append((s, e))
        return out
    A, B = enum(items[:half]), sorted(enum(items[half:]))
    best_b, run = [], math.inf
    for s, e in B:
        run = min(run, e)
        best_b.append(run)
    bs = [s for s, _ in B]
    import bisect
    best = math.inf
    for s, e in A:
        i = bisect.bisect_right(bs, budget - s) - 1
        if i >= 0:
            best = min(best, e + best_b[i])
    check(pred <= best * (1 + 1e-9) + 1e-15, f"optimum-kl {pred} above the brute force {best}")
    # refine (on its own RWIN windows): step 0 = the optimum's measured KL; best
    # non-increasing; the result's KL
    ref = Ref(model, rd, RWIN)
    rows = [ln.split(",") for ln in open(os.path.join(rd, "search", "refine.csv")).read().split("\n")[1:] if ln]
    check(len(rows) >= 2, f"refine.csv: {len(rows)} rows")
    close(float(rows[0][1]), ref.kl(alloc_quant(opt)), "refine step 0 = KL of the optimum")
    bests = [float(r[5]) for r in rows]
    check(all(b2 <= b1 for b1, b2 in zip(bests, bests[1:])), f"refine best not monotone {bests}")
    check(all(int(r[3]) <= budget for r in rows), "a refine neighbour above the budget")
    al = Q.read_json(os.path.join(rd, "search", "allocation.json"))
    check(al["payload_bytes"] <= budget, "allocation above budget")
    close(bests[-1], ref.kl(alloc_quant(al)), "KL of the refined allocation")
    summ = Q.read_json(os.path.join(rd, "search", "summary.json"))
    check(summ["refine"]["evals"] == len(rows) - 1 and summ["kl_measurements"] == len(tasks),
          f"summary.json: {summ}")
    check(summ["refine"]["accepted"] == sum(int(r[2]) for r in rows[1:]), "accepted count")


def main():
    with Q.tempdir("qs_kl_") as tmp:
        model = os.path.join(tmp, "m")
        if not Q.synth_model(model, layers=NL, hidden=128, intermediate=320, heads=4,
                             kv_heads=2, vocab=300, tokens=20000):
            Q.finish()
        runs = {}
        for n in (1, 2, 3):
            cfg = Q.write_config(
                os.path.join(tmp, f"c{n}.yaml"), model, f"{tmp}/run{n}",
                calib={"tokens": f"{model}/tokens.u32", "nsamples": 12, "seqlen": SEQ,
                       "chunk_samples": 2},
                quant={"bits": [2, 3, 4, 8], "group_size": [32], "row_block": 32,
                       "block_size": 32},
                reconstruct={"inputs": "float"},
                search={"target_bpw": 3.6, "objective": "kl", "probe_windows": WIN,
                        "refine": 8, "refine_seed": 3, "refine_windows": RWIN},
                eval={"tokens": f"{model}/tokens.u32", "seqlen": SEQ, "max_windows": 4})
            r = Q.qs(n, "run", cfg)
            check(r.returncode == 0, f"run at {n} ranks: rc {r.returncode} {r.stderr[-800:]}")
            runs[n] = (cfg, f"{tmp}/run{n}")
        h1 = Q.run_file_hashes(runs[1][1])
        for n in (2, 3):
            d = Q.diff_hashes(h1, Q.run_file_hashes(runs[n][1]))
            check(not d, f"outputs differ between 1 and {n} ranks: {d[:6]}")
        check_values(model, runs[1][1])
        # the cache: a search rerun with every value cached measures nothing
        cfg, rd = runs[2]
        kj = os.path.join(rd, "search", "kl.json")
        before = (os.stat(kj).st_mtime_ns, open(kj, "rb").read())
        os.remove(os.path.join(rd, "search", "manifest.json"))
        r = Q.qs(2, "run", cfg, "--resume")
        check(r.returncode == 0, f"resume: rc {r.returncode} {r.stderr[-400:]}")
        check((os.stat(kj).st_mtime_ns, open(kj, "rb").read()) == before,
              "kl.json rewritten on a resume with every value cached")
        check(not Q.diff_hashes(h1, Q.run_file_hashes(rd)), "resumed outputs differ")
    Q.finish()


if __name__ == "__main__":
    main()
