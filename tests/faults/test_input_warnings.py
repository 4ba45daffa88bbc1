#!/usr/bin/python3
"""test_input_warnings.py: a calibration that reads the same tokens many times is a warning,
not a refusal (issue 20, point 9), and a recorded one: run/timings.json's attempt holds it
under "warnings" and report.md lists it; a calibration that fits in its file records none.
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import qstest as Q  # noqa: E402

check = Q.check


def attempt_warnings(rd):
    return Q.read_json(os.path.join(rd, "timings.json"))["attempts"][-1].get("warnings")


def main():
    with Q.tempdir("qs_warn_") as tmp:
        model = os.path.join(tmp, "m")
        if not Q.synth_model(model, layers=2, hidden=64, intermediate=128, heads=2, kv_heads=1,
                             vocab=300, tokens=20000):
            Q.finish()
        for tag, nsamples, seqlen in (("many", 40, 1024), ("fits", 8, 256)):
            rd = os.path.join(tmp, f"run-{tag}")
            cfg = Q.write_config(
                os.path.join(tmp, f"{tag}.yaml"), model, rd,
                calib={"tokens": f"{model}/tokens.u32", "nsamples": nsamples, "seqlen": seqlen,
                       "sampling": "random", "chunk_samples": 4},
                quant={"bits": [4], "group_size": [32], "method": "rtn"})
            r = Q.qs(1, "run", cfg)
            check(r.returncode == 0, f"{tag}: rc {r.returncode} {r.stderr[-400:]}")
            w = attempt_warnings(rd)
            report = open(os.path.join(rd, "report.md")).read()
            if tag == "many":
                want = (f"calib: 40 windows x 1024 tokens = 40960 tokens from {model}/tokens.u32, "
                        "which holds 20000: calibration reads the same tokens 2.0 times on average")
                check(w == [want], f"timings.json warnings {w!r}, want [{want!r}]")
                check(f"Warnings:\n\n- {want}\n" in report, "report.md lists no warning")
            else:
                check(w is None, f"a calibration that fits recorded warnings {w!r}")
                check("Warnings:" not in report, "report.md lists a warning")
    Q.finish()


if __name__ == "__main__":
    main()
