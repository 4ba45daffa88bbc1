/* recon_notes.c: dead input columns, raised damping and the fp64 fallback of one layer
 * file, read from its tables and said in one line (see recon_notes.h). */
#include "recon_notes.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "h5store.h"
#include "weights.h"

#define NLIN QS_LIN_COUNT

qs_status qs_recon_notes_read(const char *path, qs_recon_notes *n, qs_err *err) {
    qs_status st = QS_OK;
    qs_h5 h;
    int64_t *ndead = NULL, *d_in = NULL; /* (7, C), (7) */
    double *damp = NULL;                 /* (7, C) */
    int32_t *raised = NULL, *fp64 = NULL; /* (7, C) */
    int64_t dims[8];
    int nd = 0;
    memset(&h, 0, sizeof(h));
    memset(n, 0, sizeof(*n));
    QS_CHECK(qs_h5_open(&h, path, err));
    QS_CHECK(qs_h5_read(&h, "table/ndead", QS_H5_I64, &nd, dims, (void **)&ndead, err));
    if (nd != 2 || dims[0] != NLIN || dims[1] < 1)
        QS_THROW(err, QS_ERR_INPUT, "%s: table/ndead: shape is not (7, candidates)", path);
    const int64_t C = dims[1];
    QS_CHECK(qs_h5_read_n(&h, "table/damp", QS_H5_F64, NLIN * C, (void **)&damp, err));
    QS_CHECK(qs_h5_read_n(&h, "table/damp_raised", QS_H5_I32, NLIN * C, (void **)&raised, err));
    QS_CHECK(qs_h5_read_n(&h, "table/fp64", QS_H5_I32, NLIN * C, (void **)&fp64, err));
    QS_CHECK(qs_h5_read_n(&h, "table/d_in", QS_H5_I64, NLIN, (void **)&d_in, err));
    for (int k = 0; k < NLIN; ++k) {
        qs_recon_note *o = &n->lin[k];
        o->d_in = d_in[k];
        for (int64_t c = 0; c < C; ++c) {
            const int64_t i = k * C + c;
            if (ndead[i] > o->ndead) o->ndead = ndead[i];
            if (damp[i] > o->damp) o->damp = damp[i];
            if (raised[i] > o->nraise) o->nraise = raised[i];
            if (fp64[i] > o->fp64) o->fp64 = fp64[i];
        }
    }
done:
    qs_h5_abandon(&h);
    free(ndead);
    free(d_in);
    free(damp);
    free(raised);
    free(fp64);
    return st;
}

int qs_recon_note_any(const qs_recon_note *n) {
    return n->ndead > 0 || n->nraise > 0 || n->fp64;
}

/* Appends printf-style text at *pos of buf (len bytes); output past the end is dropped. */
static void put(char *buf, size_t len, size_t *pos, const char *fmt, ...) {
    if (*pos >= len) return;
    va_list ap;
    va_start(ap, fmt);
    const int w = vsnprintf(buf + *pos, len - *pos, fmt, ap);
    va_end(ap);
    if (w > 0) *pos = *pos + (size_t)w < len ? *pos + (size_t)w : len - 1;
}

enum { DEAD, RAISED, FP64 };

static int applies(const qs_recon_note *o, int what) {
    return what == DEAD ? o->ndead > 0 : what == RAISED ? o->nraise > 0 : o->fp64 != 0;
}

/* Linears a and b say the same thing about `what`. */
static int same(const qs_recon_notes *n, int a, int b, int what) {
    const qs_recon_note *x = &n->lin[a], *y = &n->lin[b];
    return what == DEAD ? x->ndead == y->ndead && x->d_in == y->d_in
                        : what == RAISED ? x->damp == y->damp && x->nraise == y->nraise : 1;
}

/* The numbers after an item's linear names. */
static void tail(const qs_recon_note *p, int what, double damp_cfg, char *buf, size_t len,
                 size_t *pos) {
    if (what == DEAD)
        put(buf, len, pos, " %lld of %lld", (long long)p->ndead, (long long)p->d_in);
    if (what == RAISED)
        put(buf, len, pos, " %g -> %g (raised %d time%s)", damp_cfg, p->damp, p->nraise,
            p->nraise == 1 ? "" : "s");
}

/* One clause ("dead input columns: q,k,v 16 of 64, ..."); returns 1 when written. */
static int clause(const qs_recon_notes *n, int what, double damp_cfg, int first, char *buf,
                  size_t len, size_t *pos) {
    static const char *const HEAD[] = {"dead input columns: ", "damping raised: ",
                                       "fp64 factorization: "};
    int prev = -1;
    for (int k = 0; k < NLIN; ++k) {
        if (!applies(&n->lin[k], what)) continue;
        const char *name = qs_linear_key((qs_linear_kind)k);
        if (prev >= 0 && k == prev + 1 && same(n, prev, k, what)) {
            put(buf, len, pos, ",%s", name);
        } else {
            if (prev >= 0) {
                tail(&n->lin[prev], what, damp_cfg, buf, len, pos);
                put(buf, len, pos, ", %s", name);
            } else {
                put(buf, len, pos, "%s%s%s", first ? "" : "; ", HEAD[what], name);
            }
        }
        prev = k;
    }
    if (prev < 0) return 0;
    tail(&n->lin[prev], what, damp_cfg, buf, len, pos);
    if (what == DEAD)
        put(buf, len, pos, " (no calibration token activated them; their weights quantized "
                           "to zero)");
    return 1;
}

int qs_recon_notes_line(const qs_recon_notes *n, double damp_cfg, char *buf, size_t len) {
    size_t pos = 0;
    int count = 0, first = 1;
    if (len == 0) return 0;
    buf[0] = 0;
    for (int k = 0; k < NLIN; ++k) count += qs_recon_note_any(&n->lin[k]);
    if (count == 0) return 0;
    for (int what = DEAD; what <= FP64; ++what)
        if (clause(n, what, damp_cfg, first, buf, len, &pos)) first = 0;
    return count;
}
