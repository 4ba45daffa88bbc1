/* tokenizer.h: a model's Hugging Face tokenizer (tokenizer.json, and tokenizer_config.json
 * beside it) in C: token ids equal to the `tokenizers` library's Tokenizer.encode for the
 * tokenizers of the supported architectures (docs/text.md):
 *  - added tokens (special or not) split out first, as the library does: tokens with
 *    normalized=false on the raw text, the others on each normalized piece; leftmost
 *    longest match; single_word, lstrip and rstrip honoured;
 *  - normalizers: Sequence, Prepend, Replace (String or Regex pattern), NFC;
 *  - pre-tokenizers: Sequence, Split (String or Regex pattern, every behaviour, invert),
 *    ByteLevel (with or without its GPT-2 regex, add_prefix_space), Metaspace;
 *  - model: BPE (bpe.h) with byte_fallback, unk_token, fuse_unk, ignore_merges;
 *  - post-processors: TemplateProcessing (single), ByteLevel, Sequence; then
 *    tokenizer_config.json's add_bos_token / add_eos_token, when set, decide the BOS and
 *    EOS as transformers' Llama tokenizers do.
 * Anything else (another model or component type, dropout, a subword prefix) is refused at
 * load with QS_ERR_INPUT naming the file and the component, e.g.
 * "tokenizer.json: pre_tokenizer type 'Whitespace' is not supported". truncation, padding
 * and decoder are ignored (they do not change the ids of a whole document).
 *
 * Input text is bytes: ill-formed UTF-8 becomes U+FFFD per maximal subpart first, which is
 * what the library sees for bytes.decode("utf-8", errors="replace") (utf8.h).
 *
 * Ownership: qs_tokenizer_load allocates the tokenizer; qs_tokenizer_free releases it
 * (NULL is fine). Encoding uses the tokenizer's own workspace and cache: one tokenizer per
 * thread. Ids are appended to a caller-owned qs_ids (bpe.h).
 */
#ifndef QS_TOKENIZER_H
#define QS_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "bpe.h"
#include "status.h"

typedef struct qs_tokenizer qs_tokenizer;

/* Loads `path`: a model directory (its tokenizer.json, and tokenizer_config.json if
 * present) or a tokenizer.json file (tokenizer_config.json beside it if present).
 * Errors name the file: a missing file, invalid JSON (file:line), an unsupported component. */
qs_status qs_tokenizer_load(const char *path, qs_tokenizer **out, qs_err *err);
void qs_tokenizer_free(qs_tokenizer *t);

/* The tokenizer.json path the tokenizer came from. */
const char *qs_tokenizer_path(const qs_tokenizer *t);

/* Largest token id the tokenizer can produce + 1 (vocabulary and added tokens). */
int64_t qs_tokenizer_vocab_size(const qs_tokenizer *t);

/* Appends the ids of `text` (n bytes, any bytes): Tokenizer.encode(text,
 * add_special_tokens=add_special).ids of the library. */
qs_status qs_tokenizer_encode(qs_tokenizer *t, const char *text, size_t n, int add_special,
                              qs_ids *out, qs_err *err);

/* Appends one document of a calibration corpus (docs/text.md "Documents"): its ids with
 * special tokens, as tools tokenize one calibration sample; when that adds neither a
 * BOS nor an EOS (Qwen2), tokenizer_config.json's eos_token is appended so documents stay
 * separated (nothing when there is none). */
qs_status qs_tokenizer_encode_document(qs_tokenizer *t, const char *text, size_t n,
                                       qs_ids *out, qs_err *err);

/* The ids added around a sequence with special tokens, and the document separator of
 * qs_tokenizer_encode_document (-1 when none). Arrays are owned by the tokenizer. */
void qs_tokenizer_specials(const qs_tokenizer *t, const uint32_t **prefix, int *nprefix,
                           const uint32_t **suffix, int *nsuffix, int64_t *doc_eos);

#endif /* QS_TOKENIZER_H */
