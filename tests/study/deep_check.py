#!/usr/bin/python3
"""deep_check.py: qshard's float evaluation of the deep model (tests/data/make_deep_model.py)
against the transformers reference written next to it (docs/model.md, "A deeper trained model
for studies"). Not run by CTest (the model is generated, ~40 min); `make deep-model` makes it.

  1. `qshard eval --weights float` on all of eval.u32 in 256-token windows at 1 and 3 ranks
     (QS_MPIEXEC, default mpiexec --oversubscribe): prints each perplexity and its relative
     difference from reference.json's eval_ppl; fails over 1e-4, or if the two rank counts
     differ in ppl or nll_sum.
  2. window-0 logits: the build's test_calib_fixture SHARED_DIR MODEL_DIR (qshard's loader and
     forward on the first 256 tokens of eval.u32 vs the model's logits_eval_window0.f32); it
     prints the max abs difference and fails over 2e-3.
Exit 0 and "ok", or 1 listing the failures; 2 with one line when the model or fixtures are
missing.

Usage: deep_check.py --model DIR [--fixtures DIR] [--build DIR]
  (env: QS_BIN, default BUILD/qshard; QS_SHARED_DIR: its fixtures/ is the default --fixtures,
  else ../shared/fixtures next to the repository)"""
import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.dirname(HERE))


def parse_args():
    shared = os.environ.get("QS_SHARED_DIR") or os.path.join(REPO, "..", "shared")
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--fixtures", default=os.path.join(shared, "fixtures"))
    ap.add_argument("--build", default=os.path.join(REPO, "build"))
    ap.add_argument("--ranks", default="1,3")
    return ap.parse_args()


def need(path, what):
    if not os.path.exists(path):
        print(f"deep_check: {path}: {what} missing", file=sys.stderr)
        sys.exit(2)


args = parse_args()
os.environ.setdefault("QS_BIN", os.path.join(args.build, "qshard"))
os.environ.setdefault("OMPI_ALLOW_RUN_AS_ROOT", "1")
os.environ.setdefault("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
import qstest as Q  # noqa: E402
from qstest import check  # noqa: E402

TOL_PPL = 1e-4
TOL_LOGITS = 2e-3


def eval_float(model, fx, tmp, ranks):
    """{n: (ppl, nll_sum, windows)} of `qshard eval --weights float` at each rank count."""
    cfg = Q.write_config(os.path.join(tmp, "cfg.yaml"), model, f"{tmp}/run",
                         calib={"tokens": f"{fx}/tokens/calib.u32"},
                         eval={"tokens": f"{fx}/tokens/eval.u32", "seqlen": 256})
    out = {}
    for n in ranks:
        r = Q.qs(n, "eval", cfg, "--weights", "float", timeout=3600)
        if check(r.returncode == 0, f"eval n={n}: rc {r.returncode} {r.stderr.strip()}"):
            ev = Q.eval_json(os.path.join(tmp, "run"))
            out[n] = (ev["ppl"], ev["nll_sum"], ev["windows"])
    return out


def main(model, fx, build):
    need(os.path.join(model, "reference.json"), "deep model (make deep-model)")
    need(os.path.join(fx, "tokens", "eval.u32"), "fixtures (--fixtures DIR)")
    need(os.environ["QS_BIN"], "qshard build")
    ref = Q.read_json(os.path.join(model, "reference.json"))
    rp = ref["eval_ppl"]
    print(f"transformers fp32: ppl {rp:.6f} over {ref.get('windows', '?')} windows")
    with Q.tempdir("qs_deep_check_") as tmp:
        res = eval_float(model, fx, tmp, [int(x) for x in args.ranks.split(",")])
    for n, (ppl, nll, win) in sorted(res.items()):
        rel = abs(ppl - rp) / rp
        print(f"qshard {n} rank(s): ppl {ppl:.6f} over {win} windows, "
              f"relative difference {rel:.2e} (tolerance {TOL_PPL:g})")
        check(rel <= TOL_PPL, f"n={n}: ppl {ppl} vs transformers {rp}: relative {rel:.3g}")
        check(win == ref.get("windows", win), f"n={n}: {win} windows, reference {ref.get('windows')}")
    check(len(set(res.values())) <= 1, f"results differ between rank counts: {res}")
    tool = os.path.join(build, "tests", "test_calib_fixture")
    need(tool, "test_calib_fixture (build the tests)")
    shared = os.path.dirname(os.path.abspath(fx))
    r = Q.run([tool, shared, model], timeout=600)
    print(f"window-0 logits (test_calib_fixture): {r.stdout.strip()}")
    check(r.returncode == 0,
          f"test_calib_fixture: rc {r.returncode} (tolerance {TOL_LOGITS:g}) {r.stderr.strip()}")


main(os.path.abspath(args.model), os.path.abspath(args.fixtures), os.path.abspath(args.build))
Q.finish()
