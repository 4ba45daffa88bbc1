"""clientlib.py: what the engine client scripts of tests/clients/ share (vllm_ppl.py,
hf_ppl.py): their command-line options, the venv's python, running a command with its
failure reported, and reading the one-line JSON result a worker prints among the engine's
own output."""
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(os.path.dirname(HERE))


def options(argv, defaults):
    """defaults plus --qshard (build/qshard) and --fixtures (../shared/fixtures, else
    /work/shared/fixtures), each overridden by `--key value` in argv."""
    opt = dict(defaults)
    opt.setdefault("--qshard", os.path.join(TOP, "build", "qshard"))
    opt.setdefault("--fixtures", os.path.join(os.path.dirname(TOP), "shared", "fixtures"))
    for k in list(opt):
        if k in argv:
            opt[k] = argv[argv.index(k) + 1]
    if not os.path.isdir(opt["--fixtures"]):
        opt["--fixtures"] = "/work/shared/fixtures"
    return opt


def venv_python(venv, tool, setup):
    """The venv's python, or None with a message naming the setup script."""
    py = os.path.join(venv, "bin", "python")
    if not os.path.exists(py):
        print(f"{tool}: no venv at {venv} (run tests/clients/{setup})", file=sys.stderr)
        return None
    return py


def run(cmd, **kw):
    """subprocess.run with text output captured; a failure's command and stderr printed."""
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if r.returncode != 0:
        sys.stderr.write(f"{' '.join(cmd)}: exit {r.returncode}\n{r.stderr[-2000:]}\n")
    return r


def worker_result(r, log):
    """The worker's result: its last stdout line that starts with '{' (engines log to stdout
    too), else {"ok": False, "error": the last error line of its stderr (kept in `log`)}."""
    with open(log, "w") as f:
        f.write(r.stderr)
    jl = [l for l in r.stdout.splitlines() if l.startswith("{")]
    try:
        return json.loads(jl[-1])
    except (ValueError, IndexError):
        errs = [l for l in r.stderr.splitlines() if "Error" in l or "error:" in l]
        return {"ok": False, "error": (errs or ["see " + log])[-1].strip()[:300]}


def write_run_config(path, fx, run_dir, quant, extra="", max_windows=0):
    """A qshard config for tinyllama-a with the fixtures' protocol: GPTQ on the 128 x 256
    calibration windows of calib_offsets_128x256.txt, damp 0.01, no act-order; `quant` the
    other quant keys (bits, group_size, sym: YAML values as strings); `extra` more YAML
    (search:, output:); eval on eval.u32 in 256-token windows (the first max_windows; 0 = all)."""
    q = "".join(f"  {k}: {v}\n" for k, v in quant.items())
    with open(path, "w") as f:
        f.write(f"model: {fx}/tinyllama-a\nrun_dir: {run_dir}\n"
                f"calib:\n  tokens: {fx}/tokens/calib.u32\n  nsamples: 128\n"
                f"  seqlen: 256\n  sampling: file\n"
                f"  offsets_file: {fx}/tokens/calib_offsets_128x256.txt\n"
                f"quant:\n  method: gptq\n{q}  act_order: false\n  damp: 0.01\n{extra}"
                f"eval:\n  tokens: {fx}/tokens/eval.u32\n  seqlen: 256\n"
                f"  max_windows: {max_windows}\n")


def print_table(rows, what, engine_of, digits=5):
    """The markdown results table: one row per worker result (label, qshard and the worker's
    keys), the engine column from engine_of(row)."""
    print(f"| export (tinyllama-a, eval.u32, {what}) | engine | load | perplexity "
          f"| qshard eval | difference |")
    print("|---|---|---|---:|---:|---:|")
    for r in rows:
        eng = engine_of(r)
        if r["ok"]:
            diff = (r["ppl"] - r["qshard"]) / r["qshard"]
            print(f"| {r['label']} | {eng} | ok | {r['ppl']:.6f} | {r['qshard']:.6f} | "
                  f"{100 * diff:+.{digits}f}% |")
        else:
            print(f"| {r['label']} | {eng} | refused: {r['error']} | - | {r['qshard']:.6f} | - |")
