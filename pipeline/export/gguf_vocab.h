/* gguf_vocab.h: the tokenizer metadata of a GGUF file (tokenizer.ggml.*), built from the
 * model's tokenizer files the way llama.cpp's converter (convert_hf_to_gguf.py, gguf-py's
 * SpecialVocab) builds it. llama.cpp needs it to load the file at all (its perplexity
 * tool tokenizes text with it).
 *
 * Which vocabulary (the converter's choice per architecture):
 *   - a SentencePiece `tokenizer.model` (Llama, Mistral, Qwen2 when present): read by a
 *     protobuf reader of its ModelProto pieces (piece, score, type); tokenizer.ggml.model
 *     "llama", pre "default", tokens / scores / token_type for ids [0, vocab_size) of
 *     config.json: ids beyond the model are "[PAD<i>]" (score -10000, UNUSED); piece types
 *     map UNKNOWN 2, CONTROL 3, UNUSED 5, BYTE 6 and everything else (also USER_DEFINED) to
 *     NORMAL 1, as the converter does; added_tokens.json entries become USER_DEFINED (score
 *     -1000), tokenizer_config.json's added_tokens_decoder entries CONTROL when `special`
 *     (or when they look special: <|...|>, <pad>, <mask>, ...) else USER_DEFINED with U+2581
 *     replaced by a space (score -1000).
 *   - else a Hugging Face `tokenizer.json` with a byte-level BPE model (Llama 3, Qwen2):
 *     tokenizer.ggml.model "gpt2", tokens = the vocab by id plus the added tokens (ids
 *     missing below vocab_size: "[PAD<i>]", UNUSED), token_type CONTROL for special added
 *     tokens (and ones that look special), USER_DEFINED for other added tokens, NORMAL
 *     otherwise; merges (pair lists joined by a space, spaces inside a part written as
 *     U+0120). tokenizer.ggml.pre: the converter hashes the ids its tokenizer gives for a
 *     test text; qshard identifies the pre-tokenizer instead by the Split regex of
 *     tokenizer.json's pre_tokenizer (Llama 3's -> "llama-bpe", Qwen2's -> "qwen2"), which
 *     is what that name selects in llama.cpp (its own copy of the regex).
 *   - For Llama/Mistral, a tokenizer.json BPE with byte_fallback (the converter's
 *     LlamaHfVocab path) and any other tokenizer model are not supported.
 * Special tokens (gguf-py's SpecialVocab): bos/eos/unk/sep/pad/mask ids from
 * tokenizer_config.json's <type>_token (string or {"content"}) looked up among
 * tokenizer.json's added_tokens, then config.json's <type>_token_id for the types still
 * unset (integers only; a list such as Llama 3.1's eos is skipped); ids >= the vocabulary
 * are skipped for SentencePiece vocabularies. add_bos_token / add_eos_token /
 * add_sep_token: the booleans of tokenizer_config.json, else what tokenizer.json's
 * TemplateProcessing post-processor adds (a leading bos, a trailing eos; a trailing token
 * other than eos becomes eos and the old eos the eot id). tokenizer.chat_template from
 * tokenizer_config.json, chat_template.jinja or chat_template.json (only with a
 * tokenizer_config.json, as the converter). Llama/Mistral: tokenizer.ggml.add_space_prefix
 * from tokenizer_config.json's add_prefix_space; vocab_size 32016 (CodeLlama):
 * prefix/suffix/middle/eot ids 32007-32010; vocab_size 49152: add_bos_token false.
 * Not done: re-normalizing added tokens marked "normalized": false (the converter runs them
 * through the tokenizer; special tokens are unchanged by that), named chat templates in
 * additional_chat_templates/, the pair template's sep.
 *
 * Files: `tokenizer` NULL: model_dir/tokenizer.model, else model_dir/tokenizer.json. An
 * explicit `tokenizer`: a directory holding those files, a *.json file (tokenizer.json)
 * or any other file (a SentencePiece model). tokenizer_config.json, tokenizer.json (for
 * special tokens), added_tokens.json and the chat template files are read from the
 * tokenizer's directory, config.json (special ids) from model_dir. Anything unsupported or
 * malformed is one QS_ERR_INPUT naming the file and the component.
 *
 * Ownership: nothing is kept; the keys are added to m.
 */
#ifndef QS_GGUF_VOCAB_H
#define QS_GGUF_VOCAB_H

#include "gguf_file.h"
#include "hf_config.h"
#include "status.h"

qs_status qs_gguf_meta_add_vocab(qs_gguf_meta *m, const qs_hf_config *hf, const char *model_dir,
                                 const char *tokenizer, qs_err *err);

#endif /* QS_GGUF_VOCAB_H */
