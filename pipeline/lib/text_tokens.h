/* text_tokens.h: a text corpus tokenized over the ranks into a token file (.u32 / .u16,
 * the format io/tokens.h reads): `qshard tokenize`, and the calib/eval text sources.
 *
 * Documents are cut into blocks of consecutive documents holding at least
 * QS_TEXT_BLOCK_BYTES of text (the last block may hold less); block b is tokenized by rank
 * b % nranks, in rounds of nranks blocks; rank 0 appends each round's ids in block order
 * (qs_comm_ordered_sink), so the file is the corpus' ids in document order whatever the
 * rank count (test knob: env QS_TEST_TEXT_BLOCK_BYTES=n sets the block size). The file
 * is written to a temp name and renamed at the end; on any failure
 * nothing is left behind.
 *
 * Ownership: the caller owns the comm, tokenizer and corpus; nothing is retained.
 */
#ifndef QS_TEXT_TOKENS_H
#define QS_TEXT_TOKENS_H

#include <stdint.h>

#include "comm.h"
#include "config.h"
#include "corpus.h"
#include "status.h"
#include "tokenizer.h"
#include "tokens.h"

#define QS_TEXT_BLOCK_BYTES ((uint64_t)1 << 20)

typedef struct qs_text_tokens_stats {
    int64_t docs;       /* documents in the corpus */
    int64_t tokens;     /* ids written */
    uint64_t bytes;     /* text bytes of the documents */
    int64_t blocks;     /* blocks of documents */
} qs_text_tokens_stats;

/* Collective: tokenizes `corpus` with `t` on every rank's share and writes out_path (by
 * extension .u32 or .u16; a .u16 file needs every id < 65536). The status is agreed: every
 * rank returns the same code, with the failing rank's message in err. stats is filled on
 * every rank (tokens on rank 0 only). */
qs_status qs_text_tokens_write(const qs_comm *c, qs_tokenizer *t, const qs_corpus *corpus,
                               const char *out_path, qs_text_tokens_stats *stats, qs_err *err);

/* Local: the token ids of a source (config.h): its token file (io/tokens.h), or its text
 * tokenized in memory with its tokenizer (the model directory when none is named), serially
 * on the calling rank — every rank gets the same ids. For a corpus of many megabytes, make
 * a token file once with `qshard tokenize` (parallel over ranks) instead. QS_ERR_INPUT when
 * the source names nothing, or for a bad file, tokenizer or text (one line). */
qs_status qs_token_source_open(const qs_token_source *src, int64_t vocab, qs_tokens *out,
                               qs_err *err);

#endif /* QS_TEXT_TOKENS_H */
