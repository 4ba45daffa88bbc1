#!/usr/bin/python3
"""test_eval_fixture.py: `qshard eval` on the real fixture (tinyllama-a, bf16 weights, fp32
compute) over the whole of tokens/eval.u32 with 256-token windows at 1, 2 and 3 ranks: the
perplexity is within 0.05% of transformers' 4.58331 and bit-identical at every rank count
(eval.json ppl and nll_sum). `--weights` other than float is exit 2 with one error line.
Skips (77) without ../shared unless QS_REQUIRE_SHARED=1.
Usage: test_eval_fixture.py  (env: QS_BIN, QS_MPIEXEC, QS_SHARED_DIR)"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import qstest as Q  # noqa: E402
from qstest import check  # noqa: E402

REF = 4.58331


def main(fx, tmp):
    cfg = Q.write_config(os.path.join(tmp, "cfg.yaml"), f"{fx}/tinyllama-a", f"{tmp}/run",
                         calib={"tokens": f"{fx}/tokens/calib.u32"},
                         eval={"tokens": f"{fx}/tokens/eval.u32", "seqlen": 256})
    results = {}
    for n in (1, 2, 3):
        r = Q.qs(n, "eval", cfg, "--weights", "float", timeout=900)
        if not check(r.returncode == 0, f"eval n={n}: rc {r.returncode} {r.stderr}"):
            continue
        ev = Q.eval_json(os.path.join(tmp, "run"))
        results[n] = (ev["ppl"], ev["nll_sum"], ev["tokens"], ev["windows"])
        print(f"{n} rank(s): ppl {ev['ppl']:.6f} over {ev['windows']} windows")
        check(abs(ev["ppl"] - REF) <= 5e-4 * REF, f"n={n}: ppl {ev['ppl']} not within 0.05% of {REF}")
        ntok = os.path.getsize(os.path.join(fx, "tokens", "eval.u32")) // 4
        check(ev["windows"] == ntok // 256 and ev["tokens"] == ev["windows"] * 255,
              f"n={n}: windows/tokens {ev['windows']}/{ev['tokens']}")
    check(len(set(results.values())) == 1, f"results differ between rank counts: {results}")
    r = Q.qs(1, "eval", cfg, "--weights", "int4", timeout=300, quiet=False)
    lines = [x for x in r.stderr.strip().splitlines() if x.strip()]
    check(Q.one_error(r, "--weights") and lines[0].startswith("qshard: error: "),
          f"--weights int4: rc {r.returncode}, stderr {r.stderr!r}")


fixtures = Q.need_shared()
with Q.tempdir("qs_eval_") as d:
    main(fixtures, d)
Q.finish()
