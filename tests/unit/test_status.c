/* test_status.c: pipeline/base/status.c, the one error convention: the first error wins,
 * messages stay on one line, qs_err_prefix puts context before the message (and cuts at the
 * message's size), exit codes per status. Links qs_base only. */
#include <string.h>

#include "check.h"
#include "status.h"

int main(void) {
    qs_err e = {0};
    qs_err_prefix(&e, "layer %d", 3); /* nothing recorded: no effect */
    CHECK(e.code == QS_OK && e.msg[0] == '\0', "prefix without an error: %s", e.msg);
    CHECK(QS_FAIL(&e, QS_ERR_INPUT, "bad\nvalue %d", 7) == QS_ERR_INPUT, "returns the code");
    CHECK(strcmp(e.msg, "bad value 7") == 0, "one line: %s", e.msg);
    CHECK(QS_FAIL(&e, QS_ERR_RUNTIME, "later") == QS_ERR_RUNTIME && e.code == QS_ERR_INPUT &&
              strcmp(e.msg, "bad value 7") == 0,
          "the first error wins: %d %s", e.code, e.msg);
    qs_err_prefix(&e, "layer %d, %s inputs", 0, "qkv");
    CHECK(strcmp(e.msg, "layer 0, qkv inputs: bad value 7") == 0 && e.code == QS_ERR_INPUT,
          "prefixed: %s", e.msg);
    /* a long context and message are cut at the buffer, still terminated */
    char big[2 * QS_ERR_MSG_MAX];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    qs_err_prefix(&e, "%s", big);
    CHECK(strlen(e.msg) == QS_ERR_MSG_MAX - 1, "cut to %zu", strlen(e.msg));
    qs_err_clear(&e);
    CHECK(QS_FAIL(&e, QS_ERR_INPUT, "%s", big) == QS_ERR_INPUT, "long message");
    qs_err_prefix(&e, "ctx");
    CHECK(strncmp(e.msg, "ctx: xxx", 8) == 0 && strlen(e.msg) == QS_ERR_MSG_MAX - 1,
          "context kept, message cut: %.12s (%zu)", e.msg, strlen(e.msg));
    CHECK(qs_status_exit_code(QS_OK) == 0 && qs_status_exit_code(QS_ERR_INPUT) == 2 &&
              qs_status_exit_code(QS_STOPPED) == 3,
          "exit codes");
    return qs_test_finish("test_status");
}
