#!/usr/bin/python3
"""make_bad_models.py: writes broken Hugging Face model directories for the bad-input tests.

Usage: make_bad_models.py OUT_DIR

Each case is OUT_DIR/<case>/, a small valid Llama model (config.json + safetensors written by
the tiny writer below) with exactly one defect. OUT_DIR/cases.json lists them:
  [{"name", "dir" (relative to OUT_DIR), "expect_file" (a file name the error message must
    contain), "expect_substr" (a word of the cause, compared case-insensitively)}, ...]
Every case must make qshard fail with a one-line QS_ERR_INPUT (exit 2). The layout is stable:
other suites (qshard inspect, mpiexec qshard run) reuse it. Deterministic: no randomness
beyond a fixed seed, so reruns give identical bytes.
"""
import json
import os
import shutil
import struct
import sys

import numpy as np

BASE_CFG = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_size": 16,
    "intermediate_size": 32,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "num_hidden_layers": 1,
    "vocab_size": 32,
    "max_position_embeddings": 64,
    "rms_norm_eps": 1e-05,
    "rope_theta": 10000.0,
    "tie_word_embeddings": False,
    "hidden_act": "silu",
    "torch_dtype": "bfloat16",
}

DTYPE_SIZE = {"F32": 4, "F16": 2, "BF16": 2, "I32": 4, "F64": 8}


def base_tensors(cfg=BASE_CFG, layers=None):
    """name -> float32 array, model order, for a Llama config."""
    rng = np.random.default_rng(1234)
    h, i = cfg["hidden_size"], cfg["intermediate_size"]
    hd = h // cfg["num_attention_heads"]
    q, kv = cfg["num_attention_heads"] * hd, cfg["num_key_value_heads"] * hd
    v = cfg["vocab_size"]
    t = {"model.embed_tokens.weight": rng.standard_normal((v, h)) * 0.1}
    for l in range(cfg["num_hidden_layers"] if layers is None else layers):
        p = f"model.layers.{l}."
        t[p + "input_layernorm.weight"] = 1 + 0.01 * rng.standard_normal(h)
        t[p + "self_attn.q_proj.weight"] = rng.standard_normal((q, h)) / np.sqrt(h)
        t[p + "self_attn.k_proj.weight"] = rng.standard_normal((kv, h)) / np.sqrt(h)
        t[p + "self_attn.v_proj.weight"] = rng.standard_normal((kv, h)) / np.sqrt(h)
        t[p + "self_attn.o_proj.weight"] = rng.standard_normal((h, q)) / np.sqrt(q)
        t[p + "post_attention_layernorm.weight"] = 1 + 0.01 * rng.standard_normal(h)
        t[p + "mlp.gate_proj.weight"] = rng.standard_normal((i, h)) / np.sqrt(h)
        t[p + "mlp.up_proj.weight"] = rng.standard_normal((i, h)) / np.sqrt(h)
        t[p + "mlp.down_proj.weight"] = rng.standard_normal((h, i)) / np.sqrt(i)
    t["model.norm.weight"] = 1 + 0.01 * rng.standard_normal(h)
    t["lm_head.weight"] = rng.standard_normal((v, h)) / np.sqrt(h)
    return {k: np.asarray(a, dtype=np.float32) for k, a in t.items()}


def raw(a, dtype):
    """Little-endian bytes of float32 array `a` in `dtype`."""
    a = np.ascontiguousarray(a, dtype=np.float32)
    if dtype == "F32":
        return a.astype("<f4").tobytes()
    if dtype == "F16":
        return a.astype("<f2").tobytes()
    if dtype == "F64":
        return a.astype("<f8").tobytes()
    if dtype == "I32":
        return np.round(a * 100).astype("<i4").tobytes()
    if dtype == "BF16":  # round to nearest even
        u = a.view(np.uint32).astype(np.uint64)
        u = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
        return u.astype("<u2").tobytes()
    raise ValueError(dtype)


class Entry:
    """One tensor of a file: header fields and data bytes (offsets computed unless given)."""

    def __init__(self, name, dtype, shape, data, offsets=None):
        self.name, self.dtype, self.shape, self.data, self.offsets = name, dtype, list(shape), data, offsets


def entries_of(tensors, dtype="BF16"):
    return [Entry(n, dtype, a.shape, raw(a, dtype)) for n, a in sorted(tensors.items())]


def header_text(entries, metadata=True):
    """JSON text of the header, written by hand so duplicate keys can be expressed."""
    parts = []
    if metadata:
        parts.append('"__metadata__":{"format":"pt"}')
    off = 0
    for e in entries:
        offs = e.offsets if e.offsets is not None else [off, off + len(e.data)]
        off += len(e.data)
        parts.append(json.dumps(e.name) + ":" + json.dumps(
            {"dtype": e.dtype, "shape": e.shape, "data_offsets": offs}, separators=(",", ":")))
    return "{" + ",".join(parts) + "}"


def st_bytes(entries=None, header=None, data=None, prefix=None, pad=True):
    """A safetensors file: 8-byte length, header (padded with spaces to 8), data."""
    if header is None:
        header = header_text(entries)
    hb = header.encode("utf-8")
    if pad:
        hb += b" " * (-len(hb) % 8)
    if data is None:
        data = b"".join(e.data for e in entries)
    n = len(hb) if prefix is None else prefix
    return struct.pack("<Q", n) + hb + data


def write(path, content):
    mode = "wb" if isinstance(content, bytes) else "w"
    with open(path, mode) as f:
        f.write(content)


def model_dir(out, name, files, config=None, config_text=None):
    d = os.path.join(out, name)
    os.makedirs(d)
    if config_text is not None:
        write(os.path.join(d, "config.json"), config_text)
    elif config is not False:
        write(os.path.join(d, "config.json"), json.dumps(config or BASE_CFG, indent=2) + "\n")
    for fname, content in files.items():
        write(os.path.join(d, fname), content)
    return d


SHARDS = ("model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors")


def sharded(tensors):
    """Two shards (first half of the names, second half) and their weight_map."""
    names = list(tensors)
    cut = len(names) // 2
    parts = [{n: tensors[n] for n in names[:cut]}, {n: tensors[n] for n in names[cut:]}]
    wm = {n: SHARDS[0] for n in parts[0]}
    wm.update({n: SHARDS[1] for n in parts[1]})
    return parts, wm


def index_text(wm):
    return json.dumps({"metadata": {"total_size": 0}, "weight_map": dict(sorted(wm.items()))}, indent=2)


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    out = sys.argv[1]
    if os.path.isdir(out):
        shutil.rmtree(out)
    os.makedirs(out)
    cases = []

    def case(name, expect_file, expect_substr, files, **kw):
        model_dir(out, name, files, **kw)
        cases.append({"name": name, "dir": name, "expect_file": expect_file,
                      "expect_substr": expect_substr})

    T = base_tensors()
    E = entries_of(T)
    good = st_bytes(E)
    MS = "model.safetensors"

    # --- the safetensors container ---
    case("truncated_file", MS, "truncated", {MS: good[:-100]})
    case("header_len_beyond_file", MS, "file size", {MS: st_bytes(E, prefix=len(good))})
    case("header_len_huge", MS, "limit", {MS: st_bytes(E, prefix=1 << 40)})
    case("file_shorter_than_8_bytes", MS, "too short", {MS: good[:5]})
    case("empty_model_safetensors", MS, "empty", {MS: b""})
    case("invalid_json_header", MS, "JSON", {MS: st_bytes(header='{"a": [1, 2', data=b"")})
    case("header_not_object", MS, "object", {MS: st_bytes(header="[1, 2, 3]", data=b"")})
    case("header_trailing_garbage", MS, "trailing characters",
         {MS: st_bytes(header=header_text(E) + "xx", data=b"".join(e.data for e in E))})

    def shifted(idx, delta_begin, delta_end):
        es = entries_of(T)
        off = 0
        for e in es:
            e.offsets = [off, off + len(e.data)]
            off += len(e.data)
        es[idx].offsets = [es[idx].offsets[0] + delta_begin, es[idx].offsets[1] + delta_end]
        return es

    es = shifted(3, -4, -4)  # overlaps tensor 2 by 4 bytes
    case("overlapping_offsets", MS, "overlap", {MS: st_bytes(es)})
    es = entries_of(T)
    off = 0
    for k, e in enumerate(es):  # a 4-byte hole before tensor 3, data grows by 4 bytes
        if k == 3:
            off += 4
        e.offsets = [off, off + len(e.data)]
        off += len(e.data)
    data = b"".join(e.data if k != 3 else b"\0" * 4 + e.data for k, e in enumerate(es))
    case("gapped_offsets", MS, "gap", {MS: st_bytes(es, data=data)})
    es = entries_of(T)
    off = 8
    for e in es:
        e.offsets = [off, off + len(e.data)]
        off += len(e.data)
    case("offsets_not_from_zero", MS, "instead of 0",
         {MS: st_bytes(es, data=b"\0" * 8 + b"".join(e.data for e in es))})
    case("trailing_bytes", MS, "trailing", {MS: good + b"\0" * 16})
    es = entries_of(T)
    norm = [e for e in es if e.name == "model.norm.weight"][0]
    norm.shape = [17]
    case("dtype_shape_mismatch", MS, "byte length", {MS: st_bytes(es)})
    es = entries_of(T)
    norm = [e for e in es if e.name == "model.norm.weight"][0]
    norm.dtype, norm.data = "F64", raw(T["model.norm.weight"], "F64")
    case("unsupported_dtype_f64", MS, "F64", {MS: st_bytes(es)})
    es = entries_of(T)
    es[0].dtype = "Q4_K"
    case("unknown_dtype", MS, "unknown dtype", {MS: st_bytes(es)})
    es = shifted(0, 0, 0)
    es[0].offsets = [-4, es[0].offsets[1]]
    case("negative_offset", MS, "non-negative integer", {MS: st_bytes(es)})
    es = shifted(0, 0, 0)
    es[0].offsets = [0.5, es[0].offsets[1] + 0.5]
    case("fractional_offset", MS, "non-negative integer", {MS: st_bytes(es)})
    es = shifted(0, 0, 0)
    es[-1].offsets = [es[-1].offsets[0], 2 ** 53 + 2]
    case("offset_beyond_2_53", MS, "2^53", {MS: st_bytes(es)})
    es = entries_of(T)
    es[1].shape = [-es[1].shape[0]] + es[1].shape[1:]
    case("negative_shape_entry", MS, "non-negative integer", {MS: st_bytes(es)})
    es = entries_of(T)
    dup = Entry(es[0].name, es[0].dtype, es[0].shape, es[0].data)
    case("duplicate_tensor_name", MS, "duplicate", {MS: st_bytes(es + [dup])})

    # --- the tensors the architecture needs ---
    t2 = dict(T)
    del t2["model.layers.0.mlp.up_proj.weight"]
    case("missing_tensor", MS, "missing", {MS: st_bytes(entries_of(t2))})
    t2 = dict(T)
    del t2["lm_head.weight"]
    case("missing_lm_head_untied", MS, "lm_head.weight", {MS: st_bytes(entries_of(t2))})
    t2 = dict(T)
    t2["model.layers.0.self_attn.q_proj.weight"] = T["model.layers.0.self_attn.q_proj.weight"][:8]
    case("wrong_shape", MS, "shape", {MS: st_bytes(entries_of(t2))})
    es = entries_of(T)
    k = [e for e in es if e.name == "model.layers.0.self_attn.k_proj.weight"][0]
    k.dtype, k.data = "I32", raw(T[k.name], "I32")
    case("weight_int32", MS, "float dtype", {MS: st_bytes(es)})
    t2 = base_tensors(layers=2)
    case("extra_layer_in_checkpoint", MS, "num_hidden_layers", {MS: st_bytes(entries_of(t2))})
    qcfg = dict(BASE_CFG, architectures=["Qwen2ForCausalLM"], model_type="qwen2")
    case("qwen2_missing_bias", MS, "q_proj.bias", {MS: good}, config=qcfg)
    case("no_checkpoint", "no_checkpoint", "no model.safetensors", {})

    # --- sharded checkpoints and the index ---
    IX = "model.safetensors.index.json"
    parts, wm = sharded(T)
    shard_files = {SHARDS[0]: st_bytes(entries_of(parts[0])), SHARDS[1]: st_bytes(entries_of(parts[1]))}
    w = dict(wm)
    w[next(iter(w))] = "../" + SHARDS[0]
    case("dotdot_in_weight_map", IX, "uses '..'", dict(shard_files, **{IX: index_text(w)}))
    w = dict(wm)
    w[next(iter(w))] = "/tmp/" + SHARDS[0]
    case("absolute_path_in_weight_map", IX, "absolute", dict(shard_files, **{IX: index_text(w)}))
    w = dict(wm)
    w[next(iter(w))] = "sub/" + SHARDS[0]
    case("subdir_in_weight_map", IX, "directory", dict(shard_files, **{IX: index_text(w)}))
    w = dict(wm)
    w[next(iter(w))] = "model-00003-of-00003.safetensors"
    case("weight_map_names_missing_shard", "model-00003-of-00003.safetensors", "cannot open",
         dict(shard_files, **{IX: index_text(w)}))
    w = dict(wm)
    w["model.layers.0.self_attn.rotary_emb.inv_freq"] = SHARDS[0]
    case("index_tensor_absent_from_shard", SHARDS[0], "absent",
         dict(shard_files, **{IX: index_text(w)}))
    w = dict(wm)
    del w["model.norm.weight"]
    missing_from = SHARDS[0] if wm["model.norm.weight"] == SHARDS[0] else SHARDS[1]
    case("shard_tensor_not_in_index", missing_from, "not in the weight_map",
         dict(shard_files, **{IX: index_text(w)}))
    p1 = dict(parts[1])
    first = next(iter(parts[0]))
    p1[first] = parts[0][first]
    case("tensor_in_two_shards", IX, "two shards",
         {SHARDS[0]: shard_files[SHARDS[0]], SHARDS[1]: st_bytes(entries_of(p1)), IX: index_text(wm)})
    text = index_text(wm)
    dup_line = '"model.norm.weight": "%s",\n    ' % wm["model.norm.weight"]
    text = text.replace('"weight_map": {\n    ', '"weight_map": {\n    ' + dup_line, 1)
    case("duplicate_weight_map_entry", IX, "duplicate", dict(shard_files, **{IX: text}))
    case("index_invalid_json", IX, "invalid JSON", dict(shard_files, **{IX: index_text(wm)[:-3]}))
    sf = dict(shard_files)
    sf[SHARDS[1]] = sf[SHARDS[1]][:-10]
    case("truncated_shard", SHARDS[1], "truncated", dict(sf, **{IX: index_text(wm)}))

    # --- config.json ---
    cfg_text = json.dumps(BASE_CFG, indent=2)
    case("config_invalid_json", "config.json", "invalid JSON", {MS: good},
         config_text=cfg_text.replace('"vocab_size": 32,', '"vocab_size": 32,,'))
    c = dict(BASE_CFG)
    del c["hidden_size"]
    case("config_missing_hidden_size", "config.json", "hidden_size", {MS: good}, config=c)
    case("unknown_architecture", "config.json", "architecture", {MS: good},
         config=dict(BASE_CFG, architectures=["GPT2LMHeadModel"], model_type="gpt2"))
    case("missing_config", "config.json", "cannot open", {MS: good}, config=False)
    case("config_fractional_size", "config.json", "integer", {MS: good},
         config=dict(BASE_CFG, intermediate_size=32.5))
    case("config_heads_not_divisible", "config.json", "num_key_value_heads", {MS: good},
         config=dict(BASE_CFG, num_key_value_heads=3, num_attention_heads=4, head_dim=4))
    case("config_unsupported_rope", "config.json", "yarn", {MS: good},
         config=dict(BASE_CFG, rope_scaling={"rope_type": "yarn", "factor": 4.0}))
    case("config_not_object", "config.json", "object", {MS: good}, config_text="[1, 2]\n")
    case("config_duplicate_key", "config.json", "duplicate", {MS: good},
         config_text=cfg_text.replace('"vocab_size": 32,', '"vocab_size": 32,\n  "vocab_size": 64,'))
    # NaN weights are a numerical matter, not a format error: not a case here.

    write(os.path.join(out, "cases.json"), json.dumps(cases, indent=1) + "\n")
    print(f"{len(cases)} bad model cases in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
