#!/usr/bin/env python3
"""bench_tokenize.py: tokenizer throughput, qshard vs the `tokenizers` package (Rust), one
thread each, the same documents, side by side in one run (a benchmark, not a test).

Usage: .venv/bin/python tests/bench/bench_tokenize.py BUILD_DIR TOKENIZER_DIR... [--mb N]
For each tokenizer and two corpora (`mixed`: tests/text/mixed_corpus.py, seed 1; `prose`:
English prose and code snippets only), N MB (default 4) of documents are written as jsonl;
qshard's time is `qshard tokenize` on one rank without loading (its own timer: read the
jsonl, encode, write the .u32); the library's is Tokenizer.encode per document and
encode_batch, with RAYON_NUM_THREADS=1 (best of 3 each). The ids are checked equal first.
A TOKENIZER_DIR holding a tiktoken file instead of tokenizer.json is converted
(tests/text/tiktoken_to_hf.py). Prints MB/s (10^6 bytes of UTF-8 text per second).
"""
import os
import random
import re
import subprocess
import sys
import tempfile
import time

os.environ["RAYON_NUM_THREADS"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "text"))
import json  # noqa: E402

import mixed_corpus  # noqa: E402
import test_tokenize_ref as ref  # noqa: E402
import tiktoken_to_hf  # noqa: E402
from tokenizers import Tokenizer  # noqa: E402


def prose_docs(nbytes):
    rng = random.Random(2)
    docs, total = [], 0
    while total < nbytes:
        parts = [rng.choice(mixed_corpus.PROSE + mixed_corpus.CODE) for _ in range(rng.randint(2, 12))]
        d = " ".join(parts).encode()
        docs.append(d)
        total += len(d)
    return docs


def load(d, tmp):
    path = os.path.join(d, "tokenizer.json")
    if os.path.isfile(path):
        tj = json.load(open(path, encoding="utf-8"))
    else:
        src = ref.tiktoken_file(d)
        tj = tiktoken_to_hf.convert(src, "qwen2" if src.endswith("qwen.tiktoken") else "llama3")
    return ref.stage(tmp, os.path.basename(os.path.normpath(d)), tj)


def main():
    args = sys.argv[1:]
    mb = 4.0
    if "--mb" in args:
        i = args.index("--mb")
        mb = float(args[i + 1])
        del args[i:i + 2]
    build, dirs = args[0], args[1:]
    qs = os.path.join(build, "qshard")
    tmp = tempfile.mkdtemp(prefix="qs-tokbench-")
    rows = []
    for d in dirs:
        staged = load(d, tmp)
        tok = Tokenizer.from_file(os.path.join(staged, "tokenizer.json"))
        tok.no_truncation()
        tok.no_padding()
        for cname, docs in (("mixed", mixed_corpus.make_docs(1, int(mb * 1e6))),
                            ("prose", prose_docs(int(mb * 1e6)))):
            nbytes = sum(len(x) for x in docs)
            src = os.path.join(tmp, "bench.jsonl")
            with open(src, "wb") as f:
                for doc in docs:
                    f.write(ref.jsonl_line(doc))
            out = os.path.join(tmp, "bench.u32")
            texts = [x.decode("utf-8", "replace") for x in docs]
            want, _ = ref.reference(tok, docs)
            qs_best = 0.0
            for _ in range(3):
                r = subprocess.run([qs, "tokenize", "--tokenizer", staged, src, out],
                                   capture_output=True, text=True, check=True)
                m = re.search(r"([0-9.]+) s, ([0-9.]+) MB/s", r.stdout)
                qs_best = max(qs_best, nbytes / float(m.group(1)) / 1e6)
            if ref.read_u32(out) != want:
                print(f"{d} {cname}: ids DIFFER from the library; not timed")
                continue
            enc_best = batch_best = 0.0
            for _ in range(3):
                t = time.perf_counter()
                for x in texts:
                    tok.encode(x)
                enc_best = max(enc_best, nbytes / (time.perf_counter() - t) / 1e6)
                t = time.perf_counter()
                tok.encode_batch(texts)
                batch_best = max(batch_best, nbytes / (time.perf_counter() - t) / 1e6)
            rows.append((os.path.basename(os.path.normpath(d)), cname, nbytes, len(want), qs_best,
                         enc_best, batch_best))
            print(f"{rows[-1][0]:>18} {cname:>5}: qshard {qs_best:6.2f} MB/s, tokenizers encode "
                  f"{enc_best:6.2f} MB/s, encode_batch {batch_best:6.2f} MB/s", flush=True)
    print()
    print("| tokenizer | text | MB | ids | qshard MB/s | tokenizers encode MB/s | encode_batch MB/s | ratio |")
    print("|---|---|---|---|---|---|---|---|")
    for n, c, b, k, q, e, bb in rows:
        print(f"| {n} | {c} | {b / 1e6:.1f} | {k} | {q:.2f} | {e:.2f} | {bb:.2f} | {q / max(e, bb):.1f}x |")
    import shutil
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
