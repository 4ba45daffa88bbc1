#!/usr/bin/python3
"""forward_ref.py: an independent numpy (float64) reference of a Llama/Mistral/Qwen2 decoder.

Written from the semantics of Hugging Face's modeling_llama / modeling_mistral /
modeling_qwen2 and modeling_rope_utils (not from qshard's C code):
  RMSNorm  w * (x / sqrt(mean(x^2) + eps))
  RoPE     rotate-half; inv_freq in float32 as HF computes it (default / linear / llama3),
           angles pos * inv_freq rounded to float32, cos/sin taken in float64
  attention softmax(q k^T / sqrt(head_dim) + causal (+ sliding window) mask) v, with the kv
           heads repeated (repeat_kv), optional q/k/v biases, optional o bias; layer l's
           window W = spec["layer_windows"][l] (0 = none) keeps keys j with i - j < W
  MLP      down(silu(gate(x)) * up(x)), optional biases
  head     final norm, lm_head, log-softmax NLL of the next token

Usage: forward_ref.py DIR
DIR holds spec.json, the weights as raw little-endian float32 files, tokens.u32 and
x_in.f32 (written by tests/unit/test_model_forward.c). Writes into DIR:
  ref_layer_out.f32  layer 0 applied to x_in            (nseq*seqlen, hidden)
  ref_hook_{0,1,2,3}.f32  layer 0's linear group inputs (qkv, o, gate/up, down)
  ref_logits.f32     full model logits on tokens         (nseq*seqlen, vocab)
  ref_nll.f64        next-token NLL                      (nseq, seqlen-1)
"""
import json
import math
import os
import sys

import numpy as np

F32 = np.float32


def load(d, name, shape):
    a = np.fromfile(os.path.join(d, name + ".f32"), dtype="<f4")
    if a.size != int(np.prod(shape)):
        raise SystemExit(f"{name}.f32: {a.size} floats, expected {shape}")
    return a.reshape(shape).astype(np.float64)


def inv_freq_hf(spec):
    """inv_freq as float32, op by op as transformers' _compute_*_rope_parameters."""
    rope = spec["rope"]
    dim = spec["head_dim"]
    expo = np.arange(0, dim, 2, dtype=np.int64).astype(F32) / F32(dim)
    inv = F32(1.0) / np.power(F32(rope["theta"]), expo)
    kind = rope["type"]
    if kind == "linear":
        inv = inv / F32(rope["factor"])
    elif kind == "llama3":
        factor = F32(rope["factor"])
        low = rope["low_freq_factor"]
        high = rope["high_freq_factor"]
        old = rope["original_max_position_embeddings"]
        low_wl = F32(old / low)
        high_wl = F32(old / high)
        wl = F32(2 * math.pi) / inv
        inv_l = np.where(wl > low_wl, inv / factor, inv).astype(F32)
        smooth = (F32(old) / wl - F32(low)) / F32(high - low)
        smoothed = (F32(1) - smooth) * inv_l / factor + smooth * inv_l
        medium = np.logical_and(~(wl < high_wl), ~(wl > low_wl))
        inv = np.where(medium, smoothed, inv_l).astype(F32)
    elif kind != "default":
        raise SystemExit(f"unknown rope type {kind}")
    return inv.astype(F32)


def rope_cos_sin(spec, seqlen):
    inv = inv_freq_hf(spec)
    pos = np.arange(seqlen, dtype=F32)
    ang = (pos[:, None] * inv[None, :]).astype(F32)  # f32 products like HF
    emb = np.concatenate([ang, ang], axis=1).astype(np.float64)
    return np.cos(emb), np.sin(emb)  # (seqlen, head_dim)


def rmsnorm(x, w, eps):
    return w * (x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps))


def rotate_half(x):
    h = x.shape[-1] // 2
    return np.concatenate([-x[..., h:], x[..., :h]], axis=-1)


def linear(x, w, b):
    y = x @ w.T
    return y + b if b is not None else y


def layer_forward(spec, L, window, x, nseq, seqlen, hooks=None):
    """x (nseq*seqlen, hidden) -> same; L: dict of float64 weights; window 0 = none."""
    nh, nkv, hd = spec["heads"], spec["kv_heads"], spec["head_dim"]
    eps = spec["eps"]
    cos, sin = rope_cos_sin(spec, seqlen)
    h1 = rmsnorm(x, L["input_norm"], eps)
    q = linear(h1, L["q_w"], L.get("q_b"))
    k = linear(h1, L["k_w"], L.get("k_b"))
    v = linear(h1, L["v_w"], L.get("v_b"))
    q = q.reshape(nseq, seqlen, nh, hd).transpose(0, 2, 1, 3)  # (b, nh, T, hd)
    k = k.reshape(nseq, seqlen, nkv, hd).transpose(0, 2, 1, 3)
    v = v.reshape(nseq, seqlen, nkv, hd).transpose(0, 2, 1, 3)
    q = q * cos + rotate_half(q) * sin
    k = k * cos + rotate_half(k) * sin
    rep = nh // nkv
    k = np.repeat(k, rep, axis=1)
    v = np.repeat(v, rep, axis=1)
    i = np.arange(seqlen)[:, None]
    j = np.arange(seqlen)[None, :]
    allowed = j <= i
    if window > 0:
        allowed = np.logical_and(allowed, i - j < window)
    scores = (q @ k.transpose(0, 1, 3, 2)) / math.sqrt(hd)
    scores = np.where(allowed, scores, -np.inf)
    scores = scores - scores.max(axis=-1, keepdims=True)
    p = np.exp(scores)
    p = p / p.sum(axis=-1, keepdims=True)
    o = (p @ v).transpose(0, 2, 1, 3).reshape(nseq * seqlen, nh * hd)
    x = x + linear(o, L["o_w"], L.get("o_b"))
    h2 = rmsnorm(x, L["post_norm"], eps)
    g = linear(h2, L["gate_w"], L.get("gate_b"))
    u = linear(h2, L["up_w"], L.get("up_b"))
    a = g / (1.0 + np.exp(-g)) * u
    x = x + linear(a, L["down_w"], L.get("down_b"))
    if hooks is not None:
        hooks.extend([h1, o, h2, a])
    return x


def load_layer(spec, d, l):
    H, I = spec["hidden"], spec["inter"]
    qd = spec["heads"] * spec["head_dim"]
    kvd = spec["kv_heads"] * spec["head_dim"]
    p = f"layer{l}."
    L = {
        "input_norm": load(d, p + "input_norm", (H,)),
        "q_w": load(d, p + "q_w", (qd, H)),
        "k_w": load(d, p + "k_w", (kvd, H)),
        "v_w": load(d, p + "v_w", (kvd, H)),
        "o_w": load(d, p + "o_w", (H, qd)),
        "post_norm": load(d, p + "post_norm", (H,)),
        "gate_w": load(d, p + "gate_w", (I, H)),
        "up_w": load(d, p + "up_w", (I, H)),
        "down_w": load(d, p + "down_w", (H, I)),
    }
    if spec["qkv_bias"]:
        L["q_b"] = load(d, p + "q_b", (qd,))
        L["k_b"] = load(d, p + "k_b", (kvd,))
        L["v_b"] = load(d, p + "v_b", (kvd,))
    if spec["o_bias"]:
        L["o_b"] = load(d, p + "o_b", (H,))
    if spec["mlp_bias"]:
        L["gate_b"] = load(d, p + "gate_b", (I,))
        L["up_b"] = load(d, p + "up_b", (I,))
        L["down_b"] = load(d, p + "down_b", (H,))
    return L


def main():
    if len(sys.argv) != 2:
        raise SystemExit("usage: forward_ref.py DIR")
    d = sys.argv[1]
    with open(os.path.join(d, "spec.json")) as f:
        spec = json.load(f)
    H, V = spec["hidden"], spec["vocab"]
    nseq, T = spec["nseq"], spec["seqlen"]
    layers = [load_layer(spec, d, l) for l in range(spec["nlayers"])]

    # layer 0 on a given input, with its group inputs
    x_in = load(d, "x_in", (nseq * T, H))
    hooks = []
    windows = spec["layer_windows"]
    out = layer_forward(spec, layers[0], windows[0], x_in, nseq, T, hooks)
    out.astype("<f4").tofile(os.path.join(d, "ref_layer_out.f32"))
    for g, a in enumerate(hooks):
        a.astype("<f4").tofile(os.path.join(d, f"ref_hook_{g}.f32"))

    # full model
    tokens = np.fromfile(os.path.join(d, "tokens.u32"), dtype="<u4").astype(np.int64)
    tokens = tokens.reshape(nseq, T)
    embed = load(d, "embed", (V, H))
    lm_head = embed if spec["tied"] else load(d, "lm_head", (V, H))
    x = embed[tokens.reshape(-1)]
    for L, w in zip(layers, windows):
        x = layer_forward(spec, L, w, x, nseq, T)
    x = rmsnorm(x, load(d, "final_norm", (H,)), spec["eps"])
    logits = x @ lm_head.T  # (nseq*T, V)
    logits.astype("<f4").tofile(os.path.join(d, "ref_logits.f32"))
    lg = logits.reshape(nseq, T, V)[:, :-1, :]
    m = lg.max(axis=-1, keepdims=True)
    lse = m[..., 0] + np.log(np.exp(lg - m).sum(axis=-1))
    tgt = np.take_along_axis(lg, tokens[:, 1:, None], axis=-1)[..., 0]
    (lse - tgt).astype("<f8").tofile(os.path.join(d, "ref_nll.f64"))


if __name__ == "__main__":
    main()
