#!/usr/bin/python3
"""test_tokenize_errors.py: bad input to `qshard tokenize` is exit 2 with one stderr line
`qshard: error: <file>[:line]: <cause>` and no output file, at 1 rank and (where documents
are spread) at 2 ranks. A tiny hand-written BPE tokenizer.json is the good tokenizer.
Cases: invalid JSON (file:line), an unsupported pre-tokenizer / normalizer / model type, a
merge of unknown tokens, a missing tokenizer.json (model directory or path), an empty text
file, a text file of blank lines only, a jsonl line without the field (file:line), a jsonl
line that is not JSON (file:line), a field that is not a string, an unknown input type, a
directory without text files, a bad output type, and a tokenizer_config.json asking for a
BOS it does not name. Then the same through `qshard run` at 2 ranks with calib.text /
eval.text (no tokenizer in the model directory, a jsonl line without the field, calib.tokens
and calib.text both set, an eval text shorter than one window): exit 2, one line, and no
stage output in the run directory. Usage: test_tokenize_errors.py (env: QS_BIN, QS_MPIEXEC)"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

QS = os.environ["QS_BIN"]
MPIEXEC = os.environ.get("QS_MPIEXEC", "mpiexec --oversubscribe").split()
failures = []

GOOD = {
    "version": "1.0", "added_tokens": [
        {"id": 7, "content": "<s>", "single_word": False, "lstrip": False, "rstrip": False,
         "normalized": False, "special": True}],
    "normalizer": None,
    "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "use_regex": True},
    "post_processor": None, "decoder": None,
    "model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2, "Ġ": 3, "Ġa": 4, "c": 5, "x": 6},
              "merges": ["a b", "Ġ a"]},
}


def write(path, data, mode="w"):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, mode) as f:
        f.write(data)
    return path


def tokdir(tmp, name, doc):
    d = os.path.join(tmp, name)
    write(os.path.join(d, "tokenizer.json"), doc if isinstance(doc, str) else json.dumps(doc, indent=1))
    return d


def expect_error(name, args, substr, nranks=1):
    out = args[-1]
    cmd = ([*MPIEXEC, "-n", str(nranks)] if nranks > 1 else []) + [QS, "tokenize", *args]
    p = subprocess.run(cmd, capture_output=True, text=True, errors="replace")
    lines = [l for l in p.stderr.splitlines() if l.strip()]
    ours = [l for l in lines if l.startswith("qshard:")]
    problems = []
    if p.returncode != 2:
        problems.append(f"exit {p.returncode}, want 2")
    if len(ours) != 1 or (nranks == 1 and len(lines) != 1):
        problems.append(f"stderr has {len(lines)} lines ({len(ours)} of qshard)")
    if not ours or not ours[0].startswith("qshard: error: ") or substr not in ours[0]:
        problems.append(f"want a line with {substr!r}")
    if os.path.exists(out):
        problems.append("the output file exists")
    leftovers = [f for f in os.listdir(os.path.dirname(out)) if ".tmp." in f]
    if leftovers:
        problems.append(f"temp files left: {leftovers}")
    if problems:
        failures.append(name)
        print(f"FAIL {name} (ranks {nranks}): {'; '.join(problems)}; stderr: {p.stderr.strip()[:300]}")
    else:
        print(f"ok   {name} (ranks {nranks}): {ours[0]}")


def expect_run_error(name, cfg, run_dir, substr, nranks=2):
    """`qshard run` refuses a bad text source before any stage writes: exit 2, one line,
    and the run directory holds no stage output (at most its lock file)."""
    cmd = [*MPIEXEC, "-n", str(nranks), QS, "run", cfg]
    p = subprocess.run(cmd, capture_output=True, text=True, errors="replace")
    ours = [l for l in p.stderr.splitlines() if l.startswith("qshard:")]
    problems = []
    if p.returncode != 2:
        problems.append(f"exit {p.returncode}, want 2")
    if len(ours) != 1 or not ours[0].startswith("qshard: error: ") or substr not in ours[0]:
        problems.append(f"want one line with {substr!r}")
    left = sorted(set(os.listdir(run_dir)) - {"lock"}) if os.path.isdir(run_dir) else []
    if left:
        problems.append(f"the run directory holds {left}")
    if problems:
        failures.append(name)
        print(f"FAIL {name}: {'; '.join(problems)}; stderr: {p.stderr.strip()[:300]}")
    else:
        print(f"ok   {name} (ranks {nranks}): {ours[0]}")


def run_errors(tmp, good, text, nofield):
    """calib.text / eval.text in a run: the same one-line errors through `qshard run`."""
    model = os.path.join(tmp, "model")
    subprocess.run([QS, "synth-model", "--arch", "llama", "--layers", "2", "--hidden", "64",
                    "--intermediate", "128", "--heads", "2", "--kv-heads", "1", "--vocab", "64",
                    model], check=True, capture_output=True)

    def cfg(name, calib, evals=None, tokenizer=None):
        rd = os.path.join(tmp, "runs", name)
        lines = [f"model: {model}", f"run_dir: {rd}"]
        if tokenizer:
            lines.append(f"tokenizer: {tokenizer}")
        lines += ["calib:", "  nsamples: 2", "  seqlen: 4"] + [f"  {k}: {v}" for k, v in calib.items()]
        lines += ["quant:", "  group_size: [32]"]
        if evals:
            lines += ["eval:", "  seqlen: 64"] + [f"  {k}: {v}" for k, v in evals.items()]
        path = write(os.path.join(tmp, "runs", name + ".yaml"), "\n".join(lines) + "\n")
        return path, rd

    c, rd = cfg("notok", {"text": text})
    expect_run_error("calib.text without a tokenizer", c, rd,
                     f"{model}/tokenizer.json: cannot open: No such file or directory")
    c, rd = cfg("nofield", {"text": nofield}, tokenizer=good)
    expect_run_error("calib.text jsonl line without the field", c, rd,
                     "nofield.jsonl:3: no field 'text'")
    c, rd = cfg("both", {"text": text, "tokens": text}, tokenizer=good)
    expect_run_error("calib.tokens and calib.text both set", c, rd,
                     "calib.tokens and calib.text are both set")
    c, rd = cfg("shorteval", {"text": text}, evals={"text": text}, tokenizer=good)
    expect_run_error("eval.text shorter than one window", c, rd,
                     "ok.txt: 5 tokens, shorter than one window of eval.seqlen 64")


def main():
    tmp = tempfile.mkdtemp(prefix="qs-tokerr-")
    good = tokdir(tmp, "good", GOOD)
    text = write(os.path.join(tmp, "in", "ok.txt"), "ab ab\n\nabc\n")
    out = os.path.join(tmp, "out", "t.u32")
    os.makedirs(os.path.dirname(out), exist_ok=True)

    # the good case works (so the failures below are about their one defect)
    p = subprocess.run([QS, "tokenize", "--quiet", "--tokenizer", good, text, out], capture_output=True)
    data = open(out, "rb").read() if p.returncode == 0 else b""
    ids = [int.from_bytes(data[i:i + 4], "little") for i in range(0, len(data), 4)]
    if p.returncode != 0 or ids != [2, 3, 2, 2, 5]:  # "ab", " ab" (Ġ, ab), "abc" (ab, c)
        failures.append("good")
        print(f"FAIL good: exit {p.returncode}, ids {ids}: {p.stderr.decode()}")
    if os.path.exists(out):
        os.remove(out)

    bad_json = json.dumps(GOOD, indent=1).replace('"merges": [', '"merges": [,', 1)
    line = bad_json[:bad_json.index('"merges": [,')].count("\n") + 1
    d = tokdir(tmp, "badjson", bad_json)
    expect_error("invalid JSON", ["--tokenizer", d, text, out], f"tokenizer.json:{line}: invalid JSON")
    d = tokdir(tmp, "whitespace", dict(GOOD, pre_tokenizer={"type": "Whitespace"}))
    expect_error("unsupported pre-tokenizer", ["--tokenizer", d, text, out],
                 "tokenizer.json: pre_tokenizer type 'Whitespace' is not supported")
    seq = {"type": "Sequence", "pretokenizers": [{"type": "ByteLevel"}, {"type": "Digits"}]}
    d = tokdir(tmp, "digits", dict(GOOD, pre_tokenizer=seq))
    expect_error("unsupported pre-tokenizer in a Sequence", ["--tokenizer", d, text, out],
                 "pre_tokenizer type 'Digits' is not supported")
    d = tokdir(tmp, "nfkc", dict(GOOD, normalizer={"type": "NFKC"}))
    expect_error("unsupported normalizer", ["--tokenizer", d, text, out],
                 "tokenizer.json: normalizer type 'NFKC' is not supported")
    d = tokdir(tmp, "unigram", dict(GOOD, model={"type": "Unigram", "vocab": [["a", 0.0]]}))
    expect_error("unsupported model", ["--tokenizer", d, text, out],
                 "tokenizer.json: model type 'Unigram' is not supported")
    m = dict(GOOD["model"], merges=["a b", "q b"])
    d = tokdir(tmp, "badmerge", dict(GOOD, model=m))
    expect_error("merge of an unknown token", ["--tokenizer", d, text, out],
                 "tokenizer.json: merge 1: the left part of 'q' + 'b' is not in the vocabulary")
    empty_dir = os.path.join(tmp, "model-without-tokenizer")
    os.makedirs(empty_dir)
    expect_error("missing tokenizer.json (model directory)", ["--tokenizer", empty_dir, text, out],
                 f"{empty_dir}/tokenizer.json: cannot open: No such file or directory")
    expect_error("missing tokenizer.json (path)", ["--tokenizer", os.path.join(tmp, "nope.json"), text, out],
                 "nope.json: cannot open: No such file or directory")
    d = tokdir(tmp, "cfg", GOOD)
    write(os.path.join(d, "tokenizer_config.json"), json.dumps({"add_bos_token": True}))
    expect_error("add_bos_token without bos_token", ["--tokenizer", d, text, out],
                 "tokenizer_config.json: add_bos_token is true but bos_token is not set")

    empty = write(os.path.join(tmp, "in", "empty.txt"), "")
    expect_error("empty text file", ["--tokenizer", good, empty, out],
                 "empty.txt: no text (the file is empty or holds only blank lines)")
    blank = write(os.path.join(tmp, "in", "blank.txt"), "\n  \n\t\r\n\n")
    expect_error("text file of blank lines", ["--tokenizer", good, text, blank, out],
                 "blank.txt: no text (the file is empty or holds only blank lines)")
    nofield = write(os.path.join(tmp, "in", "nofield.jsonl"),
                    '{"text": "ab"}\n\n{"body": "ab"}\n{"text": "a"}\n')
    expect_error("jsonl line without the field", ["--tokenizer", good, nofield, out],
                 "nofield.jsonl:3: no field 'text'")
    notjson = write(os.path.join(tmp, "in", "notjson.jsonl"), '{"text": "ab"}\n{"text": "ab"\n')
    expect_error("jsonl line that is not JSON", ["--tokenizer", good, notjson, out],
                 "notjson.jsonl:2: invalid JSON")
    nostr = write(os.path.join(tmp, "in", "nostr.jsonl"), '{"text": ["ab"]}\n')
    expect_error("field that is not a string", ["--tokenizer", good, nostr, out],
                 "nostr.jsonl:1: field 'text' is not a string")
    csv = write(os.path.join(tmp, "in", "data.csv"), "a,b\n")
    expect_error("unknown input type", ["--tokenizer", good, csv, out],
                 "data.csv: unknown text file type (expected .txt, .jsonl or a directory of them)")
    expect_error("missing input", ["--tokenizer", good, os.path.join(tmp, "in", "gone.txt"), out],
                 "gone.txt: cannot open: No such file or directory")
    nodir = os.path.join(tmp, "in", "nothing")
    write(os.path.join(nodir, "README.md"), "no text here")
    expect_error("directory without text files", ["--tokenizer", good, nodir, out],
                 "nothing: no .txt or .jsonl files in the directory")
    expect_error("bad output type", ["--tokenizer", good, text, os.path.join(tmp, "out", "t.bin")],
                 "t.bin: unknown token file type (expected .u32 or .u16)")

    # 2 ranks: the bad line is in a block of rank 1 (tiny blocks): every rank stops, one line
    many = ['{"text": "ab ab ab ab"}'] * 40 + ['{"txt": "ab"}'] + ['{"text": "ab"}'] * 40
    late = write(os.path.join(tmp, "in", "late.jsonl"), "\n".join(many) + "\n")
    os.environ["QS_TEST_TEXT_BLOCK_BYTES"] = "64"
    expect_error("jsonl line without the field, 2 ranks", ["--tokenizer", good, late, out],
                 "late.jsonl:41: no field 'text'", nranks=2)
    expect_error("unsupported pre-tokenizer, 2 ranks", ["--tokenizer", os.path.join(tmp, "whitespace"), text, out],
                 "pre_tokenizer type 'Whitespace' is not supported", nranks=2)
    del os.environ["QS_TEST_TEXT_BLOCK_BYTES"]

    run_errors(tmp, good, text, nofield)

    shutil.rmtree(tmp, ignore_errors=True)
    print(f"{len(failures)} failed" if failures else "all bad inputs refused as expected")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
