"""qstest.py: what the Python tests of qshard share (tests/mpi, tests/cli, tests/slurm,
tests/study); Debian's python3 with numpy and h5py. A test script starts with

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    import qstest as Q

and ends with Q.finish(). Environment (CTest sets it, tests/CMakeLists.txt): QS_BIN (the
qshard executable), QS_MPIEXEC (the launcher, default "mpiexec --oversubscribe"),
QS_SOURCE_DIR, QS_SHARED_DIR, QS_REQUIRE_SHARED. QS_KEEP_TMP=1 keeps temp directories.

Failures: check(cond, msg) records a failure and prints "FAIL: msg" (the test goes on);
finish() exits 1 when anything failed, else prints "ok" and exits 0. skip_or_fail(why)
exits 77 (CTest's skip) unless the named QS_REQUIRE_* variable is 1 (then 1).

Runs: run(cmd) (captured text, a timeout), mpirun(n, *cmd), qs(n, *args) for
`mpiexec -n N qshard ARGS --quiet`, qs_start(...) (a Popen of the same), synth_model(...).
Output: summary_table(stdout) (the table `qshard run` ends with, as values),
progress_lines(stdout) (the progress lines with ETA, as values).
Faults: Launch / qs_launch (a launch in the background, its ranks by rank number, killed
whole on a timeout), rank_pids, kill_when (kill -9 one rank once a condition holds), the
hold knob's environment and markers (hold_env, held, release: QS_TEST_HOLD, stages/common.h),
poison_tensor (a NaN/Inf written into a checkpoint's tensor), damage (a flipped byte inside
a dataset, a truncation, a deletion).
Files: write_config (a run config from Python values), tempdir, layer_path, read_json,
eval_json, manifest, h5_datasets / h5_attrs (an HDF5 file's datasets as comparable
(dtype, shape, bytes) values), safetensors_header, tree_bytes, output_hashes (the SHA-256
of a run directory's outputs: out/, export/, eval.json, without manifests).

Also a command: `python3 tests/qstest.py hash RUN_DIR...` prints those output hashes.
"""
import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

QS = os.environ.get("QS_BIN", "qshard")
SRC = os.environ.get("QS_SOURCE_DIR") or os.path.dirname(
    os.path.dirname(os.path.abspath(__file__)))
MPIEXEC = os.environ.get("QS_MPIEXEC", "mpiexec --oversubscribe").split()
SHARED = os.environ.get("QS_SHARED_DIR", "")
SKIP = 77
LINS = ["q", "k", "v", "o", "gate", "up", "down"]

failures = []


# ---- failures, skips, the end ----

def check(cond, msg):
    """Records a failure (and prints it) when cond is false; returns cond."""
    if not cond:
        failures.append(msg)
        print("FAIL:", msg, file=sys.stderr, flush=True)
    return cond


def finish():
    """Exit 1 with the number of failures, or print "ok" and exit 0."""
    if failures:
        print(f"{len(failures)} failure(s)", file=sys.stderr)
        sys.exit(1)
    print("ok")
    sys.exit(0)


def skip_or_fail(why, require="QS_REQUIRE_SHARED"):
    """Exit 77 (skip), or 1 when the environment variable `require` is 1 (CI)."""
    if os.environ.get(require) == "1":
        print(f"FAIL: {why} ({require}=1)", file=sys.stderr)
        sys.exit(1)
    print(f"skip: {why}")
    sys.exit(SKIP)


def need_shared(sub=os.path.join("fixtures", "tinyllama-a")):
    """The fixtures directory of ../shared; skips (or fails) when SHARED/sub is absent."""
    path = os.path.join(SHARED, sub)
    if not SHARED or not os.path.isdir(path):
        skip_or_fail(f"no shared fixtures ({path})")
    return os.path.join(SHARED, "fixtures")


# ---- processes ----

def _tree_states(root):
    """[(pid, state, command)] of root and its descendants, from /proc."""
    kids, info = {}, {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                s = f.read()
        except OSError:
            continue
        comm_end = s.rindex(")")
        fields = s[comm_end + 2:].split()
        pid = int(d)
        info[pid] = (fields[0], s[s.index("(") + 1:comm_end])
        kids.setdefault(int(fields[1]), []).append(pid)
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        if p in info:
            out.append((p, *info[p]))
        todo.extend(kids.get(p, []))
    return out


def _run_once(cmd, e, timeout):
    """(CompletedProcess, None), or (None, process states) after a timeout, when the whole
    process group (the launcher and its ranks) has been killed."""
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=e,
                         start_new_session=True)
    try:
        out, err = p.communicate(timeout=timeout)
        return subprocess.CompletedProcess(cmd, p.returncode, out, err), None
    except subprocess.TimeoutExpired:
        states = _tree_states(p.pid)
        try:
            os.killpg(p.pid, 9)
        except ProcessLookupError:
            pass
        p.communicate()
        return None, states


def _launcher_lost_exits(states):
    """True when the process tree is a launcher plus ranks that have all exited (zombies)."""
    ranks = [st for st in states if st[2] == "qshard"]
    launchers = [st for st in states if st[2] in ("mpiexec", "mpirun", "orterun")]
    return (bool(ranks) and all(st[1] == "Z" for st in ranks) and bool(launchers)
            and len(ranks) + len(launchers) == len(states))


def run(cmd, env=None, timeout=600):
    """subprocess.run with text output captured; env adds to the environment. The command
    runs in its own process group, killed whole on a timeout (which raises TimeoutExpired
    naming the state of every process). In the sanitizer build (QS_SANITIZED=1) a timeout
    with a process in ptrace stop (state t: LeakSanitizer's stop-the-world at exit, which
    deadlocks now and then, google/sanitizers#1330) is printed and the command run once
    more. So is a timeout where every rank has exited and only the launcher is left, not
    reaping them (mpiexec asleep, each qshard a zombie: Open MPI 4.1's launcher missing its
    children's exits, seen once in CI under load; the ranks' work was done)."""
    e = dict(os.environ)
    e.update(env or {})
    r, states = _run_once(cmd, e, timeout)
    if r is None and os.environ.get("QS_SANITIZED") == "1" and any(s[1] == "t" for s in states):
        print(f"note: LeakSanitizer stop-the-world deadlock after {timeout} s, run again: "
              f"{' '.join(cmd)}; processes {states}", file=sys.stderr, flush=True)
        r, states = _run_once(cmd, e, timeout)
    elif r is None and _launcher_lost_exits(states):
        print(f"note: the launcher did not reap its exited ranks in {timeout} s, run again: "
              f"{' '.join(cmd)}; processes {states}", file=sys.stderr, flush=True)
        r, states = _run_once(cmd, e, timeout)
    if r is None:
        print(f"timeout after {timeout} s: {' '.join(cmd)}; processes {states}", file=sys.stderr,
              flush=True)
        raise subprocess.TimeoutExpired(cmd, timeout)
    return r


def mpirun(n, *cmd, env=None, timeout=600):
    """`mpiexec -n N CMD...` through QS_MPIEXEC."""
    return run(MPIEXEC + ["-n", str(n), *cmd], env=env, timeout=timeout)


def qs(n, *args, env=None, timeout=600, quiet=True):
    """`mpiexec -n N qshard ARGS... [--quiet]`: every MPI command goes through the launcher
    (a singleton MPI process crashes LeakSanitizer's tracer at exit in the sanitizer build)."""
    return mpirun(n, QS, *args, *(["--quiet"] if quiet else []), env=env, timeout=timeout)


def qs_start(n, *args, quiet=True):
    """Popen of `mpiexec -n N qshard ARGS... [--quiet]` (pipes for stdout and stderr)."""
    return subprocess.Popen(MPIEXEC + ["-n", str(n), QS, *args] + (["--quiet"] if quiet else []),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


# ---- launches in the background: ranks, kills, holds ----

def children(pid):
    """Pids of the processes whose parent is pid."""
    kids = []
    for e in os.listdir("/proc"):
        if not e.isdigit():
            continue
        try:
            with open(f"/proc/{e}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                kids.append(int(e))
        except (OSError, IndexError, ValueError):
            pass
    return kids


def rank_pids(launcher_pid):
    """qshard processes below the launcher (mpiexec forks the ranks, maybe via a helper)."""
    found, todo = [], [launcher_pid]
    while todo:
        for k in children(todo.pop()):
            try:
                with open(f"/proc/{k}/cmdline", "rb") as f:
                    cmd = f.read().split(b"\0")
            except OSError:
                continue
            if cmd and os.path.basename(cmd[0].decode()) == "qshard":
                found.append(k)
            else:
                todo.append(k)
    return found


def rank_of(pid):
    """The MPI rank of a process started by Open MPI (OMPI_COMM_WORLD_RANK in its
    environment), or None."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            for kv in f.read().split(b"\0"):
                if kv.startswith(b"OMPI_COMM_WORLD_RANK="):
                    return int(kv.split(b"=", 1)[1])
    except (OSError, ValueError):
        pass
    return None


class Launch:
    """A command started in the background in its own process group (a launcher and its
    ranks), stdout and stderr to temp files. wait() returns a CompletedProcess like run(), or
    kills the whole group on a timeout (TimeoutExpired, naming every process's state)."""

    def __init__(self, cmd, env=None):
        e = dict(os.environ)
        e.update(env or {})
        self.cmd = cmd
        self._out = tempfile.TemporaryFile("w+")
        self._err = tempfile.TemporaryFile("w+")
        self.p = subprocess.Popen(cmd, stdout=self._out, stderr=self._err, text=True, env=e,
                                  start_new_session=True)
        self.pid = self.p.pid

    def ranks(self):
        """{rank: pid} of the qshard processes below the launcher."""
        out = {}
        for pid in rank_pids(self.pid):
            r = rank_of(pid)
            if r is not None:
                out[r] = pid
        return out

    def wait(self, timeout=600):
        try:
            self.p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            states = _tree_states(self.pid)
            self.kill()
            print(f"timeout after {timeout} s: {' '.join(self.cmd)}; processes {states}",
                  file=sys.stderr, flush=True)
            raise
        self._out.seek(0)
        self._err.seek(0)
        return subprocess.CompletedProcess(self.cmd, self.p.returncode, self._out.read(),
                                           self._err.read())

    def kill(self):
        """SIGKILL to the whole process group; reaps the launcher."""
        try:
            os.killpg(self.pid, 9)
        except ProcessLookupError:
            pass
        self.p.wait()


def qs_launch(n, *args, env=None, quiet=True):
    """Launch of `mpiexec -n N qshard ARGS... [--quiet]` in the background."""
    return Launch(MPIEXEC + ["-n", str(n), QS, *args] + (["--quiet"] if quiet else []), env=env)


def wait_until(cond, timeout, what, alive=None):
    """Polls cond() every 10 ms for up to timeout seconds (and while alive(), when given);
    records a failure naming `what` when it never held. Returns whether it held."""
    end = time.time() + timeout
    while time.time() < end and (alive is None or alive()):
        if cond():
            return True
        time.sleep(0.01)
    if cond():
        return True
    return check(False, f"{what}: not reached within {timeout} s")


def kill_when(launch, ready, victim, what, timeout=300):
    """Once ready() holds, SIGKILL one rank of a Launch (victim: a rank number, or "max" for
    the highest pid, as test_kill_resume does), then waits for the launcher. Returns
    (killed rank or pid, the launcher's CompletedProcess), or (None, None) after recording a
    failure."""
    alive = lambda: launch.p.poll() is None  # noqa: E731
    if not wait_until(ready, timeout, what, alive):
        launch.kill()
        return None, None
    killed = None
    end = time.time() + 60
    while killed is None and time.time() < end and alive():
        if victim == "max":
            pids = rank_pids(launch.pid)
            killed = max(pids) if pids else None
            target = killed
        else:
            target = launch.ranks().get(victim)
            killed = victim if target else None
        if killed is None:
            time.sleep(0.01)
    if not check(killed is not None, f"{what}: found rank {victim} to kill (launcher rc "
                 f"{launch.p.poll()})"):
        launch.kill()
        return None, None
    os.kill(target, 9)
    try:
        r = launch.wait(timeout=120)
    except subprocess.TimeoutExpired:
        check(False, f"{what}: the launcher did not end within 120 s after a rank was killed")
        return None, None
    check(r.returncode != 0, f"{what}: the launcher reports the killed rank: rc {r.returncode}")
    return killed, r


def hold_env(point, marks):
    """The environment of the hold knob (stages/common.h): ranks reaching POINT ("DIR:start",
    "DIR:unit", "calib:checkpoint", "out:shard") create a marker in the directory `marks` and
    wait while it exists."""
    return {"QS_TEST_HOLD": point, "QS_TEST_HOLD_DIR": marks}


def held(marks):
    """The ranks holding now (their markers in `marks`)."""
    try:
        return sorted(int(n.rsplit(".", 1)[1]) for n in os.listdir(marks))
    except OSError:
        return []


def release(marks):
    """Lets every holding rank go on (removes the markers)."""
    for n in os.listdir(marks):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(marks, n))


def synth_model(path, arch="llama", **opts):
    """`qshard synth-model --arch ARCH --key value ... PATH` (layers=3 -> --layers 3,
    kv_heads=2 -> --kv-heads 2); records a failure when it fails. Returns success."""
    cmd = [QS, "synth-model", "--arch", arch]
    for k, v in opts.items():
        cmd += ["--" + k.replace("_", "-"), str(v)]
    r = run(cmd + [path])
    return check(r.returncode == 0, f"synth-model {path}: rc {r.returncode} {r.stderr}")


def qshard_lines(r):
    """The lines of a process's stderr that qshard wrote (the launcher adds its own)."""
    return [x for x in r.stderr.splitlines() if x.startswith("qshard")]


def one_error(r, *needles, code=2):
    """True when r exited `code` with exactly one line of qshard's on stderr, an error line
    ("qshard: error: ...") that contains every needle."""
    lines = qshard_lines(r)
    return (r.returncode == code and len(lines) == 1 and
            lines[0].startswith("qshard: error: ") and all(n in lines[0] for n in needles))


# ---- what qshard prints ----

SUMMARY_RE = {
    "run_dir": r"summary \((.+)\)",
    "header": r"  model +size +bpw +perplexity",
    "float": r"  float checkpoint +(?P<mib>[\d.]+) MiB +(?P<bpw>\S+) +(?P<ppl>\S+)",
    "quantized": r"  quantized \((?P<weights>[^)]+)\) +(?P<mib>[\d.]+) MiB +(?P<bpw>\S+) "
                 r"+(?P<ppl>\S+)",
    "allocation": r"  allocation: (?P<objective>\S+) objective, (?P<payload>\d+) of "
                  r"(?P<budget>\d+) budget bytes \(payload\); GPTQ export (?P<engines>.+)",
    "perplexity": r"  perplexity: (?P<windows>\d+) windows x (?P<seqlen>\d+) tokens of "
                  r"(?P<tokens_file>.+)",
    "outputs": r"  outputs: (?P<outputs>.+)",
}


def summary_table(text):
    """The table `qshard run` ends with (pipeline/summary.c), from its "summary (RUN_DIR)"
    line: {"lines": its 7 lines, "run_dir": RUN_DIR, "float": {mib, bpw, ppl}, "quantized":
    {weights, mib, bpw, ppl}, "allocation": {objective, payload, budget, engines},
    "perplexity": {windows, seqlen, tokens_file}, "outputs": {outputs}}, the values as the
    strings printed; None when there is no such table or a line does not parse."""
    lines = text.splitlines()
    start = [i for i, x in enumerate(lines) if x.startswith("summary (")]
    if len(start) != 1:
        return None
    block = lines[start[0]:start[0] + len(SUMMARY_RE)]
    out = {"lines": block}
    for (key, rx), line in zip(SUMMARY_RE.items(), block):
        m = re.fullmatch(rx, line)
        if not m:
            return None
        if key == "run_dir":
            out[key] = m.group(1)
        elif key != "header":
            out[key] = m.groupdict()
    return out if len(block) == len(SUMMARY_RE) else None


PROGRESS_RE = (r"\[qshard +(?P<t>[\d.]+)s\] (?P<stage>[\w-]+): (?P<unit>\w+) (?P<i>\d+)/(?P<n>\d+) "
               r"(?P<pct>\d+)% elapsed (?P<elapsed>\S+) ETA (?P<eta>\S+)")


def duration(s):
    """Seconds of a progress time ("7s", "4m52s", "2h05m"; pipeline/core/log.c); None if
    it is none of these."""
    for rx, f in ((r"(\d+)s", lambda m: int(m[1])),
                  (r"(\d+)m(\d\d)s", lambda m: 60 * int(m[1]) + int(m[2])),
                  (r"(\d+)h(\d\d)m", lambda m: 3600 * int(m[1]) + 60 * int(m[2]))):
        m = re.fullmatch(rx, s)
        if m:
            return f(m)
    return None


def progress_lines(text):
    """[{t, stage, unit, i, n, pct, elapsed, eta}] of every progress line in text (the log
    line "[qshard  T s] STAGE: UNIT I/N P% elapsed E ETA R"): t in seconds (float), i, n,
    pct ints, elapsed and eta in seconds (None when the time does not parse, "?" included)."""
    out = []
    for line in text.splitlines():
        m = re.fullmatch(PROGRESS_RE, line)
        if m:
            d = m.groupdict()
            out.append({"t": float(d["t"]), "stage": d["stage"], "unit": d["unit"],
                        "i": int(d["i"]), "n": int(d["n"]), "pct": int(d["pct"]),
                        "elapsed": duration(d["elapsed"]), "eta": duration(d["eta"]),
                        "line": line})
    return out


# ---- files ----

def yaml_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(json.dumps(x) if isinstance(x, str) else yaml_value(x)
                               for x in v) + "]"
    return str(v)


def write_config(path, model, run_dir, **sections):
    """A run config: model, run_dir (each left out when None), then one block per keyword in
    order, each a dict of keys (calib={"nsamples": 4, "seqlen": 64}; None: no block);
    values are Python values (True -> true, [2, 3] -> [2, 3], ["a=b"] -> ["a=b"]) or
    strings written as they are. Returns path."""
    lines = [f"{k}: {v}" for k, v in (("model", model), ("run_dir", run_dir)) if v is not None]
    for name, keys in sections.items():
        if keys is None:
            continue
        lines.append(f"{name}:")
        lines += [f"  {k}: {yaml_value(v)}" for k, v in keys.items()]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


@contextlib.contextmanager
def tempdir(prefix):
    """A temp directory, removed at the end (kept and named when QS_KEEP_TMP=1)."""
    d = tempfile.mkdtemp(prefix=prefix)
    try:
        yield d
    finally:
        if os.environ.get("QS_KEEP_TMP") == "1":
            print(f"kept {d}", file=sys.stderr)
        else:
            shutil.rmtree(d, ignore_errors=True)


def layer_path(run_dir, sub, layer):
    """run_dir/sub/layer-NNN.h5 (sub: calib, recon, final)."""
    return os.path.join(run_dir, sub, f"layer-{layer:03d}.h5")


def layer_data(run_dir, nlayers, sub="calib"):
    """{(layer, dataset): (dtype, shape, bytes)} and {(layer, "attrs"): attributes as int} of
    every run_dir/sub/layer-NNN.h5, layers 0..nlayers-1."""
    out = {}
    for l in range(nlayers):
        p = layer_path(run_dir, sub, l)
        out.update(((l, k), v) for k, v in h5_datasets(p).items())
        out[(l, "attrs")] = h5_attrs(p, int)
    return out


def read_json(path):
    with open(path) as f:
        return json.load(f)


def linear_shapes(model):
    """(h, i, q, kv, hd, lin) of a Llama-family model directory's config.json: hidden and
    intermediate sizes, the query and key/value widths (heads x head_dim), head_dim and the
    seven linears' (d_out, d_in) in the order q, k, v, o, gate, up, down (the benchmarks' FLOPs)."""
    c = read_json(os.path.join(model, "config.json"))
    h, i = c["hidden_size"], c["intermediate_size"]
    hd = c.get("head_dim") or h // c["num_attention_heads"]
    q, kv = c["num_attention_heads"] * hd, c["num_key_value_heads"] * hd
    return h, i, q, kv, hd, [(q, h), (kv, h), (kv, h), (h, q), (i, h), (i, h), (h, i)]


def eval_json(run_dir, name="eval.json"):
    return read_json(os.path.join(run_dir, name))


def manifest(run_dir, stage):
    """run_dir/<stage>/manifest.json (stage: plan, calib, recon, search, final, out)."""
    return read_json(os.path.join(run_dir, stage, "manifest.json"))


def h5_datasets(path, skip_prefix=None):
    """{dataset name: (dtype, shape, raw bytes)} of every dataset in an HDF5 file, except
    names starting with skip_prefix (e.g. "meta/": this run's config and input hashes)."""
    import h5py
    out = {}
    with h5py.File(path, "r") as f:
        def visit(name, obj):
            skip = skip_prefix and name.startswith(skip_prefix)
            if isinstance(obj, h5py.Dataset) and not skip:
                a = obj[()]
                out[name] = (a.dtype.str, a.shape, a.tobytes())
        f.visititems(visit)
    return out


def h5_attrs(path, conv=str):
    """[(name, conv(value))] of the root attributes, sorted."""
    import h5py
    with h5py.File(path, "r") as f:
        return sorted((k, conv(v)) for k, v in f.attrs.items())


def safetensors_header(path):
    """(header dict, offset of the data) of a .safetensors file."""
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        return json.loads(f.read(n)), 8 + n


NAN = {"BF16": b"\xc0\x7f", "F16": b"\x00\x7e", "F32": b"\x00\x00\xc0\x7f"}
INF = {"BF16": b"\x80\x7f", "F16": b"\x00\x7c", "F32": b"\x00\x00\x80\x7f"}


def poison_tensor(src, dst, name, values, elem):
    """A copy of model directory src in dst with flat element `elem` of tensor `name` set to
    values[dtype] (NAN or INF). Returns the shard file that holds it and the position text
    qshard names ("(row, col)" of a matrix, "elem" of a vector)."""
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(src, dst)
    for fn in sorted(os.listdir(dst)):
        if not fn.endswith(".safetensors"):
            continue
        path = os.path.join(dst, fn)
        hdr, base = safetensors_header(path)
        if name not in hdr:
            continue
        t = hdr[name]
        v = values[t["dtype"]]
        with open(path, "r+b") as f:
            f.seek(base + t["data_offsets"][0] + elem * len(v))
            f.write(v)
        shape = t["shape"]
        at = f"({elem // shape[1]}, {elem % shape[1]})" if len(shape) == 2 else str(elem)
        return path, at
    raise SystemExit(f"no tensor {name} in {src}")


def _data_offset(path):
    """A byte offset inside the raw data of a dataset of an HDF5 file (the middle of its
    largest contiguous dataset), or None."""
    import h5py
    best = [0, None]
    with h5py.File(path, "r") as f:
        def visit(_name, obj):
            if isinstance(obj, h5py.Dataset) and obj.id.get_offset() is not None:
                n = obj.id.get_storage_size()
                if n > best[0]:
                    best[:] = [n, obj.id.get_offset() + n // 2]
        f.visititems(visit)
    return best[1]


def damage(path, how):
    """Damages a file the way a disk or a person would: "flip" XORs one byte (inside a
    dataset's data for an .h5 file, so that HDF5 still opens it; inside the tensor data of a
    .safetensors file; the middle byte otherwise), "truncate" cuts it to half its size,
    "delete" removes it. Returns what was done (for messages)."""
    size = os.path.getsize(path)
    if how == "delete":
        os.unlink(path)
        return f"deleted {path}"
    if how == "truncate":
        os.truncate(path, size // 2)
        return f"truncated {path} from {size} to {size // 2} bytes"
    at = size // 2
    if path.endswith(".h5"):
        at = _data_offset(path) or at
    elif path.endswith(".safetensors"):
        _, base = safetensors_header(path)
        at = base + (size - base) // 2
    with open(path, "r+b") as f:
        f.seek(at)
        b = f.read(1)[0]
        f.seek(at)
        f.write(bytes([b ^ 0x10]))
    return f"flipped byte {at} of {path}"


def tree_bytes(root, skip=lambda rel: False):
    """{relative path: bytes} of every file below root whose relative path skip() refuses."""
    out = {}
    for d, _, files in os.walk(root):
        for n in files:
            p = os.path.join(d, n)
            rel = os.path.relpath(p, root)
            if not skip(rel):
                with open(p, "rb") as f:
                    out[rel] = f.read()
    return out


def output_hashes(run_dir, parts=("out", "export", "eval.json")):
    """{relative path: SHA-256} of a run directory's outputs (the files below each part),
    without manifest.json: a manifest records the config hash, and the config names the run
    directory, so two runs of one config in two directories differ there only."""
    out = {}
    for part in parts:
        p = os.path.join(run_dir, part)
        if os.path.isfile(p):
            files = {part: open(p, "rb").read()}
        else:
            mine = tree_bytes(p, skip=lambda rel: os.path.basename(rel) == "manifest.json")
            files = {os.path.join(part, k): v for k, v in mine.items()}
        out.update((k, hashlib.sha256(v).hexdigest()) for k, v in files.items())
    return dict(sorted(out.items()))


# files of a run directory that may differ with the rank count or the directory: the plan
# (layers to ranks), per-rank memory records, the report and timings (times, ranks), the
# resolved config (it names the run directory), the lock file, logs
RANK_DEPENDENT = ("config.resolved.yaml", "lock", "report.md", "timings.json", "plan/",
                  "units/plan/")


def run_file_hashes(run_dir):
    """{relative path: SHA-256} of every file of a run directory that must be byte-identical
    for any rank count and run directory: every HDF5 file, manifest, export, allocation and
    eval record (everything but RANK_DEPENDENT, */rss/*, *.log)."""
    out = {}
    for rel, data in tree_bytes(run_dir).items():
        if (rel in RANK_DEPENDENT or rel.startswith(tuple(p for p in RANK_DEPENDENT if p.endswith("/")))
                or "/rss/" in rel or rel.endswith(".log")):
            continue
        out[rel] = hashlib.sha256(data).hexdigest()
    return dict(sorted(out.items()))


def sgemm_gflops(build, k, seconds=5, env=None):
    """The machine's GEMM peak for the benchmarks (tests/bench): the summed GFLOP/s of k
    single-threaded sgemm processes (build/tests/bench_sgemm, n = 1024) running at once."""
    e = dict(env or os.environ, OPENBLAS_NUM_THREADS="1")
    procs = [subprocess.Popen([os.path.join(build, "tests", "bench_sgemm"), str(seconds)],
                              stdout=subprocess.PIPE, text=True, env=e) for _ in range(k)]
    return sum(float(pr.communicate()[0].split()[1]) for pr in procs)


def diff_hashes(a, b):
    """The relative paths whose hashes differ or that only one side has."""
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))


if __name__ == "__main__":
    if len(sys.argv) < 3 or sys.argv[1] != "hash":
        sys.exit("usage: qstest.py hash RUN_DIR... (SHA-256 of out/, export/, eval.json, "
                 "manifests left out)")
    for rd in sys.argv[2:]:
        for rel, h in output_hashes(rd).items():
            print(f"{h}  {os.path.join(rd, rel)}")
