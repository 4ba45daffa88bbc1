/* tokenizer.c: tokenizer.json -> the pipeline of tokenizer.h (added tokens, normalizers,
 * pre-tokenizers, BPE, post-processor) and encoding through it. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "tokenizer.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "nfc.h"
#include "regex.h"
#include "rundir.h"
#include "tokjson.h"
#include "utf8.h"

#define MAX_SPECIAL 16
#define TK_MAX_BYTES ((uint64_t)1 << 30) /* largest tokenizer file read */

/* ---- pipeline components ---- */

typedef enum { NORM_PREPEND, NORM_REPLACE, NORM_NFC } norm_kind;

typedef struct tk_norm {
    norm_kind kind;
    char *lit;            /* Prepend: the text; Replace: a String pattern (NULL for Regex) */
    size_t nlit;
    char *content;        /* Replace: the replacement */
    size_t ncontent;
    qs_regex re;          /* Replace with a Regex pattern */
} tk_norm;

typedef enum { PRE_SPLIT, PRE_BYTELEVEL, PRE_METASPACE } pre_kind;
typedef enum {
    BEH_REMOVED,
    BEH_ISOLATED,
    BEH_MERGED_PREV,
    BEH_MERGED_NEXT,
    BEH_CONTIGUOUS
} behavior;

typedef struct tk_pre {
    pre_kind kind;
    char *lit;            /* Split String pattern / Metaspace replacement */
    size_t nlit;
    qs_regex re;          /* Split Regex pattern */
    int has_re;
    behavior beh;
    int invert;
    int add_prefix_space; /* ByteLevel */
    int use_regex;        /* ByteLevel */
    int prepend;          /* Metaspace: 0 never, 1 always, 2 first */
    int split;            /* Metaspace */
} tk_pre;

typedef struct tk_added {
    char *content;        /* match text (normalized form for normalized tokens) */
    size_t n;
    uint32_t id;
    int single_word, lstrip, rstrip, normalized;
} tk_added;

/* A byte trie over added tokens: node 0 is the root. */
typedef struct tk_trie {
    int32_t *child;       /* (nnode,) first child */
    int32_t *sib;         /* (nnode,) next sibling */
    unsigned char *byte;  /* (nnode,) edge byte into the node */
    int32_t *tok;         /* (nnode,) index into added tokens ending here, -1 */
    size_t nnode, cap;
    unsigned char first[256]; /* 1 when some token starts with the byte */
} tk_trie;

/* ---- piece lists ---- */

typedef struct tk_piece {
    size_t off, len;      /* text in the list's buffer */
    int64_t id;           /* >= 0: an added token already decided; -1: text */
    int orig0;            /* the piece starts at offset 0 of the original text */
} tk_piece;

typedef struct tk_list {
    tk_piece *p;          /* (n,) */
    size_t n, cap;
    char *buf;            /* (blen,) */
    size_t blen, bcap;
} tk_list;

struct qs_tokenizer {
    char *path;
    tk_norm *norms;
    int nnorm;
    tk_pre *pres;
    int npre;
    qs_bpe bpe;
    tk_added *added;
    int nadded;
    tk_trie trie_raw, trie_norm;
    qs_regex gpt2;         /* ByteLevel's own split regex (when some ByteLevel uses it) */
    int has_gpt2;
    qs_regex word;         /* one \w character as the library's regex crate means it */
    int has_word;
    char bytes_char[256][3]; /* ByteLevel: byte -> UTF-8 of its stand-in character */
    unsigned char bytes_char_len[256];
    uint32_t prefix[MAX_SPECIAL], suffix[MAX_SPECIAL];
    int nprefix, nsuffix;
    int64_t doc_eos;
    int64_t vocab_size;
    /* workspace */
    tk_list lists[3];
    char *sbuf;            /* sanitized input */
    size_t sbuf_cap;
    char *nbuf[2];         /* normalizer scratch */
    size_t nbuf_cap[2];
    uint32_t *nfc_work;
    size_t nfc_cap;
    size_t *segs;          /* (3 * nseg,) start, end, remove */
    size_t seg_cap;
};

static int list_reserve_text(tk_list *l, size_t extra) {
    if (l->blen + extra <= l->bcap) return 0;
    size_t cap = l->bcap ? l->bcap : 4096;
    while (cap < l->blen + extra) cap *= 2;
    char *b = realloc(l->buf, cap);
    if (!b) return -1;
    l->buf = b;
    l->bcap = cap;
    return 0;
}

static tk_piece *list_new(tk_list *l) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 256;
        tk_piece *p = realloc(l->p, cap * sizeof(tk_piece));
        if (!p) return NULL;
        l->p = p;
        l->cap = cap;
    }
    return &l->p[l->n++];
}

/* Starts a text piece at the end of l with room for cap bytes: returns where its bytes go
 * (NULL when out of memory); list_close_text then gives its length. */
static char *list_open_text(tk_list *l, size_t cap, int orig0) {
    if (list_reserve_text(l, cap) != 0) return NULL;
    tk_piece *p = list_new(l);
    if (!p) return NULL;
    p->off = l->blen;
    p->len = 0;
    p->id = -1;
    p->orig0 = orig0;
    return l->buf + l->blen;
}

/* Ends the piece list_open_text started: n bytes were written (n <= its cap). */
static void list_close_text(tk_list *l, size_t n) {
    l->p[l->n - 1].len = n;
    l->blen += n;
}

/* Appends a text piece (empty pieces are dropped, as the library filters them). */
static int list_text(tk_list *l, const char *s, size_t n, int orig0) {
    if (n == 0) return 0;
    char *d = list_open_text(l, n, orig0);
    if (!d) return -1;
    memcpy(d, s, n);
    list_close_text(l, n);
    return 0;
}

static int list_token(tk_list *l, uint32_t id) {
    tk_piece *p = list_new(l);
    if (!p) return -1;
    p->off = l->blen;
    p->len = 0;
    p->id = id;
    p->orig0 = 0;
    return 0;
}

static void list_clear(tk_list *l) { l->n = l->blen = 0; }

static void list_free(tk_list *l) {
    free(l->p);
    free(l->buf);
    memset(l, 0, sizeof(*l));
}

/* One step of the pipeline on one text piece p of its input (bytes s, p->len of them):
 * appends the pieces it makes to out. 0, -1 out of memory, -2 regex failure. */
typedef int (*text_step)(qs_tokenizer *t, const void *arg, const tk_piece *p, const char *s,
                         tk_list *out);

/* Runs step on every text piece of in, in order, into out (emptied first); pieces that are
 * already tokens pass through unchanged. */
static int each_text_piece(qs_tokenizer *t, const tk_list *in, tk_list *out, text_step step,
                           const void *arg) {
    list_clear(out);
    for (size_t k = 0; k < in->n; ++k) {
        const tk_piece *p = &in->p[k];
        int rc = p->id >= 0 ? list_token(out, (uint32_t)p->id)
                            : step(t, arg, p, in->buf + p->off, out);
        if (rc != 0) return rc;
    }
    return 0;
}

/* The step that keeps a text piece as it is. */
static int copy_text(qs_tokenizer *t, const void *arg, const tk_piece *p, const char *s,
                     tk_list *out) {
    (void)t;
    (void)arg;
    return list_text(out, s, p->len, p->orig0);
}

/* ---- small helpers ---- */

static char *dup_n(const char *s, size_t n) {
    char *d = malloc(n + 1);
    if (!d) return NULL;
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

static int grow(void **buf, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return 0;
    size_t c = *cap ? *cap : 1024;
    while (c < need) c *= 2;
    void *b = realloc(*buf, c * elem);
    if (!b) return -1;
    *buf = b;
    *cap = c;
    return 0;
}

static int is_white_space(uint32_t c) {
    return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
           c == 0x205F || c == 0x3000;
}

/* Start of the code point that ends at s[end) (valid UTF-8, end > 0). */
static size_t prev_cp(const char *s, size_t end) {
    size_t i = end - 1;
    while (i > 0 && ((unsigned char)s[i] & 0xC0) == 0x80) --i;
    return i;
}

/* Next occurrence of lit (n > 0 bytes) in s[from, len), or len when none. */
static size_t find_lit(const char *s, size_t len, size_t from, const char *lit, size_t n) {
    while (from + n <= len) {
        const char *p = memchr(s + from, lit[0], len - from - n + 1);
        if (!p) return len;
        size_t at = (size_t)(p - s);
        if (memcmp(p, lit, n) == 0) return at;
        from = at + 1;
    }
    return len;
}

static qs_status oom(qs_err *err) { return QS_FAIL(err, QS_ERR_RUNTIME, "out of memory (tokenizer)"); }

/* ---- added-token trie ---- */

static int trie_node(tk_trie *tr) {
    if (tr->nnode == tr->cap) {
        size_t cap = tr->cap ? tr->cap * 2 : 256;
        int32_t *c = realloc(tr->child, cap * sizeof(int32_t));
        if (c) tr->child = c;
        int32_t *s = realloc(tr->sib, cap * sizeof(int32_t));
        if (s) tr->sib = s;
        unsigned char *b = realloc(tr->byte, cap);
        if (b) tr->byte = b;
        int32_t *t = realloc(tr->tok, cap * sizeof(int32_t));
        if (t) tr->tok = t;
        if (!c || !s || !b || !t) return -1;
        tr->cap = cap;
    }
    size_t k = tr->nnode++;
    tr->child[k] = -1;
    tr->sib[k] = -1;
    tr->byte[k] = 0;
    tr->tok[k] = -1;
    return (int)k;
}

static int trie_add(tk_trie *tr, const char *s, size_t n, int tok) {
    if (tr->nnode == 0 && trie_node(tr) < 0) return -1;
    int32_t node = 0;
    for (size_t i = 0; i < n; ++i) {
        unsigned char b = (unsigned char)s[i];
        int32_t c = tr->child[node];
        while (c >= 0 && tr->byte[c] != b) c = tr->sib[c];
        if (c < 0) {
            c = trie_node(tr);
            if (c < 0) return -1;
            tr->byte[c] = b;
            tr->sib[c] = tr->child[node];
            tr->child[node] = c;
        }
        node = c;
    }
    if (n) tr->first[(unsigned char)s[0]] = 1;
    tr->tok[node] = tok; /* a later token with the same text wins */
    return 0;
}

/* Longest token starting at s[i]: its index (length in *len), or -1. */
static int trie_longest(const tk_trie *tr, const char *s, size_t n, size_t i, size_t *len) {
    int best = -1;
    int32_t node = 0;
    for (size_t k = i; k < n; ++k) {
        unsigned char b = (unsigned char)s[k];
        int32_t c = tr->child[node];
        while (c >= 0 && tr->byte[c] != b) c = tr->sib[c];
        if (c < 0) break;
        node = c;
        if (tr->tok[node] >= 0) {
            best = tr->tok[node];
            *len = k + 1 - i;
        }
    }
    return best;
}

static void trie_free(tk_trie *tr) {
    free(tr->child);
    free(tr->sib);
    free(tr->byte);
    free(tr->tok);
    memset(tr, 0, sizeof(*tr));
}

/* 1 when the code point at s[i] is a word character (\w of the regex crate). */
static int word_char_at(qs_tokenizer *t, const char *s, size_t i) {
    int len;
    qs_utf8_decode(s + i, &len);
    int rc = pcre2_match((pcre2_code *)t->word.code, (PCRE2_SPTR)(s + i), (size_t)len, 0,
                         PCRE2_NO_UTF_CHECK, (pcre2_match_data *)t->word.md, NULL);
    return rc >= 0;
}

/* Splits text s[0, n) of a piece by the tokens of `tr` into out (AddedVocabulary's
 * find_matches). */
static int split_added(qs_tokenizer *t, const tk_trie *tr, const char *s, size_t n, int orig0,
                       tk_list *out) {
    if (tr->nnode == 0) return list_text(out, s, n, orig0);
    size_t last = 0, i = 0;
    while (i < n) {
        if (!tr->first[(unsigned char)s[i]]) {
            ++i;
            continue;
        }
        size_t len = 0;
        int k = trie_longest(tr, s, n, i, &len);
        if (k < 0) {
            ++i;
            continue;
        }
        const tk_added *a = &t->added[k];
        size_t start = i, stop = i + len;
        /* the next match is searched after this raw match, whatever lstrip/rstrip or
         * single_word make of it (the library's automaton iterates raw matches): a token
         * inside stripped whitespace is still emitted, and `last` may move back */
        i = stop;
        if (a->single_word) {
            int start_space = start == 0 || !word_char_at(t, s, prev_cp(s, start));
            int stop_space = stop == n || !word_char_at(t, s, stop);
            if (!start_space || !stop_space) continue;
        }
        if (a->lstrip) {
            size_t ns = start;
            while (ns > 0) {
                size_t p = prev_cp(s, ns);
                int l;
                if (!is_white_space(qs_utf8_decode(s + p, &l))) break;
                ns = p;
            }
            start = ns > last ? ns : last;
        }
        if (a->rstrip) {
            while (stop < n) {
                int l;
                if (!is_white_space(qs_utf8_decode(s + stop, &l))) break;
                stop += (size_t)l;
            }
        }
        if (last < start && list_text(out, s + last, start - last, orig0 && last == 0) != 0)
            return -1;
        if (list_token(out, a->id) != 0) return -1;
        last = stop;
    }
    if (last < n && list_text(out, s + last, n - last, orig0 && last == 0) != 0) return -1;
    return 0;
}

/* ---- normalizers ---- */

/* Applies the normalizers to s (n bytes) into t->nbuf; returns the result (pointer and
 * *outn) or NULL when out of memory. */
static const char *normalize(qs_tokenizer *t, const char *s, size_t n, size_t *outn) {
    const char *cur = s;
    size_t cn = n;
    int which = 0;
    for (int k = 0; k < t->nnorm; ++k) {
        tk_norm *nm = &t->norms[k];
        char **dst = &t->nbuf[which];
        size_t *cap = &t->nbuf_cap[which];
        size_t o = 0;
        if (nm->kind == NORM_PREPEND) {
            if (cn == 0) continue;
            if (grow((void **)dst, cap, cn + nm->nlit, 1) != 0) return NULL;
            memcpy(*dst, nm->lit, nm->nlit);
            memcpy(*dst + nm->nlit, cur, cn);
            o = cn + nm->nlit;
        } else if (nm->kind == NORM_NFC) {
            if (qs_nfc_quick(cur, cn)) continue; /* the common case: nothing to do */
            if (grow((void **)dst, cap, 3 * cn + 16, 1) != 0 ||
                grow((void **)&t->nfc_work, &t->nfc_cap, 4 * cn + 16, sizeof(uint32_t)) != 0)
                return NULL;
            o = qs_nfc(cur, cn, *dst, t->nfc_work);
        } else {
            size_t from = 0;
            if (nm->lit) {
                size_t at = find_lit(cur, cn, 0, nm->lit, nm->nlit);
                if (at == cn) continue;
                while (from < cn) {
                    at = find_lit(cur, cn, from, nm->lit, nm->nlit);
                    size_t keep = at - from;
                    size_t add = at < cn ? nm->ncontent : 0;
                    if (grow((void **)dst, cap, o + keep + add, 1) != 0) return NULL;
                    memcpy(*dst + o, cur + from, keep);
                    o += keep;
                    if (at == cn) break;
                    memcpy(*dst + o, nm->content, add);
                    o += add;
                    from = at + nm->nlit;
                }
            } else {
                qs_regex_iter it = {0};
                size_t ms, me;
                int rc;
                while ((rc = qs_regex_next(&nm->re, cur, cn, &it, &ms, &me)) == 1) {
                    if (grow((void **)dst, cap, o + (ms - from) + nm->ncontent, 1) != 0)
                        return NULL;
                    memcpy(*dst + o, cur + from, ms - from);
                    o += ms - from;
                    memcpy(*dst + o, nm->content, nm->ncontent);
                    o += nm->ncontent;
                    from = me;
                }
                if (grow((void **)dst, cap, o + (cn - from) + 1, 1) != 0) return NULL;
                memcpy(*dst + o, cur + from, cn - from);
                o += cn - from;
            }
        }
        cur = *dst;
        cn = o;
        which ^= 1;
    }
    *outn = cn;
    return cur;
}

/* ---- pre-tokenizers ---- */

static int push_seg(qs_tokenizer *t, size_t *nseg, size_t s, size_t e, size_t flag) {
    if (grow((void **)&t->segs, &t->seg_cap, 3 * (*nseg + 1), sizeof(size_t)) != 0) return -1;
    t->segs[3 * *nseg] = s;
    t->segs[3 * *nseg + 1] = e;
    t->segs[3 * *nseg + 2] = flag;
    ++*nseg;
    return 0;
}

/* Segments (start, end, is_match) of s by a pattern (Pattern::find_matches). */
static int find_matches(qs_tokenizer *t, const char *lit, size_t nlit, qs_regex *re,
                        const char *s, size_t n, size_t *nseg) {
    *nseg = 0;
    size_t prev = 0;
    if (lit) {
        size_t from = 0;
        for (;;) {
            size_t at = find_lit(s, n, from, lit, nlit);
            if (at == n) break;
            if (prev != at && push_seg(t, nseg, prev, at, 0) != 0) return -1;
            if (push_seg(t, nseg, at, at + nlit, 1) != 0) return -1;
            prev = from = at + nlit;
        }
    } else {
        qs_regex_iter it = {0};
        size_t ms, me;
        int rc;
        while ((rc = qs_regex_next(re, s, n, &it, &ms, &me)) == 1) {
            if (prev != ms && push_seg(t, nseg, prev, ms, 0) != 0) return -1;
            if (push_seg(t, nseg, ms, me, 1) != 0) return -1;
            prev = me;
        }
        if (rc < 0) return -2;
    }
    if (prev != n && push_seg(t, nseg, prev, n, 0) != 0) return -1;
    return 0;
}

/* Segment k of g kept: (s, e, remove = 0). */
static void seg_keep(size_t *g, size_t k, size_t s, size_t e) {
    g[3 * k] = s;
    g[3 * k + 1] = e;
    g[3 * k + 2] = 0;
}

/* Rewrites the (start, end, is_match) segments into (start, end, remove) following the
 * split behaviour (NormalizedString::split). */
static void apply_behavior(qs_tokenizer *t, size_t *nseg, behavior beh) {
    size_t *g = t->segs, n = *nseg, o = 0;
    int prev_match = 0;
    switch (beh) {
    case BEH_ISOLATED:
        for (size_t i = 0; i < n; ++i) g[3 * i + 2] = 0;
        return;
    case BEH_REMOVED:
        return;
    case BEH_CONTIGUOUS:
    case BEH_MERGED_PREV:
        /* a segment joins the one before it: Contiguous when both are matches or both are
         * not, MergedWithPrevious when it is a match after a non-match */
        for (size_t i = 0; i < n; ++i) {
            int m = (int)g[3 * i + 2];
            int join = beh == BEH_CONTIGUOUS ? m == prev_match : m && !prev_match;
            if (join && o > 0)
                g[3 * (o - 1) + 1] = g[3 * i + 1];
            else
                seg_keep(g, o++, g[3 * i], g[3 * i + 1]);
            prev_match = m;
        }
        break;
    case BEH_MERGED_NEXT: {
        /* right to left, then the kept segments are packed at the end in reverse order */
        size_t w = n; /* segments are written to g[3*(w-1)] going down */
        for (size_t k = n; k-- > 0;) {
            int m = (int)g[3 * k + 2];
            size_t s = g[3 * k], e = g[3 * k + 1];
            if (m && !prev_match && w < n)
                g[3 * w] = s;
            else
                seg_keep(g, --w, s, e);
            prev_match = m;
        }
        for (size_t i = w; i < n; ++i) seg_keep(g, o++, g[3 * i], g[3 * i + 1]);
        break;
    }
    }
    *nseg = o;
}

/* A Split: a String (lit, nlit) or Regex (re) pattern, its behaviour and invert flag. */
typedef struct split_spec {
    const char *lit;
    size_t nlit;
    qs_regex *re;
    behavior beh;
    int invert;
} split_spec;

/* The step that splits a text piece by a split_spec (arg). */
static int split_text(qs_tokenizer *t, const void *arg, const tk_piece *p, const char *s,
                      tk_list *out) {
    const split_spec *sp = arg;
    size_t nseg;
    int rc = find_matches(t, sp->lit, sp->nlit, sp->re, s, p->len, &nseg);
    if (rc != 0) return rc;
    if (sp->invert)
        for (size_t i = 0; i < nseg; ++i) t->segs[3 * i + 2] ^= 1;
    apply_behavior(t, &nseg, sp->beh);
    for (size_t i = 0; i < nseg; ++i) {
        size_t a = t->segs[3 * i], b = t->segs[3 * i + 1];
        if (t->segs[3 * i + 2]) continue;
        if (list_text(out, s + a, b - a, p->orig0 && a == 0) != 0) return -1;
    }
    return 0;
}

/* ByteLevel's prefix space: a text piece that does not start with ' ' gets one. */
static int prefix_space(qs_tokenizer *t, const void *arg, const tk_piece *p, const char *s,
                        tk_list *out) {
    (void)t;
    (void)arg;
    if (s[0] == ' ') return list_text(out, s, p->len, p->orig0);
    char *d = list_open_text(out, p->len + 1, p->orig0);
    if (!d) return -1;
    d[0] = ' ';
    memcpy(d + 1, s, p->len);
    list_close_text(out, p->len + 1);
    return 0;
}

/* ByteLevel's alphabet: every byte of a text piece to its stand-in character. */
static int bytes_to_chars(qs_tokenizer *t, const void *arg, const tk_piece *p, const char *s,
                          tk_list *out) {
    (void)arg;
    char *d = list_open_text(out, 2 * p->len, p->orig0);
    if (!d) return -1;
    size_t o = 0;
    for (size_t i = 0; i < p->len; ++i) {
        unsigned char b = (unsigned char)s[i];
        d[o++] = t->bytes_char[b][0];
        if (t->bytes_char_len[b] == 2) d[o++] = t->bytes_char[b][1];
    }
    list_close_text(out, o);
    return 0;
}

/* ByteLevel: optional prefix space and GPT-2 split, then every byte of every text piece
 * to its stand-in character. */
static int byte_level(qs_tokenizer *t, const tk_pre *pr, tk_list *in, tk_list *out,
                      tk_list *tmp) {
    tk_list *src = in;
    int rc;
    if (pr->add_prefix_space) {
        if ((rc = each_text_piece(t, in, tmp, prefix_space, NULL)) != 0) return rc;
        src = tmp;
    }
    if (pr->use_regex) {
        tk_list *dst = src == tmp ? in : tmp;
        const split_spec gpt2 = {NULL, 0, &t->gpt2, BEH_ISOLATED, 0};
        if ((rc = each_text_piece(t, src, dst, split_text, &gpt2)) != 0) return rc;
        src = dst;
    }
    return each_text_piece(t, src, out, bytes_to_chars, NULL);
}

/* Metaspace's first step on a text piece (arg: the tk_pre): spaces to the replacement,
 * the replacement prepended by the scheme. */
static int replace_spaces(qs_tokenizer *t, const void *arg, const tk_piece *p, const char *s,
                          tk_list *out) {
    const tk_pre *pr = arg;
    (void)t;
    size_t spaces = 0;
    for (size_t i = 0; i < p->len; ++i) spaces += s[i] == ' ';
    char *d = list_open_text(out, p->len + spaces * pr->nlit + pr->nlit, p->orig0);
    if (!d) return -1;
    size_t o = 0;
    int starts = p->len > 0 && (s[0] == ' ' || (p->len >= pr->nlit &&
                                                memcmp(s, pr->lit, pr->nlit) == 0));
    if (!starts && (pr->prepend == 1 || (pr->prepend == 2 && p->orig0))) {
        memcpy(d, pr->lit, pr->nlit);
        o = pr->nlit;
    }
    for (size_t i = 0; i < p->len; ++i) {
        if (s[i] == ' ') {
            memcpy(d + o, pr->lit, pr->nlit);
            o += pr->nlit;
        } else {
            d[o++] = s[i];
        }
    }
    list_close_text(out, o);
    return 0;
}

/* Metaspace: spaces to the replacement, the prefix by scheme, then split before each
 * replacement character (MergedWithNext). */
static int metaspace(qs_tokenizer *t, const tk_pre *pr, const tk_list *in, tk_list *out,
                     tk_list *tmp) {
    int rc = each_text_piece(t, in, tmp, replace_spaces, pr);
    if (rc != 0) return rc;
    if (!pr->split) return each_text_piece(t, tmp, out, copy_text, NULL);
    const split_spec before_each = {pr->lit, pr->nlit, NULL, BEH_MERGED_NEXT, 0};
    return each_text_piece(t, tmp, out, split_text, &before_each);
}

/* ---- encoding ---- */

/* The normalizers, then the added tokens of normalized text, on one text piece. */
static int normalize_piece(qs_tokenizer *t, const void *arg, const tk_piece *p, const char *s,
                           tk_list *out) {
    (void)arg;
    size_t n = p->len;
    if (t->nnorm) {
        s = normalize(t, s, p->len, &n);
        if (!s) return -1;
    }
    return split_added(t, &t->trie_norm, s, n, p->orig0, out);
}

qs_status qs_tokenizer_encode(qs_tokenizer *t, const char *text, size_t n, int add_special,
                              qs_ids *out, qs_err *err) {
    qs_status st = QS_OK;
    if (add_special)
        for (int i = 0; i < t->nprefix; ++i) QS_CHECK(qs_ids_push(out, t->prefix[i], err));
    if (qs_utf8_valid_prefix(text, n) != n) {
        if (grow((void **)&t->sbuf, &t->sbuf_cap, 3 * n + 1, 1) != 0) return oom(err);
        n = qs_utf8_sanitize(text, n, t->sbuf);
        text = t->sbuf;
    }
    tk_list *a = &t->lists[0], *b = &t->lists[1];
    tk_list *tmp = &t->lists[2];
    list_clear(a);
    /* 1. added tokens on the raw text, 2. normalizers, added tokens on normalized text */
    if (split_added(t, &t->trie_raw, text, n, 1, a) != 0 ||
        each_text_piece(t, a, b, normalize_piece, NULL) != 0)
        QS_THROW(err, QS_ERR_RUNTIME, "out of memory (tokenizer)");
    /* 3. pre-tokenizers (b holds the pieces) */
    for (int k = 0; k < t->npre; ++k) {
        const tk_pre *pr = &t->pres[k];
        int rc;
        if (pr->kind == PRE_SPLIT) {
            const split_spec split = {pr->has_re ? NULL : pr->lit, pr->nlit, (qs_regex *)&pr->re,
                                      pr->beh, pr->invert};
            rc = each_text_piece(t, b, a, split_text, &split);
        } else if (pr->kind == PRE_BYTELEVEL) {
            rc = byte_level(t, pr, b, a, tmp);
        } else {
            rc = metaspace(t, pr, b, a, tmp);
        }
        if (rc == -2)
            QS_THROW(err, QS_ERR_RUNTIME, "%s: regular expression matching failed (resource limit)",
                     t->path);
        if (rc != 0) QS_THROW(err, QS_ERR_RUNTIME, "out of memory (tokenizer)");
        tk_list x = *a;
        *a = *b;
        *b = x;
    }
    /* 4. the model */
    for (size_t k = 0; k < b->n; ++k) {
        const tk_piece *p = &b->p[k];
        if (p->id >= 0)
            QS_CHECK(qs_ids_push(out, (uint32_t)p->id, err));
        else
            QS_CHECK(qs_bpe_encode(&t->bpe, b->buf + p->off, p->len, out, err));
    }
    if (add_special)
        for (int i = 0; i < t->nsuffix; ++i) QS_CHECK(qs_ids_push(out, t->suffix[i], err));
done:
    return st;
}

qs_status qs_tokenizer_encode_document(qs_tokenizer *t, const char *text, size_t n,
                                       qs_ids *out, qs_err *err) {
    qs_status st = qs_tokenizer_encode(t, text, n, 1, out, err);
    if (st == QS_OK && t->nprefix == 0 && t->nsuffix == 0 && t->doc_eos >= 0)
        st = qs_ids_push(out, (uint32_t)t->doc_eos, err);
    return st;
}

void qs_tokenizer_specials(const qs_tokenizer *t, const uint32_t **prefix, int *nprefix,
                           const uint32_t **suffix, int *nsuffix, int64_t *doc_eos) {
    *prefix = t->prefix;
    *nprefix = t->nprefix;
    *suffix = t->suffix;
    *nsuffix = t->nsuffix;
    *doc_eos = t->nprefix == 0 && t->nsuffix == 0 ? t->doc_eos : -1;
}

const char *qs_tokenizer_path(const qs_tokenizer *t) { return t->path; }
int64_t qs_tokenizer_vocab_size(const qs_tokenizer *t) { return t->vocab_size; }

/* ---- loading ---- */

static const char *type_of(const cJSON *o) {
    const cJSON *ty = cJSON_GetObjectItemCaseSensitive(o, "type");
    return cJSON_IsString(ty) ? ty->valuestring : NULL;
}

/* Boolean member (absent or null: dflt); -1 when present but not a boolean. */
static int get_bool(const cJSON *o, const char *key, int dflt) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v || cJSON_IsNull(v)) return dflt;
    if (!cJSON_IsBool(v)) return -1;
    return cJSON_IsTrue(v) ? 1 : 0;
}

static qs_status unsupported(qs_tokenizer *t, const char *what, const cJSON *o, qs_err *err) {
    const char *ty = type_of(o);
    if (!ty) return QS_FAIL(err, QS_ERR_INPUT, "%s: %s has no type", t->path, what);
    return QS_FAIL(err, QS_ERR_INPUT, "%s: %s type '%s' is not supported", t->path, what, ty);
}

/* An owned copy of a JSON string's text into *out (its length in *n); -1 when out of memory. */
static int own_string(const cJSON *str, char **out, size_t *n) {
    *n = strlen(str->valuestring);
    *out = dup_n(str->valuestring, *n);
    return *out ? 0 : -1;
}

/* A {"String": s} or {"Regex": r} pattern: literal into *lit or compiled into re. */
static qs_status parse_pattern(qs_tokenizer *t, const cJSON *pat, const char *what, char **lit,
                               size_t *nlit, qs_regex *re, int *has_re, qs_err *err) {
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(pat, "String");
    const cJSON *r = cJSON_GetObjectItemCaseSensitive(pat, "Regex");
    char name[QS_ERR_MSG_MAX / 2];
    snprintf(name, sizeof(name), "%s: %s pattern", t->path, what);
    if (cJSON_IsString(s)) {
        if (!*s->valuestring)
            return QS_FAIL(err, QS_ERR_INPUT, "%s: %s pattern is an empty string", t->path, what);
        if (own_string(s, lit, nlit) != 0) return oom(err);
        if (has_re) *has_re = 0;
        return QS_OK;
    }
    if (cJSON_IsString(r) && re) {
        if (has_re) *has_re = 1;
        return qs_regex_compile(re, r->valuestring, 0, name, err);
    }
    return QS_FAIL(err, QS_ERR_INPUT, "%s: %s pattern must be {\"String\": ...} or {\"Regex\": ...}",
                   t->path, what);
}

/* Appends a zeroed element (elem bytes) to the array *arr of *n elements; returns it, or
 * NULL when out of memory. */
static void *push_zeroed(void **arr, int *n, size_t elem) {
    char *a = realloc(*arr, (size_t)(*n + 1) * elem);
    if (!a) return NULL;
    *arr = a;
    char *e = a + (size_t)(*n)++ * elem;
    memset(e, 0, elem);
    return e;
}

/* Parses one component of a kind (normalizer, pre_tokenizer, post_processor) whose type
 * is ty and not Sequence. */
typedef qs_status (*component_parser)(qs_tokenizer *t, const cJSON *o, const char *ty,
                                      qs_err *err);

/* A component of tokenizer.json: null is none; a Sequence holds its parts in the list under
 * list_key, applied in order (Sequences nest at most 8 deep); any other type goes to one(). */
static qs_status parse_component(qs_tokenizer *t, const cJSON *o, const char *what,
                                 const char *list_key, component_parser one, int depth,
                                 qs_err *err) {
    qs_status st = QS_OK;
    if (cJSON_IsNull(o)) return QS_OK;
    const char *ty = type_of(o);
    if (!cJSON_IsObject(o) || !ty || depth > 8) return unsupported(t, what, o, err);
    if (strcmp(ty, "Sequence") != 0) return one(t, o, ty, err);
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(o, list_key);
    if (!cJSON_IsArray(list))
        return QS_FAIL(err, QS_ERR_INPUT, "%s: %s Sequence has no %s list", t->path, what, list_key);
    const cJSON *x;
    cJSON_ArrayForEach(x, list) QS_CHECK(parse_component(t, x, what, list_key, one, depth + 1, err));
done:
    return st;
}

static qs_status parse_normalizer(qs_tokenizer *t, const cJSON *o, const char *ty, qs_err *err) {
    qs_status st = QS_OK;
    tk_norm *nm = NULL;
    if (strcmp(ty, "Prepend") == 0) {
        const cJSON *p = cJSON_GetObjectItemCaseSensitive(o, "prepend");
        if (!cJSON_IsString(p))
            return QS_FAIL(err, QS_ERR_INPUT, "%s: normalizer Prepend has no prepend string", t->path);
        if (!(nm = push_zeroed((void **)&t->norms, &t->nnorm, sizeof(tk_norm)))) return oom(err);
        nm->kind = NORM_PREPEND;
        if (own_string(p, &nm->lit, &nm->nlit) != 0) return oom(err);
    } else if (strcmp(ty, "Replace") == 0) {
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(o, "content");
        const cJSON *pat = cJSON_GetObjectItemCaseSensitive(o, "pattern");
        if (!cJSON_IsString(c) || !cJSON_IsObject(pat))
            return QS_FAIL(err, QS_ERR_INPUT, "%s: normalizer Replace needs pattern and content", t->path);
        if (!(nm = push_zeroed((void **)&t->norms, &t->nnorm, sizeof(tk_norm)))) return oom(err);
        nm->kind = NORM_REPLACE;
        if (own_string(c, &nm->content, &nm->ncontent) != 0) return oom(err);
        QS_CHECK(parse_pattern(t, pat, "normalizer Replace", &nm->lit, &nm->nlit, &nm->re, NULL, err));
    } else if (strcmp(ty, "NFC") == 0) {
        if (!(nm = push_zeroed((void **)&t->norms, &t->nnorm, sizeof(tk_norm)))) return oom(err);
        nm->kind = NORM_NFC;
    } else {
        return unsupported(t, "normalizer", o, err);
    }
done:
    return st;
}

static qs_status parse_pre(qs_tokenizer *t, const cJSON *o, const char *ty, qs_err *err) {
    qs_status st = QS_OK;
    tk_pre *pr = NULL;
    if (strcmp(ty, "Split") == 0) {
        const cJSON *pat = cJSON_GetObjectItemCaseSensitive(o, "pattern");
        const cJSON *beh = cJSON_GetObjectItemCaseSensitive(o, "behavior");
        int inv = get_bool(o, "invert", 0);
        static const char *const names[] = {"Removed", "Isolated", "MergedWithPrevious",
                                            "MergedWithNext", "Contiguous"};
        if (!cJSON_IsObject(pat) || !cJSON_IsString(beh) || inv < 0)
            return QS_FAIL(err, QS_ERR_INPUT, "%s: pre_tokenizer Split needs pattern, behavior, invert", t->path);
        int b = -1;
        for (int i = 0; i < 5; ++i)
            if (strcmp(beh->valuestring, names[i]) == 0) b = i;
        if (b < 0)
            return QS_FAIL(err, QS_ERR_INPUT, "%s: pre_tokenizer Split behavior '%s' is not supported",
                           t->path, beh->valuestring);
        if (!(pr = push_zeroed((void **)&t->pres, &t->npre, sizeof(tk_pre)))) return oom(err);
        pr->kind = PRE_SPLIT;
        pr->beh = (behavior)b;
        pr->invert = inv;
        QS_CHECK(parse_pattern(t, pat, "pre_tokenizer Split", &pr->lit, &pr->nlit, &pr->re,
                               &pr->has_re, err));
    } else if (strcmp(ty, "ByteLevel") == 0) {
        int aps = get_bool(o, "add_prefix_space", 1), ur = get_bool(o, "use_regex", 1);
        if (aps < 0 || ur < 0)
            return QS_FAIL(err, QS_ERR_INPUT, "%s: pre_tokenizer ByteLevel flags must be booleans", t->path);
        if (!(pr = push_zeroed((void **)&t->pres, &t->npre, sizeof(tk_pre)))) return oom(err);
        pr->kind = PRE_BYTELEVEL;
        pr->add_prefix_space = aps;
        pr->use_regex = ur;
        if (ur && !t->has_gpt2) {
            char name[QS_ERR_MSG_MAX / 2];
            snprintf(name, sizeof(name), "%s: ByteLevel regex", t->path);
            QS_CHECK(qs_regex_compile(&t->gpt2,
                                      "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+"
                                      "|\\s+(?!\\S)|\\s+",
                                      0, name, err));
            t->has_gpt2 = 1;
        }
    } else if (strcmp(ty, "Metaspace") == 0) {
        const cJSON *rep = cJSON_GetObjectItemCaseSensitive(o, "replacement");
        const cJSON *ps = cJSON_GetObjectItemCaseSensitive(o, "prepend_scheme");
        int aps = get_bool(o, "add_prefix_space", -2), split = get_bool(o, "split", 1);
        if (!cJSON_IsString(rep) || !*rep->valuestring || aps == -1 || split < 0)
            return QS_FAIL(err, QS_ERR_INPUT, "%s: pre_tokenizer Metaspace needs a replacement character", t->path);
        int scheme = 1;
        if (cJSON_IsString(ps)) {
            if (strcmp(ps->valuestring, "always") == 0)
                scheme = 1;
            else if (strcmp(ps->valuestring, "first") == 0)
                scheme = 2;
            else if (strcmp(ps->valuestring, "never") == 0)
                scheme = 0;
            else
                return QS_FAIL(err, QS_ERR_INPUT, "%s: pre_tokenizer Metaspace prepend_scheme '%s' is not supported",
                               t->path, ps->valuestring);
        }
        if (aps == 0) {
            if (scheme != 0)
                return QS_FAIL(err, QS_ERR_INPUT, "%s: pre_tokenizer Metaspace add_prefix_space does not match prepend_scheme",
                               t->path);
        }
        if (!(pr = push_zeroed((void **)&t->pres, &t->npre, sizeof(tk_pre)))) return oom(err);
        pr->kind = PRE_METASPACE;
        pr->nlit = (size_t)qs_utf8_len((unsigned char)rep->valuestring[0]);
        if (pr->nlit > strlen(rep->valuestring)) pr->nlit = strlen(rep->valuestring);
        pr->lit = dup_n(rep->valuestring, pr->nlit);
        if (!pr->lit) return oom(err);
        pr->prepend = scheme;
        pr->split = split;
    } else {
        return unsupported(t, "pre_tokenizer", o, err);
    }
done:
    return st;
}

/* Ids of a special token name in a TemplateProcessing's special_tokens. */
static qs_status template_ids(qs_tokenizer *t, const cJSON *specials, const char *name, uint32_t *ids,
                              int *n, qs_err *err) {
    const cJSON *sp = cJSON_GetObjectItemCaseSensitive(specials, name);
    const cJSON *arr = sp ? cJSON_GetObjectItemCaseSensitive(sp, "ids") : NULL;
    if (!cJSON_IsArray(arr))
        return QS_FAIL(err, QS_ERR_INPUT, "%s: post_processor special token '%s' has no ids", t->path, name);
    const cJSON *x;
    cJSON_ArrayForEach(x, arr) {
        if (!cJSON_IsNumber(x) || x->valuedouble < 0 || x->valuedouble > 4294967295.0)
            return QS_FAIL(err, QS_ERR_INPUT, "%s: post_processor special token '%s' has a bad id", t->path, name);
        if (*n >= MAX_SPECIAL)
            return QS_FAIL(err, QS_ERR_INPUT, "%s: post_processor adds more than %d tokens", t->path, MAX_SPECIAL);
        ids[(*n)++] = (uint32_t)x->valuedouble;
    }
    return QS_OK;
}

static qs_status parse_post(qs_tokenizer *t, const cJSON *o, const char *ty, qs_err *err) {
    qs_status st = QS_OK;
    if (strcmp(ty, "ByteLevel") == 0) {
        /* offsets only */
    } else if (strcmp(ty, "TemplateProcessing") == 0) {
        const cJSON *single = cJSON_GetObjectItemCaseSensitive(o, "single");
        const cJSON *specials = cJSON_GetObjectItemCaseSensitive(o, "special_tokens");
        if (!cJSON_IsArray(single))
            return QS_FAIL(err, QS_ERR_INPUT, "%s: post_processor TemplateProcessing single is not a list",
                           t->path);
        uint32_t pre[MAX_SPECIAL], suf[MAX_SPECIAL];
        int npre = 0, nsuf = 0, seen_a = 0;
        const cJSON *x;
        cJSON_ArrayForEach(x, single) {
            const cJSON *sp = cJSON_GetObjectItemCaseSensitive(x, "SpecialToken");
            const cJSON *sq = cJSON_GetObjectItemCaseSensitive(x, "Sequence");
            const cJSON *id = sp ? cJSON_GetObjectItemCaseSensitive(sp, "id")
                                 : sq ? cJSON_GetObjectItemCaseSensitive(sq, "id") : NULL;
            if (!cJSON_IsString(id))
                return QS_FAIL(err, QS_ERR_INPUT, "%s: post_processor TemplateProcessing has a bad piece",
                               t->path);
            if (sq) {
                if (strcmp(id->valuestring, "A") != 0 || seen_a)
                    return QS_FAIL(err, QS_ERR_INPUT,
                                   "%s: post_processor TemplateProcessing single must hold sequence A once",
                                   t->path);
                seen_a = 1;
            } else if (seen_a) {
                QS_CHECK(template_ids(t, specials, id->valuestring, suf, &nsuf, err));
            } else {
                QS_CHECK(template_ids(t, specials, id->valuestring, pre, &npre, err));
            }
        }
        if (!seen_a)
            return QS_FAIL(err, QS_ERR_INPUT, "%s: post_processor TemplateProcessing single has no sequence A",
                           t->path);
        if (t->nprefix + npre > MAX_SPECIAL || t->nsuffix + nsuf > MAX_SPECIAL)
            return QS_FAIL(err, QS_ERR_INPUT, "%s: post_processor adds more than %d tokens", t->path, MAX_SPECIAL);
        /* a later processor wraps the result of the earlier ones */
        memmove(t->prefix + npre, t->prefix, (size_t)t->nprefix * sizeof(uint32_t));
        memcpy(t->prefix, pre, (size_t)npre * sizeof(uint32_t));
        t->nprefix += npre;
        memcpy(t->suffix + t->nsuffix, suf, (size_t)nsuf * sizeof(uint32_t));
        t->nsuffix += nsuf;
    } else {
        return unsupported(t, "post_processor", o, err);
    }
done:
    return st;
}

/* The BPE model: its options here, its vocabulary and merges as tokjson.c read them. */
static qs_status parse_model(qs_tokenizer *t, const qs_tokjson *tj, qs_err *err) {
    qs_status st = QS_OK;
    const cJSON *m = tj->model;
    if (!cJSON_IsObject(m)) return QS_FAIL(err, QS_ERR_INPUT, "%s: no model object", t->path);
    const char *ty = type_of(m);
    if (!ty || strcmp(ty, "BPE") != 0) return unsupported(t, "model", m, err);
    const cJSON *drop = cJSON_GetObjectItemCaseSensitive(m, "dropout");
    if (drop && !cJSON_IsNull(drop) && !(cJSON_IsNumber(drop) && drop->valuedouble == 0.0))
        return QS_FAIL(err, QS_ERR_INPUT, "%s: model BPE dropout is not supported", t->path);
    static const char *const affixes[] = {"continuing_subword_prefix", "end_of_word_suffix"};
    for (int i = 0; i < 2; ++i) {
        const cJSON *a = cJSON_GetObjectItemCaseSensitive(m, affixes[i]);
        if (a && !cJSON_IsNull(a) && !(cJSON_IsString(a) && !*a->valuestring))
            return QS_FAIL(err, QS_ERR_INPUT, "%s: model BPE %s is not supported", t->path, affixes[i]);
    }
    int fuse = get_bool(m, "fuse_unk", 0), bf = get_bool(m, "byte_fallback", 0),
        ign = get_bool(m, "ignore_merges", 0);
    if (fuse < 0 || bf < 0 || ign < 0)
        return QS_FAIL(err, QS_ERR_INPUT, "%s: model BPE flags must be booleans", t->path);
    QS_CHECK(qs_bpe_init(&t->bpe, err));
    t->bpe.fuse_unk = fuse;
    t->bpe.byte_fallback = bf;
    t->bpe.ignore_merges = ign;
    for (int64_t i = 0; i < tj->nvocab; ++i)
        QS_CHECK(qs_bpe_add_token(&t->bpe, tj->vocab[i].s, strlen(tj->vocab[i].s),
                                  (uint32_t)tj->vocab[i].id, err));
    for (int64_t rank = 0; rank < tj->nmerges; ++rank) {
        const qs_tokjson_merge *mg = &tj->merges[rank];
        char missing = 0;
        int rc = qs_bpe_add_merge(&t->bpe, mg->l, mg->nl, mg->r, mg->nr, (uint32_t)rank, &missing,
                                  err);
        if (rc < 0) return QS_ERR_RUNTIME;
        if (rc > 0)
            return QS_FAIL(err, QS_ERR_INPUT, "%s: merge %lld: %s of '%.*s' + '%.*s' is not in the vocabulary",
                           t->path, (long long)rank, missing == 'l' ? "the left part" : missing == 'r' ? "the right part" : "the result",
                           (int)mg->nl, mg->l, (int)mg->nr, mg->r);
    }
    const cJSON *unk = cJSON_GetObjectItemCaseSensitive(m, "unk_token");
    if (cJSON_IsString(unk)) {
        int32_t e = qs_strtab_find(&t->bpe.vocab, unk->valuestring, strlen(unk->valuestring));
        if (e < 0)
            return QS_FAIL(err, QS_ERR_INPUT, "%s: unk_token '%s' is not in the vocabulary", t->path,
                           unk->valuestring);
        t->bpe.unk_id = t->bpe.vocab.val[e];
    } else if (unk && !cJSON_IsNull(unk)) {
        return QS_FAIL(err, QS_ERR_INPUT, "%s: model BPE unk_token is not a string", t->path);
    }
    qs_bpe_finish(&t->bpe);
    t->vocab_size = t->bpe.vocab_max + 1;
done:
    return st;
}

/* Added tokens: ids as the library assigns them (the model's id for a token in the
 * vocabulary, else the next id from the vocabulary size), match text normalized for
 * normalized tokens. */
static qs_status parse_added(qs_tokenizer *t, const qs_tokjson *tj, qs_strtab *ids, qs_err *err) {
    qs_status st = QS_OK;
    if (tj->nadded == 0) return QS_OK;
    t->added = calloc((size_t)tj->nadded + 1, sizeof(tk_added));
    if (!t->added) return oom(err);
    uint32_t next_id = (uint32_t)t->bpe.vocab.count;
    for (int64_t k = 0; k < tj->nadded; ++k) {
        const qs_tokjson_added *x = &tj->added[k];
        const int sw = x->single_word, sp = x->special;
        int nz = x->normalized == -2 ? !sp : x->normalized;
        size_t len = strlen(x->content);
        if (len == 0) continue;
        uint32_t id;
        int32_t e = qs_strtab_find(ids, x->content, len);
        if (e >= 0) {
            id = (uint32_t)ids->val[e];
        } else {
            e = qs_strtab_find(&t->bpe.vocab, x->content, len);
            id = e >= 0 ? (uint32_t)t->bpe.vocab.val[e] : next_id++;
            if (qs_strtab_put(ids, x->content, len, (int32_t)id) < 0) return oom(err);
        }
        tk_added *a = &t->added[t->nadded];
        a->id = id;
        a->single_word = sw;
        a->lstrip = x->lstrip;
        a->rstrip = x->rstrip;
        a->normalized = nz;
        const char *text = x->content;
        size_t tn = len;
        if (nz && t->nnorm) {
            text = normalize(t, x->content, len, &tn);
            if (!text) return oom(err);
        }
        a->content = dup_n(text, tn);
        if (!a->content) return oom(err);
        a->n = tn;
        if (trie_add(nz ? &t->trie_norm : &t->trie_raw, a->content, a->n, t->nadded) != 0) return oom(err);
        if (sw && !t->has_word) {
            char name[QS_ERR_MSG_MAX / 2];
            snprintf(name, sizeof(name), "%s: single_word", t->path);
            QS_CHECK(qs_regex_compile(&t->word, "[\\p{Alphabetic}\\p{M}\\p{Nd}\\p{Pc}\\p{Join_Control}]",
                                      0, name, err));
            t->has_word = 1;
        }
        if ((int64_t)id + 1 > t->vocab_size) t->vocab_size = (int64_t)id + 1;
        ++t->nadded;
    }
done:
    return st;
}

/* The token named by a tokenizer_config.json entry (a string or {"content": ...}); -1 when
 * absent or null. */
static qs_status config_token(qs_tokenizer *t, const cJSON *cfg, const char *key, const char *cfg_path,
                              const qs_strtab *added, int64_t *id, qs_err *err) {
    *id = -1;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, key);
    if (!v || cJSON_IsNull(v)) return QS_OK;
    if (cJSON_IsObject(v)) v = cJSON_GetObjectItemCaseSensitive(v, "content");
    if (!cJSON_IsString(v)) return QS_FAIL(err, QS_ERR_INPUT, "%s: %s is not a string", cfg_path, key);
    size_t len = strlen(v->valuestring);
    int32_t e = qs_strtab_find(added, v->valuestring, len);
    if (e >= 0) {
        *id = (uint32_t)added->val[e];
        return QS_OK;
    }
    e = qs_strtab_find(&t->bpe.vocab, v->valuestring, len);
    if (e < 0)
        return QS_FAIL(err, QS_ERR_INPUT, "%s: %s '%s' is not a token of %s", cfg_path, key, v->valuestring,
                       t->path);
    *id = (uint32_t)t->bpe.vocab.val[e];
    return QS_OK;
}

static qs_status apply_config(qs_tokenizer *t, const char *cfg_path, const qs_strtab *added, qs_err *err) {
    qs_status st = QS_OK;
    cJSON *cfg = NULL;
    if (!qs_path_exists(cfg_path)) return QS_OK;
    QS_CHECK(qs_tokjson_parse_file(cfg_path, TK_MAX_BYTES, &cfg, err));
    if (!cJSON_IsObject(cfg)) QS_THROW(err, QS_ERR_INPUT, "%s: not a JSON object", cfg_path);
    int64_t bos, eos;
    QS_CHECK(config_token(t, cfg, "bos_token", cfg_path, added, &bos, err));
    QS_CHECK(config_token(t, cfg, "eos_token", cfg_path, added, &eos, err));
    t->doc_eos = eos;
    int ab = get_bool(cfg, "add_bos_token", -2), ae = get_bool(cfg, "add_eos_token", -2);
    if (ab == -1 || ae == -1)
        QS_THROW(err, QS_ERR_INPUT, "%s: add_bos_token and add_eos_token must be booleans", cfg_path);
    if (ab >= 0) {
        if (ab && bos < 0) QS_THROW(err, QS_ERR_INPUT, "%s: add_bos_token is true but bos_token is not set", cfg_path);
        t->nprefix = ab ? 1 : 0;
        if (ab) t->prefix[0] = (uint32_t)bos;
    }
    if (ae >= 0) {
        if (ae && eos < 0) QS_THROW(err, QS_ERR_INPUT, "%s: add_eos_token is true but eos_token is not set", cfg_path);
        t->nsuffix = ae ? 1 : 0;
        if (ae) t->suffix[0] = (uint32_t)eos;
    }
done:
    cJSON_Delete(cfg);
    return st;
}

static void init_bytes_char(qs_tokenizer *t) {
    int n = 0;
    for (int b = 0; b < 256; ++b) {
        int keep = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
        uint32_t cp = keep ? (uint32_t)b : (uint32_t)(256 + n++);
        t->bytes_char_len[b] = (unsigned char)qs_utf8_encode(cp, t->bytes_char[b]);
    }
}

qs_status qs_tokenizer_load(const char *path, qs_tokenizer **out, qs_err *err) {
    qs_status st = QS_OK;
    qs_tokjson tj;
    memset(&tj, 0, sizeof(tj));
    qs_strtab added_ids = {0};
    char file[QS_PATH_MAX], cfg[QS_PATH_MAX];
    *out = NULL;
    qs_tokenizer *t = calloc(1, sizeof(*t));
    if (!t) return oom(err);
    t->doc_eos = -1;
    for (int i = 0; i < 256; ++i) t->bpe.byte_id[i] = -1;
    struct stat sb;
    if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode)) {
        snprintf(file, sizeof(file), "%s/tokenizer.json", path);
        snprintf(cfg, sizeof(cfg), "%s/tokenizer_config.json", path);
    } else {
        snprintf(file, sizeof(file), "%s", path);
        const char *slash = strrchr(path, '/');
        if (slash)
            snprintf(cfg, sizeof(cfg), "%.*s/tokenizer_config.json", (int)(slash - path), path);
        else
            snprintf(cfg, sizeof(cfg), "tokenizer_config.json");
    }
    t->path = dup_n(file, strlen(file));
    if (!t->path) QS_THROW(err, QS_ERR_RUNTIME, "out of memory (tokenizer)");
    init_bytes_char(t);
    QS_CHECK(qs_tokjson_read(&tj, file, TK_MAX_BYTES, err));
    const cJSON *root = tj.root;
    QS_CHECK(parse_model(t, &tj, err));
    QS_CHECK(parse_component(t, cJSON_GetObjectItemCaseSensitive(root, "normalizer"), "normalizer",
                             "normalizers", parse_normalizer, 0, err));
    QS_CHECK(parse_component(t, cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer"),
                             "pre_tokenizer", "pretokenizers", parse_pre, 0, err));
    QS_CHECK(parse_component(t, cJSON_GetObjectItemCaseSensitive(root, "post_processor"),
                             "post_processor", "processors", parse_post, 0, err));
    QS_CHECK(parse_added(t, &tj, &added_ids, err));
    QS_CHECK(apply_config(t, cfg, &added_ids, err));
    *out = t;
done:
    qs_tokjson_free(&tj);
    qs_strtab_free(&added_ids);
    if (st != QS_OK) qs_tokenizer_free(t);
    return st;
}

void qs_tokenizer_free(qs_tokenizer *t) {
    if (!t) return;
    for (int i = 0; i < t->nnorm; ++i) {
        free(t->norms[i].lit);
        free(t->norms[i].content);
        qs_regex_free(&t->norms[i].re);
    }
    free(t->norms);
    for (int i = 0; i < t->npre; ++i) {
        free(t->pres[i].lit);
        qs_regex_free(&t->pres[i].re);
    }
    free(t->pres);
    for (int i = 0; i < t->nadded; ++i) free(t->added[i].content);
    free(t->added);
    trie_free(&t->trie_raw);
    trie_free(&t->trie_norm);
    qs_regex_free(&t->gpt2);
    qs_regex_free(&t->word);
    qs_bpe_free(&t->bpe);
    for (int i = 0; i < 3; ++i) list_free(&t->lists[i]);
    free(t->sbuf);
    free(t->nbuf[0]);
    free(t->nbuf[1]);
    free(t->nfc_work);
    free(t->segs);
    free(t->path);
    free(t);
}
