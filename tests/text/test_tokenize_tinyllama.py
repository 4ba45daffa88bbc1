#!/usr/bin/env python3
"""test_tokenize_tinyllama.py: the shared fixtures' calibration tokens come back from text.

calib.u32 holds TinyStories paragraphs, each prefixed with BOS, tokenized with
tokenizer/tok512.model (SentencePiece BPE). The paragraphs are decoded with `sentencepiece`
into a .jsonl file, tok512.model is written as tokenizer.json (spm_to_hf.py, checked first:
the `tokenizers` library on it gives SentencePiece's own ids for every paragraph), and
`qshard tokenize` of that text must give calib.u32 byte for byte (BOS per document from
tokenizer_config.json's add_bos_token), at 1 and 2 ranks. Then tinyllama-a end to end: a run
calibrated from the text (calib.text + tokenizer) writes the same shards and GPTQ export,
byte for byte, as a run calibrated from calib.u32. Skips (77) without the shared fixtures
unless QS_REQUIRE_SHARED=1.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
try:
    import sentencepiece as spm
    from tokenizers import Tokenizer
except ImportError:
    print("skip: sentencepiece / tokenizers missing")
    sys.exit(77)
import spm_to_hf  # noqa: E402
from test_tokenize_ref import jsonl_line  # noqa: E402

QS_BIN = os.environ["QS_BIN"]
MPIEXEC = os.environ.get("QS_MPIEXEC", "mpiexec --oversubscribe").split()


def main():
    shared = os.environ.get("QS_SHARED_DIR", "")
    model = os.path.join(shared, "fixtures", "tokenizer", "tok512.model")
    calib = os.path.join(shared, "fixtures", "tokens", "calib.u32")
    if not (os.path.isfile(model) and os.path.isfile(calib)):
        if os.environ.get("QS_REQUIRE_SHARED") == "1":
            print("FAIL: shared fixtures missing")
            return 1
        print("skip: shared fixtures missing")
        return 77
    data = open(calib, "rb").read()
    ids = [int.from_bytes(data[i:i + 4], "little") for i in range(0, len(data), 4)]
    sp = spm.SentencePieceProcessor(model_file=model)
    bos = sp.bos_id()
    paragraphs, cur = [], None
    for t in ids:
        if t == bos:
            if cur is not None:
                paragraphs.append(cur)
            cur = []
        else:
            cur.append(t)
    paragraphs.append(cur)
    if ids[0] != bos:
        print("FAIL: calib.u32 does not start with BOS")
        return 1
    texts = [sp.decode(p) for p in paragraphs]
    tmp = tempfile.mkdtemp(prefix="qs-toktiny-")
    ok = True
    try:
        d = os.path.join(tmp, "tok512")
        os.makedirs(d)
        tj = spm_to_hf.convert(model)
        with open(os.path.join(d, "tokenizer.json"), "w", encoding="utf-8") as f:
            json.dump(tj, f, ensure_ascii=False)
        tok = Tokenizer.from_file(os.path.join(d, "tokenizer.json"))
        bad = [i for i, (p, x) in enumerate(zip(paragraphs, texts))
               if tok.encode(x, add_special_tokens=False).ids != p or sp.encode(x) != p]
        if bad:
            print(f"FAIL: {len(bad)} paragraphs do not round-trip (first: {texts[bad[0]][:80]!r})")
            return 1
        with open(os.path.join(d, "tokenizer_config.json"), "w") as f:
            json.dump({"add_bos_token": True, "add_eos_token": False, "bos_token": "<s>",
                       "eos_token": "</s>", "tokenizer_class": "LlamaTokenizer"}, f)
        src = os.path.join(tmp, "calib.jsonl")
        with open(src, "wb") as f:
            for x in texts:
                f.write(jsonl_line(x.encode()))
        for n in (1, 2):
            out = os.path.join(tmp, f"calib{n}.u32")
            cmd = ([*MPIEXEC, "-n", "2"] if n == 2 else []) + [QS_BIN, "tokenize", "--quiet",
                                                                "--tokenizer", d, src, out]
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode != 0:
                print(f"FAIL: {' '.join(cmd)}: exit {r.returncode}: {r.stderr}")
                return 1
            same = open(out, "rb").read() == data
            ok &= same
            print(f"{len(texts)} paragraphs, {sum(map(len, texts))} characters -> {len(ids)} ids at "
                  f"{n} rank(s): {'identical to calib.u32' if same else 'DIFFERENT from calib.u32'}")
        ok &= end_to_end(shared, tmp, d, src)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0 if ok else 1


def written(run):
    """SHA-256 of every written file but the manifest (which hashes the config)."""
    import hashlib
    out = {}
    for sub in ("out", "export"):
        for name in sorted(os.listdir(os.path.join(run, sub))):
            if name != "manifest.json":
                with open(os.path.join(run, sub, name), "rb") as f:
                    out[f"{sub}/{name}"] = hashlib.sha256(f.read()).hexdigest()
    return out


def end_to_end(shared, tmp, tokdir, text):
    """The pipeline from calib.text equals the pipeline from calib.u32."""
    fx = os.path.join(shared, "fixtures")
    base = (f"model: {fx}/tinyllama-a\n"
            "calib:\n  nsamples: 16\n  seqlen: 256\n  chunk_samples: 4\n  seed: 3\n"
            "quant:\n  bits: [4]\n  group_size: [128]\n  sym: true\n"
            "reconstruct:\n  inputs: quantized\nsearch:\n  objective: error\n")
    runs = {}
    for name, calib in (("tokens", f"  tokens: {fx}/tokens/calib.u32\n"),
                        ("text", f"  text: {text}\ntokenizer: {tokdir}\n")):
        cfg = os.path.join(tmp, name + ".yaml")
        rd = os.path.join(tmp, "run-" + name)
        with open(cfg, "w") as f:
            f.write(base.replace("calib:\n", "calib:\n" + calib.split("tokenizer:")[0]) +
                    (f"tokenizer: {tokdir}\n" if name == "text" else "") +
                    f"run_dir: {rd}\n")
        r = subprocess.run([*MPIEXEC, "-n", "2", QS_BIN, "run", cfg, "--quiet"],
                           capture_output=True, text=True, timeout=1800)
        if r.returncode != 0:
            print(f"FAIL: run from {name}: exit {r.returncode}: {r.stderr.strip()[:300]}")
            return False
        runs[name] = written(rd)
    same = runs["tokens"] == runs["text"] and len(runs["tokens"]) >= 3
    print(f"tinyllama-a calibrated from text vs calib.u32: {len(runs['text'])} written files "
          f"{'identical' if same else 'DIFFERENT'}")
    return same


if __name__ == "__main__":
    sys.exit(main())
