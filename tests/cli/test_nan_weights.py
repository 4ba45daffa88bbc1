#!/usr/bin/python3
"""test_nan_weights.py: a NaN or Inf in a model weight is bad input. For each poisoned tensor
(the embedding, a linear of the last layer (its owner is the last rank), a layer norm, the
final norm, lm_head) in a bf16, an f16 and an f32 checkpoint, `qshard run` at 2 ranks exits 2
with one line naming the shard file, the tensor and the element, and writes no stage output
beyond what it had finished: the final norm and lm_head (first read late, by search, eval and
write) are checked before the run directory is touched; the others as calibrate converts
them, before it has written a calibration result. A clean copy of the same model runs to
exit 0 (so the failures are about the poison).
Usage: test_nan_weights.py  (env: QS_BIN, QS_MPIEXEC)"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import qstest as Q  # noqa: E402
from qstest import check  # noqa: E402

NAN, INF = Q.NAN, Q.INF
ELEM = 38  # flat element poisoned: (0, 38) of a matrix, 38 of a vector (hidden 64)
CASES = [  # (tensor, poison, where it is found: "early" = before the run directory exists)
    ("model.embed_tokens.weight", NAN, "calib"),
    ("model.layers.1.mlp.down_proj.weight", NAN, "calib"),
    ("model.layers.0.input_layernorm.weight", INF, "calib"),
    ("model.norm.weight", NAN, "early"),
    ("lm_head.weight", INF, "early"),
]


def main(tmp):
    for dtype in ("bf16", "f16", "f32"):
        model = os.path.join(tmp, f"model-{dtype}")
        if not Q.synth_model(model, layers=2, hidden=64, intermediate=128, heads=2, kv_heads=1,
                             vocab=256, tokens=8192, dtype=dtype):
            continue
        tokens = os.path.join(model, "tokens.u32")

        def config(name, mdir):
            rd = os.path.join(tmp, "runs", f"{dtype}-{name}")
            cfg = Q.write_config(os.path.join(tmp, f"{dtype}-{name}.yaml"), mdir, rd,
                                 calib={"tokens": tokens, "nsamples": 4, "seqlen": 32},
                                 quant={"bits": [3, 4], "group_size": [32]},
                                 search={"target_bpw": 4.6},
                                 eval={"tokens": tokens, "seqlen": 64, "max_windows": 4})
            return cfg, rd

        cfg, rd = config("clean", model)
        r = Q.qs(2, "run", cfg, timeout=300)
        check(r.returncode == 0, f"{dtype} clean model: rc {r.returncode} {r.stderr[-400:]}")
        for name, values, when in CASES:
            bad = os.path.join(tmp, f"bad-{dtype}")
            path, at = Q.poison_tensor(model, bad, name, values, ELEM)
            kind = "NaN" if values is NAN else "Inf"
            cfg, rd = config(name, bad)
            r = Q.qs(2, "run", cfg, timeout=300)
            ok = check(Q.one_error(r, path, f"tensor '{name}'", f"non-finite value ({kind})",
                                   f"at {at}"),
                       f"{dtype} {name}: rc {r.returncode}, stderr {Q.qshard_lines(r)}")
            if when == "early":
                check(not os.path.exists(rd), f"{dtype} {name}: the run directory was created")
            else:
                done = [f for f in os.listdir(os.path.join(rd, "calib"))
                        if f.endswith(".h5")] if os.path.isdir(os.path.join(rd, "calib")) else []
                check(not done, f"{dtype} {name}: calibration results were written: {done}")
            if ok:
                print(f"ok {dtype} {name}: {Q.qshard_lines(r)[0]}")


if __name__ == "__main__":
    with Q.tempdir("qs-nan-") as d:
        main(d)
    sys.exit(Q.finish())
