#!/usr/bin/python3
"""lsan_stacks.py: what LeakSanitizer reports at the end of a sanitized `qshard run`, with
tests/lsan.supp or with no suppressions at all (how tests/lsan.supp was found; the numbers
of docs/design.md "Sanitizer builds"). Not a test.

Writes a 2-layer synthetic Llama, runs `mpiexec -n N qshard run` on it (search, final pass,
write with parallel HDF5, eval), and prints per rank either the "Suppressions used" table
(template, count, bytes) or, with --none, every leak grouped by the outermost frame that
LSan could name below qshard's own code, with counts and bytes, and how many stacks have a
named HDF5 frame at all (frames in Open MPI's components are <unknown module>).

Usage: tests/tools/lsan_stacks.py BUILD_ASAN_DIR [--np N] [--none] [--keep DIR]
  e.g. python3 tests/tools/lsan_stacks.py build-asan --np 2 --none"""
import argparse
import collections
import os
import re
import shutil
import subprocess
import sys
import tempfile

SRC = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ENV = {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
       "OPENBLAS_NUM_THREADS": "1", "ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0"}


def run(cmd, supp):
    env = dict(os.environ, **ENV)
    env["LSAN_OPTIONS"] = f"suppressions={supp}:print_suppressions=1:fast_unwind_on_malloc=0"
    return subprocess.run(cmd, env=env, capture_output=True, text=True)


def leaks(stderr):
    """[(bytes, [(function, module)])] of every leak report in stderr."""
    out = []
    for block in re.split(r"\n(?=(?:Direct|Indirect) leak of )", stderr)[1:]:
        head = re.match(r"\w+ leak of (\d+) byte", block)
        frames = re.findall(r"#\d+ 0x[0-9a-f]+ +(?:in (\S+) )?\(?([^\s)]*)", block.split("\n\n")[0])
        out.append((int(head.group(1)), [(f or "?", m.rsplit("/", 1)[-1]) for f, m in frames]))
    return out


def entry(frames):
    """The outermost named frame below qshard's own code (qs_*, cmd_*, comm_*, main) or, in
    a thread MPI started, below start_thread."""
    last = "?"
    for f, _ in frames:
        if re.match(r"(qs_|cmd_|comm_|main$|start_thread$)", f):
            break
        if f != "?" and not re.match(r"(__interceptor|malloc|calloc|realloc)", f):
            last = f
    return last


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("build")
    ap.add_argument("--np", type=int, default=2)
    ap.add_argument("--none", action="store_true", help="no suppressions at all")
    ap.add_argument("--keep", help="work in this directory and keep it")
    a = ap.parse_args()
    qs = os.path.join(os.path.abspath(a.build), "qshard")
    tmp = a.keep or tempfile.mkdtemp(prefix="qs_lsan_")
    os.makedirs(tmp, exist_ok=True)
    supp = os.path.join(SRC, "tests", "lsan.supp")
    if a.none:
        supp = os.path.join(tmp, "empty.supp")
        open(supp, "w").close()
    model, rd = os.path.join(tmp, "model"), os.path.join(tmp, "run")
    shutil.rmtree(rd, ignore_errors=True)
    r = run(["mpiexec", "--oversubscribe", "-n", "1", qs, "synth-model", "--arch", "llama",
             "--layers", "2", "--hidden", "64", "--intermediate", "128", "--heads", "2",
             "--kv-heads", "1", "--vocab", "128", "--tokens", "8192", model], supp)
    cfg = os.path.join(tmp, "cfg.yaml")
    with open(cfg, "w") as f:
        f.write(f"model: {model}\nrun_dir: {rd}\n"
                f"calib: {{tokens: {model}/tokens.u32, nsamples: 4, seqlen: 32, chunk_samples: 2}}\n"
                "quant: {bits: [3, 4], group_size: [32]}\nsearch: {target_bpw: 4.2}\n"
                f"eval: {{tokens: {model}/tokens.u32, seqlen: 32, max_windows: 2}}\n")
    logs = os.path.join(tmp, "logs")  # one stderr per rank: reports do not interleave
    shutil.rmtree(logs, ignore_errors=True)
    r = run(["mpiexec", "--oversubscribe", "--output-filename", logs, "-n", str(a.np), qs, "run",
             cfg, "--quiet"], supp)
    print(f"qshard run at {a.np} rank(s): exit {r.returncode}, suppressions {supp}")
    stderr = ""
    for d, _, files in sorted(os.walk(logs)):
        if "stderr" in files:
            with open(os.path.join(d, "stderr")) as f:
                stderr += f.read()
    if not a.none:
        for t in re.findall(r"Suppressions used:\n(.*?)\n-{10,}", stderr, re.S):
            print(t)
    else:
        ls = leaks(stderr)
        by = collections.defaultdict(lambda: [0, 0])
        for nbytes, frames in ls:
            by[entry(frames)][0] += 1
            by[entry(frames)][1] += nbytes
        print(f"{len(ls)} leak reports over all ranks, {sum(b for b, _ in ls)} bytes")
        print(f"  with a named HDF5 frame (H5*): "
              f"{sum(any(f.startswith('H5') for f, _ in fr) for _, fr in ls)}")
        for k, (n, b) in sorted(by.items(), key=lambda kv: -kv[1][0]):
            print(f"  {n:6d} reports {b:9d} bytes  outermost named library frame: {k}")
    if not a.keep:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
