/* gptq_grid.c: the group rule of quant.h (min/max per group, fp16 scale, integer zero) as the
 * grid of a GPTQ solve (quant_internal.h): parameters up front (group -1, static groups) or
 * at each dynamic group's first column from its fully updated weights. Shared by the blocked
 * solve and its twin, so both round exactly alike. */
#include <math.h>

#include "quant.h"
#include "quant_internal.h"

/* Parameters of group g for rows [0, R) from their min/max. */
static qs_status set_group(qs_gptq_plain *g, int64_t R, int64_t grp, const float *mn,
                           const float *mx, int64_t row0, qs_err *err) {
    for (int64_t r = 0; r < R; ++r)
        if (qs_quant_group_params(g->p, mn[r], mx[r], &g->scales[r * g->ng + grp],
                                  &g->zeros[r * g->ng + grp]))
            return QS_FAIL(err, QS_ERR_INPUT, "weight row %lld group %lld: scale overflows fp16",
                           (long long)(row0 + r), (long long)grp);
    return QS_OK;
}

static qs_status plain_start(qs_gptq_grid *base, int level, int64_t k, const float *cur,
                             int64_t len, int64_t R, int64_t row0, qs_err *err) {
    qs_gptq_plain *g = (qs_gptq_plain *)base;
    (void)level;
    float *mn = g->cs, *mx = g->cid; /* scratch until the group is loaded by column() */
    for (int64_t r = 0; r < R; ++r) {
        float lo = INFINITY, hi = -INFINITY;
        for (int64_t c = 0; c < len; ++c) {
            float v = cur[r * len + c];
            if (v < lo) lo = v;
            if (v > hi) hi = v;
        }
        mn[r] = lo;
        mx[r] = hi;
    }
    g->curg = -1; /* the scratch overwrote the loaded group */
    return set_group(g, R, k / g->gs, mn, mx, row0, err);
}

static void plain_column(qs_gptq_grid *base, int64_t k, const float *w, int64_t R, uint8_t *codes,
                         float *dq) {
    qs_gptq_plain *g = (qs_gptq_plain *)base;
    const int64_t grp = g->dyn ? k / g->gs : g->p->group_size < 1 ? 0 : g->f->perm[k] / g->gs;
    if (grp != g->curg) {
        for (int64_t r = 0; r < R; ++r) {
            float s = qs_f16_to_f32(g->scales[r * g->ng + grp]);
            g->cs[r] = s;
            g->cid[r] = s != 0.0f ? 1.0f / s : 0.0f;
            g->cz[r] = (float)g->zeros[r * g->ng + grp];
        }
        g->curg = grp;
    }
    for (int64_t r = 0; r < R; ++r) {
        int q = qs_quant1(w[r], g->cs[r], g->cid[r], g->cz[r], g->maxq);
        codes[r] = (uint8_t)q;
        dq[r] = qs_dequant1(q, g->cs[r], (int32_t)g->cz[r]);
    }
}

qs_status qs_gptq_plain_init(qs_gptq_plain *g, const qs_gptq_factor *f, const qs_quant_params *p,
                             const float *W, int64_t R, int64_t row0, uint16_t *scales,
                             int32_t *zeros, float *scratch, qs_err *err) {
    const int64_t n = f->n;
    g->p = p;
    g->f = f;
    g->scales = scales;
    g->zeros = zeros;
    g->ng = qs_quant_ngroups(n, p->group_size);
    g->gs = p->group_size < 1 ? n : p->group_size;
    g->dyn = p->group_size >= 1 && !p->static_groups;
    g->maxq = (float)((1 << p->bits) - 1);
    g->cs = scratch;
    g->cid = scratch + R;
    g->cz = scratch + 2 * R;
    g->curg = -1;
    g->base.glen[0] = g->dyn ? g->gs : 0;
    g->base.glen[1] = 0;
    g->base.start = plain_start;
    g->base.column = plain_column;
    if (g->dyn) return QS_OK;
    /* parameters known up front: one group per row, or static natural groups, from the
     * unpermuted W with dead inputs zeroed */
    for (int64_t grp = 0; grp < g->ng; ++grp) {
        int64_t j0 = grp * g->gs, j1 = j0 + g->gs < n ? j0 + g->gs : n;
        for (int64_t r = 0; r < R; ++r) {
            float mn = INFINITY, mx = -INFINITY;
            for (int64_t j = j0; j < j1; ++j) {
                float v = f->dead[j] ? 0.0f : W[r * n + j];
                if (v < mn) mn = v;
                if (v > mx) mx = v;
            }
            g->cs[r] = mn;
            g->cid[r] = mx;
        }
        qs_status st = set_group(g, R, grp, g->cs, g->cid, row0, err);
        if (st != QS_OK) return st;
    }
    g->curg = -1;
    return QS_OK;
}
