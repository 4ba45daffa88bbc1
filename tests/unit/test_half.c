/* test_half.c: pipeline/base/half.c, the one half-precision module: f16 and bf16 widening
 * (exhaustive, against an arithmetic reference), narrowing with round-to-nearest-even at
 * every midpoint, overflow to infinity, underflow, NaN kept quiet, and the round trip of
 * every value. Links qs_base only. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "check.h"
#include "half.h"

static uint64_t g_rng = 0x9e3779b97f4a7c15ull;
static double urand(void) { return qs_test_urand(&g_rng); }

/* Reference widening by arithmetic (ldexp), independent of the bit tricks. */
static double f16_ref(uint16_t h) {
    int s = h >> 15, e = (h >> 10) & 31, m = h & 1023;
    double v;
    if (e == 31) v = m ? NAN : INFINITY;
    else if (e == 0) v = ldexp((double)m, -24);
    else v = ldexp(1024.0 + m, e - 25);
    return s ? -v : v;
}

/* Exhaustive widening against an arithmetic reference; rounding at every f16 midpoint
 * (subnormal and normal); bf16 widening, narrowing and its midpoints. */
static void test_reference(void) {
    int bad = 0;
    for (uint32_t h = 0; h < 65536; ++h) {
        float f = qs_f16_to_f32((uint16_t)h);
        double r = f16_ref((uint16_t)h);
        if (isnan(r)) {
            if (!isnan(f)) ++bad;
            /* payload kept: narrowing gives back the same NaN (quiet bit set) */
            if ((qs_f32_to_f16(f) & 0x7dffu) != (h & 0x7dffu)) ++bad;
            continue;
        }
        if ((double)f != r || !signbit(f) != !signbit(r)) ++bad;
        if (qs_f32_to_f16(f) != h) ++bad; /* exact values round-trip */
    }
    CHECK(bad == 0, "%d f16 widening/round-trip mismatches", bad);

    /* rounding: midpoints between consecutive f16 values go to the even one, and a hair
     * above/below goes up/down; this covers subnormals and the normal range */
    bad = 0;
    for (uint32_t h = 0; h < 0x7bff; ++h) {
        double a = f16_ref((uint16_t)h), b = f16_ref((uint16_t)(h + 1));
        float mid = (float)((a + b) / 2); /* exact in f32 */
        uint16_t even = (h & 1) ? (uint16_t)(h + 1) : (uint16_t)h;
        if (qs_f32_to_f16(mid) != even) ++bad;
        if (qs_f32_to_f16(-mid) != (uint16_t)(even | 0x8000)) ++bad;
        if (qs_f32_to_f16(nextafterf(mid, 0.0f)) != h && mid > 0) ++bad;
        if (qs_f32_to_f16(nextafterf(mid, INFINITY)) != h + 1) ++bad;
    }
    CHECK(bad == 0, "%d f16 rounding mismatches", bad);
    CHECK(qs_f32_to_f16(65504.0f) == 0x7bff, "max");
    CHECK(qs_f32_to_f16(65519.99f) == 0x7bff, "below the inf midpoint");
    CHECK(qs_f32_to_f16(65520.0f) == 0x7c00, "inf midpoint rounds to inf");
    CHECK(qs_f32_to_f16(1e30f) == 0x7c00 && qs_f32_to_f16(-INFINITY) == 0xfc00, "inf");
    CHECK(qs_f32_to_f16(ldexpf(1.0f, -25)) == 0, "2^-25 ties to even zero");
    CHECK(qs_f32_to_f16(nextafterf(ldexpf(1.0f, -25), 1.0f)) == 1, "above 2^-25");
    CHECK(qs_f32_to_f16(1e-30f) == 0 && qs_f32_to_f16(-1e-30f) == 0x8000, "underflow");

    /* bf16: widening is a shift; narrowing rounds to nearest even */
    bad = 0;
    for (uint32_t b = 0; b < 65536; ++b) {
        float f = qs_bf16_to_f32((uint16_t)b);
        if (qs_f32_bits(f) != b << 16) ++bad;
        if (!isnan(f) && qs_f32_to_bf16(f) != b) ++bad;
        if (isnan(f) && !isnan(qs_bf16_to_f32(qs_f32_to_bf16(f)))) ++bad;
        if ((b & 0x7fff) < 0x7f7f) { /* midpoint to the next one */
            uint32_t mid = (b << 16) | 0x8000u;
            uint16_t even = (b & 1) ? (uint16_t)(b + 1) : (uint16_t)b;
            if (qs_f32_to_bf16(qs_f32_from_bits(mid)) != even) ++bad;
            if (qs_f32_to_bf16(qs_f32_from_bits(mid + 1)) != (uint16_t)(b + 1)) ++bad;
            if (qs_f32_to_bf16(qs_f32_from_bits(mid - 1)) != (uint16_t)b) ++bad;
        }
    }
    CHECK(bad == 0, "%d bf16 mismatches", bad);
    CHECK(qs_f32_to_bf16(qs_f32_from_bits(0x7f7fffffu)) == 0x7f80, "bf16 overflow to inf");
    CHECK(qs_f32_to_bf16(qs_f32_from_bits(0x7f800001u)) == 0x7fc0, "bf16 signalling nan quieted");
}

/* Hand-picked f16 rounding cases, the round trip of every non-NaN half, and random floats
 * going to the nearer neighbour. */
static void test_rounding_cases(void) {
    CHECK(qs_f32_to_f16(1.0f) == 0x3c00, "1.0");
    CHECK(qs_f32_to_f16(-2.0f) == 0xc000, "-2.0");
    CHECK(qs_f32_to_f16(65504.0f) == 0x7bff, "max");
    CHECK(qs_f32_to_f16(65519.0f) == 0x7bff, "below the inf threshold");
    CHECK(qs_f32_to_f16(65520.0f) == 0x7c00, "rounds to inf");
    CHECK(qs_f32_to_f16(ldexpf(1.0f, -24)) == 0x0001, "smallest subnormal");
    CHECK(qs_f32_to_f16(ldexpf(1.0f, -25)) == 0x0000, "half of it ties to even 0");
    CHECK(qs_f32_to_f16(ldexpf(3.0f, -25)) == 0x0002, "1.5 units ties to 2");
    CHECK(qs_f32_to_f16(1.0f + ldexpf(1.0f, -11)) == 0x3c00, "tie to even (down)");
    CHECK(qs_f32_to_f16(1.0f + ldexpf(3.0f, -11)) == 0x3c02, "tie to even (up)");
    CHECK(qs_f32_to_f16(ldexpf(1023.5f, -24)) == 0x0400, "subnormal carry to normal");
    int bad = 0;
    for (uint32_t h = 0; h < 65536; ++h) {
        float f = qs_f16_to_f32((uint16_t)h);
        if (isnan(f)) continue;
        if (qs_f32_to_f16(f) != h) bad++;
    }
    CHECK(bad == 0, "%d half values do not round-trip", bad);
    /* against the float nearest: every float between two halves goes to the nearer */
    for (int i = 0; i < 100000; ++i) {
        float f = (float)((urand() - 0.5) * 200.0);
        uint16_t h = qs_f32_to_f16(f);
        float a = qs_f16_to_f32(h);
        float lo = qs_f16_to_f32((uint16_t)(h - 1)), hi = qs_f16_to_f32((uint16_t)(h + 1));
        if (fabsf(f - a) > fabsf(f - lo) || fabsf(f - a) > fabsf(f - hi)) {
            bad++;
            break;
        }
    }
    CHECK(bad == 0, "fp16 rounding is not to nearest");
}

static float bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static float f16_to_f32(uint16_t h) {
    uint32_t s = (uint32_t)(h & 0x8000) << 16, e = (h >> 10) & 0x1f, m = h & 0x3ff;
    float f;
    if (e == 0) {
        f = (float)m * (1.0f / 16777216.0f);
        return s ? -f : f;
    }
    uint32_t u = e == 31 ? (s | 0x7f800000u | (m << 13)) : (s | ((e + 112u) << 23) | (m << 13));
    memcpy(&f, &u, 4);
    return f;
}

/* The narrowing functions against decoders written here from the bit layouts: every
 * non-NaN half and bfloat16 round-trips, midpoints go to the even neighbour, NaN stays NaN. */
static void test_bit_layouts(void) {
    /* every non-NaN half round-trips; every midpoint rounds to the even neighbour */
    for (uint32_t h = 0; h < 0x10000; ++h) {
        uint16_t x = (uint16_t)h;
        if ((x & 0x7c00) == 0x7c00 && (x & 0x3ff)) continue;
        float f = f16_to_f32(x);
        CHECK(qs_f32_to_f16(f) == x, "f16 round trip %04x", h);
        uint16_t y = (uint16_t)(x + 1);
        if ((x & 0x7fff) >= 0x7c00 || (y & 0x7fff) == 0) continue;
        if ((x & 0x7fff) == 0x7bff) continue; /* midpoint to inf checked below */
        double mid = ((double)f + (double)f16_to_f32(y)) * 0.5;
        uint16_t even = (x & 1) ? y : x;
        CHECK(qs_f32_to_f16((float)mid) == even, "f16 midpoint after %04x", h);
        float above = nextafterf((float)mid, (float)mid * 2.0f + (mid > 0 ? 1.0f : -1.0f));
        if (fabs(above) > fabs(mid))
            CHECK(qs_f32_to_f16(above) == y, "f16 above midpoint after %04x", h);
    }
    CHECK(qs_f32_to_f16(65504.0f) == 0x7bff, "f16 max");
    CHECK(qs_f32_to_f16(65519.99f) == 0x7bff, "f16 below overflow");
    CHECK(qs_f32_to_f16(65520.0f) == 0x7c00, "f16 overflow tie");
    CHECK(qs_f32_to_f16(-1e9f) == 0xfc00, "f16 -inf");
    CHECK(qs_f32_to_f16(ldexpf(1.0f, -25)) == 0x0000, "f16 2^-25 ties to 0");
    CHECK(qs_f32_to_f16(ldexpf(1.5f, -25)) == 0x0001, "f16 1.5*2^-25");
    CHECK(qs_f32_to_f16(-0.0f) == 0x8000, "f16 -0");
    CHECK((qs_f32_to_f16(NAN) & 0x7fff) > 0x7c00, "f16 NaN");
    for (uint32_t h = 0; h < 0x10000; ++h) {
        uint16_t x = (uint16_t)h;
        if ((x & 0x7f80) == 0x7f80 && (x & 0x7f)) {
            CHECK((qs_f32_to_bf16(bf16_to_f32(x)) & 0x7fff) > 0x7f80, "bf16 NaN %04x", h);
            continue;
        }
        CHECK(qs_f32_to_bf16(bf16_to_f32(x)) == x, "bf16 round trip %04x", h);
        if ((x & 0x7fff) >= 0x7f7f) continue;
        uint32_t mid = ((uint32_t)x << 16) | 0x8000u; /* exact midpoint to x+1 */
        float fm;
        memcpy(&fm, &mid, 4);
        uint16_t even = (x & 1) ? (uint16_t)(x + 1) : x;
        CHECK(qs_f32_to_bf16(fm) == even, "bf16 midpoint after %04x", h);
    }
}

int main(void) {
    test_reference();
    test_rounding_cases();
    test_bit_layouts();
    return qs_test_finish("test_half");
}
