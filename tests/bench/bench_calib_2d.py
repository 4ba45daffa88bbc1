#!/usr/bin/python3
"""bench_calib_2d.py: calibrate's 2-D schedule (docs/calibrate.md "Replicas: measured"). Times
the calibrate stage of `qshard run` (reconstruct.inputs float, one BLAS thread per rank) on a
synthetic Llama of 2 layers (hidden 512 by default) at 1 rank, at 2 ranks as a pipeline
(2 stages x 1 replica, the plan's choice at ranks <= layers) and at 2 ranks with
calib.replicas 2 (1 stage x 2 replicas), reading wall and CPU seconds per rank from
run/timings.json (cpu_s counts MPI's busy polling; busy_s is the compute the stage measured);
also R = throughput of two concurrent single-threaded sgemm processes / one
alone (what two cores of this machine give together), and checks that the calib/ files are
byte-identical across the three runs. Prints `uptime` before and after. Not a test.
Usage: bench_calib_2d.py BUILD_DIR [--samples 16] [--seqlen 256] [--chunk 1] [--hidden 512]
    [--layers 2] [--repeat 1] (--repeat: runs of each configuration)
(env QS_MPIEXEC, default "mpiexec --oversubscribe")"""
import argparse
import json
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import qstest as Q  # noqa: E402

DEFAULTS = {"samples": 16, "seqlen": 256, "chunk": 1, "hidden": 512, "layers": 2, "repeat": 1}
p = argparse.ArgumentParser()
p.add_argument("build")
for key, value in DEFAULTS.items():
    p.add_argument("--" + key, type=int, default=value)
a = p.parse_args()
qs = os.path.abspath(os.path.join(a.build, "qshard"))
mpiexec = os.environ.get("QS_MPIEXEC", "mpiexec --oversubscribe").split()
env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMPI_ALLOW_RUN_AS_ROOT="1",
           OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")


def uptime():
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def calibrate_times(rd):
    """(wall of rank 0, [cpu per rank], [busy per rank], (stages, replicas)) of calibrate."""
    t = Q.read_json(os.path.join(rd, "timings.json"))
    st = [s for s in t["attempts"][-1]["stages"] if s["name"] == "calibrate"][-1]
    plan = Q.read_json(os.path.join(rd, "plan", "plan.json"))["calibrate"]
    return (st["wall_s"], [r["cpu_s"] for r in st["ranks"]], [r["busy_s"] for r in st["ranks"]],
            (plan["stages"], plan["replicas"]))


def main(tmp):
    print("uptime before:", uptime())
    model = os.path.join(tmp, "m")
    subprocess.run([qs, "synth-model", "--arch", "llama", "--layers", str(a.layers),
                    "--hidden", str(a.hidden), "--tokens", str(a.samples * a.seqlen * 4), model],
                   check=True, env=env, stdout=subprocess.DEVNULL)
    one = Q.sgemm_gflops(a.build, 1, 5, env)
    two = Q.sgemm_gflops(a.build, 2, 5, env)
    print(f"sgemm 1 alone {one:.1f} GFLOP/s, 2 concurrent {two:.1f} GFLOP/s: R = {two / one:.3f}")
    ref = None
    for rep in range(a.repeat):
        for n, replicas in ((1, 0), (2, 0), (2, 2)):
            rd = os.path.join(tmp, f"run{n}-{replicas}")
            shutil.rmtree(rd, ignore_errors=True)
            cfg = Q.write_config(
                os.path.join(tmp, f"cfg{n}-{replicas}.yaml"), model, rd,
                calib={"tokens": f"{model}/tokens.u32", "nsamples": a.samples,
                       "seqlen": a.seqlen, "chunk_samples": a.chunk, "replicas": replicas},
                quant={"method": "rtn"}, reconstruct={"inputs": "float"},
                output={"gptq_export": False})
            r = subprocess.run(mpiexec + ["-n", str(n), qs, "run", cfg, "--quiet"],
                               capture_output=True, text=True, env=env)
            if r.returncode != 0:
                raise SystemExit(f"bench_calib_2d: {n} rank(s), replicas {replicas}: exit "
                                 f"{r.returncode}: {r.stderr.strip()[:2000]}")
            wall, cpu, busy, shape = calibrate_times(rd)
            data = Q.layer_data(rd, a.layers)
            same = "reference" if ref is None else ("identical" if data == ref else "DIFFER")
            ref = ref or data
            print(json.dumps({"run": rep + 1, "ranks": n, "stages": shape[0],
                              "replicas": shape[1], "calibrate_wall_s": round(wall, 2),
                              "calibrate_cpu_s": [round(c, 2) for c in cpu],
                              "cpu_total_s": round(sum(cpu), 2),
                              "calibrate_busy_s": [round(b or 0.0, 2) for b in busy],
                              "calib_bytes": same}))
    print("uptime after:", uptime())


with Q.tempdir("qs_bench_calib2d_") as d:
    main(d)
