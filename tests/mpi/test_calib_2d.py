#!/usr/bin/python3
"""test_calib_2d.py: calibrate's 2-D schedule (S pipeline stages x D replicas, issue 22;
docs/calibrate.md "Schedule") through `mpiexec -n N qshard run` with reconstruct.inputs float
on synthetic models (hidden 64, GQA; 22 windows of 32 tokens in 11 chunks of 2, the last one
short; checkpoints every 4 chunks, so a segment's last round is partial at D = 3):
  (a) 2 layers at 1, 2, 3, 4 ranks (auto: 2x1, 1x3, 2x2): plan.json records S and D and every
      rank has calibrate work; calib/ datasets and attributes, and every file of the run
      directory (recon/, search/, out/, eval.json, manifests) byte-identical to 1 rank;
  (b) 3 layers at 4 ranks: auto (1x4), calib.replicas 2 (2 stages of 1 and 2 layers x 2) and
      at 3 ranks calib.replicas 2 (1x2, rank 2 idle), each identical to 1 rank;
  (c) kill/resume inside calibrate: QS_TEST_STOP_AFTER_CHUNKS=5 at 4 ranks (2x2) stops at the
      checkpoint of chunk 8 (exit 3, state.json and replica 0's checkpoint files only), resumed
      at 3 ranks (1x3) and, stopped at 3 ranks, resumed at 4: the uninterrupted bytes.
In the sanitizer build (QS_SANITIZED=1, label san) a subset: 2 layers at 1, 3, 4 ranks, 3
layers at 4 ranks with 2 replicas, kill at 4 and resume at 3 ranks.
Usage: test_calib_2d.py  (env: QS_BIN, QS_MPIEXEC)"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import qstest as Q  # noqa: E402
from qstest import check  # noqa: E402

SAN = os.environ.get("QS_SANITIZED") == "1"


def write_config(path, model, run_dir, replicas=None):
    calib = {"tokens": f"{model}/tokens.u32", "nsamples": 22, "seqlen": 32, "chunk_samples": 2,
             "checkpoint_every": 4, "seed": 3}
    if replicas is not None:
        calib["replicas"] = replicas
    Q.write_config(path, model, run_dir, calib=calib,
                   quant={"bits": [4], "group_size": [32]},
                   reconstruct={"inputs": "float"},
                   eval={"tokens": f"{model}/tokens.u32", "seqlen": 32, "max_windows": 4})


def plan_shape(run_dir):
    """(stages, replicas, [(stage, replica, count) per rank]) from plan/plan.json."""
    p = Q.read_json(os.path.join(run_dir, "plan", "plan.json"))
    cal = p["calibrate"]
    return (cal["stages"], cal["replicas"],
            [(r["calibrate"]["stage"], r["calibrate"]["replica"], r["calibrate"]["count"])
             for r in p["ranks"]])


def run(tmp, name, n, model, replicas=None, env=None, resume=False):
    rd = os.path.join(tmp, name)
    cfg = os.path.join(tmp, name + ".yaml")
    write_config(cfg, model, rd, replicas)
    r = Q.qs(n, "run", cfg, *(["--resume"] if resume else []), env=env)
    return rd, r


def compare(tmp, name, n, model, nlayers, ref, want_shape, replicas=None):
    rd, r = run(tmp, name, n, model, replicas)
    check(r.returncode == 0, f"{name}: rc {r.returncode} {r.stderr}")
    if r.returncode != 0:
        return
    S, D, ranks = plan_shape(rd)
    check((S, D) == want_shape, f"{name}: plan {S} stages x {D} replicas, want {want_shape}")
    busy = [c for s, d, c in ranks if s >= 0]
    check(all(c > 0 for c in busy) and len(busy) == S * D,
          f"{name}: every rank of the S x D grid computes layers: {ranks}")
    check(sorted((s, d) for s, d, c in ranks if s >= 0) ==
          sorted((s, d) for s in range(S) for d in range(D)), f"{name}: ranks cover the grid")
    if ref is None:
        return
    data = Q.layer_data(rd, nlayers)
    check(data == ref[0], f"{name}: calib/ datasets differ from 1 rank: "
          f"{[k for k in ref[0] if data.get(k) != ref[0][k]][:4]}")
    diff = Q.diff_hashes(Q.run_file_hashes(rd), ref[1])
    check(not diff, f"{name}: run directory files differ from 1 rank: {diff}")


def main(tmp):
    models = {}
    for L in (2, 3):
        models[L] = os.path.join(tmp, f"m{L}")
        if not Q.synth_model(models[L], layers=L, hidden=64, intermediate=128, heads=4,
                             kv_heads=2, vocab=200, tokens=4000):
            return
    # (a) 2 layers: every rank count busy
    rd, r = run(tmp, "l2n1", 1, models[2])
    check(r.returncode == 0, f"1 rank: rc {r.returncode} {r.stderr}")
    if r.returncode != 0:
        return
    ref2 = (Q.layer_data(rd, 2), Q.run_file_hashes(rd))
    check(any(k.startswith("recon/") for k in ref2[1]) and "eval.json" in ref2[1],
          f"the whole run was compared: {sorted(ref2[1])[:8]}")
    for n, shape in ((2, (2, 1)), (3, (1, 3)), (4, (2, 2))):
        if SAN and n == 2:
            continue
        compare(tmp, f"l2n{n}", n, models[2], 2, ref2, shape)

    # (b) 3 layers: the remainder cases
    rd, r = run(tmp, "l3n1", 1, models[3])
    check(r.returncode == 0, f"3 layers, 1 rank: rc {r.returncode} {r.stderr}")
    if r.returncode == 0:
        ref3 = (Q.layer_data(rd, 3), Q.run_file_hashes(rd))
        compare(tmp, "l3n4r2", 4, models[3], 3, ref3, (2, 2), replicas=2)
        if not SAN:
            compare(tmp, "l3n4", 4, models[3], 3, ref3, (1, 4))
            compare(tmp, "l3n3r2", 3, models[3], 3, ref3, (1, 2), replicas=2)
            _, _, ranks = plan_shape(os.path.join(tmp, "l3n3r2"))
            check(ranks[2][0] == -1, f"3 ranks, 2 replicas of 1 stage: rank 2 idle: {ranks}")
        _, _, ranks = plan_shape(os.path.join(tmp, "l3n4r2"))
        check(sorted(c for _, _, c in ranks) == [1, 1, 2, 2],
              f"2 stages of 1 and 2 layers, twice: {ranks}")

    # (c) kill inside calibrate, resume with another replica count
    for kill_n, resume_n in ((4, 3),) if SAN else ((4, 3), (3, 4)):
        name = f"kill{kill_n}{resume_n}"
        rd, r = run(tmp, name, kill_n, models[2], env={"QS_TEST_STOP_AFTER_CHUNKS": "5"})
        check(r.returncode == 3, f"{name}: stopped run rc {r.returncode} {r.stderr}")
        ck = os.path.join(rd, "calib", "ckpt")
        if os.path.exists(os.path.join(ck, "state.json")):
            st = Q.read_json(os.path.join(ck, "state.json"))
            check(st["chunk"] == 8, f"{name}: stopped at the checkpoint of chunk 8: {st}")
            files = sorted(os.listdir(ck))
            check(files == ["layer-000.c000008.h5", "layer-001.c000008.h5", "state.json"],
                  f"{name}: replica 0's checkpoint files only: {files}")
        else:
            check(False, f"{name}: no state.json")
        rd, r = run(tmp, name, resume_n, models[2], resume=True)
        check(r.returncode == 0, f"{name}: resume rc {r.returncode} {r.stderr}")
        if r.returncode == 0:
            check(Q.layer_data(rd, 2) == ref2[0], f"{name}: calib/ after resume differs")
            diff = Q.diff_hashes(Q.run_file_hashes(rd), ref2[1])
            check(not diff, f"{name}: run directory after resume differs from 1 rank: {diff}")


with Q.tempdir("qs_calib2d_") as d:
    main(d)
Q.finish()
