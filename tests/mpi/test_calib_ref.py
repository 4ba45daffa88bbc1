#!/usr/bin/python3
"""test_calib_ref.py: end-to-end accuracy of the calibrate stage against an fp64 numpy
reference. A one-layer synthetic model (hidden 512, bf16) is calibrated on 64 consecutive
windows of 512 tokens (N = 32768) in chunks of 16 at 2 ranks (rank 1 owns no layer and idles).
Layer 0's q/k/v input is rmsnorm(embed(tokens)), computed here in float64 from the weights
read with a small safetensors reader; the stored qkv/hessian must be within 1e-6 relative
Frobenius of 2/N X^T X, meansq and absmax within 1e-5 relative.
Usage: test_calib_ref.py  (env: QS_BIN, QS_MPIEXEC)"""
import os
import sys

import h5py
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import qstest as Q  # noqa: E402
from qstest import check  # noqa: E402

H, T, S = 512, 512, 64


def read_safetensors(path, names):
    header, base = Q.safetensors_header(path)
    with open(path, "rb") as f:
        out = {}
        for name in names:
            t = header[name]
            a, b = t["data_offsets"]
            f.seek(base + a)
            raw = f.read(b - a)
            if t["dtype"] == "BF16":
                u = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
                arr = u.view(np.float32)
            elif t["dtype"] == "F32":
                arr = np.frombuffer(raw, dtype="<f4")
            else:
                raise ValueError(t["dtype"])
            out[name] = arr.reshape(t["shape"]).astype(np.float64)
    return out


def main(tmp):
    model = os.path.join(tmp, "m")
    if not Q.synth_model(model, layers=1, hidden=H, intermediate=1024, heads=8, kv_heads=4,
                         vocab=512, tokens=S * T + 100):
        return
    rd = os.path.join(tmp, "run")
    cfg = Q.write_config(os.path.join(tmp, "cfg.yaml"), model, rd,
                         calib={"tokens": f"{model}/tokens.u32", "nsamples": S, "seqlen": T,
                                "chunk_samples": 16, "sampling": "consecutive"})
    r = Q.qs(2, "run", cfg)
    if not check(r.returncode == 0, f"run: {r.returncode} {r.stderr}"):
        return
    cfgj = Q.read_json(os.path.join(model, "config.json"))
    eps = cfgj["rms_norm_eps"]
    w = read_safetensors(os.path.join(model, "model.safetensors"),
                         ["model.embed_tokens.weight", "model.layers.0.input_layernorm.weight"])
    tok = np.fromfile(os.path.join(model, "tokens.u32"), dtype="<u4")[:S * T]
    x = w["model.embed_tokens.weight"][tok]                       # (N, H)
    x = x / np.sqrt(np.mean(x * x, axis=1, keepdims=True) + eps)
    x = x * w["model.layers.0.input_layernorm.weight"][None, :]
    N = x.shape[0]
    Href = (2.0 / N) * (x.T @ x)
    with h5py.File(Q.layer_path(rd, "calib", 0), "r") as f:
        Hq = f["qkv/hessian"][()].astype(np.float64)
        ms = f["qkv/meansq"][()]
        am = f["qkv/absmax"][()].astype(np.float64)
        tokens = int(f.attrs["tokens"])
    rel = np.linalg.norm(Hq - Href) / np.linalg.norm(Href)
    rel_ms = np.max(np.abs(ms - np.mean(x * x, axis=0)) / np.mean(x * x, axis=0))
    rel_am = np.max(np.abs(am - np.max(np.abs(x), axis=0)) / np.max(np.abs(x), axis=0))
    print(f"N={N} d={H}: qkv Hessian rel Frobenius {rel:.3g}, meansq {rel_ms:.3g}, "
          f"absmax {rel_am:.3g}")
    check(tokens == N and rel < 1e-6 and rel_ms < 1e-5 and rel_am < 1e-5,
          f"tolerance (1e-6 Frobenius, 1e-5 stats) or token count {tokens}")


with Q.tempdir("qs_calref_") as d:
    main(d)
Q.finish()
