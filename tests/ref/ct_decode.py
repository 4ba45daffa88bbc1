#!/usr/bin/python3
"""ct_decode.py: an independent reader of compressed-tensors "pack-quantized" checkpoints
(numpy only; the compressed-tensors package needs torch, too heavy for CI).

Written from the format as the compressed-tensors library (0.17, the version vLLM 0.32 pins:
compressors/pack_quantized/{base,helpers}.py) and vLLM 0.32 (quantization/compressed_tensors/
compressed_tensors.py, utils.py, schemes/compressed_tensors_wNa16.py) define it, not from
qshard's C code:
  * per quantized linear m with O outputs, I inputs, b bits, G groups (1 for channel):
      m.weight_packed     int32 (O, ceil(I*b/32)): value i of row o at bit i*b of the row's
                          little-endian 32-bit words; values are unsigned (the library stores
                          the signed int q - 2^(b-1) plus the offset 2^(b-1))
      m.weight_scale      float16/bfloat16 (O, G)
      m.weight_zero_point int32 (ceil(O*b/32), G), asymmetric only: value o of column g at
                          bit o*b of the column's words, unsigned (zp + 2^(b-1))
      m.weight_shape      int64 (2,) = [O, I]
      m.weight_g_idx      int32 (I,), only with actorder "group"
    a symmetric scheme has no zero point: the unsigned zero is 2^(b-1);
    W[o, i] = scale[o, g(i)] * (q[o, i] - z[o, g(i)]) with g(i) = g_idx[i] or i // group_size
    (0 for channel), computed here in float32 like qshard's dequantization.
  * quantization_config: quant_method "compressed-tensors", format "pack-quantized",
    config_groups {name: {targets, weights: {num_bits, type, symmetric, strategy,
    group_size, actorder, ...}}}, ignore.
  * vLLM resolves a module (its names: q/k/v fused into self_attn.qkv_proj, gate/up into
    mlp.gate_up_proj) as: ignored if the name, or every shard of a fused name, matches an
    "ignore" entry (exact, or "re:" + re.match); else the FIRST target in config-group order
    equal to the name or whose "re:" regex re.match-es it; else, for a fused name, the target
    of its first shard when every shard matches some target (even if they differ: that is the
    silent mismatch this script rules out by requiring every fused name to resolve directly to
    its shards' common scheme). The compressed-tensors library matches HF names the same way.

Usage: ct_decode.py EXPORT_DIR [--expect EXPECT_DIR]
--expect compares with EXPECT_DIR/expect.json (written by test_ct_export.c): every weight bit
for bit, plain tensors byte for byte, schemes per module under HF and vLLM names, ignored
modules, shards, copied side files. Exit 0 on success, 1 on any mismatch.
"""
import json
import os
import re
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gptq_decode as gd  # noqa: E402  (safetensors reading, bit-stream unpacking)

from gptq_decode import fail  # noqa: E402

FUSED = gd.FUSED
SCHEME_KEYS = ("num_bits", "symmetric", "strategy", "group_size", "actorder")


def match(name, target):
    """vLLM's is_equal_or_regex_match without the class-name case."""
    if target.startswith("re:"):
        return re.match(target[3:], name) is not None
    return target == name


def target_map(qc):
    """vLLM's target_scheme_map: dict insertion order = first appearance, value = last."""
    m = {}
    for _, grp in qc["config_groups"].items():
        for t in grp["targets"]:
            m[t] = grp["weights"]
    return m


def ignored(name, ignore):
    direct = [p for p in ignore if match(name, p)]
    if direct:
        return True
    leaf = name.rsplit(".", 1)[-1]
    if leaf not in FUSED:
        return False
    shards = [name[: -len(leaf)] + s for s in FUSED[leaf]]
    hits = [any(match(s, p) for p in ignore) for s in shards]
    if any(hits) and not all(hits):
        fail(f"{name}: some shards ignored, some not (vLLM refuses)")
    return all(hits)


def resolve(qc, name, allow_fused_fallback=False):
    """Scheme (weights dict) vLLM gives `name`, None if ignored or unmatched."""
    if ignored(name, qc.get("ignore") or []):
        return None, "ignored"
    tm = target_map(qc)
    for t, w in tm.items():
        if match(name, t):
            return w, t
    leaf = name.rsplit(".", 1)[-1]
    if allow_fused_fallback and leaf in FUSED:
        firsts = []
        for s in FUSED[leaf]:
            shard = name[: -len(leaf)] + s
            firsts.append(next((t for t in tm if match(shard, t)), None))
        if all(firsts):
            return tm[firsts[0]], firsts[0]
    return None, None


def scheme_of(w):
    return {k: w.get(k) for k in SCHEME_KEYS}


def check_weights_args(w, where):
    if w.get("type") != "int":
        fail(f"{where}: type {w.get('type')}")
    b, sym = w.get("num_bits"), w.get("symmetric")
    if (b, sym) not in ((4, True), (4, False), (8, True)):
        fail(f"{where}: num_bits {b} symmetric {sym} is not a scheme vLLM loads here")
    st, g = w.get("strategy"), w.get("group_size")
    if st == "group":
        if not isinstance(g, int) or g <= 0:
            fail(f"{where}: strategy group with group_size {g}")
    elif st == "channel":
        if g not in (None, -1):
            fail(f"{where}: strategy channel with group_size {g}")
    else:
        fail(f"{where}: strategy {st}")
    if w.get("actorder") not in (None, "weight", "group"):
        fail(f"{where}: actorder {w.get('actorder')}")
    if w.get("dynamic") not in (None, False):
        fail(f"{where}: dynamic {w.get('dynamic')}")


def dequant(ts, m, w):
    """Unpacks module m with weights args w; returns (W (O, I) float32, g_idx)."""
    b = w["num_bits"]
    shape = gd.arr(ts[m + ".weight_shape"])
    if ts[m + ".weight_shape"][0] != "I64" or list(shape.shape) != [2]:
        fail(f"{m}.weight_shape: {ts[m + '.weight_shape'][0]} {shape.shape}")
        return None, None
    O, I = int(shape[0]), int(shape[1])
    wp = gd.arr(ts[m + ".weight_packed"])
    sc = gd.arr(ts[m + ".weight_scale"])
    if ts[m + ".weight_packed"][0] != "I32" or wp.shape != (O, -(-I * b // 32)):
        fail(f"{m}.weight_packed: {ts[m + '.weight_packed'][0]} {wp.shape} for [{O}, {I}]")
        return None, None
    g = w["group_size"] if w["strategy"] == "group" else -1
    G = 1 if g == -1 else I // g
    if ts[m + ".weight_scale"][0] not in ("F16", "BF16") or sc.shape != (O, G):
        fail(f"{m}.weight_scale: {ts[m + '.weight_scale'][0]} {sc.shape}, want ({O}, {G})")
        return None, None
    if ts[m + ".weight_scale"][0] == "BF16":
        s = (sc.astype(np.uint32) << 16).view(np.float32)
    else:
        s = sc.astype(np.float32)
    q = gd.unpack_rows(wp.T.copy(), I, b).T                # (O, I): row o's stream
    if w["symmetric"]:
        if m + ".weight_zero_point" in ts:
            fail(f"{m}: symmetric scheme with a weight_zero_point")
        z = np.full((O, G), 1 << (b - 1), dtype=np.int64)
    else:
        zt = ts.get(m + ".weight_zero_point")
        if zt is None:
            fail(f"{m}: asymmetric scheme without weight_zero_point")
            return None, None
        zp = gd.arr(zt)
        if zt[0] != "I32" or zp.shape != (-(-O * b // 32), G):
            fail(f"{m}.weight_zero_point: {zt[0]} {zp.shape}, want ({-(-O * b // 32)}, {G})")
            return None, None
        z = gd.unpack_rows(zp, O, b)                       # (O, G): column g's stream
    has_gidx = m + ".weight_g_idx" in ts
    if (w.get("actorder") == "group") != has_gidx:
        fail(f"{m}: actorder {w.get('actorder')} but weight_g_idx present: {has_gidx}")
    if has_gidx:
        gi = gd.arr(ts[m + ".weight_g_idx"]).astype(np.int64)
        if gi.shape != (I,) or gi.min() < 0 or gi.max() >= G:
            fail(f"{m}.weight_g_idx: shape {gi.shape} or values outside [0, {G})")
            return None, None
    else:
        gi = np.arange(I) // g if g > 0 else np.zeros(I, dtype=np.int64)
    W = s[:, gi] * (q - z[:, gi]).astype(np.float32)       # (O, I) float32
    return W, gi


def vllm_names(modules):
    """vLLM's module names: q/k/v of one layer become <prefix>.qkv_proj, gate/up
    <prefix>.gate_up_proj (when every member exists)."""
    return gd.vllm_names(modules)


def main(argv):
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    d = argv[1]
    ex = None
    if "--expect" in argv:
        expect_dir = argv[argv.index("--expect") + 1]
        with open(os.path.join(expect_dir, "expect.json")) as f:
            ex = json.load(f)
    ts, nshards = gd.read_checkpoint(d, ex["shard_bytes"] if ex else 0)
    with open(os.path.join(d, "config.json")) as f:
        cfg = json.load(f)
    qc = cfg.get("quantization_config", {})
    for k, v in (("quant_method", "compressed-tensors"), ("format", "pack-quantized"),
                 ("quantization_status", "compressed")):
        if qc.get(k) != v:
            fail(f"quantization_config.{k} = {qc.get(k)!r}, expected {v!r}")
    groups = qc.get("config_groups", {})
    seen_schemes = []
    for gname, grp in groups.items():
        check_weights_args(grp.get("weights", {}), f"config_groups.{gname}.weights")
        if grp.get("input_activations") is not None:
            fail(f"config_groups.{gname}: input_activations {grp.get('input_activations')}")
        if grp.get("format") not in (None, "pack-quantized"):
            fail(f"config_groups.{gname}: format {grp.get('format')}")
        sc = scheme_of(grp.get("weights", {}))
        if sc in seen_schemes:
            fail(f"config_groups.{gname}: scheme {sc} repeats an earlier group")
        seen_schemes.append(sc)
        for t in grp.get("targets", []):
            if not t.startswith("re:") or not t.endswith("$"):
                fail(f"config_groups.{gname}: target {t!r} is not 're:...$'")

    modules = sorted(n[: -len(".weight_packed")] for n in ts if n.endswith(".weight_packed"))
    schemes, decoded = {}, {}
    for m in modules:
        w, tgt = resolve(qc, m)  # compressed-tensors library / transformers: HF names
        if w is None:
            fail(f"{m}: has packed weights but resolves to {tgt or 'no target'}")
            continue
        hits = [g for g, grp in groups.items() if any(match(m, t) for t in grp["targets"])]
        if len(hits) != 1:
            fail(f"{m}: targets of {len(hits)} config groups match it ({hits})")
        schemes[m] = scheme_of(w)
        W, gi = dequant(ts, m, w)
        if W is not None:
            decoded[m] = W
    # vLLM's fused names: each must resolve DIRECTLY (no fused fallback, which would silently
    # take the first shard's scheme) to the one scheme its members share
    for vname, members in vllm_names(set(modules)).items():
        w, tgt = resolve(qc, vname)
        got = scheme_of(w) if w is not None else None
        for m in members:
            if got != schemes.get(m):
                fail(f"vLLM name {vname} resolves to {got} (via {tgt}), its member {m} is "
                     f"{schemes.get(m)}")

    if ex:
        if ex["nshards"] != nshards:
            fail(f"{nshards} shards, expected {ex['nshards']}")
        if sorted(ex["modules"]) != modules:
            fail(f"modules {modules} != expected {sorted(ex['modules'])}")
        for m, e in ex["modules"].items():
            want = {"num_bits": e["bits"], "symmetric": e["sym"],
                    "strategy": "group" if e["group_size"] > 0 else "channel",
                    "group_size": e["group_size"] if e["group_size"] > 0 else None,
                    "actorder": e["actorder"]}
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
        nexp = len(ex["tensors"]) + sum(
            3 + (0 if e["sym"] else 1) + (1 if e["actorder"] == "group" else 0) +
            (1 if e.get("bias_file") else 0) for e in ex["modules"].values())
        if len(ts) != nexp:
            fail(f"{len(ts)} tensors, expected {nexp}")
        # float linears: ignored under HF and vLLM names, never targeted
        for f_mod in ex["float_modules"]:
            if not ignored(f_mod, qc.get("ignore") or []):
                fail(f"float module {f_mod} is not ignored")
            if f_mod + ".weight" not in ts:
                fail(f"float module {f_mod} has no plain weight")
        for vname, members in vllm_names(set(ex["float_modules"])).items():
            if not ignored(vname, qc.get("ignore") or []):
                fail(f"float vLLM module {vname} is not ignored")
        if "lm_head" not in (qc.get("ignore") or []):
            fail("lm_head is not in ignore")
        for key, val in ex["config_keys"].items():
            if cfg.get(key) != val:
                fail(f"config.json: {key} = {cfg.get(key)}, expected {val}")
        for fn in ex["copied"]:
            a = open(os.path.join(ex["src"], fn), "rb").read()
            p = os.path.join(d, fn)
            if not os.path.exists(p) or open(p, "rb").read() != a:
                fail(f"{fn} not copied")
        allowed = set(ex["copied"]) | {"config.json"}
        allowed |= {"model.safetensors"} if nshards == 1 else {"model.safetensors.index.json"}
        allowed |= {"model-%05d-of-%05d.safetensors" % (k + 1, nshards) for k in range(nshards)}
        extra = set(os.listdir(d)) - allowed
        if extra:
            fail(f"unexpected files {sorted(extra)}")

    if gd.failures:
        print(f"ct_decode: {len(gd.failures)} failure(s) in {d}", file=sys.stderr)
        return 1
    print(f"ct_decode: {d}: {len(decoded)} modules, {nshards} shard(s), "
          f"{len(groups)} config group(s), ignore {len(qc.get('ignore') or [])}: OK")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
