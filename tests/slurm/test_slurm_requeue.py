#!/usr/bin/python3
"""test_slurm_requeue.py: slurm/qshard.sbatch (srun --mpi=pmix) on a real local Slurm
cluster, stopped by USR1 and requeued:
  1. submits `sbatch -n 2 --chdir DIR slurm/qshard.sbatch CONFIG` for a synthetic model
     whose calibration has 64 chunks with a checkpoint after every chunk (plan -> calibrate
     -> eval);
  2. once the run has written a calibration checkpoint (run/calib/ckpt/state.json), sends
     `scancel --signal=USR1 --batch JOBID` (what --signal=B:USR1@120 does before a time
     limit): the batch shell passes it to srun, the ranks stop at the next checkpoint and
     exit 3, the template requeues the job (QSHARD_SIGNAL_GRACE=0: the checkpoint shows
     that the ranks have their signal handler, so the signal is passed on at once);
  3. checks that the job was requeued from a mid-calibration checkpoint (0 < chunk < 48 in
     state.json while it waits), restarted once (Restarts=1; both runs in the appended
     output file) and completed with exit 0;
  4. compares the run's outputs (layer datasets and attributes, eval.json, calib manifest
     config/inputs, run.json) with an uninterrupted `mpiexec -n 2 qshard run` of the same
     config in another run directory: identical.
Uses a running cluster or starts one with tests/slurm/cluster.sh (stopped again at the
end). Skips (77) without Slurm unless QS_REQUIRE_SLURM=1. Prints the timings."""
import json
import os
import sys
import time

import slurmlib as S
from slurmlib import check, log

NSAMPLES, CHUNK = 256, 4
NCHUNKS = NSAMPLES // CHUNK
NLAYERS = 4
JOBS = []  # submitted job ids (for the output on failure)


def main(c, tmp):
    model = S.make_model(tmp, layers=NLAYERS)
    run_dir = os.path.join(tmp, "run-slurm")
    ref_dir = os.path.join(tmp, "run-ref")
    cfg = os.path.join(tmp, "slurm.yaml")
    ref_cfg = os.path.join(tmp, "ref.yaml")
    S.write_config(cfg, model, run_dir, NSAMPLES, CHUNK, every=1)
    S.write_config(ref_cfg, model, ref_dir, NSAMPLES, CHUNK, every=1)
    state = os.path.join(run_dir, "calib", "ckpt", "state.json")

    t0 = time.time()
    jid = c.submit(["-n", "2", "-J", "qshard-requeue-test", "--chdir", tmp, S.TEMPLATE, cfg,
                    "--quiet"], env={"QSHARD": S.QS, "QSHARD_SIGNAL_GRACE": "0"})
    JOBS.append(jid)
    log(f"submitted job {jid}")

    # 1. wait for the first calibration checkpoint, then USR1 to the batch shell
    t_ckpt = None
    end = time.time() + 180
    while time.time() < end:
        if os.path.exists(state):
            t_ckpt = time.time()
            break
        if c.job(jid).get("JobState") in S.FINAL:
            break
        time.sleep(0.1)
    if not check(t_ckpt is not None, f"job {jid} wrote {state} within 180 s "
                 f"(state {c.job(jid).get('JobState')})"):
        return
    r = c.cmd(["scancel", "--signal=USR1", "--batch", jid])
    check(r.returncode == 0, f"scancel --signal=USR1 --batch: {r.stderr}")
    t_sig = time.time()

    # the uninterrupted reference runs while the requeued job waits to start again
    ref = S.reference_run(ref_cfg, 2)

    # 2. requeued: the checkpoint it will resume from lies inside the calibration
    info = c.wait_job(jid, lambda i: int(i.get("Restarts", "0")) >= 1 or
                      i.get("JobState") in S.FINAL, 120, "requeue after USR1")
    t_requeue = time.time()
    if info:
        check(int(info.get("Restarts", "0")) == 1,
              f"job requeued once after USR1 (state {info.get('JobState')}, "
              f"restarts {info.get('Restarts')}; the calibration may have ended first)")
        try:
            with open(state) as f:
                k = json.load(f)["chunk"]
        except (OSError, ValueError, KeyError) as e:
            k = f"unreadable: {e}"
        log(f"requeued (state {info.get('JobState')}); checkpoint chunk {k} of {NCHUNKS}")
        check(isinstance(k, int) and 0 < k < NCHUNKS,
              f"stopped at a checkpoint inside the calibration: chunk {k} of {NCHUNKS}")

    # 3. the requeued job runs again (--resume) and completes
    t_restart = None
    seen_pending = False
    end = time.time() + 240
    info = {}
    while time.time() < end:
        info = c.job(jid)
        st = info.get("JobState")
        seen_pending = seen_pending or st in ("PENDING", "REQUEUED")
        if t_restart is None and seen_pending and st == "RUNNING":
            t_restart = time.time()
        if st in S.FINAL:
            break
        time.sleep(0.2)
    t_done = time.time()
    check(info.get("JobState") == "COMPLETED" and info.get("ExitCode") == "0:0",
          f"job {jid} completed: {info.get('JobState')} exit {info.get('ExitCode')}")
    check(info.get("Restarts") == "1", f"job {jid} ran twice: restarts {info.get('Restarts')}")
    out = S.job_output(tmp, jid)
    starts = [l for l in out.splitlines() if l.startswith(f"qshard.sbatch: job {jid} restart")]
    check(len(starts) == 2 and "--resume" in starts[1] and "--resume" not in starts[0],
          f"output file holds both runs, the second with --resume: {starts}")

    try:
        rout, rerr = ref.communicate(timeout=300)
    except Exception:
        ref.kill()
        rout, rerr = ref.communicate()
    check(ref.returncode == 0, f"reference mpiexec run: rc {ref.returncode} {rerr}")
    t_ref = time.time()

    # 4. outputs identical to the uninterrupted run
    if info.get("JobState") == "COMPLETED" and ref.returncode == 0:
        S.compare_runs(run_dir, ref_dir, NLAYERS)

    log(f"timing: checkpoint {t_ckpt - t0:.1f} s after submit, signal {t_sig - t0:.1f} s, "
        f"requeued {t_requeue - t0:.1f} s, running again "
        f"{(t_restart or t_done) - t0:.1f} s, completed {t_done - t0:.1f} s; "
        f"reference done {t_ref - t0:.1f} s")


def dump(tmp):
    if JOBS:
        print(f"--- job output (qshard-{JOBS[0]}.out) ---\n{S.job_output(tmp, JOBS[0])}",
              file=sys.stderr)


S.run_test("qs_slurm_requeue_", main, dump)
