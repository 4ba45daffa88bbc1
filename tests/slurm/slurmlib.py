"""slurmlib.py: helpers for the Slurm tests (tests/slurm/test_*.py).

cluster(): a context manager that uses the Slurm cluster that answers or starts one with
tests/slurm/cluster.sh, and releases it on the way out, also on failure (cluster.sh stops
the daemons it started once no test uses them); jobs submitted through it are cancelled. Missing Slurm packages are a skip
(exit 77) unless QS_REQUIRE_SLURM=1 (CI), which makes them a failure.
Also: a synthetic model + config writer, an uninterrupted reference run with mpiexec, and
the comparison of two run directories (layer datasets via h5py, eval.json, manifests).
check/failures/finish/run/tempdir are tests/qstest.py's (one failure list per test).
Environment: QS_BIN, QS_SOURCE_DIR, QS_MPIEXEC (CTest sets them)."""
import contextlib
import os
import re
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import qstest as Q  # noqa: E402
from qstest import check, failures, finish, run, tempdir  # noqa: E402,F401 (for the tests)

QS = Q.QS
MPIEXEC = Q.MPIEXEC
CLUSTER_SH = os.path.join(Q.SRC, "tests", "slurm", "cluster.sh")
TEMPLATE = os.path.join(Q.SRC, "slurm", "qshard.sbatch")


def log(msg):
    print(msg, flush=True)


def skip_or_fail(why):
    Q.skip_or_fail(why, "QS_REQUIRE_SLURM")


class Cluster:
    """A running cluster: clients get self.env (SLURM_CONF); submit()/job() wrap sbatch and
    scontrol; every job submitted is cancelled by close() if still active."""

    def __init__(self, conf, started, release):
        self.conf = conf
        self.started = started
        self.release = release
        self.env = dict(os.environ)
        if conf:
            self.env["SLURM_CONF"] = conf
        else:
            self.env.pop("SLURM_CONF", None)
        self.jobs = []

    def cmd(self, args, env=None, timeout=60):
        e = dict(self.env)
        e.update(env or {})
        return subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=e)

    def submit(self, args, env=None):
        """sbatch --parsable ARGS -> job id (str); env adds to the job's environment."""
        r = self.cmd(["sbatch", "--parsable"] + args, env=env)
        if r.returncode != 0:
            raise RuntimeError(f"sbatch {' '.join(args)}: rc {r.returncode}: {r.stderr.strip()}")
        jid = r.stdout.strip().split(";")[0]
        self.jobs.append(jid)
        return jid

    def job(self, jid):
        """scontrol show job -> {key: value} (JobState, Restarts, ExitCode, ...); {} if unknown."""
        r = self.cmd(["scontrol", "show", "job", "-o", jid])
        if r.returncode != 0:
            return {}
        return dict(re.findall(r"(\w+)=(\S*)", r.stdout))

    def wait_job(self, jid, pred, timeout, what):
        """Polls the job until pred(info) holds; returns info, or None after timeout."""
        end = time.time() + timeout
        info = {}
        while time.time() < end:
            info = self.job(jid)
            if info and pred(info):
                return info
            time.sleep(0.2)
        check(False, f"job {jid}: {what} not within {timeout} s (last: "
              f"{info.get('JobState')} restarts {info.get('Restarts')})")
        return None

    def close(self):
        for jid in self.jobs:
            st = self.job(jid).get("JobState", "")
            if st in ("PENDING", "RUNNING", "REQUEUED", "SUSPENDED", "CONFIGURING"):
                self.cmd(["scancel", jid])
        if self.release:
            r = subprocess.run(["sh", CLUSTER_SH, "stop"], capture_output=True, text=True,
                               timeout=120, env=dict(os.environ, QS_SLURM_USER=str(os.getpid())))
            if r.returncode != 0:
                print(f"cluster.sh stop: rc {r.returncode}: {r.stderr}", file=sys.stderr)


FINAL = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY",
         "BOOT_FAIL", "DEADLINE", "PREEMPTED")


@contextlib.contextmanager
def cluster():
    """Uses or starts a local cluster; skips (77) when Slurm is not installed."""
    for b in ("sbatch", "scontrol", "sinfo", "scancel"):
        if not shutil.which(b):
            skip_or_fail(f"{b} not found (apt-get install slurm-wlm munge)")
    r = subprocess.run(["sh", CLUSTER_SH, "start"], capture_output=True, text=True, timeout=120,
                       env=dict(os.environ, QS_SLURM_USER=str(os.getpid())))
    if r.returncode != 0:
        skip_or_fail(f"no Slurm cluster answers and none could be started: {r.stderr.strip()}")
    out = dict(l.split("=", 1) for l in r.stdout.splitlines() if "=" in l)
    c = Cluster(out.get("SLURM_CONF", ""), out.get("STARTED") == "1", out.get("RELEASE") == "1")
    log(f"cluster: SLURM_CONF='{c.conf}', started here: {c.started}, released at the end: "
        f"{c.release}")
    try:
        yield c
    finally:
        c.close()


def make_model(tmp, layers=4, hidden=256, inter=704, tokens=65536):
    model = os.path.join(tmp, "model")
    if not Q.synth_model(model, layers=layers, hidden=hidden, intermediate=inter, heads=4,
                         kv_heads=2, vocab=512, tokens=tokens):
        raise RuntimeError("synth-model failed")
    return model


def write_config(path, model, run_dir, nsamples, chunk=4, every=1):
    tokens = os.path.join(model, "tokens.u32")
    Q.write_config(path, model, run_dir,
                   calib={"tokens": tokens, "nsamples": nsamples, "seqlen": 128,
                          "chunk_samples": chunk, "checkpoint_every": every, "seed": 7},
                   # calibrate (its checkpoints, its layer files) runs for float inputs only
                   reconstruct={"inputs": "float"},
                   # group 64: every linear of the model (intermediate 704) has a GPTQ layout
                   quant={"group_size": [64]},
                   eval={"tokens": tokens, "seqlen": 128, "max_windows": 8})


def reference_run(cfg, n=2):
    """Popen of an uninterrupted `mpiexec -n N qshard run CFG --quiet`."""
    return Q.qs_start(n, "run", cfg)


def layer_data(run_dir):
    """{(file, dataset or 'attrs'): (dtype, shape, bytes)} of every calib/layer-*.h5."""
    out = {}
    cdir = os.path.join(run_dir, "calib")
    names = sorted(n for n in os.listdir(cdir) if re.fullmatch(r"layer-\d+\.h5", n))
    for n in names:
        p = os.path.join(cdir, n)
        out.update(((n, k), v) for k, v in Q.h5_datasets(p).items())
        out[(n, "attrs")] = Q.h5_attrs(p, int)
    return out


def compare_runs(got, ref, nlayers):
    """Every output of the run is byte-identical to the uninterrupted run's (Q.run_file_hashes:
    calib/, recon/, out/, export/, search/, eval.json, manifests, run.json; only the plan,
    per-rank memory records, report, timings and what names run_dir may differ), with the
    calibrate layer datasets compared first for a readable message, and the checkpoint
    directory empty in both."""
    a, b = layer_data(got), layer_data(ref)
    check(len({k[0] for k in b}) == nlayers, f"reference has {nlayers} layer files: "
          f"{sorted({k[0] for k in b})}")
    check(a.keys() == b.keys(), f"same layer files and datasets: {sorted(set(a) ^ set(b))[:6]}")
    diff = [k for k in b if a.get(k) != b[k]]
    check(not diff, f"layer datasets identical to the uninterrupted run: differ {diff[:6]}")
    ha, hb = Q.run_file_hashes(got), Q.run_file_hashes(ref)
    for part in ("calib/", "recon/", "out/", "export/", "search/", "eval.json"):
        check(any(k.startswith(part) for k in hb), f"the reference run has {part}")
    diff = Q.diff_hashes(ha, hb)
    check(not diff, f"run outputs identical to the uninterrupted run: differ {diff[:8]}")
    for d in (got, ref):
        ck = os.path.join(d, "calib", "ckpt")
        check(not os.path.isdir(ck) or os.listdir(ck) == [], f"{ck} emptied at the end")


def run_test(prefix, main, on_failure=None):
    """The frame of a Slurm test: a temp directory and the cluster (released at the end),
    main(cluster, tmp); an exception counts as a failure; when anything failed,
    on_failure(tmp) prints what helps (job output, logs) while tmp still exists; finish()."""
    with tempdir(prefix) as tmp, cluster() as c:
        try:
            main(c, tmp)
        except BaseException:
            failures.append("exception")
            raise
        finally:
            if failures and on_failure:
                on_failure(tmp)
    finish()


def job_output(jobdir, jid):
    p = os.path.join(jobdir, f"qshard-{jid}.out")
    return open(p).read() if os.path.exists(p) else ""
