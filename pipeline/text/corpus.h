/* corpus.h: calibration text as users keep it, turned into a token stream.
 *
 * Inputs (qs_corpus_open): `.txt` files (documents separated by blank lines: lines of
 * only spaces, tabs, CR, FF, VT), `.jsonl` files (one JSON object per non-blank line; the
 * document is its string field `text_field`, default "text"), or directories of them
 * (every .txt / .jsonl file below, recursively, names starting with '.' skipped, in byte
 * order of their relative paths; other files are ignored). Files are taken in the order
 * given. A UTF-8 byte order mark at the start of a file is skipped. The text of a .txt
 * document runs from its first line to the end of its last line without that line's
 * terminator; text is bytes (ill-formed UTF-8 is replaced as tokenizer.h says).
 *
 * Documents become ids with qs_tokenizer_encode_document (BOS/EOS per document, docs/text.md)
 * and are concatenated in document order: the stream io/tokens.c reads as a .u32 file.
 * A jsonl document whose text is "" is skipped (no ids at all).
 *
 * Errors (QS_ERR_INPUT, one line): a missing or unreadable input, an unknown file type, an
 * empty file or one of only blank lines, a directory without .txt/.jsonl files; while
 * encoding, "file:line: invalid JSON", "file:line: no field 'text'", "file:line: field
 * 'text' is not a string".
 *
 * Ownership: qs_corpus owns its file mappings and tables (qs_corpus_close; safe on a zeroed
 * struct).
 */
#ifndef QS_CORPUS_H
#define QS_CORPUS_H

#include <stddef.h>
#include <stdint.h>

#include "bpe.h"
#include "status.h"
#include "tokenizer.h"

typedef enum { QS_CORPUS_TXT = 0, QS_CORPUS_JSONL = 1 } qs_corpus_kind;

typedef struct qs_corpus_file {
    char *path;               /* owned */
    qs_corpus_kind kind;
    const char *map;          /* (size,) read-only mapping */
    size_t size;
} qs_corpus_file;

typedef struct qs_corpus_doc {
    uint32_t file;            /* index into files */
    uint32_t pad;
    uint64_t off, len;        /* txt: the document's bytes; jsonl: the line */
    int64_t line;             /* first line number (1-based) */
} qs_corpus_doc;

typedef struct qs_corpus {
    qs_corpus_file *files;    /* (nfiles,) */
    int nfiles;
    qs_corpus_doc *docs;      /* (ndocs,) in document order */
    int64_t ndocs;
    uint64_t bytes;           /* sum of the documents' byte lengths */
    char *field;              /* jsonl text field (owned) */
} qs_corpus;

/* Opens every input (files or directories) and finds the documents. */
qs_status qs_corpus_open(qs_corpus *c, const char *const *inputs, int ninputs,
                         const char *text_field, qs_err *err);
void qs_corpus_close(qs_corpus *c);

/* Appends the ids of documents [first, first + count) in order. */
qs_status qs_corpus_encode(const qs_corpus *c, qs_tokenizer *t, int64_t first, int64_t count,
                           qs_ids *out, qs_err *err);

/* The whole corpus into *out (serial); QS_ERR_INPUT when it gives no ids at all. */
qs_status qs_corpus_tokenize(const qs_corpus *c, qs_tokenizer *t, qs_ids *out, qs_err *err);

#endif /* QS_CORPUS_H */
