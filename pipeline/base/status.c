/* status.c: the error record (qs_err) and allocation helpers that fill it. */
#include "status.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void qs_err_clear(qs_err *err) {
    if (err) memset(err, 0, sizeof(*err));
}

qs_status qs_err_set_at(qs_err *err, qs_status code, const char *file, int line,
                        const char *fmt, ...) {
    if (!err || err->code != QS_OK) return code;
    err->code = code;
    err->file = file;
    err->line = line;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
    va_end(ap);
    /* keep the message on one line whatever the inputs (file names, JSON snippets) held */
    for (char *p = err->msg; *p; ++p)
        if (*p == '\n' || *p == '\r') *p = ' ';
    return code;
}

void qs_err_prefix(qs_err *err, const char *fmt, ...) {
    if (!err || err->code == QS_OK) return;
    char ctx[QS_ERR_MSG_MAX], old[QS_ERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ctx, sizeof(ctx), fmt, ap);
    va_end(ap);
    memcpy(old, err->msg, sizeof(old));
    /* "ctx: old", cut at the message's size */
    size_t n = strlen(ctx);
    if (n > sizeof(err->msg) - 3) n = sizeof(err->msg) - 3;
    memcpy(err->msg, ctx, n);
    memcpy(err->msg + n, ": ", 2);
    size_t room = sizeof(err->msg) - n - 3, m = strlen(old);
    if (m > room) m = room;
    memcpy(err->msg + n + 2, old, m);
    err->msg[n + 2 + m] = '\0';
}

int qs_status_exit_code(qs_status st) {
    switch (st) {
    case QS_OK: return 0;
    case QS_ERR_INPUT: return 2;
    case QS_STOPPED: return 3;
    case QS_ERR_RUNTIME:
    case QS_ERR_INTERNAL:
    default: return 1;
    }
}

void *qs_malloc(size_t n, qs_err *err, const char *what) {
    void *p = malloc(n ? n : 1);
    if (!p) QS_FAIL(err, QS_ERR_RUNTIME, "out of memory allocating %zu bytes for %s", n, what);
    return p;
}

void *qs_calloc(size_t count, size_t size, qs_err *err, const char *what) {
    void *p = calloc(count ? count : 1, size ? size : 1);
    if (!p)
        QS_FAIL(err, QS_ERR_RUNTIME, "out of memory allocating %zu x %zu bytes for %s", count,
                size, what);
    return p;
}
