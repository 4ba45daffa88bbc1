/* mckp.h: the exact solver of the mixed-precision search (multiple-choice knapsack).
 *
 * Items i = 0..n-1 (a linear, or a tied group of linears that must share one candidate)
 * each have m_i choices j with an exact size s_ij (bytes, int64) and a cost e_ij >= 0
 * (predicted error, double). Exactly one choice per item is chosen so that the summed cost
 * is minimal and the summed size is <= budget. Choices may be disallowed (mask) and items
 * pinned to one choice.
 *
 * Exactness: every size sum and every feasibility test is done in int64; an allocation
 * above the budget is never returned. Costs are doubles: the returned allocation costs at
 * most  min + QS_MCKP_REL_TOL * cost  (ties within the tolerance are equal; the first one
 * found in the solver's fixed search order wins). The search order depends on the input
 * values and indices only (no threads, no libm, IEEE double without contraction), so the
 * same input gives the same allocation on every machine. See docs/search.md.
 *
 * Kernel: no MPI, no files, no global state. qs_mckp_solve_glpk (the GLPK MIP twin) is a
 * cross-check; it uses GLPK's own per-thread environment and frees it before returning.
 */
#ifndef QS_MCKP_H
#define QS_MCKP_H

#include <stdint.h>

#include "status.h"

/* Relative cost tolerance: allocations whose costs differ by at most this fraction of the
 * incumbent's cost are treated as equal (the first one found is kept). */
#define QS_MCKP_REL_TOL 1e-12

/* The instance. Arrays are flattened item-major: choice j of item i is at off[i] + j with
 * off from qs_mckp_offsets. The problem only borrows its arrays (caller owns them). */
typedef struct qs_mckp_problem {
    int n;                  /* number of items, >= 0 */
    const int *nchoice;     /* (n,) choices per item, >= 1 */
    const int64_t *size;    /* (total,) bytes, >= 0; sum over items of the largest allowed
                             * size must fit in int64 */
    const double *cost;     /* (total,) finite, >= 0 */
    const uint8_t *allowed; /* (total,) nonzero = allowed; NULL = all allowed */
    const int *pinned;      /* (n,) -1 = free, else the only choice permitted (must be
                             * allowed); NULL = nothing pinned */
} qs_mckp_problem;

typedef enum qs_mckp_proof {
    QS_MCKP_OPTIMAL = 0,    /* proven optimal (to the cost tolerance) */
    QS_MCKP_INFEASIBLE = 1, /* no allocation fits the budget (proven in int64) */
    QS_MCKP_NODE_LIMIT = 2  /* options.node_limit reached: best found, not proven */
} qs_mckp_proof;

/* Solver knobs; NULL options = all defaults (zero-initialised struct). */
typedef struct qs_mckp_options {
    int64_t node_limit; /* DP states evaluated before giving up; 0 = no limit */
} qs_mckp_options;

/* The answer. qs_mckp_solve allocates `choice`; release with qs_mckp_result_free. */
typedef struct qs_mckp_result {
    int n;              /* items */
    int *choice;        /* (n,) chosen choice per item (index into the item's m_i choices);
                         * all -1 when infeasible */
    int64_t total_size; /* exact sum of the chosen sizes (0 when infeasible) */
    double total_cost;  /* sum of the chosen costs in item order (0 when infeasible) */
    double lp_bound;    /* LP relaxation value at the root (a lower bound on the optimum) */
    qs_mckp_proof proof;
    int64_t nodes;      /* DP states evaluated (bounded) in the core search */
    int core_items;     /* items left with >= 2 choices after reduced-cost fixing */
} qs_mckp_result;

/* off[i] = sum_{k<i} nchoice[k], off[n] = total (off has n+1 entries). */
void qs_mckp_offsets(int n, const int *nchoice, int64_t *off);

/* Checks the instance: QS_ERR_INPUT naming the item and choice for a bad count, negative
 * size, non-finite or negative cost, bad pin, an item with no allowed choice, or sizes whose
 * sum could overflow int64. */
qs_status qs_mckp_check(const qs_mckp_problem *p, qs_err *err);

/* Solves exactly (LP bounds on the convex hulls, dominance, reduced-cost fixing and a
 * bounded dynamic program over non-dominated partial solutions). An infeasible budget
 * (including a negative one) is not an error: r->proof = QS_MCKP_INFEASIBLE. r is overwritten (its previous contents are not freed);
 * on success the caller frees it with qs_mckp_result_free, on failure nothing is left to
 * free. QS_ERR_INPUT for a bad instance, QS_ERR_RUNTIME for out of memory. */
qs_status qs_mckp_solve(const qs_mckp_problem *p, int64_t budget, const qs_mckp_options *opt,
                        qs_mckp_result *r, qs_err *err);

/* The Pareto frontier: out[b] is the optimal allocation at budgets[b] (any order, any
 * count nb >= 0). out has nb entries, each freed with qs_mckp_result_free; on failure
 * nothing is left to free. */
qs_status qs_mckp_pareto(const qs_mckp_problem *p, const int64_t *budgets, int nb,
                         const qs_mckp_options *opt, qs_mckp_result *out, qs_err *err);

/* The twin: the same problem as a 0/1 MIP solved by GLPK (glp_intopt). Its tolerances are
 * floating point, so the answer is re-checked in int64 and the knapsack row tightened and
 * re-solved while GLPK's allocation exceeds the budget. Optimal to GLPK's tolerances only
 * (about 1e-7 relative): a cross-check for tests and the benchmark, not the production
 * solver. Same result contract as qs_mckp_solve (nodes = 0, core_items = n, lp_bound = 0;
 * proof QS_MCKP_NODE_LIMIT if GLPK stopped at its 600 s time limit). QS_ERR_RUNTIME if GLPK fails or was not available at build. */
qs_status qs_mckp_solve_glpk(const qs_mckp_problem *p, int64_t budget, qs_mckp_result *r,
                             qs_err *err);

/* Frees r->choice and zeroes r; safe on a zeroed or already freed result. */
void qs_mckp_result_free(qs_mckp_result *r);

#endif /* QS_MCKP_H */
