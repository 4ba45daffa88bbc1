#!/usr/bin/env python3
"""test_tokenize_ref.py: `qshard tokenize` gives the token ids of Hugging Face `tokenizers`
(Tokenizer.encode(text, add_special_tokens=True) per document, documents concatenated) on
>= 1 MB of mixed text (tests/text/mixed_corpus.py: prose, code, whitespace runs, CJK, emoji,
decomposed accents, added-token strings, random code points, ill-formed UTF-8) for every
tokenizer.json in the fixture directory, and for Llama-3-style, Qwen2-style and split-behaviour
(every Split behaviour, with and without invert) files built around the GPT-2 vocabulary there
(restyle.py). Ill-formed UTF-8: the reference encodes bytes.decode("utf-8", errors="replace"),
the only way a Python str can carry those bytes.

Then: the same file at 1, 2 and 3 ranks (small blocks, so every rank works); .txt input
(blank-line documents, CRLF, BOM, whitespace-only separators), a directory input, --text-field,
empty jsonl documents skipped, and tokenizer_config.json's add_bos_token / add_eos_token /
eos_token separator.

Fixtures: tests/data/tokenizers (committed: phi-2's GPT-2 byte-level BPE, phi-3-mini's
Llama-2/TinyLlama SentencePiece BPE, whisper-large-v3's template and added tokens, each with
its licence), plus $QS_TOKENIZER_DIR or $QS_SHARED_DIR/fixtures/tokenizers when present: one
directory per tokenizer holding tokenizer.json, or a tiktoken ranks file (Meta's
tokenizer.model of Llama-3, Qwen's qwen.tiktoken, whose licences keep them out of this
repository) converted here to the published tokenizer.json layout (tiktoken_to_hf.py);
tests/data/tokenizers/README.md lists them. QS_REQUIRE_TOKFIXTURES=1 (.ci/run sets it when
shared/fixtures/tokenizers exists) makes the extra directory required.
"""
import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import mixed_corpus  # noqa: E402
import restyle  # noqa: E402
import tiktoken_to_hf  # noqa: E402

try:
    from tokenizers import Tokenizer
except ImportError:
    print("FAIL: the tokenizers package is missing (tests/requirements.txt)")
    sys.exit(1)

QS_BIN = os.environ.get("QS_BIN", "")
MPIEXEC = os.environ.get("QS_MPIEXEC", "mpiexec --oversubscribe").split()
NBYTES = int(os.environ.get("QS_TOKENIZE_TEST_BYTES", str(1100 * 1000)))


COMMITTED = os.path.join(HERE, "..", "data", "tokenizers")


def fixture_dirs():
    """{name: directory} of every tokenizer to compare: the committed ones
    (tests/data/tokenizers: the permissively licensed files), then those of $QS_TOKENIZER_DIR
    or $QS_SHARED_DIR/fixtures/tokenizers when present (Llama-3's and Qwen's own files, whose
    licences keep them out of this repository); a name already committed is not repeated."""
    out = {}
    extra = os.environ.get("QS_TOKENIZER_DIR") or os.path.join(
        os.environ.get("QS_SHARED_DIR", ""), "fixtures", "tokenizers")
    if os.environ.get("QS_REQUIRE_TOKFIXTURES") == "1" and not os.path.isdir(extra):
        print(f"FAIL: no tokenizer fixtures at {extra} (QS_REQUIRE_TOKFIXTURES=1)")
        sys.exit(1)
    for fx in (COMMITTED, extra):
        if not os.path.isdir(fx):
            continue
        for n in sorted(os.listdir(fx)):
            d = os.path.join(fx, n)
            if n not in out and (os.path.isfile(os.path.join(d, "tokenizer.json"))
                                 or tiktoken_file(d)):
                out[n] = d
    return out


def jsonl_line(doc, field="text"):
    """One JSON line whose string field holds the bytes of doc as they are (ill-formed UTF-8
    stays raw inside the string; quotes, backslashes and control bytes are escaped)."""
    out = bytearray(b'{"' + field.encode() + b'": "')
    for b in doc:
        if b == 0x22:
            out += b'\\"'
        elif b == 0x5C:
            out += b"\\\\"
        elif b < 0x20 or b == 0x7F:
            out += b"\\u%04x" % b
        else:
            out.append(b)
    out += b'"}\n'
    return bytes(out)


def run(args, env=None, expect=0):
    r = subprocess.run(args, capture_output=True, env=env)
    if r.returncode != expect:
        print("FAIL:", " ".join(args), "exit", r.returncode, r.stderr.decode(errors="replace"))
        sys.exit(1)
    return r


def read_u32(path):
    data = open(path, "rb").read()
    return [int.from_bytes(data[i:i + 4], "little") for i in range(0, len(data), 4)]


def reference(tok, docs, sep=None):
    ids, starts = [], []
    for d in docs:
        if not d:
            starts.append(len(ids))
            continue
        starts.append(len(ids))
        ids += tok.encode(d.decode("utf-8", "replace"), add_special_tokens=True).ids
        if sep is not None:
            ids.append(sep)
    return ids, starts


def compare(name, tok, got, ref, starts, docs):
    if got == ref:
        return True
    k = next((i for i in range(min(len(got), len(ref))) if got[i] != ref[i]), min(len(got), len(ref)))
    di = max(i for i, s in enumerate(starts) if s <= k) if starts else -1
    print(f"FAIL {name}: {len(got)} ids vs {len(ref)} reference; first difference at id {k} "
          f"(document {di}: {docs[di][:120]!r})")
    print("  qshard   ", got[max(0, k - 3):k + 5], [tok.id_to_token(x) for x in got[max(0, k - 3):k + 5]])
    print("  reference", ref[max(0, k - 3):k + 5], [tok.id_to_token(x) for x in ref[max(0, k - 3):k + 5]])
    return False


def tiktoken_file(d):
    """The tiktoken ranks file ("base64 rank" lines) in fixture directory d: qwen.tiktoken, or a
    tokenizer.model that is one (not a SentencePiece model); None."""
    for name in ("qwen.tiktoken", "tokenizer.model"):
        path = os.path.join(d, name)
        try:
            with open(path, "rb") as f:
                first = f.readline().split()
            if len(first) == 2 and first[1].isdigit() and base64.b64decode(first[0], validate=True):
                return path
        except (OSError, ValueError):
            pass
    return None


def family(tj):
    """llama3 / qwen2 (byte-level BPE with their split regex), sentencepiece-bpe (BPE with
    byte_fallback), gpt2 (ByteLevel with its own regex), or other."""
    pre = json.dumps(tj.get("pre_tokenizer"))
    if "\\\\p{N}{1,3}" in pre and '"ByteLevel"' in pre:
        return "llama3"
    if "\\\\p{N}|" in pre and '"ByteLevel"' in pre:
        return "qwen2"
    if tj["model"].get("byte_fallback"):
        return "sentencepiece-bpe"
    if '"ByteLevel"' in pre:
        return "gpt2"
    return "other"


def stage(tmp, name, tj):
    """A directory holding only tokenizer.json (the library reads nothing else)."""
    d = os.path.join(tmp, "tok-" + name)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(tj, f, ensure_ascii=False)
    return d


def main():
    dirs = fixture_dirs()
    names = sorted(dirs)
    tmp = tempfile.mkdtemp(prefix="qs-tokref-")
    ok = True
    try:
        cases = []
        restyled_gpt2 = restyled_spm = False
        for n in names:
            path = os.path.join(dirs[n], "tokenizer.json")
            if os.path.isfile(path):
                tj = json.load(open(path, encoding="utf-8"))
            else:  # a tiktoken ranks file (Llama-3's tokenizer.model, qwen.tiktoken): converted here
                src = tiktoken_file(dirs[n])
                tj = tiktoken_to_hf.convert(src, "qwen2" if src.endswith("qwen.tiktoken") else "llama3")
                n += ":converted"

            try:
                Tokenizer.from_str(json.dumps(tj))
            except Exception as e:  # the library refuses it too: not a reference
                print(f"note: {n}: the tokenizers library cannot load it ({str(e)[:80]}); skipped")
                continue
            cases.append((n, tj))
            pre = json.dumps(tj.get("pre_tokenizer"))
            if '"ByteLevel"' in pre and tj["model"].get("type") == "BPE" and "Split" not in pre \
                    and len(tj["model"]["vocab"]) >= 50000 and not restyled_gpt2:
                cases.append((n + ":llama3-style", restyle.llama3_style(tj)))
                cases.append((n + ":qwen2-style", restyle.qwen2_style(tj)))
                cases.append((n + ":split-behaviors", restyle.split_behaviors(tj)))
                restyled_gpt2 = True
            if tj["model"].get("byte_fallback") and json.dumps(tj.get("normalizer")).count("Prepend") \
                    and not restyled_spm:
                cases.append((n + ":metaspace-first", restyle.metaspace_style(tj, "first", False)))
                cases.append((n + ":metaspace-always-split", restyle.metaspace_style(tj, "always", True)))
                cases.append((n + ":added-flags", restyle.added_flags(tj)))
                restyled_spm = True
        if not cases:
            print(f"FAIL: no usable tokenizer.json in {sorted(dirs.values())}")
            return 1
        families = set()
        for seed, (name, tj) in enumerate(cases):
            docs = mixed_corpus.make_docs(1000 + seed, NBYTES)
            d = stage(tmp, name.replace(":", "-"), tj)
            src = os.path.join(tmp, "docs.jsonl")
            with open(src, "wb") as f:
                for doc in docs:
                    f.write(jsonl_line(doc))
            out = os.path.join(tmp, "out.u32")
            r = subprocess.run([QS_BIN, "tokenize", "--quiet", "--tokenizer", d, src, out],
                               capture_output=True)
            if r.returncode == 2 and b"is not supported" in r.stderr:
                print(f"note: {name}: refused by qshard: {r.stderr.decode().strip()}")
                continue
            if r.returncode != 0:
                print(f"FAIL {name}: exit {r.returncode}: {r.stderr.decode(errors='replace')}")
                ok = False
                continue
            families.add(family(tj))
            tok = Tokenizer.from_file(os.path.join(d, "tokenizer.json"))
            tok.no_truncation()
            tok.no_padding()
            ref, starts = reference(tok, docs)
            good = compare(name, tok, read_u32(out), ref, starts, docs)
            ok &= good
            print(f"{name}: {len(docs)} documents, {sum(map(len, docs))} bytes, {len(ref)} ids: "
                  f"{'identical' if good else 'DIFFERENT'}")
        print("families compared:", ", ".join(sorted(families)))
        for want in ("llama3", "qwen2", "sentencepiece-bpe"):
            if want not in families:
                print(f"FAIL: no {want} tokenizer was compared")
                ok = False

        # rank counts: the same bytes at 1, 2, 3 ranks (64 KiB blocks)
        name, tj = cases[0]
        d = stage(tmp, "mpi", tj)
        docs = mixed_corpus.make_docs(7, 400 * 1000)
        src = os.path.join(tmp, "mpi.jsonl")
        with open(src, "wb") as f:
            for doc in docs:
                f.write(jsonl_line(doc))
        env = dict(os.environ, QS_TEST_TEXT_BLOCK_BYTES="65536")
        outs = []
        for n in (1, 2, 3):
            out = os.path.join(tmp, f"mpi{n}.u32")
            run(MPIEXEC + ["-n", str(n), QS_BIN, "tokenize", "--quiet", "--tokenizer", d, src, out], env=env)
            outs.append(open(out, "rb").read())
        if not (outs[0] == outs[1] == outs[2]):
            print("FAIL: token files differ between 1, 2 and 3 ranks")
            ok = False
        tok = Tokenizer.from_file(os.path.join(d, "tokenizer.json"))
        ref, starts = reference(tok, docs)
        ok &= compare("mpi", tok, read_u32(os.path.join(tmp, "mpi3.u32")), ref, starts, docs)
        print(f"ranks 1, 2, 3: {len(outs[0])} bytes each, {'identical' if outs[0] == outs[1] == outs[2] else 'DIFFERENT'}")

        # .txt documents, a directory, --text-field, empty jsonl documents
        txt = os.path.join(tmp, "in", "b.txt")
        os.makedirs(os.path.join(tmp, "in", "sub"), exist_ok=True)
        with open(txt, "wb") as f:
            f.write(b"\xef\xbb\xbfFirst doc, line one.\r\nline two\r\n \t\r\n\n\nSecond  doc\n"
                    b"\n<s> third \xff doc\n  indented line\n\n\n")
        with open(os.path.join(tmp, "in", "a.jsonl"), "wb") as f:
            f.write(jsonl_line(b"from jsonl", "body") + b"\n" + jsonl_line(b"", "body") +
                    b'{"body": "x\\ty", "text": 1}\n')
        with open(os.path.join(tmp, "in", "sub", "c.txt"), "wb") as f:
            f.write(b"nested file")
        with open(os.path.join(tmp, "in", "notes.md"), "wb") as f:
            f.write(b"ignored")
        txt_docs = [b"from jsonl", b"", b"x\ty", b"First doc, line one.\r\nline two", b"Second  doc",
                    b"<s> third \xff doc\n  indented line", b"nested file"]
        out = os.path.join(tmp, "dir.u32")
        run([QS_BIN, "tokenize", "--quiet", "--tokenizer", d, "--text-field", "body",
             os.path.join(tmp, "in"), out])
        ref, starts = reference(tok, txt_docs)
        ok &= compare("txt+dir", tok, read_u32(out), ref, starts, txt_docs)

        # tokenizer_config.json: add_bos/add_eos and the document separator
        vocab = tj["model"]["vocab"]
        first = next(iter(vocab))
        added = {a["content"]: a["id"] for a in tj.get("added_tokens", [])}
        eos_name = "<|endoftext|>" if "<|endoftext|>" in added else first
        eos_id = added.get(eos_name, vocab.get(eos_name))
        bos_name = "<|begin_of_text|>" if "<|begin_of_text|>" in added else first
        bos_id = added.get(bos_name, vocab.get(bos_name))
        plain = dict(tj)
        plain["post_processor"] = None
        cdir = stage(tmp, "cfg", plain)
        ptok = Tokenizer.from_str(json.dumps(plain))
        few = [b"one doc", b"two docs here", b"three"]
        src = os.path.join(tmp, "few.jsonl")
        with open(src, "wb") as f:
            for doc in few:
                f.write(jsonl_line(doc))
        for cfg, pre, post in (({"eos_token": eos_name}, [], [eos_id]),
                               ({"eos_token": eos_name, "bos_token": bos_name, "add_bos_token": True,
                                 "add_eos_token": False}, [bos_id], []),
                               ({"eos_token": {"content": eos_name}, "bos_token": bos_name,
                                 "add_bos_token": True, "add_eos_token": True}, [bos_id], [eos_id]),
                               ({}, [], [])):
            with open(os.path.join(cdir, "tokenizer_config.json"), "w") as f:
                json.dump(cfg, f)
            out = os.path.join(tmp, "cfg.u32")
            run([QS_BIN, "tokenize", "--quiet", "--tokenizer", cdir, src, out])
            want = []
            for doc in few:
                want += pre + ptok.encode(doc.decode(), add_special_tokens=False).ids + post
            if read_u32(out) != want:
                print(f"FAIL: tokenizer_config {cfg}: {read_u32(out)} != {want}")
                ok = False
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("all identical" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
