/* search_items.c: knapsack items, rules and budget of the mixed-precision search (see
 * search_items.h).
 * Pure logic: no MPI, no files. */
#include "search_items.h"

#include <fnmatch.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const LIN[QS_SEARCH_NLIN] = {"q", "k", "v", "o", "gate", "up", "down"};

qs_status qs_search_tables_alloc(qs_search_tables *t, int nlayers, int ncand, qs_err *err) {
    memset(t, 0, sizeof(*t));
    if (nlayers < 1 || ncand < 1 || ncand > QS_SEARCH_MAX_CAND)
        return QS_FAIL(err, QS_ERR_INPUT, "search: %d layers x %d candidates (1..%d candidates)",
                       nlayers, ncand, QS_SEARCH_MAX_CAND);
    t->nlayers = nlayers;
    t->ncand = ncand;
    const size_t n = (size_t)nlayers * QS_SEARCH_NLIN * (size_t)ncand;
    const size_t nl = (size_t)nlayers * QS_SEARCH_NLIN;
    t->error = calloc(n, sizeof(double));
    t->relative = calloc(n, sizeof(double));
    t->bytes = calloc(n, sizeof(int64_t));
    t->can_serve = calloc(n, sizeof(int32_t));
    t->d_out = calloc(nl, sizeof(int64_t));
    t->d_in = calloc(nl, sizeof(int64_t));
    if (!t->error || !t->relative || !t->bytes || !t->can_serve || !t->d_out || !t->d_in) {
        qs_search_tables_free(t);
        return QS_FAIL(err, QS_ERR_RUNTIME, "out of memory (search tables)");
    }
    return QS_OK;
}

void qs_search_tables_free(qs_search_tables *t) {
    free(t->error);
    free(t->relative);
    free(t->bytes);
    free(t->can_serve);
    free(t->d_out);
    free(t->d_in);
    memset(t, 0, sizeof(*t));
}

void qs_search_items_free(qs_search_items *it) {
    free(it->layer);
    free(it->lin_mask);
    free(it->nchoice);
    free(it->size);
    free(it->cost);
    free(it->allowed);
    free(it->pinned);
    memset(it, 0, sizeof(*it));
}

static int cand_index(const qs_search_tables *t, const char *name, size_t len) {
    for (int c = 0; c < t->ncand; ++c)
        if (strlen(t->name[c]) == len && strncmp(t->name[c], name, len) == 0) return c;
    return -1;
}

static void cand_list(const qs_search_tables *t, char *buf, size_t n) {
    size_t len = 0;
    buf[0] = '\0';
    for (int c = 0; c < t->ncand && len < n; ++c) {
        int k = snprintf(buf + len, n - len, "%s%s", c ? ", " : "", t->name[c]);
        if (k < 0) break;
        len += (size_t)k;
    }
}

/* Item name for messages: "layers.3.q/k/v". */
static void item_name(int layer, int mask, char *buf, size_t n) {
    size_t len = (size_t)snprintf(buf, n, "layers.%d.", layer);
    int first = 1;
    for (int k = 0; k < QS_SEARCH_NLIN && len < n; ++k)
        if (mask & (1 << k)) {
            len += (size_t)snprintf(buf + len, n - len, "%s%s", first ? "" : "/", LIN[k]);
            first = 0;
        }
}

/* Splits a rule "PATTERN=A,B" into the pattern (copied into pat) and the candidate mask
 * (cands, ncand entries). */
static qs_status parse_rule(const qs_search_tables *t, const char *key, const char *rule,
                            char *pat, size_t npat, uint8_t *cands, qs_err *err) {
    const char *eq = strchr(rule, '=');
    char list[512];
    if (!eq || eq == rule || (size_t)(eq - rule) >= npat)
        return QS_FAIL(err, QS_ERR_INPUT, "%s: '%s': expected PATTERN=CANDIDATE", key, rule);
    memcpy(pat, rule, (size_t)(eq - rule));
    pat[eq - rule] = '\0';
    memset(cands, 0, (size_t)t->ncand);
    const char *p = eq + 1;
    for (;;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        int c = cand_index(t, p, len);
        if (c < 0) {
            cand_list(t, list, sizeof(list));
            return QS_FAIL(err, QS_ERR_INPUT, "%s: '%s': '%.*s' is not a candidate (candidates: %s)",
                           key, rule, (int)len, p, list);
        }
        cands[c] = 1;
        if (!comma) break;
        p = comma + 1;
    }
    return QS_OK;
}

void qs_search_items_set_cost(qs_search_items *it, const qs_search_tables *t,
                              const double *cost) {
    const int C = t->ncand;
    for (int i = 0; i < it->n; ++i)
        for (int c = 0; c < C; ++c) {
            double s = 0.0;
            if (it->allowed[(size_t)i * C + c])
                for (int k = 0; k < QS_SEARCH_NLIN; ++k)
                    if (it->lin_mask[i] & (1 << k))
                        s += cost[((size_t)it->layer[i] * QS_SEARCH_NLIN + k) * C + c];
            it->cost[(size_t)i * C + c] = s;
        }
}

/* vLLM's gptq_marlin serves candidate c of a linear (the rule of qs_gptq_scheme_marlin:
 * 4/8 bits, group -1/32/64/128, symmetric, and the linear's shape holds the layout). */
static int marlin_serves(const qs_search_tables *t, int c, int sym, int can_serve) {
    return sym && (t->bits[c] == 4 || t->bits[c] == 8) && can_serve &&
           (t->group[c] == -1 || t->group[c] == 32 || t->group[c] == 64 || t->group[c] == 128);
}

/* What the rules leave per linear (l, k), i = l * 7 + k: the input of the items. */
typedef struct linear_rules {
    uint8_t *ok;   /* (L, 7, C) candidate allowed for the linear */
    int *pin;      /* (L, 7) pinned candidate, -1 = none */
    int *pin_rule; /* (L, 7) index of the pin rule that set it */
} linear_rules;

/* Step 1: per linear, the candidates with a GPTQ layout (bytes >= 0), that the export can
 * hold (need_export) and that vLLM can serve (serve_marlin). */
static qs_status allow_by_layout(const qs_search_tables *t, const qs_search_rules *r,
                                 const char *list, linear_rules *lr, qs_err *err) {
    const int C = t->ncand, NL = t->nlayers * QS_SEARCH_NLIN;
    int any_serve = 0;
    for (int i = 0; i < NL; ++i) {
        lr->pin[i] = -1;
        lr->pin_rule[i] = -1;
        for (int c = 0; c < C; ++c) {
            const size_t x = (size_t)i * C + c;
            int a = t->bytes[x] >= 0;
            if (r->need_export) a = a && t->can_serve[x];
            if (r->servable) a = a && r->servable[x];
            if (r->serve_marlin) a = a && marlin_serves(t, c, r->sym, t->can_serve[x]);
            lr->ok[x] = (uint8_t)a;
            any_serve |= a;
        }
    }
    if (r->serve_marlin && !r->sym)
        return QS_FAIL(err, QS_ERR_INPUT,
                       "search.serve: marlin needs quant.sym: true (vLLM's gptq_marlin runs "
                       "4/8-bit symmetric candidates only)");
    if (r->serve_marlin && !any_serve)
        return QS_FAIL(err, QS_ERR_INPUT,
                       "search.serve: marlin: no candidate is servable by gptq_marlin (4/8 "
                       "bits, group dividing d_in) among %s",
                       list);
    return QS_OK;
}

/* The linears (l, k) whose name "layers.<l>.<lin>" matches pat, as indices l * 7 + k into
 * hit (L * 7,); returns how many. */
static int match_linears(const char *pat, int L, int *hit) {
    char name[64];
    int n = 0;
    for (int l = 0; l < L; ++l)
        for (int k = 0; k < QS_SEARCH_NLIN; ++k) {
            snprintf(name, sizeof(name), "layers.%d.%s", l, LIN[k]);
            if (fnmatch(pat, name, 0) == 0) hit[n++] = l * QS_SEARCH_NLIN + k;
        }
    return n;
}

static qs_status no_match(const char *key, const char *rule, const char *pat, int L,
                          qs_err *err) {
    return QS_FAIL(err, QS_ERR_INPUT,
                   "%s: '%s': pattern '%s' matches no linear (names: "
                   "layers.<0..%d>.<q|k|v|o|gate|up|down>)",
                   key, rule, pat, L - 1);
}

/* Step 2: every allow rule intersects the sets of the linears it matches. */
static qs_status apply_allow_rules(const qs_search_tables *t, const qs_search_rules *r,
                                   int *hit, linear_rules *lr, qs_err *err) {
    const int C = t->ncand;
    uint8_t rc[QS_SEARCH_MAX_CAND];
    char pat[256];
    for (int a = 0; a < r->nallow; ++a) {
        qs_status st = parse_rule(t, "search.allow", r->allow[a], pat, sizeof(pat), rc, err);
        if (st != QS_OK) return st;
        const int nhit = match_linears(pat, t->nlayers, hit);
        if (!nhit) return no_match("search.allow", r->allow[a], pat, t->nlayers, err);
        for (int h = 0; h < nhit; ++h)
            for (int c = 0; c < C; ++c)
                if (!rc[c]) lr->ok[(size_t)hit[h] * C + c] = 0;
    }
    return QS_OK;
}

/* Step 3: every pin fixes the linears it matches (to the last candidate it names); two pins
 * of one linear must agree, and the candidate must be allowed. */
static qs_status apply_pins(const qs_search_tables *t, const qs_search_rules *r, int *hit,
                            linear_rules *lr, qs_err *err) {
    const int C = t->ncand;
    uint8_t rc[QS_SEARCH_MAX_CAND];
    char pat[256], name[64];
    for (int p = 0; p < r->npin; ++p) {
        qs_status st = parse_rule(t, "search.pin", r->pin[p], pat, sizeof(pat), rc, err);
        if (st != QS_OK) return st;
        int c0 = -1;
        for (int c = 0; c < C; ++c)
            if (rc[c]) c0 = c;
        const int nhit = match_linears(pat, t->nlayers, hit);
        if (!nhit) return no_match("search.pin", r->pin[p], pat, t->nlayers, err);
        for (int h = 0; h < nhit; ++h) {
            const int i = hit[h];
            snprintf(name, sizeof(name), "layers.%d.%s", i / QS_SEARCH_NLIN,
                     LIN[i % QS_SEARCH_NLIN]);
            if (lr->pin[i] >= 0 && lr->pin[i] != c0)
                return QS_FAIL(err, QS_ERR_INPUT,
                               "search.pin: '%s' and '%s' pin %s to different candidates",
                               r->pin[lr->pin_rule[i]], r->pin[p], name);
            if (!lr->ok[(size_t)i * C + c0])
                return QS_FAIL(err, QS_ERR_INPUT,
                               "search.pin: '%s': %s is not allowed for %s (no GPTQ layout, "
                               "search.serve or search.allow)",
                               r->pin[p], t->name[c0], name);
            lr->pin[i] = c0;
            lr->pin_rule[i] = p;
        }
    }
    return QS_OK;
}

static qs_status items_alloc(qs_search_items *it, int n, int C, qs_err *err) {
    it->n = n;
    it->ncand = C;
    it->layer = malloc(sizeof(int) * (size_t)n);
    it->lin_mask = malloc(sizeof(int) * (size_t)n);
    it->nchoice = malloc(sizeof(int) * (size_t)n);
    it->pinned = malloc(sizeof(int) * (size_t)n);
    it->size = calloc((size_t)n * C, sizeof(int64_t));
    it->cost = calloc((size_t)n * C, sizeof(double));
    it->allowed = calloc((size_t)n * C, 1);
    if (!it->layer || !it->lin_mask || !it->nchoice || !it->pinned || !it->size || !it->cost ||
        !it->allowed)
        return QS_FAIL(err, QS_ERR_RUNTIME, "out of memory (search items)");
    return QS_OK;
}

/* Step 4, one item i: the linears `mask` of layer l, pinned when one of them is (all pins
 * agreeing), candidate c allowed when it is for every linear, its size their summed bytes. */
static qs_status item_fill(const qs_search_tables *t, const qs_search_rules *r,
                           const linear_rules *lr, const char *list, int l, int mask, int i,
                           qs_search_items *it, qs_err *err) {
    const int C = t->ncand, L0 = l * QS_SEARCH_NLIN;
    char name[64];
    it->layer[i] = l;
    it->lin_mask[i] = mask;
    it->nchoice[i] = C;
    it->pinned[i] = -1;
    item_name(l, mask, name, sizeof(name));
    int pk = -1;
    for (int k = 0; k < QS_SEARCH_NLIN; ++k) {
        if (!(mask & (1 << k)) || lr->pin[L0 + k] < 0) continue;
        const int c = lr->pin[L0 + k];
        if (it->pinned[i] >= 0 && it->pinned[i] != c)
            return QS_FAIL(err, QS_ERR_INPUT,
                           "search.pin: %s are tied (search.tie_fused) but '%s' and '%s' pin "
                           "them to %s and %s",
                           name, r->pin[lr->pin_rule[L0 + pk]], r->pin[lr->pin_rule[L0 + k]],
                           t->name[it->pinned[i]], t->name[c]);
        it->pinned[i] = c;
        pk = k;
    }
    int nallowed = 0;
    for (int c = 0; c < C; ++c) {
        int a = 1;
        int64_t s = 0;
        for (int k = 0; k < QS_SEARCH_NLIN; ++k) {
            if (!(mask & (1 << k))) continue;
            const size_t x = ((size_t)L0 + k) * C + c;
            a = a && lr->ok[x];
            s += t->bytes[x] > 0 ? t->bytes[x] : 0;
        }
        it->allowed[(size_t)i * C + c] = (uint8_t)a;
        it->size[(size_t)i * C + c] = a ? s : 0;
        nallowed += a;
    }
    if (it->pinned[i] >= 0 && !it->allowed[(size_t)i * C + it->pinned[i]])
        return QS_FAIL(err, QS_ERR_INPUT,
                       "search.pin: '%s' pins %s to %s, which search.allow or the layout "
                       "forbids for another linear of the tied item",
                       r->pin[lr->pin_rule[L0 + pk]], name, t->name[it->pinned[i]]);
    if (nallowed == 0)
        return QS_FAIL(err, QS_ERR_INPUT,
                       "search: %s: no candidate is allowed (search.allow, search.serve, GPTQ "
                       "layout%s%s%s%s%s); candidates: %s",
                       name, r->tie_fused && mask != (mask & -mask) ? ", tied linears" : "",
                       r->serve_what ? ", what " : "", r->serve_what ? r->serve_what : "",
                       r->serve_what ? " takes" : "",
                       r->need_export ? ", the GPTQ export's input size a multiple of the "
                                        "group size (output.gptq_export)"
                                      : "",
                       list);
    return QS_OK;
}

qs_status qs_search_items_build(const qs_search_tables *t, const double *cost,
                                const qs_search_rules *r, qs_search_items *it, qs_err *err) {
    qs_status st = QS_OK;
    const int L = t->nlayers, C = t->ncand, NL = L * QS_SEARCH_NLIN;
    linear_rules lr;
    int *hit = NULL; /* (L, 7) linears a rule matches */
    char list[512];
    memset(it, 0, sizeof(*it));
    lr.ok = malloc((size_t)NL * (size_t)C);
    lr.pin = malloc(sizeof(int) * (size_t)NL);
    lr.pin_rule = malloc(sizeof(int) * (size_t)NL);
    hit = malloc(sizeof(int) * (size_t)NL);
    if (!lr.ok || !lr.pin || !lr.pin_rule || !hit)
        QS_THROW(err, QS_ERR_RUNTIME, "out of memory (search items)");
    cand_list(t, list, sizeof(list));
    /* 1. per linear: layout, serving kernel; 2. allow rules intersect; 3. pins */
    QS_CHECK(allow_by_layout(t, r, list, &lr, err));
    QS_CHECK(apply_allow_rules(t, r, hit, &lr, err));
    QS_CHECK(apply_pins(t, r, hit, &lr, err));
    /* 4. items: one per linear, or per tied group (q/k/v, o, gate/up, down) */
    static const int TIED[4] = {(1 << 0) | (1 << 1) | (1 << 2), 1 << 3, (1 << 4) | (1 << 5),
                                1 << 6};
    const int per = r->tie_fused ? 4 : QS_SEARCH_NLIN;
    QS_CHECK(items_alloc(it, L * per, C, err));
    it->nweights = 0;
    for (int i = 0; i < NL; ++i) it->nweights += t->d_out[i] * t->d_in[i];
    for (int l = 0; l < L; ++l)
        for (int g = 0; g < per; ++g)
            QS_CHECK(item_fill(t, r, &lr, list, l, r->tie_fused ? TIED[g] : 1 << g, l * per + g,
                               it, err));
    qs_search_items_set_cost(it, t, cost);
    for (int i = 0; i < it->n * C; ++i)
        if (!(it->cost[i] >= 0.0) || !isfinite(it->cost[i]))
            QS_THROW(err, QS_ERR_INPUT, "search: item %d has a negative or non-finite cost %g",
                     i / C, it->cost[i]);
done:
    if (st != QS_OK) qs_search_items_free(it);
    free(lr.ok);
    free(lr.pin);
    free(lr.pin_rule);
    free(hit);
    return st;
}

void qs_search_items_range(const qs_search_items *it, int64_t *min_bytes, int64_t *max_bytes,
                           int *fixed) {
    const int C = it->ncand;
    int64_t lo = 0, hi = 0;
    int fx = 1;
    for (int i = 0; i < it->n; ++i) {
        int64_t mn = INT64_MAX, mx = -1;
        int na = 0;
        for (int c = 0; c < C; ++c) {
            const size_t x = (size_t)i * C + c;
            if (!it->allowed[x] || (it->pinned[i] >= 0 && it->pinned[i] != c)) continue;
            ++na;
            if (it->size[x] < mn) mn = it->size[x];
            if (it->size[x] > mx) mx = it->size[x];
        }
        if (na != 1) fx = 0;
        lo += mn;
        hi += mx;
    }
    *min_bytes = lo;
    *max_bytes = hi;
    *fixed = fx;
}

qs_status qs_search_budget(double target_bpw, int64_t max_bytes, int64_t nweights,
                           int64_t unquant_bytes, int64_t min_bytes, int fixed,
                           const char *cand_list_text, int64_t *budget, qs_err *err) {
    *budget = 0;
    if (target_bpw > 0) {
        long double b = floorl((long double)target_bpw * (long double)nweights / 8.0L);
        *budget = b >= (long double)INT64_MAX ? INT64_MAX : (int64_t)b;
        if (*budget < min_bytes) {
            /* smallest x with floor(x * nweights / 8) >= min_bytes, rounded up to 1e-4 */
            double need = ceil((double)min_bytes * 8.0 / (double)nweights * 1e4) / 1e4;
            return QS_FAIL(err, QS_ERR_INPUT,
                           "search.target_bpw %g: budget %lld bytes is below the smallest "
                           "feasible allocation (%lld bytes); use search.target_bpw >= %.4f",
                           target_bpw, (long long)*budget, (long long)min_bytes, need);
        }
        return QS_OK;
    }
    if (max_bytes > 0) {
        *budget = max_bytes - unquant_bytes;
        if (*budget < min_bytes)
            return QS_FAIL(err, QS_ERR_INPUT,
                           "search.max_bytes %lld: below the smallest feasible output of %lld "
                           "bytes (payload %lld + unquantized %lld); use search.max_bytes >= "
                           "%lld",
                           (long long)max_bytes, (long long)(min_bytes + unquant_bytes),
                           (long long)min_bytes, (long long)unquant_bytes,
                           (long long)(min_bytes + unquant_bytes));
        return QS_OK;
    }
    if (fixed) {
        *budget = INT64_MAX;
        return QS_OK;
    }
    return QS_FAIL(err, QS_ERR_INPUT,
                   "search: several candidates (%s) and no budget; set search.target_bpw or "
                   "search.max_bytes",
                   cand_list_text);
}

void qs_search_expand(const qs_search_items *it, const qs_search_tables *t, const int *choice,
                      char (*names)[QS_QUANT_NAME_MAX], int64_t *payload) {
    const int C = t->ncand;
    int64_t s = 0;
    for (int i = 0; i < t->nlayers * QS_SEARCH_NLIN; ++i) names[i][0] = '\0';
    for (int i = 0; i < it->n; ++i)
        for (int k = 0; k < QS_SEARCH_NLIN; ++k)
            if (it->lin_mask[i] & (1 << k)) {
                const int li = it->layer[i] * QS_SEARCH_NLIN + k;
                snprintf(names[li], QS_QUANT_NAME_MAX, "%s", t->name[choice[i]]);
                s += t->bytes[(size_t)li * C + choice[i]];
            }
    *payload = s;
}

int qs_search_marlin_path(const qs_search_tables *t, char (*names)[QS_QUANT_NAME_MAX],
                          int64_t nnames, int sym) {
    if (!sym) return 0;
    for (int64_t i = 0; i < nnames; ++i) {
        int c = cand_index(t, names[i], strlen(names[i]));
        /* the rule of qs_gptq_scheme_marlin (vLLM gptq_marlin.py TYPE_MAP + Marlin's
         * group sizes), per linear with its shape's layout */
        if (c < 0 || !marlin_serves(t, c, sym, t->can_serve[(size_t)i * t->ncand + c]))
            return 0;
    }
    return 1;
}
