#!/usr/bin/python3
"""test_threads_mpi.py: threads per rank (docs/slurm.md "Threads per rank"). The same small
synthetic config run through `mpiexec -n R qshard run` at threads 1, 2, 3 x ranks 1, 2 gives a
byte-identical run directory (every file of Q.run_file_hashes: calib/, recon/, search/, final/,
out/, export/, eval*.json, manifests, unit records), in both reconstruct modes:
  quantized inputs (the sequential solve's pieces, the layer forward, the Hessian hook,
  search probes and eval) and float inputs (calibrate's forward and statistics, the
  whole-linear solve split into row_block pieces).
The model and chunks are sized so every threaded loop has several tiles: 512-row chunks (two
row tiles of QS_ROW_TILE, and a short last chunk), hidden 384 and intermediate 640 (several
Hessian blocks), row_block 64 (many pieces), two candidates.
The thread count comes from the rule of docs/config.md: threads 2 from SLURM_CPUS_PER_TASK,
3 from OMP_NUM_THREADS, 1 written explicitly while SLURM_CPUS_PER_TASK=2 is set (explicit
wins); timings.json records that count for every stage and rank. A rank that its launcher
binds to fewer CPUs than it asks for (here `taskset -c CPU` under the launcher, as Open MPI's
default binding to one core) runs as many threads as it may use CPUs (qs_pool_fit), with the
same bytes. A bad SLURM_CPUS_PER_TASK is exit 2 with one line naming it, before the run
directory is made.
Usage: test_threads_mpi.py  (env: QS_BIN, QS_MPIEXEC)"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import qstest as Q  # noqa: E402
from qstest import check  # noqa: E402

# threads -> (config value, environment): each count reached by another branch of the rule
THREADS = {1: (1, {"SLURM_CPUS_PER_TASK": "2", "OMP_NUM_THREADS": "3"}),
           2: (0, {"SLURM_CPUS_PER_TASK": "2", "OMP_NUM_THREADS": "3"}),
           3: (0, {"OMP_NUM_THREADS": "3"})}


def write_config(path, model, run_dir, inputs, threads):
    Q.write_config(path, model, run_dir,
                   calib={"tokens": f"{model}/tokens.u32", "nsamples": 10, "seqlen": 128,
                          "chunk_samples": 4, "seed": 3},
                   quant={"bits": [3, 4], "group_size": [64], "row_block": 64},
                   reconstruct={"inputs": inputs},
                   search={"target_bpw": 3.6, "objective": "sensitivity", "probe_windows": 4},
                   eval={"tokens": f"{model}/tokens.u32", "seqlen": 128, "max_windows": 6})
    with open(path) as f:
        text = f.read()
    with open(path, "w") as f:
        f.write(f"threads: {threads}\n" + text)


def env_for(extra):
    """The rule's variables as `extra` gives them, the others empty (= unset for
    qs_config_threads): Q.run adds to the caller's environment, so leaving a key out would
    keep a value the caller's shell has."""
    env = {"SLURM_CPUS_PER_TASK": "", "OMP_NUM_THREADS": ""}
    env.update(extra)
    return env


def fit(requested, allowed, online):
    """qs_pool_fit: a rank allowed fewer CPUs than are online and than it asks for runs one
    thread per allowed CPU."""
    return allowed if 0 < allowed < online and allowed < requested else requested


# this process's CPUs (the ranks inherit them: the tests launch unbound); a cpuset container,
# taskset or a Slurm step may give fewer than are online, and qshard then caps its threads
ALLOWED = sorted(os.sched_getaffinity(0))
ONLINE = os.sysconf("SC_NPROCESSORS_ONLN")


def stage_threads(run_dir):
    """{(stage, rank): threads} of the last attempt in timings.json."""
    t = Q.read_json(os.path.join(run_dir, "timings.json"))
    att = t["attempts"][-1]
    return {(s["name"], r): rk.get("threads") for s in att["stages"]
            for r, rk in enumerate(s["ranks"])}


def main(tmp):
    if len(ALLOWED) < ONLINE:
        print(f"note: this process may use {len(ALLOWED)} of {ONLINE} CPUs: the runs asking "
              f"for more threads run {fit(3, len(ALLOWED), ONLINE)} (checked as such)")
    model = os.path.join(tmp, "m")
    if not Q.synth_model(model, layers=2, hidden=384, intermediate=640, heads=6, kv_heads=2,
                         vocab=300, tokens=20000):
        return
    for inputs in ("quantized", "float"):
        ref = None
        for ranks in (1, 2):
            for threads, (value, extra) in THREADS.items():
                rd = os.path.join(tmp, f"{inputs}-r{ranks}-t{threads}")
                cfg = os.path.join(tmp, f"{inputs}-r{ranks}-t{threads}.yaml")
                write_config(cfg, model, rd, inputs, value)
                r = Q.qs(ranks, "run", cfg, env=env_for(extra))
                what = f"{inputs} inputs, {ranks} rank(s), {threads} thread(s)"
                if not check(r.returncode == 0, f"{what}: rc {r.returncode} {r.stderr}"):
                    continue
                st = stage_threads(rd)
                want = fit(threads, len(ALLOWED), ONLINE)
                check(st and all(v == want for v in st.values()),
                      f"{what}: timings.json threads per stage and rank: {st}, want {want} "
                      f"({len(ALLOWED)} of {ONLINE} CPUs allowed)")
                hashes = Q.run_file_hashes(rd)
                check(any(k.startswith("recon/") for k in hashes) and "eval.json" in hashes,
                      f"{what}: the run wrote recon/ and eval.json: {sorted(hashes)[:8]}")
                if inputs == "float":
                    check(any(k.startswith("calib/layer-") for k in hashes),
                          f"{what}: calibrate wrote its layer files")
                if ref is None:
                    ref = (what, hashes)
                    continue
                diff = Q.diff_hashes(hashes, ref[1])
                check(not diff, f"{what}: run directory differs from {ref[0]}: {diff}")

    # bound to one CPU of several: one thread, whatever was asked, and the same bytes
    cpu = ALLOWED[0]
    rd = os.path.join(tmp, "bound")
    cfg = os.path.join(tmp, "bound.yaml")
    write_config(cfg, model, rd, "quantized", 2)
    r = Q.run(Q.MPIEXEC + ["-n", "1", "taskset", "-c", str(cpu), Q.QS, "run", cfg],
              env=env_for({}))
    if check(r.returncode == 0, f"bound to CPU {cpu}: rc {r.returncode} {r.stderr}"):
        st = stage_threads(rd)
        want = fit(2, 1, ONLINE)
        check(st and all(v == want for v in st.values()),
              f"bound to CPU {cpu} of {ONLINE}, threads 2: timings.json threads {st}, "
              f"want {want}")
        diff = Q.diff_hashes(Q.run_file_hashes(rd),
                             Q.run_file_hashes(os.path.join(tmp, "quantized-r1-t1")))
        check(not diff, f"bound to CPU {cpu}: run directory differs from 1 thread: {diff}")

    # a bad variable, read because threads is 0: one line naming it, exit 2
    rd = os.path.join(tmp, "bad")
    cfg = os.path.join(tmp, "bad.yaml")
    write_config(cfg, model, rd, "quantized", 0)
    r = Q.qs(1, "run", cfg, env=env_for({"SLURM_CPUS_PER_TASK": "eight"}))
    check(Q.one_error(r, "SLURM_CPUS_PER_TASK: expected a thread count in 1..4096", "'eight'"),
          f"bad SLURM_CPUS_PER_TASK: rc {r.returncode} {r.stderr}")
    check(not os.path.exists(rd), "bad SLURM_CPUS_PER_TASK: no run directory was made")


if __name__ == "__main__":
    with Q.tempdir("qs_threads_") as tmp:
        main(tmp)
    Q.finish()
