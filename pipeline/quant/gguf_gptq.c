/* gguf_gptq.c: GPTQ whose columns are rounded on a GGUF block type's grid.
 *
 * The column solve (error feedback, lazy blocks, twin) is gptq.c's / gptq_ref.c's; this file
 * is the grid (quant_internal.h qs_gptq_grid) that fixes the block parameters and rounds:
 *  - static (static_groups, and always with act-order): every block's parameters up front
 *    from W (dead inputs zeroed), exactly what RTN (qs_gguf_quantize_rows) would write;
 *  - dynamic: legacy types (32-weight blocks): d (and m) when the solve reaches the block,
 *    from the block's current, error-updated weights by llama.cpp's rule; K-quants: d and
 *    dmin (fp16) when the solve reaches the super-block (llama.cpp's rule on its current 256
 *    weights), then at each sub-block its float scale/min fitted to its current weights and
 *    rounded to the 4/6/8-bit code grid of the fixed d/dmin.
 * Each weight is then rounded to the nearest code of its (sub-)block's written grid
 * (s = d or d*sc, bias m or dmin*mn: the dequantizer's own floats), so the dequantized value
 * the error feedback sees is bit for bit what the bytes decode to.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "gguf_internal.h"
#include "gguf_quant.h"
#include "quant_internal.h"

/* Parameters of one block (codes live in the solve's codes buffer). */
typedef struct gguf_par {
    uint16_t d, dm;
    int16_t sc[16];
    uint8_t mn[16];
} gguf_par;

typedef struct gguf_grid {
    qs_gptq_grid base;
    const qs_gguf_desc *t;
    int rule;         /* QS_GGUF_RULE_* */
    int search;       /* K-quant sub-block codes by a weighted search (CHOOSE_SEARCH) */
    const float *imp; /* (n) natural column order, or NULL */
    const qs_gptq_factor *f;
    int64_t n, nb;   /* columns, blocks per row */
    gguf_par *par;   /* (R, nb) */
    float *sig;      /* (R) legacy: the row's sigma2; K-quants: the super-block's */
    float *s, *bias; /* (R) the loaded sub-block's scale and bias */
    int64_t cursub;  /* natural sub-block index loaded into s/bias, -1 none */
} gguf_grid;

static inline int clampi(int v, int lo, int hi) {
    return v < lo ? lo : v > hi ? hi : v;
}

/* Weighted squared error of sub-block values x (t->sub) rounded on the grid (sc, mn) of pp,
 * weights w (NULL: 1). */
static double sub_error(const qs_gguf_desc *t, const gguf_par *pp, int sc, int mn, const float *x,
                        const float *w) {
    float s, bias;
    qs_gguf_scale_of(t, pp->d, pp->dm, sc, mn, &s, &bias);
    double err = 0.0;
    for (int i = 0; i < t->sub; ++i) {
        int q = qs_gguf_code(t, x[i], s, bias);
        double e = (double)x[i] - (double)qs_gguf_deq1(q, t->zero, s, bias, t->bias);
        err += (w ? (double)w[i] : 1.0) * e * e;
    }
    return err;
}

/* CHOOSE_SEARCH: the sub-block's scale (and min) codes within +-QS_GGUF_SEARCH_RADIUS of the
 * rounded fit that minimize the weighted squared error of x on the written grid (ties: the
 * rounded fit, then smaller codes). */
#define QS_GGUF_SEARCH_RADIUS 2
static void search_sub(const qs_gguf_desc *t, gguf_par *pp, int js, const float *x,
                       const float *w) {
    const int sc0 = pp->sc[js], mn0 = pp->mn[js];
    const int mrad = t->bias == QS_GGUF_BIAS_MINUS ? QS_GGUF_SEARCH_RADIUS : 0;
    double best = sub_error(t, pp, sc0, mn0, x, w);
    int bsc = sc0, bmn = mn0;
    for (int sc = sc0 - QS_GGUF_SEARCH_RADIUS; sc <= sc0 + QS_GGUF_SEARCH_RADIUS; ++sc) {
        if (sc < t->sclo || sc > t->schi) continue;
        for (int mn = mn0 - mrad; mn <= mn0 + mrad; ++mn) {
            if (mn < 0 || mn > t->mnhi || (sc == sc0 && mn == mn0)) continue;
            double e = sub_error(t, pp, sc, mn, x, w);
            if (e < best) {
                best = e;
                bsc = sc;
                bmn = mn;
            }
        }
    }
    pp->sc[js] = (int16_t)bsc;
    pp->mn[js] = (uint8_t)bmn;
}

static qs_status gguf_start(qs_gptq_grid *base, int level, int64_t k, const float *cur, int64_t len,
                            int64_t R, int64_t row0, qs_err *err) {
    gguf_grid *g = (gguf_grid *)base;
    const qs_gguf_desc *t = g->t;
    const float *imp = g->imp ? g->imp + k : NULL; /* dynamic: quantization order is natural */
    const int64_t i = k / t->qk;
    (void)row0;
    (void)err;
    qs_gguf_blk b;
    for (int64_t r = 0; r < R; ++r) {
        const float *x = cur + r * len; /* (len) */
        gguf_par *pp = &g->par[r * g->nb + i];
        if (level == 1) { /* K-quant super-block: d, dmin */
            if (g->rule == QS_GGUF_RULE_IMP) g->sig[r] = qs_gguf_k_sigma2(t, x);
            qs_gguf_k_params(t, g->rule, x, imp, &b);
            memset(pp, 0, sizeof(*pp));
            pp->d = b.d;
            pp->dm = b.dm;
        } else if (!t->kquant) { /* legacy block: d (and m) */
            qs_gguf_rtn_block(t, g->rule, x, imp, g->sig[r], &b);
            pp->d = b.d;
            pp->dm = b.dm;
        } else { /* K-quant sub-block: its scale/min codes on the fixed d, dmin */
            const int js = (int)((k % t->qk) / t->sub);
            float scale, min;
            qs_gguf_k_fit_sub(t, g->rule, x, imp, g->sig[r], &scale, &min);
            const float d = qs_f16_to_f32(pp->d), dmin = qs_f16_to_f32(pp->dm);
            pp->sc[js] =
                (int16_t)(d != 0.0f ? clampi(qs_gguf_nearest(scale / d), t->sclo, t->schi) : 0);
            if (t->bias == QS_GGUF_BIAS_MINUS)
                pp->mn[js] =
                    (uint8_t)(dmin != 0.0f ? clampi(qs_gguf_nearest(min / dmin), 0, t->mnhi) : 0);
            if (g->search) search_sub(t, pp, js, x, imp);
        }
    }
    g->cursub = -1;
    return QS_OK;
}

static void gguf_column(qs_gptq_grid *base, int64_t k, const float *w, int64_t R, uint8_t *codes,
                        float *dq) {
    gguf_grid *g = (gguf_grid *)base;
    const qs_gguf_desc *t = g->t;
    const int64_t j = g->f->perm[k], sub = j / t->sub;
    if (sub != g->cursub) {
        const int64_t i = j / t->qk;
        const int js = (int)((j % t->qk) / t->sub);
        for (int64_t r = 0; r < R; ++r) {
            const gguf_par *pp = &g->par[r * g->nb + i];
            qs_gguf_scale_of(t, pp->d, pp->dm, pp->sc[js], pp->mn[js], &g->s[r], &g->bias[r]);
        }
        g->cursub = sub;
    }
    for (int64_t r = 0; r < R; ++r) {
        int q = qs_gguf_code(t, w[r], g->s[r], g->bias[r]);
        codes[r] = (uint8_t)q;
        dq[r] = qs_gguf_deq1(q, t->zero, g->s[r], g->bias[r], t->bias);
    }
}

/* Sets up the grid for a tile of R rows of W ((R, n) natural order). scratch: 3 R + n
 * floats; par: (R, nb). Static parameters are computed here. */
static void gguf_grid_init(gguf_grid *g, const qs_gguf_desc *t, int rule, int search, int dynamic,
                           const float *imp, const qs_gptq_factor *f, const float *W, int64_t R,
                           gguf_par *par, float *scratch) {
    const int64_t n = f->n;
    memset(g, 0, sizeof(*g));
    g->t = t;
    g->rule = rule;
    g->search = search && dynamic;
    g->imp = imp;
    g->f = f;
    g->n = n;
    g->nb = n / t->qk;
    g->par = par;
    g->sig = scratch;
    g->s = scratch + R;
    g->bias = scratch + 2 * R;
    g->cursub = -1;
    g->base.start = gguf_start;
    g->base.column = gguf_column;
    if (dynamic) {
        g->base.glen[0] = t->sub;
        g->base.glen[1] = t->kquant ? t->qk : 0;
    }
    memset(par, 0, (size_t)(R * g->nb) * sizeof(gguf_par));
    float *row = scratch + 3 * R; /* (n) a row with dead inputs zeroed */
    qs_gguf_blk b;
    for (int64_t r = 0; r < R; ++r) {
        for (int64_t j = 0; j < n; ++j) row[j] = f->dead[j] ? 0.0f : W[r * n + j];
        g->sig[r] = rule == QS_GGUF_RULE_IMP && !t->kquant ? qs_gguf_row_sigma2(row, n) : 0.0f;
        if (dynamic) continue;
        for (int64_t i = 0; i < g->nb; ++i) {
            const float *x = row + i * t->qk, *im = imp ? imp + i * t->qk : NULL;
            if (t->kquant)
                qs_gguf_k_params(t, rule, x, im, &b);
            else
                qs_gguf_rtn_block(t, rule, x, im, g->sig[r], &b);
            gguf_par *pp = &par[r * g->nb + i];
            pp->d = b.d;
            pp->dm = b.dm;
            memcpy(pp->sc, b.sc, sizeof(pp->sc));
            memcpy(pp->mn, b.mn, sizeof(pp->mn));
        }
    }
}

/* Blocks of R rows from the parameters and codes ((R, n)) into dst ((R, row_bytes)). */
static void gguf_grid_encode(const gguf_grid *g, const uint8_t *codes, int64_t R, uint8_t *dst) {
    const qs_gguf_desc *t = g->t;
    const int64_t bb = qs_gguf_block_bytes(t->type);
    qs_gguf_blk b;
    for (int64_t r = 0; r < R; ++r)
        for (int64_t i = 0; i < g->nb; ++i) {
            const gguf_par *pp = &g->par[r * g->nb + i];
            memset(&b, 0, sizeof(b));
            b.d = pp->d;
            b.dm = pp->dm;
            memcpy(b.sc, pp->sc, sizeof(b.sc));
            memcpy(b.mn, pp->mn, sizeof(b.mn));
            memcpy(b.q, codes + r * g->n + i * t->qk, (size_t)t->qk);
            qs_gguf_blk_encode(t, &b, dst + (r * g->nb + i) * bb);
        }
}

void qs_gguf_params_default(qs_gguf_params *p, qs_gguf_type t) {
    memset(p, 0, sizeof(*p));
    p->type = t;
    p->chooser = QS_GGUF_CHOOSE_SEARCH;
    p->act_order = 0;
    p->static_groups = 0;
    p->block_size = 128;
    p->row_block = 256;
}

qs_status qs_gguf_params_check(const qs_gguf_params *p, qs_err *err) {
    if (!qs_gguf_quant_supported(p->type))
        return QS_FAIL(err, QS_ERR_INPUT, "GGUF type %s (%d) has no block quantizer",
                       qs_gguf_type_name(p->type), (int)p->type);
    if (p->chooser < QS_GGUF_CHOOSE_REF || p->chooser > QS_GGUF_CHOOSE_SEARCH)
        return QS_FAIL(err, QS_ERR_INPUT,
                       "GGUF chooser %d is not one of 0 (ref), 1 (imatrix), 2 (search)",
                       p->chooser);
    if (p->act_order && !p->static_groups)
        return QS_FAIL(err, QS_ERR_INPUT,
                       "GGUF %s: act_order needs static_groups (blocks are natural column ranges)",
                       qs_gguf_type_name(p->type));
    if (p->block_size < 1 || p->row_block < 1)
        return QS_FAIL(err, QS_ERR_INPUT, "GGUF GPTQ: block_size %d and row_block %d must be >= 1",
                       p->block_size, p->row_block);
    return QS_OK;
}

/* Common checks; fills the solver's qs_quant_params and the rule. */
static qs_status gguf_gptq_check(const qs_gptq_factor *f, const qs_gguf_params *p, const float *imp,
                                 const float *W, int64_t d_out, int64_t r0, int64_t r1,
                                 qs_quant_params *qp, int *rule, qs_err *err) {
    qs_status st = qs_gguf_params_check(p, err);
    if (st != QS_OK) return st;
    if (!f || f->n < 1) return QS_FAIL(err, QS_ERR_INTERNAL, "GPTQ: factor not prepared");
    st = qs_gguf_check_shape(p->type, f->n, err);
    if (st != QS_OK) return st;
    qs_quant_params_default(qp);
    qp->act_order = p->act_order;
    qp->static_groups = p->static_groups;
    qp->block_size = p->block_size;
    qp->row_block = p->row_block;
    st = qs_gptq_check_rows(f, qp, W, d_out, r0, r1, err);
    if (st != QS_OK) return st;
    *rule = p->chooser != QS_GGUF_CHOOSE_REF && imp ? QS_GGUF_RULE_IMP : QS_GGUF_RULE_REF;
    if (*rule == QS_GGUF_RULE_IMP)
        for (int64_t j = 0; j < f->n; ++j)
            if (!(imp[j] >= 0.0f) || !isfinite(imp[j]))
                return QS_FAIL(err, QS_ERR_INPUT,
                               "GGUF importance of column %lld is %g (must be finite and >= 0)",
                               (long long)j, (double)imp[j]);
    return QS_OK;
}

/* blocked = 1: gptq.c's solve on tiles of row_block rows; 0: the twin over all rows. */
static qs_status gguf_gptq_run(const qs_gptq_factor *f, const qs_gguf_params *p, const float *imp,
                               const float *W, int64_t d_out, int64_t r0, int64_t r1, void *dst,
                               float *wq, int blocked, qs_err *err) {
    qs_status st = QS_OK;
    qs_gptq_work *work = NULL;
    gguf_par *par = NULL;
    uint8_t *codes = NULL;
    float *scratch = NULL;
    qs_quant_params qp;
    int rule;
    QS_CHECK(gguf_gptq_check(f, p, imp, W, d_out, r0, r1, &qp, &rule, err));
    if (r1 == r0) goto done;
    const qs_gguf_desc *t = qs_gguf_desc_of(p->type);
    const int64_t n = f->n, nb = n / t->qk, rbytes = nb * qs_gguf_block_bytes(p->type);
    const int64_t rb = blocked ? p->row_block : r1 - r0;
    const int64_t R = r1 - r0 < rb ? r1 - r0 : rb;
    const int dynamic = !p->static_groups;
    par = qs_malloc((size_t)(R * nb) * sizeof(gguf_par), err, "GGUF block parameters");
    codes = qs_malloc((size_t)(R * n), err, "GGUF codes");
    scratch = qs_malloc((size_t)(3 * R + n) * sizeof(float), err, "GGUF scratch");
    if (!par || !codes || !scratch) QS_THROW(err, QS_ERR_RUNTIME, "out of memory");
    if (blocked) QS_CHECK(qs_gptq_work_alloc(&work, R, n, p->block_size, t->qk, err));
    for (int64_t t0 = r0; t0 < r1; t0 += rb) {
        const int64_t Rt = r1 - t0 < rb ? r1 - t0 : rb, off = t0 - r0;
        gguf_grid g;
        gguf_grid_init(&g, t, rule, p->chooser == QS_GGUF_CHOOSE_SEARCH, dynamic,
                       rule == QS_GGUF_RULE_IMP ? imp : NULL, f, W + off * n, Rt, par, scratch);
        float *wqt = wq ? wq + off * n : NULL;
        if (blocked)
            QS_CHECK(qs_gptq_solve_tile(f, p->block_size, work, &g.base, W + off * n, Rt, t0, codes,
                                        wqt, NULL, err));
        else
            QS_CHECK(qs_gptq_solve_ref(f, &g.base, W + off * n, Rt, t0, codes, wqt, err));
        gguf_grid_encode(&g, codes, Rt, (uint8_t *)dst + off * rbytes);
    }
done:
    qs_gptq_work_free(work);
    free(par);
    free(codes);
    free(scratch);
    return st;
}

qs_status qs_gguf_gptq_quantize_rows(const qs_gptq_factor *f, const qs_gguf_params *p,
                                     const float *imp, const float *W, int64_t d_out, int64_t r0,
                                     int64_t r1, void *dst, float *wq, qs_err *err) {
    return gguf_gptq_run(f, p, imp, W, d_out, r0, r1, dst, wq, 1, err);
}

qs_status qs_gguf_gptq_quantize_rows_ref(const qs_gptq_factor *f, const qs_gguf_params *p,
                                         const float *imp, const float *W, int64_t d_out,
                                         int64_t r0, int64_t r1, void *dst, float *wq,
                                         qs_err *err) {
    return gguf_gptq_run(f, p, imp, W, d_out, r0, r1, dst, wq, 0, err);
}
