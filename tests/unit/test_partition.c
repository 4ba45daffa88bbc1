/* test_partition.c: the partition module against brute force: every contiguous split's
 * optimum for many (n, nparts) pairs with unequal costs, coverage of every item exactly
 * once, even row splits and LPT job balancing; the 2-D grid (stages x replicas) against
 * its rule recomputed with brute-force splits, and named shapes (2 and 3 layers on 2-4
 * ranks, 126 layers on 512 ranks). */
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

/* The grid rule of partition.h recomputed: brute-force maxima per stage count. */
static void grid_ref(const double *cost, int n, int P, int64_t nchunks, int replicas, int *S,
                     int *D) {
    const int smax = n > 1 ? n : 1;
    if (replicas > 0) {
        *D = replicas < P ? replicas : P;
        *S = P / *D < smax ? P / *D : smax;
        return;
    }
    *S = P < smax ? P : smax;
    *D = 1;
    if (P <= n || n == 0) return;
    int dmax = nchunks < P ? (int)(nchunks > 1 ? nchunks : 1) : P;
    double t[600], best = 1e300;
    int ss[600];
    for (int d = 1; d <= dmax; ++d) {
        ss[d] = P / d < smax ? P / d : smax;
        double b = 1e300;
        brute(cost, n, ss[d], 0, 0, 0.0, &b);
        t[d] = b / d;
        if (t[d] < best) best = t[d];
    }
    for (int d = 1; d <= dmax; ++d)
        if (t[d] <= best * 1.02 * (1 + 1e-12)) {
            *S = ss[d];
            *D = d;
            while (*D < dmax && ss[*D + 1] == *S) ++*D;
            return;
        }
}

static void check_grid(const double *cost, int n, int P, int64_t nchunks, int replicas) {
    int first[600], S = 0, D = 0, rs = 0, rd = 0;
    double mc = -1.0;
    qs_err err = {0};
    qs_status st = qs_partition_grid(cost, n, P, nchunks, replicas, &S, &D, first, &mc, &err);
    CHECK(st == QS_OK, "grid n=%d P=%d: %s", n, P, err.msg);
    if (st != QS_OK) return;
    grid_ref(cost, n, P, nchunks, replicas, &rs, &rd);
    CHECK(S == rs && D == rd, "grid n=%d P=%d chunks=%lld replicas=%d: %d x %d, rule %d x %d", n,
          P, (long long)nchunks, replicas, S, D, rs, rd);
    CHECK(S >= 1 && D >= 1 && S * D <= P && S <= (n > 1 ? n : 1), "grid shape %d x %d", S, D);
    CHECK(first[0] == 0 && first[S] == n, "grid split ends");
    double mx = 0.0;
    for (int s = 0; s < S; ++s) {
        double c = 0.0;
        for (int i = first[s]; i < first[s + 1]; ++i) c += cost[i];
        if (c > mx) mx = c;
    }
    CHECK(mc == mx, "grid max cost %.17g, split %.17g", mc, mx);
}

/* Named shapes of equal-cost layers (the first one a little heavier: the embeddings). */
static void check_grid_shape(int n, int P, int64_t nchunks, int replicas, int wantS, int wantD) {
    double cost[200];
    int first[200], S = 0, D = 0;
    qs_err err = {0};
    for (int i = 0; i < n; ++i) cost[i] = i == 0 ? 1.001 : 1.0;
    CHECK(qs_partition_grid(cost, n, P, nchunks, replicas, &S, &D, first, NULL, &err) == QS_OK &&
              S == wantS && D == wantD,
          "grid %d layers, %d ranks, %lld chunks, replicas %d: %d x %d, want %d x %d", n, P,
          (long long)nchunks, replicas, S, D, wantS, wantD);
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
    /* the 2-D grid: the rule, forced replica counts, few chunks */
    for (int n = 0; n <= 9; ++n)
        for (int P = 1; P <= 12; ++P)
            for (int trial = 0; trial < 3; ++trial) {
                double cost[16];
                for (int i = 0; i < n; ++i)
                    cost[i] = trial == 0 ? 1.0 : (trial == 1 ? 1.0 + rnd() : 1.0 + 9.0 * rnd());
                check_grid(cost, n, P, 16, 0);
                check_grid(cost, n, P, 2, 0);
                check_grid(cost, n, P, 16, 1 + trial);
            }
    check_grid_shape(2, 2, 11, 0, 2, 1); /* ranks <= layers: 1-D */
    check_grid_shape(2, 3, 11, 0, 1, 3); /* every rank busy */
    check_grid_shape(2, 4, 11, 0, 2, 2);
    check_grid_shape(3, 4, 11, 0, 1, 4);
    check_grid_shape(3, 4, 11, 2, 2, 2); /* forced: stages of 1 and 2 layers */
    check_grid_shape(2, 3, 11, 2, 1, 2); /* forced: rank 2 idle */
    check_grid_shape(3, 4, 2, 0, 3, 1);  /* 2 chunks: at most 2 replicas */
    check_grid_shape(126, 512, 16, 0, 126, 4);
    check_grid_shape(126, 126, 16, 0, 126, 1);
    check_grid_shape(126, 512, 16, 8, 64, 8);
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
