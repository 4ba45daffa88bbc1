#!/usr/bin/env python3
"""gguf_check.py: qshard's GGUF blocks checked with the `gguf` package (llama.cpp's own Python
reader, tests/requirements.txt), an implementation of the layouts independent of qshard's.

Runs the C helper test_gguf_dump into a temp dir, then for every block type T:
- the block sizes qshard uses equal gguf's GGML_QUANT_SIZES[T];
- for the bytes of llama.cpp-style RTN (with and without importance), of GPTQ on the grid and
  of random bytes: gguf.quants.dequantize(bytes, T) equals qshard's floats bit for bit;
- where gguf.quants.quantize implements T (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 in gguf 0.19 -- its
  numpy port of ggml's quantize_row_*_ref), qshard's RTN bytes equal it on the same input;
  for the other types the test records that quantize raises NotImplementedError (so a gguf
  version that adds them makes this test say so).

Usage: gguf_check.py PATH/TO/test_gguf_dump     (exit 0 = pass, 1 = fail)
"""
import os
import subprocess
import sys
import tempfile

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType
from gguf import quants

TYPES = ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K"]
QUANTIZE = {"Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0"}  # gguf.quants.quantize implements these


def main():
    failures = []

    def check(cond, msg):
        if not cond:
            failures.append(msg)
            print("FAIL:", msg, file=sys.stderr)

    with tempfile.TemporaryDirectory(prefix="qs_gguf_") as tmp:
        subprocess.run([sys.argv[1], tmp], check=True)
        rows, n = (int(v) for v in open(os.path.join(tmp, "meta.txt")).read().split())
        W = np.fromfile(os.path.join(tmp, "W.f32"), dtype=np.float32).reshape(rows, n)
        sizes = {}
        for line in open(os.path.join(tmp, "types.txt")):
            name, elems, nbytes = line.split()
            sizes[name] = (int(elems), int(nbytes))
        check(sorted(sizes) == sorted(TYPES), f"types written: {sorted(sizes)}")
        for name in TYPES:
            qt = GGMLQuantizationType[name]
            check(tuple(GGML_QUANT_SIZES[qt]) == sizes.get(name),
                  f"{name}: block (elems, bytes) qshard {sizes.get(name)} gguf {GGML_QUANT_SIZES[qt]}")
            for v in ("ref", "imp", "gptq", "rand"):
                raw = np.fromfile(os.path.join(tmp, f"{name}.{v}.bin"), dtype=np.uint8).reshape(rows, -1)
                ours = np.fromfile(os.path.join(tmp, f"{name}.{v}.f32"), dtype=np.float32).reshape(rows, n)
                theirs = quants.dequantize(raw, qt).astype(np.float32, copy=False)
                same = theirs.shape == ours.shape and np.array_equal(theirs.view(np.uint32), ours.view(np.uint32))
                if not same and theirs.shape == ours.shape:
                    bad = np.argwhere(theirs.view(np.uint32) != ours.view(np.uint32))
                    r, j = bad[0]
                    detail = f"{len(bad)} floats differ, first at ({r}, {j}): gguf {theirs[r, j]!r} qshard {ours[r, j]!r}"
                else:
                    detail = f"shapes {theirs.shape} {ours.shape}"
                check(same, f"{name}.{v}: gguf.quants.dequantize differs from qshard ({detail})")
            ref = np.fromfile(os.path.join(tmp, f"{name}.ref.bin"), dtype=np.uint8).reshape(rows, -1)
            if name in QUANTIZE:
                q = quants.quantize(W, qt)
                same = q.shape == ref.shape and np.array_equal(q, ref)
                nb = int(np.count_nonzero(q != ref)) if q.shape == ref.shape else -1
                check(same, f"{name}: qshard RTN bytes differ from gguf.quants.quantize ({nb} bytes)")
            else:
                try:
                    quants.quantize(W, qt)
                    check(False, f"{name}: gguf.quants.quantize now implements it; compare it here")
                except NotImplementedError:
                    pass
            print(f"{name}: dequantize bit-exact (ref, imp, gptq, random bytes)"
                  + ("; RTN bytes == gguf.quants.quantize" if name in QUANTIZE else ""))
    if failures:
        print(f"{len(failures)} failure(s)", file=sys.stderr)
        return 1
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
