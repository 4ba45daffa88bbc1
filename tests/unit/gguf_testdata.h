/* gguf_testdata.h: deterministic test rows for the GGUF quantizer tests (test_gguf_quant,
 * test_gguf_dump). Integer arithmetic only (xorshift64*, sums of uniforms scaled by powers of
 * two), so the floats are the same bits on every platform and libm; row r has kind r % 9:
 *   0 bell-shaped (Irwin-Hall of 4 uniforms), ~0.02     5 all negative
 *   1 uniform in [-0.5, 0.5)                           6 all positive, away from 0
 *   2 bell-shaped with 1% outliers x64                  7 tiny (~1e-9: fp16 scales underflow)
 *   3 every third 32-block zero, the rest ~1            8 ~1e-5 (fp16 subnormal scales)
 *   4 every fourth 16-block constant 0.25, the rest ~1e-3
 * gguf_td_importance: non-negative column importances with every 13th zero. */
#ifndef QS_GGUF_TESTDATA_H
#define QS_GGUF_TESTDATA_H

#include <stdint.h>

static inline uint64_t gguf_td_next(uint64_t *s) {
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1DULL;
}

/* Bell-shaped in about [-2, 2) * 2^-e (exact in float: 18-bit integers times 2^-k). */
static inline float gguf_td_bell(uint64_t *s, int e) {
    int64_t acc = 0;
    for (int i = 0; i < 4; ++i) acc += (int64_t)(gguf_td_next(s) >> 48); /* 4 x 16 bits */
    acc -= 2 * 65535;                                                    /* ~[-131070, 131070] */
    float v = (float)acc * (1.0f / 65536.0f);                            /* ~[-2, 2) */
    for (int i = 0; i < e; ++i) v *= 0.5f;
    return v;
}

static inline float gguf_td_value(uint64_t *s, int64_t row, int64_t j) {
    switch ((int)(row % 9)) {
    case 0: return gguf_td_bell(s, 6);
    case 1: return (float)((int64_t)(gguf_td_next(s) >> 40) - (1 << 23)) * (1.0f / 16777216.0f);
    case 2: {
        float v = gguf_td_bell(s, 6);
        return (gguf_td_next(s) >> 57) == 0 ? v * 64.0f : v; /* 1 in 128 */
    }
    case 3: return (j / 32) % 3 == 0 ? 0.0f : gguf_td_bell(s, 0);
    case 4: return (j / 16) % 4 == 1 ? 0.25f : gguf_td_bell(s, 10);
    case 5: {
        float v = gguf_td_bell(s, 3);
        return v > 0.0f ? -v : v;
    }
    case 6: {
        float v = gguf_td_bell(s, 3);
        return (v < 0.0f ? -v : v) + 0.0625f;
    }
    case 7: return gguf_td_bell(s, 30);
    default: return gguf_td_bell(s, 17);
    }
}

/* W (rows, n) */
static inline void gguf_td_fill(float *W, int64_t rows, int64_t n, uint64_t seed) {
    uint64_t s = seed | 1u;
    for (int64_t r = 0; r < rows; ++r)
        for (int64_t j = 0; j < n; ++j) W[r * n + j] = gguf_td_value(&s, r, j);
}

/* imp (n) */
static inline void gguf_td_importance(float *imp, int64_t n, uint64_t seed) {
    uint64_t s = seed | 1u;
    for (int64_t j = 0; j < n; ++j) {
        uint64_t a = gguf_td_next(&s) >> 48, b = gguf_td_next(&s) >> 48;
        imp[j] = j % 13 == 0 ? 0.0f : (float)(a * b) * (1.0f / 268435456.0f); /* [0, 16) */
    }
}

#endif /* QS_GGUF_TESTDATA_H */
