#!/usr/bin/python3
"""test_calib_mpi.py: the calibrate stage through `mpiexec -n N qshard run` on a synthetic model
(3 layers, hidden 128, GQA, 42 windows of 64 tokens in chunks of 4 so the last chunk is short):
  (b) every layer file's datasets (q/k/v, o, gate/up, down: hessian, absmax, meansq) and
      attributes are byte-identical at 1, 2 and 3 ranks; shapes, symmetry, token counts and
      the manifest are right; a second run with --resume skips the stage; the driver's eval
      stage (eval.tokens set) gives the same eval.json perplexity at every rank count;
  (d) kill/resume: QS_TEST_STOP_AFTER_CHUNKS stops the run at a checkpoint boundary (exit 3,
      state.json + per-layer checkpoint files), and --resume at the same and at another rank
      count gives datasets byte-identical to the uninterrupted run; the checkpoint directory
      is emptied when the stage completes;
  bad input: a token file with an id >= vocab is exit 2 with one error line on every rank count.
File bytes are compared too and reported (not failed): see docs/calibrate.md.
Usage: test_calib_mpi.py  (env: QS_BIN, QS_MPIEXEC)"""
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import qstest as Q  # noqa: E402
from qstest import check  # noqa: E402

GROUPS = {"qkv": 128, "o": 128, "gate_up": 128, "down": 320}


def qs_run(n, cfg, *extra, env=None):
    return Q.qs(n, "run", cfg, *extra, env=env)


def write_config(path, model, run_dir, tokens=None, every=2, with_eval=False):
    Q.write_config(path, model, run_dir,
                   calib={"tokens": tokens or f"{model}/tokens.u32", "nsamples": 42,
                          "seqlen": 64, "chunk_samples": 4, "checkpoint_every": every,
                          "seed": 7},
                   # calibrate computes its layer files for reconstruct's float inputs only
                   reconstruct={"inputs": "float"},
                   # intermediate 320 is not a multiple of the default group 128: shards only
                   output={"gptq_export": False},
                   eval={"tokens": f"{model}/tokens.u32", "seqlen": 64, "max_windows": 10}
                   if with_eval else None)


def layer_data(run_dir, nlayers=3):
    """{(layer, dataset): (dtype, shape, bytes)} + attributes, for every layer file."""
    return Q.layer_data(run_dir, nlayers)


def file_bytes(run_dir, nlayers=3):
    return [open(Q.layer_path(run_dir, "calib", l), "rb").read() for l in range(nlayers)]


def main(tmp):
    model = os.path.join(tmp, "m")
    if not Q.synth_model(model, layers=3, hidden=128, intermediate=320, heads=4, kv_heads=2,
                         vocab=300, tokens=20000):
        return

    # (b) determinism over rank counts, with the eval stage at the end
    ref = None
    ppl = {}
    for n in (1, 2, 3):
        rd = os.path.join(tmp, f"run{n}")
        cfg = os.path.join(tmp, f"cfg{n}.yaml")
        write_config(cfg, model, rd, with_eval=True)
        r = qs_run(n, cfg)
        check(r.returncode == 0, f"run n={n}: rc {r.returncode} {r.stderr}")
        if r.returncode != 0:
            continue
        data = layer_data(rd)
        if ref is None:
            ref = data
            refdir = rd
        else:
            same = data == ref
            check(same, f"datasets at {n} ranks differ from 1 rank: "
                  f"{[k for k in ref if data.get(k) != ref[k]][:4]}")
            check(file_bytes(rd) == file_bytes(refdir),
                  f"calibrate layer files byte-identical at {n} vs 1 ranks")
            diff = Q.diff_hashes(Q.run_file_hashes(rd), Q.run_file_hashes(refdir))
            check(not diff, f"run directory files at {n} ranks differ from 1 rank: {diff}")
        ev = Q.eval_json(rd)
        check(ev["windows"] == 10 and ev["tokens"] == 630 and ev["weights"] == "h5",
              f"eval.json fields: {ev}")
        evf = Q.eval_json(rd, "eval-float.json")
        check(evf["windows"] == 10 and evf["tokens"] == 630 and evf["weights"] == "float",
              f"eval-float.json fields: {evf}")
        ppl[n] = ev["ppl"]
        man = Q.manifest(rd, "calib")
        check(json.dumps(man).count("layer-") == 3, f"manifest lists 3 layer files: {man}")
        check(os.listdir(os.path.join(rd, "calib", "ckpt")) == [],
              "checkpoint directory emptied after completion")
    check(len(set(ppl.values())) == 1 and all(1.0 < p < 1e4 for p in ppl.values()),
          f"eval perplexity equal at 1, 2, 3 ranks: {ppl}")
    if ref:
        for g, dim in GROUPS.items():
            dt, shape, raw = ref[(0, f"{g}/hessian")]
            H = np.frombuffer(raw, dtype=dt).reshape(shape)
            check(shape == (dim, dim), f"{g}/hessian shape {shape}")
            check(np.array_equal(H, H.T), f"{g}/hessian symmetric")
            check(np.all(np.isfinite(H)) and np.all(np.diag(H) > 0), f"{g}/hessian finite, diag > 0")
            dt, shape, raw = ref[(0, f"{g}/meansq")]
            ms = np.frombuffer(raw, dtype=dt)
            check(shape == (dim,) and np.allclose(ms, np.diag(H) / 2, rtol=1e-5),
                  f"{g}: meansq = diag(H)/2")
            dt, shape, raw = ref[(0, f"{g}/absmax")]
            am = np.frombuffer(raw, dtype=dt)
            check(np.all(am ** 2 >= ms * (1 - 1e-6)), f"{g}: absmax^2 >= meansq")
        check(dict(ref[(1, "attrs")])["tokens"] == 42 * 64, f"tokens attr {ref[(1, 'attrs')]}")
        # --resume with everything done skips calibrate: files untouched
        before = [os.stat(Q.layer_path(refdir, "calib", l)).st_mtime_ns for l in range(3)]
        r = qs_run(2, os.path.join(tmp, "cfg1.yaml"), "--resume")
        check(r.returncode == 0, f"resume of a finished run: {r.stderr}")
        after = [os.stat(Q.layer_path(refdir, "calib", l)).st_mtime_ns for l in range(3)]
        check(before == after, "finished calibrate skipped on --resume")

    # (d) kill at a checkpoint boundary, resume at the same / another rank count
    for kill_n, resume_n in ((2, 2), (3, 1), (1, 3)):
        rd = os.path.join(tmp, f"kill{kill_n}{resume_n}")
        cfg = os.path.join(tmp, f"kcfg{kill_n}{resume_n}.yaml")
        write_config(cfg, model, rd)
        r = qs_run(kill_n, cfg, env={"QS_TEST_STOP_AFTER_CHUNKS": "5"})
        check(r.returncode == 3, f"stopped run n={kill_n}: rc {r.returncode} {r.stderr}")
        st_path = os.path.join(rd, "calib", "ckpt", "state.json")
        check(os.path.exists(st_path), "state.json written at the stop")
        if os.path.exists(st_path):
            st = Q.read_json(st_path)
            check(st["chunk"] == 6, f"stopped at the first boundary after 5 chunks: {st}")
            ck = sorted(os.listdir(os.path.join(rd, "calib", "ckpt")))
            check(ck == [f"layer-{l:03d}.c000006.h5" for l in range(3)] + ["state.json"],
                  f"only the newest checkpoint kept: {ck}")
        check(not os.path.exists(os.path.join(rd, "calib", "manifest.json")),
              "no manifest for a stopped stage")
        r = qs_run(resume_n, cfg, "--resume")
        check(r.returncode == 0, f"resume n={resume_n}: rc {r.returncode} {r.stderr}")
        if r.returncode == 0 and ref:
            check(layer_data(rd) == ref,
                  f"kill at {kill_n} + resume at {resume_n} ranks differs from uninterrupted")

    # bad token file: id >= vocab, agreed on every rank
    bad = os.path.join(tmp, "bad.u32")
    ids = np.arange(4096, dtype="<u4") % 300
    ids[1000] = 300
    ids.tofile(bad)
    for n in (1, 3):
        rd = os.path.join(tmp, f"bad{n}")
        cfg = os.path.join(tmp, f"badcfg{n}.yaml")
        write_config(cfg, model, rd, tokens=bad)
        r = qs_run(n, cfg)
        lines = Q.qshard_lines(r)
        check(r.returncode == 2, f"bad tokens n={n}: rc {r.returncode} {r.stderr}")
        check(len(lines) == 1 and "bad.u32" in lines[0], f"one error line naming the file: {lines}")


with Q.tempdir("qs_calib_") as d:
    main(d)
Q.finish()
