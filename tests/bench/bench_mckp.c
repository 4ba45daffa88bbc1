/* bench_mckp.c: time of the exact mixed-precision solver on the Llama-70B-shaped instance
 * (320 items x 8 GPTQ candidates) at several budgets, and a Pareto sweep; with --glpk also
 * the GLPK twin on the same budgets. Exits 1 if a solve is not proven optimal or takes
 * longer than 10 s. Prints every solve, the median and the worst feasible solve. Not a test.
 *
 * Usage: bench_mckp [--glpk] [--seeds N] [--jitter BYTES]
 *   --jitter adds up to BYTES random bytes to every size (items no longer share sizes).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mckp.h"
#include "test_mckp_llama.h"

static int cmp_double(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int main(int argc, char **argv) {
    int glpk = 0, nseeds = 5, bad = 0;
    int64_t jitter = 0;
    for (int a = 1; a < argc; ++a) {
        if (!strcmp(argv[a], "--glpk")) glpk = 1;
        else if (!strcmp(argv[a], "--seeds") && a + 1 < argc) nseeds = atoi(argv[++a]);
        else if (!strcmp(argv[a], "--jitter") && a + 1 < argc) jitter = atoll(argv[++a]);
        else {
            fprintf(stderr, "usage: bench_mckp [--glpk] [--seeds N] [--jitter BYTES]\n");
            return 2;
        }
    }
    double worst = 0.0;
    double *feasible = malloc(sizeof(double) * 3 * (size_t)(nseeds > 0 ? nseeds : 1)); // (3 nseeds)
    int nfeasible = 0;
    if (!feasible) return 1;
    for (int seed = 1; seed <= nseeds; ++seed) {
        qs_llama_inst L;
        if (qs_llama_inst_make(&L, (uint64_t)seed) != 0) return 1;
        if (jitter) /* every item its own sizes: few equal partial sums for the DP to merge */
            for (int t = 0; t < QS_LLAMA_ITEMS * QS_LLAMA_CANDS; ++t)
                L.size[t] += (int64_t)(qs_llama_unif() * (double)jitter);
        const int64_t *U = L.uniform;
        int64_t budgets[4] = {U[QS_LLAMA_W3G128], U[QS_LLAMA_W3G128] / 2 + U[QS_LLAMA_W4G128] / 2,
                              U[1] - 1, U[QS_LLAMA_W4G128] - 12345};
        const char *names[4] = {"w3g128", "w3/w4 mid", "w2g128-1", "w4g128-12345"};
        for (int b = 0; b < 4; ++b) {
            qs_mckp_result r;
            qs_err err = {0};
            double t0 = now();
            qs_status st = qs_mckp_solve(&L.p, budgets[b], NULL, &r, &err);
            double dt = now() - t0;
            if (st != QS_OK) {
                fprintf(stderr, "bench_mckp: %s\n", err.msg);
                return 1;
            }
            if (dt > worst) worst = dt;
            if (b != 2) feasible[nfeasible++] = dt;
            qs_mckp_proof want = b == 2 ? QS_MCKP_INFEASIBLE : QS_MCKP_OPTIMAL;
            if (r.proof != want || dt > 10.0) bad = 1;
            printf("seed %d budget %-13s %14lld B: %s cost %.10g (LP %.10g) %8lld nodes core %3d"
                   "  %.4f s\n",
                   seed, names[b], (long long)budgets[b],
                   r.proof == QS_MCKP_OPTIMAL      ? "optimal"
                   : r.proof == QS_MCKP_INFEASIBLE ? "infeasible"
                                                   : "NOT optimal",
                   r.total_cost,
                   r.lp_bound, (long long)r.nodes, r.core_items, dt);
            if (glpk) {
                qs_mckp_result g;
                t0 = now();
                st = qs_mckp_solve_glpk(&L.p, budgets[b], &g, &err);
                dt = now() - t0;
                if (st != QS_OK) {
                    printf("    glpk: %s\n", err.msg);
                } else {
                    printf("    glpk: %s cost %.10g (ours - glpk = %.3g)  %.3f s\n",
                           g.proof == QS_MCKP_OPTIMAL      ? "optimal"
                           : g.proof == QS_MCKP_INFEASIBLE ? "infeasible"
                                                           : "time limit",
                           g.total_cost,
                           r.total_cost - g.total_cost, dt);
                    qs_mckp_result_free(&g);
                }
            }
            qs_mckp_result_free(&r);
        }
        if (seed == 1) { /* a Pareto sweep of 33 budgets from uniform w2g128 to w4g32 */
            enum { NB = 33 };
            int64_t bb[NB];
            qs_mckp_result out[NB];
            /* with --jitter every size grew by up to `jitter`: start where uniform w2g128 fits */
            const int64_t lo = U[1] + (int64_t)QS_LLAMA_ITEMS * jitter;
            for (int t = 0; t < NB; ++t) bb[t] = lo + (U[4] - lo) / (NB - 1) * t;
            qs_err err = {0};
            double t0 = now();
            qs_status st = qs_mckp_pareto(&L.p, bb, NB, NULL, out, &err);
            double dt = now() - t0;
            if (st != QS_OK) {
                fprintf(stderr, "bench_mckp: %s\n", err.msg);
                return 1;
            }
            for (int t = 0; t < NB; ++t) {
                if (out[t].proof != QS_MCKP_OPTIMAL) bad = 1;
                qs_mckp_result_free(&out[t]);
            }
            printf("pareto: %d budgets in %.3f s\n", NB, dt);
        }
        qs_llama_inst_free(&L);
    }
    if (nfeasible > 0) {
        qsort(feasible, (size_t)nfeasible, sizeof(double), cmp_double);
        printf("median single solve of %d feasible: %.4f s\n", nfeasible,
               nfeasible % 2 ? feasible[nfeasible / 2]
                             : 0.5 * (feasible[nfeasible / 2 - 1] + feasible[nfeasible / 2]));
    }
    free(feasible);
    printf("worst single solve: %.4f s (limit 10 s)\n", worst);
    return bad;
}
