#!/usr/bin/python3
"""test_slurm_submit.py: plain submissions of slurm/qshard.sbatch on a real local cluster:
  1. QSHARD_LAUNCHER=mpirun (Open MPI's mpirun inside an `sbatch -n 2` allocation), sent
     USR1 (`scancel --signal=USR1 --batch`) as soon as the batch script has started: the
     template holds the signal for QSHARD_SIGNAL_GRACE (5 s) so that no rank dies of it
     before its handler exists (without that: exit 138, FAILED); the job completes with
     exit 0 (requeued once or not at all, depending on speed) and its outputs are identical
     to `mpiexec -n 2 qshard run` of the same config (layer datasets, eval.json, manifest
     inputs, run.json);
  2. QSHARD_LAUNCHER=srun with a config whose model does not exist: qshard exits 2, the job
     ends FAILED with exit code 2 and is not requeued (only exit 3 requeues), no run output;
  3. QSHARD pointing at no executable: the template exits 2 before launching anything.
Uses a running cluster or starts one with tests/slurm/cluster.sh (stopped again at the
end). Skips (77) without Slurm unless QS_REQUIRE_SLURM=1."""
import os
import sys
import time

import slurmlib as S
from slurmlib import check, log

NLAYERS = 4
JOBS = {}


def main(c, tmp):
    model = S.make_model(tmp, layers=NLAYERS)
    run_dir = os.path.join(tmp, "run-mpirun")
    ref_dir = os.path.join(tmp, "run-ref")
    cfg = os.path.join(tmp, "mpirun.yaml")
    ref_cfg = os.path.join(tmp, "ref.yaml")
    bad_cfg = os.path.join(tmp, "bad.yaml")
    S.write_config(cfg, model, run_dir, 32, 4, every=2)
    S.write_config(ref_cfg, model, ref_dir, 32, 4, every=2)
    S.write_config(bad_cfg, os.path.join(tmp, "no-such-model"), os.path.join(tmp, "run-bad"),
                   32, 4)

    t0 = time.time()
    JOBS["mpirun"] = c.submit(["-n", "2", "-J", "qshard-mpirun-test", "--chdir", tmp,
                               S.TEMPLATE, cfg, "--quiet"],
                              env={"QSHARD": S.QS, "QSHARD_LAUNCHER": "mpirun"})
    JOBS["bad"] = c.submit(["-n", "2", "-J", "qshard-bad-test", "--chdir", tmp, S.TEMPLATE,
                            bad_cfg], env={"QSHARD": S.QS, "QSHARD_LAUNCHER": "srun"})
    JOBS["nobin"] = c.submit(["-n", "1", "-J", "qshard-nobin-test", "--chdir", tmp,
                              S.TEMPLATE, cfg],
                             env={"QSHARD": os.path.join(tmp, "no-such-qshard")})
    log(f"submitted jobs {JOBS}")
    ref = S.reference_run(ref_cfg, 2)

    # USR1 as soon as the mpirun job's batch script runs (its first line is written after
    # the trap is set)
    mj = JOBS["mpirun"]
    end = time.time() + 180
    while time.time() < end and f"qshard.sbatch: job {mj} restart 0" not in S.job_output(tmp, mj):
        if c.job(mj).get("JobState") in S.FINAL:
            break
        time.sleep(0.05)
    r = c.cmd(["scancel", "--signal=USR1", "--batch", mj])
    check(r.returncode == 0, f"early scancel --signal=USR1 --batch: {r.stderr}")
    log(f"signalled job {mj} at {time.time() - t0:.1f} s")

    done = {}
    for name, jid in JOBS.items():
        info = c.wait_job(jid, lambda i: i.get("JobState") in S.FINAL, 240, "completion")
        done[name] = info or {}
        log(f"job {jid} ({name}): {done[name].get('JobState')} exit "
            f"{done[name].get('ExitCode')} restarts {done[name].get('Restarts')} "
            f"at {time.time() - t0:.1f} s")
    rout, rerr = ref.communicate(timeout=300)
    check(ref.returncode == 0, f"reference mpiexec run: rc {ref.returncode} {rerr}")

    m = done["mpirun"]
    check(m.get("JobState") == "COMPLETED" and m.get("ExitCode") == "0:0" and
          m.get("Restarts") in ("0", "1"), f"mpirun job survived the early USR1 and "
          f"completed: {m.get('JobState')} exit {m.get('ExitCode')} restarts "
          f"{m.get('Restarts')}")
    if m.get("JobState") == "COMPLETED" and ref.returncode == 0:
        S.compare_runs(run_dir, ref_dir, NLAYERS)

    b = done["bad"]
    check(b.get("JobState") == "FAILED" and b.get("ExitCode") == "2:0" and
          b.get("Restarts") == "0", f"bad config: FAILED exit 2:0, not requeued: "
          f"{b.get('JobState')} exit {b.get('ExitCode')} restarts {b.get('Restarts')}")
    check(not os.path.exists(os.path.join(tmp, "run-bad")), "bad config: no run directory")
    n = done["nobin"]
    check(n.get("JobState") == "FAILED" and n.get("ExitCode") == "2:0",
          f"missing binary: FAILED exit 2:0: {n.get('JobState')} exit {n.get('ExitCode')}")
    log(f"timing: all done {time.time() - t0:.1f} s after submit")


def dump(tmp):
    for nm, j in JOBS.items():
        print(f"--- {nm} job output (qshard-{j}.out) ---\n{S.job_output(tmp, j)}",
              file=sys.stderr)


S.run_test("qs_slurm_submit_", main, dump)
