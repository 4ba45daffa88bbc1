/* partition.h: the one partition module. Layer plans, job balancing and row splits all
 * come from here, so every schedule is computed the same way on every rank.
 * Pure functions of their arguments (no MPI calls despite the room: the partition is the
 * distribution policy of mpi/, tested serially for many (n, nparts) pairs).
 */
#ifndef QS_PARTITION_H
#define QS_PARTITION_H

#include <stdint.h>

#include "status.h"

/* Optimal contiguous split of n items with costs cost[0..n) (>= 0) into nparts ranges:
 * minimises the largest range cost, and among those the sum of squared range costs
 * (so load is spread evenly below the bottleneck). When n >= nparts every range is
 * non-empty; when n < nparts ranges 0..n-1 get one item each and the rest are empty.
 * Output first[0..nparts] with range p = [first[p], first[p+1]); first[0] = 0,
 * first[nparts] = n. Returns the optimal maximum in *max_cost (may be NULL).
 * Exact dynamic program, O(n^2 * nparts) time, O(n * nparts) memory. */
qs_status qs_partition_contiguous(const double *cost, int n, int nparts, int *first,
                                  double *max_cost, qs_err *err);

/* A 2-D schedule of n items (layers) on nparts workers (ranks): *stages contiguous ranges
 * (first[0..*stages], the optimal split of qs_partition_contiguous, maximum in *max_cost)
 * times *replicas copies, each replica taking every *replicas-th of nchunks chunks;
 * stages x replicas <= nparts (the rest idle). replicas > 0 forces the replica count
 * (at most nparts): stages = min(n, nparts / replicas). replicas = 0 chooses: nparts <= n
 * gives nparts stages x 1 replica; otherwise, over replica counts D = 1..min(nparts,
 * nchunks) with S = min(n, nparts / D) stages, the time per chunk max_cost(S) / D is
 * estimated and the largest S within 2 % of the best is taken (more stages: fewer layers
 * and less memory per rank, fewer partials to ship), with its largest D.
 * first needs min(n, nparts) + 1 entries (at least 2). Deterministic. */
qs_status qs_partition_grid(const double *cost, int n, int nparts, int64_t nchunks,
                            int replicas, int *stages, int *nreplicas, int *first,
                            double *max_cost, qs_err *err);

/* Even split of n rows into nparts: part p gets [*begin, *end). Remainders go to the
 * lowest parts. */
void qs_partition_even(int64_t n, int nparts, int part, int64_t *begin, int64_t *end);

/* Balances independent jobs over nparts workers (longest processing time first, ties by
 * job index, workers by index): owner[j] in [0, nparts). Deterministic. */
qs_status qs_partition_jobs(const double *cost, int n, int nparts, int *owner, qs_err *err);

#endif /* QS_PARTITION_H */
