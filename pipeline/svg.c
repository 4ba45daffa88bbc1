/* svg.c: the tiny SVG chart writer of the run report (bars, lines, markers; linear or
 * log-10 y axis). Output is plain SVG 1.1 with inline styles, written temp -> rename. */
#include "svg.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rundir.h"

#define W 720.0
#define H 360.0
#define ML 80.0 /* margins: left, right, top, bottom */
#define MR 150.0
#define MT 36.0
#define MB 52.0

static const char *const COLORS[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e",
                                     "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"};

/* Writes text with XML's five special characters escaped. */
static void put_text(FILE *f, const char *s) {
    for (; s && *s; ++s) {
        switch (*s) {
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '&': fputs("&amp;", f); break;
        case '"': fputs("&quot;", f); break;
        case '\'': fputs("&apos;", f); break;
        default: fputc(*s, f);
        }
    }
}

typedef struct axes {
    double x0, x1, y0, y1; /* data range (y in log10 units when logy) */
    int logy;
} axes;

static double ty(const axes *a, double y) {
    double v = y;
    if (a->logy) v = y > 0 ? log10(y) : a->y0;
    if (v < a->y0) v = a->y0;
    return MT + (H - MT - MB) * (1.0 - (v - a->y0) / (a->y1 - a->y0));
}

static double tx(const axes *a, double x) {
    return ML + (W - ML - MR) * (x - a->x0) / (a->x1 - a->x0);
}

/* Range of the finite values (log10 of the positive ones when logy); *ok = 0 if none. */
static void range(const double *v, int n, int logy, double *lo, double *hi, int *ok) {
    for (int i = 0; i < n; ++i) {
        if (!isfinite(v[i]) || (logy && v[i] <= 0)) continue;
        const double t = logy ? log10(v[i]) : v[i];
        if (!*ok || t < *lo) *lo = t;
        if (!*ok || t > *hi) *hi = t;
        *ok = 1;
    }
}

static void fix_range(double *lo, double *hi, int ok, int logy) {
    if (!ok) {
        *lo = 0;
        *hi = 1;
    }
    if (logy) {
        *lo = floor(*lo);
        *hi = ceil(*hi);
    }
    if (*hi - *lo < 1e-12) {
        *lo -= 0.5;
        *hi += 0.5;
    }
}

static void header(FILE *f, const qs_svg_chart *c) {
    fprintf(f,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
            "<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" width=\"%g\" "
            "height=\"%g\" viewBox=\"0 0 %g %g\" font-family=\"sans-serif\" font-size=\"12\">\n"
            "<rect x=\"0\" y=\"0\" width=\"%g\" height=\"%g\" fill=\"white\"/>\n",
            W, H, W, H, W, H);
    fprintf(f, "<text x=\"%g\" y=\"22\" text-anchor=\"middle\" font-size=\"15\">", W / 2);
    put_text(f, c->title);
    fputs("</text>\n", f);
    fprintf(f, "<text x=\"%g\" y=\"%g\" text-anchor=\"middle\">", ML + (W - ML - MR) / 2, H - 12);
    put_text(f, c->xlabel);
    fputs("</text>\n", f);
    fprintf(f, "<text x=\"18\" y=\"%g\" text-anchor=\"middle\" transform=\"rotate(-90 18 %g)\">",
            MT + (H - MT - MB) / 2, MT + (H - MT - MB) / 2);
    put_text(f, c->ylabel);
    fputs("</text>\n", f);
}

/* A "nice" tick step (1, 2 or 5 x 10^k) for about `n` intervals over `span`. */
static double nice_step(double span, int n) {
    const double raw = span / n, p = pow(10.0, floor(log10(raw))), f = raw / p;
    return (f <= 1.0 ? 1.0 : f <= 2.0 ? 2.0 : f <= 5.0 ? 5.0 : 10.0) * p;
}

/* Axes box, y ticks (decades on a log axis, nice steps otherwise) and x ticks at nice steps
 * inside the data range (whole numbers when `integer_x`). */
static void frame(FILE *f, const axes *a, int integer_x, double xlo, double xhi) {
    fprintf(f, "<g class=\"axes\" stroke=\"#444\" fill=\"none\">\n"
               "<rect x=\"%g\" y=\"%g\" width=\"%g\" height=\"%g\"/>\n</g>\n",
            ML, MT, W - ML - MR, H - MT - MB);
    fputs("<g class=\"ticks\" fill=\"#444\">\n", f);
    if (a->logy) {
        for (int e = (int)lround(a->y0); e <= (int)lround(a->y1); ++e) {
            const double py = ty(a, pow(10.0, e));
            fprintf(f, "<line x1=\"%g\" y1=\"%.2f\" x2=\"%g\" y2=\"%.2f\" stroke=\"#ddd\"/>\n",
                    ML, py, W - MR, py);
            fprintf(f, "<text x=\"%g\" y=\"%.2f\" text-anchor=\"end\">1e%d</text>\n", ML - 6,
                    py + 4, e);
        }
    } else {
        const double st = nice_step(a->y1 - a->y0, 5);
        for (double v = ceil(a->y0 / st) * st; v <= a->y1 + 1e-9 * st; v += st) {
            const double py = ty(a, v);
            fprintf(f, "<line x1=\"%g\" y1=\"%.2f\" x2=\"%g\" y2=\"%.2f\" stroke=\"#ddd\"/>\n",
                    ML, py, W - MR, py);
            fprintf(f, "<text x=\"%g\" y=\"%.2f\" text-anchor=\"end\">%.4g</text>\n", ML - 6,
                    py + 4, fabs(v) < 1e-12 * st ? 0.0 : v);
        }
    }
    double st = nice_step(xhi - xlo > 0 ? xhi - xlo : 1.0, 6);
    if (integer_x && st < 1.0) st = 1.0;
    for (double v = ceil(xlo / st - 1e-9) * st; v <= xhi + 1e-9 * st; v += st)
        fprintf(f, "<text x=\"%.2f\" y=\"%g\" text-anchor=\"middle\">%.4g</text>\n", tx(a, v),
                H - MB + 16, fabs(v) < 1e-12 * st ? 0.0 : v);
    fputs("</g>\n", f);
}

/* A chart being written into memory, then to its file by finish. */
typedef struct doc {
    FILE *f;   /* memory stream */
    char *buf; /* owned; set by the stream */
    size_t len;
} doc;

static qs_status doc_open(doc *d, const char *path, qs_err *err) {
    memset(d, 0, sizeof(*d));
    d->f = open_memstream(&d->buf, &d->len);
    return d->f ? QS_OK : QS_FAIL(err, QS_ERR_RUNTIME, "%s: out of memory", path);
}

/* Closes the memory stream and writes it durably. */
static qs_status finish(const char *path, doc *d, qs_err *err) {
    fputs("</svg>\n", d->f);
    fclose(d->f);
    qs_status st = qs_write_file_atomic(path, d->buf, d->len, err);
    free(d->buf);
    return st;
}

qs_status qs_svg_bars(const char *path, const qs_svg_chart *c, const double *xs,
                      const double *vals, int n, qs_err *err) {
    doc d;
    if (doc_open(&d, path, err) != QS_OK) return QS_ERR_RUNTIME;
    FILE *f = d.f;
    axes a = {0, 1, 0, 1, c->logy};
    int okx = 0, oky = 0;
    range(xs, n, 0, &a.x0, &a.x1, &okx);
    range(vals, n, c->logy, &a.y0, &a.y1, &oky);
    if (!c->logy && oky && a.y0 > 0) a.y0 = 0; /* bars start at zero */
    fix_range(&a.y0, &a.y1, oky, c->logy);
    if (!c->logy) a.y1 += 0.05 * (a.y1 - a.y0); /* headroom above the highest bar */
    if (!okx) a.x0 = 0, a.x1 = 1;
    const double xlo = a.x0, xhi = a.x1;
    a.x0 -= 0.5;
    a.x1 += 0.5; /* half a slot each side */
    header(f, c);
    frame(f, &a, 1, xlo, xhi);
    const double slot = (W - ML - MR) / (a.x1 - a.x0), bw = slot * 0.8;
    const double base = ty(&a, c->logy ? pow(10.0, a.y0) : 0.0);
    fputs("<g class=\"bars\" fill=\"#1f77b4\">\n", f);
    for (int i = 0; i < n; ++i) {
        const double top = ty(&a, vals[i]);
        fprintf(f,
                "<rect class=\"bar\" data-x=\"%.17g\" data-y=\"%.17g\" x=\"%.2f\" y=\"%.2f\" "
                "width=\"%.2f\" height=\"%.2f\"/>\n",
                xs[i], vals[i], tx(&a, xs[i]) - bw / 2, top < base ? top : base, bw,
                fabs(base - top));
    }
    fputs("</g>\n", f);
    return finish(path, &d, err);
}

qs_status qs_svg_lines(const char *path, const qs_svg_chart *c, const qs_svg_series *s, int ns,
                       qs_err *err) {
    doc d;
    if (doc_open(&d, path, err) != QS_OK) return QS_ERR_RUNTIME;
    FILE *f = d.f;
    axes a = {0, 1, 0, 1, c->logy};
    int okx = 0, oky = 0;
    for (int k = 0; k < ns; ++k) {
        range(s[k].x, s[k].n, 0, &a.x0, &a.x1, &okx);
        range(s[k].y, s[k].n, c->logy, &a.y0, &a.y1, &oky);
    }
    fix_range(&a.x0, &a.x1, okx, 0);
    fix_range(&a.y0, &a.y1, oky, c->logy);
    if (!c->logy) { /* a little air above and below */
        const double pad = 0.05 * (a.y1 - a.y0);
        a.y0 -= pad;
        a.y1 += pad;
    }
    int integer_x = 1;
    for (int k = 0; k < ns; ++k)
        for (int i = 0; i < s[k].n; ++i) integer_x = integer_x && s[k].x[i] == floor(s[k].x[i]);
    header(f, c);
    frame(f, &a, integer_x, a.x0, a.x1);
    for (int k = 0; k < ns; ++k) {
        const char *col = COLORS[k % (int)(sizeof(COLORS) / sizeof(COLORS[0]))];
        fputs("<g class=\"series\" data-series=\"", f);
        put_text(f, s[k].name);
        fprintf(f, "\" stroke=\"%s\" fill=\"%s\">\n", col, col);
        if (s[k].line && s[k].n > 1) {
            fputs("<polyline class=\"line\" fill=\"none\" data-series=\"", f);
            put_text(f, s[k].name);
            fputs("\" points=\"", f);
            for (int i = 0; i < s[k].n; ++i)
                fprintf(f, "%s%.2f,%.2f", i ? " " : "", tx(&a, s[k].x[i]), ty(&a, s[k].y[i]));
            fputs("\"/>\n", f);
        }
        for (int i = 0; i < s[k].n; ++i) {
            fputs("<circle class=\"point\" data-series=\"", f);
            put_text(f, s[k].name);
            fprintf(f, "\" data-x=\"%.17g\" data-y=\"%.17g\" cx=\"%.2f\" cy=\"%.2f\" r=\"3\"/>\n",
                    s[k].x[i], s[k].y[i], tx(&a, s[k].x[i]), ty(&a, s[k].y[i]));
        }
        /* legend */
        const double ly = MT + 10 + 18.0 * k;
        fprintf(f, "<rect x=\"%g\" y=\"%g\" width=\"10\" height=\"10\"/>\n", W - MR + 12, ly - 9);
        fprintf(f, "<text x=\"%g\" y=\"%g\" stroke=\"none\" fill=\"#000\">", W - MR + 28, ly);
        put_text(f, s[k].name);
        fputs("</text>\n</g>\n", f);
    }
    return finish(path, &d, err);
}
