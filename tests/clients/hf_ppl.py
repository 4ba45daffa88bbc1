#!/usr/bin/python3
"""hf_ppl.py: loads qshard's GPTQ exports of the fixture tinyllama-a in transformers
(AutoModelForCausalLM.from_pretrained, which hands GPTQ to gptqmodel) and in
GPTQModel.load, and compares their perplexity with qshard's own eval of the same files
(not CTest: needs the venv of tests/clients/hf_setup.sh, a few GB, and minutes of CPU).

Steps:
  1. three qshard runs on tinyllama-a (GPTQ, the 128 x 256 calibration windows of
     calib_offsets_128x256.txt, the search pinned to uniform w4g128): symmetric v1 with
     candidates w4/w8 x g32/g128; asymmetric with w2/w3/w4 g128 in v2 (qshard's default for
     asymmetric) and in v1 (output.checkpoint_format: gptq);
  2. for each export of the engine table (EXPORTS below) its run directory gets that
     allocation in search/allocation.json (the search played by hand, as
     tests/mpi/test_write_mpi.py does) and `qshard run --resume` writes the export and
     evaluates it (kept in WORK/export<i>/) (run/eval.json: qshard's perplexity of the written GPTQ export, eval.u32 in
     256-token windows, the first --windows of them);
  3. each export is loaded by transformers and by GPTQModel.load (CPU, float16, 1 thread);
     a load computes the log-probabilities of every window's tokens 1..T-1 from token ids
     (no tokenizer), perplexity = exp(mean NLL), the fixtures' protocol; a refused export is
     reported with the engine's one-line error.
Prints a markdown table: export, engine, load, perplexity, qshard eval, difference.

Usage: hf_ppl.py [--venv /work/venv-hf] [--work DIR] [--qshard build/qshard]
                 [--fixtures ../shared/fixtures] [--windows N (0 = all 751)] [--only a,b]
(internal: hf_ppl.py --worker ENGINE EXPORT_DIR TOKENS SEQLEN WINDOWS SPM_MODEL, run by the
 venv's python)
"""
import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from clientlib import (options, print_table, run, venv_python, worker_result,  # noqa: E402
                       write_run_config)

LINS = ["q", "k", "v", "o", "gate", "up", "down"]
NL = 4  # tinyllama-a's layers


def uniform(c):
    return [[c] * len(LINS) for _ in range(NL)]


# q/k/v and gate/up tied (one scheme per fused module, as the search ties them)
MIXED_234 = [["w2g128"] * 3 + ["w3g128", "w4g128", "w4g128", "w3g128"],
             ["w3g128"] * 3 + ["w4g128", "w2g128", "w2g128", "w4g128"],
             ["w4g128"] * 3 + ["w2g128", "w3g128", "w3g128", "w4g128"],
             ["w4g128"] * 3 + ["w4g128", "w4g128", "w4g128", "w3g128"]]
MIXED_G = [["w4g32"] * 3 + ["w4g128"] * 4, ["w4g128"] * 3 + ["w4g32"] * 4,
           ["w4g32"] * 7, ["w4g128"] * 7]
ONE_FLOAT = uniform("w4g128")
ONE_FLOAT[1][3] = ""  # layers.1.self_attn.o_proj left in float: a "-:" dynamic key

RUNS = {  # run name: (quant.bits, quant.group_size, sym, output.checkpoint_format)
    "sym": ([4, 8], [32, 128], "true", "auto"),
    "asym": ([2, 3, 4], [128], "false", "auto"),
    "asym-v1": ([2, 3, 4], [128], "false", "gptq"),
}
EXPORTS = [  # (label as in docs/export.md's engine table, run, allocation)
    ("GPTQ v1, uniform w4g128 asym", "asym-v1", uniform("w4g128")),
    ("GPTQ v1, uniform w4g128 sym", "sym", uniform("w4g128")),
    ("GPTQ v1, mixed 2/3/4-bit asym (`dynamic`)", "asym-v1", MIXED_234),
    ("GPTQ v2, mixed 2/3/4-bit asym (`dynamic`)", "asym", MIXED_234),
    ("GPTQ v1, mixed 4-bit sym g32/g128 (`dynamic`)", "sym", MIXED_G),
    ("GPTQ v2, uniform w4g128 asym (qshard's default for asym)", "asym", uniform("w4g128")),
    ("GPTQ v1, uniform w8g128 sym", "sym", uniform("w8g128")),
    ("GPTQ v1, w4g128 sym, one linear float (`-:` key)", "sym", ONE_FLOAT),
]


def one_line(e):
    lines = [l.strip() for l in str(e).splitlines() if l.strip()]
    return (type(e).__name__ + ": " + (lines[0] if lines else repr(e)))[:300]


def with_tokenizer(export_dir, spm):
    """GPTQModel.load loads a tokenizer with every model, and the fixture model has no
    tokenizer files (so its export has none): a sibling directory of symlinks to the
    export's files plus the fixture's SentencePiece model (the tokens' own tokenizer) as
    tokenizer.model. The weights and config are the export's, untouched."""
    if any(f.startswith("tokenizer") for f in os.listdir(export_dir)):
        return export_dir
    d = export_dir.rstrip("/") + "-with-tokenizer"
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    for f in os.listdir(export_dir):
        os.symlink(os.path.join(os.path.abspath(export_dir), f), os.path.join(d, f))
    shutil.copy(spm, os.path.join(d, "tokenizer.model"))
    with open(os.path.join(d, "tokenizer_config.json"), "w") as f:
        json.dump({"tokenizer_class": "LlamaTokenizer", "bos_token": "<s>", "eos_token": "</s>",
                   "unk_token": "<unk>", "add_bos_token": True, "add_eos_token": False}, f)
    return d


def worker(engine, export_dir, tokens_path, seqlen, windows, spm):
    """Runs inside the venv: prints one JSON line {ok, ppl, n, seconds, version|error}."""
    import numpy as np
    import torch
    torch.set_num_threads(1)
    t0 = time.time()
    from importlib.metadata import version
    ver = {p: version(p) for p in ("torch", "transformers", "optimum", "gptqmodel")}
    try:
        if engine == "transformers":
            from transformers import AutoModelForCausalLM
            model = AutoModelForCausalLM.from_pretrained(export_dir, device_map="cpu",
                                                         dtype=torch.float16)
            kernel = sorted({type(m).__name__ for m in model.modules()
                             if "QuantLinear" in type(m).__name__ or "Linear" in type(m).__name__
                             and hasattr(m, "qweight")})
        else:
            from gptqmodel import GPTQModel
            model = GPTQModel.load(with_tokenizer(export_dir, spm), device="cpu", dtype=torch.float16)
            kernel = sorted({type(m).__name__ for m in model.model.modules()
                             if hasattr(m, "qweight")})
    except Exception as e:  # a refused export: the engine's own message
        print(json.dumps({"ok": False, "error": one_line(e), "version": ver}))
        return 0
    toks = np.fromfile(tokens_path, dtype="<u4").astype(np.int64)
    nwin = len(toks) // seqlen
    if windows > 0:
        nwin = min(nwin, windows)
    nll, n = 0.0, 0
    with torch.inference_mode():
        for w0 in range(0, nwin, 8):
            w1 = min(nwin, w0 + 8)
            ids = torch.from_numpy(toks[w0 * seqlen:w1 * seqlen].reshape(w1 - w0, seqlen))
            logits = model(input_ids=ids).logits.float()
            lp = torch.log_softmax(logits[:, :-1, :], dim=-1)
            tgt = ids[:, 1:].unsqueeze(-1)
            nll -= lp.gather(-1, tgt).double().sum().item()
            n += tgt.numel()
    print(json.dumps({"ok": True, "ppl": math.exp(nll / n), "n": n, "windows": nwin,
                      "kernel": kernel, "seconds": time.time() - t0, "version": ver}))
    return 0


def write_config(path, fx, rd, bits, groups, sym, fmt, windows):
    write_run_config(path, fx, rd, {"bits": bits, "group_size": groups, "sym": sym},
                     f"search:\n  pin: [\"layers.*.*=w4g128\"]\n"
                     f"output:\n  checkpoint_format: {fmt}\n", max_windows=windows)


def write_alloc(rd, alloc):
    """Plays the search: search/allocation.json := alloc, its hash in search/manifest.json
    updated, so a --resume run keeps the search and rewrites the outputs."""
    path = os.path.join(rd, "search", "allocation.json")
    with open(path, "w") as f:
        json.dump({"format": "qshard-allocation-1", "objective": "uniform", "budget_bytes": 0,
                   "payload_bytes": 0, "total_bytes": 0, "quantized_weights": 0, "bpw": 0,
                   "predicted": 0, "linears": LINS, "layers": alloc}, f)
    mpath = os.path.join(rd, "search", "manifest.json")
    man = json.load(open(mpath))
    man["outputs"]["search/allocation.json"] = hashlib.sha256(open(path, "rb").read()).hexdigest()
    json.dump(man, open(mpath, "w"), indent=1)


def make_exports(opt, fx, work, qs):
    """The runs and the exports: {label: (export dir, qshard eval.json)} or None on a failure."""
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
    only = [s for s in opt["--only"].split(",") if s]
    out = {}
    for i, (label, rname, alloc) in enumerate(EXPORTS):
        if only and str(i) not in only:
            continue
        base = os.path.join(work, "run-" + rname)
        cfg = base + ".yaml"
        bits, groups, sym, fmt = RUNS[rname]
        if not os.path.exists(os.path.join(base, "search", "manifest.json")):
            write_config(cfg, fx, base, bits, groups, sym, fmt, opt["--windows"])
            if run([qs, "run", cfg, "--quiet"], env=env).returncode:
                return None
        rd = os.path.join(work, f"export{i}")
        if not os.path.exists(os.path.join(rd, "eval.json")):
            # the run directory rewritten for this allocation; its export and eval kept here
            write_alloc(base, alloc)
            if run([qs, "run", cfg, "--resume", "--quiet"], env=env).returncode:
                return None
            shutil.rmtree(rd, ignore_errors=True)
            shutil.copytree(os.path.join(base, "export"), os.path.join(rd, "export"))
            shutil.copy(os.path.join(base, "eval.json"), os.path.join(rd, "eval.json"))
            shutil.copy(os.path.join(base, "search", "allocation.json"), rd)
        out[label] = (os.path.join(rd, "export"), json.load(open(os.path.join(rd, "eval.json"))))
    return out


def main(argv):
    if len(argv) > 1 and argv[1] == "--worker":
        return worker(argv[2], argv[3], argv[4], int(argv[5]), int(argv[6]), argv[7])
    opt = options(argv, {"--venv": os.environ.get("QS_HF_VENV", "/work/venv-hf"),
                         "--work": "/tmp/qs-hf-client", "--windows": "0", "--only": ""})
    py = venv_python(opt["--venv"], "hf_ppl", "hf_setup.sh")
    if not py:
        return 2
    fx, work, qs = opt["--fixtures"], os.path.abspath(opt["--work"]), opt["--qshard"]
    os.makedirs(work, exist_ok=True)
    exports = make_exports(opt, fx, work, qs)
    if exports is None:
        return 1
    rows = []
    for label, (d, ev) in exports.items():
        for engine in ("transformers", "gptqmodel"):
            t0 = time.time()
            r = subprocess.run([py, os.path.abspath(__file__), "--worker", engine, d,
                                f"{fx}/tokens/eval.u32", "256", str(ev["windows"]),
                                f"{fx}/tokenizer/tok512.model"],
                               capture_output=True, text=True,
                               env=dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1",
                                        TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false"))
            res = worker_result(r, os.path.join(
                work, f"{os.path.basename(os.path.dirname(d))}-{engine}.log"))
            res.update(label=label, engine=engine, qshard=ev["ppl"], wall=time.time() - t0)
            rows.append(res)
            print(json.dumps(res), file=sys.stderr)
    vers = next((r["version"] for r in rows if "version" in r), {})
    print("versions: " + ", ".join(f"{k} {v}" for k, v in vers.items()))
    nwin = next((e["windows"] for _, e in exports.values()), 0)
    names = {"transformers": "transformers", "gptqmodel": "GPTQModel.load"}
    print_table(rows, f"{nwin} windows of 256 tokens", lambda r: names[r["engine"]], 4)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
