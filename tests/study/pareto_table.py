#!/usr/bin/python3
"""pareto_table.py RUN_DIR: the Pareto frontier of a run's search stage (search/pareto.csv) as
the Markdown table of docs/search.md "A Pareto frontier": per budget the exact optimum's bits
per weight, payload bytes and predicted total (the objective's), and how many linears it gives
each bit width; the run's own allocation (search/summary.json, allocation.json) is the row
marked "run", in its place by size.
Reads only the run directory (`make demo` writes demo-run/run). Not a test."""
import csv
import json
import os
import sys
from collections import Counter

if len(sys.argv) != 2:
    sys.exit("usage: pareto_table.py RUN_DIR")
rd = sys.argv[1]
rows = list(csv.DictReader(open(os.path.join(rd, "search", "pareto.csv"))))
sm = json.load(open(os.path.join(rd, "search", "summary.json")))
al = json.load(open(os.path.join(rd, "search", "allocation.json")))
L = len(al["layers"])


def width(cand):
    return int(cand[1:].split("g")[0])  # w4g128 -> 4


def counts(cands):
    """linears per bit width of one pareto.csv allocation: 4 items per layer with
    search.tie_fused (q/k/v, o, gate/up, down: 3, 1, 2, 1 linears), else 7."""
    per_item = [3, 1, 2, 1] if len(cands) == 4 * L else [1] * 7
    c = Counter()
    for i, cand in enumerate(cands):
        c[width(cand)] += per_item[i % len(per_item)]
    return c


table = [(int(r["payload_bytes"]), float(r["bpw"]), float(r["predicted"]), "",
          counts(r["allocation"].split())) for r in rows]
table.append((sm["payload_bytes"], sm["bpw"], sm["predicted"], " (run)",
              Counter(width(c) for row in al["layers"] for c in row if c)))
table.sort(key=lambda t: (t[0], t[3]))
bits = sorted({b for t in table for b in t[4]})
print(f"{len(rows)} budgets of {rd}/search/pareto.csv, objective {sm['objective']} "
      f"(predicted: {'loss increase in nats, summed per unit' if sm['objective'] == 'sensitivity' else 'summed cost'}); "
      f"linears per bit width counted over q, k, v, o, gate, up, down of every layer.")
print()
print("| bpw | payload bytes | predicted | " + " | ".join(f"{b}-bit linears" for b in bits) + " |")
print("|---:|---:|---:|" + "---:|" * len(bits))
for payload, bpw, pred, mark, count in table:
    print(f"| {bpw:.4f}{mark} | {payload} | {pred:.4g} | "
          + " | ".join(str(count[b]) for b in bits) + " |")
