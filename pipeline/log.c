/* log.c: rank-aware logging with wall time, and process resource readings. */
#include "log.h"

#include <stdarg.h>
#include <string.h>
#include <time.h>

double qs_log_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void qs_log_init(qs_log *lg, int rank, int verbose, int quiet) {
    memset(lg, 0, sizeof(*lg));
    lg->rank = rank;
    lg->verbose = verbose;
    lg->quiet = quiet;
    lg->t0 = qs_log_now();
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

void qs_log_peak_rss_reset(void) {
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (!f) return;
    fputs("5", f);
    fclose(f);
}
