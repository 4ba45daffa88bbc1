/* test_search.c: the pure logic of the search stage (pipeline/quant/search.c): knapsack
 * items from candidate tables (tied fused groups, layouts, serve marlin, allow rules, pins
 * and their conflicts), the byte budget (target_bpw, max_bytes, none), the expansion back
 * to per-linear names with the integer re-sum, and optimality against brute force on small
 * random tables (solved with qs_mckp_solve). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "mckp.h"
#include "search_items.h"

/* d_out, d_in of q k v o gate up down for a tiny model (hidden 64, kv 32, inter 96). */
static const int64_t DO[7] = {64, 32, 32, 64, 96, 96, 64};
static const int64_t DI[7] = {64, 64, 64, 64, 64, 64, 96};

static uint64_t rng = 88172645463325252ull;
static uint64_t next_u64(void) { return qs_test_xorshift64(&rng); }
static double unif(void) { return (double)(next_u64() >> 11) / 9007199254740992.0; }

/* Candidates w2g32 w4g32 w5g32 w8g32; w5 has no layout (-1), w8 of `down` not servable. */
static void make_tables(qs_search_tables *t, int L) {
    qs_err err = {0};
    static const int B[4] = {2, 4, 5, 8};
    if (qs_search_tables_alloc(t, L, 4, &err) != QS_OK) {
        fprintf(stderr, "alloc: %s\n", err.msg);
        exit(1);
    }
    for (int c = 0; c < 4; ++c) {
        t->bits[c] = B[c];
        t->group[c] = 32;
        snprintf(t->name[c], QS_QUANT_NAME_MAX, "w%dg32", B[c]);
    }
    for (int l = 0; l < L; ++l)
        for (int k = 0; k < 7; ++k) {
            t->d_out[l * 7 + k] = DO[k];
            t->d_in[l * 7 + k] = DI[k];
            for (int c = 0; c < 4; ++c) {
                size_t x = ((size_t)l * 7 + k) * 4 + c;
                int64_t g = DI[k] / 32;
                t->bytes[x] = B[c] == 5 ? -1
                                        : DI[k] * B[c] / 32 * DO[k] * 4 + g * DO[k] * B[c] / 32 * 4 +
                                              g * DO[k] * 2 + DI[k] * 4;
                t->can_serve[x] = B[c] != 5 && !(k == 6 && B[c] == 8);
                t->error[x] = (1.0 + unif()) * pow(4.0, -B[c]) * (1 + l);
                t->relative[x] = t->error[x] / 10.0;
            }
        }
}

static int fails_with(const qs_search_tables *t, qs_search_rules *r, const char *needle) {
    qs_search_items it;
    qs_err err = {0};
    qs_status st = qs_search_items_build(t, t->error, r, &it, &err);
    int ok = st == QS_ERR_INPUT && strstr(err.msg, needle) != NULL && !strchr(err.msg, '\n');
    if (!ok) fprintf(stderr, "  expected error with '%s', got %d: %s\n", needle, st, err.msg);
    if (st == QS_OK) qs_search_items_free(&it);
    return ok;
}

static void test_items(void) {
    qs_search_tables t;
    qs_search_items it;
    qs_err err = {0};
    make_tables(&t, 2);
    qs_search_rules r;
    memset(&r, 0, sizeof(r));
    r.tie_fused = 1;
    CHECK(qs_search_items_build(&t, t.error, &r, &it, &err) == QS_OK, "build: %s", err.msg);
    CHECK(it.n == 8 && it.ncand == 4, "tied: %d items", it.n);
    CHECK(it.lin_mask[0] == 7 && it.lin_mask[1] == 8 && it.lin_mask[2] == 48 &&
              it.lin_mask[3] == 64 && it.layer[4] == 1,
          "tied masks");
    /* q/k/v item: size = sum of the three, w5 masked */
    int64_t s = t.bytes[0 * 4 + 1] + t.bytes[1 * 4 + 1] + t.bytes[2 * 4 + 1];
    CHECK(it.size[0 * 4 + 1] == s, "qkv size %lld != %lld", (long long)it.size[1], (long long)s);
    CHECK(fabs(it.cost[0 * 4 + 1] - (t.error[1] + t.error[5] + t.error[9])) < 1e-15, "qkv cost");
    for (int i = 0; i < it.n; ++i) CHECK(!it.allowed[i * 4 + 2] && it.allowed[i * 4], "w5 masked");
    int64_t nw = 0;
    for (int k = 0; k < 7; ++k) nw += 2 * DO[k] * DI[k];
    CHECK(it.nweights == nw, "nweights");
    int64_t lo, hi;
    int fixed;
    qs_search_items_range(&it, &lo, &hi, &fixed);
    int64_t lo2 = 0, hi2 = 0;
    for (int i = 0; i < 14; ++i) lo2 += t.bytes[i * 4], hi2 += t.bytes[i * 4 + 3];
    CHECK(lo == lo2 && hi == hi2 && !fixed, "range %lld %lld", (long long)lo, (long long)hi);
    qs_search_items_free(&it);

    r.tie_fused = 0;
    CHECK(qs_search_items_build(&t, t.error, &r, &it, &err) == QS_OK, "untied: %s", err.msg);
    CHECK(it.n == 14 && it.lin_mask[6] == 64, "untied: %d items", it.n);
    qs_search_items_free(&it);
    r.tie_fused = 1;

    /* serve marlin */
    r.serve_marlin = 1;
    CHECK(fails_with(&t, &r, "quant.sym"), "marlin needs sym");
    r.sym = 1;
    CHECK(qs_search_items_build(&t, t.error, &r, &it, &err) == QS_OK, "marlin: %s", err.msg);
    for (int i = 0; i < it.n; ++i) {
        CHECK(!it.allowed[i * 4] && it.allowed[i * 4 + 1], "marlin: w2 out, w4 in");
        CHECK(it.allowed[i * 4 + 3] == (it.lin_mask[i] != 64), "marlin: w8 of down unservable");
    }
    qs_search_items_free(&it);
    r.serve_marlin = 0;
    r.sym = 0;
    {
        qs_search_tables t2;
        make_tables(&t2, 1);
        for (int i = 0; i < 7 * 4; ++i) t2.can_serve[i] = 0;
        r.serve_marlin = r.sym = 1;
        CHECK(fails_with(&t2, &r, "no candidate is servable"), "marlin: nothing servable");
        r.serve_marlin = r.sym = 0;
        qs_search_tables_free(&t2);
    }

    /* allow rules */
    const char *allow1[] = {"layers.*.down=w4g32,w8g32", "layers.1.down=w8g32,w2g32"};
    r.allow = allow1;
    r.nallow = 2;
    CHECK(qs_search_items_build(&t, t.error, &r, &it, &err) == QS_OK, "allow: %s", err.msg);
    CHECK(!it.allowed[3 * 4 + 0] && it.allowed[3 * 4 + 1] && it.allowed[3 * 4 + 3], "allow l0");
    CHECK(!it.allowed[7 * 4 + 0] && !it.allowed[7 * 4 + 1] && it.allowed[7 * 4 + 3],
          "allow l1 intersect");
    CHECK(it.allowed[0] && it.allowed[1], "allow: others untouched");
    qs_search_items_free(&it);
    const char *allow2[] = {"layers.0.down=w4g32", "layers.0.d*=w2g32"};
    r.allow = allow2;
    CHECK(fails_with(&t, &r, "layers.0.down: no candidate is allowed"), "allow: empty");
    const char *allow3[] = {"layers.0.q=w4g32", "layers.0.k=w2g32"};
    r.allow = allow3;
    CHECK(fails_with(&t, &r, "layers.0.q/k/v: no candidate is allowed"), "allow: tied empty");
    r.tie_fused = 0;
    CHECK(qs_search_items_build(&t, t.error, &r, &it, &err) == QS_OK, "allow untied: %s", err.msg);
    qs_search_items_free(&it);
    r.tie_fused = 1;
    const char *allow4[] = {"layers.9.*=w4g32"};
    r.allow = allow4;
    r.nallow = 1;
    CHECK(fails_with(&t, &r, "matches no linear"), "allow: no match");
    const char *allow5[] = {"layers.*=w4g32,w6g32"};
    r.allow = allow5;
    CHECK(fails_with(&t, &r, "'w6g32' is not a candidate"), "allow: unknown candidate");
    r.nallow = 0;

    /* pins */
    const char *pin1[] = {"layers.0.*=w8g32", "layers.1.k=w4g32"};
    r.pin = pin1;
    r.npin = 2;
    CHECK(qs_search_items_build(&t, t.error, &r, &it, &err) == QS_OK, "pin: %s", err.msg);
    for (int i = 0; i < 4; ++i) CHECK(it.pinned[i] == 3, "pin layer 0");
    CHECK(it.pinned[4] == 1 && it.pinned[5] == -1, "pin of k pins the tied q/k/v item");
    qs_search_items_range(&it, &lo, &hi, &fixed);
    CHECK(!fixed, "not fixed");
    qs_search_items_free(&it);
    const char *pin2[] = {"layers.1.q=w4g32", "layers.1.v=w2g32"};
    r.pin = pin2;
    CHECK(fails_with(&t, &r, "tied"), "pin: tied conflict");
    r.tie_fused = 0;
    CHECK(qs_search_items_build(&t, t.error, &r, &it, &err) == QS_OK, "pin untied: %s", err.msg);
    qs_search_items_free(&it);
    r.tie_fused = 1;
    const char *pin3[] = {"layers.*.q=w4g32", "layers.1.*=w2g32"};
    r.pin = pin3;
    CHECK(fails_with(&t, &r, "pin layers.1.q to different candidates"), "pin: double pin");
    const char *pin4[] = {"layers.0.o=w5g32"};
    r.pin = pin4;
    r.npin = 1;
    CHECK(fails_with(&t, &r, "not allowed"), "pin: no layout");
    const char *pin5[] = {"layers.0.o=w2g32"};
    const char *allow6[] = {"layers.0.o=w4g32"};
    r.pin = pin5;
    r.allow = allow6;
    r.nallow = 1;
    CHECK(fails_with(&t, &r, "not allowed"), "pin: against allow");
    r.nallow = 0;
    const char *pin6[] = {"layer.0.o=w2g32"};
    r.pin = pin6;
    CHECK(fails_with(&t, &r, "matches no linear"), "pin: bad pattern");
    const char *pin7[] = {"layers.0.o"};
    r.pin = pin7;
    CHECK(fails_with(&t, &r, "PATTERN=CANDIDATE"), "pin: syntax");
    /* every item pinned: fixed */
    const char *pin8[] = {"*=w4g32"};
    r.pin = pin8;
    CHECK(qs_search_items_build(&t, t.error, &r, &it, &err) == QS_OK, "pin all: %s", err.msg);
    qs_search_items_range(&it, &lo, &hi, &fixed);
    CHECK(fixed && lo == hi, "all pinned: fixed");
    qs_search_items_free(&it);
    r.npin = 0;
    qs_search_tables_free(&t);
}

static void test_budget(void) {
    qs_err err = {0};
    int64_t b = 0;
    CHECK(qs_search_budget(3.25, 0, 1000003, 5, 0, 0, "a", &b, &err) == QS_OK &&
              b == (int64_t)floor(3.25 * 1000003 / 8),
          "target budget %lld", (long long)b);
    /* 70B-scale: exact floor */
    CHECK(qs_search_budget(4.0, 0, 68719476736LL, 0, 0, 0, "a", &b, &err) == QS_OK &&
              b == 34359738368LL,
          "big budget %lld", (long long)b);
    CHECK(qs_search_budget(0, 5000, 100, 1200, 10, 0, "a", &b, &err) == QS_OK && b == 3800,
          "max_bytes budget");
    CHECK(qs_search_budget(0, 0, 100, 1200, 10, 1, "a", &b, &err) == QS_OK && b == INT64_MAX,
          "fixed: no budget needed");
    err = (qs_err){0};
    CHECK(qs_search_budget(0, 0, 100, 1200, 10, 0, "w2g32, w4g32", &b, &err) == QS_ERR_INPUT &&
              strstr(err.msg, "search.target_bpw or search.max_bytes"),
          "no budget: %s", err.msg);
    err = (qs_err){0};
    CHECK(qs_search_budget(2.0, 0, 1000, 0, 300, 0, "a", &b, &err) == QS_ERR_INPUT &&
              strstr(err.msg, ">= 2.4000"),
          "infeasible bpw: %s", err.msg);
    err = (qs_err){0};
    CHECK(qs_search_budget(0, 1000, 1000, 800, 300, 0, "a", &b, &err) == QS_ERR_INPUT &&
              strstr(err.msg, ">= 1100"),
          "infeasible max_bytes: %s", err.msg);
    err = (qs_err){0};
    CHECK(qs_search_budget(0, 100, 1000, 800, 300, 0, "a", &b, &err) == QS_ERR_INPUT,
          "max_bytes below the unquantized tensors");
}

/* Brute force over every allowed choice per item. */
static double brute(const qs_search_items *it, int64_t budget) {
    int n = it->n, C = it->ncand;
    int ch[64];
    double best = INFINITY;
    for (int i = 0; i < n; ++i) ch[i] = 0;
    for (;;) {
        int ok = 1;
        int64_t s = 0;
        double c = 0.0;
        for (int i = 0; i < n && ok; ++i) {
            const size_t x = (size_t)i * C + ch[i];
            ok = it->allowed[x] && (it->pinned[i] < 0 || it->pinned[i] == ch[i]);
            s += it->size[x];
            c += it->cost[x];
        }
        if (ok && s <= budget && c < best) best = c;
        int i = 0;
        while (i < n && ++ch[i] == C) ch[i++] = 0;
        if (i == n) break;
    }
    return best;
}

static void test_solve(void) {
    for (int trial = 0; trial < 40; ++trial) {
        qs_search_tables t;
        qs_search_items it;
        qs_mckp_result res;
        qs_err err = {0};
        make_tables(&t, 2);
        qs_search_rules r;
        memset(&r, 0, sizeof(r));
        r.tie_fused = 1;
        const char *pin[] = {"layers.1.o=w8g32"};
        r.pin = pin;
        r.npin = trial % 3 == 0;
        if (qs_search_items_build(&t, t.error, &r, &it, &err) != QS_OK) {
            CHECK(0, "build: %s", err.msg);
            continue;
        }
        int64_t lo, hi, budget;
        int fixed;
        qs_search_items_range(&it, &lo, &hi, &fixed);
        budget = lo + (int64_t)((double)(hi - lo) * unif());
        qs_mckp_problem p = {it.n, it.nchoice, it.size, it.cost, it.allowed, it.pinned};
        CHECK(qs_mckp_solve(&p, budget, NULL, &res, &err) == QS_OK &&
                  res.proof == QS_MCKP_OPTIMAL,
              "solve: %s", err.msg);
        double want = brute(&it, budget);
        CHECK_NEAR(res.total_cost, want, 1e-9 * want, "trial %d: cost vs brute force", trial);
        char names[14][QS_QUANT_NAME_MAX];
        int64_t payload = 0;
        qs_search_expand(&it, &t, res.choice, names, &payload);
        CHECK(payload == res.total_size && payload <= budget, "integer re-sum %lld > %lld",
              (long long)payload, (long long)budget);
        CHECK(!strcmp(names[0], names[1]) && !strcmp(names[1], names[2]) &&
                  !strcmp(names[4], names[5]) && !strcmp(names[7], names[8]),
              "tied names");
        if (r.npin) CHECK(!strcmp(names[10], "w8g32"), "pin honoured");
        qs_mckp_result_free(&res);
        qs_search_items_free(&it);
        qs_search_tables_free(&t);
    }
    /* marlin path */
    {
        qs_search_tables t;
        make_tables(&t, 1);
        char names[7][QS_QUANT_NAME_MAX];
        for (int k = 0; k < 7; ++k) snprintf(names[k], QS_QUANT_NAME_MAX, "w4g32");
        CHECK(qs_search_marlin_path(&t, names, 7, 1), "w4 sym: marlin");
        CHECK(!qs_search_marlin_path(&t, names, 7, 0), "asym: not marlin");
        snprintf(names[6], QS_QUANT_NAME_MAX, "w8g32");
        CHECK(!qs_search_marlin_path(&t, names, 7, 1), "unservable down: not marlin");
        snprintf(names[6], QS_QUANT_NAME_MAX, "w2g32");
        CHECK(!qs_search_marlin_path(&t, names, 7, 1), "w2: not marlin");
        qs_search_tables_free(&t);
    }
}

int main(void) {
    test_items();
    test_budget();
    test_solve();
    return qs_test_finish("test_search");
}
