#!/usr/bin/python3
"""gguf_llamacpp_ppl.py: loads GGUF files written by qshard's GGUF writer in llama.cpp
(through llama-cpp-python, which builds the bundled llama.cpp from source) and measures
the perplexity of ../shared/fixtures/tinyllama-a on the fixture's eval tokens with the
fixtures' protocol: consecutive non-overlapping windows of 256 token ids fed directly (no
tokenizer, no BOS added), tokens 1..255 of each window predicted from their prefixes,
ppl = exp(mean NLL). Not a CTest test (it needs a llama.cpp build); run by hand:

    build/tests/gguf_write exists (cmake --build build), then
    python3 tests/clients/gguf_llamacpp_ppl.py [--build build] [--venv /work/venv-llama]
        [--windows N] [--types F32,F16,BF16,Q8_0]

The venv is made on first use (python3 -m venv --system-site-packages, then under `nice`
pip install llama-cpp-python==0.3.36 gguf==0.19.0 from PyPI, CPU build with
GGML_NATIVE=OFF; ~1 h on a shared 2-core machine) and reused afterwards. Files written:
F32/F16/BF16 GGUFs of the checkpoint and a Q8_0 one whose linear-layer bytes come from
gguf-py's quantizer. Prints one line per file: perplexity, the fixture's float reference
(reference.json, transformers fp32 on the bf16 weights) and the relative difference.

    python3 tests/clients/gguf_llamacpp_ppl.py --files A.gguf,B.gguf [--windows N]
        [--qshard build/qshard]
measures GGUF files qshard's pipeline wrote (e.g. RUN/gguf/model.gguf of
tests/study/gguf_study.py) instead, each beside qshard's own eval of the same file on the
same windows (`qshard eval --weights gguf:FILE` with eval.max_windows N, in a scratch run
directory), and prints the relative difference.
"""
import argparse
import json
import math
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(os.path.dirname(HERE))
LLAMA_CPP_PYTHON = "llama-cpp-python==0.3.36"


def ensure_venv(venv):
    py = os.path.join(venv, "bin", "python")
    if not os.path.exists(py):
        subprocess.run(["/usr/bin/python3", "-m", "venv", "--system-site-packages", venv],
                       check=True)
    r = subprocess.run([py, "-c", "import llama_cpp, gguf"], capture_output=True)
    if r.returncode != 0:
        env = dict(os.environ, CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_BLAS=OFF",
                   CMAKE_BUILD_PARALLEL_LEVEL="1")
        subprocess.run(["nice", "-n", "19", py, "-m", "pip", "install", LLAMA_CPP_PYTHON,
                        "gguf==0.19.0"], check=True, env=env)
    return py


def perplexity(path, tokens, window, nwin):
    import numpy as np
    from llama_cpp import Llama
    llm = Llama(model_path=path, n_ctx=window, n_batch=window, n_ubatch=window,
                logits_all=True, n_threads=1, verbose=False)
    nll, count = 0.0, 0
    for w in range(nwin):
        ids = [int(t) for t in tokens[w * window:(w + 1) * window]]
        llm.reset()
        llm.eval(ids)
        logits = np.asarray(llm.scores[:window], dtype=np.float64)  # (window, vocab)
        m = logits.max(axis=1, keepdims=True)
        logp = logits - m - np.log(np.exp(logits - m).sum(axis=1, keepdims=True))
        nll -= float(logp[np.arange(window - 1), ids[1:]].sum())
        count += window - 1
    return math.exp(nll / count), count


def qshard_ppl(a, fx, model, path, window, nwin, tmp):
    """qshard's eval of GGUF file `path` on the first nwin windows (a scratch run dir)."""
    rd = os.path.join(tmp, "run-" + os.path.basename(os.path.dirname(os.path.dirname(path))))
    cfg = os.path.join(tmp, "eval.yaml")
    with open(cfg, "w") as f:
        f.write(f"model: {model}\nrun_dir: {rd}\neval:\n  tokens: {fx}/tokens/eval.u32\n"
                f"  seqlen: {window}\n  max_windows: {nwin}\n")
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               OPENBLAS_NUM_THREADS="1")
    subprocess.run(["mpiexec", "-n", "1", a.qshard, "eval", cfg, "--weights", "gguf:" + path,
                    "--quiet"], check=True, env=env)
    with open(os.path.join(rd, "eval.json")) as f:
        return json.load(f)["ppl"]


def compare_files(a, fx, model, tokens, window, nwin, version):
    print(f"llama-cpp-python {version}, {nwin} windows of {window} "
          f"({nwin * (window - 1)} predictions)")
    print("| file | bytes | llama.cpp ppl | qshard eval of the file | difference |")
    print("|---|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory(prefix="qs-gguf-llamacpp-") as tmp:
        for path in a.files.split(","):
            ppl, _ = perplexity(path, tokens, window, nwin)
            mine = qshard_ppl(a, fx, model, path, window, nwin, tmp)
            print(f"| {path} | {os.path.getsize(path):,} | {ppl:.6f} | {mine:.6f} | "
                  f"{ppl / mine - 1:+.2e} |", flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(TOP, "build"))
    ap.add_argument("--shared", default=os.environ.get("QS_SHARED_DIR",
                                                       os.path.join(TOP, "..", "shared")))
    ap.add_argument("--venv", default="/work/venv-llama")
    ap.add_argument("--windows", type=int, default=0, help="0 = all windows")
    ap.add_argument("--types", default="F32,F16,BF16,Q8_0")
    ap.add_argument("--files", default="", help="GGUF files written by qshard's pipeline")
    ap.add_argument("--qshard", default=os.path.join(TOP, "build", "qshard"))
    ap.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if not a.inside:
        py = ensure_venv(a.venv)
        os.execv(py, [py, os.path.abspath(__file__), "--inside"] + sys.argv[1:])

    import numpy as np
    import gguf
    fx = os.path.join(a.shared, "fixtures")
    model = os.path.join(fx, "tinyllama-a")
    ref = json.load(open(os.path.join(model, "reference.json")))
    window = int(ref["window"])
    tokens = np.fromfile(os.path.join(fx, "tokens", "eval.u32"), dtype="<u4")
    nwin = len(tokens) // window
    if a.windows:
        nwin = min(nwin, a.windows)
    import llama_cpp
    if a.files:
        compare_files(a, fx, model, tokens, window, nwin, llama_cpp.__version__)
        return
    tool = os.path.join(a.build, "tests", "gguf_write")
    print(f"llama-cpp-python {llama_cpp.__version__}, {nwin} windows of {window} "
          f"({nwin * (window - 1)} predictions); float reference {ref['eval_ppl']:.6f}")
    with tempfile.TemporaryDirectory(prefix="qs-gguf-llamacpp-") as tmp:
        for typ in a.types.split(","):
            out = os.path.join(tmp, f"tinyllama-{typ}.gguf")
            args = [tool, "model", model, out, "--tokenizer",
                    os.path.join(fx, "tokenizer", "tok512.model")]
            if typ == "Q8_0":
                # the linear layers' bytes from gguf-py's quantizer, the rest F16
                sys.path.insert(0, os.path.join(TOP, "tests", "gguf"))
                from test_gguf import read_safetensors  # noqa: E402
                w = read_safetensors(model)
                args += ["--type", "F16"]
                for name, t in w.items():
                    if ".layers." in name and t.ndim == 2:
                        l = name.split(".")[2]
                        g = {"q_proj": "attn_q", "k_proj": "attn_k", "v_proj": "attn_v",
                             "o_proj": "attn_output", "gate_proj": "ffn_gate",
                             "up_proj": "ffn_up", "down_proj": "ffn_down"}[name.split(".")[4]]
                        gn = f"blk.{l}.{g}.weight"
                        p = os.path.join(tmp, gn)
                        gguf.quants.quantize(t, gguf.GGMLQuantizationType.Q8_0).tofile(p)
                        args += ["--tensor-type", f"{gn}=Q8_0", "--raw", f"{gn}={p}"]
            else:
                args += ["--type", typ]
            subprocess.run(args, check=True)
            ppl, n = perplexity(out, tokens, window, nwin)
            rel = ppl / ref["eval_ppl"] - 1
            print(f"{typ:5s} {os.path.getsize(out):>9d} bytes  ppl {ppl:.6f}  "
                  f"vs float {ref['eval_ppl']:.6f}: {rel:+.2e}")


if __name__ == "__main__":
    main()
