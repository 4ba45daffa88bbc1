/* test_mckp.c: the exact mixed-precision solver against brute-force enumeration (small
 * random instances with ties, masks, pins, huge sizes and infeasible budgets), against the
 * GLPK twin (medium instances), bad inputs, the Pareto function, determinism, and a
 * Llama-70B-shaped instance (320 items x 8 GPTQ candidates) solved to proven optimality. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "check.h"
#include "mckp.h"
#include "test_mckp_llama.h"

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint64_t rnext(void) { return qs_test_xorshift64(&rng_state); }
static int rint_(int lo, int hi) { return lo + (int)(rnext() % (uint64_t)(hi - lo + 1)); }
static double runif(void) { return (double)(rnext() >> 11) / 9007199254740992.0; }

#define MAXN 8
#define MAXM 6

typedef struct inst {
    int n;
    int nchoice[MAXN];
    int64_t size[MAXN * MAXM];
    double cost[MAXN * MAXM];
    uint8_t allowed[MAXN * MAXM];
    int pinned[MAXN];
    int use_mask, use_pin;
} inst;

static qs_mckp_problem as_problem(const inst *t) {
    qs_mckp_problem p = {t->n, t->nchoice, t->size, t->cost, t->use_mask ? t->allowed : NULL,
                         t->use_pin ? t->pinned : NULL};
    return p;
}

/* Brute force: the minimal cost (summed in item order) over every allocation within the
 * budget; returns 0 if none fits. */
static int brute(const qs_mckp_problem *p, int64_t budget, double *best) {
    int64_t off[MAXN + 1];
    qs_mckp_offsets(p->n, p->nchoice, off);
    int x[MAXN] = {0};
    int found = 0;
    for (;;) {
        int ok = 1;
        int64_t S = 0;
        double E = 0.0;
        for (int i = 0; i < p->n && ok; ++i) {
            if (p->allowed && !p->allowed[off[i] + x[i]]) ok = 0;
            if (p->pinned && p->pinned[i] >= 0 && p->pinned[i] != x[i]) ok = 0;
            S += p->size[off[i] + x[i]];
            E += p->cost[off[i] + x[i]];
        }
        if (ok && S <= budget && (!found || E < *best)) {
            *best = E;
            found = 1;
        }
        int i = 0;
        while (i < p->n && ++x[i] == p->nchoice[i]) x[i++] = 0;
        if (i == p->n) break;
    }
    return found;
}

/* Checks r is a valid allocation of p within budget whose reported totals are exact. */
static void check_alloc(const qs_mckp_problem *p, int64_t budget, const qs_mckp_result *r,
                        const char *what) {
    int64_t *off = malloc(((size_t)p->n + 1) * sizeof(*off));
    qs_mckp_offsets(p->n, p->nchoice, off);
    int64_t S = 0;
    double E = 0.0;
    for (int i = 0; i < p->n; ++i) {
        int j = r->choice[i];
        CHECK(j >= 0 && j < p->nchoice[i], "%s: item %d choice %d", what, i, j);
        if (j < 0 || j >= p->nchoice[i]) continue;
        CHECK(!p->allowed || p->allowed[off[i] + j], "%s: item %d disallowed %d", what, i, j);
        CHECK(!p->pinned || p->pinned[i] < 0 || p->pinned[i] == j, "%s: item %d pin", what, i);
        S += p->size[off[i] + j];
        E += p->cost[off[i] + j];
    }
    CHECK(S == r->total_size, "%s: size %lld reported %lld", what, (long long)S,
          (long long)r->total_size);
    CHECK(S <= budget, "%s: size %lld above budget %lld", what, (long long)S, (long long)budget);
    CHECK(E == r->total_cost, "%s: cost %.17g reported %.17g", what, E, r->total_cost);
    free(off);
}

static int same_cost(double a, double b, double rel) {
    return fabs(a - b) <= rel * fmax(fabs(a), fabs(b));
}

static void random_inst(inst *t, int64_t *budget) {
    memset(t, 0, sizeof(*t));
    t->n = rint_(2, MAXN);
    int kind = rint_(0, 3); /* 0 small ties, 1 continuous, 2 huge sizes, 3 coarse costs */
    t->use_mask = rint_(0, 2) == 0;
    t->use_pin = rint_(0, 3) == 0;
    int64_t off = 0, smin = 0, smax = 0;
    for (int i = 0; i < t->n; ++i) {
        int m = rint_(1, MAXM);
        if (t->n >= 7 && m > 4) m = 4; /* keep brute force small */
        t->nchoice[i] = m;
        int any = 0;
        for (int j = 0; j < m; ++j) {
            int64_t s;
            double e;
            if (kind == 0) {
                s = rint_(0, 6);
                e = (double)rint_(0, 4);
            } else if (kind == 1) {
                s = rint_(1, 1000);
                e = runif() * 10.0;
            } else if (kind == 2) {
                s = (int64_t)rint_(1, 1000000) * 1000 + rint_(0, 999);
                e = runif() * 1e-3;
            } else {
                s = rint_(1, 40);
                e = 0.25 * rint_(0, 8);
            }
            t->size[off + j] = s;
            t->cost[off + j] = e;
            t->allowed[off + j] = (uint8_t)(rint_(0, 4) != 0);
            any |= t->allowed[off + j];
        }
        if (!any) t->allowed[off + rint_(0, m - 1)] = 1;
        t->pinned[i] = -1;
        if (rint_(0, 4) == 0) {
            int j = rint_(0, m - 1);
            if (!t->use_mask || t->allowed[off + j]) t->pinned[i] = j;
        }
        int64_t lo = INT64_MAX, hi = 0;
        for (int j = 0; j < m; ++j) {
            if (t->size[off + j] < lo) lo = t->size[off + j];
            if (t->size[off + j] > hi) hi = t->size[off + j];
        }
        smin += lo;
        smax += hi;
        off += m;
    }
    /* budgets from below the smallest total (infeasible) to above the largest */
    int64_t span = smax - smin;
    *budget = smin - span / 8 + (int64_t)(runif() * (double)(span + span / 4 + 1));
    if (rint_(0, 9) == 0) *budget = smin - 1;
    if (rint_(0, 9) == 0) *budget = smin;
}

static void test_random_vs_brute(void) {
    int ninfeasible = 0, nglpk = 0;
    for (int trial = 0; trial < 600; ++trial) {
        inst t;
        int64_t budget;
        random_inst(&t, &budget);
        qs_mckp_problem p = as_problem(&t);
        double best = 0.0;
        int feasible = brute(&p, budget, &best);
        qs_mckp_result r;
        qs_err err = {0};
        qs_status st = qs_mckp_solve(&p, budget, NULL, &r, &err);
        CHECK(st == QS_OK, "trial %d: status %d (%s)", trial, st, err.msg);
        if (st != QS_OK) continue;
        char what[64];
        snprintf(what, sizeof(what), "trial %d", trial);
        if (!feasible) {
            ++ninfeasible;
            CHECK(r.proof == QS_MCKP_INFEASIBLE, "%s: infeasible not detected", what);
            for (int i = 0; i < t.n; ++i) CHECK(r.choice[i] == -1, "%s: choice set", what);
        } else {
            CHECK(r.proof == QS_MCKP_OPTIMAL, "%s: proof %d", what, r.proof);
            check_alloc(&p, budget, &r, what);
            CHECK(same_cost(r.total_cost, best, 1e-9), "%s: cost %.17g brute %.17g", what,
                  r.total_cost, best);
            CHECK(r.lp_bound <= best + 1e-9 * best, "%s: LP bound %.17g above optimum %.17g",
                  what, r.lp_bound, best);
        }
        /* determinism: a second solve gives the same allocation */
        qs_mckp_result r2;
        st = qs_mckp_solve(&p, budget, NULL, &r2, &err);
        CHECK(st == QS_OK && memcmp(r.choice, r2.choice, (size_t)t.n * sizeof(int)) == 0,
              "%s: second solve differs", what);
        if (st == QS_OK) qs_mckp_result_free(&r2);
        /* the GLPK twin on every fourth instance */
        if (trial % 4 == 0) {
            qs_mckp_result g;
            st = qs_mckp_solve_glpk(&p, budget, &g, &err);
            CHECK(st == QS_OK, "%s: glpk status %d (%s)", what, st, err.msg);
            if (st == QS_OK) {
                ++nglpk;
                CHECK(g.proof == r.proof, "%s: glpk proof %d vs %d", what, g.proof, r.proof);
                if (feasible) {
                    check_alloc(&p, budget, &g, what);
                    CHECK(same_cost(g.total_cost, best, 1e-6), "%s: glpk %.17g brute %.17g",
                          what, g.total_cost, best);
                }
                qs_mckp_result_free(&g);
            }
        }
        qs_mckp_result_free(&r);
    }
    CHECK(ninfeasible >= 20, "only %d infeasible instances", ninfeasible);
    printf("random vs brute force: 600 instances (%d infeasible), %d also vs GLPK\n",
           ninfeasible, nglpk);
}

/* Medium instances (40 items x 6 choices, random concave-ish costs) against GLPK. */
static void test_medium_vs_glpk(void) {
    enum { N = 40, M = 6 };
    int nchoice[N];
    int64_t size[N * M];
    double cost[N * M];
    for (int trial = 0; trial < 12; ++trial) {
        int64_t smin = 0, smax = 0;
        for (int i = 0; i < N; ++i) {
            nchoice[i] = M;
            double sens = 0.1 + runif() * 10.0;
            int64_t base = (int64_t)rint_(1000, 100000);
            for (int j = 0; j < M; ++j) {
                size[i * M + j] = base * (j + 2) + rint_(0, 500);
                cost[i * M + j] = sens * pow(0.5, j + 1) * (0.8 + 0.4 * runif());
            }
            smin += size[i * M];
            smax += size[i * M + M - 1];
        }
        int64_t budget = smin + (int64_t)((double)(smax - smin) * (0.1 + 0.8 * runif()));
        qs_mckp_problem p = {N, nchoice, size, cost, NULL, NULL};
        qs_mckp_result r, g;
        qs_err err = {0};
        qs_status st = qs_mckp_solve(&p, budget, NULL, &r, &err);
        CHECK(st == QS_OK && r.proof == QS_MCKP_OPTIMAL, "medium %d: %d %s", trial, st, err.msg);
        if (st != QS_OK) continue;
        check_alloc(&p, budget, &r, "medium");
        st = qs_mckp_solve_glpk(&p, budget, &g, &err);
        CHECK(st == QS_OK, "medium %d glpk: %s", trial, err.msg);
        if (st == QS_OK) {
            check_alloc(&p, budget, &g, "medium glpk");
            /* ours is exact: never worse than GLPK beyond GLPK's own tolerance */
            CHECK(r.total_cost <= g.total_cost * (1.0 + 1e-12),
                  "medium %d: ours %.17g glpk %.17g", trial, r.total_cost, g.total_cost);
            CHECK(same_cost(r.total_cost, g.total_cost, 1e-6), "medium %d: ours %.17g glpk %.17g",
                  trial, r.total_cost, g.total_cost);
            qs_mckp_result_free(&g);
        }
        qs_mckp_result_free(&r);
    }
}

static void expect_input_error(const qs_mckp_problem *p, const char *what) {
    qs_mckp_result r;
    qs_err err = {0};
    qs_status st = qs_mckp_solve(p, 100, NULL, &r, &err);
    CHECK(st == QS_ERR_INPUT, "%s: status %d", what, st);
    CHECK(strchr(err.msg, '\n') == NULL && strstr(err.msg, "mckp: ") == err.msg,
          "%s: message '%s'", what, err.msg);
    CHECK(r.choice == NULL, "%s: result not released", what);
}

static void test_bad_inputs(void) {
    int nchoice[2] = {2, 2};
    int64_t size[4] = {1, 2, 3, 4};
    double cost[4] = {1, 0.5, 2, 1};
    uint8_t allowed[4] = {1, 1, 0, 0};
    int pinned[2] = {-1, 5};
    qs_mckp_problem p = {2, nchoice, size, cost, NULL, NULL};
    int bad_n[2] = {2, 0};
    p.nchoice = bad_n;
    expect_input_error(&p, "zero choices");
    p.nchoice = nchoice;
    size[1] = -1;
    expect_input_error(&p, "negative size");
    size[1] = 2;
    cost[2] = NAN;
    expect_input_error(&p, "NaN cost");
    cost[2] = -1.0;
    expect_input_error(&p, "negative cost");
    cost[2] = 2.0;
    p.allowed = allowed;
    expect_input_error(&p, "no allowed choice");
    p.allowed = NULL;
    p.pinned = pinned;
    expect_input_error(&p, "pin out of range");
    allowed[2] = 1;
    pinned[1] = 1;
    p.allowed = allowed;
    expect_input_error(&p, "pinned to a disallowed choice");
    p.allowed = NULL;
    p.pinned = NULL;
    size[0] = INT64_MAX / 2 + 1;
    size[3] = INT64_MAX / 2 + 1;
    expect_input_error(&p, "overflow");
    size[0] = 1;
    size[3] = 4;

    /* no items: optimal, empty; negative budget: infeasible (not an error) */
    qs_mckp_problem empty = {0, NULL, NULL, NULL, NULL, NULL};
    qs_mckp_result r;
    qs_err err = {0};
    CHECK(qs_mckp_solve(&empty, 0, NULL, &r, &err) == QS_OK && r.proof == QS_MCKP_OPTIMAL &&
              r.total_size == 0,
          "empty instance");
    qs_mckp_result_free(&r);
    CHECK(qs_mckp_solve(&empty, -1, NULL, &r, &err) == QS_OK && r.proof == QS_MCKP_INFEASIBLE,
          "empty instance, negative budget");
    qs_mckp_result_free(&r);
    CHECK(qs_mckp_solve(&p, -5, NULL, &r, &err) == QS_OK && r.proof == QS_MCKP_INFEASIBLE,
          "negative budget");
    qs_mckp_result_free(&r);
}

static void test_pareto(void) {
    inst t;
    int64_t budget;
    int done = 0;
    while (done < 20) {
        random_inst(&t, &budget);
        qs_mckp_problem p = as_problem(&t);
        int64_t budgets[7];
        for (int b = 0; b < 7; ++b) budgets[b] = budget + (b - 3) * 7 * (1 + t.size[0] / 8);
        qs_mckp_result out[7];
        qs_err err = {0};
        qs_status st = qs_mckp_pareto(&p, budgets, 7, NULL, out, &err);
        CHECK(st == QS_OK, "pareto: %s", err.msg);
        if (st != QS_OK) return;
        for (int b = 0; b < 7; ++b) {
            double best = 0.0;
            int feasible = brute(&p, budgets[b], &best);
            CHECK(out[b].proof == (feasible ? QS_MCKP_OPTIMAL : QS_MCKP_INFEASIBLE),
                  "pareto proof");
            if (feasible) {
                check_alloc(&p, budgets[b], &out[b], "pareto");
                CHECK(same_cost(out[b].total_cost, best, 1e-9), "pareto cost");
            }
            if (b > 0 && out[b].proof == QS_MCKP_OPTIMAL && out[b - 1].proof == QS_MCKP_OPTIMAL)
                CHECK(out[b].total_cost <= out[b - 1].total_cost * (1.0 + 1e-12),
                      "pareto: cost rises with the budget");
        }
        for (int b = 0; b < 7; ++b) qs_mckp_result_free(&out[b]);
        ++done;
    }
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* A fixed checksum of an allocation (identical on every machine for the same input). */
static uint64_t alloc_hash(const qs_mckp_result *r) {
    uint64_t h = 1469598103934665603ull;
    for (int i = 0; i < r->n; ++i) h = (h ^ (uint64_t)(r->choice[i] + 1)) * 1099511628211ull;
    return h;
}

static void test_llama70b(void) {
    qs_llama_inst L;
    if (qs_llama_inst_make(&L, 20240607) != 0) {
        CHECK(0, "llama instance: out of memory");
        return;
    }
    int64_t budgets[3] = {L.uniform[QS_LLAMA_W3G128], L.uniform[QS_LLAMA_W3G128] / 2 +
                                                         L.uniform[QS_LLAMA_W4G128] / 2,
                          L.uniform[QS_LLAMA_W4G128] - 12345};
    /* allocations recorded once; they must not change between machines or runs */
    const uint64_t golden[3] = {0x66d8e28ff9f951fbull, 0x577f220d41ff48acull,
                                0x4061a1a2dc8d3222ull};
    for (int b = 0; b < 3; ++b) {
        qs_mckp_result r;
        qs_err err = {0};
        double t0 = now();
        qs_status st = qs_mckp_solve(&L.p, budgets[b], NULL, &r, &err);
        double dt = now() - t0;
        CHECK(st == QS_OK, "llama: %s", err.msg);
        if (st != QS_OK) continue;
        CHECK(r.proof == QS_MCKP_OPTIMAL, "llama budget %d: proof %d", b, r.proof);
        check_alloc(&L.p, budgets[b], &r, "llama");
        CHECK(r.total_cost >= r.lp_bound * (1.0 - 1e-12), "llama: below the LP bound");
        CHECK(dt < 60.0, "llama budget %d: %.1f s (guard 60 s)", b, dt);
        /* GLPK, solving the same MIP its own way, finds no cheaper allocation */
        qs_mckp_result g;
        double tg = now();
        st = qs_mckp_solve_glpk(&L.p, budgets[b], &g, &err);
        tg = now() - tg;
        CHECK(st == QS_OK, "llama glpk: %s", err.msg);
        if (st == QS_OK) {
            check_alloc(&L.p, budgets[b], &g, "llama glpk");
            CHECK(g.proof != QS_MCKP_OPTIMAL || r.total_cost <= g.total_cost * (1.0 + 1e-12),
                  "llama budget %d: ours %.17g above GLPK's %.17g", b, r.total_cost,
                  g.total_cost);
            printf("llama70b budget %d: GLPK cost %.9g in %.3f s\n", b, g.total_cost, tg);
            qs_mckp_result_free(&g);
        }
        /* a node limit still returns a valid allocation within the budget */
        qs_mckp_options opt = {5};
        qs_mckp_result lim;
        st = qs_mckp_solve(&L.p, budgets[b], &opt, &lim, &err);
        CHECK(st == QS_OK && (lim.proof == QS_MCKP_NODE_LIMIT || lim.proof == QS_MCKP_OPTIMAL),
              "llama node limit: %d %d", st, st == QS_OK ? (int)lim.proof : -1);
        if (st == QS_OK) {
            check_alloc(&L.p, budgets[b], &lim, "llama node limit");
            CHECK(lim.total_cost >= r.total_cost * (1.0 - 1e-12), "node limit beat the optimum");
            qs_mckp_result_free(&lim);
        }
        printf("llama70b budget %d allocation hash %016llx\n", b,
               (unsigned long long)alloc_hash(&r));
        CHECK(alloc_hash(&r) == golden[b], "llama budget %d: allocation hash %016llx, golden "
              "%016llx (the search order changed, or arithmetic differs on this machine)",
              b, (unsigned long long)alloc_hash(&r), (unsigned long long)golden[b]);
        printf("llama70b budget %lld: cost %.9g (LP %.9g), size %lld, %lld nodes, core %d, %.3f s\n",
               (long long)budgets[b], r.total_cost, r.lp_bound, (long long)r.total_size,
               (long long)r.nodes, r.core_items, dt);
        qs_mckp_result_free(&r);
    }
    qs_llama_inst_free(&L);
}

int main(void) {
    test_bad_inputs();
    test_random_vs_brute();
    test_pareto();
    test_medium_vs_glpk();
    test_llama70b();
    return qs_test_finish("test_mckp");
}
