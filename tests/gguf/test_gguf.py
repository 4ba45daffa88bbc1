"""test_gguf.py: GGUF files written by qshard (pipeline/export/gguf_*.c, through the test
driver tests/tools/gguf_write.c) read back with llama.cpp's own Python package `gguf`
(GGUFReader, its quantizer, its SpecialVocab = the converter's special-token logic).

  test_gguf.py GGUF_WRITE synth     synthetic Llama / Mistral / Qwen2 models (qshard
                                    synth-model) with tokenizers made here by `tokenizers`
                                    and `sentencepiece`, every metadata value type,
                                    llama3/linear RoPE, bad inputs
  test_gguf.py GGUF_WRITE fixture   ../shared/fixtures/tinyllama-a with tok512.model
                                    (skips without ../shared unless QS_REQUIRE_SHARED=1)

Checked for every file: every key, its value type and value, in order; tensor names,
order, shapes, types; every data offset aligned and the data contiguous in info order;
tensor bytes equal to the checkpoint's (F32 exact, F16/BF16 round-to-nearest-even of the
checkpoint value, Q8_0 bytes made here with gguf-py's quantizer equal to what was passed);
q/k rows un-permuted in numpy equal the checkpoint's; the vocabulary equal to what
sentencepiece / tokenizers read; the same bytes with 1 and 3 concurrent writers.
"""
import io
import json
import os
import struct
import subprocess
import sys
import tempfile

import numpy as np
import gguf
from gguf import GGUFReader, GGMLQuantizationType as QT, GGUFValueType as VT

TOOL = MODE = QS = None  # set by main() (the module is also imported by tests/clients/)
FAILS = []
NCHECKS = [0]

LLAMA3_RE = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
             r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_RE = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|"
            r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")


def check(cond, what):
    NCHECKS[0] += 1
    if not cond:
        FAILS.append(what)
        print("FAIL:", what, file=sys.stderr)
    return cond


def run(args, want=0):
    r = subprocess.run(args, capture_output=True, text=True)
    if r.returncode != want:
        print(r.stdout, r.stderr, file=sys.stderr)
        raise SystemExit(f"{args[:3]}...: exit {r.returncode}, want {want}")
    return r


# ---- reading the checkpoint (independent of qshard) -------------------------------------

def read_safetensors(model_dir):
    """name -> float32 array (exact widening of F32/F16/BF16)."""
    out = {}
    files = [f for f in sorted(os.listdir(model_dir)) if f.endswith(".safetensors")]
    for fn in files:
        with open(os.path.join(model_dir, fn), "rb") as f:
            n = struct.unpack("<Q", f.read(8))[0]
            hdr = json.loads(f.read(n))
            base = 8 + n
            blob = f.read()
        for name, t in hdr.items():
            if name == "__metadata__":
                continue
            a, b = t["data_offsets"]
            raw = blob[a:b]
            if t["dtype"] == "F32":
                x = np.frombuffer(raw, "<f4").copy()
            elif t["dtype"] == "F16":
                x = np.frombuffer(raw, "<f2").astype(np.float32)
            elif t["dtype"] == "BF16":
                x = (np.frombuffer(raw, "<u2").astype(np.uint32) << 16).view(np.float32)
            else:
                raise SystemExit(f"dtype {t['dtype']}")
            out[name] = x.reshape(t["shape"])
        del base
    return out


def bf16_bits(x):
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    return (((u + 0x7FFF + ((u >> 16) & 1)) >> 16) & 0xFFFF).astype(np.uint16)


def permute(w, n_head):
    """The converter's LlamaModel.permute (HF rotate-half -> GGML interleaved rows)."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2) \
        .reshape(w.shape)


def unpermute(w, n_head):
    return w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2) \
        .reshape(w.shape)


# ---- reading the GGUF ------------------------------------------------------------------

def fields(path):
    """[(key, types tuple, value)] in file order; strings as bytes, numbers as Python."""
    r = GGUFReader(path)
    out = []
    for k, f in r.fields.items():
        if k.startswith("GGUF."):
            continue
        types = tuple(int(t) for t in f.types)
        if types[0] == VT.STRING:
            v = bytes(f.parts[f.data[0]])
        elif types[0] == VT.ARRAY:
            if types[-1] == VT.STRING:
                v = [bytes(f.parts[i]) for i in f.data]
            else:
                v = [f.parts[i][0].item() for i in f.data]
        else:
            v = f.parts[f.data[0]][0].item()
        out.append((k, types, v))
    return r, out


def f32(x):
    return float(np.float32(x))


def check_layout(r, path, align=32):
    """Offsets aligned, contiguous in info order, file ends after the last padded tensor."""
    size = os.path.getsize(path)
    first = r.tensors[0].data_offset if r.tensors else size
    check(first % align == 0, f"{path}: data section at {first} not aligned")
    pos = first
    for t in r.tensors:
        check(t.data_offset == pos, f"{path}: {t.name} at {t.data_offset}, expected {pos}")
        check(t.data_offset % align == 0, f"{path}: {t.name} offset not aligned")
        pos += (t.n_bytes + align - 1) // align * align
    check(pos == size, f"{path}: file size {size}, data ends at {pos}")
    # padding bytes are zero
    with open(path, "rb") as f:
        blob = f.read()
    for t in r.tensors:
        end = t.data_offset + t.n_bytes
        pad = blob[end:(end + align - 1) // align * align]
        check(pad == b"\0" * len(pad), f"{path}: {t.name} padding not zero")


def compare_kv(path, got, want):
    """got, want: [(key, types, value)] in order."""
    gk = [k for k, _, _ in got]
    wk = [k for k, _, _ in want]
    if not check(gk == wk, f"{path}: keys\n  got  {gk}\n  want {wk}"):
        return
    for (k, gt, gv), (_, wt, wv) in zip(got, want):
        check(gt == wt, f"{path}: {k} types {gt}, want {wt}")
        if isinstance(wv, list) and len(wv) > 20:
            bad = [i for i, (a, b) in enumerate(zip(gv, wv)) if a != b]
            check(len(gv) == len(wv) and not bad,
                  f"{path}: {k}: {len(gv)} vs {len(wv)} items, first diff at "
                  f"{bad[:3]}: {[(gv[i], wv[i]) for i in bad[:3]]}")
        else:
            check(gv == wv, f"{path}: {k} = {gv!r}, want {wv!r}")


# ---- expected metadata ------------------------------------------------------------------

U32 = (VT.UINT32,)
F32 = (VT.FLOAT32,)
STR = (VT.STRING,)
BOOL = (VT.BOOL,)


def sampling_kv(model_dir):
    """general.sampling.* as gguf-py's Metadata (the converter) writes them."""
    from pathlib import Path
    md = gguf.Metadata.load(None, Path(model_dir), None, 0)
    md.name = "x"
    w = gguf.GGUFWriter(None, "llama")
    md.set_gguf_meta_model(w)
    return [(k, (int(v.type),), v.value.encode() if v.type == VT.STRING else
             (f32(v.value) if v.type == VT.FLOAT32 else v.value))
            for k, v in w.kv_data[0].items() if k.startswith("general.sampling.")]


def expect_model_kv(cfg, name, file_type, model_dir):
    arch = {"LlamaForCausalLM": "llama", "MistralForCausalLM": "llama",
            "Qwen2ForCausalLM": "qwen2"}[cfg["architectures"][0]]
    heads = cfg["num_attention_heads"]
    head_dim = cfg.get("head_dim") or cfg["hidden_size"] // heads
    rope = cfg.get("rope_parameters") or cfg.get("rope_scaling") or {}
    theta = rope.get("rope_theta", cfg.get("rope_theta", 10000.0))
    kv = [("general.architecture", STR, arch.encode()),
          ("general.type", STR, b"model")] + sampling_kv(model_dir) + [
          ("general.name", STR, name.encode()),
          (f"{arch}.block_count", U32, cfg["num_hidden_layers"]),
          (f"{arch}.context_length", U32, cfg["max_position_embeddings"]),
          (f"{arch}.embedding_length", U32, cfg["hidden_size"]),
          (f"{arch}.feed_forward_length", U32, cfg["intermediate_size"]),
          (f"{arch}.attention.head_count", U32, heads),
          (f"{arch}.attention.head_count_kv", U32, cfg.get("num_key_value_heads", heads))]
    rtype = rope.get("rope_type", rope.get("type"))
    if rtype == "linear":
        kv += [(f"{arch}.rope.scaling.type", STR, b"linear"),
               (f"{arch}.rope.scaling.factor", F32, f32(rope["factor"]))]
    kv += [(f"{arch}.rope.freq_base", F32, f32(theta)),
           (f"{arch}.attention.layer_norm_rms_epsilon", F32, f32(cfg["rms_norm_eps"])),
           (f"{arch}.attention.key_length", U32, head_dim),
           (f"{arch}.attention.value_length", U32, head_dim)]
    if arch == "llama":
        kv += [(f"{arch}.vocab_size", U32, cfg["vocab_size"]),
               (f"{arch}.rope.dimension_count", U32, head_dim)]
    kv += [("general.file_type", U32, file_type),
           ("general.quantization_version", U32, 2)]
    return arch, kv


def special_kv(model_dir, n_vocab, load_merges):
    """The converter's special-token keys: gguf-py's SpecialVocab added to a GGUFWriter."""
    sv = gguf.SpecialVocab(model_dir, load_merges=load_merges, n_vocab=n_vocab)
    w = gguf.GGUFWriter(None, "llama")
    sv.add_to_gguf(w, quiet=True)
    out = []
    for k, v in w.kv_data[0].items():
        if k == "general.architecture":
            continue
        if v.type == VT.ARRAY:
            out.append((k, (VT.ARRAY, VT.STRING), [s.encode() for s in v.value]))
        elif v.type == VT.STRING:
            out.append((k, STR, v.value.encode()))
        else:
            out.append((k, (int(v.type),), v.value))
    return out


def spm_vocab_kv(sp, n_vocab, tok_dir):
    """tokens/scores/types of a SentencePiece model by the converter's rules."""
    toks = [f"[PAD{i}]".encode() for i in range(n_vocab)]
    scores = [-10000.0] * n_vocab
    types = [5] * n_vocab
    for i in range(min(sp.vocab_size(), n_vocab)):
        toks[i] = sp.id_to_piece(i).encode()
        scores[i] = f32(sp.get_score(i))
        types[i] = (2 if sp.is_unknown(i) else 3 if sp.is_control(i) else
                    5 if sp.is_unused(i) else 6 if sp.is_byte(i) else 1)
    p = os.path.join(tok_dir, "added_tokens.json")
    if os.path.exists(p):
        for k, i in json.load(open(p)).items():
            if i < n_vocab:
                toks[i], scores[i], types[i] = k.encode(), -1000.0, 4
    p = os.path.join(tok_dir, "tokenizer_config.json")
    if os.path.exists(p):
        for i, d in json.load(open(p)).get("added_tokens_decoder", {}).items():
            i = int(i)
            if i >= n_vocab:
                continue
            c = d["content"]
            if d.get("special") or (c.startswith("<|") and c.endswith("|>")):
                types[i] = 3
            else:
                c, types[i] = c.replace("\u2581", " "), 4
            toks[i], scores[i] = c.encode(), -1000.0
    return [("tokenizer.ggml.model", STR, b"llama"), ("tokenizer.ggml.pre", STR, b"default"),
            ("tokenizer.ggml.tokens", (VT.ARRAY, VT.STRING), toks),
            ("tokenizer.ggml.scores", (VT.ARRAY, VT.FLOAT32), scores),
            ("tokenizer.ggml.token_type", (VT.ARRAY, VT.INT32), types)]


def bpe_vocab_kv(tok_json, n_vocab, pre):
    """tokens/types of a tokenizer.json by the converter's get_vocab_base rules, read with
    the `tokenizers` library."""
    from tokenizers import Tokenizer
    tk = Tokenizer.from_file(tok_json)
    added = tk.get_added_tokens_decoder()
    toks, types = [], []
    for i in range(n_vocab):
        t = tk.id_to_token(i)
        if t is None:
            toks.append(f"[PAD{i}]".encode())
            types.append(5)
        elif i in added:
            if added[i].special or (t.startswith("<|") and t.endswith("|>")):
                types.append(3)
            else:
                t = t.replace("\u2581", " ")
                types.append(4)
            toks.append(t.encode())
        else:
            toks.append(t.encode())
            types.append(1)
    return [("tokenizer.ggml.model", STR, b"gpt2"), ("tokenizer.ggml.pre", STR, pre.encode()),
            ("tokenizer.ggml.tokens", (VT.ARRAY, VT.STRING), toks),
            ("tokenizer.ggml.token_type", (VT.ARRAY, VT.INT32), types)]


# ---- expected tensors -------------------------------------------------------------------

def expect_tensors(cfg, weight_type, overrides):
    """[(gguf name, hf name, numpy shape, type)] in qshard's file order."""
    h, L = cfg["hidden_size"], cfg["num_hidden_layers"]
    heads = cfg["num_attention_heads"]
    kvh = cfg.get("num_key_value_heads", heads)
    hd = cfg.get("head_dim") or h // heads
    inter, vocab = cfg["intermediate_size"], cfg["vocab_size"]
    qwen = cfg["architectures"][0] == "Qwen2ForCausalLM"
    qkv_bias = qwen or cfg.get("attention_bias", False)
    o_bias = not qwen and cfg.get("attention_bias", False)
    rope = cfg.get("rope_parameters") or cfg.get("rope_scaling") or {}
    out = []
    if rope.get("rope_type", rope.get("type")) == "llama3":
        out.append(("rope_freqs.weight", None, (hd // 2,), QT.F32))
    out.append(("token_embd.weight", "model.embed_tokens.weight", (vocab, h), weight_type))
    lin = [("attn_q", "self_attn.q_proj", heads * hd, h), ("attn_k", "self_attn.k_proj", kvh * hd, h),
           ("attn_v", "self_attn.v_proj", kvh * hd, h), ("attn_output", "self_attn.o_proj", h, heads * hd),
           ("ffn_gate", "mlp.gate_proj", inter, h), ("ffn_up", "mlp.up_proj", inter, h),
           ("ffn_down", "mlp.down_proj", h, inter)]
    for l in range(L):
        for g, hf, o, i in lin:
            if g == "attn_q":
                out.append((f"blk.{l}.attn_norm.weight", f"model.layers.{l}.input_layernorm.weight",
                            (h,), QT.F32))
            if g == "ffn_gate":
                out.append((f"blk.{l}.ffn_norm.weight",
                            f"model.layers.{l}.post_attention_layernorm.weight", (h,), QT.F32))
            out.append((f"blk.{l}.{g}.weight", f"model.layers.{l}.{hf}.weight", (o, i), weight_type))
            if (qkv_bias and g in ("attn_q", "attn_k", "attn_v")) or (o_bias and g == "attn_output"):
                out.append((f"blk.{l}.{g}.bias", f"model.layers.{l}.{hf}.bias", (o,), QT.F32))
    out.append(("output_norm.weight", "model.norm.weight", (h,), QT.F32))
    if not cfg.get("tie_word_embeddings", False):
        out.append(("output.weight", "lm_head.weight", (vocab, h), weight_type))
    return [(n, hf, s, overrides.get(n, t)) for n, hf, s, t in out]


def rope_freqs_f32(cfg):
    """The converter's llama3 factors, in float32 numpy ops."""
    rope = cfg.get("rope_parameters") or cfg.get("rope_scaling")
    hd = cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]
    base = np.float32(rope.get("rope_theta", cfg.get("rope_theta", 10000.0)))
    freqs = np.float32(1.0) / np.power(base, np.arange(0, hd, 2, dtype=np.float32) / np.float32(hd))
    factor, lo, hi = np.float32(rope["factor"]), rope["low_freq_factor"], rope["high_freq_factor"]
    old = rope["original_max_position_embeddings"]
    out = []
    for f in freqs:
        wl = np.float32(2 * np.pi) / f
        if wl < np.float32(old / hi):
            out.append(np.float32(1))
        elif wl > np.float32(old / lo):
            out.append(factor)
        else:
            s = (np.float32(old) / wl - np.float32(lo)) / np.float32(hi - lo)
            out.append(np.float32(1) / ((np.float32(1) - s) / factor + s))
    return np.array(out, dtype=np.float32)


def check_tensors(path, r, cfg, weights, expected, raw):
    """Tensor list, types, shapes and bytes against the checkpoint."""
    heads = cfg["num_attention_heads"]
    kvh = cfg.get("num_key_value_heads", heads)
    llama = cfg["architectures"][0] != "Qwen2ForCausalLM"
    got = [(t.name, tuple(int(x) for x in reversed(t.shape)), t.tensor_type) for t in r.tensors]
    want = [(n, tuple(s), t) for n, _, s, t in expected]
    if not check(got == want, f"{path}: tensors\n  got  {got[:6]}...\n  want {want[:6]}..."):
        return
    for t, (name, hf, shape, typ) in zip(r.tensors, expected):
        if hf is None:
            ref = rope_freqs_f32(cfg)
            d = np.asarray(t.data, dtype=np.float32)
            check(np.allclose(d, ref, rtol=3e-7, atol=0), f"{path}: rope_freqs {d} vs {ref}")
            continue
        w = weights[hf]
        nh = heads if ".attn_q." in name else kvh if ".attn_k." in name else 0
        perm = llama and nh > 0
        if name in raw:
            qb = np.asarray(t.data).view(np.uint8).tobytes()
            check(qb == raw[name]["permuted"], f"{path}: {name} bytes differ from the "
                  f"given (permuted) bytes")
            if typ == QT.Q8_0:
                deq = gguf.quants.dequantize(np.frombuffer(qb, np.uint8).reshape(shape[0], -1), typ)
            else:
                deq = np.frombuffer(qb, "<f4").reshape(shape)
            if perm:
                deq = unpermute(deq, nh)
            check(np.array_equal(deq, raw[name]["dequant"]),
                  f"{path}: {name} un-permuted dequantized rows differ")
            continue
        if typ == QT.F32:
            d = np.asarray(t.data, dtype=np.float32).reshape(shape)
            ref = w
        elif typ == QT.F16:
            d = np.asarray(t.data).view(np.uint16).reshape(shape)
            ref = w.astype(np.float16).view(np.uint16)
        else:
            d = np.asarray(t.data).view(np.uint16).reshape(shape)
            ref = bf16_bits(w)
        if perm:
            d = unpermute(d, nh)
        check(np.array_equal(d, ref), f"{path}: {name} ({typ.name}) bytes differ from the "
              f"checkpoint{' after un-permuting' if perm else ''}")


def quantize_raw(weights, cfg, names, tmp):
    """Caller bytes of checkpoint tensors in HF row order: Q8_0 blocks from gguf-py's
    quantizer for 2-D tensors, plain F32 for 1-D ones (a bias)."""
    heads = cfg["num_attention_heads"]
    kvh = cfg.get("num_key_value_heads", heads)
    llama = cfg["architectures"][0] != "Qwen2ForCausalLM"
    raw, args = {}, []
    for gname, hf in names:
        w = weights[hf]
        typ = QT.Q8_0 if w.ndim == 2 else QT.F32
        q = gguf.quants.quantize(w, QT.Q8_0) if typ == QT.Q8_0 else w.astype("<f4")
        nh = heads if ".attn_q." in gname else kvh if ".attn_k." in gname else 0
        p = os.path.join(tmp, gname + ".raw")
        q.tofile(p)
        permuted = permute(q, nh) if (llama and nh) else q
        # permuting quantized rows == quantizing permuted rows
        if llama and nh and typ == QT.Q8_0:
            check(np.array_equal(gguf.quants.quantize(permute(w, nh), QT.Q8_0), permuted),
                  f"{gname}: row permutation does not commute with Q8_0")
        raw[gname] = {"type": typ, "permuted": permuted.tobytes(),
                      "dequant": gguf.quants.dequantize(q, QT.Q8_0) if typ == QT.Q8_0 else w}
        args += ["--tensor-type", f"{gname}={typ.name}", "--raw", f"{gname}={p}"]
    return raw, args


def file_type_of(expected):
    ids = {QT.F32: 0, QT.F16: 1, QT.Q8_0: 7, QT.BF16: 32}
    count = {}
    for _, _, s, t in expected:
        if len(s) == 2:
            count[t] = count.get(t, 0) + s[0] * s[1]
    best = max(count.items(), key=lambda kv: (kv[1], -int(kv[0])))[0]
    return ids[best]


def write_and_check(tmp, model_dir, tag, weight_type, overrides, q8_names, tokenizer, vocab_kv,
                    special, name=None):
    """Writes the model's GGUF (1 and 3 writers) and checks everything."""
    cfg = json.load(open(os.path.join(model_dir, "config.json")))
    weights = read_safetensors(model_dir)
    raw, raw_args = quantize_raw(weights, cfg, q8_names, tmp)
    expected = expect_tensors(cfg, weight_type, dict(overrides, **{n: r["type"] for n, r in raw.items()}))
    out = os.path.join(tmp, f"{tag}.gguf")
    args = [TOOL, "model", model_dir, out, "--type", weight_type.name] + raw_args
    for n, t in overrides.items():
        args += ["--tensor-type", f"{n}={t.name}"]
    if tokenizer:
        args += ["--tokenizer", tokenizer]
    if name:
        args += ["--name", name]
    run(args)
    out3 = os.path.join(tmp, f"{tag}-w3.gguf")
    run(args[:3] + [out3] + args[4:] + ["--writers", "3"])
    check(open(out, "rb").read() == open(out3, "rb").read(),
          f"{tag}: 3 writers gave different bytes than 1")
    check(not [f for f in os.listdir(tmp) if ".tmp." in f], f"{tag}: temporary file left")
    r, got = fields(out)
    arch, want = expect_model_kv(cfg, name or os.path.basename(model_dir), file_type_of(expected),
                                 model_dir)
    compare_kv(out, got, want + vocab_kv + special + [("general.alignment", U32, 32)])
    check_layout(r, out)
    check_tensors(out, r, cfg, weights, expected, raw)
    return out


# ---- synthetic tokenizers ---------------------------------------------------------------

WORDS = ("the a little girl boy dog cat saw big red ball ran to park and they played "
         "happy sun tree was one day with her his mom said you can it is not").split()


def corpus(n=400, seed=1):
    rng = np.random.default_rng(seed)
    lines = []
    for _ in range(n):
        k = int(rng.integers(4, 12))
        lines.append(" ".join(WORDS[int(i)] for i in rng.integers(0, len(WORDS), k)) + ".")
    return lines


def make_bpe_tokenizer(path, regex, qwen):
    from tokenizers import (AddedToken, Regex, Tokenizer, decoders, models, normalizers,
                            pre_tokenizers, processors, trainers)
    tk = Tokenizer(models.BPE())
    if qwen:
        tk.normalizer = normalizers.NFC()
    tk.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(regex), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tk.decoder = decoders.ByteLevel()
    specials = ["<|endoftext|>", "<|im_start|>"] if qwen else ["<|begin_of_text|>",
                                                               "<|end_of_text|>"]
    tr = trainers.BpeTrainer(vocab_size=330, special_tokens=specials, show_progress=False,
                             initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tk.train_from_iterator(corpus(), tr)
    tk.add_special_tokens(["<|eot_id|>"])
    tk.add_tokens([AddedToken("\u2581extra word", special=False, normalized=False)])
    if not qwen:
        bos = tk.token_to_id("<|begin_of_text|>")
        tk.post_processor = processors.Sequence([
            processors.ByteLevel(trim_offsets=False),
            processors.TemplateProcessing(single="<|begin_of_text|> $A",
                                          pair="<|begin_of_text|> $A <|begin_of_text|> $B",
                                          special_tokens=[("<|begin_of_text|>", bos)])])
    else:
        tk.post_processor = processors.ByteLevel(trim_offsets=False)
    tk.save(path)
    return tk


def make_spm(path_model, vocab=320):
    import sentencepiece as spm
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus()), model_writer=buf, vocab_size=vocab, model_type="bpe",
        byte_fallback=True, user_defined_symbols=["<ud>"], control_symbols=["<ctl>"],
        character_coverage=1.0, num_threads=1, unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
        hard_vocab_limit=False, minloglevel=2)
    with open(path_model, "wb") as f:
        f.write(buf.getvalue())
    return spm.SentencePieceProcessor(model_file=path_model)


def synth(tmp, name, *args):
    d = os.path.join(tmp, name)
    run([QS, "synth-model", *args, d])
    return d


# ---- the checks -------------------------------------------------------------------------

def test_kv(tmp):
    """One key of every value type, arrays of every scalar type and strings, tensors."""
    for align in (None, 64):
        out = os.path.join(tmp, f"kv{align}.gguf")
        run([TOOL, "kv", out] + (["--alignment", str(align)] if align else []))
        r, got = fields(out)
        want = [("general.architecture", STR, b"llama"),
                ("test.u8", (VT.UINT8,), 200), ("test.i8", (VT.INT8,), -100),
                ("test.u16", (VT.UINT16,), 60000), ("test.i16", (VT.INT16,), -30000),
                ("test.u32", U32, 4000000000), ("test.i32", (VT.INT32,), -2000000000),
                ("test.u64", (VT.UINT64,), 10000000000000000000),
                ("test.i64", (VT.INT64,), -9000000000000000000),
                ("test.f32", F32, 3.25), ("test.f64", (VT.FLOAT64,), -1.5e300),
                ("test.bool_true", BOOL, True), ("test.bool_false", BOOL, False),
                ("test.str", STR, "h\u00e9llo \u2581world".encode()),
                ("test.str_nul", STR, b"a\0b"),
                ("test.replaced", STR, b"second"),
                ("test.arr_u8", (VT.ARRAY, VT.UINT8), [0, 1, 255]),
                ("test.arr_i8", (VT.ARRAY, VT.INT8), [-128, 0, 127]),
                ("test.arr_u16", (VT.ARRAY, VT.UINT16), [0, 65535]),
                ("test.arr_i16", (VT.ARRAY, VT.INT16), [-32768, 32767]),
                ("test.arr_u32", (VT.ARRAY, VT.UINT32), [0, 4294967295, 7]),
                ("test.arr_i32", (VT.ARRAY, VT.INT32), [-2147483648, 2147483647]),
                ("test.arr_u64", (VT.ARRAY, VT.UINT64), [0, 18446744073709551615]),
                ("test.arr_i64", (VT.ARRAY, VT.INT64), [-9223372036854775808, 9223372036854775807]),
                ("test.arr_f32", (VT.ARRAY, VT.FLOAT32), [-0.5, f32(1e-30), 65504.0]),
                ("test.arr_f64", (VT.ARRAY, VT.FLOAT64), [3.141592653589793, -2.5e-310]),
                ("test.arr_bool", (VT.ARRAY, VT.BOOL), [True, False, True]),
                ("test.arr_str", (VT.ARRAY, VT.STRING),
                 [b"", b"<s>", "\u2581the".encode(), b"x y"]),
                ("general.alignment", U32, align or 32)]
        compare_kv(out, got, want)
        check(r.alignment == (align or 32), f"{out}: reader alignment {r.alignment}")
        check_layout(r, out, align or 32)
        specs = [("t.f32", QT.F32, (3, 5)), ("t.f16", QT.F16, (2, 64)), ("t.bf16", QT.BF16, (4,)),
                 ("t.q8_0", QT.Q8_0, (3, 64)), ("t.q4_k", QT.Q4_K, (2, 1, 256)),
                 ("t.f32_4d", QT.F32, (2, 3, 1, 5))]
        check([(t.name, t.tensor_type, tuple(int(x) for x in reversed(t.shape))) for t in r.tensors]
              == specs, f"{out}: tensor table")
        for k, t in enumerate(r.tensors):
            b = np.asarray(t.data).view(np.uint8).tobytes()
            ref = bytes((k * 7 + i) % 251 for i in range(t.n_bytes))
            check(b == ref, f"{out}: {t.name} bytes")


def test_llama_bpe(tmp):
    """Llama with a Llama-3-style tokenizer.json; F16 default, BF16/F32 overrides, Q8_0 q/k."""
    d = synth(tmp, "llama3tok", "--arch", "llama", "--layers", "3", "--hidden", "256",
              "--heads", "4", "--kv-heads", "2", "--intermediate", "320", "--seed", "3")
    make_bpe_tokenizer(os.path.join(d, "tokenizer.json"), LLAMA3_RE, qwen=False)
    json.dump({"bos_token": "<|begin_of_text|>", "eos_token": "<|end_of_text|>",
               "add_prefix_space": False,
               "chat_template": "{{ bos_token }}{% for m in messages %}{{ m.content }}{% endfor %}"},
              open(os.path.join(d, "tokenizer_config.json"), "w"))
    json.dump({"temperature": 0.6, "top_p": 0.9, "top_k": 50, "do_sample": True,
               "bos_token_id": 1, "eos_token_id": [2, 3], "min_p": None},
              open(os.path.join(d, "generation_config.json"), "w"))
    check(len(sampling_kv(d)) == 3, "reference: three sampling keys")
    cfg = json.load(open(os.path.join(d, "config.json")))
    # LlamaModel.set_vocab writes add_space_prefix (from add_prefix_space) first
    vocab = [("tokenizer.ggml.add_space_prefix", BOOL, False)] + \
        bpe_vocab_kv(os.path.join(d, "tokenizer.json"), cfg["vocab_size"], "llama-bpe")
    # a merge with spaces inside its parts (written as U+0120 by the converter); appended
    # after the vocabulary was read, since the tokenizers library would refuse it
    tj = os.path.join(d, "tokenizer.json")
    j = json.load(open(tj))
    j["model"]["merges"].append(["a b", "c"])
    json.dump(j, open(tj, "w"))
    sp = special_kv(d, None, True)
    check(any(k == "tokenizer.ggml.merges" and v[-1] == "a\u0120b c".encode() for k, _, v in sp),
          "reference: spaces in merges")
    check(any(k == "tokenizer.ggml.add_bos_token" and v is True for k, _, v in sp),
          "reference: TemplateProcessing should give add_bos_token")
    over = {"token_embd.weight": QT.BF16, "blk.0.attn_v.weight": QT.F32,
            "blk.2.attn_q.weight": QT.F32, "output.weight": QT.BF16}
    q8 = [("blk.1.attn_q.weight", "model.layers.1.self_attn.q_proj.weight"),
          ("blk.1.attn_k.weight", "model.layers.1.self_attn.k_proj.weight"),
          ("blk.2.ffn_down.weight", "model.layers.2.mlp.down_proj.weight")]
    write_and_check(tmp, d, "llama-bpe", QT.F16, over, q8, None, vocab, sp, name="synth llama")


def test_qwen2_bpe(tmp):
    """Qwen2: tied embeddings, q/k/v biases (no permutation), Qwen2 pre-tokenizer, string
    merges, eos/pad from tokenizer_config, bos from config.json."""
    d = synth(tmp, "qwen2tok", "--arch", "qwen2", "--layers", "2", "--hidden", "128",
              "--heads", "2", "--kv-heads", "1", "--tie", "--dtype", "f16", "--seed", "4")
    tj = os.path.join(d, "tokenizer.json")
    make_bpe_tokenizer(tj, QWEN2_RE, qwen=True)
    j = json.load(open(tj))
    j["model"]["merges"] = [" ".join(m) if isinstance(m, list) else m for m in j["model"]["merges"]]
    json.dump(j, open(tj, "w"))
    json.dump({"bos_token": None, "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>",
               "add_prefix_space": False, "unk_token": None,
               "chat_template": "{% for m in messages %}<|im_start|>{{ m.content }}{% endfor %}"},
              open(os.path.join(d, "tokenizer_config.json"), "w"))
    cfg = json.load(open(os.path.join(d, "config.json")))
    vocab = bpe_vocab_kv(tj, cfg["vocab_size"], "qwen2")
    sp = special_kv(d, None, True)
    q8 = [("blk.0.attn_q.weight", "model.layers.0.self_attn.q_proj.weight"),
          ("blk.1.attn_k.weight", "model.layers.1.self_attn.k_proj.weight")]
    write_and_check(tmp, d, "qwen2-bpe", QT.BF16, {"blk.1.ffn_up.weight": QT.F32}, q8, None,
                    vocab, sp, name="synth qwen2")


def test_mistral_spm(tmp):
    """Mistral (GQA, sliding window) with a SentencePiece model trained here: byte pieces,
    user-defined and control pieces, added_tokens.json, added_tokens_decoder, add flags,
    chat_template.jinja; F32 weights."""
    d = synth(tmp, "mistralspm", "--arch", "mistral", "--layers", "2", "--hidden", "128",
              "--heads", "4", "--kv-heads", "2", "--sliding-window", "64", "--seed", "5")
    sp = make_spm(os.path.join(d, "tokenizer.model"))
    n = sp.vocab_size()
    json.dump({"<added_a>": n, "<added_b>": 600}, open(os.path.join(d, "added_tokens.json"), "w"))
    json.dump({"add_bos_token": True, "add_eos_token": False, "add_prefix_space": True,
               "bos_token": "<s>", "eos_token": "</s>",
               "added_tokens_decoder": {str(n + 1): {"content": "<|special_x|>", "special": False},
                                        str(n + 2): {"content": "\u2581user tok", "special": False},
                                        str(n + 3): {"content": "<sys>", "special": True}}},
              open(os.path.join(d, "tokenizer_config.json"), "w"))
    with open(os.path.join(d, "generation_config.json"), "w") as f:
        f.write("{not json")  # skipped, as the converter skips it
    with open(os.path.join(d, "chat_template.jinja"), "w") as f:
        f.write("{% for m in messages %}[INST] {{ m.content }} [/INST]{% endfor %}")
    cfg = json.load(open(os.path.join(d, "config.json")))
    vocab = spm_vocab_kv(sp, cfg["vocab_size"], d)
    types = dict(zip([t for t in vocab[2][2]], vocab[4][2]))
    check(types.get(b"<ud>") == 1 and types.get(b"<ctl>") == 3 and types.get(b"<0x41>") == 6,
          "reference: SentencePiece piece types as expected")
    spk = special_kv(d, cfg["vocab_size"], False)
    vocab = [("tokenizer.ggml.add_space_prefix", BOOL, True)] + vocab
    write_and_check(tmp, d, "mistral-spm", QT.F32, {}, [], None, vocab, spk, name="synth mistral")


def test_rope(tmp):
    """llama3 RoPE: a rope_freqs.weight tensor; linear RoPE: rope.scaling keys."""
    for kind in ("llama3", "linear"):
        d = synth(tmp, f"rope-{kind}", "--arch", "llama", "--layers", "1", "--hidden", "256",
                  "--heads", "4", "--seed", "6")
        p = os.path.join(d, "config.json")
        cfg = json.load(open(p))
        cfg["max_position_embeddings"] = 256
        cfg["rope_scaling"] = ({"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                "high_freq_factor": 4.0, "original_max_position_embeddings": 64}
                               if kind == "llama3" else {"type": "linear", "factor": 2.5})
        json.dump(cfg, open(p, "w"))
        if kind == "llama3":
            f = rope_freqs_f32(cfg)
            check(np.any((f > 1) & (f < 8)), "llama3 test should reach the smooth branch")
        sp = make_spm(os.path.join(d, "tokenizer.model"))
        vocab = spm_vocab_kv(sp, cfg["vocab_size"], d)
        write_and_check(tmp, d, f"rope-{kind}", QT.F32, {}, [], None, vocab,
                        special_kv(d, cfg["vocab_size"], False))


def write_safetensors(path, tensors):
    """F32 safetensors (names sorted)."""
    hdr, off, blobs = {}, 0, []
    for name in sorted(tensors):
        b = np.ascontiguousarray(tensors[name], dtype="<f4").tobytes()
        hdr[name] = {"dtype": "F32", "shape": list(tensors[name].shape), "data_offsets": [off, off + len(b)]}
        off += len(b)
        blobs.append(b)
    h = json.dumps(hdr).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def test_llama_bias(tmp):
    """Llama with attention_bias: q/k biases permuted like their rows (also when given as
    caller bytes), v/o biases kept; F32 checkpoint."""
    d = synth(tmp, "llamabias", "--arch", "llama", "--layers", "2", "--hidden", "256",
              "--heads", "4", "--kv-heads", "2", "--dtype", "f32", "--seed", "7")
    p = os.path.join(d, "config.json")
    cfg = json.load(open(p))
    cfg["attention_bias"] = True
    json.dump(cfg, open(p, "w"))
    w = read_safetensors(d)
    rng = np.random.default_rng(7)
    for l in range(2):
        for proj, n in (("q", 256), ("k", 128), ("v", 128), ("o", 256)):
            w[f"model.layers.{l}.self_attn.{proj}_proj.bias"] = rng.standard_normal(n).astype(np.float32)
    os.unlink(os.path.join(d, "model.safetensors"))
    write_safetensors(os.path.join(d, "model.safetensors"), w)
    sp = make_spm(os.path.join(d, "tokenizer.model"))
    vocab = spm_vocab_kv(sp, cfg["vocab_size"], d)
    raw = [("blk.1.attn_q.bias", "model.layers.1.self_attn.q_proj.bias"),
           ("blk.1.attn_k.bias", "model.layers.1.self_attn.k_proj.bias"),
           ("blk.0.attn_k.weight", "model.layers.0.self_attn.k_proj.weight")]
    write_and_check(tmp, d, "llama-bias", QT.BF16, {}, raw, None, vocab,
                    special_kv(d, cfg["vocab_size"], False))


def test_errors(tmp):
    """Bad tokenizer input: exit 2, one line naming the file (or directory), nothing left."""
    d = synth(tmp, "errs", "--arch", "llama", "--layers", "1", "--hidden", "128", "--heads", "2")
    out = os.path.join(tmp, "errs-out")
    os.mkdir(out)

    def expect_fail(name, args, needle):
        target = os.path.join(out, name + ".gguf")
        r = subprocess.run([TOOL, "model", d, target] + args, capture_output=True, text=True)
        lines = r.stderr.strip().splitlines()
        check(r.returncode == 2, f"{name}: exit {r.returncode}, want 2 ({r.stderr.strip()})")
        check(len(lines) == 1 and lines[0].startswith("qshard: error: ") and needle in lines[0],
              f"{name}: stderr {r.stderr!r} lacks {needle!r}")
        check(os.listdir(out) == [], f"{name}: left {os.listdir(out)}")

    expect_fail("none", [], d + ": no tokenizer.model or tokenizer.json")
    bad = os.path.join(tmp, "bad.model")
    good = os.path.join(tmp, "good.model")
    make_spm(good)
    blob = open(good, "rb").read()
    open(bad, "wb").write(blob[:101])
    expect_fail("truncated", ["--tokenizer", bad], bad + ": not a SentencePiece model")
    open(bad, "wb").write(b"\x0f\x00garbage")
    expect_fail("garbage", ["--tokenizer", bad], bad + ": not a SentencePiece model")
    tj = os.path.join(tmp, "tok.json")
    make_bpe_tokenizer(tj, LLAMA3_RE, qwen=False)
    j = json.load(open(tj))
    j2 = dict(j, model={"type": "Unigram", "vocab": []})
    json.dump(j2, open(tj, "w"))
    expect_fail("unigram", ["--tokenizer", tj], tj + ": tokenizer model 'Unigram' is not supported")
    j3 = dict(j, pre_tokenizer={"type": "Whitespace"})
    json.dump(j3, open(tj, "w"))
    expect_fail("pre", ["--tokenizer", tj], tj + ": pre_tokenizer is not recognized")
    j4 = dict(j, model=dict(j["model"], byte_fallback=True), decoder={"type": "Sequence"})
    json.dump(j4, open(tj, "w"))
    expect_fail("fallback", ["--tokenizer", tj], tj + ": a BPE tokenizer with byte_fallback")
    j5 = dict(j, model=dict(j["model"], vocab=dict(j["model"]["vocab"], toolarge=600)))
    json.dump(j5, open(tj, "w"))
    expect_fail("range", ["--tokenizer", tj], tj + ": model.vocab id 600 is not below")
    open(tj, "w").write("{not json")
    expect_fail("json", ["--tokenizer", tj], tj + ":1: invalid JSON")
    expect_fail("missing", ["--tokenizer", os.path.join(tmp, "nope.model")],
                "nope.model: tokenizer file not found")
    # a tokenizer directory works like the model directory's own files
    tokdir = os.path.join(tmp, "tokdir")
    os.mkdir(tokdir)
    open(os.path.join(tokdir, "tokenizer.model"), "wb").write(blob)
    target = os.path.join(out, "dir.gguf")
    run([TOOL, "model", d, target, "--tokenizer", tokdir])
    _, got = fields(target)
    import sentencepiece as spm
    sp = spm.SentencePieceProcessor(model_file=good)
    check([kv for kv in got if kv[0].startswith("tokenizer.ggml.") and not kv[0].endswith("_id")]
          == spm_vocab_kv(sp, 512, tokdir), "tokenizer directory")
    os.unlink(target)


def test_fixture(tmp):
    shared = os.environ.get("QS_SHARED_DIR", "")
    model = os.path.join(shared, "fixtures", "tinyllama-a")
    spm_path = os.path.join(shared, "fixtures", "tokenizer", "tok512.model")
    if not os.path.isdir(model):
        if os.environ.get("QS_REQUIRE_SHARED") == "1":
            raise SystemExit(f"fixture missing: {model}")
        print("skip: no shared fixtures")
        raise SystemExit(77)
    import sentencepiece as spm
    sp = spm.SentencePieceProcessor(model_file=spm_path)
    cfg = json.load(open(os.path.join(model, "config.json")))
    check(sp.vocab_size() == cfg["vocab_size"] == 512, "tok512 and tinyllama-a vocab 512")
    vocab = spm_vocab_kv(sp, cfg["vocab_size"], os.path.dirname(spm_path))
    spk = special_kv(model, cfg["vocab_size"], False)
    check(spk == [("tokenizer.ggml.bos_token_id", U32, 1), ("tokenizer.ggml.eos_token_id", U32, 2)],
          f"reference special tokens {spk}")
    lin = [(g, h) for l in range(cfg["num_hidden_layers"]) for g, h in
           [(f"blk.{l}.attn_q.weight", f"model.layers.{l}.self_attn.q_proj.weight"),
            (f"blk.{l}.attn_k.weight", f"model.layers.{l}.self_attn.k_proj.weight"),
            (f"blk.{l}.attn_v.weight", f"model.layers.{l}.self_attn.v_proj.weight"),
            (f"blk.{l}.attn_output.weight", f"model.layers.{l}.self_attn.o_proj.weight"),
            (f"blk.{l}.ffn_gate.weight", f"model.layers.{l}.mlp.gate_proj.weight"),
            (f"blk.{l}.ffn_up.weight", f"model.layers.{l}.mlp.up_proj.weight"),
            (f"blk.{l}.ffn_down.weight", f"model.layers.{l}.mlp.down_proj.weight")]]
    for typ in (QT.F32, QT.F16, QT.BF16):
        write_and_check(tmp, model, f"tinyllama-{typ.name}", typ, {}, [], spm_path, vocab, spk)
    write_and_check(tmp, model, "tinyllama-Q8_0", QT.F16, {}, lin, spm_path, vocab, spk)
    # the vocabulary is exactly the SentencePiece model's
    r = GGUFReader(os.path.join(tmp, "tinyllama-F32.gguf"))
    toks = r.fields["tokenizer.ggml.tokens"]
    pieces = [bytes(toks.parts[i]).decode() for i in toks.data]
    check(pieces == [sp.id_to_piece(i) for i in range(512)], "tinyllama vocabulary != tok512")


def main():
    global TOOL, MODE, QS
    TOOL, MODE, QS = sys.argv[1], sys.argv[2], os.environ["QS_BIN"]
    with tempfile.TemporaryDirectory(prefix="qs-gguf-") as tmp:
        if MODE == "synth":
            test_kv(tmp)
            test_llama_bpe(tmp)
            test_qwen2_bpe(tmp)
            test_mistral_spm(tmp)
            test_rope(tmp)
            test_llama_bias(tmp)
            test_errors(tmp)
        elif MODE == "fixture":
            test_fixture(tmp)
        else:
            raise SystemExit(f"mode {MODE}")
    print(f"gguf {MODE}: {NCHECKS[0]} checks,", "ok" if not FAILS else f"{len(FAILS)} FAILED")
    return 0 if not FAILS else 1


if __name__ == "__main__":
    sys.exit(main())
