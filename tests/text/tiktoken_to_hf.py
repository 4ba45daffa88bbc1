"""tiktoken_to_hf.py: a tokenizer.json from a tiktoken BPE ranks file (one "base64(token bytes)
rank" per line): the form Meta publishes the Llama-3 tokenizer in (tokenizer.model), and Qwen
its byte-level vocabulary (qwen.tiktoken, the 151643 regular tokens Qwen2 keeps), laid out as
the published Llama-3 and Qwen2 tokenizer.json files are.

The vocabulary is every token's bytes through the byte-level alphabet. Every split of a token
of two or more bytes into two tokens is a merge, merges ordered by the rank of the token they
make (then by the ranks of left and right part), so that merging by merge rank equals
tiktoken's merging by token rank; this is how the published Llama-3 tokenizer.json was made
(280147 merges). Special tokens follow the regular ones: Llama-3's named ones then reserved
ones to 256 (BOS <|begin_of_text|> by TemplateProcessing); Qwen2.5's 22 (no BOS/EOS added;
NFC normalizer; one digit per pre-token).
"""
import base64
import json

LLAMA3_REGEX = ("(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}|"
                " ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+")
QWEN2_REGEX = ("(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}|"
               " ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+")
QWEN2_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>",
                  "<|object_ref_end|>", "<|box_start|>", "<|box_end|>", "<|quad_start|>",
                  "<|quad_end|>", "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>",
                  "<|image_pad|>", "<|video_pad|>", "<tool_call>", "</tool_call>", "<|fim_prefix|>",
                  "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>"]
LLAMA3_SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>",
                   "<|reserved_special_token_1|>", "<|finetune_right_pad_id|>", "<|step_id|>",
                   "<|start_header_id|>", "<|end_header_id|>", "<|eom_id|>", "<|eot_id|>",
                   "<|python_tag|>", "<|image|>"]


def byte_alphabet():
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    table, n = {}, 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + n)
            n += 1
    return table


def convert(model_path, family="llama3"):
    ranks = {}
    with open(model_path, "rb") as f:
        for line in f:
            if line.strip():
                tok, rank = line.split()
                ranks[base64.b64decode(tok)] = int(rank)
    alpha = byte_alphabet()
    text = lambda b: "".join(alpha[x] for x in b)  # noqa: E731
    vocab = {text(t): r for t, r in ranks.items()}
    merges = []
    for t, r in sorted(ranks.items(), key=lambda kv: kv[1]):
        splits = [(ranks[t[:i]], ranks[t[i:]], t[:i], t[i:]) for i in range(1, len(t))
                  if t[:i] in ranks and t[i:] in ranks]
        for _, _, left, right in sorted(splits):
            merges.append([text(left), text(right)])
    n = len(ranks)
    model = {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
             "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
             "ignore_merges": family == "llama3", "vocab": vocab, "merges": merges}
    if family == "qwen2":
        added = [{"id": n + i, "content": s, "single_word": False, "lstrip": False, "rstrip": False,
                  "normalized": False, "special": not s.startswith("<tool")}
                 for i, s in enumerate(QWEN2_SPECIALS)]
        return {
            "version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
            "normalizer": {"type": "NFC"},
            "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
                {"type": "Split", "pattern": {"Regex": QWEN2_REGEX}, "behavior": "Isolated", "invert": False},
                {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}]},
            "post_processor": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False,
                               "use_regex": False},
            "decoder": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False,
                        "use_regex": False},
            "model": model,
        }
    specials = LLAMA3_SPECIALS + [f"<|reserved_special_token_{2 + i}|>"
                                  for i in range(256 - len(LLAMA3_SPECIALS))]
    added = [{"id": n + i, "content": s, "single_word": False, "lstrip": False, "rstrip": False,
              "normalized": False, "special": True} for i, s in enumerate(specials)]
    return {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
        "normalizer": None,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": LLAMA3_REGEX}, "behavior": "Isolated", "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]},
        "post_processor": {"type": "Sequence", "processors": [
            {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True},
            {"type": "TemplateProcessing",
             "single": [{"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 0}},
                        {"Sequence": {"id": "A", "type_id": 0}}],
             "pair": [], "special_tokens": {"<|begin_of_text|>": {
                 "id": "<|begin_of_text|>", "ids": [n], "tokens": ["<|begin_of_text|>"]}}}]},
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": model,
    }


if __name__ == "__main__":
    import sys
    json.dump(convert(sys.argv[1], sys.argv[3] if len(sys.argv) > 3 else "llama3"),
              open(sys.argv[2], "w", encoding="utf-8"), ensure_ascii=False)
