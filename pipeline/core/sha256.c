/* sha256.c: SHA-256 per FIPS 180-4 (streaming, for small inputs), and whole files through
 * libcrypto (its SHA extensions / AVX2 code: 4.8x this file's C on the run directory's
 * large files, docs/design.md "Dependencies"). */
#include "sha256.h"

#include <errno.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>

static const uint32_t K[64] = {
    0x428a2f98u, 0x71374491u, 0xb5c0fbcfu, 0xe9b5dba5u, 0x3956c25bu, 0x59f111f1u, 0x923f82a4u,
    0xab1c5ed5u, 0xd807aa98u, 0x12835b01u, 0x243185beu, 0x550c7dc3u, 0x72be5d74u, 0x80deb1feu,
    0x9bdc06a7u, 0xc19bf174u, 0xe49b69c1u, 0xefbe4786u, 0x0fc19dc6u, 0x240ca1ccu, 0x2de92c6fu,
    0x4a7484aau, 0x5cb0a9dcu, 0x76f988dau, 0x983e5152u, 0xa831c66du, 0xb00327c8u, 0xbf597fc7u,
    0xc6e00bf3u, 0xd5a79147u, 0x06ca6351u, 0x14292967u, 0x27b70a85u, 0x2e1b2138u, 0x4d2c6dfcu,
    0x53380d13u, 0x650a7354u, 0x766a0abbu, 0x81c2c92eu, 0x92722c85u, 0xa2bfe8a1u, 0xa81a664bu,
    0xc24b8b70u, 0xc76c51a3u, 0xd192e819u, 0xd6990624u, 0xf40e3585u, 0x106aa070u, 0x19a4c116u,
    0x1e376c08u, 0x2748774cu, 0x34b0bcb5u, 0x391c0cb3u, 0x4ed8aa4au, 0x5b9cca4fu, 0x682e6ff3u,
    0x748f82eeu, 0x78a5636fu, 0x84c87814u, 0x8cc70208u, 0x90befffau, 0xa4506cebu, 0xbef9a3f7u,
    0xc67178f2u};

static uint32_t rotr(uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }

static void compress(qs_sha256 *s, const unsigned char *p) {
    uint32_t w[64];
    for (int i = 0; i < 16; ++i)
        w[i] = ((uint32_t)p[4 * i] << 24) | ((uint32_t)p[4 * i + 1] << 16) |
               ((uint32_t)p[4 * i + 2] << 8) | (uint32_t)p[4 * i + 3];
    for (int i = 16; i < 64; ++i) {
        uint32_t s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint32_t a = s->h[0], b = s->h[1], c = s->h[2], d = s->h[3];
    uint32_t e = s->h[4], f = s->h[5], g = s->h[6], h = s->h[7];
    for (int i = 0; i < 64; ++i) {
        uint32_t S1 = rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25);
        uint32_t ch = (e & f) ^ (~e & g);
        uint32_t t1 = h + S1 + ch + K[i] + w[i];
        uint32_t S0 = rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22);
        uint32_t mj = (a & b) ^ (a & c) ^ (b & c);
        uint32_t t2 = S0 + mj;
        h = g; g = f; f = e; e = d + t1;
        d = c; c = b; b = a; a = t1 + t2;
    }
    s->h[0] += a; s->h[1] += b; s->h[2] += c; s->h[3] += d;
    s->h[4] += e; s->h[5] += f; s->h[6] += g; s->h[7] += h;
}

void qs_sha256_init(qs_sha256 *s) {
    static const uint32_t h0[8] = {0x6a09e667u, 0xbb67ae85u, 0x3c6ef372u, 0xa54ff53au,
                                   0x510e527fu, 0x9b05688cu, 0x1f83d9abu, 0x5be0cd19u};
    memcpy(s->h, h0, sizeof(h0));
    s->nbytes = 0;
    s->nbuf = 0;
}

void qs_sha256_update(qs_sha256 *s, const void *data, size_t n) {
    const unsigned char *p = data;
    s->nbytes += n;
    if (s->nbuf) {
        size_t take = 64 - s->nbuf < n ? 64 - s->nbuf : n;
        memcpy(s->buf + s->nbuf, p, take);
        s->nbuf += take;
        p += take;
        n -= take;
        if (s->nbuf == 64) {
            compress(s, s->buf);
            s->nbuf = 0;
        }
    }
    while (n >= 64) {
        compress(s, p);
        p += 64;
        n -= 64;
    }
    if (n) {
        memcpy(s->buf, p, n);
        s->nbuf = n;
    }
}

/* hex (65) = the 32 digest bytes md in lowercase hex, NUL-terminated. */
static void digest_hex(const unsigned char md[32], char hex[65]) {
    static const char digits[] = "0123456789abcdef";
    for (int i = 0; i < 32; ++i) {
        hex[2 * i] = digits[md[i] >> 4];
        hex[2 * i + 1] = digits[md[i] & 15];
    }
    hex[64] = '\0';
}

void qs_sha256_final_hex(qs_sha256 *s, char hex[65]) {
    uint64_t bits = s->nbytes * 8;
    unsigned char pad = 0x80;
    qs_sha256_update(s, &pad, 1);
    unsigned char zero = 0;
    while (s->nbuf != 56) qs_sha256_update(s, &zero, 1);
    unsigned char len[8];
    for (int i = 0; i < 8; ++i) len[i] = (unsigned char)(bits >> (56 - 8 * i));
    qs_sha256_update(s, len, 8);
    unsigned char md[32]; /* the state words big-endian */
    for (int i = 0; i < 8; ++i)
        for (int j = 0; j < 4; ++j) md[4 * i + j] = (unsigned char)(s->h[i] >> (24 - 8 * j));
    digest_hex(md, hex);
}

void qs_sha256_hex(const void *data, size_t n, char hex[65]) {
    qs_sha256 s;
    qs_sha256_init(&s);
    qs_sha256_update(&s, data, n);
    qs_sha256_final_hex(&s, hex);
}

qs_status qs_sha256_file(const char *path, char hex[65], qs_err *err) {
    qs_status st = QS_OK;
    unsigned char buf[1 << 16], md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    EVP_MD_CTX *ctx = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) QS_THROW(err, errno == ENOENT ? QS_ERR_INPUT : QS_ERR_RUNTIME, "%s: %s", path,
                     strerror(errno));
    ctx = EVP_MD_CTX_new();
    if (!ctx || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1)
        QS_THROW(err, QS_ERR_RUNTIME, "%s: cannot start SHA-256 (libcrypto)", path);
    size_t n;
    int rerr = 0; /* errno of the failed read */
    for (;;) {
        errno = 0;
        n = fread(buf, 1, sizeof(buf), f);
        rerr = errno;
        if (n == 0) break;
        if (EVP_DigestUpdate(ctx, buf, n) != 1)
            QS_THROW(err, QS_ERR_RUNTIME, "%s: SHA-256 failed (libcrypto)", path);
    }
    if (ferror(f))
        QS_THROW(err, QS_ERR_RUNTIME, "%s: read error: %s", path, strerror(rerr ? rerr : EIO));
    if (EVP_DigestFinal_ex(ctx, md, &mdlen) != 1 || mdlen != 32)
        QS_THROW(err, QS_ERR_RUNTIME, "%s: SHA-256 failed (libcrypto)", path);
    digest_hex(md, hex);
done:
    EVP_MD_CTX_free(ctx);
    if (f) fclose(f);
    return st;
}
