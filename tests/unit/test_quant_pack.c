/* test_quant_pack.c: the GPTQ layout: exact sizes, can_serve, the bit positions of 2/3/4/8
 * bit packing (checked against the format's word-by-word description), v1 zero-1 storage,
 * and pack/unpack round trips. Fails via exit code. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "pack.h"
#include "quant.h"

static uint32_t g_rng = 12345u;
static uint32_t rnd(void) { return qs_test_xorshift32(&g_rng); }

static void test_sizes(void) {
    qs_pack_bytes s;
    qs_err e = {0};
    CHECK(qs_pack_sizes(4096, 4096, 4, 128, &s, &e) == QS_OK, "%s", e.msg);
    CHECK(s.qweight == 4096LL * 4096 / 2, "qweight %lld", (long long)s.qweight);
    CHECK(s.qzeros == 32LL * 4096 / 2, "qzeros %lld", (long long)s.qzeros);
    CHECK(s.scales == 32LL * 4096 * 2, "scales %lld", (long long)s.scales);
    CHECK(s.g_idx == 4096LL * 4, "g_idx %lld", (long long)s.g_idx);
    CHECK(s.total == s.qweight + s.qzeros + s.scales + s.g_idx, "total");
    CHECK(qs_pack_sizes(11008, 4096, 3, -1, &s, &e) == QS_OK, "%s", e.msg);
    CHECK(s.qweight == 4096LL / 32 * 3 * 11008 * 4, "3-bit qweight %lld", (long long)s.qweight);
    CHECK(s.qzeros == 11008LL / 32 * 3 * 4 && s.scales == 11008LL * 2, "3-bit g-1 zeros/scales");
    /* partial last group: ceil */
    CHECK(qs_pack_sizes(64, 320, 8, 128, &s, &e) == QS_OK && s.scales == 3 * 64 * 2, "partial");
    qs_err_clear(&e);
    CHECK(qs_pack_sizes(100, 4096, 4, 128, &s, &e) == QS_ERR_INPUT && strstr(e.msg, "output size"),
          "%s", e.msg);
    qs_err_clear(&e);
    CHECK(qs_pack_sizes(64, 48, 3, 16, &s, &e) == QS_ERR_INPUT && strstr(e.msg, "input size"), "%s",
          e.msg);
    qs_err_clear(&e);
    CHECK(qs_pack_sizes(64, 64, 5, 16, &s, &e) == QS_ERR_INPUT && strstr(e.msg, "5 bits"), "%s",
          e.msg);

    CHECK(qs_pack_can_serve(11008, 4096, 4, 128, NULL), "llama gate w4g128");
    CHECK(qs_pack_can_serve(4096, 11008, 8, -1, NULL), "w8g-1");
    CHECK(qs_pack_can_serve(256, 256, 2, 32, NULL), "w2g32");
    CHECK(!qs_pack_can_serve(100, 4096, 4, 128, NULL), "d_out 100 at 4 bits");
    CHECK(!qs_pack_can_serve(4096, 4000, 4, 128, NULL), "4000 mod 128");
    CHECK(!qs_pack_can_serve(4096, 4080, 3, -1, NULL), "3 bits needs 32 | d_in");
    CHECK(!qs_pack_can_serve(4096, 4096, 6, 128, NULL), "6 bits");
    qs_err why = {0};
    CHECK(!qs_pack_can_serve(4096, 4000, 4, 128, &why) && strstr(why.msg, "group size"), "%s",
          why.msg);
}

/* The 3-bit scheme described word by word: word 0 holds values 0..9 at 3k and the low two
 * bits of value 10 at 30; word 1 the top bit of 10 at 0, values 11..20 at 3k+1 and the low
 * bit of 21 at 31; word 2 the top two bits of 21 at 0 and values 22..31 at 3k+2. */
static void pack3_described(const uint32_t v[32], uint32_t w[3]) {
    w[0] = w[1] = w[2] = 0;
    for (int k = 0; k < 10; ++k) w[0] |= v[k] << (3 * k);
    w[0] |= (v[10] & 3u) << 30;
    w[1] |= (v[10] >> 2) & 1u;
    for (int k = 0; k < 10; ++k) w[1] |= v[11 + k] << (3 * k + 1);
    w[1] |= (v[21] & 1u) << 31;
    w[2] |= (v[21] >> 1) & 3u;
    for (int k = 0; k < 10; ++k) w[2] |= v[22 + k] << (3 * k + 2);
}

static void test_bit_positions(void) {
    uint32_t v[64], w[6], d[3], back[64];
    for (int t = 0; t < 200; ++t) {
        for (int i = 0; i < 64; ++i) v[i] = rnd() & 7u;
        memset(w, 0, sizeof w);
        qs_pack_stream(v, 64, 3, w, 1);
        pack3_described(v, d);
        CHECK(memcmp(w, d, sizeof d) == 0, "3-bit words 0-2 %08x %08x %08x vs %08x %08x %08x", w[0],
              w[1], w[2], d[0], d[1], d[2]);
        pack3_described(v + 32, d);
        CHECK(memcmp(w + 3, d, sizeof d) == 0, "3-bit words 3-5");
        qs_unpack_stream(w, 64, 3, 1, back);
        CHECK(memcmp(v, back, sizeof v) == 0, "3-bit unpack");
    }
    /* 4 bits: lowest index in the lowest nibble */
    uint32_t v4[8] = {1, 2, 3, 4, 5, 6, 7, 15}, w4 = 0;
    qs_pack_stream(v4, 8, 4, &w4, 1);
    CHECK(w4 == 0xf7654321u, "4-bit word %08x", w4);
    uint32_t v8[4] = {0x11, 0x22, 0x33, 0xff}, w8 = 0;
    qs_pack_stream(v8, 4, 8, &w8, 1);
    CHECK(w8 == 0xff332211u, "8-bit word %08x", w8);
    uint32_t v2[16], w2 = 0;
    for (int i = 0; i < 16; ++i) v2[i] = (uint32_t)(i & 3);
    qs_pack_stream(v2, 16, 2, &w2, 1);
    CHECK(w2 == 0xe4e4e4e4u, "2-bit word %08x", w2);
}

static void round_trip(int bits, int gs, int v1) {
    const int64_t d_out = 64, d_in = 192;
    const int64_t G = qs_quant_ngroups(d_in, gs);
    const int maxq = (1 << bits) - 1;
    uint8_t *codes = malloc(d_out * d_in), *codes2 = malloc(d_out * d_in);
    uint16_t *sc = malloc(d_out * G * 2), *sc2 = malloc(d_out * G * 2);
    int32_t *z = malloc(d_out * G * 4), *z2 = malloc(d_out * G * 4);
    int32_t *g = malloc(d_in * 4), *g2 = malloc(d_in * 4);
    for (int64_t i = 0; i < d_out * d_in; ++i) codes[i] = (uint8_t)(rnd() % (uint32_t)(maxq + 1));
    for (int64_t i = 0; i < d_out * G; ++i) {
        sc[i] = (uint16_t)(rnd() & 0x7bffu);
        z[i] = v1 ? 1 + (int32_t)(rnd() % (uint32_t)maxq) : (int32_t)(rnd() % (uint32_t)(maxq + 1));
    }
    for (int64_t j = 0; j < d_in; ++j) g[j] = (int32_t)(rnd() % (uint32_t)G);
    qs_pack_bytes s;
    qs_err e = {0};
    CHECK(qs_pack_sizes(d_out, d_in, bits, gs, &s, &e) == QS_OK, "%s", e.msg);
    int32_t *qw = malloc((size_t)s.qweight), *qz = malloc((size_t)s.qzeros);
    uint16_t *st = malloc((size_t)s.scales);
    int32_t *gi = malloc((size_t)s.g_idx);
    CHECK(qs_pack_gptq(codes, sc, z, g, d_out, d_in, bits, gs, v1, qw, qz, st, gi, &e) == QS_OK,
          "%s", e.msg);
    /* the transposed layouts, spot-checked directly */
    CHECK(G == 1 || st[1 * d_out + 5] == sc[5 * G + 1], "scales layout");
    if (bits == 4) {
        uint32_t w = (uint32_t)qw[0 * d_out + 3];
        CHECK((w & 15u) == codes[3 * d_in + 0] && ((w >> 4) & 15u) == codes[3 * d_in + 1],
              "qweight[0][3] %08x", w);
        uint32_t zw = (uint32_t)qz[0];
        CHECK((zw & 15u) == (uint32_t)(z[0] - (v1 ? 1 : 0)), "qzeros[0][0] %08x", zw);
    }
    CHECK(qs_unpack_gptq(qw, qz, st, gi, d_out, d_in, bits, gs, v1, codes2, sc2, z2, g2, &e) == QS_OK,
          "%s", e.msg);
    CHECK(memcmp(codes, codes2, d_out * d_in) == 0, "codes round trip b%d", bits);
    CHECK(memcmp(sc, sc2, d_out * G * 2) == 0, "scales round trip b%d", bits);
    CHECK(memcmp(z, z2, d_out * G * 4) == 0, "zeros round trip b%d v1 %d", bits, v1);
    CHECK(memcmp(g, g2, d_in * 4) == 0, "g_idx round trip");
    free(codes);
    free(codes2);
    free(sc);
    free(sc2);
    free(z);
    free(z2);
    free(g);
    free(g2);
    free(qw);
    free(qz);
    free(st);
    free(gi);
}

static void test_v1_zeros(void) {
    const int64_t d_out = 8, d_in = 8;
    uint8_t codes[64] = {0};
    uint16_t sc[8] = {0};
    int32_t z[8], g[8] = {0}, qw[8], qz[1], gi[8]; /* qweight (1, 8) at 4 bits */
    uint16_t st[8];
    for (int i = 0; i < 8; ++i) z[i] = 1;
    qs_err e = {0};
    CHECK(qs_pack_gptq(codes, sc, z, g, d_out, d_in, 4, -1, 1, qw, qz, st, gi, &e) == QS_OK, "%s",
          e.msg);
    CHECK(qz[0] == 0, "v1 zeros 1 stored as 0: %08x", (uint32_t)qz[0]);
    for (int i = 0; i < 8; ++i) z[i] = 8;
    CHECK(qs_pack_gptq(codes, sc, z, g, d_out, d_in, 4, -1, 0, qw, qz, st, gi, &e) == QS_OK, "%s",
          e.msg);
    CHECK((uint32_t)qz[0] == 0x88888888u, "v2 zeros 8: %08x", (uint32_t)qz[0]);
    CHECK(qs_pack_gptq(codes, sc, z, g, d_out, d_in, 4, -1, 1, qw, qz, st, gi, &e) == QS_OK, "%s",
          e.msg);
    CHECK((uint32_t)qz[0] == 0x77777777u, "v1 zeros 8: %08x", (uint32_t)qz[0]);
    z[3] = 0; /* not storable in v1 */
    CHECK(qs_pack_gptq(codes, sc, z, g, d_out, d_in, 4, -1, 1, qw, qz, st, gi, &e) == QS_ERR_INPUT &&
              strstr(e.msg, "zero_min1"), "%s", e.msg);
    z[3] = 8;
    codes[10] = 16; /* exceeds 4 bits */
    qs_err_clear(&e);
    CHECK(qs_pack_gptq(codes, sc, z, g, d_out, d_in, 4, -1, 1, qw, qz, st, gi, &e) == QS_ERR_INPUT,
          "code 16 accepted");
}

/* End to end: RTN with zero_min1 packs as v1 and unpacks to the same dequantized weight. */
static void test_quantized_round_trip(void) {
    const int64_t d_out = 32, d_in = 96;
    for (int bits = 2; bits <= 8; ++bits) {
        if (!qs_pack_unit(bits)) continue;
        qs_quant_params p;
        qs_quant_params_default(&p);
        p.bits = bits;
        p.group_size = 32;
        int64_t G = 3;
        float W[32 * 96], wq[32 * 96], wq2[32 * 96];
        for (int i = 0; i < 32 * 96; ++i) W[i] = (float)((int)(rnd() % 2001) - 1000) * 1e-3f;
        uint8_t codes[32 * 96], codes2[32 * 96];
        uint16_t sc[32 * 3], sc2[32 * 3], st[32 * 3];
        int32_t z[32 * 3], z2[32 * 3], g[96], g2[96], gi[96];
        qs_quant_out o = {codes, sc, z, wq, NULL};
        qs_err e = {0};
        CHECK(qs_rtn_quantize_rows(&p, W, d_out, d_in, &o, &e) == QS_OK, "%s", e.msg);
        qs_quant_g_idx_natural(d_in, 32, g);
        qs_pack_bytes s;
        CHECK(qs_pack_sizes(d_out, d_in, bits, 32, &s, &e) == QS_OK, "%s", e.msg);
        int32_t *qw = malloc((size_t)s.qweight), *qz = malloc((size_t)s.qzeros);
        CHECK(qs_pack_gptq(codes, sc, z, g, d_out, d_in, bits, 32, 1, qw, qz, st, gi, &e) == QS_OK,
              "%s", e.msg);
        CHECK(qs_unpack_gptq(qw, qz, st, gi, d_out, d_in, bits, 32, 1, codes2, sc2, z2, g2, &e) ==
                  QS_OK, "%s", e.msg);
        qs_quant_dequant_rows(codes2, sc2, z2, g2, d_out, d_in, G, wq2);
        CHECK(memcmp(wq, wq2, sizeof wq) == 0, "%d bits: unpacked weights differ", bits);
        free(qw);
        free(qz);
    }
}

int main(void) {
    test_sizes();
    test_bit_positions();
    const int bits[] = {2, 3, 4, 8}, gss[] = {-1, 32, 64, 100};
    for (int b = 0; b < 4; ++b)
        for (int gi = 0; gi < 4; ++gi)
            for (int v1 = 0; v1 <= 1; ++v1) round_trip(bits[b], gss[gi], v1);
    test_v1_zeros();
    test_quantized_round_trip();
    return qs_test_finish("test_quant_pack");
}
