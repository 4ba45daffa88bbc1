"""restyle.py: Llama-3-style and Qwen2-style tokenizer.json files built around a real GPT-2
byte-level vocabulary, for when the real Llama-3 / Qwen2 files are not at hand, and the
Metaspace form of a SentencePiece BPE file (what transformers writes for Llama/Mistral with
legacy=False: no normalizer, Metaspace with prepend_scheme "first"; and the older
always-prepend, split form), and a file whose added tokens carry every flag (lstrip, rstrip,
single_word, normalized) in turn, plus ordinary words added as single-word tokens, and a
byte-level file whose pre-tokenizer is a Sequence of Splits with every behaviour (Removed,
Isolated, MergedWithPrevious, MergedWithNext, Contiguous), with and without invert.

The pipeline parts are the ones the real files carry (Llama-3: Split with the Llama-3 regex,
ByteLevel without its regex, ignore_merges, BOS by TemplateProcessing; Qwen2: NFC, Split with
the Qwen2 regex, ByteLevel, no BOS/EOS), with the source file's vocabulary and merges and the
families' special tokens added after it.
"""
import json

LLAMA3_REGEX = ("(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}|"
                " ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+")
QWEN2_REGEX = ("(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}|"
               " ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+")
SPECIALS = ["<|begin_of_text|>", "<|eot_id|>", "<|im_start|>", "<|im_end|>"]


def _base(src):
    d = json.loads(json.dumps(src))
    m = d["model"]
    m["continuing_subword_prefix"] = None
    m["end_of_word_suffix"] = None
    n = len(m["vocab"])
    d["added_tokens"] = [a for a in d.get("added_tokens", []) if a["content"] == "<|endoftext|>"]
    for i, c in enumerate(SPECIALS):
        d["added_tokens"].append({"id": n + i, "content": c, "single_word": False, "lstrip": False,
                                  "rstrip": False, "normalized": False, "special": True})
    return d


def llama3_style(src):
    d = _base(src)
    bos = [a["id"] for a in d["added_tokens"] if a["content"] == "<|begin_of_text|>"][0]
    d["normalizer"] = None
    d["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": LLAMA3_REGEX}, "behavior": "Isolated", "invert": False},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]}
    d["model"]["ignore_merges"] = True
    d["post_processor"] = {"type": "Sequence", "processors": [
        {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True},
        {"type": "TemplateProcessing",
         "single": [{"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 0}},
                    {"Sequence": {"id": "A", "type_id": 0}}],
         "pair": [], "special_tokens": {"<|begin_of_text|>": {
             "id": "<|begin_of_text|>", "ids": [bos], "tokens": ["<|begin_of_text|>"]}}}]}
    return d


def qwen2_style(src):
    d = _base(src)
    d["normalizer"] = {"type": "NFC"}
    d["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": QWEN2_REGEX}, "behavior": "Isolated", "invert": False},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}]}
    d["post_processor"] = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False,
                           "use_regex": False}
    return d


def metaspace_style(src, scheme, split):
    d = json.loads(json.dumps(src))
    d["normalizer"] = None
    d["pre_tokenizer"] = {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": scheme,
                          "split": split}
    return d


def added_flags(src):
    """Every added token gets one combination of lstrip / rstrip / single_word / normalized
    (cycling), and words that occur in the test text are added as tokens too."""
    d = json.loads(json.dumps(src))
    n = max([a["id"] for a in d.get("added_tokens", [])] + list(d["model"]["vocab"].values())) + 1
    words = ["the", "ing", "doc", "Hello", "\u4e2d\u6587", "x[i]", "  ", "<s>x"]
    for i, w in enumerate(words):
        d["added_tokens"].append({"id": n + i, "content": w, "single_word": False, "lstrip": False,
                                  "rstrip": False, "normalized": False, "special": False})
    for i, a in enumerate(d["added_tokens"]):
        k = i % 6
        a["lstrip"] = k in (0, 3)
        a["rstrip"] = k in (1, 3)
        a["single_word"] = k in (2, 4)
        a["normalized"] = k in (4, 5) and not a["special"]
    return d


def split_behaviors(src):
    """The byte-level file with a Sequence of Splits, one per behaviour (String and Regex
    patterns, invert on four of them), then ByteLevel without its own regex, so that every
    piece boundary the Splits make reaches the model."""
    d = _base(src)
    d["normalizer"] = None
    splits = [("Regex", "\\p{N}", "Contiguous", False),
              ("String", "-", "MergedWithPrevious", False),
              ("Regex", "[,;]", "Removed", False),
              ("Regex", "\\s+", "MergedWithNext", True),
              ("String", ".", "Isolated", True),
              ("Regex", "\\p{Lu}", "Contiguous", True),
              ("Regex", "[(\\[]", "MergedWithPrevious", True)]
    d["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {kind: pat}, "behavior": beh, "invert": inv}
        for kind, pat, beh, inv in splits] + [
        {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": False}]}
    d["post_processor"] = None
    return d
