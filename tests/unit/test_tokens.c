/* test_tokens.c: token files and calibration windows: .u32/.u16 reading, the bad-file
 * errors (empty, odd size, unknown extension, shorter than one window, id >= vocab), and
 * window choice (random: deterministic and in range; consecutive; offsets file errors). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "tokens.h"

static void expect_input_error(const char *path, int64_t vocab, const char *word) {
    qs_tokens t;
    qs_err err = {0};
    qs_status st = qs_tokens_open(&t, path, vocab, &err);
    CHECK(st == QS_ERR_INPUT, "%s", path);
    CHECK(strstr(err.msg, path) != NULL, "message names the file");
    CHECK(strstr(err.msg, word), "'%s' lacks '%s'", err.msg, word);
    qs_tokens_close(&t);
}

int main(void) {
    char dir[256];
    qs_test_tmpdir(dir, sizeof(dir), "tokens");
    char p[512];
    qs_err err = {0};

    /* a good .u32 file of 1000 ids */
    uint32_t ids[1000];
    for (int i = 0; i < 1000; ++i) ids[i] = (uint32_t)(i * 7 % 300);
    snprintf(p, sizeof(p), "%s/good.u32", dir);
    qs_test_write_file(p, ids, sizeof(ids));
    qs_tokens t;
    CHECK(qs_tokens_open(&t, p, 300, &err) == QS_OK && t.count == 1000, "open u32");
    CHECK(qs_tokens_get(&t, 999) == ids[999], "get u32");

    int64_t off[64];
    CHECK(qs_tokens_windows(&t, QS_SAMPLING_RANDOM, 64, 100, 7, NULL, off, &err) == QS_OK, "random");
    int64_t off2[64];
    qs_tokens_windows(&t, QS_SAMPLING_RANDOM, 64, 100, 7, NULL, off2, &err);
    CHECK(memcmp(off, off2, sizeof(off)) == 0, "random windows deterministic for a seed");
    int in_range = 1;
    for (int i = 0; i < 64; ++i) in_range &= off[i] >= 0 && off[i] + 100 <= 1000;
    CHECK(in_range, "random windows inside the file");
    qs_tokens_windows(&t, QS_SAMPLING_RANDOM, 64, 100, 8, NULL, off2, &err);
    CHECK(memcmp(off, off2, sizeof(off)) != 0, "another seed, other windows");
    CHECK(qs_tokens_windows(&t, QS_SAMPLING_CONSECUTIVE, 10, 100, 0, NULL, off, &err) == QS_OK &&
              off[9] == 900,
          "consecutive");
    {
        qs_err e = {0};
        CHECK(qs_tokens_windows(&t, QS_SAMPLING_CONSECUTIVE, 11, 100, 0, NULL, off, &e) ==
                  QS_ERR_INPUT,
              "too many consecutive windows");
        qs_err e2 = {0};
        CHECK(qs_tokens_windows(&t, QS_SAMPLING_RANDOM, 1, 1001, 0, NULL, off, &e2) ==
                      QS_ERR_INPUT &&
                  strstr(e2.msg, "shorter than one window"),
              "file shorter than one window");
    }
    /* offsets file: good, too few lines, bad number, past the end */
    {
        char op[512];
        snprintf(op, sizeof(op), "%s/off.txt", dir);
        qs_test_write_file(op, "0\n# comment\n10\n\n900\n", 20);
        CHECK(qs_tokens_windows(&t, QS_SAMPLING_FILE, 3, 100, 0, op, off, &err) == QS_OK &&
                  off[0] == 0 && off[1] == 10 && off[2] == 900,
              "offsets file");
        qs_err e = {0};
        CHECK(qs_tokens_windows(&t, QS_SAMPLING_FILE, 4, 100, 0, op, off, &e) == QS_ERR_INPUT &&
                  strstr(e.msg, "off.txt"),
              "too few offsets");
        qs_test_write_file(op, "5\nabc\n", 6);
        qs_err e2 = {0};
        CHECK(qs_tokens_windows(&t, QS_SAMPLING_FILE, 2, 100, 0, op, off, &e2) == QS_ERR_INPUT &&
                  strstr(e2.msg, "off.txt:2"),
              "bad offset names file:line");
        qs_test_write_file(op, "901\n", 4);
        qs_err e3 = {0};
        CHECK(qs_tokens_windows(&t, QS_SAMPLING_FILE, 1, 100, 0, op, off, &e3) == QS_ERR_INPUT &&
                  strstr(e3.msg, "past the end"),
              "offset past the end");
    }
    qs_tokens_close(&t);

    /* .u16 */
    uint16_t s16[5] = {1, 2, 65535, 4, 5};
    snprintf(p, sizeof(p), "%s/small.u16", dir);
    qs_test_write_file(p, s16, sizeof(s16));
    CHECK(qs_tokens_open(&t, p, 70000, &err) == QS_OK && t.count == 5 &&
              qs_tokens_get(&t, 2) == 65535,
          "open u16");
    qs_tokens_close(&t);
    expect_input_error(p, 1000, ">= vocab");

    /* bad files */
    snprintf(p, sizeof(p), "%s/empty.u32", dir);
    qs_test_write_file(p, "", 0);
    expect_input_error(p, 300, "empty");
    snprintf(p, sizeof(p), "%s/odd.u32", dir);
    qs_test_write_file(p, ids, 6);
    expect_input_error(p, 300, "multiple of 4");
    snprintf(p, sizeof(p), "%s/ids.bin", dir);
    qs_test_write_file(p, ids, 8);
    expect_input_error(p, 300, "unknown token file type");
    snprintf(p, sizeof(p), "%s/big.u32", dir);
    qs_test_write_file(p, ids, sizeof(ids));
    expect_input_error(p, 100, "index");
    snprintf(p, sizeof(p), "%s/missing.u32", dir);
    expect_input_error(p, 300, "cannot open");

    qs_test_rm_rf(dir);
    return qs_test_finish("test_tokens");
}
