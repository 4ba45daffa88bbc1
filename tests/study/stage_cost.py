#!/usr/bin/python3
"""stage_cost.py RUN_DIR...: CPU seconds per stage (summed over ranks and over the attempts
of run/timings.json) and the search stage's cost as a fraction of the reconstruct stage's
(docs/search.md "Objective kl": the cost of the measured objective and of search.refine).
CPU time, not wall time: the study machine is shared, and CPU time does not count the
waits; MPI's busy polling does count, as on a cluster."""
import json
import os
import sys


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    print("| run | calibrate | reconstruct | search | reconstruct-final | search / reconstruct |")
    print("|---|---:|---:|---:|---:|---:|")
    for rd in sys.argv[1:]:
        t = json.load(open(os.path.join(rd, "timings.json")))
        cpu = {}
        for a in t["attempts"]:
            for s in a["stages"]:
                cpu[s["name"]] = cpu.get(s["name"], 0.0) + sum(r["cpu_s"] for r in s["ranks"])
        rec = cpu.get("reconstruct", 0.0)
        row = [cpu.get(k, 0.0) for k in ("calibrate", "reconstruct", "search", "reconstruct-final")]
        frac = cpu.get("search", 0.0) / rec if rec > 0 else float("nan")
        print(f"| {os.path.basename(os.path.normpath(rd))} | " +
              " | ".join(f"{x:.1f}" for x in row) + f" | {frac:.1f}x |")


if __name__ == "__main__":
    main()
