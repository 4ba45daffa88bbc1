/* partition.c: contiguous min-max split (exact DP), even row splits, LPT job balancing. */
#include "partition.h"

#include <stdlib.h>
#include <string.h>

/* Lexicographic (max, sum of squares) comparison with exact ties. */
static int better(double m1, double s1, double m2, double s2) {
    if (m1 != m2) return m1 < m2;
    return s1 < s2;
}

qs_status qs_partition_contiguous(const double *cost, int n, int nparts, int *first,
                                  double *max_cost, qs_err *err) {
    qs_status st = QS_OK;
    double *prefix = NULL, *bmax = NULL, *bsq = NULL;
    int *choice = NULL;
    if (n < 0 || nparts < 1)
        return QS_FAIL(err, QS_ERR_INTERNAL, "partition: n=%d nparts=%d", n, nparts);
    for (int i = 0; i < n; ++i)
        if (!(cost[i] >= 0.0))
            return QS_FAIL(err, QS_ERR_INTERNAL, "partition: cost[%d] is negative or NaN", i);
    if (n <= nparts) {
        double m = 0.0;
        for (int p = 0; p <= nparts; ++p) first[p] = p < n ? p : n;
        for (int i = 0; i < n; ++i)
            if (cost[i] > m) m = cost[i];
        if (max_cost) *max_cost = m;
        return QS_OK;
    }
    /* n > nparts: every part non-empty. */
    size_t cells = (size_t)(n + 1) * (size_t)(nparts + 1);
    /* range sums in forward order (not prefix differences), so the reported costs equal
     * the sums any caller computes item by item */
    prefix = qs_malloc(sizeof(double) * (size_t)(n + 1) * (size_t)(n + 1), err,
                       "partition range sums");
    bmax = qs_malloc(sizeof(double) * cells, err, "partition table");
    bsq = qs_malloc(sizeof(double) * cells, err, "partition table");
    choice = qs_malloc(sizeof(int) * cells, err, "partition table");
    if (!prefix || !bmax || !bsq || !choice) {
        st = QS_ERR_RUNTIME;
        goto done;
    }
    for (int j = 0; j <= n; ++j) {
        double acc = 0.0;
        prefix[(size_t)j * (size_t)(n + 1) + (size_t)j] = 0.0;
        for (int i = j; i < n; ++i) {
            acc += cost[i];
            prefix[(size_t)j * (size_t)(n + 1) + (size_t)(i + 1)] = acc;
        }
    }
#define AT(i, p) ((size_t)(i) * (size_t)(nparts + 1) + (size_t)(p))
    /* bmax[i][p]: best (max, sumsq) splitting items [0, i) into p non-empty parts */
    for (int i = 0; i <= n; ++i)
        for (int p = 0; p <= nparts; ++p) {
            bmax[AT(i, p)] = -1.0; /* infeasible */
            bsq[AT(i, p)] = 0.0;
            choice[AT(i, p)] = -1;
        }
    bmax[AT(0, 0)] = 0.0;
    for (int p = 1; p <= nparts; ++p)
        for (int i = p; i <= n - (nparts - p); ++i) {
            /* last part = [j, i), j >= p-1 so earlier parts are non-empty */
            for (int j = p - 1; j < i; ++j) {
                double prev = bmax[AT(j, p - 1)];
                if (prev < 0.0) continue;
                double last = prefix[(size_t)j * (size_t)(n + 1) + (size_t)i];
                double m = prev > last ? prev : last;
                double s = bsq[AT(j, p - 1)] + last * last;
                if (choice[AT(i, p)] < 0 || better(m, s, bmax[AT(i, p)], bsq[AT(i, p)])) {
                    bmax[AT(i, p)] = m;
                    bsq[AT(i, p)] = s;
                    choice[AT(i, p)] = j;
                }
            }
        }
    if (choice[AT(n, nparts)] < 0) QS_THROW(err, QS_ERR_INTERNAL, "partition: no solution");
    first[nparts] = n;
    for (int p = nparts, i = n; p >= 1; --p) {
        int j = choice[AT(i, p)];
        first[p - 1] = j;
        i = j;
    }
    if (max_cost) *max_cost = bmax[AT(n, nparts)];
#undef AT
done:
    free(prefix);
    free(bmax);
    free(bsq);
    free(choice);
    return st;
}

void qs_partition_even(int64_t n, int nparts, int part, int64_t *begin, int64_t *end) {
    int64_t base = n / nparts, rem = n % nparts;
    int64_t b = (int64_t)part * base + (part < rem ? part : rem);
    *begin = b;
    *end = b + base + (part < rem ? 1 : 0);
}

qs_status qs_partition_jobs(const double *cost, int n, int nparts, int *owner, qs_err *err) {
    qs_status st = QS_OK;
    int *order = NULL;
    double *load = NULL;
    if (nparts < 1) return QS_FAIL(err, QS_ERR_INTERNAL, "partition_jobs: nparts=%d", nparts);
    order = qs_malloc(sizeof(int) * (size_t)(n > 0 ? n : 1), err, "job order");
    load = qs_calloc((size_t)nparts, sizeof(double), err, "job loads");
    if (!order || !load) {
        st = QS_ERR_RUNTIME;
        goto done;
    }
    for (int i = 0; i < n; ++i) order[i] = i;
    /* insertion sort by cost descending, index ascending (n is small: jobs per layer) */
    for (int i = 1; i < n; ++i) {
        int v = order[i], k = i - 1;
        while (k >= 0 && (cost[order[k]] < cost[v] ||
                          (cost[order[k]] == cost[v] && order[k] > v))) {
            order[k + 1] = order[k];
            --k;
        }
        order[k + 1] = v;
    }
    for (int t = 0; t < n; ++t) {
        int j = order[t], best = 0;
        for (int p = 1; p < nparts; ++p)
            if (load[p] < load[best]) best = p;
        owner[j] = best;
        load[best] += cost[j];
    }
done:
    free(order);
    free(load);
    return st;
}
