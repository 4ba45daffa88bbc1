/* test_ops.c: unit tests of the operations helpers: qs_progress time formatting and step
 * bookkeeping, the SVG writer (element counts, data attributes, XML escaping, log axis with
 * non-positive values) and qs_rundir_remove_temps. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "rundir.h"
#include "svg.h"

static int failures = 0;
#define EXPECT(c)                                                         \
    do {                                                                  \
        if (!(c)) {                                                       \
            fprintf(stderr, "%s:%d: FAIL: %s\n", __FILE__, __LINE__, #c); \
            ++failures;                                                   \
        }                                                                 \
    } while (0)

static int count(const char *hay, const char *needle) {
    int n = 0;
    for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle)) ++n;
    return n;
}

static char *slurp(const char *path) {
    char *t = NULL;
    qs_err e = {0};
    if (qs_read_file(path, &t, NULL, &e) != QS_OK) return NULL;
    return t;
}

int main(void) {
    char b[32];
    EXPECT(strcmp(qs_progress_fmt_time(5.2, b, sizeof(b)), "5s") == 0);
    EXPECT(strcmp(qs_progress_fmt_time(59.6, b, sizeof(b)), "1m00s") == 0);
    EXPECT(strcmp(qs_progress_fmt_time(62, b, sizeof(b)), "1m02s") == 0);
    EXPECT(strcmp(qs_progress_fmt_time(3725, b, sizeof(b)), "1h02m") == 0);
    EXPECT(strcmp(qs_progress_fmt_time(-3, b, sizeof(b)), "0s") == 0);

    /* progress: NULL is a no-op; a quiet logger records the position without printing */
    qs_progress_begin(NULL, 10, 0);
    qs_progress_step(NULL, 3, "x");
    qs_log lg;
    qs_log_init(&lg, 0, 0, 1);
    qs_progress p;
    qs_progress_start(&p, &lg, "calibrate");
    qs_progress_begin(&p, 16, 4);
    EXPECT(p.total == 16 && p.done0 == 4 && p.done == 4);
    qs_progress_step(&p, 5, "chunk %d/%d", 5, 16);
    EXPECT(p.done == 5);

    char dir[] = "/tmp/qs_test_ops_XXXXXX";
    EXPECT(mkdtemp(dir) != NULL);
    char path[QS_PATH_MAX];
    qs_err err = {0};

    /* bars: one rect per value with its data, a title with XML specials escaped */
    snprintf(path, sizeof(path), "%s/bars.svg", dir);
    const double xs[5] = {0, 1, 2, 3, 4}, ys[5] = {4.0, 3.5, 8.0, 2.0, 4.25};
    qs_svg_chart c = {"bits <per> layer & \"more\"", "layer", "bits", 0};
    EXPECT(qs_svg_bars(path, &c, xs, ys, 5, &err) == QS_OK);
    char *t = slurp(path);
    EXPECT(t && count(t, "class=\"bar\"") == 5);
    EXPECT(t && strstr(t, "data-x=\"2\" data-y=\"8\"") != NULL);
    EXPECT(t && strstr(t, "bits &lt;per&gt; layer &amp; &quot;more&quot;") != NULL);
    EXPECT(t && strstr(t, "</svg>") != NULL);
    free(t);

    /* lines on a log axis: points of every series, a value <= 0 kept in data-y */
    snprintf(path, sizeof(path), "%s/lines.svg", dir);
    const double x2[3] = {0, 1, 2}, a[3] = {1e-3, 0.5, 20.0}, z[3] = {0.0, 1.0, 2.0};
    qs_svg_series s[2] = {{"a<b", x2, a, 3, 1}, {"z", x2, z, 3, 0}};
    qs_svg_chart c2 = {"error", "layer", "error", 1};
    EXPECT(qs_svg_lines(path, &c2, s, 2, &err) == QS_OK);
    t = slurp(path);
    EXPECT(t && count(t, "class=\"point\"") == 6);
    EXPECT(t && count(t, "class=\"line\"") == 1); /* series z has markers only */
    EXPECT(t && count(t, "data-series=\"a&lt;b\"") >= 4);
    EXPECT(t && strstr(t, "data-x=\"0\" data-y=\"0\"") != NULL);
    EXPECT(t && strstr(t, "nan") == NULL && strstr(t, "inf") == NULL);
    free(t);

    /* stale temp files: removed two levels deep, nothing else */
    qs_rundir rd = {0};
    EXPECT(qs_rundir_init(&rd, dir, &err) == QS_OK);
    EXPECT(qs_rundir_mkdir(&rd, "recon", &err) == QS_OK);
    const char *files[] = {"recon/layer-001.h5.tmp.1234", "recon/layer-000.h5", "run.json.tmp.7",
                           "recon/x.tmp.12a", "recon/notes.tmp."};
    for (int i = 0; i < 5; ++i) {
        snprintf(path, sizeof(path), "%s/%s", dir, files[i]);
        FILE *f = fopen(path, "w");
        EXPECT(f != NULL);
        if (f) fclose(f);
    }
    int n = -1;
    EXPECT(qs_rundir_remove_temps(&rd, &n, &err) == QS_OK);
    EXPECT(n == 2);
    for (int i = 0; i < 5; ++i) {
        snprintf(path, sizeof(path), "%s/%s", dir, files[i]);
        EXPECT(qs_path_exists(path) == (i == 1 || i == 3 || i == 4));
        unlink(path);
    }
    qs_rundir_free(&rd);
    snprintf(path, sizeof(path), "%s/bars.svg", dir);
    unlink(path);
    snprintf(path, sizeof(path), "%s/lines.svg", dir);
    unlink(path);
    snprintf(path, sizeof(path), "%s/recon", dir);
    rmdir(path);
    rmdir(dir);
    if (failures) {
        fprintf(stderr, "%d failure(s)\n", failures);
        return 1;
    }
    printf("ok\n");
    return 0;
}
