#!/usr/bin/python3
"""make_bad_models.py: broken model directories for the bad-input suite.

Usage: make_bad_models.py OUT_DIR [--good]
       make_bad_models.py --selftest   (bases pass a strict validator, every case fails it)

Writes OUT_DIR/<case>/ for every case below: a small valid Llama model (config.json +
model.safetensors, or two shards + index; 1 layer, hidden 64, heads 2, kv 2, intermediate 128,
vocab 128, untied) with exactly ONE defect, and OUT_DIR/cases.json, a list of
  {"name", "dir", "expect_file", "expect_substr", "what"}
where expect_file must appear in the one-line error message (the file, or for tensor-level
problems found after the files were read, the tensor name) and expect_substr is a word of
the cause ("" when wording may vary). With --good it also writes OUT_DIR/_good (single file)
and OUT_DIR/_good_sharded (two shards), the defect-free bases, which are not cases.

Uses its own tiny safetensors writer (numpy only), deterministic output.
"""
import json
import os
import shutil
import sys

import numpy as np

HIDDEN, HEADS, KV, INTER, VOCAB, LAYERS = 64, 2, 2, 128, 128, 1
HEAD_DIM = HIDDEN // HEADS
SHARD1, SHARD2 = "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"
INDEX = "model.safetensors.index.json"


def config(**over):
    c = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_act": "silu",
        "hidden_size": HIDDEN,
        "intermediate_size": INTER,
        "num_attention_heads": HEADS,
        "num_key_value_heads": KV,
        "head_dim": HEAD_DIM,
        "num_hidden_layers": LAYERS,
        "rms_norm_eps": 1e-5,
        "vocab_size": VOCAB,
        "max_position_embeddings": 256,
        "rope_theta": 10000.0,
        "tie_word_embeddings": False,
        "torch_dtype": "bfloat16",
        "attention_bias": False,
        "mlp_bias": False,
    }
    for k, v in over.items():
        if v is None:
            c.pop(k, None)
        else:
            c[k] = v
    return c


def tensor_shapes():
    """(name, shape) in file order."""
    q, kv = HEADS * HEAD_DIM, KV * HEAD_DIM
    out = [("model.embed_tokens.weight", (VOCAB, HIDDEN))]
    for l in range(LAYERS):
        p = f"model.layers.{l}."
        out += [
            (p + "input_layernorm.weight", (HIDDEN,)),
            (p + "self_attn.q_proj.weight", (q, HIDDEN)),
            (p + "self_attn.k_proj.weight", (kv, HIDDEN)),
            (p + "self_attn.v_proj.weight", (kv, HIDDEN)),
            (p + "self_attn.o_proj.weight", (HIDDEN, q)),
            (p + "post_attention_layernorm.weight", (HIDDEN,)),
            (p + "mlp.gate_proj.weight", (INTER, HIDDEN)),
            (p + "mlp.up_proj.weight", (INTER, HIDDEN)),
            (p + "mlp.down_proj.weight", (HIDDEN, INTER)),
        ]
    out += [("model.norm.weight", (HIDDEN,)), ("lm_head.weight", (VOCAB, HIDDEN))]
    return out


def to_bf16_bytes(a):
    """float32 array -> bfloat16 little-endian bytes, round to nearest even."""
    u = np.ascontiguousarray(a, dtype="<f4").view("<u4").astype(np.uint64)
    r = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype("<u2")
    return r.tobytes()


class Tensor:
    """One header entry: name, dtype string, shape, data bytes, optional raw overrides."""

    def __init__(self, name, dtype, shape, data):
        self.name, self.dtype, self.shape, self.data = name, dtype, list(shape), data
        self.offsets = None  # None = computed; else a raw JSON-able value


def make_tensors(dtype="BF16", seed=0):
    rng = np.random.default_rng(seed)
    ts = []
    for name, shape in tensor_shapes():
        if name.endswith("norm.weight"):
            a = 1.0 + 0.05 * rng.standard_normal(shape)
        else:
            a = rng.standard_normal(shape) / np.sqrt(shape[-1])
        a = a.astype(np.float32)
        data = to_bf16_bytes(a) if dtype == "BF16" else a.astype("<f4").tobytes()
        ts.append(Tensor(name, dtype, shape, data))
    return ts


def header_text(ts, meta=True):
    """JSON header written by hand so duplicate names and odd values are possible."""
    parts = []
    if meta:
        parts.append('"__metadata__":{"format":"pt"}')
    off = 0
    for t in ts:
        if t.offsets is None:
            offs = [off, off + len(t.data)]
        else:
            offs = t.offsets
        off += len(t.data)
        parts.append(json.dumps(t.name) + ":" + json.dumps(
            {"dtype": t.dtype, "shape": t.shape, "data_offsets": offs}, separators=(",", ":")))
    return "{" + ",".join(parts) + "}"


def st_bytes(ts, header=None, hlen=None, extra=b"", meta=True):
    h = (header if header is not None else header_text(ts, meta)).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    n = len(h) if hlen is None else hlen
    return n.to_bytes(8, "little") + h + b"".join(t.data for t in ts) + extra


def write(path, data):
    with open(path, "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def write_model(d, ts=None, cfg=None, st=None, dtype="BF16"):
    """A single-file model; st overrides the safetensors bytes."""
    os.makedirs(d, exist_ok=True)
    if ts is None:
        ts = make_tensors(dtype)
    write(os.path.join(d, "config.json"),
          json.dumps(cfg if cfg is not None else config(torch_dtype="bfloat16" if dtype == "BF16"
                                                         else "float32"), indent=2))
    write(os.path.join(d, "model.safetensors"), st if st is not None else st_bytes(ts))


def write_sharded(d, index=None, shard2=None, ts=None):
    """Two shards (first half / second half of the tensors) + index. index: a dict or raw text
    replacing the index; shard2: tensors of the second shard instead of the second half."""
    os.makedirs(d, exist_ok=True)
    ts = ts if ts is not None else make_tensors()
    half = len(ts) // 2
    a, b = ts[:half], (shard2 if shard2 is not None else ts[half:])
    write(os.path.join(d, "config.json"), json.dumps(config(), indent=2))
    write(os.path.join(d, SHARD1), st_bytes(a))
    write(os.path.join(d, SHARD2), st_bytes(b))
    if index is None:
        wm = {t.name: SHARD1 for t in a}
        wm.update({t.name: SHARD2 for t in ts[half:]})
        index = {"metadata": {"total_size": sum(len(t.data) for t in ts)}, "weight_map": wm}
    write(os.path.join(d, INDEX), index if isinstance(index, str) else json.dumps(index, indent=2))


def good_index(ts=None):
    ts = ts if ts is not None else make_tensors()
    half = len(ts) // 2
    wm = {t.name: (SHARD1 if i < half else SHARD2) for i, t in enumerate(ts)}
    return {"metadata": {"total_size": sum(len(t.data) for t in ts)}, "weight_map": wm}


UP = "model.layers.0.mlp.up_proj.weight"
Q = "model.layers.0.self_attn.q_proj.weight"
ST = "model.safetensors"


def cases():
    """(name, expect_file, expect_substr, what, builder(dir))"""
    out = []

    def case(name, expect_file, expect_substr, what):
        def deco(fn):
            out.append((name, expect_file, expect_substr, what, fn))
            return fn
        return deco

    # --- safetensors framing ---
    @case("truncated_data", ST, "truncated", "file cut in the middle of the tensor data")
    def _(d):
        b = st_bytes(make_tensors())
        write_model(d, st=b[:len(b) - 1000])

    @case("header_len_beyond_file", ST, "header length", "header length exceeds the file size")
    def _(d):
        ts = make_tensors()
        b = st_bytes(ts)
        write_model(d, st=st_bytes(ts, hlen=len(b) + 64))

    @case("header_len_absurd", ST, "header length", "header length 2^40")
    def _(d):
        write_model(d, st=st_bytes(make_tensors(), hlen=1 << 40))

    @case("header_invalid_json", ST, "JSON", "header is not valid JSON")
    def _(d):
        ts = make_tensors()
        h = header_text(ts)
        write_model(d, st=st_bytes(ts, header=h[:-1] + ',"x":}'))

    @case("header_json_array", ST, "object", "header is a JSON array")
    def _(d):
        write_model(d, st=st_bytes(make_tensors(), header='[{"a":1}]'))

    @case("empty_file", ST, "", "model.safetensors is 0 bytes")
    def _(d):
        write_model(d, st=b"")

    @case("five_bytes", ST, "", "model.safetensors is 5 bytes")
    def _(d):
        write_model(d, st=b"\x10\x00\x00\x00\x00")

    # --- tensor table ---
    @case("overlap", ST, "overlap", "second tensor starts inside the first")
    def _(d):
        ts = make_tensors()
        n0 = len(ts[0].data)
        ts[1].offsets = [n0 - 8, n0 - 8 + len(ts[1].data)]
        write_model(d, st=st_bytes(ts))

    @case("gap", ST, "gap", "8 unused bytes between two tensors")
    def _(d):
        ts = make_tensors()
        off = 0
        for i, t in enumerate(ts):
            if i == 2:
                off += 8
            t.offsets = [off, off + len(t.data)]
            off += len(t.data)
        write_model(d, st=st_bytes(ts, extra=b"\0" * 8))

    @case("first_offset_not_zero", ST, "offset", "data starts at offset 16")
    def _(d):
        ts = make_tensors()
        off = 16
        for t in ts:
            t.offsets = [off, off + len(t.data)]
            off += len(t.data)
        write_model(d, st=st_bytes(ts, extra=b"\0" * 16))

    @case("trailing_bytes", ST, "trailing", "32 bytes after the last tensor")
    def _(d):
        write_model(d, st=st_bytes(make_tensors(), extra=b"\0" * 32))

    @case("dtype_shape_mismatch", ST, "", "shape says 2x the bytes the offsets give")
    def _(d):
        ts = make_tensors()
        t = next(t for t in ts if t.name == "model.norm.weight")
        t.shape = [HIDDEN * 2]
        write_model(d, st=st_bytes(ts))

    @case("dtype_f64", ST, "F64", "a tensor stored as F64")
    def _(d):
        ts = make_tensors()
        t = next(t for t in ts if t.name == "model.norm.weight")
        t.dtype = "F64"
        t.shape = [HIDDEN // 4]  # same byte count (64 x bf16 = 16 x f64)
        write_model(d, st=st_bytes(ts))

    @case("fractional_offset", ST, "data_offsets", "data_offsets hold 1.5")
    def _(d):
        ts = make_tensors()
        n0 = len(ts[0].data)
        ts[0].offsets = [0, n0 + 0.5]
        write_model(d, st=st_bytes(ts))

    @case("negative_offset", ST, "data_offsets", "data_offsets begin at -2")
    def _(d):
        ts = make_tensors()
        n0 = len(ts[0].data)
        ts[0].offsets = [-2, n0]
        write_model(d, st=st_bytes(ts))

    @case("offsets_reversed", ST, "data_offsets", "data_offsets end before they begin")
    def _(d):
        ts = make_tensors()
        n0 = len(ts[0].data)
        ts[0].offsets = [n0, 0]
        write_model(d, st=st_bytes(ts))

    @case("duplicate_name", ST, "duplicate", "two header entries with the same name")
    def _(d):
        ts = make_tensors()
        ts[2].name = ts[1].name
        write_model(d, st=st_bytes(ts))

    @case("negative_dim", ST, "shape", "a shape entry of -64")
    def _(d):
        ts = make_tensors()
        t = next(t for t in ts if t.name == "model.norm.weight")
        t.shape = [-HIDDEN]
        write_model(d, st=st_bytes(ts))

    @case("entry_lacks_dtype", ST, "dtype", "a header entry without dtype")
    def _(d):
        ts = make_tensors()
        h = header_text(ts).replace('"model.norm.weight":{"dtype":"BF16",',
                                    '"model.norm.weight":{', 1)
        write_model(d, st=st_bytes(ts, header=h))

    @case("entry_not_object", ST, "", "a header entry that is a string")
    def _(d):
        ts = make_tensors()
        h = header_text(ts)[:-1] + ',"bogus":"x"}'
        write_model(d, st=st_bytes(ts, header=h))

    # --- model-level (the file set is valid, the model is not) ---
    @case("missing_tensor", UP, "", "mlp.up_proj.weight absent")
    def _(d):
        write_model(d, ts=[t for t in make_tensors() if t.name != UP])

    @case("wrong_shape", Q, "shape", "q_proj is (64, 32) instead of (64, 64)")
    def _(d):
        ts = make_tensors()
        t = next(t for t in ts if t.name == Q)
        t.shape = [HIDDEN, HIDDEN // 2]
        t.data = t.data[:len(t.data) // 2]
        write_model(d, ts=ts)

    @case("f32_missing_tensor", "model.norm.weight", "", "F32 model without model.norm.weight")
    def _(d):
        write_model(d, ts=[t for t in make_tensors("F32") if t.name != "model.norm.weight"],
                    dtype="F32")

    # --- sharded checkpoints ---
    @case("index_dotdot", INDEX, "..", "weight_map names ../model-00002-of-00002.safetensors")
    def _(d):
        idx = good_index()
        idx["weight_map"][UP] = "../" + SHARD2
        write_sharded(d, index=idx)

    @case("index_absolute", INDEX, "absolute", "weight_map names an absolute path")
    def _(d):
        idx = good_index()
        idx["weight_map"][UP] = "/tmp/" + SHARD2
        write_sharded(d, index=idx)

    @case("index_missing_shard", "model-00003-of-00003.safetensors", "",
          "weight_map names a shard file that does not exist")
    def _(d):
        idx = good_index()
        idx["weight_map"]["lm_head.weight"] = "model-00003-of-00003.safetensors"
        write_sharded(d, index=idx)

    @case("index_name_absent", INDEX, "up_proj.weight_x",
          "weight_map lists a tensor its shard does not hold")
    def _(d):
        idx = good_index()
        idx["weight_map"][UP + "_x"] = SHARD2
        write_sharded(d, index=idx)

    @case("index_invalid_json", INDEX, "JSON", "index is not valid JSON")
    def _(d):
        write_sharded(d, index='{"metadata": {"total_size": 1}, "weight_map": {')

    @case("index_no_weight_map", INDEX, "weight_map", "index without weight_map")
    def _(d):
        write_sharded(d, index={"metadata": {"total_size": 1}})

    @case("shard_tensor_unlisted", SHARD2, "weight_map", "a shard holds a tensor the weight_map omits")
    def _(d):
        idx = good_index()
        del idx["weight_map"]["lm_head.weight"]
        write_sharded(d, index=idx)

    @case("shard_truncated", SHARD2, "truncated", "the second shard is cut in its data")
    def _(d):
        write_sharded(d)
        p = os.path.join(d, SHARD2)
        b = open(p, "rb").read()
        write(p, b[:len(b) - 100])

    # --- config.json ---
    @case("config_invalid_json", "config.json", "JSON", "config.json is not valid JSON")
    def _(d):
        write_model(d)
        write(os.path.join(d, "config.json"), '{"hidden_size": 64,, }')

    @case("config_missing_hidden_size", "config.json", "hidden_size", "no hidden_size")
    def _(d):
        write_model(d, cfg=config(hidden_size=None))

    @case("config_unknown_arch", "config.json", "architecture", "GPT2LMHeadModel")
    def _(d):
        write_model(d, cfg=config(architectures=["GPT2LMHeadModel"], model_type="gpt2"))

    @case("config_missing", "config.json", "", "no config.json")
    def _(d):
        write_model(d)
        os.remove(os.path.join(d, "config.json"))

    @case("config_negative_layers", "config.json", "num_hidden_layers", "num_hidden_layers -1")
    def _(d):
        write_model(d, cfg=config(num_hidden_layers=-1))

    @case("config_heads_indivisible", "config.json", "num_key_value_heads",
          "num_attention_heads 2, num_key_value_heads 3")
    def _(d):
        write_model(d, cfg=config(num_key_value_heads=3))

    @case("config_not_object", "config.json", "object", "config.json is a JSON list")
    def _(d):
        write_model(d)
        write(os.path.join(d, "config.json"), "[1, 2, 3]")

    @case("config_string_size", "config.json", "intermediate_size", "intermediate_size is a string")
    def _(d):
        write_model(d, cfg=config(intermediate_size="128"))

    return out


# --- self test: an independent strict validator; the bases pass, every case fails ---

DTYPE_SIZE = {"F32": 4, "F16": 2, "BF16": 2, "I32": 4}


class Bad(Exception):
    pass


class Pairs(list):
    """A JSON object as its (key, value) pairs, so duplicate keys stay visible."""


def check_st(path):
    """Strict safetensors check; returns {name: (dtype, shape)}."""
    name = os.path.basename(path)
    if not os.path.isfile(path):
        raise Bad(f"{name}: cannot open")
    b = open(path, "rb").read()
    if len(b) < 8:
        raise Bad(f"{name}: {len(b)} bytes, too short (empty or truncated)")
    n = int.from_bytes(b[:8], "little")
    if n > len(b) - 8:
        raise Bad(f"{name}: header length {n} exceeds the file")
    try:
        h = json.loads(b[8:8 + n].decode(), object_pairs_hook=Pairs)
    except (ValueError, UnicodeDecodeError):
        raise Bad(f"{name}: header is not valid JSON")
    if not isinstance(h, Pairs):
        raise Bad(f"{name}: header is not a JSON object")
    keys = [k for k, _ in h]
    if len(set(keys)) != len(keys):
        raise Bad(f"{name}: duplicate tensor name")
    ents = []
    for k, v in h:
        if k == "__metadata__":
            continue
        if not isinstance(v, Pairs):
            raise Bad(f"{name}: entry {k} is not an object")
        v = dict(v)
        if set(v) != {"dtype", "shape", "data_offsets"}:
            raise Bad(f"{name}: tensor {k} lacks dtype/shape/data_offsets")
        if v["dtype"] not in DTYPE_SIZE:
            raise Bad(f"{name}: tensor {k} has unsupported dtype {v['dtype']}")
        if any(not isinstance(x, int) or isinstance(x, bool) or x < 0 for x in v["shape"]):
            raise Bad(f"{name}: tensor {k} shape entry is not a non-negative integer")
        o = v["data_offsets"]
        if len(o) != 2 or any(not isinstance(x, int) or isinstance(x, bool) or x < 0 for x in o):
            raise Bad(f"{name}: tensor {k} data_offsets must be non-negative integers")
        if o[1] < o[0]:
            raise Bad(f"{name}: tensor {k} data_offsets end before they begin")
        need = DTYPE_SIZE[v["dtype"]] * int(np.prod(v["shape"], dtype=np.int64))
        if o[1] - o[0] != need:
            raise Bad(f"{name}: tensor {k} byte length mismatch with dtype x shape")
        ents.append((o[0], o[1], k, v["dtype"], tuple(v["shape"])))
    ents.sort()
    end = 0
    for i, (b0, b1, k, _, _) in enumerate(ents):
        if i == 0 and b0 != 0:
            raise Bad(f"{name}: first offset of {k} is not 0")
        if b0 < end:
            raise Bad(f"{name}: tensor {k} data_offsets overlap")
        if b0 > end:
            raise Bad(f"{name}: gap before tensor {k}")
        end = b1
    data = len(b) - 8 - n
    if end > data:
        raise Bad(f"{name}: file is truncated")
    if end < data:
        raise Bad(f"{name}: trailing bytes")
    return {k: (dt, sh) for _, _, k, dt, sh in ents}


def check_model(d):
    cp = os.path.join(d, "config.json")
    if not os.path.isfile(cp):
        raise Bad("config.json: cannot open")
    try:
        c = json.load(open(cp))
    except ValueError:
        raise Bad("config.json: invalid JSON")
    if not isinstance(c, dict):
        raise Bad("config.json: not a JSON object")
    if c.get("architectures") != ["LlamaForCausalLM"]:
        raise Bad("config.json: unknown architecture")
    for k in ("hidden_size", "intermediate_size", "num_attention_heads", "num_key_value_heads",
              "num_hidden_layers", "vocab_size"):
        v = c.get(k)
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise Bad(f"config.json: key {k} is missing or not a positive integer")
    if c["num_attention_heads"] % c["num_key_value_heads"]:
        raise Bad("config.json: num_key_value_heads does not divide the heads")
    ip = os.path.join(d, INDEX)
    tensors = {}
    if os.path.exists(ip):
        try:
            idx = json.load(open(ip))
        except ValueError:
            raise Bad(f"{INDEX}: invalid JSON")
        wm = idx.get("weight_map") if isinstance(idx, dict) else None
        if not isinstance(wm, dict):
            raise Bad(f"{INDEX}: weight_map missing")
        for k, f in wm.items():
            if f.startswith("/"):
                raise Bad(f"{INDEX}: {k} names an absolute path")
            if ".." in f.split("/"):
                raise Bad(f"{INDEX}: {k} names a path with ..")
        shards = {f: check_st(os.path.join(d, f)) for f in sorted(set(wm.values()))}
        for k, f in wm.items():
            if k not in shards[f]:
                raise Bad(f"{INDEX}: tensor {k} is absent from {f}")
        for f, ts in shards.items():
            for k in ts:
                if wm.get(k) != f:
                    raise Bad(f"{f}: tensor {k} is not in the weight_map")
            tensors.update(ts)
    else:
        tensors = check_st(os.path.join(d, "model.safetensors"))
    for name, shape in tensor_shapes():
        if name not in tensors:
            raise Bad(f"{name}: missing tensor")
        if tensors[name][1] != tuple(shape):
            raise Bad(f"{name}: shape {tensors[name][1]} instead of {shape}")
    if len(tensors) != len(tensor_shapes()):
        raise Bad("unexpected tensors")


def selftest():
    import tempfile
    root = tempfile.mkdtemp(prefix="qs_badmodels_")
    fails = 0
    try:
        if main([sys.argv[0], root, "--good"]) != 0:
            print("FAIL: generation", file=sys.stderr)
            return 1
        for g in ("_good", "_good_sharded"):
            try:
                check_model(os.path.join(root, g))
            except Bad as e:
                print(f"FAIL: base {g} is invalid: {e}", file=sys.stderr)
                fails += 1
        listed = json.load(open(os.path.join(root, "cases.json")))
        if len(listed) < 22 or len({c["name"] for c in listed}) != len(listed):
            print(f"FAIL: {len(listed)} cases or duplicate names", file=sys.stderr)
            fails += 1
        for c in listed:
            try:
                check_model(os.path.join(root, c["dir"]))
                print(f"FAIL: case {c['name']} passes the strict check", file=sys.stderr)
                fails += 1
            except Bad as e:
                if c["expect_file"] not in str(e):
                    print(f"FAIL: case {c['name']}: '{e}' does not name {c['expect_file']}",
                          file=sys.stderr)
                    fails += 1
        # deterministic: a second run gives identical bytes
        again = os.path.join(root, "again")
        main([sys.argv[0], again])
        for c in listed:
            for dp, _, fs in os.walk(os.path.join(root, c["dir"])):
                for f in fs:
                    a = os.path.join(dp, f)
                    b = os.path.join(again, os.path.relpath(a, root))
                    if open(a, "rb").read() != open(b, "rb").read():
                        print(f"FAIL: {a} differs between runs", file=sys.stderr)
                        fails += 1
    finally:
        if fails == 0:
            shutil.rmtree(root)
        else:
            print(f"kept {root}", file=sys.stderr)
    print(f"make_bad_models selftest: {fails} failures")
    return 1 if fails else 0


def main(argv):
    if len(argv) >= 2 and argv[1] == "--selftest":
        return selftest()
    if len(argv) < 2 or argv[1].startswith("-"):
        print(__doc__, file=sys.stderr)
        return 2
    root = argv[1]
    os.makedirs(root, exist_ok=True)
    listed = []
    for name, ef, es, what, build in cases():
        d = os.path.join(root, name)
        if os.path.exists(d):
            shutil.rmtree(d)
        build(d)
        listed.append({"name": name, "dir": name, "expect_file": ef, "expect_substr": es,
                       "what": what})
    with open(os.path.join(root, "cases.json"), "w") as f:
        json.dump(listed, f, indent=1)
    if "--good" in argv[2:]:
        for name, fn in (("_good", write_model), ("_good_sharded", write_sharded)):
            d = os.path.join(root, name)
            if os.path.exists(d):
                shutil.rmtree(d)
            fn(d)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
