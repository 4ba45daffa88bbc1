#!/usr/bin/python3
"""gptq_decode.py: an independent reader of GPTQ checkpoint directories (numpy only).

Written from the format's description, not from qshard's C code:
  * safetensors: 8-byte little-endian header length N, N bytes of JSON (qshard pads with
    spaces to a multiple of 8), then the raw data; each entry has dtype, shape and
    data_offsets relative to the end of the header. Sharded checkpoints have
    model.safetensors.index.json {"metadata": {"total_size"}, "weight_map": {name: file}}.
  * GPTQ tensors of a linear with d_out outputs, d_in inputs, b bits, G groups:
      qweight (d_in*b/32, d_out) int32: input index i of output o sits at bit i*b of the
              little-endian stream of 32-bit words of column o (3 bits: values straddle words)
      qzeros  (G, d_out*b/32) int32: zero of output o at bit o*b of row g; v1
              ("checkpoint_format": "gptq") stores zero-1, v2 ("gptq_v2") stores zero
      scales  (G, d_out) float16, g_idx (d_in,) int32
    W[o, i] = scale[g_idx[i], o] * (q[i, o] - zero[g_idx[i], o])   (float32 arithmetic)
  * quantization_config "dynamic": {pattern: overrides}. Both vLLM
    (vllm/model_executor/layers/quantization/utils/gptq_utils.py, get_dynamic_override) and
    GPTQModel (gptqmodel/quantization/config.py, dynamic_get) walk the map in order and take
    the FIRST pattern that matches: a "-:" prefix excludes the module, "+:" (or no prefix)
    overrides the base config; matching is Python re.match (anchored at the start only) on
    the module name. vLLM sees fused names (self_attn.qkv_proj, mlp.gate_up_proj),
    GPTQModel/transformers see the HF names (q_proj, k_proj, ...).

Usage:
  gptq_decode.py EXPORT_DIR [--expect EXPECT_DIR] [--dump OUT_DIR]
--expect compares against EXPECT_DIR/expect.json (written by test_gptq_export.c): every
dequantized weight bit for bit, plain tensors byte for byte, schemes resolved by both
naming schemes, copied side files. --dump writes <module>.npy dequantized weights.
Exit code 0 on success, 1 on any mismatch (messages on stderr).
"""
import json
import os
import re
import sys

import numpy as np

DTYPES = {"F32": (np.float32, 4), "F16": (np.float16, 2), "BF16": (np.uint16, 2),
          "I32": (np.int32, 4), "I64": (np.int64, 8)}
FUSED = {"qkv_proj": ("q_proj", "k_proj", "v_proj"), "gate_up_proj": ("gate_proj", "up_proj")}

failures = []


def fail(msg):
    failures.append(msg)
    print("gptq_decode: " + msg, file=sys.stderr)


def read_safetensors(path):
    """Returns {name: (dtype, shape, raw bytes)} in header order, validating strictly."""
    with open(path, "rb") as f:
        blob = f.read()
    if len(blob) < 8:
        raise ValueError(f"{path}: shorter than 8 bytes")
    n = int.from_bytes(blob[:8], "little")
    if n % 8 != 0:
        fail(f"{path}: header length {n} is not a multiple of 8")
    if 8 + n > len(blob):
        raise ValueError(f"{path}: header length {n} exceeds the file")
    text = blob[8:8 + n].decode("utf-8")
    stripped = text.rstrip(" ")
    header = json.loads(stripped, object_pairs_hook=lambda kv: kv)  # keep order
    data = blob[8 + n:]
    out = {}
    pos = 0
    meta = None
    for name, entry in header:
        if name == "__metadata__":
            meta = dict(entry)
            continue
        e = dict(entry)
        dt = e["dtype"]
        if dt not in DTYPES:
            raise ValueError(f"{path}: tensor {name}: dtype {dt}")
        shape = list(e["shape"])
        a, b = e["data_offsets"]
        count = int(np.prod(shape)) if shape else 1
        if a != pos:
            fail(f"{path}: tensor {name} starts at {a}, expected {pos} (not contiguous)")
        if b - a != count * DTYPES[dt][1]:
            fail(f"{path}: tensor {name}: {b - a} bytes for shape {shape} {dt}")
        if name in out:
            fail(f"{path}: tensor {name} twice")
        out[name] = (dt, shape, data[a:b])
        pos = b
    if pos != len(data):
        fail(f"{path}: data section has {len(data)} bytes, tensors end at {pos}")
    if meta != {"format": "pt"}:
        fail(f"{path}: __metadata__ is {meta}")
    return out


def read_checkpoint(d, shard_bytes=0):
    """All tensors of an export; with shard_bytes > 0 every shard's data must fit it unless
    the shard holds a single tensor (tensors are never split)."""
    idx_path = os.path.join(d, "model.safetensors.index.json")
    tensors, where = {}, {}
    if os.path.exists(idx_path):
        if os.path.exists(os.path.join(d, "model.safetensors")):
            fail(f"{d}: both model.safetensors and an index")
        with open(idx_path) as f:
            idx = json.load(f)
        wm = idx["weight_map"]
        files = sorted(set(wm.values()))
        nshards = len(files)
        for k, fn in enumerate(files):
            if fn != "model-%05d-of-%05d.safetensors" % (k + 1, nshards):
                fail(f"{idx_path}: shard name {fn}")
            shard = read_safetensors(os.path.join(d, fn))
            size = sum(len(t[2]) for t in shard.values())
            if shard_bytes > 0 and size > shard_bytes and len(shard) > 1:
                fail(f"{fn}: {size} data bytes exceed the shard size {shard_bytes}")
            for name, t in shard.items():
                if name in tensors:
                    fail(f"{fn}: tensor {name} also in {where[name]}")
                tensors[name] = t
                where[name] = fn
        if set(wm) != set(tensors) or any(wm[n] != where[n] for n in tensors):
            fail(f"{idx_path}: weight_map does not match the shards")
        total = sum(len(t[2]) for t in tensors.values())
        if idx["metadata"]["total_size"] != total:
            fail(f"{idx_path}: total_size {idx['metadata']['total_size']} != {total}")
    else:
        tensors = read_safetensors(os.path.join(d, "model.safetensors"))
        nshards = 1
    return tensors, nshards


def arr(t):
    dt, shape, raw = t
    return np.frombuffer(raw, dtype=DTYPES[dt][0]).reshape(shape)


def unpack_rows(words, count, bits):
    """words (K, M) int32: value i of each column at bit i*bits of the column's stream."""
    w = words.astype(np.uint32).astype(np.uint64)
    w = np.concatenate([w, np.zeros((1, w.shape[1]), np.uint64)], axis=0)
    i = np.arange(count, dtype=np.uint64)
    bit = i * np.uint64(bits)
    word = (bit // np.uint64(32)).astype(np.int64)
    off = (bit % np.uint64(32))[:, None]
    pair = w[word] | (w[word + 1] << np.uint64(32))
    return ((pair >> off) & np.uint64((1 << bits) - 1)).astype(np.int64)  # (count, M)


def dequant(ts, module, bits, group_size, v2):
    qw = arr(ts[module + ".qweight"])
    qz = arr(ts[module + ".qzeros"])
    sc = arr(ts[module + ".scales"])
    gi = arr(ts[module + ".g_idx"])
    d_in = gi.shape[0]
    d_out = qw.shape[1]
    G = sc.shape[0]
    if qw.shape != (d_in * bits // 32, d_out) or qz.shape != (G, d_out * bits // 32):
        fail(f"{module}: shapes qweight {qw.shape} qzeros {qz.shape} do not fit {bits} bits")
        return None, None
    expect_G = 1 if group_size == -1 else -(-d_in // group_size)
    if G != expect_G:
        fail(f"{module}: {G} groups, group_size {group_size} gives {expect_G}")
    if gi.min() < 0 or gi.max() >= G:
        fail(f"{module}: g_idx outside [0, {G})")
        return None, None
    q = unpack_rows(qw, d_in, bits)                  # (d_in, d_out)
    z = unpack_rows(qz.T.copy(), d_out, bits).T      # (G, d_out)
    if not v2:
        z = z + 1
    s = sc.astype(np.float32)
    W = s[gi] * (q - z[gi]).astype(np.float32)      # (d_in, d_out) float32
    return W.T.copy(), gi                             # (d_out, d_in)


def resolve(qc, name):
    """First-match semantics shared by vLLM's get_dynamic_override and GPTQModel's
    dynamic_get. Returns (scheme dict, matched pattern or None); None if excluded."""
    base = {k: qc[k] for k in ("bits", "group_size", "sym", "desc_act")}
    for pattern, over in qc.get("dynamic", {}).items():
        if pattern.startswith("-:"):
            if re.match(pattern[2:], name):
                return None, pattern
        elif re.match(pattern[2:] if pattern.startswith("+:") else pattern, name):
            s = dict(base)
            s.update({k: over[k] for k in base if k in over})
            return s, pattern
    return base, None


def vllm_marlin(scheme, quant_method="gptq"):
    """vLLM's GPTQMarlinConfig.is_gptq_marlin_compatible (vllm/model_executor/layers/
    quantization/gptq_marlin.py, read at commit 00161ce): quant_method gptq, (bits, sym) a key
    of TYPE_MAP = {(4, True), (8, True)}, and a group size Marlin supports
    (marlin_utils: -1, 32, 64, 128). The same test decides the kernel from the top-level
    fields, and TYPE_MAP[(bits, sym)] is what a per-module override must satisfy."""
    return (quant_method == "gptq" and (scheme["bits"], bool(scheme["sym"])) in
            {(4, True), (8, True)} and scheme["group_size"] in (-1, 32, 64, 128))


def vllm_path(qc, schemes):
    """The kernel path vLLM takes for an export and whether it can load every module: with a
    Marlin-compatible top level it builds GPTQMarlinConfig and every module's (overridden)
    scheme must be a TYPE_MAP key; otherwise GPTQConfig, which loads 2/3/4/8 bits."""
    top = {k: qc[k] for k in ("bits", "group_size", "sym", "desc_act")}
    if vllm_marlin(top, qc.get("quant_method", "")):
        bad = [m for m, s in schemes.items() if not vllm_marlin(s)]
        return "gptq_marlin", bad
    bad = [m for m, s in schemes.items() if s["bits"] not in (2, 3, 4, 8)]
    return "gptq", bad


def vllm_names(modules):
    """vLLM's module names: q/k/v of one layer become <prefix>qkv_proj, gate/up gate_up_proj."""
    out = {}  # vllm name -> list of HF members
    for m in modules:
        prefix, leaf = m.rsplit(".", 1)
        fused = None
        for f, members in FUSED.items():
            if leaf in members and all(prefix + "." + x in modules for x in members):
                fused = prefix + "." + f
        out.setdefault(fused or m, []).append(m)
    return out


def main(argv):
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    d = argv[1]
    expect_dir = dump_dir = None
    if "--expect" in argv:
        expect_dir = argv[argv.index("--expect") + 1]
    if "--dump" in argv:
        dump_dir = argv[argv.index("--dump") + 1]
    ex = None
    if expect_dir:
        with open(os.path.join(expect_dir, "expect.json")) as f:
            ex = json.load(f)
    ts, nshards = read_checkpoint(d, ex["shard_bytes"] if ex else 0)
    with open(os.path.join(d, "config.json")) as f:
        cfg = json.load(f)
    with open(os.path.join(d, "quantize_config.json")) as f:
        qcf = json.load(f)
    qc = cfg["quantization_config"]
    if qc != qcf:
        fail("quantize_config.json differs from config.json's quantization_config")
    if qc.get("quant_method") != "gptq" or qc.get("checkpoint_format") not in ("gptq", "gptq_v2"):
        fail(f"quant_method/checkpoint_format: {qc.get('quant_method')} {qc.get('checkpoint_format')}")
    v2 = qc["checkpoint_format"] == "gptq_v2"
    for key in ("bits", "group_size", "sym", "desc_act", "static_groups", "true_sequential",
                "damp_percent", "lm_head"):
        if key not in qc:
            fail(f"quantization_config lacks {key}")
    for pat in qc.get("dynamic", {}):
        if not pat.endswith("$") or not (pat.startswith("+:") or pat.startswith("-:")):
            fail(f"dynamic key {pat!r} is not '+:...$'")

    modules = sorted(n[:-len(".qweight")] for n in ts if n.endswith(".qweight"))
    schemes = {}
    for m in modules:
        s, pat = resolve(qc, m)  # GPTQModel / transformers: HF names
        if s is None:
            fail(f"{m}: excluded by {pat}")
            continue
        if "dynamic" in qc and pat is None:
            fail(f"{m}: no dynamic key matches (map incomplete)")
        schemes[m] = s
    for vname, members in vllm_names(set(modules)).items():
        s, pat = resolve(qc, vname)  # vLLM: fused names
        for m in members:
            if s != schemes.get(m):
                fail(f"vLLM name {vname} resolves to {s} (via {pat}), {m} is {schemes.get(m)}")

    path, unloadable = vllm_path(qc, schemes)
    if unloadable:
        fail(f"vLLM takes its {path} path and cannot load {unloadable[:3]}")
    all_marlin = all(vllm_marlin(x) for x in schemes.values())
    if schemes and (path == "gptq_marlin") != all_marlin:
        fail(f"vLLM path {path} but every module Marlin-servable: {all_marlin}")

    decoded = {}
    for m in modules:
        if m not in schemes:
            continue
        s = schemes[m]
        W, gi = dequant(ts, m, s["bits"], s["group_size"], v2)
        if W is None:
            continue
        if not s["desc_act"]:
            nat = (np.arange(gi.shape[0]) // s["group_size"]) if s["group_size"] > 0 else 0 * gi
            if not np.array_equal(gi, nat):
                fail(f"{m}: desc_act false but g_idx is not natural")
        decoded[m] = W
        if dump_dir:
            np.save(os.path.join(dump_dir, m + ".npy"), W)

    if ex:
        if ex["v2"] != v2:
            fail(f"checkpoint_format {qc['checkpoint_format']}, expected v2={ex['v2']}")
        if ex["nshards"] != nshards:
            fail(f"{nshards} shards, expected {ex['nshards']}")
        if ex["mixed"] != ("dynamic" in qc):
            fail(f"dynamic map present: {'dynamic' in qc}, expected mixed={ex['mixed']}")
        if sorted(ex["modules"]) != modules:
            fail(f"modules {modules} != expected {sorted(ex['modules'])}")
        for m, e in ex["modules"].items():
            want = {k: e[k] for k in ("bits", "group_size", "sym", "desc_act")}
            if schemes.get(m) != want:
                fail(f"{m}: resolves to {schemes.get(m)}, expected {want}")
            if m not in decoded:
                continue
            ref = np.fromfile(os.path.join(expect_dir, e["file"]), dtype=np.float32)
            ref = ref.reshape(e["d_out"], e["d_in"])
            W = decoded[m]
            if W.shape != ref.shape or not np.array_equal(W.view(np.uint32), ref.view(np.uint32)):
                bad = int(np.sum(W != ref)) if W.shape == ref.shape else -1
                fail(f"{m}: dequantized weights differ from qshard's ({bad} elements)")
            if e.get("bias_file"):
                raw = open(os.path.join(expect_dir, e["bias_file"]), "rb").read()
                t = ts.get(m + ".bias")
                if t is None or t[0] != e["bias_dtype"] or t[2] != raw:
                    fail(f"{m}.bias differs")
            elif m + ".bias" in ts:
                fail(f"{m}.bias present but not expected")
        for name, e in ex["tensors"].items():
            t = ts.get(name)
            raw = open(os.path.join(expect_dir, e["file"]), "rb").read()
            if t is None or t[0] != e["dtype"] or t[1] != e["shape"] or t[2] != raw:
                fail(f"plain tensor {name} differs")
        nexp = len(ex["tensors"]) + sum(4 + (1 if e.get("bias_file") else 0)
                                        for e in ex["modules"].values())
        if len(ts) != nexp:
            fail(f"{len(ts)} tensors, expected {nexp}")
        for key, val in ex["config_keys"].items():
            if cfg.get(key) != val:
                fail(f"config.json: {key} = {cfg.get(key)}, expected {val}")
        for fn in ex["copied"]:
            a = open(os.path.join(ex["src"], fn), "rb").read()
            p = os.path.join(d, fn)
            if not os.path.exists(p) or open(p, "rb").read() != a:
                fail(f"{fn} not copied")
        for fn in ex["not_copied"]:  # the source's own files must not leak into the export
            p = os.path.join(d, fn)
            src = open(os.path.join(ex["src"], fn), "rb").read()
            if os.path.exists(p) and open(p, "rb").read() == src:
                fail(f"{fn} copied from the source but should not be")
        allowed = set(ex["copied"]) | {"config.json", "quantize_config.json"}
        allowed |= {"model.safetensors"} if nshards == 1 else {"model.safetensors.index.json"}
        allowed |= {"model-%05d-of-%05d.safetensors" % (k + 1, nshards) for k in range(nshards)}
        extra = set(os.listdir(d)) - allowed
        if extra:
            fail(f"unexpected files {sorted(extra)}")

    if failures:
        print(f"gptq_decode: {len(failures)} failure(s) in {d}", file=sys.stderr)
        return 1
    print(f"gptq_decode: {d}: {len(decoded)} modules, {nshards} shard(s), "
          f"{qc['checkpoint_format']}, dynamic keys {len(qc.get('dynamic', {}))}: OK")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
