/* test_partition.c: the partition module against brute force: every contiguous split's
 * optimum for many (n, nparts) pairs with unequal costs, coverage of every item exactly
 * once, even row splits and LPT job balancing. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "partition.h"

/* Brute force over all ways to cut n items into nparts contiguous (possibly empty) ranges. */
static void brute(const double *cost, int n, int nparts, int p, int start, double cur_max,
                  double *best) {
    if (p == nparts - 1) {
        double c = 0.0;
        for (int i = start; i < n; ++i) c += cost[i];
        double m = c > cur_max ? c : cur_max;
        if (m < *best) *best = m;
        return;
    }
    double c = 0.0;
    for (int end = start; end <= n; ++end) {
        if (end > start) c += cost[end - 1];
        double m = c > cur_max ? c : cur_max;
        if (m < *best) brute(cost, n, nparts, p + 1, end, m, best);
    }
}

static unsigned long long rng_state = 12345;
static double rnd(void) {
    rng_state = rng_state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (double)(rng_state >> 11) / 9007199254740992.0;
}

static void check_case(const double *cost, int n, int nparts) {
    int first[64];
    double opt = -1.0;
    qs_err err = {0};
    qs_status st = qs_partition_contiguous(cost, n, nparts, first, &opt, &err);
    CHECK(st == QS_OK, "status %d (%s)", st, err.msg);
    if (st != QS_OK) return;
    CHECK(first[0] == 0 && first[nparts] == n, "ends n=%d p=%d", n, nparts);
    int owned = 0;
    double mx = 0.0;
    for (int p = 0; p < nparts; ++p) {
        CHECK(first[p + 1] >= first[p], "ranges decreasing n=%d p=%d", n, nparts);
        if (n >= nparts) CHECK(first[p + 1] > first[p], "empty part n=%d p=%d", n, nparts);
        double c = 0.0;
        for (int i = first[p]; i < first[p + 1]; ++i) c += cost[i];
        if (c > mx) mx = c;
        owned += first[p + 1] - first[p];
    }
    CHECK(owned == n, "owned %d of %d", owned, n);
    double best = 1e300;
    brute(cost, n, nparts, 0, 0, 0.0, &best);
    /* same sums in a different order may differ in the last bit */
    CHECK(mx <= best * (1 + 1e-12) && mx >= best * (1 - 1e-12),
          "n=%d p=%d max %.17g brute %.17g", n, nparts, mx, best);
    CHECK(opt == mx, "reported max %.17g actual %.17g", opt, mx);
}

int main(void) {
    /* the acceptance shapes: 4 and 9 layers at 1, 2, 3 and 7 ranks, unequal costs */
    const int ns[] = {4, 9};
    const int ps[] = {1, 2, 3, 7};
    for (int trial = 0; trial < 50; ++trial)
        for (size_t a = 0; a < 2; ++a)
            for (size_t b = 0; b < 4; ++b) {
                double cost[16];
                for (int i = 0; i < ns[a]; ++i) cost[i] = 1.0 + 9.0 * rnd();
                check_case(cost, ns[a], ps[b]);
            }
    /* many more pairs, including integer ties */
    for (int n = 0; n <= 12; ++n)
        for (int p = 1; p <= 9; ++p)
            for (int trial = 0; trial < 5; ++trial) {
                double cost[16];
                for (int i = 0; i < n; ++i)
                    cost[i] = trial % 2 ? (double)(1 + (int)(4 * rnd())) : rnd() * 100.0;
                check_case(cost, n, p);
            }
    /* even splits cover [0, n) exactly, sizes differ by at most one */
    for (int64_t n = 0; n < 40; ++n)
        for (int p = 1; p < 9; ++p) {
            int64_t prev = 0, lo = n, hi = 0;
            for (int k = 0; k < p; ++k) {
                int64_t b, e;
                qs_partition_even(n, p, k, &b, &e);
                CHECK(b == prev && e >= b, "even n=%lld p=%d", (long long)n, p);
                prev = e;
                if (e - b < lo) lo = e - b;
                if (e - b > hi) hi = e - b;
            }
            CHECK(prev == n && hi - lo <= 1, "even cover n=%lld p=%d", (long long)n, p);
        }
    /* LPT: every job owned, makespan <= 4/3 optimum bound (check against total/p + max) */
    for (int trial = 0; trial < 100; ++trial) {
        int n = 1 + (int)(30 * rnd()), p = 1 + (int)(5 * rnd());
        double cost[32], load[8] = {0};
        int owner[32];
        double total = 0.0, mxc = 0.0;
        for (int i = 0; i < n; ++i) {
            cost[i] = rnd();
            total += cost[i];
            if (cost[i] > mxc) mxc = cost[i];
        }
        qs_err err = {0};
        CHECK(qs_partition_jobs(cost, n, p, owner, &err) == QS_OK, "jobs");
        for (int i = 0; i < n; ++i) {
            CHECK(owner[i] >= 0 && owner[i] < p, "owner range");
            load[owner[i]] += cost[i];
        }
        for (int k = 0; k < p; ++k) CHECK(load[k] <= total / p + mxc + 1e-12, "lpt bound");
    }
    return qs_test_finish("test_partition");
}
