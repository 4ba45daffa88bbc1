/* test_text.c: the pieces of pipeline/text that the reference test reaches only through
 * whole documents: UTF-8 replacement of ill-formed bytes (as Python's errors="replace"),
 * NFC (expected strings from Python's unicodedata.normalize), the BPE model (merge order,
 * ties, ignore_merges, byte fallback, fused unknowns), and mpi/'s qs_comm_ordered_sink on a
 * serial comm. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "bpe.h"
#include "comm.h"
#include "nfc.h"
#include "utf8.h"



static void test_utf8(void) {
    static const struct { const char *in; size_t n; const char *want; } cases[] = {
        {"abc", 3, "abc"},
        {"\xc3\x28", 2, "\xef\xbf\xbd("},                    /* bad continuation */
        {"\xed\xa0\x80", 3, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"}, /* surrogate */
        {"\xf0\x9f\x98", 3, "\xef\xbf\xbd"},                  /* truncated 4-byte */
        {"\xe0\x80\xaf", 3, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"}, /* overlong */
        {"\xf4\x90\x80\x80", 4, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"}, /* > U+10FFFF */
        {"\xe2\x82" "a", 3, "\xef\xbf\xbd" "a"},
        {"\xff\xfe", 2, "\xef\xbf\xbd\xef\xbf\xbd"},
        {"\xf0\x9f\x98\x80\x80", 5, "\xf0\x9f\x98\x80\xef\xbf\xbd"},
        {"x\xc2", 2, "x\xef\xbf\xbd"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); ++i) {
        char out[64];
        size_t n = qs_utf8_sanitize(cases[i].in, cases[i].n, out);
        CHECK(n == strlen(cases[i].want) && memcmp(out, cases[i].want, n) == 0,
              "utf8 case %zu: got %zu bytes", i, n);
        CHECK((qs_utf8_valid_prefix(cases[i].in, cases[i].n) == cases[i].n) == (i == 0),
              "utf8 valid prefix case %zu", i);
    }
}

static void test_nfc(void) {
    static const char *const cases[][2] = { /* from Python's unicodedata.normalize("NFC") */
        {"e\xcc\x81", "\xc3\xa9"},
        {"\xe1\x84\x80\xe1\x85\xa1\xe1\x86\xa8", "\xea\xb0\x81"},
        {"\xe2\x84\xab", "\xc3\x85"},
        {"q\xcc\x87\xcc\xa3", "q\xcc\xa3\xcc\x87"},
        {"\xe0\xa5\x98", "\xe0\xa4\x95\xe0\xa4\xbc"},
        {"A\xcc\x8a\xcc\x81x", "\xc7\xba" "x"},
        {"\xe0\xad\x87\xe0\xac\xbe", "\xe0\xad\x8b"},
        {"a\xcc\x81\xcc\x81", "\xc3\xa1\xcc\x81"},
        {"\xcc\x81" "e", "\xcc\x81" "e"},
        {"\xea\xb0\x80\xe1\x86\xa8", "\xea\xb0\x81"},
        {"\xe1\xba\x9b\xcc\xa3", "\xe1\xba\x9b\xcc\xa3"},
        {"caf\xc3\xa9 \xe4\xb8\xad\xe6\x96\x87 \xf0\x9f\x98\x80", "caf\xc3\xa9 \xe4\xb8\xad\xe6\x96\x87 \xf0\x9f\x98\x80"},
        {"\xc3\x85\xcc\xa7", "\xc3\x85\xcc\xa7"},
        {"xx e\xcc\x81 yy \xe2\x84\xab zz", "xx \xc3\xa9 yy \xc3\x85 zz"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); ++i) {
        const char *in = cases[i][0], *want = cases[i][1];
        size_t n = strlen(in);
        char *out = malloc(3 * n + 16);
        uint32_t *work = malloc((4 * n + 16) * sizeof(uint32_t));
        size_t m = qs_nfc(in, n, out, work);
        CHECK(m == strlen(want) && memcmp(out, want, m) == 0, "nfc case %zu: got %.*s", i, (int)m, out);
        /* the quick check never says "unchanged" for text NFC changes */
        CHECK(!qs_nfc_quick(in, n) || strcmp(in, want) == 0, "nfc quick check case %zu", i);
        free(out);
        free(work);
    }
    const char *plain = "plain ASCII, caf\xc3\xa9, \xe4\xb8\xad\xe6\x96\x87, \xf0\x9f\x98\x80";
    CHECK(qs_nfc_quick(plain, strlen(plain)), "nfc quick check of NFC text");
}

static void add(qs_bpe *b, const char *tok, uint32_t id) {
    qs_err err = {0};
    CHECK(qs_bpe_add_token(b, tok, strlen(tok), id, &err) == QS_OK, "add %s", tok);
}

static void merge(qs_bpe *b, const char *l, const char *r, uint32_t rank) {
    qs_err err = {0};
    char missing = 0;
    CHECK(qs_bpe_add_merge(b, l, strlen(l), r, strlen(r), rank, &missing, &err) == 0, "merge %s %s", l, r);
}

static int encode_is(qs_bpe *b, const char *word, const uint32_t *want, size_t nwant) {
    qs_err err = {0};
    qs_ids ids = {0};
    int ok = qs_bpe_encode(b, word, strlen(word), &ids, &err) == QS_OK && ids.n == nwant &&
             memcmp(ids.v, want, nwant * sizeof(uint32_t)) == 0;
    if (!ok) {
        fprintf(stderr, "  %s ->", word);
        for (size_t i = 0; i < ids.n; ++i) fprintf(stderr, " %u", ids.v[i]);
        fputc('\n', stderr);
    }
    qs_ids_free(&ids);
    return ok;
}

static void test_bpe(void) {
    qs_err err = {0};
    qs_bpe b;
    qs_bpe_init(&b, &err);
    add(&b, "a", 0);
    add(&b, "b", 1);
    add(&b, "c", 2);
    add(&b, "ab", 3);
    add(&b, "bc", 4);
    add(&b, "abc", 5);
    add(&b, "aa", 6);
    add(&b, "<unk>", 7);
    add(&b, "<0xC3>", 8);
    add(&b, "<0xA9>", 9);
    add(&b, "ca", 10); /* no merge makes it: only ignore_merges gives it */
    merge(&b, "b", "c", 0);  /* bc before ab: "abc" = a + bc */
    merge(&b, "a", "b", 1);
    merge(&b, "a", "bc", 2);
    merge(&b, "a", "a", 3);
    qs_bpe_finish(&b);
    b.unk_id = 7;
    CHECK(encode_is(&b, "abc", (uint32_t[]){5}, 1), "bpe abc");
    CHECK(encode_is(&b, "abab", (uint32_t[]){3, 3}, 2), "bpe abab");
    CHECK(encode_is(&b, "aaa", (uint32_t[]){6, 0}, 2), "bpe aaa: leftmost pair first");
    /* lowest rank first everywhere: bc, bc, then a+bc twice (a+b entries are stale), a+a */
    CHECK(encode_is(&b, "abcabcaa", (uint32_t[]){5, 5, 6}, 3), "bpe abcabcaa: merge order");
    CHECK(encode_is(&b, "ca", (uint32_t[]){2, 0}, 2), "bpe ca without ignore_merges");
    CHECK(encode_is(&b, "xyab", (uint32_t[]){7, 7, 3}, 3), "bpe unknowns, not fused");
    b.fuse_unk = 1;
    CHECK(encode_is(&b, "yxab", (uint32_t[]){7, 3}, 2), "bpe unknowns fused");
    b.byte_fallback = 1;
    CHECK(encode_is(&b, "\xc3\xa9z", (uint32_t[]){8, 9, 7}, 3), "bpe byte fallback, then unknown");
    b.ignore_merges = 1;
    CHECK(encode_is(&b, "bc", (uint32_t[]){4}, 1), "bpe ignore_merges");
    CHECK(encode_is(&b, "cab", (uint32_t[]){2, 3}, 2), "bpe ignore_merges: not in the vocabulary");
    qs_strtab_clear(&b.cache); /* the flag changed after "ca" was cached */
    CHECK(encode_is(&b, "ca", (uint32_t[]){10}, 1), "bpe ignore_merges: the word is a token");
    qs_bpe_free(&b);
}

static qs_status sink(void *ctx, const void *buf, size_t n, qs_err *err) {
    (void)err;
    size_t *got = ctx;
    got[0] += 1;
    got[1] += n;
    got[2] = ((const unsigned char *)buf)[n - 1];
    return QS_OK;
}

static void test_ordered_sink(void) {
    qs_comm c;
    qs_comm_serial(&c);
    qs_err err = {0};
    unsigned char data[5] = {1, 2, 3, 4, 5};
    size_t got[3] = {0, 0, 0};
    CHECK(qs_comm_ordered_sink(&c, data, 5, 0, sink, got, &err) == QS_OK, "ordered sink");
    CHECK(got[0] == 1 && got[1] == 5 && got[2] == 5, "ordered sink: %zu calls %zu bytes", got[0], got[1]);
    CHECK(qs_comm_ordered_sink(&c, data, 0, 0, sink, got, &err) == QS_OK && got[0] == 1,
          "ordered sink: nothing for an empty buffer");
}

int main(void) {
    test_utf8();
    test_nfc();
    test_bpe();
    test_ordered_sink();
    return qs_test_finish("test_text");
}
