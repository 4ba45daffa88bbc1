/* mckp.c: exact multiple-choice knapsack (the mixed-precision search's solver).
 *
 * Algorithm (docs/search.md has the long form):
 *  1. Per item, the allowed (or pinned) choices sorted by (size, cost, index); a choice is
 *     dropped when an earlier one is no larger and no more costly (dominance, exact).
 *     What remains has strictly increasing sizes and strictly decreasing costs.
 *  2. The LP relaxation is solved greedily: every item starts at its smallest choice and
 *     the segments of the lower convex hulls are taken by steepest slope (cost saved per
 *     byte) until the budget is reached; the last one fractionally.
 *  3. An incumbent: the LP's integer part, improved greedily by single-item moves.
 *  4. Reduced-cost fixing with the LP's dual price lambda: choice j of item i is dropped when
 *     L(lambda) + r_ij >= incumbent - tol, where r_ij is its Lagrangian reduced cost. Items
 *     left with one choice are fixed; the rest (the core) go to
 *  5. a bounded dynamic program over the core items (one at a time): the states are the
 *     non-dominated (size, cost) pairs of partial solutions; a state is dropped when an
 *     other is no larger and no costlier, or when its LP bound (cost + LP of the remaining
 *     items in the remaining budget) cannot beat the incumbent. Items of the same shape have
 *     the same sizes, so many partial solutions share a size and merge: this is what makes
 *     the search fast where a depth-first branch and bound explores symmetric copies. The
 *     LP's integer part of every state is tried as an incumbent.
 * Sizes are int64 everywhere a decision about feasibility is made; doubles only enter the
 * bounds. A node is pruned when bound >= incumbent - QS_MCKP_REL_TOL * incumbent.
 */
#include "mckp.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#if defined(__has_include)
#if __has_include(<glpk.h>)
#include <glpk.h>
#define QS_MCKP_HAVE_GLPK 1
#endif
#endif

void qs_mckp_offsets(int n, const int *nchoice, int64_t *off) {
    off[0] = 0;
    for (int i = 0; i < n; ++i) off[i + 1] = off[i] + nchoice[i];
}

void qs_mckp_result_free(qs_mckp_result *r) {
    if (!r) return;
    free(r->choice);
    memset(r, 0, sizeof(*r));
}

static int is_allowed(const qs_mckp_problem *p, const int64_t *off, int i, int j) {
    if (p->pinned && p->pinned[i] >= 0 && p->pinned[i] != j) return 0;
    return !p->allowed || p->allowed[off[i] + j] != 0;
}

qs_status qs_mckp_check(const qs_mckp_problem *p, qs_err *err) {
    qs_status st = QS_OK;
    int64_t *off = NULL;
    if (!p || p->n < 0) QS_THROW(err, QS_ERR_INPUT, "mckp: negative item count");
    if (p->n == 0) goto done;
    if (!p->nchoice || !p->size || !p->cost)
        QS_THROW(err, QS_ERR_INPUT, "mckp: missing nchoice, size or cost array");
    for (int i = 0; i < p->n; ++i)
        if (p->nchoice[i] < 1)
            QS_THROW(err, QS_ERR_INPUT, "mckp: item %d has %d choices (need >= 1)", i,
                     p->nchoice[i]);
    off = qs_malloc(((size_t)p->n + 1) * sizeof(*off), err, "mckp offsets");
    if (!off) {
        st = QS_ERR_RUNTIME;
        goto done;
    }
    qs_mckp_offsets(p->n, p->nchoice, off);
    int64_t sum_max = 0;
    for (int i = 0; i < p->n; ++i) {
        int m = p->nchoice[i];
        if (p->pinned && (p->pinned[i] < -1 || p->pinned[i] >= m))
            QS_THROW(err, QS_ERR_INPUT, "mckp: item %d pinned to choice %d of %d", i,
                     p->pinned[i], m);
        if (p->pinned && p->pinned[i] >= 0 && p->allowed && !p->allowed[off[i] + p->pinned[i]])
            QS_THROW(err, QS_ERR_INPUT, "mckp: item %d pinned to disallowed choice %d", i,
                     p->pinned[i]);
        int64_t mx = -1;
        for (int j = 0; j < m; ++j) {
            int64_t s = p->size[off[i] + j];
            double e = p->cost[off[i] + j];
            if (s < 0) QS_THROW(err, QS_ERR_INPUT, "mckp: item %d choice %d has size %lld < 0",
                                i, j, (long long)s);
            if (!isfinite(e) || e < 0.0)
                QS_THROW(err, QS_ERR_INPUT, "mckp: item %d choice %d has cost %g (need finite >= 0)",
                         i, j, e);
            if (is_allowed(p, off, i, j) && s > mx) mx = s;
        }
        if (mx < 0) QS_THROW(err, QS_ERR_INPUT, "mckp: item %d has no allowed choice", i);
        if (sum_max > INT64_MAX - mx)
            QS_THROW(err, QS_ERR_INPUT, "mckp: item %d: summed sizes overflow int64", i);
        sum_max += mx;
    }
done:
    free(off);
    return st;
}

/* ---------------------------------------------------------------------------------------
 * Solver state. "Candidates" are the kept choices of an item after dominance (and later
 * reduced-cost) filtering; they are stored per item in increasing size order. */
typedef struct cand {
    int64_t s; /* size */
    double e;  /* cost */
    int j;     /* original choice index */
} cand;

typedef struct seg { /* one hull segment: from hull point `from` to `to` of item `pos` */
    double slope;    /* de / ds < 0 */
    int64_t ds;      /* > 0 */
    double de;       /* < 0 */
    int pos;         /* item position (DFS order in the core, item index at the root) */
    int to;          /* candidate index (within the item's list) reached by the segment */
} seg;

typedef struct bb { /* the core search */
    int nc;            /* core items */
    int maxk;          /* most candidates of a core item */
    int *item;         /* (nc,) original item index of DFS position d */
    int *cbeg, *ccnt;  /* (nc,) candidates of position d: cand[cbeg[d] .. + ccnt[d]) */
    cand *cand;        /* (pool,) */
    seg *seg;          /* (nseg,) sorted by (slope, pos, to) */
    int nseg;
    int64_t *smin;     /* (nc+1,) suffix sums of the smallest candidate's size */
    double *emin;      /* (nc+1,) suffix sums of the smallest candidate's cost */
    int *lpc;          /* (nc,) scratch: LP rounding's candidate per position */
    int *bestc;        /* (nc,) incumbent's candidate per position (valid if have_best) */
    int have_best;
    double inc, cut;   /* incumbent cost of the core items; cut = inc - tol (set_cut) */
    double fixed_e;    /* cost of the fixed (non-core) items */
    int64_t nodes, limit;
    int stopped;
} bb;

static int cand_cmp(const void *a, const void *b) {
    const cand *x = a, *y = b;
    if (x->s != y->s) return x->s < y->s ? -1 : 1;
    if (x->e != y->e) return x->e < y->e ? -1 : 1;
    return (x->j > y->j) - (x->j < y->j);
}

static int seg_cmp(const void *a, const void *b) {
    const seg *x = a, *y = b;
    if (x->slope != y->slope) return x->slope < y->slope ? -1 : 1;
    if (x->pos != y->pos) return x->pos < y->pos ? -1 : 1;
    return (x->to > y->to) - (x->to < y->to);
}

/* Sorts c[0..k) and removes dominated candidates in place; returns the count kept. */
static int dominance_filter(cand *c, int k) {
    qsort(c, (size_t)k, sizeof(*c), cand_cmp);
    int w = 0;
    for (int t = 0; t < k; ++t)
        if (w == 0 || c[t].e < c[w - 1].e) c[w++] = c[t];
    return w;
}

/* Lower convex hull of c[0..k) (sizes increasing, costs decreasing): appends its segments
 * (tagged with pos) to seg and returns how many. Slopes strictly increase along the hull
 * in the computed doubles, so sorting all segments by slope keeps each item's in order. */
static int hull_segments(const cand *c, int k, int pos, int *stack, seg *out) {
    int h = 0;
    for (int t = 0; t < k; ++t) {
        while (h >= 2) {
            const cand *a = &c[stack[h - 2]], *b = &c[stack[h - 1]];
            double s1 = (b->e - a->e) / (double)(b->s - a->s);
            double s2 = (c[t].e - b->e) / (double)(c[t].s - b->s);
            if (s1 >= s2) --h;
            else break;
        }
        stack[h++] = t;
    }
    for (int t = 1; t < h; ++t) {
        const cand *a = &c[stack[t - 1]], *b = &c[stack[t]];
        out[t - 1].ds = b->s - a->s;
        out[t - 1].de = b->e - a->e;
        out[t - 1].slope = out[t - 1].de / (double)out[t - 1].ds;
        out[t - 1].pos = pos;
        out[t - 1].to = stack[t];
    }
    return h - 1;
}

/* LP relaxation over positions >= d with budget R. Returns the bound (HUGE_VAL if even the
 * smallest candidates do not fit); *vint = cost of its integer part (feasible); *integral
 * = 1 if the LP has no fractional segment. If lpc != NULL, writes the integer part's
 * candidate per position >= d. */
static double lp_eval(const bb *b, int d, int64_t R, double *vint, int *integral, int *lpc) {
    if (R < b->smin[d]) {
        *vint = HUGE_VAL;
        *integral = 0;
        return HUGE_VAL;
    }
    int64_t left = R - b->smin[d];
    double v = b->emin[d];
    if (lpc)
        for (int p = d; p < b->nc; ++p) lpc[p] = 0;
    *integral = 1;
    double frac = 0.0;
    for (int t = 0; t < b->nseg; ++t) {
        const seg *s = &b->seg[t];
        if (s->pos < d) continue;
        if (s->ds <= left) {
            left -= s->ds;
            v += s->de;
            if (lpc) lpc[s->pos] = s->to;
        } else {
            if (left > 0) {
                *integral = 0;
                frac = s->de * ((double)left / (double)s->ds);
            }
            break;
        }
    }
    *vint = v;
    return v + frac;
}

/* The tolerance is relative to the full incumbent cost (core part + fixed items). */
static void set_cut(bb *b) { b->cut = b->inc - QS_MCKP_REL_TOL * (b->inc + b->fixed_e); }

/* One partial solution of the core DP: positions < d decided. */
typedef struct state {
    int64_t s;      /* size of the decided positions */
    double e;       /* cost of the decided positions */
    int64_t parent; /* index of the state it extends in bb.hist, -1 for the root */
    int k;          /* candidate chosen at its position */
} state;

static int state_cmp(const void *a, const void *b) {
    const state *x = a, *y = b;
    if (x->s != y->s) return x->s < y->s ? -1 : 1;
    if (x->e != y->e) return x->e < y->e ? -1 : 1;
    if (x->parent != y->parent) return x->parent < y->parent ? -1 : 1;
    return (x->k > y->k) - (x->k < y->k);
}

/* Records a better core solution: the state chain ending in hist[t] decides positions
 * < d, lpc the rest. */
static void take_incumbent(bb *b, const state *hist, int64_t t, int d, double value) {
    for (int p = d; p < b->nc; ++p) b->bestc[p] = b->lpc[p];
    for (int p = d - 1; p >= 0; --p) {
        b->bestc[p] = hist[t].k;
        t = hist[t].parent;
    }
    b->have_best = 1;
    b->inc = value;
    set_cut(b);
}

/* The core DP (Nemhauser-Ullmann style) with bounds: position by position, the states are
 * the non-dominated (size, cost) pairs of partial solutions whose LP bound beats the
 * incumbent. Every state's LP integer part is tried as an incumbent. Returns 0, or -1 when
 * out of memory (hist, nxt are owned by the caller through the pointers). */
static int core_dp(bb *b, int64_t R, state **histp, int64_t *caphp, state **nxtp,
                   int64_t *capnp) {
    int64_t nh = 1, lo = 0, hi = 1; /* current states are hist[lo, hi) */
    state *hist = *histp;
    hist[0].s = 0;
    hist[0].e = 0.0;
    hist[0].parent = -1;
    hist[0].k = -1;
    for (int d = 0; d < b->nc && hi > lo; ++d) {
        const cand *c = b->cand + b->cbeg[d];
        int m = b->ccnt[d];
        /* children of every live state, then sort and drop dominated ones */
        int64_t nn = 0;
        for (int64_t t = lo; t < hi; ++t) {
            for (int k = 0; k < m; ++k) {
                int64_t ns = hist[t].s + c[k].s;
                if (ns > R - b->smin[d + 1]) break; /* sizes increase with k */
                if (nn == *capnp) {
                    int64_t cap = 2 * *capnp;
                    state *q = realloc(*nxtp, (size_t)cap * sizeof(state));
                    if (!q) return -1;
                    *nxtp = q;
                    *capnp = cap;
                }
                state *x = &(*nxtp)[nn++];
                x->s = ns;
                x->e = hist[t].e + c[k].e;
                x->parent = t;
                x->k = k;
            }
        }
        state *nxt = *nxtp;
        qsort(nxt, (size_t)nn, sizeof(state), state_cmp);
        lo = nh;
        double last = HUGE_VAL;
        for (int64_t t = 0; t < nn; ++t) {
            if (!(nxt[t].e < last)) continue; /* dominated (or equal size, costlier) */
            last = nxt[t].e;
            double vint;
            int integral;
            double lb = nxt[t].e + lp_eval(b, d + 1, R - nxt[t].s, &vint, &integral, NULL);
            ++b->nodes;
            if (nh == *caphp) {
                int64_t cap = 2 * *caphp;
                state *q = realloc(*histp, (size_t)cap * sizeof(state));
                if (!q) return -1;
                *histp = hist = q;
                *caphp = cap;
            }
            if (nxt[t].e + vint < b->cut) { /* the LP's integer part is a better solution */
                hist[nh] = nxt[t];
                (void)lp_eval(b, d + 1, R - nxt[t].s, &vint, &integral, b->lpc);
                take_incumbent(b, hist, nh, d + 1, nxt[t].e + vint);
            }
            if (lb >= b->cut) continue;
            hist[nh++] = nxt[t];
            if (b->limit > 0 && b->nodes >= b->limit) {
                b->stopped = 1;
                return 0;
            }
        }
        hi = nh;
        /* states kept before the incumbent improved are re-checked by their children */
    }
    return 0;
}

static void bb_free(bb *b) {
    free(b->item);
    free(b->cbeg);
    free(b->ccnt);
    free(b->cand);
    free(b->seg);
    free(b->smin);
    free(b->emin);
    free(b->lpc);
    free(b->bestc);
}

typedef struct order_key {
    double key;
    int item;
} order_key;

static int order_cmp(const void *a, const void *b) {
    const order_key *x = a, *y = b;
    if (x->key != y->key) return x->key < y->key ? -1 : 1;
    return (x->item > y->item) - (x->item < y->item);
}

/* Sums the chosen sizes and costs in item order and checks the allocation. */
static qs_status finish(const qs_mckp_problem *p, const int64_t *off, int64_t budget,
                        qs_mckp_result *r, qs_err *err) {
    qs_status st = QS_OK;
    int64_t S = 0;
    double E = 0.0;
    for (int i = 0; i < p->n; ++i) {
        int j = r->choice[i];
        QS_ASSERT(err, j >= 0 && j < p->nchoice[i] && is_allowed(p, off, i, j));
        S += p->size[off[i] + j];
        E += p->cost[off[i] + j];
    }
    QS_ASSERT(err, S <= budget);
    r->total_size = S;
    r->total_cost = E;
done:
    return st;
}

/* Checks p and starts r: r->n, every r->choice -1, and *off (n + 1, the caller frees) the
 * item offsets. r is zeroed first. */
static qs_status result_start(const qs_mckp_problem *p, qs_mckp_result *r, int64_t **off,
                              qs_err *err) {
    qs_status st = QS_OK;
    memset(r, 0, sizeof(*r));
    *off = NULL;
    QS_CHECK(qs_mckp_check(p, err));
    const int n = p->n;
    r->n = n;
    r->choice = qs_malloc((size_t)(n > 0 ? n : 1) * sizeof(int), err, "mckp choice");
    *off = qs_malloc(((size_t)n + 1) * sizeof(**off), err, "mckp offsets");
    if (!r->choice || !*off) QS_THROW(err, QS_ERR_RUNTIME, "mckp: out of memory");
    for (int i = 0; i < n; ++i) r->choice[i] = -1;
    qs_mckp_offsets(n, p->nchoice, *off);
done:
    return st;
}

/* The solver at the root: every item's candidates and the incumbent (steps 1 to 4). */
typedef struct root {
    int n;
    cand *all;      /* (total,) candidates of every item, item-major */
    int *kbeg;      /* (n,) first candidate of item i in all */
    int *kcnt;      /* (n,) candidates kept for item i */
    seg *segs;      /* (total,) root hull segments */
    int *stack;     /* (max m,) hull scratch */
    int *xc;        /* (n,) candidate index per item of the current incumbent */
    double *rc;     /* (total,) reduced costs */
    order_key *ord; /* (n,) core items with their sort key */
    int *fixc;      /* (n,) candidate index of fixed items, -1 for core items */
} root;

static void root_free(root *t) {
    free(t->all);
    free(t->kbeg);
    free(t->kcnt);
    free(t->segs);
    free(t->stack);
    free(t->xc);
    free(t->rc);
    free(t->ord);
    free(t->fixc);
}

static qs_status root_alloc(root *t, const qs_mckp_problem *p, int64_t total, qs_err *err) {
    const int n = p->n;
    const size_t nt = (size_t)(total > 0 ? total : 1), ni = (size_t)(n > 0 ? n : 1);
    int maxm = 1;
    for (int i = 0; i < n; ++i)
        if (p->nchoice[i] > maxm) maxm = p->nchoice[i];
    memset(t, 0, sizeof(*t));
    t->n = n;
    t->all = qs_malloc(nt * sizeof(*t->all), err, "mckp candidates");
    t->segs = qs_malloc(nt * sizeof(*t->segs), err, "mckp segments");
    t->rc = qs_malloc(nt * sizeof(*t->rc), err, "mckp reduced costs");
    t->kbeg = qs_malloc(ni * sizeof(int), err, "mckp kbeg");
    t->kcnt = qs_malloc(ni * sizeof(int), err, "mckp kcnt");
    t->xc = qs_malloc(ni * sizeof(int), err, "mckp xc");
    t->fixc = qs_malloc(ni * sizeof(int), err, "mckp fixc");
    t->ord = qs_malloc(ni * sizeof(*t->ord), err, "mckp order");
    t->stack = qs_malloc((size_t)maxm * sizeof(int), err, "mckp hull stack");
    if (!t->all || !t->segs || !t->rc || !t->kbeg || !t->kcnt || !t->xc || !t->fixc ||
        !t->ord || !t->stack)
        return QS_ERR_RUNTIME;
    return QS_OK;
}

/* Step 1: every item's allowed choices as candidates, sorted, dominated ones dropped.
 * Returns the sum of the smallest sizes. */
static int64_t root_candidates(root *t, const qs_mckp_problem *p, const int64_t *off) {
    int64_t smin = 0;
    for (int i = 0; i < t->n; ++i) {
        t->kbeg[i] = (int)off[i];
        int k = 0;
        for (int j = 0; j < p->nchoice[i]; ++j) {
            if (!is_allowed(p, off, i, j)) continue;
            cand *c = &t->all[off[i] + k++];
            c->s = p->size[off[i] + j];
            c->e = p->cost[off[i] + j];
            c->j = j;
        }
        t->kcnt[i] = dominance_filter(t->all + off[i], k);
        smin += t->all[off[i]].s; /* no overflow: bounded by the checked sum of maxima */
    }
    return smin;
}

/* Step 2: the root LP over all items with `left` = budget - smin bytes above the smallest
 * candidates. Sets xc to its integer part, *left to what that leaves, *lambda to the dual
 * price (the slope of the first segment that does not fit); returns the Lagrangian bound. */
static double root_lp(root *t, int64_t *left, double *lambda) {
    int nseg = 0;
    for (int i = 0; i < t->n; ++i)
        nseg += hull_segments(t->all + t->kbeg[i], t->kcnt[i], i, t->stack, t->segs + nseg);
    qsort(t->segs, (size_t)nseg, sizeof(*t->segs), seg_cmp);
    double e_int = 0.0;
    for (int i = 0; i < t->n; ++i) {
        t->xc[i] = 0;
        e_int += t->all[t->kbeg[i]].e;
    }
    *lambda = 0.0;
    for (int k = 0; k < nseg; ++k) {
        const seg *g = &t->segs[k];
        if (g->ds <= *left) {
            *left -= g->ds;
            e_int += g->de;
            t->xc[g->pos] = g->to;
        } else {
            *lambda = -g->slope;
            break;
        }
    }
    /* Lagrangian bound at lambda: every item sits at a minimiser of e + lambda s. */
    return e_int - *lambda * (double)*left;
}

/* Step 3: the incumbent, the LP's integer part improved by greedy single-item moves into
 * the `left` bytes; returns its cost. */
static double greedy_incumbent(root *t, int64_t left) {
    for (;;) {
        int bi = -1, bk = -1;
        double bgain = 0.0;
        for (int i = 0; i < t->n; ++i) {
            const cand *c = t->all + t->kbeg[i];
            const int x = t->xc[i];
            for (int k = x + 1; k < t->kcnt[i]; ++k) {
                if (c[k].s - c[x].s > left) break;
                double g = c[x].e - c[k].e;
                if (g > bgain) {
                    bgain = g;
                    bi = i;
                    bk = k;
                }
            }
        }
        if (bi < 0) break;
        left -= t->all[t->kbeg[bi] + bk].s - t->all[t->kbeg[bi] + t->xc[bi]].s;
        t->xc[bi] = bk;
    }
    double inc = 0.0;
    for (int i = 0; i < t->n; ++i) inc += t->all[t->kbeg[i] + t->xc[i]].e;
    return inc;
}

/* Step 4: reduced-cost fixing: choice k of item i is kept only if L + r_ik < cut. Items left
 * with one choice are fixed (fixc, *fixed_s, *fixed_e), the others go to ord with the
 * reduced cost of their cheapest alternative. Returns the number of core items, -1 when an
 * item keeps nothing (nothing beats the incumbent). */
static int reduced_cost_fixing(root *t, double lbound, double lambda, double cut,
                               int64_t *fixed_s, double *fixed_e) {
    int nc = 0;
    *fixed_s = 0;
    *fixed_e = 0.0;
    for (int i = 0; i < t->n; ++i) {
        cand *c = t->all + t->kbeg[i];
        double *rc = t->rc + t->kbeg[i];
        /* r_ik = e_k + lambda s_k - min_k'(e_k' + lambda s_k'), differences taken first */
        double rmin = HUGE_VAL;
        for (int k = 0; k < t->kcnt[i]; ++k) {
            rc[k] = (c[k].e - c[0].e) + lambda * (double)(c[k].s - c[0].s);
            if (rc[k] < rmin) rmin = rc[k];
        }
        int w = 0;
        double rsecond = HUGE_VAL;
        for (int k = 0; k < t->kcnt[i]; ++k) {
            double rk = rc[k] - rmin;
            if (lbound + rk < cut) {
                if (rk > 0.0 && rk < rsecond) rsecond = rk;
                c[w++] = c[k];
            }
        }
        t->kcnt[i] = w;
        if (w == 0) return -1;
        if (w == 1) {
            t->fixc[i] = 0;
            *fixed_s += c[0].s;
            *fixed_e += c[0].e;
        } else {
            t->fixc[i] = -1;
            t->ord[nc].key = rsecond;
            t->ord[nc].item = i;
            ++nc;
        }
    }
    return nc;
}

/* Step 5 set-up: the core search over the nc items in t->ord, cheapest alternative first
 * (their candidates, hull segments and suffix minima), against the incumbent's core part. */
static qs_status core_build(bb *b, root *t, int nc, double inc, double fixed_e,
                            const qs_mckp_options *opt, qs_err *err) {
    qsort(t->ord, (size_t)nc, sizeof(*t->ord), order_cmp);
    int pool = 0, maxk = 1;
    for (int k = 0; k < nc; ++k) {
        pool += t->kcnt[t->ord[k].item];
        if (t->kcnt[t->ord[k].item] > maxk) maxk = t->kcnt[t->ord[k].item];
    }
    b->nc = nc;
    b->maxk = maxk;
    b->item = qs_malloc((size_t)(nc + 1) * sizeof(int), err, "mckp core");
    b->cbeg = qs_malloc((size_t)(nc + 1) * sizeof(int), err, "mckp core");
    b->ccnt = qs_malloc((size_t)(nc + 1) * sizeof(int), err, "mckp core");
    b->cand = qs_malloc((size_t)(pool + 1) * sizeof(cand), err, "mckp core");
    b->seg = qs_malloc((size_t)(pool + 1) * sizeof(seg), err, "mckp core");
    b->smin = qs_malloc((size_t)(nc + 1) * sizeof(int64_t), err, "mckp core");
    b->emin = qs_malloc((size_t)(nc + 1) * sizeof(double), err, "mckp core");
    b->lpc = qs_malloc((size_t)(nc + 1) * sizeof(int), err, "mckp core");
    b->bestc = qs_malloc((size_t)(nc + 1) * sizeof(int), err, "mckp core");
    if (!b->item || !b->cbeg || !b->ccnt || !b->cand || !b->seg || !b->smin || !b->emin ||
        !b->lpc || !b->bestc)
        return QS_ERR_RUNTIME;
    int q = 0;
    for (int d = 0; d < nc; ++d) {
        int i = t->ord[d].item;
        b->item[d] = i;
        b->cbeg[d] = q;
        b->ccnt[d] = t->kcnt[i];
        memcpy(b->cand + q, t->all + t->kbeg[i], (size_t)t->kcnt[i] * sizeof(cand));
        b->nseg += hull_segments(b->cand + q, t->kcnt[i], d, t->stack, b->seg + b->nseg);
        q += t->kcnt[i];
    }
    qsort(b->seg, (size_t)b->nseg, sizeof(*b->seg), seg_cmp);
    b->smin[nc] = 0;
    b->emin[nc] = 0.0;
    for (int d = nc - 1; d >= 0; --d) {
        b->smin[d] = b->smin[d + 1] + b->cand[b->cbeg[d]].s;
        b->emin[d] = b->emin[d + 1] + b->cand[b->cbeg[d]].e;
    }
    b->fixed_e = fixed_e;
    b->inc = inc - fixed_e; /* compare core costs against the core part of the incumbent */
    set_cut(b);
    b->limit = opt ? opt->node_limit : 0;
    return QS_OK;
}

/* Step 5: the core DP within R bytes, with its own state arrays. */
static qs_status core_search(bb *b, int64_t R, qs_err *err) {
    qs_status st = QS_OK;
    int64_t hcap = 1024, ncap = 1024;
    state *hist = qs_malloc((size_t)hcap * sizeof(state), err, "mckp states"); /* (hcap,) */
    state *nxt = qs_malloc((size_t)ncap * sizeof(state), err, "mckp states");  /* (ncap,) */
    if (!hist || !nxt) {
        st = QS_ERR_RUNTIME;
        goto done;
    }
    if (core_dp(b, R, &hist, &hcap, &nxt, &ncap) != 0)
        QS_THROW(err, QS_ERR_RUNTIME, "mckp: out of memory for %lld DP states",
                 (long long)(hcap + ncap));
done:
    free(hist);
    free(nxt);
    return st;
}

qs_status qs_mckp_solve(const qs_mckp_problem *p, int64_t budget, const qs_mckp_options *opt,
                        qs_mckp_result *r, qs_err *err) {
    qs_status st = QS_OK;
    int64_t *off = NULL;
    root t;
    bb b;
    memset(&t, 0, sizeof(t));
    memset(&b, 0, sizeof(b));
    QS_CHECK(result_start(p, r, &off, err));
    QS_CHECK(root_alloc(&t, p, off[p->n], err));

    /* 1. candidates and dominance */
    const int64_t smin = root_candidates(&t, p, off);
    if (smin > budget) { /* also covers a negative budget */
        r->proof = QS_MCKP_INFEASIBLE;
        goto done;
    }
    /* 2. root LP over all items */
    int64_t left = budget - smin;
    double lambda = 0.0;
    const double lbound = root_lp(&t, &left, &lambda);
    r->lp_bound = lbound;
    /* 3. incumbent */
    const double inc = greedy_incumbent(&t, left);
    for (int i = 0; i < p->n; ++i) r->choice[i] = t.all[t.kbeg[i] + t.xc[i]].j;
    r->proof = QS_MCKP_OPTIMAL;
    const double cut = inc - QS_MCKP_REL_TOL * inc;
    if (lbound >= cut) goto finish_ok; /* the incumbent meets the bound */
    /* 4. reduced-cost fixing */
    int64_t fixed_s = 0;
    double fixed_e = 0.0;
    const int nc = reduced_cost_fixing(&t, lbound, lambda, cut, &fixed_s, &fixed_e);
    r->core_items = nc < 0 ? 0 : nc;
    if (nc < 0 || fixed_s > budget) goto finish_ok; /* nothing beats the incumbent */
    /* 5. the bounded DP over the core */
    QS_CHECK(core_build(&b, &t, nc, inc, fixed_e, opt, err));
    QS_CHECK(core_search(&b, budget - fixed_s, err));
    r->nodes = b.nodes;
    if (b.stopped) r->proof = QS_MCKP_NODE_LIMIT;
    if (b.have_best) {
        for (int i = 0; i < p->n; ++i)
            if (t.fixc[i] >= 0) r->choice[i] = t.all[t.kbeg[i]].j;
        for (int d = 0; d < nc; ++d) r->choice[b.item[d]] = b.cand[b.cbeg[d] + b.bestc[d]].j;
    }
finish_ok:
    QS_CHECK(finish(p, off, budget, r, err));
done:
    bb_free(&b);
    root_free(&t);
    free(off);
    if (st != QS_OK) qs_mckp_result_free(r);
    return st;
}

qs_status qs_mckp_pareto(const qs_mckp_problem *p, const int64_t *budgets, int nb,
                         const qs_mckp_options *opt, qs_mckp_result *out, qs_err *err) {
    qs_status st = QS_OK;
    int b = 0;
    if (nb < 0) QS_THROW(err, QS_ERR_INPUT, "mckp: negative number of budgets %d", nb);
    for (b = 0; b < nb; ++b) QS_CHECK(qs_mckp_solve(p, budgets[b], opt, &out[b], err));
done:
    if (st != QS_OK)
        for (int t = 0; t < b; ++t) qs_mckp_result_free(&out[t]);
    return st;
}

/* ---------------------------------------------------------------------------------------
 * The GLPK twin: min sum e x  s.t.  sum_j x_ij = 1 (each item),
 *                sum (s_ij - smin_i) x_ij <= budget - sum smin_i,  x binary.
 * Sizes are shifted by each item's smallest allowed size so the knapsack row's numbers
 * stay small; GLPK works in doubles, so the allocation is re-checked in int64 and the row
 * tightened by the excess and re-solved when it is above the budget. */
#ifdef QS_MCKP_HAVE_GLPK
/* The 0/1 MIP: one column per allowed choice (colitem / colchoice: its item and choice,
 * 1-based like GLPK's columns). */
typedef struct mip {
    glp_prob *lp;
    int ncol;
    int *colitem, *colchoice; /* (ncol + 1,) */
} mip;

static void mip_free(mip *m) {
    if (m->lp) glp_delete_prob(m->lp);
    free(m->colitem);
    free(m->colchoice);
    memset(m, 0, sizeof(*m));
}

/* Each item's smallest allowed size into smin (n,); returns their sum, *ncol = the number
 * of allowed choices. */
static int64_t smallest_sizes(const qs_mckp_problem *p, const int64_t *off, int64_t *smin,
                              int *ncol) {
    int64_t s0 = 0;
    *ncol = 0;
    for (int i = 0; i < p->n; ++i) {
        smin[i] = INT64_MAX;
        for (int j = 0; j < p->nchoice[i]; ++j)
            if (is_allowed(p, off, i, j)) {
                ++*ncol;
                if (p->size[off[i] + j] < smin[i]) smin[i] = p->size[off[i] + j];
            }
        s0 += smin[i];
    }
    return s0;
}

/* Builds the MIP: rows 1..n choose one column each, row n + 1 is the knapsack (sizes above
 * each item's smallest, at most cap). */
static qs_status mip_build(const qs_mckp_problem *p, const int64_t *off, const int64_t *smin,
                           int ncol, int64_t cap, mip *m, qs_err *err) {
    qs_status st = QS_OK;
    const int n = p->n;
    int *ia = qs_malloc((size_t)(2 * ncol + 1) * sizeof(int), err, "glpk ia");
    int *ja = qs_malloc((size_t)(2 * ncol + 1) * sizeof(int), err, "glpk ja");
    double *ar = qs_malloc((size_t)(2 * ncol + 1) * sizeof(double), err, "glpk ar");
    m->ncol = ncol;
    m->colitem = qs_malloc((size_t)(ncol + 1) * sizeof(int), err, "glpk cols");
    m->colchoice = qs_malloc((size_t)(ncol + 1) * sizeof(int), err, "glpk cols");
    if (!ia || !ja || !ar || !m->colitem || !m->colchoice) {
        st = QS_ERR_RUNTIME;
        goto done;
    }
    glp_term_out(GLP_OFF); /* this thread's GLPK environment; qs_mckp_solve_glpk frees it */
    m->lp = glp_create_prob();
    glp_set_obj_dir(m->lp, GLP_MIN);
    glp_add_rows(m->lp, n + 1);
    for (int i = 0; i < n; ++i) glp_set_row_bnds(m->lp, i + 1, GLP_FX, 1.0, 1.0);
    glp_set_row_bnds(m->lp, n + 1, GLP_UP, 0.0, (double)cap);
    glp_add_cols(m->lp, ncol);
    int col = 0, ne = 0;
    for (int i = 0; i < n; ++i)
        for (int j = 0; j < p->nchoice[i]; ++j) {
            if (!is_allowed(p, off, i, j)) continue;
            ++col;
            m->colitem[col] = i;
            m->colchoice[col] = j;
            glp_set_col_kind(m->lp, col, GLP_BV);
            glp_set_obj_coef(m->lp, col, p->cost[off[i] + j]);
            ++ne;
            ia[ne] = i + 1;
            ja[ne] = col;
            ar[ne] = 1.0;
            double ds = (double)(p->size[off[i] + j] - smin[i]);
            if (ds != 0.0) {
                ++ne;
                ia[ne] = n + 1;
                ja[ne] = col;
                ar[ne] = ds;
            }
        }
    glp_load_matrix(m->lp, ne, ia, ja, ar);
done:
    free(ia);
    free(ja);
    free(ar);
    return st;
}

/* Solves the MIP into r->choice and r->proof, tightening the knapsack row (cap) by the
 * excess and solving again while the int64 size of GLPK's answer is above the budget. */
static qs_status mip_solve_within(const qs_mckp_problem *p, const int64_t *off, mip *m,
                                  int64_t budget, int64_t cap, qs_mckp_result *r,
                                  qs_err *err) {
    qs_status st = QS_OK;
    const int n = p->n;
    for (int attempt = 0;; ++attempt) {
        glp_iocp parm;
        glp_init_iocp(&parm);
        parm.presolve = GLP_ON;
        parm.msg_lev = GLP_MSG_OFF;
        parm.tm_lim = 600000;
        int rc = glp_intopt(m->lp, &parm);
        int ms = glp_mip_status(m->lp);
        if (rc != 0 && rc != GLP_ETMLIM)
            QS_THROW(err, QS_ERR_RUNTIME, "mckp: glp_intopt failed with code %d", rc);
        if (ms != GLP_OPT && ms != GLP_FEAS)
            QS_THROW(err, QS_ERR_RUNTIME,
                     "mckp: GLPK found no allocation (status %d) although one fits", ms);
        r->proof = ms == GLP_OPT ? QS_MCKP_OPTIMAL : QS_MCKP_NODE_LIMIT;
        for (int i = 0; i < n; ++i) r->choice[i] = -1;
        for (int c = 1; c <= m->ncol; ++c)
            if (glp_mip_col_val(m->lp, c) > 0.5) r->choice[m->colitem[c]] = m->colchoice[c];
        int64_t S = 0;
        for (int i = 0; i < n; ++i) {
            if (r->choice[i] < 0)
                QS_THROW(err, QS_ERR_RUNTIME, "mckp: GLPK left item %d without a choice", i);
            S += p->size[off[i] + r->choice[i]];
        }
        if (S <= budget) break;
        if (attempt == 8)
            QS_THROW(err, QS_ERR_RUNTIME,
                     "mckp: GLPK's allocation stays above the budget after %d tightenings",
                     attempt);
        cap -= S - budget; /* tighten by the excess and solve again */
        if (cap < 0) cap = 0;
        glp_set_row_bnds(m->lp, n + 1, GLP_UP, 0.0, (double)cap);
    }
done:
    return st;
}

qs_status qs_mckp_solve_glpk(const qs_mckp_problem *p, int64_t budget, qs_mckp_result *r,
                             qs_err *err) {
    qs_status st = QS_OK;
    int64_t *off = NULL, *smin = NULL;
    mip m;
    memset(&m, 0, sizeof(m));
    QS_CHECK(result_start(p, r, &off, err));
    r->core_items = p->n;
    smin = qs_malloc((size_t)(p->n > 0 ? p->n : 1) * sizeof(*smin), err, "mckp smin");
    if (!smin) {
        st = QS_ERR_RUNTIME;
        goto done;
    }
    int ncol = 0;
    const int64_t s0 = smallest_sizes(p, off, smin, &ncol);
    if (s0 > budget) {
        r->proof = QS_MCKP_INFEASIBLE;
        goto done;
    }
    r->proof = QS_MCKP_OPTIMAL;
    if (p->n > 0) {
        QS_CHECK(mip_build(p, off, smin, ncol, budget - s0, &m, err));
        QS_CHECK(mip_solve_within(p, off, &m, budget, budget - s0, r, err));
    }
    QS_CHECK(finish(p, off, budget, r, err));
done:
    mip_free(&m);
    glp_free_env();
    free(off);
    free(smin);
    if (st != QS_OK) qs_mckp_result_free(r);
    return st;
}
#else
qs_status qs_mckp_solve_glpk(const qs_mckp_problem *p, int64_t budget, qs_mckp_result *r,
                             qs_err *err) {
    (void)p;
    (void)budget;
    memset(r, 0, sizeof(*r));
    return QS_FAIL(err, QS_ERR_RUNTIME, "mckp: qshard was built without GLPK");
}
#endif
