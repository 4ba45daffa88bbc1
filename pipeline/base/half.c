/* half.c: exact f16/bf16 widening and round-to-nearest-even narrowing (see half.h). */
#include "half.h"

#include <string.h>

uint32_t qs_f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof(u));
    return u;
}

float qs_f32_from_bits(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof(f));
    return f;
}

float qs_bf16_to_f32(uint16_t b) { return qs_f32_from_bits((uint32_t)b << 16); }

float qs_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t man = h & 0x3ffu;
    uint32_t bits;
    if (exp == 0x1f) {                 /* inf / nan: keep the payload */
        bits = sign | 0x7f800000u | (man << 13);
    } else if (exp != 0) {             /* normal: rebias 15 -> 127 */
        bits = sign | ((exp + 112u) << 23) | (man << 13);
    } else if (man == 0) {             /* signed zero */
        bits = sign;
    } else {                           /* subnormal: man * 2^-24, normalise */
        uint32_t e = 113;              /* exponent field of 2^-14 */
        while (!(man & 0x400u)) {
            man <<= 1;
            --e;
        }
        bits = sign | (e << 23) | ((man & 0x3ffu) << 13);
    }
    return qs_f32_from_bits(bits);
}

uint16_t qs_f32_to_bf16(float f) {
    uint32_t u = qs_f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x0040u); /* quiet nan */
    u += 0x7fffu + ((u >> 16) & 1u);   /* ties to even; overflow carries into inf */
    return (uint16_t)(u >> 16);
}

uint16_t qs_f32_to_f16(float f) {
    uint32_t u = qs_f32_bits(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return (uint16_t)(sign | 0x7e00u | ((a >> 13) & 0x3ffu)); /* nan */
    if (a >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* >= 65520 rounds to inf */
    if (a < 0x38800000u) {             /* below 2^-14: f16 subnormal or zero */
        if (a < 0x33000000u) return sign; /* < 2^-25 (and the tie 2^-25 goes to even 0) */
        uint32_t e = a >> 23;           /* 102 .. 112 */
        uint32_t m = (a & 0x7fffffu) | 0x800000u;
        uint32_t shift = 126u - e;      /* value * 2^24 = m >> shift */
        uint32_t r = m >> shift;
        uint32_t rem = m & ((1u << shift) - 1u);
        uint32_t half = 1u << (shift - 1u);
        if (rem > half || (rem == half && (r & 1u))) ++r;
        return (uint16_t)(sign | r);    /* r == 0x400 is the smallest normal: correct */
    }
    uint32_t v = a - 0x38000000u;       /* rebias 127 -> 15 */
    uint32_t r = v >> 13;
    uint32_t rem = v & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (r & 1u))) ++r;
    return (uint16_t)(sign | r);
}

void qs_f16_to_f32_n(const uint16_t *in, float *out, size_t n) {
    for (size_t i = 0; i < n; ++i) out[i] = qs_f16_to_f32(in[i]);
}

void qs_bf16_to_f32_n(const uint16_t *in, float *out, size_t n) {
    for (size_t i = 0; i < n; ++i) out[i] = qs_bf16_to_f32(in[i]);
}

void qs_f32_to_f16_n(const float *in, uint16_t *out, size_t n) {
    for (size_t i = 0; i < n; ++i) out[i] = qs_f32_to_f16(in[i]);
}

void qs_f32_to_bf16_n(const float *in, uint16_t *out, size_t n) {
    for (size_t i = 0; i < n; ++i) out[i] = qs_f32_to_bf16(in[i]);
}
