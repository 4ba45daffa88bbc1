/* bench_util.h: the clock and the random numbers shared by the C benchmarks of tests/bench
 * (header-only, static functions: each benchmark is one translation unit).
 *   bench_wall()  monotonic wall time in seconds
 *   bench_frand() uniform in [-1, 1) from one xorshift64 stream per program (fixed seed, so a
 *                 benchmark makes the same data on every run)
 */
#ifndef QS_BENCH_UTIL_H
#define QS_BENCH_UTIL_H

#include <stdint.h>
#include <time.h>

static inline double bench_wall(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static uint64_t g_bench_rng = 88172645463325252ull;
static inline float bench_frand(void) { /* uniform in [-1, 1) */
    g_bench_rng ^= g_bench_rng << 13;
    g_bench_rng ^= g_bench_rng >> 7;
    g_bench_rng ^= g_bench_rng << 17;
    return (float)((double)(g_bench_rng >> 11) * (2.0 / 9007199254740992.0) - 1.0);
}

#endif /* QS_BENCH_UTIL_H */
