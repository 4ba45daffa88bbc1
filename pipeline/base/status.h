/* status.h: the one error convention of qshard.
 *
 * Every fallible function returns a qs_status and, on failure, fills a caller-owned
 * qs_err with a one-line message that names the file (or key) and the cause, e.g.
 *   "model.safetensors: header length 4096 exceeds file size 100".
 * The message never ends in a newline; the top level prints "qshard: error: <msg>".
 *
 * Codes map to process exit codes: QS_OK 0, QS_ERR_RUNTIME 1, QS_ERR_INPUT 2,
 * QS_STOPPED 3. QS_ERR_INTERNAL is a bug: the top level aborts all ranks with file:line.
 *
 * Functions follow one shape (libyaml/redis style): zero-initialise outputs, do the work,
 * `goto done` on any failure, and release everything on the single `done:` path.
 * Only the first error is kept (qs_err_set does not overwrite an earlier one).
 */
#ifndef QS_STATUS_H
#define QS_STATUS_H

#include <stddef.h>

typedef enum qs_status {
    QS_OK = 0,
    QS_ERR_RUNTIME = 1,  /* runtime failure: I/O error, disk full, out of memory */
    QS_ERR_INPUT = 2,    /* bad input or usage: the user can fix it */
    QS_STOPPED = 3,      /* stopped by a signal; everything completed is durable */
    QS_ERR_INTERNAL = 4  /* a bug: abort with file:line */
} qs_status;

#define QS_ERR_MSG_MAX 512

/* Details of the first failure. Zero-initialise before use ({0} or qs_err_clear). */
typedef struct qs_err {
    qs_status code;            /* QS_OK while no error was recorded */
    char msg[QS_ERR_MSG_MAX];  /* one line, no trailing newline */
    const char *file;          /* source location that recorded the error */
    int line;
} qs_err;

void qs_err_clear(qs_err *err);

/* Records an error (if none is recorded yet) and returns `code`, so callers can write
 * `return QS_FAIL(err, QS_ERR_INPUT, "%s: bad magic", path);`. printf-style. */
qs_status qs_err_set_at(qs_err *err, qs_status code, const char *file, int line,
                        const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 5, 6)))
#endif
    ;

/* Puts "CONTEXT: " before the recorded message (which layer, which file, ...), truncated to
 * the message's size; nothing when no error is recorded. printf-style. */
void qs_err_prefix(qs_err *err, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

#define QS_FAIL(err, code, ...) qs_err_set_at((err), (code), __FILE__, __LINE__, __VA_ARGS__)

/* For `goto done` style: set st = QS_FAIL(...) and jump. */
#define QS_CHECK(expr)                          \
    do {                                        \
        st = (expr);                            \
        if (st != QS_OK) goto done;             \
    } while (0)

#define QS_THROW(err, code, ...)                    \
    do {                                            \
        st = QS_FAIL((err), (code), __VA_ARGS__);   \
        goto done;                                  \
    } while (0)

/* Internal invariant: on failure records QS_ERR_INTERNAL with the expression text. */
#define QS_ASSERT(err, cond)                                                      \
    do {                                                                          \
        if (!(cond)) {                                                            \
            st = QS_FAIL((err), QS_ERR_INTERNAL, "internal error: assertion '%s'", \
                         #cond);                                                  \
            goto done;                                                            \
        }                                                                         \
    } while (0)

/* Exit code of a status (QS_ERR_INTERNAL maps to 1; callers abort before exiting). */
int qs_status_exit_code(qs_status st);

/* Allocation helpers that record a runtime error on failure (message names `what`).
 * They return NULL on failure; the caller jumps to its cleanup path. Free with free(). */
void *qs_malloc(size_t n, qs_err *err, const char *what);
void *qs_calloc(size_t count, size_t size, qs_err *err, const char *what);

#endif /* QS_STATUS_H */
