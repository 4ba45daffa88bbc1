/* svg.h: a tiny SVG chart writer for the run report (report.md): bar charts and line /
 * scatter series on linear or log-10 axes, no dependencies. Every data point is an element
 * that carries its data, so tests (and users) can read the numbers back from the XML:
 *   bars    <rect class="bar" data-x="3" data-y="4.125" .../>
 *   points  <circle class="point" data-series="w4g128" data-x="3" data-y="0.0123" .../>
 *   lines   <polyline class="line" data-series="w4g128" .../>   (series with lines on)
 * Values that cannot be drawn on a log axis (<= 0) are placed on the axis floor; their
 * data-y keeps the true value.
 *
 * Ownership: qs_svg_series only borrows its arrays and strings; the caller owns them.
 */
#ifndef QS_SVG_H
#define QS_SVG_H

#include "status.h"

typedef struct qs_svg_series {
    const char *name;  /* legend text and data-series value */
    const double *x;   /* (n,) */
    const double *y;   /* (n,) */
    int n;
    int line;          /* 1: joined by a polyline; 0: markers only */
} qs_svg_series;

typedef struct qs_svg_chart {
    const char *title;
    const char *xlabel;
    const char *ylabel;
    int logy;          /* 1: log-10 y axis */
} qs_svg_chart;

/* Bar chart of vals[i] at x = xs[i] (n bars, xs (n,) e.g. layer indices), written durably
 * to `path`. */
qs_status qs_svg_bars(const char *path, const qs_svg_chart *c, const double *xs,
                      const double *vals, int n, qs_err *err);

/* Line / scatter chart of `ns` series, written durably to `path`. */
qs_status qs_svg_lines(const char *path, const qs_svg_chart *c, const qs_svg_series *s, int ns,
                       qs_err *err);

#endif /* QS_SVG_H */
