#!/usr/bin/python3
"""test_faults.py: the fault matrix of issue 20 (docs/reliability.md). On a small synthetic
Llama (4 layers, hidden 64, bf16 in two shards) every row injects one fault into `qshard run`
and checks the exact exit code, exactly one `qshard: error:` line where an error is
expected, and that a --resume ends with outputs byte-identical to an uninterrupted 2-rank
reference run (calib/, recon/, search/, final/, out/, export/, eval.json, eval-float.json:
every file but the manifests and the rss/ measurements, and the same set of files).

Rows (group: what is injected -> what is expected):
  kill    kill -9 of rank 0 and of the last rank at 2 ranks, held by the product's test knob
          QS_TEST_HOLD (stages/common.h) at a point inside each stage: plan (plan.json
          recorded, no manifest), calibrate (first checkpoint durable), reconstruct and the
          final pass (first layer of the rank recorded), search (allocation recorded), write
          (first of two output shards closed), eval (the written model evaluated, the float
          one not) -> mpiexec exits 137 before the stage's manifest exists; --resume at 1
          and at 3 ranks: exit 0, equal bytes
  damage  a flipped byte (inside a dataset's data for HDF5, inside the tensor data for
          safetensors), a truncation to half, a deletion of one output of each stage of a
          completed run -> --resume at 2 ranks: exit 0, the damaged file rewritten, equal
          bytes, and every file outside the damaged unit untouched (same inode and mtime)
  enospc  a tmpfs run directory filled to the last byte while the ranks wait at the start
          of each stage (its outputs removed beforehand), and in write after its first
          shard -> exit 1 with one error line naming the file and "No space left on
          device", no hang, no temp file left; the space freed, --resume: exit 0, equal bytes
  nan     a NaN in the embedding, a linear (layer 1 q_proj), a norm (layer 2
          post_attention_layernorm) and lm_head -> exit 2, one line naming the shard file,
          the tensor and the element
  signal  USR1 to mpiexec -> exit 3; TERM to mpiexec -> Open MPI's mpiexec exits 1, the run
          stopped durably (RUN_DIR/stopped.json and the --stop-marker file: signal 15);
          TERM to the launcher that slurm/qshard.sbatch started (QSHARD_LAUNCHER=mpirun,
          outside Slurm, a fake scontrol on PATH) -> the template exits 3 and asks for the
          requeue; each then --resume: exit 0, equal bytes
  rundir  a second `qshard run --resume` on a live run directory -> exit 2 "in use by PID
          ... on HOST", nothing changed, the first run completes with equal bytes; a run
          directory killed in the final pass and moved elsewhere -> --resume there: exit 0,
          equal bytes, the stages finished before the kill not redone

Each row is either in the sanitizer subset (--part san: one kill/resume, one byte flip, one
ENOSPC, one NaN, one SIGTERM; label `san`) or not (--part rest); --groups picks groups
(the enospc group needs a tmpfs mount: exit 77 when mounting is not permitted, a failure
with QS_REQUIRE_ROOT=1, as CI sets). A row that exposes a known product bug carries an
xfail reason: its failures are printed as XFAIL and do not fail the test; passing makes it
fail (XPASS: remove the mark). The last line counts faults injected, resumes checked and
output files (and bytes) compared with the reference.
Usage: test_faults.py --part san|rest|all [--groups kill,damage,enospc,nan,signal,rundir]
                      [--only TEXT (rows whose name contains it)]
       (env: QS_BIN, QS_MPIEXEC, QS_SOURCE_DIR; QS_NO_SKIP=calibrate is set for every run)"""
import argparse
import os
import shutil
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import qstest as Q  # noqa: E402
from qstest import check  # noqa: E402

NL = 4
REF_RANKS = 2
SANITIZED = os.environ.get("QS_SANITIZED") == "1"
TIMEOUT = 900 if SANITIZED else 180  # per launch
# Open MPI's mpiexec forwards TERM to the ranks and kills them odls_base_sigkill_timeout
# seconds later (1 by default, and it waits that long, twice, whether or not they are
# gone): enough for a stop here, not under the sanitizers on a busy machine
GRACE = {"OMPI_MCA_odls_base_sigkill_timeout": "5"} if SANITIZED else {}
# (stage as the driver names it, run-directory folder, hold point of its kill rows, the
# output its damage rows hit)
STAGES = [
    ("plan", "plan", "plan:unit", "plan/plan.json"),
    ("calibrate", "calib", "calib:checkpoint", "calib/layer-001.h5"),
    ("reconstruct", "recon", "recon:unit", "recon/layer-002.h5"),
    ("search", "search", "search:unit", "search/allocation.json"),
    ("reconstruct-final", "final", "final:unit", "final/layer-003.h5"),
    ("write", "out", "out:shard", "out/model-00002-of-00002.h5"),
    ("eval", "eval", "eval:unit", "eval.json"),
]
OUT_PARTS = ("calib", "recon", "search", "final", "out", "export", "eval.json",
             "eval-float.json")
NAN_ROWS = [  # (what, tensor)
    ("embedding", "model.embed_tokens.weight"),
    ("linear", "model.layers.1.self_attn.q_proj.weight"),
    ("norm", "model.layers.2.post_attention_layernorm.weight"),
    ("lm_head", "lm_head.weight"),
]
ELEM = 38  # the poisoned element: (0, 38) of a matrix, 38 of a vector


class Matrix:
    """The model, the reference and the counters every row adds to."""

    def __init__(self, tmp):
        self.tmp = tmp
        self.model = os.path.join(tmp, "model")
        self.cfg = os.path.join(tmp, "cfg.yaml")
        self.ref = os.path.join(tmp, "ref")
        self.marks = os.path.join(tmp, "marks")
        self.faults = self.resumes = self.files = self.nbytes = 0
        self.ref_files = {}
        self.seq = 0

    def new_dir(self, label):
        self.seq += 1
        return os.path.join(self.tmp, "runs", f"{self.seq:02d}-{label}")

    def setup(self):
        ok = Q.synth_model(self.model, layers=NL, hidden=64, intermediate=128, heads=2,
                           kv_heads=1, vocab=256, tokens=16384, shards=2)
        tokens = os.path.join(self.model, "tokens.u32")
        Q.write_config(self.cfg, self.model, self.ref,
                       calib={"tokens": tokens, "nsamples": 8, "seqlen": 32, "chunk_samples": 2,
                              "checkpoint_every": 1, "seed": 3},
                       quant={"bits": [3, 4], "group_size": [32], "row_block": 32,
                              "block_size": 32},
                       search={"target_bpw": 4.5},
                       output={"shard_bytes": "96KiB"},
                       eval={"tokens": tokens, "seqlen": 64, "max_windows": 4})
        if not ok:
            return False
        r = self.qs(REF_RANKS, self.ref)
        if not check(r.returncode == 0, f"reference run: rc {r.returncode} {r.stderr[-600:]}"):
            return False
        self.ref_files = outputs(self.ref)
        shards = sorted(k for k in self.ref_files if k.startswith("out/model-"))
        return check(len(shards) == 2 and all(any(k.startswith(p) for k in self.ref_files)
                                              for p in OUT_PARTS),
                     f"reference has every output and 2 shards: {sorted(self.ref_files)}")

    def args(self, rd, resume):
        return ["run", self.cfg, "--set", f"run_dir={rd}"] + (["--resume"] if resume else [])

    def qs(self, n, rd, resume=False, env=None):
        r = Q.qs(n, *self.args(rd, resume), env=env, timeout=TIMEOUT)
        no_sanitizer_report(r)
        return r

    def launch(self, n, rd, resume=False, hold=None, env=None, extra=()):
        """A run in the background; hold: a QS_TEST_HOLD point (markers in self.marks)."""
        shutil.rmtree(self.marks, ignore_errors=True)
        os.makedirs(self.marks)
        e = dict(env or {})
        if hold:
            e.update(Q.hold_env(hold, self.marks))
        return Q.qs_launch(n, *self.args(rd, resume), *extra, env=e)

    def compare(self, rd, label, plan_ranks=None):
        """Every output of rd equal to the reference's (plan.json too when rd's last run had
        the reference's rank count). Counts the files and bytes compared."""
        got = outputs(rd)
        if plan_ranks == REF_RANKS:
            got["plan/plan.json"] = read(os.path.join(rd, "plan", "plan.json"))
            ref = dict(self.ref_files, **{"plan/plan.json":
                                          read(os.path.join(self.ref, "plan", "plan.json"))})
        else:
            ref = self.ref_files
        check(sorted(got) == sorted(ref),
              f"{label}: same files as the reference: {sorted(set(got) ^ set(ref))}")
        diff = sorted(k for k in ref if k in got and got[k] != ref[k])
        check(not diff, f"{label}: byte-identical to the reference: differ {diff}")
        temps = [k for k in all_files(rd) if ".tmp." in k]
        check(not temps, f"{label}: no temp files left: {temps}")
        self.files += len(ref)
        self.nbytes += sum(len(v) for v in ref.values())

    def resume(self, n, rd, label):
        """--resume at n ranks: exit 0, no error line, equal bytes."""
        t0 = time.time()
        r = self.qs(n, rd, resume=True)
        self.resumes += 1
        print(f"  resumed at {n} rank(s) in {time.time() - t0:.1f} s", flush=True)
        if check(r.returncode == 0 and not Q.qshard_lines(r),
                 f"{label}: resume at {n} rank(s): rc {r.returncode} {r.stderr[-600:]}"):
            self.compare(rd, f"{label}, resumed at {n}", plan_ranks=n)


def read(path):
    with open(path, "rb") as f:
        return f.read()


def all_files(rd):
    out = []
    for d, _, files in os.walk(rd):
        out += [os.path.relpath(os.path.join(d, n), rd) for n in files]
    return out


def outputs(rd):
    """{relative path: bytes} of the compared outputs: OUT_PARTS without manifests and rss/."""
    out = {}
    for part in OUT_PARTS:
        p = os.path.join(rd, part)
        if os.path.isfile(p):
            out[part] = read(p)
        elif os.path.isdir(p):
            skip = lambda rel: (os.path.basename(rel) == "manifest.json" or  # noqa: E731
                                "rss" in rel.split(os.sep)[:-1])
            out.update((os.path.join(part, k), v) for k, v in Q.tree_bytes(p, skip).items())
    return out


def no_sanitizer_report(r):
    bad = [x for x in r.stderr.splitlines() if "Sanitizer" in x or "runtime error:" in x]
    if not check(not bad, f"no sanitizer report: {bad[:3]}"):
        print(r.stderr[-6000:], file=sys.stderr)


def wait_held(M, L, n, what):
    """Waits until n ranks hold (their markers in M.marks); otherwise kills the launch and
    records a failure. Returns whether they did."""
    if Q.wait_until(lambda: len(Q.held(M.marks)) >= n, TIMEOUT, what,
                    lambda: L.p.poll() is None):
        return True
    L.kill()
    return False


def ended(L, label):
    """The launch's CompletedProcess once it ends (no sanitizer report allowed), or None
    after recording a failure when it has not ended within TIMEOUT (a hang)."""
    try:
        r = L.wait(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        check(False, f"{label}: hung (no exit within {TIMEOUT} s)")
        return None
    no_sanitizer_report(r)
    return r


def unit_files(rd, folder):
    """{unit name: [files]} of a stage's unit records."""
    d = os.path.join(rd, "units", folder)
    return {n[:-5]: list(Q.read_json(os.path.join(d, n))["outputs"])
            for n in sorted(os.listdir(d)) if n.endswith(".json")}


def stamps(rd):
    """{relative path: (inode, mtime_ns)} of every file of the run directory's outputs."""
    out = {}
    for rel in all_files(rd):
        s = os.stat(os.path.join(rd, rel))
        out[rel] = (s.st_ino, s.st_mtime_ns)
    return out


# ---- the rows ----

def kill_row(M, stage, folder, point, victim):
    """kill -9 of `victim` (0 or "last") while a rank holds at `point` of the stage at 2
    ranks; resume copies at 1 and 3 ranks."""
    label = f"kill -9 rank {victim} in {stage}"
    rd = M.new_dir(f"kill-{folder}-{victim}")
    rank = 0 if victim == 0 else REF_RANKS - 1
    L = M.launch(REF_RANKS, rd, hold=point)
    finished = []  # whether the stage's manifest existed when the kill was sent

    def ready():
        if Q.held(M.marks):
            finished.append(os.path.exists(os.path.join(rd, folder, "manifest.json")))
            return True
        return False
    t0 = time.time()
    killed, r = Q.kill_when(L, ready, rank, f"{label} (hold {point})", timeout=TIMEOUT)
    if killed is None:
        return
    M.faults += 1
    check(r.returncode == 128 + signal.SIGKILL,
          f"{label}: mpiexec reports the rank killed by SIGKILL: rc {r.returncode}")
    check(finished == [False], f"{label}: the kill fell inside the stage (no "
          f"{folder}/manifest.json when it was sent)")
    print(f"  killed after {time.time() - t0:.1f} s: launcher rc {r.returncode}", flush=True)
    for n in (1, 3):
        copy = f"{rd}-resume{n}"
        shutil.copytree(rd, copy, symlinks=True)
        M.resume(n, copy, label)


def damage_row(M, stage, folder, rel, how):
    """One output of a completed run damaged; --resume at 2 ranks redoes that unit only."""
    label = f"{how} {rel} ({stage})"
    rd = M.new_dir(f"damage-{folder}-{how}")
    shutil.copytree(M.ref, rd, symlinks=True)
    unit = [fs for fs in unit_files(rd, folder).values() if rel in fs]
    if not check(len(unit) == 1, f"{label}: {rel} is in one unit record of {folder}"):
        return
    before = stamps(rd)
    print(f"  {Q.damage(os.path.join(rd, rel), how)}", flush=True)
    M.faults += 1
    M.resume(REF_RANKS, rd, label)
    after = stamps(rd)
    mine = set(unit[0]) | {f"{folder}/manifest.json"}
    if folder == "plan":
        mine.add("plan/manifest.json")
    touched = sorted(k for k, v in before.items() if k not in mine and after.get(k) != v and
                     not measurement(k))
    check(not touched, f"{label}: only the damaged unit was redone; also rewritten: {touched}")
    check(rel in after and after[rel] != before.get(rel),
          f"{label}: {rel} was written again")


def measurement(rel):
    """Files every run rewrites: its lock, timings, the report, stop marker, config dump, and
    the records the driver rewrites (manifests of redone stages, unit records)."""
    top = rel.split(os.sep)[0]
    return (rel in ("lock", "timings.json", "report.md", "run.json", "config.resolved.yaml")
            or top in ("report", "units") or "rss" in rel.split(os.sep)[:-1] or
            rel.endswith("manifest.json") or rel.startswith("calib/ckpt/"))


def stage_outputs(rd, folder):
    """Removes a stage's outputs (its unit records' files, the records, its manifest) so that
    a --resume does the whole stage again."""
    for files in unit_files(rd, folder).values():
        for f in files:
            os.unlink(os.path.join(rd, f))
    shutil.rmtree(os.path.join(rd, "units", folder))
    os.unlink(os.path.join(rd, folder, "manifest.json"))


def fill(path):
    """Writes a file at path until the file system is full. Returns the bytes written."""
    n = 0
    with open(path, "wb", buffering=0) as f:
        for block in (1 << 16, 1 << 12, 1 << 9, 1):
            try:
                while True:
                    n += f.write(b"\0" * block)
            except OSError:
                pass
    return n


def enospc_row(M, stage, folder, mnt, point="start"):
    """The stage's outputs removed, ranks held at `point` of it (its start, or after the
    first output shard of write), the tmpfs filled: exit 1."""
    label = f"ENOSPC in {stage}" + (f" after the first {point}" if point != "start" else "")
    rd = os.path.join(mnt, f"run-{folder}-{point}")
    shutil.copytree(M.ref, rd, symlinks=True)
    stage_outputs(rd, folder)
    if folder == "out":
        shutil.rmtree(os.path.join(rd, "export"))
    L = M.launch(REF_RANKS, rd, resume=True, hold=f"{folder}:{point}")
    if not wait_held(M, L, REF_RANKS, f"{label}: both ranks at {point} of {stage}"):
        return
    filler = os.path.join(mnt, "filler")
    n = fill(filler)
    M.faults += 1
    Q.release(M.marks)
    r = ended(L, label)
    if r is None:
        os.unlink(filler)
        return
    check(Q.one_error(r, rd, "No space left on device", code=1),
          f"{label}: exit 1 with one error line naming the file: rc {r.returncode} "
          f"{Q.qshard_lines(r)} {r.stderr[-400:] if not Q.qshard_lines(r) else ''}")
    if Q.qshard_lines(r):
        print(f"  {Q.qshard_lines(r)[0]} (disk filled with {n} bytes)", flush=True)
    temps = [k for k in all_files(rd) if ".tmp." in k]
    check(not temps, f"{label}: no temp file left behind: {temps}")
    os.unlink(filler)
    M.resume(REF_RANKS, rd, label)
    shutil.rmtree(rd)


def nan_row(M, what, tensor):
    label = f"NaN in {what} ({tensor})"
    bad = os.path.join(M.tmp, f"model-nan-{what}")
    path, at = Q.poison_tensor(M.model, bad, tensor, Q.NAN, ELEM)
    rd = M.new_dir(f"nan-{what}")
    M.faults += 1
    r = Q.qs(REF_RANKS, *M.args(rd, False), "--set", f"model={bad}", timeout=TIMEOUT)
    no_sanitizer_report(r)
    if check(Q.one_error(r, path, f"tensor '{tensor}'", "non-finite value (NaN)", f"at {at}"),
             f"{label}: exit 2 naming file, tensor and element: rc {r.returncode} "
             f"{Q.qshard_lines(r)}"):
        print(f"  {Q.qshard_lines(r)[0]}", flush=True)
    shutil.rmtree(bad)


def stop_checks(rd, label, sig, marker=None):
    """RUN_DIR/stopped.json (and the --stop-marker file) say a durable stop on `sig`; the last
    attempt in timings.json is "stopped"."""
    for p in [os.path.join(rd, "stopped.json")] + ([marker] if marker else []):
        try:
            m = Q.read_json(p)
        except (OSError, ValueError) as e:
            check(False, f"{label}: stop marker {p}: {e}")
            continue
        check(m.get("stopped") is True and m.get("signal") == sig and m.get("stage"),
              f"{label}: stop marker {p}: {m}")
    print(f"  stopped durably in or before {m.get('stage')} (signal {m.get('signal')})",
          flush=True)
    att = Q.read_json(os.path.join(rd, "timings.json")).get("attempts", [])
    check(att and att[-1].get("status") == "stopped",
          f"{label}: timings.json's last attempt is stopped: {att[-1:] if att else att}")


def signal_launcher_row(M, signame, hold, want_rc):
    """USR1 or TERM to mpiexec while a rank holds: the launcher's exit code, a durable stop."""
    sig = getattr(signal, signame)
    label = f"{signame} to mpiexec"
    rd = M.new_dir(f"sig-{signame}")
    marker = os.path.join(M.tmp, f"marker-{signame}")
    L = M.launch(REF_RANKS, rd, hold=hold, env=GRACE, extra=("--stop-marker", marker))
    if not wait_held(M, L, 1, f"{label}: hold {hold}"):
        return
    os.kill(L.pid, sig)
    M.faults += 1
    r = ended(L, label)
    if r is None:
        return
    check(r.returncode == want_rc and not Q.qshard_lines(r),
          f"{label}: exit {want_rc} and no error line: rc {r.returncode} {Q.qshard_lines(r)}")
    stop_checks(rd, label, sig, marker)
    M.resume(3, rd, label)


def signal_template_row(M):
    """TERM to the launcher slurm/qshard.sbatch started: the template exits 3 (stop marker)."""
    label = "TERM to the sbatch template's launcher"
    rd = M.new_dir("sig-template")
    fake = os.path.join(M.tmp, "fakebin")
    os.makedirs(fake, exist_ok=True)
    asked = os.path.join(M.tmp, "scontrol.args")
    with open(os.path.join(fake, "scontrol"), "w") as f:
        f.write(f"#!/bin/sh\necho \"$@\" >> {asked}\nexit 0\n")
    os.chmod(os.path.join(fake, "scontrol"), 0o755)
    env = dict(Q.hold_env("plan:unit", M.marks), QSHARD=Q.QS, QSHARD_LAUNCHER="mpirun",
               QSHARD_SIGNAL_GRACE="0", SLURM_NTASKS=str(REF_RANKS), SLURM_JOB_ID="4242",
               SLURM_SUBMIT_DIR=M.tmp, PATH=fake + os.pathsep + os.environ.get("PATH", ""),
               **GRACE)
    shutil.rmtree(M.marks, ignore_errors=True)
    os.makedirs(M.marks)
    template = os.path.join(Q.SRC, "slurm", "qshard.sbatch")
    L = Q.Launch(["bash", template, M.cfg, "--set", f"run_dir={rd}", "--quiet"], env=env)
    if not wait_held(M, L, 1, f"{label}: rank 0 in the plan"):
        return
    launchers = [p for p in Q.children(L.pid) if os.path.basename(cmd0(p)) == "mpirun"]
    if not check(len(launchers) == 1, f"{label}: one mpirun below the template: {launchers}"):
        L.kill()
        return
    os.kill(launchers[0], signal.SIGTERM)
    M.faults += 1
    r = ended(L, label)
    if r is None:
        return
    check(r.returncode == 3 and not Q.qshard_lines(r),
          f"{label}: the template exits 3: rc {r.returncode} {r.stdout[-600:]} {r.stderr[-300:]}")
    check(os.path.exists(asked) and open(asked).read().split() == ["requeue", "4242"],
          f"{label}: the template asks Slurm to requeue job 4242")
    stop_checks(rd, label, signal.SIGTERM)
    M.resume(1, rd, label)


def cmd0(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().split(b"\0")[0].decode()
    except OSError:
        return ""


def concurrent_row(M):
    """A second run on a live run directory: exit 2, nothing touched; the first completes."""
    label = "concurrent run on one run directory"
    rd = M.new_dir("concurrent")
    L = M.launch(REF_RANKS, rd, hold="recon:start")
    if not wait_held(M, L, REF_RANKS, f"{label}: the first run holds in reconstruct"):
        return
    # a temp file the live run could be writing: a second run must not remove it
    live_tmp = os.path.join(rd, "recon", f"layer-000.h5.tmp.{L.ranks().get(0)}")
    with open(live_tmp, "wb") as f:
        f.write(b"being written")
    before = Q.tree_bytes(rd)
    M.faults += 1
    r = M.qs(1, rd, resume=True)
    host = os.uname().nodename
    check(Q.one_error(r, rd, "run directory in use by PID", f"on {host}"),
          f"{label}: the second run exits 2 naming the holder: rc {r.returncode} "
          f"{Q.qshard_lines(r)}")
    if Q.qshard_lines(r):
        print(f"  {Q.qshard_lines(r)[0]}", flush=True)
    after = Q.tree_bytes(rd)
    check(before == after, f"{label}: the second run changed nothing (the live run's temp "
          f"file kept): "
          f"{sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))}")
    os.unlink(live_tmp)
    Q.release(M.marks)
    r = ended(L, f"{label}: the first run")
    if r is None:
        return
    M.resumes += 1
    if check(r.returncode == 0, f"{label}: the first run completes: rc {r.returncode} "
             f"{r.stderr[-400:]}"):
        M.compare(rd, label, plan_ranks=REF_RANKS)


def moved_row(M):
    """Killed in the final pass, moved, resumed from the new place."""
    label = "moved run directory"
    rd = M.new_dir("moved-from")
    L = M.launch(REF_RANKS, rd, hold="final:unit")
    killed, _ = Q.kill_when(L, lambda: Q.held(M.marks), 0, f"{label}: kill in the final pass",
                            timeout=TIMEOUT)
    if killed is None:
        return
    to = M.new_dir("moved-to")
    os.rename(rd, to)
    before = stamps(to)
    M.faults += 1
    M.resume(REF_RANKS, to, label)
    after = stamps(to)
    kept = [k for k in before if k.startswith(("calib/", "recon/", "search/")) and
            not measurement(k)]
    redone = sorted(k for k in kept if after.get(k) != before[k])
    check(kept and not redone, f"{label}: stages finished before the kill not redone: "
          f"{redone} (of {len(kept)})")


def rows(mnt_needed):
    """[(group, name, san, xfail reason or None, function)]."""
    out = []
    for stage, folder, point, _ in STAGES:
        for victim in (0, "last"):
            out.append(("kill", f"kill -9 rank {victim} in {stage}",
                        folder == "recon" and victim == 0, None,
                        lambda M, s=stage, f=folder, p=point, v=victim: kill_row(M, s, f, p, v)))
    for stage, folder, _, rel in STAGES:
        targets = [rel] + (["export/model-00001-of-00002.safetensors"] if folder == "out" else [])
        for t in targets:
            for how in ("flip", "truncate", "delete"):
                out.append(("damage", f"{how} {t}", folder == "final" and how == "flip", None,
                            lambda M, s=stage, f=folder, t=t, h=how: damage_row(M, s, f, t, h)))
    for stage, folder, _, _ in STAGES:
        out.append(("enospc", f"ENOSPC in {stage}", folder == "out", None,
                    lambda M, s=stage, f=folder: enospc_row(M, s, f, mnt_needed[0])))
    out.append(("enospc", "ENOSPC in write after the first shard", False, None,
                lambda M: enospc_row(M, "write", "out", mnt_needed[0], "shard")))
    for what, tensor in NAN_ROWS:
        out.append(("nan", f"NaN in {what}", what == "lm_head", None,
                    lambda M, w=what, t=tensor: nan_row(M, w, t)))
    out.append(("signal", "USR1 to mpiexec", False, None,
                lambda M: signal_launcher_row(M, "SIGUSR1", "recon:unit", 3)))
    out.append(("signal", "TERM to mpiexec", False, None,
                lambda M: signal_launcher_row(M, "SIGTERM", "final:unit", 1)))
    out.append(("signal", "TERM to the sbatch template's launcher", True, None,
                signal_template_row))
    out.append(("rundir", "concurrent run", False, None, concurrent_row))
    out.append(("rundir", "moved run directory", False, None, moved_row))
    return out


def mount_tmpfs(path, size):
    """Mounts a tmpfs of `size` at path; exit 77 (or 1 with QS_REQUIRE_ROOT=1) when not
    permitted."""
    os.makedirs(path, exist_ok=True)
    r = Q.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", path], timeout=60)
    if r.returncode != 0:
        Q.skip_or_fail(f"cannot mount a tmpfs for the ENOSPC rows (run as root): "
                       f"{r.stderr.strip()}", require="QS_REQUIRE_ROOT")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--part", choices=("san", "rest", "all"), default="all")
    ap.add_argument("--groups", default="kill,damage,enospc,nan,signal,rundir")
    ap.add_argument("--only", default="", help="rows whose name contains this text")
    a = ap.parse_args()
    groups = a.groups.split(",")
    mnt = [None]
    chosen = [row for row in rows(mnt) if row[0] in groups and a.only in row[1] and
              (a.part == "all" or row[2] == (a.part == "san"))]
    os.environ["QS_NO_SKIP"] = "calibrate"  # calibrate computes with quantized inputs too
    t0 = time.time()
    with Q.tempdir("qs_faults_") as tmp:
        if any(row[0] == "enospc" for row in chosen):
            mnt[0] = os.path.join(tmp, "tmpfs")
            mount_tmpfs(mnt[0], "8m")
        try:
            M = Matrix(tmp)
            if not M.setup():
                Q.finish()
            t_ref = time.time() - t0
            xfails = 0
            for group, name, _, xfail, fn in chosen:
                t1, nfail = time.time(), len(Q.failures)
                print(f"row [{group}] {name}", flush=True)
                fn(M)
                new = Q.failures[nfail:]
                if xfail and new:
                    del Q.failures[nfail:]
                    xfails += 1
                    print(f"  XFAIL ({xfail}): {len(new)} failure(s) above", flush=True)
                elif xfail:
                    check(False, f"{name}: XPASS (marked xfail: {xfail}); remove the mark")
                print(f"  {'FAILED' if Q.failures[nfail:] else 'ok'} in "
                      f"{time.time() - t1:.1f} s", flush=True)
        finally:
            if mnt[0]:
                Q.run(["umount", "-l", mnt[0]], timeout=60)
        print(f"fault matrix ({a.part}; {','.join(groups)}): {len(chosen)} rows, {xfails} "
              f"xfail; faults injected {M.faults}, resumes checked {M.resumes}, output files "
              f"compared {M.files} ({M.nbytes} bytes); reference {t_ref:.1f} s, total "
              f"{time.time() - t0:.1f} s", flush=True)
    Q.finish()


if __name__ == "__main__":
    main()
