#!/usr/bin/env python3
"""make_window_models.py: tiny random Mistral / Qwen2 models with sliding-window attention and
transformers' logits for them (the committed data of tests/data/window/, used by
tests/unit/test_model_window.c).

Usage (not run by CTest; needs torch + transformers from PyPI):
    python3 -m venv --system-site-packages /work/venv-tf
    /work/venv-tf/bin/pip install torch==2.15.0 transformers==5.23.0 safetensors==0.8.0
    /work/venv-tf/bin/python tests/data/make_window_models.py tests/data/window

Pinned versions (the reference logits were made with): torch 2.15.0, transformers 5.23.0,
safetensors 0.8.0, Python 3.11 (Debian 12).

For every case below it writes OUT/<case>/:
  config.json        written by hand (not save_pretrained, which would add the layer_types
                     transformers derives and so hide the max_window_layers path)
  model.safetensors  bf16 weights (random, seeded), transformers' tensor names
  tokens.u32         SEQLEN little-endian uint32 token ids (seeded)
  logits.f32         (SEQLEN, vocab) float32 logits of transformers' forward on tokens:
                     the model loaded from this directory with dtype float32 (the bf16
                     weights upcast exactly) and attn_implementation "eager"
  expect.json        {"seqlen", "vocab", "layer_windows", "versions"}: layer_windows[l] is
                     the window transformers applied in layer l, measured from its
                     attention probabilities (output_attentions): W if query i attends to
                     exactly min(i + 1, W) keys at every position, 0 if to all i + 1.

Cases (SEQLEN 32, windows shorter than the sequence):
  mistral_w5     Mistral, sliding_window 5 on all 3 layers
  qwen2_mwl      Qwen2, use_sliding_window true, sliding_window 6, max_window_layers 2 of 4
                 (layers 0-1 full, 2-3 sliding), q/k/v biases
  qwen2_types    Qwen2, sliding_window 4, layer_types sliding/full/sliding/full (interleaved,
                 which max_window_layers cannot express; max_window_layers 1 is present and
                 must be overridden by layer_types)
  qwen2_off      Qwen2, use_sliding_window false with sliding_window 3 and max_window_layers 0:
                 transformers ignores the window, every layer is full

The weights are scaled up from transformers' init (q/k projections ~N(0, 2/sqrt(d_in))) so
that attention is peaked and a window one token off changes the logits visibly.
"""
import json
import os
import sys

import numpy as np
import torch
import transformers
from safetensors.torch import save_file

SEQLEN = 32
HIDDEN, HEADS, KV, HEAD_DIM, INTER, VOCAB = 32, 4, 2, 8, 48, 96

CASES = [
    ("mistral_w5", 1, {
        "architectures": ["MistralForCausalLM"], "model_type": "mistral",
        "num_hidden_layers": 3, "sliding_window": 5, "rope_theta": 10000.0,
    }),
    ("qwen2_mwl", 2, {
        "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2",
        "num_hidden_layers": 4, "use_sliding_window": True, "sliding_window": 6,
        "max_window_layers": 2, "rope_theta": 10000.0,
    }),
    ("qwen2_types", 3, {
        "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2",
        "num_hidden_layers": 4, "use_sliding_window": True, "sliding_window": 4,
        "max_window_layers": 1,
        "layer_types": ["sliding_attention", "full_attention", "sliding_attention",
                        "full_attention"],
        "rope_theta": 10000.0,
    }),
    ("qwen2_off", 4, {
        "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2",
        "num_hidden_layers": 2, "use_sliding_window": False, "sliding_window": 3,
        "max_window_layers": 0, "rope_theta": 10000.0,
    }),
]


def config(extra):
    c = {
        "hidden_act": "silu", "hidden_size": HIDDEN, "intermediate_size": INTER,
        "num_attention_heads": HEADS, "num_key_value_heads": KV, "head_dim": HEAD_DIM,
        "vocab_size": VOCAB, "max_position_embeddings": 128, "rms_norm_eps": 1e-6,
        "tie_word_embeddings": False, "torch_dtype": "bfloat16",
    }
    c.update(extra)
    return c


def weights(cfg, seed):
    """Random bf16 tensors in transformers' names and (out, in) layout."""
    g = torch.Generator().manual_seed(seed)
    qwen2 = cfg["model_type"] == "qwen2"

    def normal(shape, std):
        return (torch.randn(shape, generator=g) * std).to(torch.bfloat16)

    def lin(d_out, d_in, gain=1.0):
        return normal((d_out, d_in), gain / d_in ** 0.5)

    def norm(d):
        return (1.0 + torch.randn(d, generator=g) * 0.1).to(torch.bfloat16)

    qd, kvd = HEADS * HEAD_DIM, KV * HEAD_DIM
    t = {"model.embed_tokens.weight": normal((VOCAB, HIDDEN), 1.0)}
    for l in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{l}."
        t[p + "input_layernorm.weight"] = norm(HIDDEN)
        t[p + "self_attn.q_proj.weight"] = lin(qd, HIDDEN, 2.0)
        t[p + "self_attn.k_proj.weight"] = lin(kvd, HIDDEN, 2.0)
        t[p + "self_attn.v_proj.weight"] = lin(kvd, HIDDEN)
        if qwen2:
            t[p + "self_attn.q_proj.bias"] = normal((qd,), 0.2)
            t[p + "self_attn.k_proj.bias"] = normal((kvd,), 0.2)
            t[p + "self_attn.v_proj.bias"] = normal((kvd,), 0.2)
        t[p + "self_attn.o_proj.weight"] = lin(HIDDEN, qd)
        t[p + "post_attention_layernorm.weight"] = norm(HIDDEN)
        t[p + "mlp.gate_proj.weight"] = lin(INTER, HIDDEN)
        t[p + "mlp.up_proj.weight"] = lin(INTER, HIDDEN)
        t[p + "mlp.down_proj.weight"] = lin(HIDDEN, INTER)
    t["model.norm.weight"] = norm(HIDDEN)
    t["lm_head.weight"] = lin(VOCAB, HIDDEN, 4.0)
    return {k: v.contiguous() for k, v in t.items()}


def measured_windows(attentions):
    """Per layer: W when row i has min(i + 1, W) non-zero probabilities, 0 when i + 1."""
    out = []
    for a in attentions:  # (batch, heads, T, T)
        nz = (a[0] != 0).sum(dim=-1)  # (heads, T)
        i = torch.arange(SEQLEN)
        if bool((nz == i + 1).all()):
            out.append(0)
            continue
        w = int(nz.max())
        if not bool((nz == torch.clamp(i + 1, max=w)).all()):
            raise SystemExit(f"attention is neither causal nor a sliding window: {nz}")
        out.append(w)
    return out


def make(out_dir, name, seed, extra):
    d = os.path.join(out_dir, name)
    os.makedirs(d, exist_ok=True)
    cfg = config(extra)
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")
    save_file(weights(cfg, seed), os.path.join(d, "model.safetensors"), metadata={"format": "pt"})
    tokens = np.random.default_rng(seed).integers(0, VOCAB, SEQLEN).astype("<u4")
    tokens.tofile(os.path.join(d, "tokens.u32"))

    model, info = transformers.AutoModelForCausalLM.from_pretrained(
        d, dtype=torch.float32, attn_implementation="eager", output_loading_info=True)
    bad = {k: v for k, v in info.items() if v}
    if bad:
        raise SystemExit(f"{name}: loading info {bad}")
    model.eval()
    with torch.no_grad():
        res = model(torch.tensor(tokens.astype(np.int64))[None, :], output_attentions=True)
    logits = res.logits[0].to(torch.float32).numpy()  # (SEQLEN, VOCAB)
    logits.astype("<f4").tofile(os.path.join(d, "logits.f32"))
    wins = measured_windows(res.attentions)
    expect = {
        "seqlen": SEQLEN, "vocab": VOCAB, "layer_windows": wins,
        "versions": {"torch": torch.__version__.split("+")[0],
                     "transformers": transformers.__version__},
    }
    with open(os.path.join(d, "expect.json"), "w") as f:
        json.dump(expect, f, indent=2)
        f.write("\n")
    print(f"{name}: windows {wins}, max |logit| {np.abs(logits).max():.3g}")


def main():
    if len(sys.argv) != 2:
        raise SystemExit("usage: make_window_models.py OUT_DIR")
    torch.set_num_threads(1)
    for name, seed, extra in CASES:
        make(sys.argv[1], name, seed, extra)


if __name__ == "__main__":
    main()
