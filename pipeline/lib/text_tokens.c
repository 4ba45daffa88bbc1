/* text_tokens.c: blocks of documents over ranks, ids appended in document order on rank 0. */
#include "text_tokens.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rundir.h"

typedef struct sink_ctx {
    qs_atomic *file;
    const char *path;
    int width;                /* 2 or 4 bytes per id */
    unsigned char *scratch;   /* (cap,) little-endian ids */
    size_t cap;
    int64_t written;
} sink_ctx;

static qs_status write_ids(void *vctx, const void *buf, size_t nbytes, qs_err *err) {
    sink_ctx *s = vctx;
    const uint32_t *ids = buf; /* (n,) */
    size_t n = nbytes / sizeof(uint32_t), need = n * (size_t)s->width;
    if (need > s->cap) {
        unsigned char *b = realloc(s->scratch, need);
        if (!b) return QS_FAIL(err, QS_ERR_RUNTIME, "%s: out of memory (%zu bytes)", s->path, need);
        s->scratch = b;
        s->cap = need;
    }
    for (size_t i = 0; i < n; ++i) {
        uint32_t v = ids[i];
        unsigned char *p = s->scratch + i * (size_t)s->width;
        if (s->width == 2) {
            if (v > 0xFFFF)
                return QS_FAIL(err, QS_ERR_INPUT, "%s: token id %u does not fit a .u16 file (use .u32)",
                               s->path, v);
            p[0] = (unsigned char)v;
            p[1] = (unsigned char)(v >> 8);
        } else {
            p[0] = (unsigned char)v;
            p[1] = (unsigned char)(v >> 8);
            p[2] = (unsigned char)(v >> 16);
            p[3] = (unsigned char)(v >> 24);
        }
    }
    if (need && fwrite(s->scratch, 1, need, s->file->f) != need)
        return QS_FAIL(err, QS_ERR_RUNTIME, "%s: write failed", s->path);
    s->written += (int64_t)n;
    return QS_OK;
}

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

qs_status qs_text_tokens_write(const qs_comm *c, qs_tokenizer *t, const qs_corpus *corpus,
                               const char *out_path, qs_text_tokens_stats *stats, qs_err *err) {
    qs_status st = QS_OK;
    qs_atomic file;
    int file_open = 0;
    int64_t *block_start = NULL; /* (nblocks + 1,) first document of each block */
    qs_ids ids = {0};
    sink_ctx sink = {0};
    memset(stats, 0, sizeof(*stats));
    stats->docs = corpus->ndocs;
    stats->bytes = corpus->bytes;

    int width = ends_with(out_path, ".u32") ? 4 : ends_with(out_path, ".u16") ? 2 : 0;
    qs_status local = QS_OK;
    if (!width)
        local = QS_FAIL(err, QS_ERR_INPUT, "%s: unknown token file type (expected .u32 or .u16)", out_path);
    else if (width == 2 && qs_tokenizer_vocab_size(t) > 65536)
        local = QS_FAIL(err, QS_ERR_INPUT, "%s: %lld token ids do not fit a .u16 file (use .u32)",
                        out_path, (long long)qs_tokenizer_vocab_size(t));
    if (local == QS_OK) {
        block_start = qs_malloc(sizeof(int64_t) * (size_t)(corpus->ndocs + 1), err, "blocks");
        if (!block_start) local = QS_ERR_RUNTIME;
    }
    if (local == QS_OK && c->rank == 0) {
        local = qs_atomic_open(&file, out_path, err);
        file_open = local == QS_OK;
    }
    QS_CHECK(qs_comm_agree(c, local, err));

    uint64_t block_bytes = QS_TEXT_BLOCK_BYTES;
    const char *knob = getenv("QS_TEST_TEXT_BLOCK_BYTES"); /* test knob: smaller blocks */
    if (knob && atoll(knob) > 0) block_bytes = (uint64_t)atoll(knob);
    int64_t nblocks = 0;
    uint64_t acc = 0;
    for (int64_t d = 0; d < corpus->ndocs; ++d) {
        if (acc == 0) block_start[nblocks++] = d;
        acc += corpus->docs[d].len;
        if (acc >= block_bytes) acc = 0;
    }
    block_start[nblocks] = corpus->ndocs;
    stats->blocks = nblocks;

    sink.file = &file;
    sink.path = out_path;
    sink.width = width;
    qs_status write_st = QS_OK; /* rank 0's sink status, agreed with the next round */
    for (int64_t round = 0; round * c->size < nblocks; ++round) {
        int64_t b = round * c->size + c->rank;
        ids.n = 0;
        local = QS_OK;
        if (b < nblocks)
            local = qs_corpus_encode(corpus, t, block_start[b], block_start[b + 1] - block_start[b],
                                     &ids, err);
        if (local == QS_OK) local = write_st;
        QS_CHECK(qs_comm_agree(c, local, err));
        write_st = qs_comm_ordered_sink(c, ids.v, ids.n * sizeof(uint32_t), 0, write_ids, &sink, err);
    }
    local = write_st;
    if (local == QS_OK && c->rank == 0 && sink.written == 0)
        local = QS_FAIL(err, QS_ERR_INPUT, "%s: no tokens (every document is empty)",
                        corpus->nfiles ? corpus->files[0].path : out_path);
    if (local == QS_OK && c->rank == 0) {
        file_open = 0;
        local = qs_atomic_commit(&file, err);
    }
    QS_CHECK(qs_comm_agree(c, local, err));
    stats->tokens = sink.written;
done:
    if (file_open) qs_atomic_abandon(&file);
    free(block_start);
    free(sink.scratch);
    qs_ids_free(&ids);
    return st;
}

qs_status qs_token_source_open(const qs_token_source *src, int64_t vocab, qs_tokens *out,
                               qs_err *err) {
    qs_status st = QS_OK;
    qs_tokenizer *tok = NULL;
    qs_corpus corpus;
    qs_ids ids;
    memset(&corpus, 0, sizeof(corpus));
    memset(&ids, 0, sizeof(ids));
    memset(out, 0, sizeof(*out));
    if (src->tokens[0]) return qs_tokens_open(out, src->tokens, vocab, err);
    if (!src->text[0])
        return QS_FAIL(err, QS_ERR_INPUT, "%s.tokens or %s.text: a token file or text is required",
                       src->key, src->key);
    const char *inputs[1] = {src->text};
    QS_CHECK(qs_tokenizer_load(src->tokenizer[0] ? src->tokenizer : src->model, &tok, err));
    QS_CHECK(qs_corpus_open(&corpus, inputs, 1, src->text_field, err));
    QS_CHECK(qs_corpus_tokenize(&corpus, tok, &ids, err));
    st = qs_tokens_from_ids(out, src->text, ids.v, (int64_t)ids.n, vocab, err);
    ids.v = NULL; /* owned by out now, whatever the outcome */
done:
    qs_ids_free(&ids);
    qs_corpus_close(&corpus);
    qs_tokenizer_free(tok);
    return st;
}
