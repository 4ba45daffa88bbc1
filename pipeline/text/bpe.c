/* bpe.c: BPE merges by rank over a word (heap + linked symbols), byte fallback, cache. */
#include "bpe.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "utf8.h"

#define CACHE_MAX_WORD 256       /* bytes; as the library's MAX_LENGTH */
#define CACHE_MAX_ENTRIES 65536  /* the cache is emptied when it holds this many words */
#define EMPTY_PAIR UINT64_MAX
#define NO_CP_ID (-2)

qs_status qs_ids_push(qs_ids *ids, uint32_t id, qs_err *err) {
    if (ids->n == ids->cap) {
        size_t cap = ids->cap ? ids->cap * 2 : 256;
        uint32_t *v = realloc(ids->v, cap * sizeof(uint32_t));
        if (!v) return QS_FAIL(err, QS_ERR_RUNTIME, "out of memory (%zu token ids)", cap);
        ids->v = v;
        ids->cap = cap;
    }
    ids->v[ids->n++] = id;
    return QS_OK;
}

void qs_ids_free(qs_ids *ids) {
    free(ids->v);
    memset(ids, 0, sizeof(*ids));
}

qs_status qs_bpe_init(qs_bpe *b, qs_err *err) {
    (void)err;
    memset(b, 0, sizeof(*b));
    b->unk_id = -1;
    b->vocab_max = -1;
    for (int i = 0; i < 256; ++i) b->byte_id[i] = -1;
    return QS_OK;
}

void qs_bpe_free(qs_bpe *b) {
    qs_strtab_free(&b->vocab);
    qs_strtab_free(&b->cache);
    free(b->merges);
    free(b->cache_ids);
    free(b->cache_off);
    free(b->cache_len);
    free(b->sym_c);
    free(b->sym_prev);
    free(b->sym_next);
    free(b->sym_len);
    free(b->heap);
    free(b->heap_id);
    memset(b, 0, sizeof(*b));
}

qs_status qs_bpe_add_token(qs_bpe *b, const char *tok, size_t n, uint32_t id, qs_err *err) {
    if (qs_strtab_put(&b->vocab, tok, n, (int32_t)id) < 0)
        return QS_FAIL(err, QS_ERR_RUNTIME, "out of memory (vocabulary)");
    if ((int64_t)id > b->vocab_max) b->vocab_max = id;
    return QS_OK;
}

static size_t pair_slot(uint64_t pair, size_t mask) {
    uint64_t h = pair * 0x9E3779B97F4A7C15ULL;
    return (size_t)(h ^ (h >> 31)) & mask;
}

static const qs_bpe_merge *find_merge(const qs_bpe *b, uint32_t l, uint32_t r) {
    if (!b->nmslot) return NULL;
    uint64_t pair = ((uint64_t)l << 32) | r;
    size_t mask = b->nmslot - 1, i = pair_slot(pair, mask);
    for (;;) {
        const qs_bpe_merge *m = &b->merges[i];
        if (m->pair == pair) return m;
        if (m->pair == EMPTY_PAIR) return NULL;
        i = (i + 1) & mask;
    }
}

static int grow_merges(qs_bpe *b) {
    size_t n = b->nmslot ? b->nmslot * 2 : 1024;
    qs_bpe_merge *m = malloc(n * sizeof(*m));
    if (!m) return -1;
    for (size_t i = 0; i < n; ++i) m[i].pair = EMPTY_PAIR;
    for (size_t i = 0; i < b->nmslot; ++i) {
        if (b->merges[i].pair == EMPTY_PAIR) continue;
        size_t j = pair_slot(b->merges[i].pair, n - 1);
        while (m[j].pair != EMPTY_PAIR) j = (j + 1) & (n - 1);
        m[j] = b->merges[i];
    }
    free(b->merges);
    b->merges = m;
    b->nmslot = n;
    return 0;
}

int qs_bpe_add_merge(qs_bpe *b, const char *l, size_t nl, const char *r, size_t nr,
                     uint32_t rank, char *missing, qs_err *err) {
    int32_t el = qs_strtab_find(&b->vocab, l, nl), er = qs_strtab_find(&b->vocab, r, nr);
    if (el < 0 || er < 0) {
        *missing = el < 0 ? 'l' : 'r';
        return 1;
    }
    char stack[256];
    char *cat = nl + nr <= sizeof(stack) ? stack : malloc(nl + nr);
    if (!cat) {
        QS_FAIL(err, QS_ERR_RUNTIME, "out of memory (merges)");
        *missing = 0;
        return -1;
    }
    memcpy(cat, l, nl);
    memcpy(cat + nl, r, nr);
    int32_t em = qs_strtab_find(&b->vocab, cat, nl + nr);
    if (cat != stack) free(cat);
    if (em < 0) {
        *missing = 'm';
        return 1;
    }
    if ((b->nmerges + 1) * 2 > b->nmslot && grow_merges(b) != 0) {
        QS_FAIL(err, QS_ERR_RUNTIME, "out of memory (merges)");
        *missing = 0;
        return -1;
    }
    uint64_t pair = ((uint64_t)(uint32_t)b->vocab.val[el] << 32) | (uint32_t)b->vocab.val[er];
    size_t mask = b->nmslot - 1, i = pair_slot(pair, mask);
    while (b->merges[i].pair != EMPTY_PAIR && b->merges[i].pair != pair) i = (i + 1) & mask;
    if (b->merges[i].pair == EMPTY_PAIR) ++b->nmerges;
    b->merges[i].pair = pair;
    b->merges[i].rank = rank;
    b->merges[i].new_id = (uint32_t)b->vocab.val[em];
    return 0;
}

void qs_bpe_finish(qs_bpe *b) {
    for (int i = 0; i < 256; ++i) {
        char name[8];
        snprintf(name, sizeof(name), "<0x%02X>", i);
        int32_t e = qs_strtab_find(&b->vocab, name, 6);
        b->byte_id[i] = e >= 0 ? b->vocab.val[e] : -1;
    }
}

static int reserve_word(qs_bpe *b, size_t n) {
    if (n <= b->sym_cap) return 0;
    size_t cap = b->sym_cap ? b->sym_cap : 64;
    while (cap < n) cap *= 2;
    uint32_t *c = realloc(b->sym_c, cap * sizeof(uint32_t));
    if (c) b->sym_c = c;
    int32_t *p = realloc(b->sym_prev, cap * sizeof(int32_t));
    if (p) b->sym_prev = p;
    int32_t *x = realloc(b->sym_next, cap * sizeof(int32_t));
    if (x) b->sym_next = x;
    uint32_t *l = realloc(b->sym_len, cap * sizeof(uint32_t));
    if (l) b->sym_len = l;
    uint64_t *h = realloc(b->heap, cap * 3 * sizeof(uint64_t));
    if (h) b->heap = h;
    uint32_t *hi = realloc(b->heap_id, cap * 3 * sizeof(uint32_t));
    if (hi) b->heap_id = hi;
    if (!c || !p || !x || !l || !h || !hi) return -1;
    b->sym_cap = cap;
    b->heap_cap = cap * 3;
    return 0;
}

static void heap_push(qs_bpe *b, uint32_t rank, uint32_t pos, uint32_t id) {
    uint64_t key = ((uint64_t)rank << 32) | pos;
    size_t i = b->heap_n++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (b->heap[p] <= key) break;
        b->heap[i] = b->heap[p];
        b->heap_id[i] = b->heap_id[p];
        i = p;
    }
    b->heap[i] = key;
    b->heap_id[i] = id;
}

static void heap_pop(qs_bpe *b, uint64_t *key, uint32_t *id) {
    *key = b->heap[0];
    *id = b->heap_id[0];
    uint64_t last = b->heap[--b->heap_n];
    uint32_t last_id = b->heap_id[b->heap_n];
    size_t i = 0, n = b->heap_n;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && b->heap[c + 1] < b->heap[c]) ++c;
        if (b->heap[c] >= last) break;
        b->heap[i] = b->heap[c];
        b->heap_id[i] = b->heap_id[c];
        i = c;
    }
    if (n) {
        b->heap[i] = last;
        b->heap_id[i] = last_id;
    }
}

/* Word -> symbols (characters, byte fallback, unknown runs); returns the count or -1. */
static long init_symbols(qs_bpe *b, const char *w, size_t n) {
    if (reserve_word(b, n) != 0) return -1;
    long m = 0;
    int32_t unk_pending = -1; /* symbol length of a pending unknown token, -1 none */
    for (size_t i = 0; i < n;) {
        int len = qs_utf8_len((unsigned char)w[i]);
        if (i + (size_t)len > n) len = (int)(n - i);
        int32_t e = qs_strtab_find(&b->vocab, w + i, (size_t)len);
        if (e >= 0) {
            if (unk_pending >= 0) {
                b->sym_c[m] = (uint32_t)b->unk_id;
                b->sym_len[m++] = (uint32_t)unk_pending;
                unk_pending = -1;
            }
            b->sym_c[m] = (uint32_t)b->vocab.val[e];
            b->sym_len[m++] = (uint32_t)len;
            i += (size_t)len;
            continue;
        }
        if (b->byte_fallback) {
            int all = 1;
            for (int k = 0; k < len; ++k)
                if (b->byte_id[(unsigned char)w[i + (size_t)k]] < 0) all = 0;
            if (all) {
                for (int k = 0; k < len; ++k) {
                    b->sym_c[m] = (uint32_t)b->byte_id[(unsigned char)w[i + (size_t)k]];
                    b->sym_len[m++] = 1;
                }
                i += (size_t)len;
                continue;
            }
        }
        if (b->unk_id >= 0) {
            if (unk_pending >= 0 && b->fuse_unk) {
                unk_pending += len;
            } else {
                if (unk_pending >= 0) {
                    b->sym_c[m] = (uint32_t)b->unk_id;
                    b->sym_len[m++] = (uint32_t)unk_pending;
                }
                unk_pending = len;
            }
        }
        i += (size_t)len;
    }
    if (unk_pending >= 0) {
        b->sym_c[m] = (uint32_t)b->unk_id;
        b->sym_len[m++] = (uint32_t)unk_pending;
    }
    for (long k = 0; k < m; ++k) {
        b->sym_prev[k] = (int32_t)k - 1;
        b->sym_next[k] = k + 1 < m ? (int32_t)k + 1 : -1;
    }
    return m;
}

static void merge_all(qs_bpe *b, long m) {
    b->heap_n = 0;
    for (long i = 0; i + 1 < m; ++i) {
        const qs_bpe_merge *g = find_merge(b, b->sym_c[i], b->sym_c[i + 1]);
        if (g) heap_push(b, g->rank, (uint32_t)i, g->new_id);
    }
    while (b->heap_n) {
        uint64_t key;
        uint32_t new_id;
        heap_pop(b, &key, &new_id);
        uint32_t pos = (uint32_t)(key & 0xFFFFFFFFu);
        if (b->sym_len[pos] == 0 || b->sym_next[pos] < 0) continue;
        int32_t nxt = b->sym_next[pos];
        const qs_bpe_merge *g = find_merge(b, b->sym_c[pos], b->sym_c[nxt]);
        if (!g || g->new_id != new_id) continue; /* stale entry */
        b->sym_c[pos] = new_id;
        b->sym_len[pos] += b->sym_len[nxt];
        b->sym_next[pos] = b->sym_next[nxt];
        b->sym_len[nxt] = 0;
        if (b->sym_next[nxt] >= 0) b->sym_prev[b->sym_next[nxt]] = (int32_t)pos;
        /* at most m - 1 initial entries and 2 per merge: 3 * m fits */
        int32_t prv = b->sym_prev[pos];
        if (prv >= 0) {
            g = find_merge(b, b->sym_c[prv], new_id);
            if (g) heap_push(b, g->rank, (uint32_t)prv, g->new_id);
        }
        int32_t nx = b->sym_next[pos];
        if (nx >= 0) {
            g = find_merge(b, new_id, b->sym_c[nx]);
            if (g) heap_push(b, g->rank, pos, g->new_id);
        }
    }
}

static void cache_store(qs_bpe *b, const char *w, size_t n, const uint32_t *ids, size_t k) {
    if (b->cache.count >= CACHE_MAX_ENTRIES) {
        qs_strtab_clear(&b->cache);
        b->cache_nids = 0;
    }
    if (b->cache_nids + k > b->cache_cap_ids) {
        size_t cap = b->cache_cap_ids ? b->cache_cap_ids : 65536;
        while (cap < b->cache_nids + k) cap *= 2;
        uint32_t *v = realloc(b->cache_ids, cap * sizeof(uint32_t));
        if (!v) return; /* caching is optional */
        b->cache_ids = v;
        b->cache_cap_ids = cap;
    }
    if (b->cache.count == b->cache_ecap) {
        size_t cap = b->cache_ecap ? b->cache_ecap * 2 : 1024;
        uint32_t *o = realloc(b->cache_off, cap * sizeof(uint32_t));
        if (o) b->cache_off = o;
        uint32_t *l = realloc(b->cache_len, cap * sizeof(uint32_t));
        if (l) b->cache_len = l;
        if (!o || !l) return;
        b->cache_ecap = cap;
    }
    int32_t e = qs_strtab_put(&b->cache, w, n, 0);
    if (e < 0) return;
    memcpy(b->cache_ids + b->cache_nids, ids, k * sizeof(uint32_t));
    b->cache_off[e] = (uint32_t)b->cache_nids;
    b->cache_len[e] = (uint32_t)k;
    b->cache_nids += k;
}

qs_status qs_bpe_encode(qs_bpe *b, const char *word, size_t n, qs_ids *out, qs_err *err) {
    qs_status st = QS_OK;
    if (n == 0) return QS_OK;
    if (b->ignore_merges) {
        int32_t e = qs_strtab_find(&b->vocab, word, n);
        if (e >= 0) return qs_ids_push(out, (uint32_t)b->vocab.val[e], err);
    }
    int cacheable = n < CACHE_MAX_WORD;
    if (cacheable) {
        int32_t e = qs_strtab_find(&b->cache, word, n);
        if (e >= 0) {
            for (uint32_t i = 0; i < b->cache_len[e]; ++i)
                QS_CHECK(qs_ids_push(out, b->cache_ids[b->cache_off[e] + i], err));
            return QS_OK;
        }
    }
    long m = init_symbols(b, word, n);
    if (m < 0) return QS_FAIL(err, QS_ERR_RUNTIME, "out of memory (word of %zu bytes)", n);
    merge_all(b, m);
    size_t start = out->n;
    for (long i = 0; i < m; ++i)
        if (b->sym_len[i]) QS_CHECK(qs_ids_push(out, b->sym_c[i], err));
    if (cacheable) cache_store(b, word, n, out->v + start, out->n - start);
done:
    return st;
}
