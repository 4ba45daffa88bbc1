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

qs_status qs_partition_grid(const double *cost, int n, int nparts, int64_t nchunks,
                            int replicas, int *stages, int *nreplicas, int *first,
                            double *max_cost, qs_err *err) {
    qs_status st = QS_OK;
    if (nparts < 1 || replicas < 0)
        return QS_FAIL(err, QS_ERR_INTERNAL, "partition grid: nparts=%d replicas=%d", nparts,
                       replicas);
    const int smax = n > 1 ? n : 1; /* at least one stage, even without items */
    int S = nparts < smax ? nparts : smax, D = 1;
    if (replicas > 0) {
        D = replicas < nparts ? replicas : nparts;
        S = nparts / D < smax ? nparts / D : smax;
    } else if (nparts > n && n > 0) {
        /* candidates: per stage count S, its largest replica count D (within nchunks) */
        const int dmax = nchunks < nparts ? (nchunks > 1 ? (int)nchunks : 1) : nparts;
        double best = -1.0, *t = qs_malloc(sizeof(double) * (size_t)dmax, err, "grid times");
        int *cs = qs_malloc(sizeof(int) * (size_t)dmax, err, "grid stages");
        if (!t || !cs) st = QS_ERR_RUNTIME;
        for (int d = 1; d <= dmax && st == QS_OK; ++d) {
            const int s = nparts / d < smax ? nparts / d : smax;
            cs[d - 1] = 0;
            if (d < dmax && (nparts / (d + 1) < smax ? nparts / (d + 1) : smax) == s) continue;
            double mc = 0.0;
            st = qs_partition_contiguous(cost, n, s, first, &mc, err);
            cs[d - 1] = s;
            t[d - 1] = mc / (double)d;
            if (best < 0.0 || t[d - 1] < best) best = t[d - 1];
        }
        /* the largest S (smallest D) within 2 % of the best estimate */
        for (int d = 1; d <= dmax && st == QS_OK; ++d)
            if (cs[d - 1] > 0 && t[d - 1] <= best * 1.02) {
                S = cs[d - 1];
                D = d;
                break;
            }
        free(t);
        free(cs);
        if (st != QS_OK) return st;
    }
    *stages = S;
    *nreplicas = D;
    return qs_partition_contiguous(cost, n, S, first, max_cost, err);
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
