#!/usr/bin/python3
"""test_dead_columns.py: dead Hessian columns, raised damping and the fp64 fallback of the GPTQ
factorization reach report.md (issue 20, point 8; lib/recon_notes.h, docs/reconstruct.md
"Dead columns and damping").

A synthetic f32 Llama (3 layers, hidden 64) whose layer 1 input_layernorm weight is 0 on
columns 0..15 (q, k, v of layer 1 see 16 inputs that are always 0) and whose layer 2
post_attention_layernorm weight is 0 on columns 8..15 (gate, up of layer 2: 8 dead); the
embedding table's columns 32..63 repeat columns 0..31, so layer 0's q, k, v see 32 input
columns equal to 32 others: their Hessian is singular without being dead (harmless at the
default damping, which adds 0.01 mean diag(H); at damping 0 its Cholesky meets 32 pivots
that are rounding noise).
  1. quantized inputs, default damping, at 1 and 2 ranks: table/ndead of every candidate is
     16 for layer 1's q, k, v, 8 for layer 2's gate, up, 0 elsewhere, in recon/ and final/;
     every candidate's dequantized weights are 0 on those columns (codes == zero point) while
     the float weights are not; report.md's "Dead columns and damping (GPTQ)" table has
     exactly those rows (pass, layer, linear, "16 of 64", damping used 0.01, configured
     0.01, raised 0, fp64 no), equal to the layer files' tables, and the section's text is
     the same at 1 and 2 ranks;
  2. float inputs at 2 ranks: the same recon/ rows (final/ has no layer files);
  3. quant.damp 0: layer 0's q, k, v rows say damping used 1 (damp_max), configured 0,
     raised 1, fp64 no; quant.damp 0 and damp_max 0: nothing can make that Hessian
     factorizable (it is singular in fp64 too), so the run stops with exit 2 and one line
     naming it. (The fp64 fallback itself, where fp32 alone fails, is test_quant_gptq's
     structural case, a pivot fp32 rounds to 0: since the factor never forms H^-1, data that
     is fine in fp64 is rarely not in fp32; the report's fp64 clause is test_recon_notes'.)
  4. the issue's case: calibration tokens all id 0, whose embedding row is 0: every input
     column of every linear of every layer is dead (21 rows per pass, "d_in of d_in");
  5. quant.method rtn: the section says no Hessian is factored, no table.
Usage: test_dead_columns.py  (env: QS_BIN, QS_MPIEXEC)"""
import os
import struct
import sys

import h5py
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import qstest as Q  # noqa: E402
from qstest import check  # noqa: E402

NL = 3
LIN = ["q", "k", "v", "o", "gate", "up", "down"]
PROJ = {"q": "self_attn.q_proj", "k": "self_attn.k_proj", "v": "self_attn.v_proj",
        "o": "self_attn.o_proj", "gate": "mlp.gate_proj", "up": "mlp.up_proj",
        "down": "mlp.down_proj"}
SECTION = "## Dead columns and damping (GPTQ)\n\n"
# (layer, linear) -> the dead input columns the model's construction gives
DEAD = {(1, k): list(range(16)) for k in ("q", "k", "v")}
DEAD.update({(2, k): list(range(8, 16)) for k in ("gate", "up")})


def set_f32(model, name, cols, value):
    path = os.path.join(model, "model.safetensors")
    hdr, base = Q.safetensors_header(path)
    t = hdr[name]
    with open(path, "r+b") as f:
        for i in cols:
            f.seek(base + t["data_offsets"][0] + 4 * i)
            f.write(struct.pack("<f", value))


def float_weight(model, name):
    path = os.path.join(model, "model.safetensors")
    hdr, base = Q.safetensors_header(path)
    t = hdr[name]
    a, b = t["data_offsets"]
    with open(path, "rb") as f:
        f.seek(base + a)
        return np.frombuffer(f.read(b - a), dtype="<f4").reshape(t["shape"])


def notes_md(md):
    """(sentences, rows) of report.md's section: the lines naming recon/ or final/, and the
    table rows as lists of cells."""
    if SECTION not in md:
        return None, None
    body = md.split(SECTION, 1)[1].split("\n## ", 1)[0]
    sent = [x for x in body.splitlines() if x.startswith(("recon/", "final/"))]
    rows = [[c.strip() for c in x.strip().strip("|").split("|")] for x in body.splitlines()
            if x.startswith("| ") and not x.startswith("| pass ")]
    return sent, rows


def table_rows(rd, damp_cfg):
    """The rows report.md must show, from the layer files' tables: per pass and layer, every
    linear with dead columns, raised damping or fp64 (largest value over its columns)."""
    rows = []
    for sub in ("recon", "final"):
        for l in range(NL):
            p = Q.layer_path(rd, sub, l)
            if not os.path.exists(p):
                continue
            with h5py.File(p, "r") as f:
                t = {k: f["table/" + k][()] for k in ("ndead", "damp", "damp_raised", "fp64",
                                                       "d_in")}
            for k, name in enumerate(LIN):
                nd, dp = int(t["ndead"][k].max()), float(t["damp"][k].max())
                nr, fp = int(t["damp_raised"][k].max()), int(t["fp64"][k].max())
                if nd or nr or fp:
                    rows.append([sub, str(l), name, f"{nd} of {int(t['d_in'][k])}", "%g" % dp,
                                 "%g" % damp_cfg, str(nr), "yes" if fp else "no"])
    return rows


def check_ndead(rd, subs, dead, label):
    """table/ndead of every column equals the construction's count per (layer, linear)."""
    for sub in subs:
        for l in range(NL):
            with h5py.File(Q.layer_path(rd, sub, l), "r") as f:
                nd = f["table/ndead"][()]
            want = np.array([[len(dead.get((l, k), []))] * nd.shape[1] for k in LIN])
            check(np.array_equal(nd, want), f"{label}: {sub} layer {l} table/ndead {nd.tolist()}")


def check_zero_columns(rd, model, subs, dead, label):
    """Every candidate's dequantized weight is 0 on the dead columns: code == zero point
    (scale * (code - zero) = 0), while the float weight is not 0 there."""
    for (l, k), cols in sorted(dead.items()):
        w = float_weight(model, f"model.layers.{l}.{PROJ[k]}.weight")
        check(np.all(np.abs(w[:, cols]).max(axis=0) > 0), f"{label}: float {k} {l} nonzero")
        for sub in subs:
            with h5py.File(Q.layer_path(rd, sub, l), "r") as f:
                names = list(f[k].keys())
                for c in names:
                    codes, zeros = f[f"{k}/{c}/codes"][()], f[f"{k}/{c}/zeros"][()]
                    g = f[f"{k}/{c}/g_idx"][()]
                    ok = np.array_equal(codes[:, cols].astype(np.int64),
                                        zeros[:, g[cols]].astype(np.int64))
                    check(ok, f"{label}: {sub} layer {l} {k}/{c}: dead columns dequantize to 0")
            check(len(names) > 0, f"{label}: {sub} layer {l} {k} has candidates")


def dead_rows(sub, damp):
    """The report rows of the construction's dead columns in one pass at damping `damp`."""
    return [[sub, str(l), k, f"{len(c)} of 64", damp, damp, "0", "no"]
            for (l, k), c in sorted(DEAD.items(), key=lambda x: (x[0][0], LIN.index(x[0][1])))]


def expect_rows(rows, want, label):
    check(rows == want, f"{label}: report rows\n{rows}\nvs\n{want}")


def main(tmp):
    model = os.path.join(tmp, "model")
    if not Q.synth_model(model, layers=NL, hidden=64, intermediate=128, heads=2, kv_heads=1,
                         vocab=256, tokens=8192, dtype="f32"):
        return
    set_f32(model, "model.layers.1.input_layernorm.weight", range(16), 0.0)
    set_f32(model, "model.layers.2.post_attention_layernorm.weight", range(8, 16), 0.0)
    # the embedding table's columns 32..63 repeat columns 0..31 (vocab 256 x hidden 64)
    emb = float_weight(model, "model.embed_tokens.weight").copy()
    emb[:, 32:] = emb[:, :32]
    path = os.path.join(model, "model.safetensors")
    hdr, off = Q.safetensors_header(path)
    with open(path, "r+b") as f:
        f.seek(off + hdr["model.embed_tokens.weight"]["data_offsets"][0])
        f.write(emb.astype("<f4").tobytes())
    tokens = os.path.join(model, "tokens.u32")
    base = {"calib": {"tokens": tokens, "nsamples": 8, "seqlen": 32, "chunk_samples": 2},
            "quant": {"bits": [3, 4], "group_size": [32], "row_block": 32},
            "search": {"target_bpw": 4.6}}

    def run(name, ranks, *sets, mdir=model, sections=None):
        rd = os.path.join(tmp, name)
        cfg = Q.write_config(os.path.join(tmp, name + ".yaml"), mdir, rd, **(sections or base))
        args = ["run", cfg] + [x for s in sets for x in ("--set", s)]
        r = Q.qs(ranks, *args, timeout=300)
        check(r.returncode == 0, f"{name}: rc {r.returncode} {r.stderr[-600:]}")
        md = open(os.path.join(rd, "report.md")).read() if r.returncode == 0 else ""
        return rd, md

    # 1. quantized inputs, default damping, 1 and 2 ranks
    want_dead = [r for sub in ("recon", "final") for r in dead_rows(sub, "0.01")]
    texts = []
    for ranks in (1, 2):
        rd, md = run(f"q{ranks}", ranks)
        if not md:
            return
        sent, rows = notes_md(md)
        check(sent == ["recon/ (3 layer file(s)): 5 of 21 (layer, linear) pairs had dead input "
                       "columns, 0 raised the damping, 0 used the fp64 fallback.",
                       "final/ (3 layer file(s)): 5 of 21 (layer, linear) pairs had dead input "
                       "columns, 0 raised the damping, 0 used the fp64 fallback."],
              f"{ranks} ranks: sentences {sent}")
        expect_rows(rows, want_dead, f"{ranks} ranks")
        expect_rows(rows, table_rows(rd, 0.01), f"{ranks} ranks vs the tables")
        check("What it means" in md.split(SECTION, 1)[1], "the meaning is explained")
        check_ndead(rd, ("recon", "final"), DEAD, f"{ranks} ranks")
        check_zero_columns(rd, model, ("recon", "final"), DEAD, f"{ranks} ranks")
        texts.append(md.split(SECTION, 1)[1].split("\n## ", 1)[0])
    check(texts[0] == texts[1], "the section is the same at 1 and 2 ranks")

    # 2. float inputs
    rd, md = run("float", 2, "reconstruct.inputs=float")
    sent, rows = notes_md(md)
    expect_rows(rows, [r for r in want_dead if r[0] == "recon"], "float inputs")
    check(sent is not None and len(sent) == 1 and sent[0].startswith("recon/ (3 layer file(s)): "
                                                                       "5 of 21"),
          f"float inputs: one sentence (no final/ layer files): {sent}")
    check_ndead(rd, ("recon",), DEAD, "float inputs")

    # 3. damping 0: layer 0's q, k, v need more (their Hessian is singular); without room to
    # raise, exit 2. The dead columns' groups factor at quant.damp (a dead H_ii is set to 1).
    rd, md = run("damp0", 2, "quant.damp=0")
    _, rows = notes_md(md)
    want = [r for sub in ("recon", "final") for r in
            [[sub, "0", k, "0 of 64", "1", "0", "1", "no"] for k in ("q", "k", "v")] +
            dead_rows(sub, "0")]
    expect_rows(rows, want, "damp0")
    expect_rows(rows, table_rows(rd, 0.0), "damp0 vs the tables")
    cfg = Q.write_config(os.path.join(tmp, "nodamp.yaml"), model, os.path.join(tmp, "nodamp"),
                         **base)
    r = Q.qs(2, "run", cfg, "--set", "quant.damp=0", "--set", "quant.damp_max=0", timeout=300)
    lines = [x for x in r.stderr.splitlines() if x.startswith("qshard: error")]
    check(r.returncode == 2 and len(lines) == 1 and lines[0].startswith(
          "qshard: error: layer 0, qkv inputs: Hessian (64 x 64): not positive definite even "
          "with damp 0") and "quant.damp_max" in lines[0],
          f"damp 0, damp_max 0: exit {r.returncode}, {lines or r.stderr[-400:]}")

    # 4. the issue's case: an all-zero Hessian (token 0's embedding row is 0, every calibration
    # token is 0): every input column of every linear is dead, in every layer
    zmodel = os.path.join(tmp, "zmodel")
    if Q.synth_model(zmodel, layers=NL, hidden=64, intermediate=128, heads=2, kv_heads=1,
                     vocab=256, tokens=8192, dtype="f32"):
        set_f32(zmodel, "model.embed_tokens.weight", range(64), 0.0)
        ztok = os.path.join(zmodel, "zeros.u32")
        with open(ztok, "wb") as f:
            f.write(b"\0" * 4 * 4096)
        zs = dict(base, calib=dict(base["calib"], tokens=ztok))
        rd, md = run("zero", 2, mdir=zmodel, sections=zs)
        _, rows = notes_md(md)
        want = [[sub, str(l), k, "128 of 128" if k == "down" else "64 of 64", "0.01", "0.01",
                 "0", "no"] for sub in ("recon", "final") for l in range(NL) for k in LIN]
        expect_rows(rows, want, "all-zero Hessian")
        alldead = {(l, k): list(range(128 if k == "down" else 64)) for l in range(NL) for k in LIN}
        check_ndead(rd, ("recon", "final"), alldead, "all-zero Hessian")

    # 5. RTN: nothing is factored
    rs = dict(base, quant=dict(base["quant"], method="rtn"))
    rd, md = run("rtn", 1, sections=rs)
    check(SECTION + "quant.method rtn: no Hessian is factored, nothing to report.\n\n" in md,
          "rtn: the section says so")


with Q.tempdir("qs_dead_") as d:
    main(d)
Q.finish()
