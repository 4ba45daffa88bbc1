/* bpe.h: the BPE model of tokenizer.json ("model": {"type": "BPE"}), as Hugging Face
 * `tokenizers` runs it: a word (one pre-token) starts as one symbol per character (its
 * vocabulary id; else its bytes as <0xXX> tokens when byte_fallback; else the unknown
 * token, runs of them fused when fuse_unk); then the pair of adjacent symbols with the
 * lowest merge rank is merged, leftmost first among equal ranks, until no pair has a
 * merge (a min-heap of (rank, position) over a linked list of symbols, stale entries
 * skipped exactly as the library does). With ignore_merges a word that is itself in the
 * vocabulary is that one token. Results of words shorter than 256 bytes are cached.
 *
 * Also qs_ids, the growable id vector every encoder appends to.
 *
 * Ownership: qs_bpe owns its tables, cache and workspace (qs_bpe_free; safe on a zeroed
 * struct); qs_ids owns its array (qs_ids_free). Encoding writes into the cache and
 * workspace: one qs_bpe per thread.
 */
#ifndef QS_BPE_H
#define QS_BPE_H

#include <stddef.h>
#include <stdint.h>

#include "status.h"
#include "strtab.h"

typedef struct qs_ids {
    uint32_t *v;          /* (n,) token ids */
    size_t n, cap;
} qs_ids;

/* Appends one id (QS_ERR_RUNTIME when out of memory). */
qs_status qs_ids_push(qs_ids *ids, uint32_t id, qs_err *err);
void qs_ids_free(qs_ids *ids);

typedef struct qs_bpe_merge {
    uint64_t pair;        /* (left id << 32) | right id; UINT64_MAX = empty slot */
    uint32_t rank;
    uint32_t new_id;
} qs_bpe_merge;

typedef struct qs_bpe {
    qs_strtab vocab;          /* token string -> id */
    int64_t vocab_max;        /* largest id in the vocabulary (-1 if empty) */
    qs_bpe_merge *merges;     /* (nmslot,) open addressing over pair */
    size_t nmslot, nmerges;
    int32_t unk_id;           /* -1 = no unknown token */
    int fuse_unk, byte_fallback, ignore_merges;
    int32_t byte_id[256];     /* id of "<0xXX>" or -1 */
    /* word cache: entry e of `cache` -> ids cache_ids[cache_off[e] .. + cache_len[e]) */
    qs_strtab cache;
    uint32_t *cache_ids;
    size_t cache_nids, cache_cap_ids;
    uint32_t *cache_off, *cache_len;
    size_t cache_ecap;
    /* workspace of one word */
    uint32_t *sym_c;          /* (nsym,) symbol id */
    int32_t *sym_prev, *sym_next;
    uint32_t *sym_len;        /* bytes; 0 = merged away */
    size_t sym_cap;
    uint64_t *heap;           /* (rank << 32 | pos) keys; new_id in heap_id */
    uint32_t *heap_id;
    size_t heap_n, heap_cap;
} qs_bpe;

/* Prepares an empty model (no merges, no unknown token). */
qs_status qs_bpe_init(qs_bpe *b, qs_err *err);
void qs_bpe_free(qs_bpe *b);

/* Adds a vocabulary entry (a later duplicate replaces the id). */
qs_status qs_bpe_add_token(qs_bpe *b, const char *tok, size_t n, uint32_t id, qs_err *err);

/* Adds merge number `rank` of left + right (both and their concatenation must be in the
 * vocabulary: returns 0, or 1 naming which is missing in *missing: 'l', 'r', 'm'). A later
 * merge of the same pair replaces an earlier one, as in the library. */
int qs_bpe_add_merge(qs_bpe *b, const char *l, size_t nl, const char *r, size_t nr,
                     uint32_t rank, char *missing, qs_err *err);

/* After the vocabulary is complete: the <0xXX> byte tokens for byte_fallback. */
void qs_bpe_finish(qs_bpe *b);

/* Appends the ids of one word (valid UTF-8, n > 0 bytes). */
qs_status qs_bpe_encode(qs_bpe *b, const char *word, size_t n, qs_ids *out, qs_err *err);

#endif /* QS_BPE_H */
