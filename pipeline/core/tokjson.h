/* tokjson.h: a Hugging Face tokenizer.json read once, for every part of qshard that needs
 * it: the tokenizer of `qshard tokenize` (text/tokenizer.c) and the GGUF vocabulary
 * (export/gguf_vocab.c). The reader loads and parses the file, checks its structure and
 * returns the model's vocabulary, its BPE merges and the added tokens as plain arrays; what
 * each user makes of them (encoding tables, GGUF token types and merges) stays with it, as
 * do the sections only one of them reads (normalizer, pre_tokenizer, post_processor,
 * decoder: in `root`).
 *
 * Checked here (QS_ERR_INPUT, one line naming the file): the file exists, is JSON ("FILE:LINE:
 * invalid JSON") and an object; for a BPE model (model.type "BPE": other models are the
 * users' to refuse) model.vocab is an object of strings to integral ids in [0, 2^31), merges are "a b" strings (one space; "#version" lines skipped, as the library
 * does) or [a, b] pairs; added_tokens entries have a string content, flags that are booleans
 * (or null) and, when given, an id in [0, 2^31).
 *
 * Ownership: qs_tokjson owns the parsed document; every string pointer in its arrays points
 * into it (valid until qs_tokjson_free, which is safe on a zeroed struct).
 */
#ifndef QS_TOKJSON_H
#define QS_TOKJSON_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "status.h"

typedef struct qs_tokjson_token {
    const char *s;      /* the token's text (NUL-terminated, into the document) */
    int64_t id;
} qs_tokjson_token;

typedef struct qs_tokjson_merge {
    const char *l, *r;  /* the two parts, not NUL-terminated for "a b" strings */
    size_t nl, nr;
    int pair;           /* 1: written as [a, b] (parts may hold spaces), 0: as "a b" */
} qs_tokjson_merge;

typedef struct qs_tokjson_added {
    const char *content;
    int64_t id;         /* -1: no id given */
    int special, single_word, lstrip, rstrip; /* 0/1 (absent or null: 0) */
    int normalized;     /* 0/1, -2: absent or null */
} qs_tokjson_added;

typedef struct qs_tokjson {
    cJSON *root;                 /* owned: the parsed file */
    const cJSON *model;          /* root.model (NULL when absent) */
    const char *model_type;      /* model.type, NULL when absent or not a string */
    qs_tokjson_token *vocab;     /* (nvocab,) model.vocab in file order (BPE models) */
    int64_t nvocab;
    qs_tokjson_merge *merges;    /* (nmerges,) model.merges in rank order */
    int64_t nmerges;
    qs_tokjson_added *added;     /* (nadded,) added_tokens in file order */
    int64_t nadded;
} qs_tokjson;

/* Any JSON file of a tokenizer (tokenizer.json, tokenizer_config.json, ...) parsed into *root
 * (owned by the caller; NULL on an error): QS_ERR_INPUT "FILE: cannot open: <reason>",
 * "FILE: not a regular file", "FILE:LINE: invalid JSON"; at most max_bytes are read. */
qs_status qs_tokjson_parse_file(const char *path, uint64_t max_bytes, cJSON **root, qs_err *err);

/* Reads `path` (at most max_bytes). On an error *tj is freed. */
qs_status qs_tokjson_read(qs_tokjson *tj, const char *path, uint64_t max_bytes, qs_err *err);
void qs_tokjson_free(qs_tokjson *tj);

#endif /* QS_TOKJSON_H */
