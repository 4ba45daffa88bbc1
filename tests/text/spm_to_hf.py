"""spm_to_hf.py: a tokenizer.json (Llama-2 layout) from a SentencePiece BPE model, read with the
`sentencepiece` package: the layout Hugging Face writes for Llama-2 / TinyLlama (Prepend "▁" and
Replace " " -> "▁" normalizers, no pre-tokenizer, BPE with byte_fallback, <unk>, fuse_unk, BOS
by TemplateProcessing).

Vocabulary: every piece with its id. Merges: every split of a normal piece into two normal
pieces, ordered by the id of the piece they make (SentencePiece BPE numbers its pieces by
merge score, best first), then by the ids of left and right part.
"""
import sentencepiece as spm


def convert(model_path):
    sp = spm.SentencePieceProcessor(model_file=model_path)
    n = sp.vocab_size()
    vocab = {sp.id_to_piece(i): i for i in range(n)}
    normal = {sp.id_to_piece(i): i for i in range(n)
              if not (sp.is_byte(i) or sp.is_control(i) or sp.is_unknown(i) or sp.is_unused(i))}
    merges = []
    for piece, pid in sorted(normal.items(), key=lambda kv: kv[1]):
        splits = [(normal[piece[:k]], normal[piece[k:]], piece[:k], piece[k:])
                  for k in range(1, len(piece)) if piece[:k] in normal and piece[k:] in normal]
        for _, _, left, right in sorted(splits):
            merges.append([left, right])
    specials = [i for i in range(n) if sp.is_control(i) or sp.is_unknown(i)]
    added = [{"id": i, "content": sp.id_to_piece(i), "single_word": False, "lstrip": False,
              "rstrip": False, "normalized": False, "special": True} for i in specials]
    bos = sp.id_to_piece(sp.bos_id())
    return {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "Prepend", "prepend": "\u2581"},
            {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}]},
        "pre_tokenizer": None,
        "post_processor": {"type": "TemplateProcessing",
                           "single": [{"SpecialToken": {"id": bos, "type_id": 0}},
                                      {"Sequence": {"id": "A", "type_id": 0}}],
                           "pair": [], "special_tokens": {bos: {"id": bos, "ids": [sp.bos_id()],
                                                                "tokens": [bos]}}},
        "decoder": None,
        "model": {"type": "BPE", "dropout": None, "unk_token": sp.id_to_piece(sp.unk_id()),
                  "continuing_subword_prefix": None, "end_of_word_suffix": None, "fuse_unk": True,
                  "byte_fallback": True, "ignore_merges": False, "vocab": vocab, "merges": merges},
    }
