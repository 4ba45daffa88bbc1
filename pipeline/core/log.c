/* log.c: rank-aware logging with wall time, progress lines with ETA, and process resource
 * readings. */
#include "log.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

double qs_log_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

double qs_log_cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Terminal mode of progress lines: QSHARD_PROGRESS=tty|lines decides; otherwise only a
 * process on a terminal that no MPI launcher started (Open MPI's mpirun gives its ranks
 * pseudo-terminals even when its own output goes to a file, e.g. a Slurm log). */
static int progress_tty(void) {
    const char *m = getenv("QSHARD_PROGRESS");
    if (m && strcmp(m, "tty") == 0) return 1;
    if (m && strcmp(m, "lines") == 0) return 0;
    if (getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMIX_RANK") || getenv("PMI_RANK") ||
        getenv("SLURM_STEP_ID"))
        return 0;
    return isatty(STDOUT_FILENO);
}

void qs_log_init(qs_log *lg, int rank, int verbose, int quiet) {
    memset(lg, 0, sizeof(*lg));
    lg->rank = rank;
    lg->verbose = verbose;
    lg->quiet = quiet;
    lg->t0 = qs_log_now();
    lg->tty = progress_tty();
}

void qs_log_info(const qs_log *lg, const char *fmt, ...) {
    if (!lg || lg->quiet) return;
    if (lg->rank != 0 && !lg->verbose) return;
    FILE *out = lg->out ? lg->out : stdout;
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    double t = qs_log_now() - lg->t0;
    if (lg->tty && !lg->out) fputs("\r\033[K", out); /* over a pending progress line */
    if (lg->verbose)
        fprintf(out, "[qshard %8.2fs r%d] %s\n", t, lg->rank, line);
    else
        fprintf(out, "[qshard %8.2fs] %s\n", t, line);
    fflush(out);
}

long long qs_log_peak_rss(void) {
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return 0;
    char buf[256];
    long long kb = 0;
    while (fgets(buf, sizeof(buf), f)) {
        if (strncmp(buf, "VmHWM:", 6) == 0) {
            sscanf(buf + 6, "%lld", &kb);
            break;
        }
    }
    fclose(f);
    return kb * 1024;
}

/* ---- progress ---- */

void qs_progress_start(qs_progress *p, const qs_log *lg, const char *stage) {
    if (!p) return;
    memset(p, 0, sizeof(*p));
    p->log = lg;
    snprintf(p->stage, sizeof(p->stage), "%s", stage ? stage : "");
    p->t0 = qs_log_now();
}

void qs_progress_begin(qs_progress *p, int64_t total, int64_t done0) {
    if (!p) return;
    p->total = total;
    p->done0 = done0;
    p->done = done0;
    p->t0 = qs_log_now();
}

const char *qs_progress_fmt_time(double s, char *buf, size_t n) {
    if (s < 0) s = 0;
    long long t = (long long)(s + 0.5);
    if (t < 60)
        snprintf(buf, n, "%llds", t);
    else if (t < 3600)
        snprintf(buf, n, "%lldm%02llds", t / 60, t % 60);
    else
        snprintf(buf, n, "%lldh%02lldm", t / 3600, (t % 3600) / 60);
    return buf;
}

void qs_progress_step(qs_progress *p, int64_t done, const char *fmt, ...) {
    if (!p || !p->log || p->total <= 0) return;
    p->done = done;
    const qs_log *lg = p->log;
    if (lg->quiet || lg->rank != 0) return;
    FILE *out = lg->out ? lg->out : stdout;
    char what[256], el[32], eta[32];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    const double now = qs_log_now(), elapsed = now - p->t0;
    const int64_t here = done - p->done0, left = p->total - done;
    const int pct = (int)(100.0 * (double)done / (double)p->total);
    if (here > 0)
        qs_progress_fmt_time(elapsed / (double)here * (double)(left > 0 ? left : 0), eta,
                             sizeof(eta));
    else
        snprintf(eta, sizeof(eta), "?");
    qs_progress_fmt_time(elapsed, el, sizeof(el));
    const double t = now - lg->t0;
    if (lg->tty && !lg->out)
        fprintf(out, "\r\033[K[qshard %8.2fs] %s: %s %d%% elapsed %s ETA %s%s", t, p->stage,
                what, pct, el, eta, left <= 0 ? "\n" : "");
    else
        fprintf(out, "[qshard %8.2fs] %s: %s %d%% elapsed %s ETA %s\n", t, p->stage, what, pct,
                el, eta);
    fflush(out);
}

void qs_log_peak_rss_reset(void) {
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (!f) return;
    fputs("5", f);
    fclose(f);
}
