/* test_gguf_quant.c: the GGUF block types (pipeline/quant/gguf_*): block sizes, the
 * unpacked <-> bytes layout as a bijection, llama.cpp's quantizers reproduced bit for bit
 * (SHA-256 of the bytes ggml itself wrote for the rows of gguf_testdata.h, with and without
 * importance), any row split giving the same bytes, dequantized error per type within
 * bounds and ordered by bits, and bad input. Fails via exit code.
 * (The layouts against an independent decoder: test_gguf_numpy, which decodes these bytes
 * with the gguf package.) */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "gguf_internal.h"
#include "gguf_quant.h"
#include "gguf_testdata.h"
#include "sha256.h"


static const qs_gguf_type k_types[] = {QS_GGUF_Q4_0, QS_GGUF_Q4_1, QS_GGUF_Q5_0, QS_GGUF_Q5_1,
                                       QS_GGUF_Q8_0, QS_GGUF_Q2_K, QS_GGUF_Q3_K, QS_GGUF_Q4_K,
                                       QS_GGUF_Q5_K, QS_GGUF_Q6_K};
#define NTYPES ((int)(sizeof(k_types) / sizeof(k_types[0])))

/* The bytes ggml (commit d99724f of ggml-org/ggml, ggml-base built by its CMake defaults on
 * x86-64: no FMA contraction) wrote with ggml_quantize_chunk for gguf_td_fill(W, 1152, 1024,
 * 20261203) and gguf_td_importance(imp, 1024, 777): SHA-256 per type, without (0) and with (1)
 * the importance. Q8_0 has no importance path. */
static const struct {
    qs_gguf_type type;
    int imp;
    const char *sha;
} k_golden[] = {
    {QS_GGUF_Q4_0, 0, "3d5af695ad96364ec57c83bbec75aa9b250abb4040debae7f239e5fa1dfd5bed"},
    {QS_GGUF_Q4_0, 1, "f3522dbdc2f142a9f22befc7bbe0ba5b96d953247c2ecd4cca562c1b714a47a2"},
    {QS_GGUF_Q4_1, 0, "acb54c561f482a03e3eb97c6e4cab7f437c14eb113f22010df06e6c8fcc2ed34"},
    {QS_GGUF_Q4_1, 1, "e8a171a4785384403879a7aff06c5274619d6a6ad5ef7ab11114aa91ed0f3437"},
    {QS_GGUF_Q5_0, 0, "5ce782ab20f1b9661d2087e329f8de206e3da006daf2a0e30e6eff65d218f730"},
    {QS_GGUF_Q5_0, 1, "40eb8099052419d9e2b0dc70040e81690e642fc0753dc4d2cb4736368d1aee12"},
    {QS_GGUF_Q5_1, 0, "4340d40604bb3367f953e31ae2da742742799bd5e6eeb39db791b031b82f5a94"},
    {QS_GGUF_Q5_1, 1, "cccffa283d8f42c300982477ad8624471959a9a1065fba151c608d42027eea57"},
    {QS_GGUF_Q8_0, 0, "052869067521000c5485156401b44f3d2b96f4921704d9eb55f9be93c7bfc4fa"},
    {QS_GGUF_Q8_0, 1, "052869067521000c5485156401b44f3d2b96f4921704d9eb55f9be93c7bfc4fa"},
    {QS_GGUF_Q2_K, 0, "8cb7304f0d09ce1d472d4636a89f12b316d7c7c18402ba51acca91e00dfdc684"},
    {QS_GGUF_Q2_K, 1, "6f32d6f0a8cbbe660f6658f4b72b594b2b61fbcf83de3150ec0961083098cab9"},
    {QS_GGUF_Q3_K, 0, "85658bf98e919d3825837b2f9e070904f6c5b18edffb8f111cb85ef848e5caa0"},
    {QS_GGUF_Q3_K, 1, "81c35e4e164feb974c26e62cecca7e55408226aabebdbfbd3634c9f6bb07b48b"},
    {QS_GGUF_Q4_K, 0, "b04b8e311c9db5f9731d7133b990195b209a96d4141a8e7dab895e84cd6d2f88"},
    {QS_GGUF_Q4_K, 1, "9957e91ede4d022a26b57a44c6ff8e4dd6c204cd7c1f208cb3daf8be30a0a109"},
    {QS_GGUF_Q5_K, 0, "a3d1bfafc645a94b57f702472bf0ff48b80956f2a46f849f8e6cc30379575cc0"},
    {QS_GGUF_Q5_K, 1, "2159f12d4fe3ab65eb0201e8e96cbfede2251d576252f292dc4b74cae282cc43"},
    {QS_GGUF_Q6_K, 0, "d6d559b7b8a3ddec7cebef2aace0d0a10f5543c4a401b3d2e299b3f15962a6d7"},
    {QS_GGUF_Q6_K, 1, "c061fc63ffe44257caf80ba54237286096ad2abb90a3b2e5b9bde7cbaa0ef843"},
};

static uint64_t g_rng = 99u;
static uint32_t rnd(void) {
    return (uint32_t)(gguf_td_next(&g_rng) >> 32);
}

/* Block sizes: the type table, the structs and llama.cpp's bits per weight agree. */
static void test_sizes(void) {
    static const struct {
        qs_gguf_type t;
        int64_t bytes, elems;
        size_t sz;
    } k[] = {{QS_GGUF_Q4_0, 18, 32, sizeof(qs_blk_q4_0)},
             {QS_GGUF_Q4_1, 20, 32, sizeof(qs_blk_q4_1)},
             {QS_GGUF_Q5_0, 22, 32, sizeof(qs_blk_q5_0)},
             {QS_GGUF_Q5_1, 24, 32, sizeof(qs_blk_q5_1)},
             {QS_GGUF_Q8_0, 34, 32, sizeof(qs_blk_q8_0)},
             {QS_GGUF_Q2_K, 84, 256, sizeof(qs_blk_q2_K)},
             {QS_GGUF_Q3_K, 110, 256, sizeof(qs_blk_q3_K)},
             {QS_GGUF_Q4_K, 144, 256, sizeof(qs_blk_q4_K)},
             {QS_GGUF_Q5_K, 176, 256, sizeof(qs_blk_q5_K)},
             {QS_GGUF_Q6_K, 210, 256, sizeof(qs_blk_q6_K)}};
    for (size_t i = 0; i < sizeof(k) / sizeof(k[0]); ++i) {
        const qs_gguf_desc *d = qs_gguf_desc_of(k[i].t);
        CHECK(d && d->qk == k[i].elems && d->nsub * d->sub == d->qk, "%s desc",
              qs_gguf_type_name(k[i].t));
        CHECK(qs_gguf_block_bytes(k[i].t) == k[i].bytes && (int64_t)k[i].sz == k[i].bytes &&
                  qs_gguf_block_elems(k[i].t) == k[i].elems,
              "%s: table %lld bytes, struct %zu", qs_gguf_type_name(k[i].t),
              (long long)qs_gguf_block_bytes(k[i].t), k[i].sz);
    }
    CHECK(!qs_gguf_quant_supported(QS_GGUF_F16) && !qs_gguf_quant_supported(QS_GGUF_BF16), "F16");
}

/* Unpacked <-> bytes is a bijection on each type's value ranges: random blocks survive
 * encode/decode, and random bytes survive decode/encode (every byte is a field bit). */
static void test_layout_bijection(void) {
    for (int ti = 0; ti < NTYPES; ++ti) {
        const qs_gguf_desc *t = qs_gguf_desc_of(k_types[ti]);
        const int64_t bb = qs_gguf_block_bytes(t->type);
        int bits = 0;
        while ((1 << bits) <= t->qmax) ++bits;
        int bad = 0;
        for (int it = 0; it < 200; ++it) {
            qs_gguf_blk a, b;
            uint8_t bytes[256], bytes2[256];
            memset(&a, 0, sizeof(a));
            a.d = (uint16_t)rnd();
            if (t->bias != QS_GGUF_BIAS_NONE) a.dm = (uint16_t)rnd();
            for (int e = 0; e < t->qk; ++e) a.q[e] = (uint8_t)(rnd() & ((1u << bits) - 1));
            if (t->kquant)
                for (int j = 0; j < t->nsub; ++j) {
                    a.sc[j] = (int16_t)(t->sclo + (int)(rnd() % (uint32_t)(t->schi - t->sclo + 1)));
                    if (t->mnhi) a.mn[j] = (uint8_t)(rnd() % (uint32_t)(t->mnhi + 1));
                }
            qs_gguf_blk_encode(t, &a, bytes);
            qs_gguf_blk_decode(t, bytes, &b);
            if (memcmp(&a, &b, sizeof(a)) != 0) bad++;
            for (int64_t i = 0; i < bb; ++i) bytes[i] = (uint8_t)rnd();
            qs_gguf_blk_decode(t, bytes, &b);
            qs_gguf_blk_encode(t, &b, bytes2);
            if (memcmp(bytes, bytes2, (size_t)bb) != 0) bad++;
        }
        CHECK(bad == 0, "%s: %d of 400 round trips differ", qs_gguf_type_name(t->type), bad);
    }
}

/* A few positions written out from ggml-common.h's comments, independent of the encoder. */
static void test_layout_positions(void) {
    qs_gguf_blk b;
    uint8_t y[256];
    /* Q5_0: code 17 = 0b10001 at weight 20: low nibble in byte 6 + 4 (high half), bit 20 of qh */
    memset(&b, 0, sizeof(b));
    b.q[20] = 17;
    b.d = 0x3c00;
    qs_gguf_blk_encode(qs_gguf_desc_of(QS_GGUF_Q5_0), &b, y);
    CHECK(y[0] == 0x00 && y[1] == 0x3c && y[2 + 2] == 0x10 && y[6 + 4] == 0x10, "Q5_0 position");
    /* Q2_K: weight 128 + 32*3 + 5 = 229 with code 2 -> byte 16 + 32 + 5, bits 6..7 */
    memset(&b, 0, sizeof(b));
    b.q[229] = 2;
    b.sc[14] = 9;
    b.mn[14] = 4;
    qs_gguf_blk_encode(qs_gguf_desc_of(QS_GGUF_Q2_K), &b, y);
    CHECK(y[16 + 37] == 0x80 && y[14] == 0x49, "Q2_K position");
    /* Q3_K: weight 200 with code 5 (high bit set, low bits 1): hmask[200 % 32] bit 200 / 32,
     * qs byte 32 + 32 + (200 - 128) % 32 at bits 2 * ((200 - 128) / 32); scale 13 = -32 + 45
     * (45 = 0b101101): low nibble 0xD in the high half of byte 96 + 5, top bits 0b10 at byte
     * 96 + 8 + 1, bits 6..7 */
    memset(&b, 0, sizeof(b));
    for (int j = 0; j < 16; ++j) b.sc[j] = -32;
    b.q[200] = 5;
    b.sc[13] = 13;
    qs_gguf_blk_encode(qs_gguf_desc_of(QS_GGUF_Q3_K), &b, y);
    CHECK(y[200 % 32] == 1u << (200 / 32) && y[32 + 32 + 8] == 1u << 4 && y[96 + 5] == 0xD0 &&
              y[96 + 9] == 0x80,
          "Q3_K position");
    /* Q4_K: sub-block 5 scale 0b110011, min 0b011100: low nibbles in byte 4 + 9, top bits in
     * bits 6..7 of bytes 4 + 1 (scale) and 4 + 5 (min) */
    memset(&b, 0, sizeof(b));
    b.sc[5] = 0x33;
    b.mn[5] = 0x1c;
    b.q[64 + 32 + 3] = 0xA; /* high nibble of byte 16 + 32 + 3 */
    qs_gguf_blk_encode(qs_gguf_desc_of(QS_GGUF_Q4_K), &b, y);
    CHECK(y[4 + 9] == 0xC3 && y[4 + 1] == 0xC0 && y[4 + 5] == 0x40 && y[16 + 35] == 0xA0,
          "Q4_K position");
    /* Q6_K: weight 128 + 64 + 7 = 199, code 0b101110: low nibble in the high half of
     * ql[64 + 7], top bits 0b10 in qh[32 + 7] bits 4..5; scale -3 at byte 192 + 12 */
    memset(&b, 0, sizeof(b));
    b.q[199] = 0x2E;
    b.sc[12] = -3;
    qs_gguf_blk_encode(qs_gguf_desc_of(QS_GGUF_Q6_K), &b, y);
    CHECK(y[64 + 7] == 0xE0 && y[128 + 32 + 7] == 0x20 && y[192 + 12] == 0xFD, "Q6_K position");
}

/* llama.cpp's bytes for the test rows, without and with importance. */
static void test_golden(void) {
    const int64_t rows = 1152, n = 1024; /* large enough to catch one-ulp changes */
    float *W = malloc((size_t)(rows * n) * sizeof(float)), imp[1024];
    gguf_td_fill(W, rows, n, 20261203u);
    gguf_td_importance(imp, n, 777u);
    for (size_t i = 0; i < sizeof(k_golden) / sizeof(k_golden[0]); ++i) {
        const qs_gguf_type t = k_golden[i].type;
        const int64_t rb = qs_gguf_row_bytes(t, n);
        uint8_t *y = malloc((size_t)(rows * rb));
        qs_err e = {0};
        CHECK(qs_gguf_quantize_rows(t, W, rows, n, k_golden[i].imp ? imp : NULL, y, &e) == QS_OK,
              "%s", e.msg);
        char h[65];
        qs_sha256_hex(y, (size_t)(rows * rb), h);
        CHECK(strcmp(h, k_golden[i].sha) == 0, "%s imp %d: bytes differ from ggml's (sha %s)",
              qs_gguf_type_name(t), k_golden[i].imp, h);
        free(y);
    }
    free(W);
}

/* Any split of the rows gives the same bytes; two calls give the same bytes. */
static void test_row_split(void) {
    const int64_t rows = 45, n = 768;
    float *W = malloc((size_t)(rows * n) * sizeof(float)), imp[768];
    gguf_td_fill(W, rows, n, 5u);
    gguf_td_importance(imp, n, 6u);
    for (int ti = 0; ti < NTYPES; ++ti)
        for (int wi = 0; wi < 2; ++wi) {
            const qs_gguf_type t = k_types[ti];
            const int64_t rb = qs_gguf_row_bytes(t, n);
            uint8_t *a = malloc((size_t)(rows * rb)), *b = malloc((size_t)(rows * rb));
            qs_err e = {0};
            const float *im = wi ? imp : NULL;
            CHECK(qs_gguf_quantize_rows(t, W, rows, n, im, a, &e) == QS_OK, "%s", e.msg);
            const int64_t cut[] = {0, 1, 7, 30, 45};
            for (int c = 0; c + 1 < 5; ++c)
                CHECK(qs_gguf_quantize_rows(t, W + cut[c] * n, cut[c + 1] - cut[c], n, im,
                                            b + cut[c] * rb, &e) == QS_OK,
                      "%s", e.msg);
            CHECK(memcmp(a, b, (size_t)(rows * rb)) == 0, "%s imp %d: split differs",
                  qs_gguf_type_name(t), wi);
            free(a);
            free(b);
        }
    free(W);
}

/* Relative RMS error of dequantize(quantize(W)) on bell-shaped and uniform rows: within a
 * per-type bound and decreasing with the bits (Q2_K > Q3_K > Q4_* > Q5_* > Q6_K > Q8_0). */
static void test_accuracy(void) {
    const int64_t rows = 18, n = 1024; /* kinds 0 and 1 (rows r % 9 in {0, 1}) */
    float *W = malloc((size_t)(rows * n) * sizeof(float)),
          *Y = malloc((size_t)(rows * n) * sizeof(float));
    gguf_td_fill(W, rows, n, 11u);
    /* bounds: about 1.5 times the measured values (0.064 0.061 0.030 0.029 0.0037 0.235
     * 0.125 0.054 0.027 0.013) */
    static const double bound[NTYPES] = {0.095, 0.09, 0.045, 0.045, 0.0056,
                                         0.35,  0.19, 0.08,  0.041, 0.02};
    double rel[NTYPES];
    for (int ti = 0; ti < NTYPES; ++ti) {
        const qs_gguf_type t = k_types[ti];
        uint8_t *y = malloc((size_t)(rows * qs_gguf_row_bytes(t, n)));
        qs_err e = {0};
        CHECK(qs_gguf_quantize_rows(t, W, rows, n, NULL, y, &e) == QS_OK, "%s", e.msg);
        CHECK(qs_gguf_dequantize_rows(t, y, rows, n, Y, &e) == QS_OK, "%s", e.msg);
        double num = 0.0, den = 0.0;
        for (int64_t r = 0; r < rows; ++r) {
            if (r % 9 > 1) continue;
            for (int64_t j = 0; j < n; ++j) {
                double d = (double)W[r * n + j] - (double)Y[r * n + j];
                num += d * d;
                den += (double)W[r * n + j] * (double)W[r * n + j];
            }
        }
        rel[ti] = sqrt(num / den);
        CHECK(rel[ti] < bound[ti], "%s: relative RMS error %.4g >= %.4g", qs_gguf_type_name(t),
              rel[ti], bound[ti]);
        free(y);
    }
    /* k_types order: Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q2_K Q3_K Q4_K Q5_K Q6_K */
    CHECK(rel[5] > rel[6] && rel[6] > rel[0] && rel[0] > rel[2] && rel[7] > rel[8] &&
              rel[8] > rel[9] && rel[9] > rel[4] && rel[1] > rel[3],
          "errors not ordered by bits");
    free(W);
    free(Y);
}

static void test_bad_input(void) {
    float W[512], imp[512];
    uint8_t y[4096];
    for (int j = 0; j < 512; ++j) {
        W[j] = 0.01f * (float)(j % 7);
        imp[j] = 1.0f;
    }
    qs_err e = {0};
    CHECK(qs_gguf_quantize_rows(QS_GGUF_Q4_K, W, 1, 384, NULL, y, &e) == QS_ERR_INPUT &&
              strstr(e.msg, "384"),
          "%s", e.msg);
    qs_err_clear(&e);
    CHECK(qs_gguf_quantize_rows(QS_GGUF_F16, W, 1, 512, NULL, y, &e) == QS_ERR_INPUT &&
              strstr(e.msg, "F16"),
          "%s", e.msg);
    qs_err_clear(&e);
    W[300] = NAN;
    CHECK(qs_gguf_quantize_rows(QS_GGUF_Q8_0, W, 1, 512, NULL, y, &e) == QS_ERR_INPUT &&
              strstr(e.msg, "column 300"),
          "%s", e.msg);
    W[300] = 0.0f;
    qs_err_clear(&e);
    imp[7] = -1.0f;
    CHECK(qs_gguf_quantize_rows(QS_GGUF_Q4_0, W, 1, 512, imp, y, &e) == QS_ERR_INPUT &&
              strstr(e.msg, "column 7"),
          "%s", e.msg);
    qs_err_clear(&e);
    CHECK(qs_gguf_dequantize_rows(QS_GGUF_Q6_K, y, 1, 100, W, &e) == QS_ERR_INPUT, "dequant shape");
}

int main(void) {
    test_sizes();
    test_layout_bijection();
    test_layout_positions();
    test_golden();
    test_row_split();
    test_accuracy();
    test_bad_input();
    return qs_test_finish("test_gguf_quant");
}
