/* test_alloc.c: allocation JSON round trip, uniform allocations, and rejected inputs
 * (format tag, linear list, layer count, names). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "alloc.h"
#include "check.h"

static int rejects(const char *text, int64_t expect) {
    qs_alloc a;
    qs_err err = {0};
    qs_status st = qs_alloc_from_json(&a, text, "t.json", expect, &err);
    qs_alloc_free(&a);
    return st == QS_ERR_INPUT && strstr(err.msg, "t.json") != NULL;
}

int main(void) {
    qs_err err = {0};
    qs_alloc a, b;
    CHECK(qs_alloc_uniform(&a, 3, "w4g128", &err) == QS_OK, "uniform");
    strcpy(a.cand[1][QS_LIN_DOWN], "w8g32");
    strcpy(a.cand[2][QS_LIN_O], "");
    a.budget_bytes = 123456789012LL;
    a.payload_bytes = 123456789000LL;
    a.bpw = 3.25;
    char *text = NULL;
    CHECK(qs_alloc_to_json(&a, &text, &err) == QS_OK, "to_json");
    CHECK(qs_alloc_from_json(&b, text, "x", 3, &err) == QS_OK, "from_json");
    CHECK(qs_alloc_same(&a, &b), "round trip names");
    CHECK(b.budget_bytes == a.budget_bytes && b.payload_bytes == a.payload_bytes, "round trip bytes");
    CHECK(b.bpw == 3.25 && strcmp(b.objective, "uniform") == 0, "round trip summary");
    strcpy(b.cand[0][0], "w3g128");
    CHECK(!qs_alloc_same(&a, &b), "differs");
    qs_alloc_free(&b);
    CHECK(rejects(text, 4), "layer count");
    free(text);
    qs_alloc_free(&a);

    CHECK(rejects("{", -1), "bad json");
    CHECK(rejects("{\"format\":\"x\"}", -1), "format tag");
    CHECK(rejects("{\"format\":\"qshard-allocation-1\",\"linears\":[\"q\"],\"layers\":[]}", -1),
          "linears");
    CHECK(rejects("{\"format\":\"qshard-allocation-1\",\"linears\":[\"q\",\"k\",\"v\",\"o\","
                  "\"gate\",\"up\",\"down\"],\"layers\":[[\"a\"]]}",
                  -1),
          "row size");
    CHECK(rejects("{\"format\":\"qshard-allocation-1\",\"linears\":[\"q\",\"k\",\"v\",\"o\","
                  "\"gate\",\"up\",\"down\"],\"layers\":[[1,2,3,4,5,6,7]]}",
                  -1),
          "names");

    /* file form */
    char path[] = "/tmp/qs_test_alloc_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0, "mkstemp");
    CHECK(qs_alloc_uniform(&a, 2, "w3g32", &err) == QS_OK, "uniform 2");
    CHECK(qs_alloc_write_json(&a, path, &err) == QS_OK, "write");
    CHECK(qs_alloc_read_json(&b, path, 2, &err) == QS_OK, "read");
    CHECK(qs_alloc_same(&a, &b), "file round trip");
    qs_alloc_free(&a);
    qs_alloc_free(&b);
    remove(path);
    return qs_test_finish("test_alloc");
}
