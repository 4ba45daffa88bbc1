#!/usr/bin/env python3
"""test_gguf_pipeline.py: issue 18's served formats through `mpiexec -n N qshard run` on
synthetic models, read back with llama.cpp's own Python package (`gguf` from PyPI:
GGUFReader, gguf.quants.dequantize / quantize) and the independent numpy readers of
tests/ref/ (gptq_decode.py, ct_decode.py).

  (A) Llama (2 layers, hidden 256, intermediate 512, GQA 4/2 heads; a SentencePiece
      tokenizer.model trained here), search.serve llamacpp, every GGUF type qshard writes
      (Q2_K Q3_K Q4_K Q5_K Q6_K Q4_0 Q4_1 Q5_0 Q5_1 Q8_0) as candidates, GPTQ on the block
      grid, sequential inputs; search.pin puts each type on some linear. At 1, 2 and 3 ranks:
      - run/gguf/model.gguf is byte-identical (and out/, eval.json);
      - every tensor type is the allocation's (float tensors: F32 norms, the checkpoint's
        BF16 embeddings and head), the token embeddings are the checkpoint's bytes;
      - every linear's GGUF bytes are the reconstruct's block bytes (final/layer-NNN.h5) with
        llama's q/k row permutation (the converter's permute, in numpy);
      - gguf.quants.dequantize of every tensor, q/k un-permuted in numpy, equals bit for bit
        what qshard's GGUF reader gives (tests/tools/gguf_dequant: the weights eval uses);
      - eval.json (weights "gguf", the served file) equals `qshard eval --weights final`
        (the reconstruct's blocks through qshard's dequantizer) exactly;
      - the allocation's total_bytes is the sum of the GGUF file's tensor bytes (the budget
        counts the served format's exact bytes), within search.max_bytes.
  (B) Qwen2 (q/k/v biases, no permutation), quant.method rtn with gguf_chooser ref, float
      inputs, the legacy types gguf-py can quantize: each linear's GGUF bytes equal
      gguf.quants.quantize of the checkpoint's weight (llama.cpp's reference quantizer, bit
      for bit); biases F32 as the checkpoint's.
  (C) Llama with integer candidates w4g32 / w8g32 symmetric and output.formats [gptq, gguf,
      compressed-tensors]: the GGUF linears are Q4_0 / Q8_0 images whose dequantization equals
      bit for bit the GPTQ export's (gptq_decode.py) and the compressed-tensors export's
      (ct_decode.py); eval of the GGUF file equals eval of the GPTQ export exactly; `qshard
      verify` checks each export's qshard-checksums.json and names a file with a flipped byte.
Usage: test_gguf_pipeline.py GGUF_DEQUANT  (env: QS_BIN, QS_MPIEXEC; the test venv's python)
"""
import hashlib
import json
import os
import subprocess
import sys

import h5py
import numpy as np
import gguf
from gguf import GGUFReader

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, os.path.join(HERE, "..", "ref"))
sys.path.insert(0, HERE)
import qstest as Q  # noqa: E402
from qstest import check  # noqa: E402
import test_gguf as TG  # noqa: E402  (make_spm, permute)
import gptq_decode as GD  # noqa: E402
import ct_decode as CD  # noqa: E402

TOOL = None
TYPES = ["Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0"]
LIN_GGUF = {"q": "attn_q", "k": "attn_k", "v": "attn_v", "o": "attn_output",
            "gate": "ffn_gate", "up": "ffn_up", "down": "ffn_down"}
HF_LIN = {"q": "self_attn.q_proj", "k": "self_attn.k_proj", "v": "self_attn.v_proj",
          "o": "self_attn.o_proj", "gate": "mlp.gate_proj", "up": "mlp.up_proj",
          "down": "mlp.down_proj"}
HEADS, KV_HEADS = 4, 2


def sha(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def make_model(tmp, name, arch):
    d = os.path.join(tmp, name)
    check(Q.synth_model(d, arch, layers=2, hidden=256, intermediate=512, heads=HEADS,
                        kv_heads=KV_HEADS, vocab=512, tokens=20000), f"synth {name}")
    TG.make_spm(os.path.join(d, "tokenizer.model"))
    return d


def config(path, model, run_dir, quant, search, output, inputs="quantized"):
    Q.write_config(path, model, run_dir,
                   calib={"tokens": f"{model}/tokens.u32", "nsamples": 12, "seqlen": 64,
                          "chunk_samples": 4, "seed": 3},
                   quant=dict({"row_block": 64, "block_size": 64}, **quant),
                   reconstruct={"inputs": inputs},
                   search=dict({"objective": "error"}, **search),
                   output=output,
                   eval={"tokens": f"{model}/tokens.u32", "seqlen": 64, "max_windows": 4})
    return path


def run(n, cfg, *extra):
    r = Q.qs(n, "run", cfg, *extra, timeout=1200)
    check(r.returncode == 0, f"run {cfg} n={n}: rc {r.returncode}: {r.stderr[-2000:]}")
    return r.returncode == 0


def eval_nll(cfg, rd, weights):
    """nll_sum of `qshard eval --weights W` (it rewrites rd/eval.json: read that first)."""
    r = Q.qs(1, "eval", cfg, "--weights", weights)
    check(r.returncode == 0, f"eval --weights {weights}: {r.stderr[-800:]}")
    ev = Q.eval_json(rd)
    check(ev["weights"] == weights, f"eval.json weights {ev['weights']} != {weights}")
    return ev["nll_sum"] if r.returncode == 0 else None


def qshard_f32(path, tmp):
    """{tensor name: f32 array (rows, cols)} as qshard's GGUF reader gives them."""
    out = os.path.join(tmp, "deq-" + hashlib.sha256(path.encode()).hexdigest()[:8])
    os.makedirs(out, exist_ok=True)
    r = subprocess.run([TOOL, path, out], capture_output=True, text=True)
    check(r.returncode == 0, f"gguf_dequant {path}: {r.stderr}")
    res = {}
    for line in r.stdout.splitlines():
        name, _, rows, cols = line.split()
        a = np.fromfile(os.path.join(out, name + ".f32"), dtype=np.float32)
        res[name] = a.reshape(int(rows), int(cols))
    return res


def gguf_f32(t):
    """gguf-py's dequantization of tensor t (rows, cols) in the file's row order."""
    a = gguf.quants.dequantize(t.data, t.tensor_type)
    return np.asarray(a, dtype=np.float32).reshape(-1, int(t.shape[0]))


def hf_rows(name, a, arch):
    """Hugging Face row order of a GGUF tensor's rows (llama q/k: the converter's permute
    undone)."""
    if arch != "llama":
        return a
    if ".attn_q." in name:
        return TG.unpermute(a, HEADS)
    if ".attn_k." in name:
        return TG.unpermute(a, KV_HEADS)
    return a


def check_dequant(path, tmp, arch):
    """gguf-py's dequantization == qshard's reader, bit for bit, for every tensor."""
    r = GGUFReader(path)
    mine = qshard_f32(path, tmp)
    n = 0
    for t in r.tensors:
        ref = hf_rows(t.name, gguf_f32(t), arch)
        got = mine.get(t.name)
        same = got is not None and got.shape == ref.reshape(got.shape).shape and \
            np.array_equal(got.reshape(-1).view(np.uint32), ref.reshape(-1).view(np.uint32))
        check(same, f"{path}: {t.name} ({t.tensor_type.name}): gguf-py != qshard's reader")
        n += same
    check(n == len(r.tensors) and n > 0, f"{path}: {n} of {len(r.tensors)} tensors equal")
    return r


def checkpoint(model):
    ts, _ = GD.read_checkpoint(model)
    return ts


def test_llama_types(tmp):
    model = make_model(tmp, "llama", "llama")
    pins = [f"layers.{i // 7}.{Q.LINS[i % 7]}={t}" for i, t in enumerate(TYPES)]
    runs = {}
    for n in (1, 2, 3):
        rd = os.path.join(tmp, f"rA{n}")
        cfg = config(os.path.join(tmp, f"A{n}.yaml"), model, rd,
                     {"gguf_types": TYPES},
                     {"serve": "llamacpp", "max_bytes": "4MB", "pin": pins},
                     {"formats": ["gguf"]})
        if run(n, cfg):
            runs[n] = (rd, cfg)
    if 1 not in runs:
        return
    rd, cfg = runs[1]
    path = os.path.join(rd, "gguf", "model.gguf")
    # byte-identical at every rank count
    for n in (2, 3):
        if n in runs:
            check(sha(os.path.join(runs[n][0], "gguf", "model.gguf")) == sha(path),
                  f"model.gguf differs between 1 and {n} ranks")
            check(Q.output_hashes(runs[n][0], ("out", "eval.json")) ==
                  Q.output_hashes(rd, ("out", "eval.json")), f"out/ or eval.json differ at {n}")
    al = Q.read_json(os.path.join(rd, "search", "allocation.json"))
    r = check_dequant(path, tmp, "llama")
    tens = {t.name: t for t in r.tensors}
    used = set()
    for layer in range(2):
        with h5py.File(Q.layer_path(rd, "final", layer), "r") as f:
            for k, lin in enumerate(Q.LINS):
                cand = al["layers"][layer][k]
                t = tens.get(f"blk.{layer}.{LIN_GGUF[lin]}.weight")
                if not check(t is not None and t.tensor_type.name == cand,
                             f"layer {layer} {lin}: GGUF type {t and t.tensor_type.name}, "
                             f"allocation {cand}"):
                    continue
                used.add(cand)
                blocks = f[f"{lin}/{cand}/blocks"][()]           # (d_out, row_bytes) HF order
                if lin in ("q", "k"):
                    blocks = TG.permute(blocks, HEADS if lin == "q" else KV_HEADS)
                check(np.asarray(t.data).tobytes() == blocks.tobytes(),
                      f"layer {layer} {lin} ({cand}): GGUF bytes != final/ blocks")
    check(used == set(TYPES), f"types in the file {sorted(used)} != {TYPES}")
    ts = checkpoint(model)
    emb = tens["token_embd.weight"]
    check(emb.tensor_type.name == "BF16" and
          np.asarray(emb.data).tobytes() == ts["model.embed_tokens.weight"][2],
          "token_embd is not the checkpoint's BF16 bytes")
    check(tens["blk.0.attn_norm.weight"].tensor_type.name == "F32", "norms are not F32")
    # the budget counts the served format's exact bytes
    data = sum(int(t.n_bytes) for t in r.tensors)
    check(al["total_bytes"] == data, f"allocation total_bytes {al['total_bytes']} != the GGUF "
          f"file's tensor bytes {data}")
    check(data <= 4 * 10**6, f"{data} bytes above search.max_bytes")
    # eval of the served file == eval of the reconstruct's blocks
    ev = Q.eval_json(rd)
    check(ev["weights"] == "gguf", f"eval.json weights {ev['weights']}")
    final = eval_nll(cfg, rd, "final")
    check(final is not None and final == ev["nll_sum"],
          f"eval gguf nll_sum {ev['nll_sum']} != final {final}")
    v = Q.run([Q.QS, "verify", rd])
    check(v.returncode == 0 and "GGUF file ok" in v.stdout, f"verify: {v.stdout} {v.stderr}")


def test_qwen2_rtn(tmp):
    model = make_model(tmp, "qwen", "qwen2")
    legacy = ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0"]
    pins = [f"layers.0.{lin}={legacy[i % 5]}" for i, lin in enumerate(Q.LINS)]
    rd = os.path.join(tmp, "rB")
    cfg = config(os.path.join(tmp, "B.yaml"), model, rd,
                 {"method": "rtn", "gguf_types": legacy, "gguf_chooser": "ref"},
                 {"serve": "llamacpp", "max_bytes": "4MB", "pin": pins},
                 {"formats": ["gguf"]}, inputs="float")
    if not run(1, cfg):
        return
    path = os.path.join(rd, "gguf", "model.gguf")
    r = check_dequant(path, tmp, "qwen2")
    tens = {t.name: t for t in r.tensors}
    ts = checkpoint(model)
    n = 0
    for layer in range(2):
        for lin in Q.LINS:
            t = tens[f"blk.{layer}.{LIN_GGUF[lin]}.weight"]
            w = GD.arr(ts[f"model.layers.{layer}.{HF_LIN[lin]}.weight"])
            w = (w.astype(np.uint32) << 16).view(np.float32)       # bf16 -> f32
            want = gguf.quants.quantize(w, t.tensor_type)
            n += check(np.asarray(t.data).tobytes() == np.asarray(want).tobytes(),
                       f"layer {layer} {lin} {t.tensor_type.name}: not llama.cpp's reference "
                       "quantization")
            if lin in ("q", "k", "v"):
                b = tens[f"blk.{layer}.{LIN_GGUF[lin]}.bias"]
                bw = GD.arr(ts[f"model.layers.{layer}.{HF_LIN[lin]}.bias"])
                bw = (bw.astype(np.uint32) << 16).view(np.float32)
                check(b.tensor_type.name == "F32" and np.array_equal(np.asarray(b.data), bw),
                      f"layer {layer} {lin} bias is not the checkpoint's")
    check(n == 14, f"{n} of 14 linears are llama.cpp's reference bytes")


def test_integer_images(tmp):
    model = make_model(tmp, "llama8", "llama")
    rd = os.path.join(tmp, "rC")
    cfg = config(os.path.join(tmp, "C.yaml"), model, rd,
                 {"bits": [4, 8], "group_size": [32], "sym": True},
                 {"target_bpw": 6.0},
                 {"formats": ["gptq", "gguf", "compressed-tensors"]})
    if not run(1, cfg):
        return
    path = os.path.join(rd, "gguf", "model.gguf")
    r = check_dequant(path, tmp, "llama")
    tens = {t.name: t for t in r.tensors}
    al = Q.read_json(os.path.join(rd, "search", "allocation.json"))
    gx, _ = GD.read_checkpoint(os.path.join(rd, "export"))
    cx, _ = GD.read_checkpoint(os.path.join(rd, "export-ct"))
    ccfg = Q.read_json(os.path.join(rd, "export-ct", "config.json"))["quantization_config"]
    kinds = set()
    for layer in range(2):
        for k, lin in enumerate(Q.LINS):
            cand = al["layers"][layer][k]
            want = {"w4g32": "Q4_0", "w8g32": "Q8_0"}[cand]
            kinds.add(want)
            t = tens[f"blk.{layer}.{LIN_GGUF[lin]}.weight"]
            check(t.tensor_type.name == want, f"layer {layer} {lin}: {t.tensor_type.name}")
            g = hf_rows(t.name, gguf_f32(t), "llama")
            m = f"model.layers.{layer}.{HF_LIN[lin]}"
            wg, _ = GD.dequant(gx, m, int(cand[1]), 32, False)
            w_ct, tgt = CD.resolve(ccfg, m)
            wc, _ = CD.dequant(cx, m, w_ct) if w_ct else (None, None)
            check(wg is not None and np.array_equal(g.view(np.uint32), wg.view(np.uint32)),
                  f"{m}: GGUF {want} != the GPTQ export's weights")
            check(wc is not None and np.array_equal(g.view(np.uint32), wc.view(np.uint32)),
                  f"{m}: GGUF {want} != the compressed-tensors export's weights")
    check(kinds == {"Q4_0", "Q8_0"}, f"the allocation used {kinds}, want both widths")
    ev = Q.eval_json(rd)
    check(ev["weights"] == "gptq", f"eval.json weights {ev['weights']}")
    g = eval_nll(cfg, rd, "gguf")
    check(g is not None and g == ev["nll_sum"], f"eval gguf {g} != gptq {ev['nll_sum']}")
    # qshard-checksums.json beside every export's tensor files: verify checks them
    v = Q.run([Q.QS, "verify", rd])
    check(v.returncode == 0 and v.stdout.count("match qshard-checksums.json") == 3,
          f"verify {rd}: {v.stdout} {v.stderr}")
    for rel in ("gguf/model.gguf", "export-ct/model.safetensors"):
        f = os.path.join(rd, rel)
        blob = bytearray(open(f, "rb").read())
        blob[len(blob) - 7] ^= 0x01
        open(f, "wb").write(bytes(blob))
        target = f if rel.endswith(".gguf") else os.path.dirname(f)
        r = Q.run([Q.QS, "verify", target])
        check(Q.one_error(r, rel.split("/")[1], "SHA-256 differs from qshard-checksums.json"),
              f"verify {rel} with a flipped byte: rc {r.returncode} {r.stderr}")


def main():
    global TOOL
    TOOL = sys.argv[1]
    with Q.tempdir("qs_gguf_pipe_") as tmp:
        test_llama_types(tmp)
        test_qwen2_rtn(tmp)
        test_integer_images(tmp)
    Q.finish()


if __name__ == "__main__":
    main()
