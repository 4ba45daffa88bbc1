#!/usr/bin/python3
"""gptq_ref.py: a numpy GPTQ written from the paper (Frantar et al. 2022, Algorithm 1),
cross-checking qshard's blocked GPTQ and its scalar twin on small layers.

For each configuration the script makes a layer (W, H = 2/N X^T X), writes W.f32 and H.f32
to a temp dir, runs the C helper (test_quant_refdump) on it, and compares with its own
result: g_idx and the act-order permutation exactly, codes (agreement fraction), the layer
error tr(dW H dW^T) (relative difference) and the damping record.

Usage: gptq_ref.py PATH/TO/test_quant_refdump     (exit 0 = pass, 1 = fail)
"""
import os
import subprocess
import sys
import tempfile

import numpy as np

CODE_AGREEMENT = 0.999  # per configuration; float32 rounding differs between numpy and C
ERR_REL_TOL = 1e-4      # relative difference of tr(dW H dW^T), numpy vs C


def fp16(x):
    """Round float32 to fp16 (round to nearest even) and back."""
    return np.asarray(x, dtype=np.float32).astype(np.float16).astype(np.float32)


def group_params(wmin, wmax, bits, sym, zero_min1):
    """Scale and zero per row from the group's min and max (the GPTQ reference rule, scales
    rounded to fp16 before the zero is derived)."""
    maxq = 2 ** bits - 1
    wmin = np.minimum(wmin, 0).astype(np.float32)
    wmax = np.maximum(wmax, 0).astype(np.float32)
    if sym:
        amax = np.maximum(-wmin, wmax)
        scale = fp16(np.float32(2) * amax / np.float32(maxq))
        zero = np.full(scale.shape, (maxq + 1) // 2, dtype=np.int64)
        return scale, zero
    scale = fp16((wmax - wmin) / np.float32(maxq))
    inv = np.where(scale != 0, np.float32(1) / np.where(scale != 0, scale, 1), 0).astype(np.float32)
    zero = np.clip(np.round(-wmin * inv), 0, maxq).astype(np.int64)
    if zero_min1:
        low = zero < 1
        s1 = np.maximum(wmax / np.float32(maxq - 1), (wmax - wmin) / np.float32(maxq))
        scale = np.where(low, fp16(s1.astype(np.float32)), scale)
        zero = np.where(low, 1, zero)
    return scale.astype(np.float32), zero


def quantize(w, scale, zero, maxq):
    inv = np.where(scale != 0, np.float32(1) / np.where(scale != 0, scale, 1), 0).astype(np.float32)
    q = np.clip(np.round(np.clip(w * inv, -1024, 1024)) + zero, 0, maxq)
    q = np.where(scale == 0, 0, q).astype(np.int64)
    return q, (scale * (q - zero).astype(np.float32)).astype(np.float32)


def gptq(W, H, bits, gs, sym, act_order, static, zero_min1, damp, damp_max=1.0):
    """The paper's algorithm, one column at a time (no lazy batching). Returns codes,
    dequantized W, g_idx, perm, info."""
    W = W.astype(np.float32).copy()
    H = H.astype(np.float64).copy()
    d_out, n = W.shape
    maxq = 2 ** bits - 1
    dead = np.diag(H) == 0
    H[dead, dead] = 1
    W[:, dead] = 0
    gsz = n if gs < 1 else gs
    ng = (n + gsz - 1) // gsz
    perm = np.arange(n)
    if act_order:
        perm = np.lexsort((np.arange(n), -np.diag(H)))  # descending diag, ties by index
    scales = np.zeros((d_out, ng), np.float32)
    zeros = np.zeros((d_out, ng), np.int64)
    dynamic = gs >= 1 and not static
    if not dynamic:
        for g in range(ng):
            blk = W[:, g * gsz:(g + 1) * gsz]
            scales[:, g], zeros[:, g] = group_params(blk.min(1), blk.max(1), bits, sym, zero_min1)
    Wp = W[:, perm].astype(np.float64)  # updated weights kept in float64, as the C twin
    Hp = H[np.ix_(perm, perm)]
    mean = np.mean(np.diag(Hp))
    frac, nraise = damp, 0
    while True:
        A = Hp + frac * mean * np.eye(n)
        try:
            L = np.linalg.cholesky(A)
            Linv = np.linalg.inv(L)
            U = np.linalg.cholesky(Linv.T @ Linv).T  # Hinv = U^T U, U upper
            break
        except np.linalg.LinAlgError:
            if frac >= damp_max:
                raise
            frac = min(frac * 10 if frac > 0 else damp_max, damp_max)
            nraise += 1
    U = U.astype(np.float32)
    codes = np.zeros((d_out, n), np.int64)
    wq = np.zeros((d_out, n), np.float32)
    for k in range(n):
        if dynamic:
            g = k // gsz
            if k % gsz == 0:
                blk = Wp[:, k:k + gsz].astype(np.float32)
                scales[:, g], zeros[:, g] = group_params(blk.min(1), blk.max(1), bits, sym,
                                                         zero_min1)
        else:
            g = 0 if gs < 1 else perm[k] // gsz
        w = Wp[:, k].astype(np.float32)
        q, dq = quantize(w, scales[:, g], zeros[:, g], maxq)
        codes[:, perm[k]] = q
        wq[:, perm[k]] = dq
        err = (w.astype(np.float64) - dq) / np.float64(U[k, k])
        Wp[:, k + 1:] -= np.outer(err, U[k, k + 1:].astype(np.float64))
    if dynamic and act_order:
        g_idx = np.empty(n, np.int64)
        g_idx[perm] = np.arange(n) // gsz
    else:
        g_idx = np.arange(n) // gsz if gs >= 1 else np.zeros(n, np.int64)
    return codes, wq, g_idx, perm, (frac, nraise), scales, zeros


def layer_error(W, wq, H):
    d = W.astype(np.float64) - wq.astype(np.float64)
    return float(np.einsum("ri,ij,rj->", d, H.astype(np.float64), d))


def make_layer(rng, d_out, n, N, dead=()):
    common = rng.standard_normal((N, 1))
    chan = 0.3 + (np.arange(n) % 13) * 0.15
    X = (chan * (rng.standard_normal((N, n)) + 0.5 * common)).astype(np.float32)
    X[:, list(dead)] = 0
    H = (np.float32(2.0 / N) * (X.T @ X)).astype(np.float32)
    W = (0.05 * rng.standard_normal((d_out, n))).astype(np.float32)
    W[:, ::11] *= 4
    return W, H


def run_case(helper, tmp, W, H, cfg):
    bits, gs, sym, act, static, zm, B, rb, damp = cfg
    d_out, n = W.shape
    W.tofile(os.path.join(tmp, "W.f32"))
    H.tofile(os.path.join(tmp, "H.f32"))
    subprocess.run([helper, tmp, str(d_out), str(n), str(bits), str(gs), str(sym), str(act),
                    str(static), str(zm), str(B), str(rb), repr(damp)], check=True)
    ng = 1 if gs < 1 else (n + gs - 1) // gs
    rd = lambda name, dt, shape: np.fromfile(os.path.join(tmp, name), dtype=dt).reshape(shape)
    c_codes = {k: rd("codes_%s.bin" % k, np.uint8, (d_out, n)) for k in ("opt", "ref")}
    c_wq = {k: rd("wq_%s.bin" % k, np.float32, (d_out, n)) for k in ("opt", "ref")}
    c_gidx = rd("g_idx.bin", np.int32, (n,))
    c_perm = rd("perm.bin", np.int32, (n,))
    info = open(os.path.join(tmp, "info.txt")).read().split()
    c_damp, c_nraise = float(info[0]), int(info[1])
    c_err = {"opt": float(info[4]), "ref": float(info[5])}

    codes, wq, g_idx, perm, (damp_used, nraise), _, _ = gptq(W, H, bits, gs, sym, act, static,
                                                              zm, damp)
    fails = []
    name = "b%d g%d sym%d act%d static%d zm%d B%d" % (bits, gs, sym, act, static, zm, B)
    if not np.array_equal(c_gidx, g_idx):
        fails.append("g_idx differs")
    if not np.array_equal(c_perm, perm):
        fails.append("perm differs")
    if c_nraise != nraise or abs(c_damp - damp_used) > 1e-12:
        fails.append("damping %g/%d vs numpy %g/%d" % (c_damp, c_nraise, damp_used, nraise))
    e_np = layer_error(W, wq, H)
    for k in ("opt", "ref"):
        agree = float(np.mean(c_codes[k] == codes))
        e_c = layer_error(W, c_wq[k], H)
        if agree < CODE_AGREEMENT:
            fails.append("%s codes agree on %.5f" % (k, agree))
        if abs(e_c - e_np) > ERR_REL_TOL * e_np:
            fails.append("%s error %.8g vs numpy %.8g" % (k, e_c, e_np))
        if abs(c_err[k] - e_c) > 1e-4 * e_c:
            fails.append("%s error kernel %.8g vs numpy %.8g" % (k, c_err[k], e_c))
    return name, fails


def main():
    if len(sys.argv) != 2:
        print(__doc__)
        return 2
    helper = sys.argv[1]
    rng = np.random.default_rng(20240607)
    configs = []
    for bits in (2, 3, 4, 8):
        for gs in (-1, 32, 48):
            for act in (0, 1):
                for static in ((0, 1) if gs > 0 and act else (0,)):
                    for sym in (0, 1):
                        configs.append((bits, gs, sym, act, static, 1 - sym, 32, 16, 0.01))
    nfail = 0
    with tempfile.TemporaryDirectory(prefix="qs_gptq_ref_") as tmp:
        W, H = make_layer(rng, 64, 160, 640, dead=(7,))
        for cfg in configs:
            name, fails = run_case(helper, tmp, W, H, cfg)
            for f in fails:
                print("FAIL %s: %s" % (name, f))
            nfail += bool(fails)
        # a rank-deficient Hessian (N < n) with damp 0: raised and recorded alike
        W, H = make_layer(rng, 32, 96, 40)
        H -= np.float32(0.5) * np.eye(96, dtype=np.float32) * np.diag(H).min()
        name, fails = run_case(helper, tmp, W, H, (4, 32, 0, 0, 0, 1, 32, 16, 0.0001))
        for f in fails:
            print("FAIL %s (indefinite H): %s" % (name, f))
        nfail += bool(fails)
    print("%d passed, %d failed" % (len(configs) + 1 - nfail, nfail))
    return 1 if nfail else 0


if __name__ == "__main__":
    sys.exit(main())
