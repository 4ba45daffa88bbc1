#!/usr/bin/python3
"""test_bad_inputs.py: the bad-input suite through the CLI. Every broken model written by
tests/data/make_bad_models.py and every broken config below must make both
`qshard inspect DIR` (model cases) and `mpiexec -n 2 qshard run CONFIG` exit 2, with
qshard's own stderr exactly one line `qshard: error: ...` naming the file (or key) and the
cause (the MPI launcher may add its banner after it), and no sanitizer report.
Usage: test_bad_inputs.py  (env: QS_BIN, QS_MPIEXEC, QS_SOURCE_DIR)"""
import concurrent.futures
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import qstest as Q  # noqa: E402
from qstest import check  # noqa: E402

PY = "/usr/bin/python3"
SANITIZER_MARKS = ("AddressSanitizer", "LeakSanitizer", "runtime error:", "UndefinedBehaviorSanitizer")


def one_line_error(name, proc, expect_file, expect_substr, launcher):
    err = proc.stderr
    lines = [l for l in err.splitlines() if l.strip()]
    ours = [l for l in lines if l.startswith("qshard:")]
    check(proc.returncode == 2, f"{name}: exit {proc.returncode}, want 2; stderr: {err.strip()[:400]}")
    check(len(ours) == 1, f"{name}: {len(ours)} qshard lines on stderr: {ours}")
    if not lines:
        return
    first = lines[0]
    check(first.startswith("qshard: error: "), f"{name}: first stderr line is not ours: {first}")
    if not launcher:
        check(len(lines) == 1, f"{name}: stderr has {len(lines)} lines: {lines}")
    check(expect_file in first, f"{name}: message does not name '{expect_file}': {first}")
    check(expect_substr.lower() in first.lower(), f"{name}: message lacks '{expect_substr}': {first}")
    for mark in SANITIZER_MARKS:
        check(mark not in err, f"{name}: sanitizer report on stderr: {err[:2000]}")


YAML_CASES = [
    # (name, text, expected file-ish token, expected cause word)
    ("unknown_key", "model: {model}\nrun_dir: {run}\nquant:\n  bitz: [4]\n", "bad.yaml:4:3", "bitz"),
    ("wrong_type", "model: {model}\nrun_dir: {run}\nquant:\n  bits: hello\n", "bad.yaml:4", "bits"),
    ("out_of_range", "model: {model}\nrun_dir: {run}\nquant:\n  bits: [9]\n", "bad.yaml:4", "bits"),
    ("alias", "model: {model}\nrun_dir: &r {run}\neval:\n  tokens: *r\n", "bad.yaml:2", "anchor"),
    ("malformed", "model: {model}\nrun_dir: [unclosed\n", "bad.yaml", "yaml"),
    ("empty", "", "bad.yaml", "empty"),
    ("not_mapping", "- a\n- b\n", "bad.yaml:1", "mapping"),
    ("missing_model", "run_dir: {run}\n", "bad.yaml", "model"),
    ("duplicate_key", "model: {model}\nmodel: {model}\nrun_dir: {run}\n", "bad.yaml:2", "duplicate"),
    ("negative_nsamples", "model: {model}\nrun_dir: {run}\ncalib:\n  nsamples: -3\n", "bad.yaml:4", "nsamples"),
    ("bad_enum", "model: {model}\nrun_dir: {run}\nquant:\n  method: awq\n", "bad.yaml:4", "method"),
    # the good model has hidden 64: group 128 has no GPTQ export layout for any linear
    ("no_export_layout", "model: {model}\nrun_dir: {run}\nquant:\n  group_size: [128]\n",
     "bad.yaml", "can be exported as GPTQ"),
    ("untied_export", "model: {model}\nrun_dir: {run}\nsearch:\n  tie_fused: false\n",
     "bad.yaml", "needs output.gptq_export: false"),
    ("model_missing_dir", "model: /nonexistent/qs-model\nrun_dir: {run}\n", "/nonexistent/qs-model", ""),
    # a budget below every allocation: refused before any stage (it used to fail in search,
    # after calibrate and reconstruct had run)
    ("budget_too_low", "model: {model}\nrun_dir: {run}\nquant:\n  group_size: [32]\n"
     "search:\n  target_bpw: 1.0\n", "bad.yaml", "below the smallest feasible allocation"),
    ("max_bytes_too_low", "model: {model}\nrun_dir: {run}\nquant:\n  group_size: [32]\n"
     "search:\n  max_bytes: 1000\n", "bad.yaml", "search.max_bytes 1000"),
]


def main(tmp):
    cases_dir = os.path.join(tmp, "models")
    r = Q.run([PY, os.path.join(Q.SRC, "tests", "data", "make_bad_models.py"), cases_dir],
              timeout=300)
    check(r.returncode == 0, f"make_bad_models.py failed: {r.stderr}")
    cases = Q.read_json(os.path.join(cases_dir, "cases.json"))
    good = os.path.join(tmp, "good")
    Q.synth_model(good, layers=2, hidden=64, heads=2, vocab=128)
    jobs = []  # (name, cmd, expect_file, expect_substr, launcher, run_dir_that_must_not_exist)
    for c in cases:
        d = c["dir"] if os.path.isabs(c["dir"]) else os.path.join(cases_dir, c["dir"])
        jobs.append(("inspect/" + c["name"], [Q.QS, "inspect", d], c["expect_file"], c["expect_substr"], False, None))
        cfg = os.path.join(tmp, f"cfg_{c['name']}.yaml")
        with open(cfg, "w") as f:
            f.write(f"model: {d}\nrun_dir: {tmp}/run_{c['name']}\n")
        jobs.append(("run/" + c["name"], Q.MPIEXEC + ["-n", "2", Q.QS, "run", cfg], c["expect_file"],
                     c["expect_substr"], True, f"{tmp}/run_{c['name']}"))
    for name, text, expect_file, expect_substr in YAML_CASES:
        cfg = os.path.join(tmp, f"bad_{name}", "bad.yaml")
        os.makedirs(os.path.dirname(cfg))
        with open(cfg, "w") as f:
            f.write(text.format(model=good, run=os.path.join(tmp, "run_" + name)))
        # refused before the run directory is touched
        jobs.append(("yaml/" + name, Q.MPIEXEC + ["-n", "2", Q.QS, "run", cfg], expect_file, expect_substr, True,
                     os.path.join(tmp, "run_" + name)))
        jobs.append(("plan/" + name, [Q.QS, "plan", cfg, "--ranks", "2"], expect_file, expect_substr, False, None))
    # usage errors and a missing config file
    jobs.append(("run/missing_config", Q.MPIEXEC + ["-n", "2", Q.QS, "run", os.path.join(tmp, "nope.yaml")],
                 "nope.yaml", "", True, None))
    jobs.append(("run/unknown_option", Q.MPIEXEC + ["-n", "2", Q.QS, "run", "--bogus"], "--bogus",
                 "unknown option", True, None))
    jobs.append(("inspect/no_dir", [Q.QS, "inspect"], "MODEL_DIR", "missing", False, None))
    jobs.append(("unknown_command", [Q.QS, "frobnicate"], "frobnicate", "unknown command", False, None))

    def one(job):
        name, cmd, expect_file, expect_substr, launcher, run_dir = job
        p = Q.run(cmd, timeout=120)
        one_line_error(name, p, expect_file, expect_substr, launcher)
        if run_dir:
            check(not os.path.exists(run_dir), f"{name}: run directory was created")

    # a few launches at a time: each mpiexec mostly waits on process start-up
    with concurrent.futures.ThreadPoolExecutor(max_workers=3) as pool:
        list(pool.map(one, jobs))
    n = len(set(j[0].split("/", 1)[-1] for j in jobs))
    print(f"bad inputs: {n} cases")
    check(n >= 25, f"only {n} cases")


with Q.tempdir("qs_bad_") as d:
    main(d)
Q.finish()
