/* test_ops.c: unit tests of the operations helpers: qs_progress time formatting and step
 * bookkeeping, the SVG writer (element counts, data attributes, XML escaping, log axis with
 * non-positive values), qs_rundir_remove_temps, and the timings' peak RSS across a reset of
 * the high-water mark (reconstruct resets it for its own record). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "log.h"
#include "report.h"
#include "rundir.h"
#include "svg.h"

static int count(const char *hay, const char *needle) {
    int n = 0;
    for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle)) ++n;
    return n;
}

static char *slurp(const char *path) { return (char *)qs_test_read_file(path, NULL); }

/* A stage that touches 256 MiB and frees it, then reconstruct's reset of VmHWM, then a small
 * stage: the attempt's peak is still the first stage's (it used to be the HWM at the end). */
static void test_timings_peak(void) {
    const size_t big = (size_t)256 << 20;
    qs_timings t;
    qs_timings_init(&t, 0);
    char *m = malloc(big); /* glibc: mmap, unmapped again by free */
    CHECK(m != NULL, "malloc");
    if (!m) return;
    volatile char *vm = m; /* every page written (a plain memset + free can be elided) */
    for (size_t i = 0; i < big; i += 4096) vm[i] = 1;
    const long long hwm = qs_log_peak_rss();
    free(m);
    qs_timings_add(&t, "calibrate", QS_OK, 1.0, 0.0, 1.0);
    qs_log_peak_rss_reset();
    qs_timings_add(&t, "reconstruct", QS_OK, 1.0, 0.0, 1.0);
    /* VmHWM is kept per thread and folded in lazily: a few pages of slack */
    CHECK(hwm > (long long)big && t.peak_rss >= hwm - (1 << 20),
          "attempt peak %lld below the stage's %lld", t.peak_rss, hwm);
}

int main(void) {
    char b[32];
    test_timings_peak();
    CHECK(strcmp(qs_progress_fmt_time(5.2, b, sizeof(b)), "5s") == 0, "fmt_time 5.2 s");
    CHECK(strcmp(qs_progress_fmt_time(59.6, b, sizeof(b)), "1m00s") == 0, "fmt_time 59.6 s");
    CHECK(strcmp(qs_progress_fmt_time(62, b, sizeof(b)), "1m02s") == 0, "fmt_time 62 s");
    CHECK(strcmp(qs_progress_fmt_time(3725, b, sizeof(b)), "1h02m") == 0, "fmt_time 3725 s");
    CHECK(strcmp(qs_progress_fmt_time(-3, b, sizeof(b)), "0s") == 0, "fmt_time of -3 s");

    /* progress: NULL is a no-op; a quiet logger records the position without printing */
    qs_progress_begin(NULL, 10, 0);
    qs_progress_step(NULL, 3, "x");
    qs_log lg;
    qs_log_init(&lg, 0, 0, 1);
    qs_progress p;
    qs_progress_start(&p, &lg, "calibrate");
    qs_progress_begin(&p, 16, 4);
    CHECK(p.total == 16 && p.done0 == 4 && p.done == 4, "progress_begin bookkeeping");
    qs_progress_step(&p, 5, "chunk %d/%d", 5, 16);
    CHECK(p.done == 5, "progress_step position");

    char dir[512];
    qs_test_tmpdir(dir, sizeof(dir), "test_ops");
    char path[QS_PATH_MAX];
    qs_err err = {0};

    /* bars: one rect per value with its data, a title with XML specials escaped */
    snprintf(path, sizeof(path), "%s/bars.svg", dir);
    const double xs[5] = {0, 1, 2, 3, 4}, ys[5] = {4.0, 3.5, 8.0, 2.0, 4.25};
    qs_svg_chart c = {"bits <per> layer & \"more\"", "layer", "bits", 0};
    CHECK(qs_svg_bars(path, &c, xs, ys, 5, &err) == QS_OK, "svg_bars: %s", err.msg);
    char *t = slurp(path);
    CHECK(t && count(t, "class=\"bar\"") == 5, "one bar per value");
    CHECK(t && strstr(t, "data-x=\"2\" data-y=\"8\"") != NULL, "bar data attributes");
    CHECK(t && strstr(t, "bits &lt;per&gt; layer &amp; &quot;more&quot;") != NULL,
          "title escaped");
    CHECK(t && strstr(t, "</svg>") != NULL, "document closed");
    free(t);

    /* lines on a log axis: points of every series, a value <= 0 kept in data-y */
    snprintf(path, sizeof(path), "%s/lines.svg", dir);
    const double x2[3] = {0, 1, 2}, a[3] = {1e-3, 0.5, 20.0}, z[3] = {0.0, 1.0, 2.0};
    qs_svg_series s[2] = {{"a<b", x2, a, 3, 1}, {"z", x2, z, 3, 0}};
    qs_svg_chart c2 = {"error", "layer", "error", 1};
    CHECK(qs_svg_lines(path, &c2, s, 2, &err) == QS_OK, "svg_lines: %s", err.msg);
    t = slurp(path);
    CHECK(t && count(t, "class=\"point\"") == 6, "points of every series");
    CHECK(t && count(t, "class=\"line\"") == 1, "one line: series z has markers only");
    CHECK(t && count(t, "data-series=\"a&lt;b\"") >= 4, "series name escaped");
    CHECK(t && strstr(t, "data-x=\"0\" data-y=\"0\"") != NULL, "a value <= 0 kept in data-y");
    CHECK(t && strstr(t, "nan") == NULL && strstr(t, "inf") == NULL, "no nan/inf written");
    free(t);

    /* stale temp files: removed two levels deep, nothing else */
    qs_rundir rd = {0};
    CHECK(qs_rundir_init(&rd, dir, &err) == QS_OK, "rundir_init: %s", err.msg);
    CHECK(qs_rundir_mkdir(&rd, "recon", &err) == QS_OK, "rundir_mkdir: %s", err.msg);
    const char *files[] = {"recon/layer-001.h5.tmp.1234", "recon/layer-000.h5", "run.json.tmp.7",
                           "recon/x.tmp.12a", "recon/notes.tmp."};
    for (int i = 0; i < 5; ++i) {
        snprintf(path, sizeof(path), "%s/%s", dir, files[i]);
        FILE *f = fopen(path, "w");
        CHECK(f != NULL, "create %s", path);
        if (f) fclose(f);
    }
    int n = -1;
    CHECK(qs_rundir_remove_temps(&rd, &n, &err) == QS_OK, "remove_temps: %s", err.msg);
    CHECK(n == 2, "two stale temp files removed (n = %d)", n);
    for (int i = 0; i < 5; ++i) {
        snprintf(path, sizeof(path), "%s/%s", dir, files[i]);
        CHECK(qs_path_exists(path) == (i == 1 || i == 3 || i == 4), "%s: removed iff stale", path);
        unlink(path);
    }
    qs_rundir_free(&rd);
    qs_test_rm_rf(dir);
    return qs_test_finish("test_ops");
}
