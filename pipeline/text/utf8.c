/* utf8.c: UTF-8 decoding, encoding and Python-compatible replacement of ill-formed bytes. */
#include "utf8.h"

/* For a lead byte: the number of continuation bytes (0 for ASCII, -1 for an invalid lead)
 * and the valid range of the first continuation byte (Unicode Table 3-7). */
static int lead_info(unsigned char b, unsigned char *lo, unsigned char *hi) {
    *lo = 0x80;
    *hi = 0xBF;
    if (b < 0x80) return 0;
    if (b < 0xC2) return -1;
    if (b < 0xE0) return 1;
    if (b < 0xF0) {
        if (b == 0xE0) *lo = 0xA0;
        if (b == 0xED) *hi = 0x9F;
        return 2;
    }
    if (b < 0xF5) {
        if (b == 0xF0) *lo = 0x90;
        if (b == 0xF4) *hi = 0x8F;
        return 3;
    }
    return -1;
}

/* Length of the well-formed sequence at s[i] (1..4), or -(k) where k >= 1 is the length of
 * the maximal ill-formed subpart to replace. */
static int seq_at(const unsigned char *s, size_t n, size_t i) {
    unsigned char lo, hi;
    int extra = lead_info(s[i], &lo, &hi);
    if (extra == 0) return 1;
    if (extra < 0) return -1;
    for (int k = 1; k <= extra; ++k) {
        if (i + (size_t)k >= n) return -k;
        unsigned char c = s[i + (size_t)k];
        if (k == 1 ? (c < lo || c > hi) : (c < 0x80 || c > 0xBF)) return -k;
    }
    return extra + 1;
}

size_t qs_utf8_valid_prefix(const char *s, size_t n) {
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        if (u[i] < 0x80) {
            ++i;
            continue;
        }
        int k = seq_at(u, n, i);
        if (k < 0) return i;
        i += (size_t)k;
    }
    return n;
}

size_t qs_utf8_sanitize(const char *s, size_t n, char *out) {
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0, o = 0;
    while (i < n) {
        if (u[i] < 0x80) {
            out[o++] = s[i++];
            continue;
        }
        int k = seq_at(u, n, i);
        if (k > 0) {
            for (int j = 0; j < k; ++j) out[o++] = s[i + (size_t)j];
            i += (size_t)k;
        } else {
            out[o++] = (char)0xEF;
            out[o++] = (char)0xBF;
            out[o++] = (char)0xBD;
            i += (size_t)(-k);
        }
    }
    return o;
}

int qs_utf8_len(unsigned char c) {
    if (c < 0x80) return 1;
    if (c < 0xE0) return 2;
    if (c < 0xF0) return 3;
    return 4;
}

uint32_t qs_utf8_decode(const char *s, int *len) {
    const unsigned char *u = (const unsigned char *)s;
    int n = qs_utf8_len(u[0]);
    *len = n;
    switch (n) {
    case 1: return u[0];
    case 2: return ((uint32_t)(u[0] & 0x1F) << 6) | (u[1] & 0x3F);
    case 3: return ((uint32_t)(u[0] & 0x0F) << 12) | ((uint32_t)(u[1] & 0x3F) << 6) | (u[2] & 0x3F);
    default:
        return ((uint32_t)(u[0] & 0x07) << 18) | ((uint32_t)(u[1] & 0x3F) << 12) |
               ((uint32_t)(u[2] & 0x3F) << 6) | (u[3] & 0x3F);
    }
}

int qs_utf8_encode(uint32_t cp, char *out) {
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}
