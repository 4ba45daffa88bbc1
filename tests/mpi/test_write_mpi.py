#!/usr/bin/python3
"""test_write_mpi.py: the write stage (stages/write.c), `qshard verify` and eval of the
written files, through `mpiexec -n N qshard run` on a synthetic model (2 layers, hidden 128,
intermediate 256, GQA), candidates bits [2, 3, 4, 8] x groups [32, 64], reconstruct inputs
float. The test writes run/search/allocation.json itself before the run: a mixed allocation
(different bits per layer and per linear, q/k/v and gate/up tied, one linear left float).
Variants (each a separate run): A asym / no act-order / v1 at 1, 2, 3 ranks;
B sym / act-order / gptq_v2; C asym / act-order / gptq_v2 (small shards: several files);
D sym / no act-order / v1.
  (1) the shards are byte-identical at 1, 2 and 3 ranks (A; compared with cmp semantics);
  (2) `h5dump -H` reads every shard (exit 0);
  (3) a numpy reader of the shards (written here from docs/write.md) and
      tests/ref/gptq_decode.py (the export) dequantize to bit-identical weights, equal to
      the dequantized codes of recon/ (scale * (code - zero) through g_idx); plain tensors are
      the checkpoint's bytes; every module's scheme resolves through the dynamic map under
      the HF and the vLLM (fused) names;
  (4) `qshard verify` accepts the run and the export (exit 0), and names the file (exit 2,
      one line) for a tampered shard, a tampered export tensor and a missing file;
  (5) eval --weights h5 / gptq / final give the same nll_sum (bit for bit) at 1 and 3 ranks;
  (6) a --resume run skips the write stage (manifest matches, shards untouched);
  (7) compressed-tensors read back (ct_variants): F asym with GPTQ and compressed-tensors
      written, G sym 4/8-bit with compressed-tensors and no GPTQ (mixed groups, one float
      linear each): eval --weights ct equals gptq and final bit for bit at 1 and 2 ranks, the
      eval stage evaluates run/export-ct when no GPTQ export is written, verify decodes it,
      and the error cases exit 2 with one line.
Usage: test_write_mpi.py  (env: QS_BIN, QS_MPIEXEC, QS_SOURCE_DIR)"""
import glob
import hashlib
import importlib.util
import json
import os
import re
import shutil
import sys
import time

import h5py
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import qstest as Q  # noqa: E402
from qstest import check, qs  # noqa: E402

NL = 2
LINS = Q.LINS
HF = {"q": "self_attn.q_proj", "k": "self_attn.k_proj", "v": "self_attn.v_proj",
      "o": "self_attn.o_proj", "gate": "mlp.gate_proj", "up": "mlp.up_proj",
      "down": "mlp.down_proj"}
FUSED = {"q": "qkv_proj", "k": "qkv_proj", "v": "qkv_proj", "gate": "gate_up_proj",
         "up": "gate_up_proj"}
# mixed allocation: every bit width, both group sizes, q/k/v and gate/up tied, one float
ALLOC = [["w2g32", "w2g32", "w2g32", "w8g64", "w3g32", "w3g32", "w4g64"],
         ["w4g32", "w4g32", "w4g32", "", "w8g32", "w8g32", "w3g64"]]

spec = importlib.util.spec_from_file_location(
    "gptq_decode", os.path.join(Q.SRC, "tests", "ref", "gptq_decode.py"))
gd = importlib.util.module_from_spec(spec)
spec.loader.exec_module(gd)


def write_config(path, model, run_dir, sym, act, fmt, shard_bytes, inputs="float"):
    Q.write_config(path, model, run_dir,
                   calib={"tokens": f"{model}/tokens.u32", "nsamples": 8, "seqlen": 64,
                          "chunk_samples": 4, "seed": 3},
                   quant={"bits": [2, 3, 4, 8], "group_size": [32, 64], "row_block": 64,
                          "block_size": 32, "sym": sym, "act_order": act},
                   reconstruct={"inputs": inputs, "propagate": "w4g32"},
                   search={"pin": ["layers.*.*=w4g32"]},
                   output={"checkpoint_format": fmt, "shard_bytes": shard_bytes},
                   eval={"tokens": f"{model}/tokens.u32", "seqlen": 64, "max_windows": 6})


def write_alloc(run_dir, alloc=None):
    """Plays the search: replaces search/allocation.json by ALLOC (which has a float linear,
    something the search never chooses) and updates its hash in search/manifest.json, so a
    --resume run keeps the search and rewrites the outputs."""
    path = os.path.join(run_dir, "search", "allocation.json")
    with open(path, "w") as f:
        json.dump({"format": "qshard-allocation-1", "objective": "uniform", "budget_bytes": 0,
                   "payload_bytes": 0, "total_bytes": 0, "quantized_weights": 0, "bpw": 0,
                   "predicted": 0, "linears": LINS, "layers": alloc or ALLOC}, f)
    mpath = os.path.join(run_dir, "search", "manifest.json")
    man = Q.read_json(mpath)
    man["outputs"]["search/allocation.json"] = hashlib.sha256(open(path, "rb").read()).hexdigest()
    json.dump(man, open(mpath, "w"), indent=1)


def unpack(words, count, bits):
    return gd.unpack_rows(words, count, bits)


def shard_linears(out_dir):
    """numpy reader of run/out/: {module: float32 weight}, {tensor: raw bytes}, schemes."""
    idx = Q.read_json(os.path.join(out_dir, "index.json"))
    check(idx["format"] == "qshard-shards-1", "index format")
    lin, plain, schemes = {}, {}, {}
    for name, fn in idx["weight_map"].items():
        with h5py.File(os.path.join(out_dir, fn), "r") as f:
            obj = f[name]
            if isinstance(obj, h5py.Group):
                a = obj.attrs
                bits, g, v2 = int(a["bits"]), int(a["group_size"]), int(a["v2"])
                d_out, d_in = int(a["d_out"]), int(a["d_in"])
                q = unpack(obj["qweight"][()], d_in, bits)             # (d_in, d_out)
                z = unpack(obj["qzeros"][()].T, d_out, bits).T          # (G, d_out)
                z = z if v2 else z + 1
                s = obj["scales"][()].view(np.float16).astype(np.float32)  # (G, d_out)
                gi = obj["g_idx"][()]
                w = s[gi, :] * (q - z[gi, :]).astype(np.float32)       # (d_in, d_out)
                lin[name] = np.ascontiguousarray(w.T)
                schemes[name] = (bits, g)
            else:
                dt = obj.attrs["dtype"]
                dt = dt.decode() if isinstance(dt, bytes) else dt
                plain[name] = (dt, list(obj.shape), obj[()].tobytes())
    return lin, plain, schemes


def recon_weights(run_dir, sub):
    out = {}
    for l in range(NL):
        with h5py.File(Q.layer_path(run_dir, sub, l), "r") as f:
            for i, lin in enumerate(LINS):
                c = ALLOC[l][i]
                if not c:
                    continue
                g = f[f"{lin}/{c}"]
                codes = g["codes"][()].astype(np.float32)
                s = g["scales"][()].view(np.float16).astype(np.float32)
                z = g["zeros"][()].astype(np.float32)
                gi = g["g_idx"][()]
                out[f"model.layers.{l}.{HF[lin]}"] = s[:, gi] * (codes - z[:, gi])
    return out


def checkpoint_tensors(model):
    """The source model's tensors {name: (dtype, shape, raw bytes)} (single file or shards)."""
    out = {}
    for p in sorted(glob.glob(os.path.join(model, "*.safetensors"))):
        hdr, base = Q.safetensors_header(p)
        blob = open(p, "rb").read()
        for k, e in hdr.items():
            if k == "__metadata__":
                continue
            a, b = e["data_offsets"]
            out[k] = (e["dtype"], e["shape"], blob[base + a:base + b])
    return out


def check_variant(label, model, rd, sym, act, sub):
    out = os.path.join(rd, "out")
    shards = sorted(glob.glob(os.path.join(out, "model-*.h5")))
    check(len(shards) >= 1, f"{label}: no shards")
    for s in shards:
        r = Q.run(["h5dump", "-H", s])
        check(r.returncode == 0, f"{label}: h5dump -H {s}: {r.stderr[:200]}")
    lin, plain, schemes = shard_linears(out)
    rec = recon_weights(rd, sub)
    check(set(lin) == set(rec), f"{label}: quantized modules {sorted(lin)} != {sorted(rec)}")
    for m, w in rec.items():
        check(m in lin and lin[m].tobytes() == w.astype(np.float32).tobytes(),
              f"{label}: shard weight of {m} differs from recon's codes")
    # the export through the independent decoder
    exp = os.path.join(rd, "export")
    ts, nsh = gd.read_checkpoint(exp)
    cfg = Q.read_json(os.path.join(exp, "config.json"))["quantization_config"]
    qc = Q.read_json(os.path.join(exp, "quantize_config.json"))
    check(qc == cfg, f"{label}: quantize_config.json != config.json quantization_config")
    v2 = cfg["checkpoint_format"] == "gptq_v2"
    check(bool(cfg["sym"]) == bool(sym) and bool(cfg["desc_act"]) == bool(act),
          f"{label}: top-level sym/desc_act {cfg}")
    for m in rec:
        l = int(m.split(".")[2])
        short = [k for k in LINS if m.endswith(HF[k])][0]
        want = (int(ALLOC[l][LINS.index(short)][1]), int(ALLOC[l][LINS.index(short)].split("g")[1]))
        names = [m]
        if short in FUSED:
            names.append(m.rsplit(".", 1)[0] + "." + FUSED[short])
        for n in names:
            got = resolve(cfg, n)
            check(got == want, f"{label}: {n} resolves to {got}, expected {want}")
        bits, g = want
        w, _ = gd.dequant(ts, m, bits, g, v2)
        if not check(w is not None, f"{label}: decoder failed on {m}"):
            continue
        check(w.astype(np.float32).tobytes() == lin[m].tobytes(),
              f"{label}: export weight of {m} differs from the shards")
    # float linears: excluded by a "-:" key under both spellings, plain weight in the export
    for l in range(NL):
        for i, short in enumerate(LINS):
            if ALLOC[l][i]:
                continue
            m = f"model.layers.{l}.{HF[short]}"
            names = [m] + ([m.rsplit(".", 1)[0] + "." + FUSED[short]] if short in FUSED else [])
            for n in names:
                check(resolve(cfg, n) is None, f"{label}: float {n} resolves to {resolve(cfg, n)}")
            check(m + ".weight" in ts and m + ".qweight" not in ts, f"{label}: float {m} in export")
    # plain tensors: the checkpoint's bytes, in shards and export
    ck = checkpoint_tensors(model)
    for name, (dt, shape, raw) in ck.items():
        if name.endswith(".weight") and name[:-7] in lin:
            continue
        check(name in plain and plain[name][2] == raw and plain[name][0] == dt,
              f"{label}: shard tensor {name} is not the checkpoint's bytes")
        check(name in ts and ts[name][2] == raw, f"{label}: export tensor {name} differs")
    return nsh, len(shards)


def resolve(cfg, module):
    """(bits, group) of a module as vLLM / GPTQModel resolve it: first re.match wins."""
    bits, g = cfg["bits"], cfg["group_size"]
    for k, v in cfg.get("dynamic", {}).items():
        neg = k.startswith("-:")
        pat = k[2:] if k[:2] in ("+:", "-:") else k
        if re.match(pat, module):
            if neg:
                return None
            return (v.get("bits", bits), v.get("group_size", g))
    return (bits, g)


def shard_bytes(rd):
    return {os.path.basename(p): open(p, "rb").read()
            for p in sorted(glob.glob(os.path.join(rd, "out", "model-*.h5")))}


def nll(rd, cfgp, n, weights):
    r = qs(n, "eval", cfgp, "--weights", weights)
    if not check(r.returncode == 0, f"eval {weights} n={n}: {r.stderr}"):
        return None
    return Q.eval_json(rd)["nll_sum"]


# what compressed-tensors takes (4-bit sym/asym, 8-bit sym): mixed groups, one float linear
ALLOC_CT = {"F": [["w4g32"] * 3 + ["w4g64", "w4g32", "w4g32", "w4g64"],
                  ["w4g64"] * 3 + ["", "w4g64", "w4g64", "w4g32"]],
            "G": [["w8g32"] * 3 + ["w4g64", "w4g32", "w4g32", "w8g64"],
                  ["w4g64"] * 3 + ["", "w8g32", "w8g32", "w4g32"]]}


def ct_variants(tmp, model):
    """(7): the compressed-tensors export read back by qshard's eval and verify."""
    for label, sym, formats in (("F", False, ["gptq", "compressed-tensors", "hdf5"]),
                                ("G", True, ["compressed-tensors", "hdf5"])):
        rd, cfgp = os.path.join(tmp, label), os.path.join(tmp, label + ".yaml")
        Q.write_config(cfgp, model, rd,
                       calib={"tokens": f"{model}/tokens.u32", "nsamples": 8, "seqlen": 64,
                              "chunk_samples": 4, "seed": 3},
                       quant={"bits": [4, 8] if sym else [4], "group_size": [32, 64],
                              "row_block": 64, "block_size": 32, "sym": sym, "act_order": False},
                       reconstruct={"inputs": "float", "propagate": "w4g32"},
                       search={"pin": ["layers.*.*=w4g32"]},
                       output={"formats": formats},
                       eval={"tokens": f"{model}/tokens.u32", "seqlen": 64, "max_windows": 6})
        r = qs(1, "run", cfgp)
        if not check(r.returncode == 0, f"{label}: rc {r.returncode} {r.stderr}"):
            continue
        write_alloc(rd, ALLOC_CT[label])
        r = qs(2, "run", cfgp, "--resume")
        if not check(r.returncode == 0, f"{label}: resume rc {r.returncode} {r.stderr}"):
            continue
        staged = Q.eval_json(rd)  # the eval stage's: of the served file
        want = "gptq" if "gptq" in formats else "ct"
        check(staged["weights"] == want, f"{label}: the eval stage evaluated {staged['weights']}")
        srcs = ("final", "ct") + (("gptq",) if "gptq" in formats else ())
        for n in (1, 2):
            vals = {w: nll(rd, cfgp, n, w) for w in srcs}
            check(vals["final"] is not None and len(set(vals.values())) == 1 and
                  staged["nll_sum"] == vals["final"],
                  f"{label} n={n}: eval of {srcs} differ: {vals}, eval stage {staged['nll_sum']}")
        r = Q.run([Q.QS, "verify", rd])
        check(r.returncode == 0 and "export-ct" in r.stdout,
              f"{label}: verify: rc {r.returncode} {r.stderr}")
    cfgF, cfgG = os.path.join(tmp, "F.yaml"), os.path.join(tmp, "G.yaml")
    r = qs(1, "eval", cfgF, "--weights", "ct:" + os.path.join(tmp, "F", "export"))
    check(Q.one_error(r, "config.json", "compressed-tensors"),
          f"eval ct:DIR of a GPTQ export: rc {r.returncode} {r.stderr}")
    r = qs(1, "eval", cfgF, "--weights", "ct:")
    check(Q.one_error(r, "ct:DIR"), f"eval ct: without DIR: rc {r.returncode} {r.stderr}")
    shutil.rmtree(os.path.join(tmp, "G", "export-ct"), ignore_errors=True)
    r = qs(1, "eval", cfgG, "--weights", "ct")
    check(Q.one_error(r, "export-ct"), f"eval of a missing export-ct: rc {r.returncode} {r.stderr}")


def main(tmp):
    model = os.path.join(tmp, "m")
    if not Q.synth_model(model, layers=NL, hidden=128, intermediate=256, heads=4, kv_heads=2,
                         vocab=256, tokens=8000):
        return
    variants = [("A", False, False, "gptq", 1 << 30, (1, 2, 3), "float"),
                ("B", True, True, "gptq_v2", 1 << 30, (2,), "float"),
                ("C", False, True, "gptq_v2", 60000, (3,), "float"),
                ("D", True, False, "gptq", 1 << 30, (1,), "float"),
                ("E", False, False, "gptq", 1 << 30, (1, 3), "quantized")]
    for label, sym, act, fmt, sb, ranks, inputs in variants:
        ref = None
        for n in ranks:
            rd = os.path.join(tmp, f"{label}{n}")
            cfgp = os.path.join(tmp, f"{label}{n}.yaml")
            write_config(cfgp, model, rd, sym, act, fmt, sb, inputs)
            t0 = time.time()
            # the whole pipeline with a pinned uniform search, then our mixed allocation
            r = qs(n, "run", cfgp, "--set", "eval.tokens=")
            if not check(r.returncode == 0, f"{label} n={n}: rc {r.returncode} {r.stderr}"):
                continue
            check(os.path.exists(os.path.join(rd, "out", "manifest.json")),
                  f"{label} n={n}: the pipeline did not write")
            write_alloc(rd)
            r = qs(n, "run", cfgp, "--resume", "--set", "eval.tokens=")
            if not check(r.returncode == 0, f"{label} n={n}: resume rc {r.returncode} {r.stderr}"):
                continue
            print(f"{label} n={n}: run {time.time() - t0:.1f} s")
            data = shard_bytes(rd)
            hashes = Q.run_file_hashes(rd)
            check(any(k.startswith("export/") for k in hashes) and
                  any(k.startswith("final/" if inputs == "quantized" else "recon/") for k in hashes),
                  f"{label} n={n}: run_file_hashes covers export/ and the layer files")
            if ref is None:
                ref = data
                ref_hashes = hashes
                nexp, nh5 = check_variant(f"{label} n={n}", model, rd, sym, act,
                                          "final" if inputs == "quantized" else "recon")
                if label == "C":
                    check(nh5 > 1 and nexp > 1, f"C: expected several shards ({nh5}, {nexp})")
                r = Q.run([Q.QS, "verify", rd])
                check(r.returncode == 0, f"{label}: verify run dir: {r.stderr}")
                r = Q.run([Q.QS, "verify", os.path.join(rd, "export")])
                check(r.returncode == 0, f"{label}: verify export: {r.stderr}")
            else:
                check(data.keys() == ref.keys() and all(data[k] == ref[k] for k in ref),
                      f"{label} n={n}: shards differ from n={ranks[0]}")
                diff = Q.diff_hashes(hashes, ref_hashes)
                check(not diff, f"{label} n={n}: run directory files (HDF5, manifests, "
                      f"export) differ from n={ranks[0]}: {diff}")
    # (4) tampering, (5) eval, (6) resume on variant A
    rdA, cfgA = os.path.join(tmp, "A1"), os.path.join(tmp, "A1.yaml")
    rd3, cfg3 = os.path.join(tmp, "A3"), os.path.join(tmp, "A3.yaml")
    if os.path.exists(os.path.join(rdA, "out", "manifest.json")):
        before = shard_bytes(rdA)
        r = qs(2, "run", cfgA, "--resume", "--set", "eval.tokens=")
        check(r.returncode == 0, f"resume: {r.stderr}")
        check(shard_bytes(rdA) == before, "resume rewrote different shards")
        evals = [(1, rdA, cfgA), (3, rd3, cfg3)]
        evals += [(n, os.path.join(tmp, f"E{n}"), os.path.join(tmp, f"E{n}.yaml")) for n in (1, 3)]
        for n, rd, cfgp in evals:
            vals = {w: nll(rd, cfgp, n, w) for w in ("final", "h5", "gptq", "float")}
            check(vals["final"] is not None and vals["final"] == vals["h5"] == vals["gptq"],
                  f"eval n={n}: final/h5/gptq differ: {vals}")
            check(vals["float"] != vals["final"], f"eval n={n}: quantized equals float")
        r = qs(1, "eval", cfgA, "--weights", "gptq:" + os.path.join(rd3, "export"))
        check(r.returncode == 0, f"eval gptq:DIR: {r.stderr}")
        # the ends come from the written files too: a changed final norm changes the result
        exp2 = os.path.join(tmp, "exp2")
        shutil.copytree(os.path.join(rdA, "export"), exp2)
        st2 = os.path.join(exp2, "model.safetensors")
        hdr2, base2 = Q.safetensors_header(st2)
        blob = bytearray(open(st2, "rb").read())
        a = hdr2["model.norm.weight"]["data_offsets"][0]
        blob[base2 + a + 1] ^= 0x80  # sign of the first element (bf16 high byte)
        open(st2, "wb").write(bytes(blob))
        base = nll(rdA, cfgA, 1, "final")
        changed = nll(rdA, cfgA, 1, "gptq:" + exp2)
        check(base is not None and changed is not None and changed != base,
              f"eval of an export with a changed norm equals final ({changed} {base})")
        # tampered shard: flip one byte in the middle
        shard = sorted(glob.glob(os.path.join(rd3, "out", "model-*.h5")))[0]
        blob = bytearray(open(shard, "rb").read())
        blob[len(blob) // 2] ^= 0xFF
        open(shard, "wb").write(bytes(blob))
        r = Q.run([Q.QS, "verify", rd3])
        lines = r.stderr.strip().splitlines()
        check(r.returncode == 2 and len(lines) == 1 and os.path.basename(shard) in lines[0],
              f"verify tampered shard: rc {r.returncode} {r.stderr}")
        # a flipped data byte in a copy of the export: verify EXPORT_DIR checks every file
        # against the qshard-checksums.json the export carries
        exp = os.path.join(rd3, "export")
        flipped = os.path.join(tmp, "export-flipped")
        shutil.copytree(exp, flipped)
        st = sorted(glob.glob(os.path.join(flipped, "*.safetensors")))[-1]
        blob = bytearray(open(st, "rb").read())
        blob[-3] ^= 0x01
        open(st, "wb").write(bytes(blob))
        r = Q.run([Q.QS, "verify", flipped])
        check(Q.one_error(r, os.path.basename(st), "SHA-256"),
              f"verify of an export with a flipped data byte: rc {r.returncode} {r.stderr}")
        # tampered export: scales of one module reshaped in the header is hard; drop a tensor
        st = glob.glob(os.path.join(exp, "*.safetensors"))[0]
        blob = bytearray(open(st, "rb").read())
        n = int.from_bytes(blob[:8], "little")
        hdr = json.loads(blob[8:8 + n].decode().rstrip())
        name = [k for k in hdr if k.endswith(".g_idx")][0]
        hdr[name]["dtype"] = "F32"  # same byte count, wrong dtype
        # compact separators, as the writer: the same length, padded with spaces (a header
        # that no longer fits would leave the check unrun: that is a failure, not a skip)
        text = json.dumps(hdr, separators=(",", ":")).encode()
        text += b" " * (n - len(text))
        check(len(text) == n, f"the tampered header does not fit: {len(text)} vs {n} bytes")
        open(st, "wb").write(bytes(blob[:8]) + text[:n] + bytes(blob[8 + n:]))
        r = Q.run([Q.QS, "verify", exp])
        lines = r.stderr.strip().splitlines()
        check(r.returncode == 2 and len(lines) == 1 and os.path.basename(st) in lines[0],
              f"verify tampered export: rc {r.returncode} {r.stderr}")
        os.remove(os.path.join(rdA, "out", "index.json"))
        r = Q.run([Q.QS, "verify", rdA])
        lines = r.stderr.strip().splitlines()
        check(r.returncode == 2 and len(lines) == 1 and "index.json" in lines[0],
              f"verify missing file: rc {r.returncode} {r.stderr}")
        shutil.rmtree(os.path.join(tmp, "D1", "export"), ignore_errors=True)
        r = qs(1, "eval", os.path.join(tmp, "D1.yaml"), "--weights", "gptq")
        check(Q.one_error(r, "export"), f"eval of a missing export: rc {r.returncode} {r.stderr}")
        # an allocation naming a candidate the reconstruct files do not hold: exit 2, one line
        saved = [row[:] for row in ALLOC]
        ALLOC[1][6] = "w4g48"
        write_alloc(os.path.join(tmp, "D1"))
        ALLOC[:] = saved
        r = qs(2, "run", os.path.join(tmp, "D1.yaml"), "--resume", "--set", "eval.tokens=")
        check(Q.one_error(r, "w4g48"), f"unknown candidate: rc {r.returncode} {r.stderr}")
        r = Q.run([Q.QS, "verify", tmp])
        check(r.returncode == 2, f"verify of a plain directory: rc {r.returncode}")
    ct_variants(tmp, model)
    check(not gd.failures, f"gptq_decode reported: {gd.failures}")


with Q.tempdir("qs_write_") as d:
    main(d)
Q.finish()
