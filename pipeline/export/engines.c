/* engines.c: loader verdicts per engine from the schemes of a written file (engines.h). */
#include "engines.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *qs_engine_name(qs_engine e) {
    switch (e) {
    case QS_ENGINE_VLLM: return "vLLM";
    case QS_ENGINE_VLLM_CPU: return "vLLM-CPU";
    case QS_ENGINE_TRANSFORMERS: return "transformers";
    case QS_ENGINE_GPTQMODEL: return "GPTQModel";
    default: return "?";
    }
}

static void set(qs_engine_verdict *v, int loads, const char *fmt, ...) {
    v->loads = loads;
    v->why[0] = '\0';
    if (!fmt) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(v->why, sizeof(v->why), fmt, ap);
    va_end(ap);
}

void qs_engines_verdict(const qs_engines_in *in, qs_engine_verdict out[QS_ENGINE_COUNT]) {
    const qs_gptq_scheme *s = in->schemes;
    const int ct = in->format == QS_FORMAT_CT;
    int mixed = in->has_float;
    for (int64_t i = 1; i < in->n; ++i)
        if (!qs_export_scheme_eq(&s[i], &s[0])) mixed = 1;
    for (int e = 0; e < QS_ENGINE_COUNT; ++e) set(&out[e], 1, NULL);
    if (in->n == 0) {
        for (int e = 0; e < QS_ENGINE_COUNT; ++e) set(&out[e], 0, "nothing quantized");
        return;
    }
    for (int64_t i = 0; i < in->n; ++i) {
        const qs_gptq_scheme *a = &s[i];
        const int g = a->group_size;
        const char *sy = a->sym ? "sym" : "asym";
        /* vLLM on GPU */
        if (out[QS_ENGINE_VLLM].loads == 1) {
            if (!ct && !((a->bits == 4 || a->bits == 8) && a->sym))
                set(&out[QS_ENGINE_VLLM], 0, "w%d %s", a->bits, sy);
            else if (!ct && !(g == -1 || g == 32 || g == 64 || g == 128))
                set(&out[QS_ENGINE_VLLM], 0, "group %d", g);
            else if (ct && !(a->bits == 4 || (a->bits == 8 && a->sym)))
                set(&out[QS_ENGINE_VLLM], 0, "w%d %s", a->bits, sy);
            else if (ct && a->desc_act && !in->static_groups)
                set(&out[QS_ENGINE_VLLM], 0, "actorder group");
        }
        /* vLLM CPU backend */
        if (out[QS_ENGINE_VLLM_CPU].loads == 1) {
            if (a->bits != 4 || (!ct && !a->sym))
                set(&out[QS_ENGINE_VLLM_CPU], 0, "w%d %s", a->bits, sy);
            else if (g != -1 && g % 2 != 0)
                set(&out[QS_ENGINE_VLLM_CPU], 0, "group %d", g);
            else if (ct && a->desc_act && !in->static_groups)
                set(&out[QS_ENGINE_VLLM_CPU], 0, "actorder group");
        }
        /* GPTQModel.load */
        if (!ct && out[QS_ENGINE_GPTQMODEL].loads == 1 && !a->sym &&
            in->format == QS_FORMAT_GPTQ_V1)
            set(&out[QS_ENGINE_GPTQMODEL], 0, "asym v1");
    }
    if (ct) {
        set(&out[QS_ENGINE_TRANSFORMERS], -1, "not checked");
        set(&out[QS_ENGINE_GPTQMODEL], -1, "not checked");
    } else if (mixed) {
        set(&out[QS_ENGINE_TRANSFORMERS], 0, "no dynamic map");
    }
}

/* Appends to buf[cap] at *len (truncating). */
static void cat(char *buf, size_t cap, size_t *len, const char *fmt, ...) {
    if (*len + 1 >= cap) return;
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(buf + *len, cap - *len, fmt, ap);
    va_end(ap);
    if (k > 0) *len = *len + (size_t)k < cap ? *len + (size_t)k : cap - 1;
}

char *qs_engines_line(const qs_engines_in *in, char *buf, size_t cap) {
    qs_engine_verdict v[QS_ENGINE_COUNT];
    size_t len = 0;
    if (cap == 0) return buf;
    buf[0] = '\0';
    qs_engines_verdict(in, v);
    static const char *const head[3] = {"loads in ", "not in ", "unchecked: "};
    const int want[3] = {1, 0, -1};
    int parts = 0;
    for (int k = 0; k < 3; ++k) {
        int first = 1;
        for (int e = 0; e < QS_ENGINE_COUNT; ++e) {
            if (v[e].loads != want[k]) continue;
            cat(buf, cap, &len, "%s%s%s", first ? (parts ? "; " : "") : ", ",
                first ? head[k] : "", qs_engine_name((qs_engine)e));
            if (want[k] == 0) cat(buf, cap, &len, " (%s)", v[e].why);
            first = 0;
        }
        if (!first) parts++;
    }
    if (parts == 0) cat(buf, cap, &len, "no engine");
    return buf;
}

char *qs_engines_line_names(char (*names)[QS_QUANT_NAME_MAX], int64_t nnames, int sym,
                            int desc_act, qs_export_format format, char *buf, size_t cap) {
    qs_gptq_scheme *s = malloc(sizeof(*s) * (size_t)(nnames > 0 ? nnames : 1));
    qs_engines_in in = {format, s, 0, 0, 0};
    if (!s) {
        snprintf(buf, cap, "?");
        return buf;
    }
    for (int64_t i = 0; i < nnames; ++i) {
        int bits = 0, group = 0;
        char tail;
        if (sscanf(names[i], "w%dg%d%c", &bits, &group, &tail) != 2) {
            in.has_float = 1;
            continue;
        }
        qs_gptq_scheme a = {bits, group, sym, desc_act};
        s[in.n++] = a;
    }
    qs_engines_line(&in, buf, cap);
    free(s);
    return buf;
}
