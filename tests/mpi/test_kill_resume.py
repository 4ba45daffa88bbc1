#!/usr/bin/python3
"""test_kill_resume.py: `kill -9` of one rank in the middle of a run, then `qshard run
--resume` at a different rank count (issue 13, acceptance).
  1. reference: an uninterrupted `mpiexec -n 2 qshard run` (plan -> calibrate (12 chunks,
     a checkpoint every 2) -> reconstruct (quantized inputs, 2 candidates) -> search
     (target_bpw 3.6) -> eval) of a synthetic 8-layer model in RUN, then RUN is renamed to
     REF (so both runs have the same run_dir and config hash);
  2. the same config at 2 ranks; once calibrate has written a checkpoint, SIGKILL one rank
     (a child of mpiexec); mpiexec aborts the job (non-zero exit);
  3. `--resume` at 3 ranks; once the first reconstruct layer file exists, SIGKILL one rank
     again. Files completed before this kill are recorded with (inode, mtime_ns, size);
  4. `--resume` at 2 ranks: exit 0; no stale temp file is left; every file of every stage
     (plan, calib, recon, search, eval.json, manifests, run.json, config) is byte-identical to
     REF, except measurements (timings.json, the report, <stage>/rss/ peak RSS records) and
     the run directory's lock file (it names the PID and host of the last run holding it), and
     the set of files is the same; every file completed before the second kill still has its
     inode, mtime and size (not recomputed, not rewritten); timings.json has exactly one
     attempt (the killed ones left none) marked resume; report.md exists.
With quantized inputs calibrate computes nothing (nothing reads calib/), so the test sets the
debug knob QS_NO_SKIP=calibrate (docs/design.md "Work that is skipped") for every run: a
kill inside calibrate and inside the sequential reconstruct of one run.
Usage: test_kill_resume.py  (env: QS_BIN, QS_MPIEXEC)"""
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import qstest as Q  # noqa: E402
from qstest import check  # noqa: E402

NL = 8


def write_config(path, model, run_dir):
    Q.write_config(path, model, run_dir,
                   calib={"tokens": f"{model}/tokens.u32", "nsamples": 48, "seqlen": 128,
                          "chunk_samples": 4, "checkpoint_every": 2, "seed": 5},
                   quant={"bits": [3, 4], "group_size": [64], "row_block": 64},
                   reconstruct={"inputs": "quantized"},
                   search={"target_bpw": 3.6},
                   eval={"tokens": f"{model}/tokens.u32", "seqlen": 128, "max_windows": 8})


IGNORED = ("timings.json", "report.md", "lock")  # lock: PID and host of the last holder
MEASURED = ("report",)  # times, and every stage's rss/ peak RSS records: not results


def measured(rel):
    """Measurements, not results: timings, the report, every stage's rss/ records."""
    return (rel in IGNORED or any(rel.startswith(m + os.sep) for m in MEASURED) or
            "rss" in rel.split(os.sep)[:-1])


def tree(root):
    """{relative path: bytes} of every file except measurements."""
    return Q.tree_bytes(root, skip=measured)


def run_and_kill(nranks, cfg, extra, ready, what):
    """Starts mpiexec -n NRANKS qshard run CFG EXTRA; once ready() holds, SIGKILLs one rank and
    waits for mpiexec to end. Returns True when a rank was killed and mpiexec failed."""
    killed, r = Q.kill_when(Q.qs_launch(nranks, "run", cfg, *extra), ready, "max",
                            f"kill after {what} appeared")
    return killed is not None and r.returncode != 0


def main(tmp):
    model = os.path.join(tmp, "model")
    if not Q.synth_model(model, layers=NL, hidden=256, intermediate=704, heads=4, kv_heads=2,
                         vocab=512, tokens=65536):
        return
    run_dir = os.path.join(tmp, "run")
    ref_dir = os.path.join(tmp, "ref")
    cfg = os.path.join(tmp, "cfg.yaml")
    write_config(cfg, model, run_dir)

    # 1. reference, uninterrupted, then moved aside
    t0 = time.time()
    r = Q.qs(2, "run", cfg)
    if not check(r.returncode == 0, f"reference run: rc {r.returncode}: {r.stderr}"):
        return
    os.rename(run_dir, ref_dir)
    t_ref = time.time() - t0

    def state_chunk():
        try:
            with open(os.path.join(run_dir, "calib", "ckpt", "state.json")) as f:
                return json.load(f).get("chunk", 0)
        except (OSError, ValueError):
            return 0

    # 2. killed in calibrate (2 ranks)
    if not run_and_kill(2, cfg, [],
                        lambda: state_chunk() > 0 and
                        not os.path.exists(os.path.join(run_dir, "calib", "manifest.json")),
                        "a calibrate checkpoint"):
        return
    check(not os.path.exists(os.path.join(run_dir, "calib", "manifest.json")),
          "killed inside calibrate (no calib manifest)")
    print(f"killed in calibrate at checkpoint chunk {state_chunk()} of 12", flush=True)

    # 3. resumed at 3 ranks, killed in reconstruct
    if not run_and_kill(3, cfg, ["--resume"],
                        lambda: os.path.exists(os.path.join(run_dir, "recon", "layer-000.h5")),
                        "the first recon layer file"):
        return
    rdir = os.path.join(run_dir, "recon")
    done_before = {}
    for n in sorted(os.listdir(rdir)):
        if n.startswith("layer-") and n.endswith(".h5"):
            s = os.stat(os.path.join(rdir, n))
            done_before[n] = (s.st_ino, s.st_mtime_ns, s.st_size)
    for n in sorted(os.listdir(os.path.join(run_dir, "calib"))):
        pth = os.path.join(run_dir, "calib", n)
        if os.path.isfile(pth):
            s = os.stat(pth)
            done_before["calib/" + n] = (s.st_ino, s.st_mtime_ns, s.st_size)
    nrecon = sum(1 for k in done_before if k.startswith("layer-"))
    print(f"killed in reconstruct: {nrecon} of {NL} recon layer file(s) finished before",
          flush=True)
    check(1 <= nrecon < NL, f"the kill fell inside reconstruct: {nrecon} of {NL} layers done")
    check(not os.path.exists(os.path.join(run_dir, "recon", "manifest.json")),
          "no recon manifest after the kill")

    # 4. resume at 2 ranks to the end
    time.sleep(0.05)  # mtime granularity: a rewrite would show a later time
    r = Q.qs(2, "run", cfg, "--resume")
    if not check(r.returncode == 0, f"resume at 2 ranks: rc {r.returncode}: {r.stderr}"):
        return
    got, ref = tree(run_dir), tree(ref_dir)
    temps = [k for k in got if ".tmp." in k]
    check(not temps, f"no stale temp files after the resume: {temps}")
    check(sorted(got) == sorted(ref),
          f"same files as the uninterrupted run: {sorted(set(got) ^ set(ref))}")
    diff = sorted(k for k in ref if k in got and got[k] != ref[k])
    check(not diff, f"byte-identical to the uninterrupted run: differ {diff}")
    check(any(k.startswith("recon/layer-") for k in ref) and
          any(k.startswith("calib/layer-") for k in ref) and "eval.json" in ref and
          "search/allocation.json" in ref,
          f"reference has calib, recon, search and eval outputs: {sorted(ref)}")
    for n, was in sorted(done_before.items()):
        pth = os.path.join(run_dir, n if n.startswith("calib/") else os.path.join("recon", n))
        if n.startswith("calib/") and not n.endswith(".h5"):
            continue  # calib/ also holds state bookkeeping
        s = os.stat(pth)
        check((s.st_ino, s.st_mtime_ns, s.st_size) == was,
              f"{n}: finished before the kill, not recomputed (inode/mtime/size {was} -> "
              f"{(s.st_ino, s.st_mtime_ns, s.st_size)})")
    tm = Q.read_json(os.path.join(run_dir, "timings.json"))
    atts = tm.get("attempts", [])
    check(len(atts) == 1 and atts[0].get("resume") == 1 and atts[0].get("ranks") == 2 and
          atts[0].get("status") == "done",
          f"timings.json: one attempt (the last resume, 2 ranks, done): {atts}")
    check(os.path.exists(os.path.join(run_dir, "report.md")), "report.md written")
    print(f"reference {t_ref:.1f} s; files compared: {len(ref)}", flush=True)


os.environ["QS_NO_SKIP"] = "calibrate"  # every run below inherits it
with Q.tempdir("qs_kill_resume_") as d:
    main(d)
Q.finish()
