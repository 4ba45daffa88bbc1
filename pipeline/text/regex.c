/* regex.c: PCRE2 compile (Oniguruma shorthand classes rewritten) and onig-style find_iter. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "regex.h"

#include <pcre2.h>
#include <stdlib.h>
#include <string.h>

#include "utf8.h"

/* Rewrites the shorthand classes (see regex.h) into a malloc'd string; NULL with *bad set
 * to the offending escape letter when the pattern uses one that is refused. */
static char *translate(const char *p, char *bad) {
    size_t n = strlen(p);
    char *out = malloc(n * 24 + 1);
    if (!out) return NULL;
    size_t o = 0;
    int in_class = 0;
    *bad = 0;
    for (size_t i = 0; i < n; ++i) {
        char c = p[i];
        if (c == '\\' && i + 1 < n) {
            char e = p[i + 1];
            const char *rep = NULL;
            if (e == 's')
                rep = "\\p{White_Space}";
            else if (e == 'S')
                rep = "\\P{White_Space}";
            else if (e == 'w')
                rep = in_class ? "\\p{L}\\p{M}\\p{Nd}\\p{Pc}" : "[\\p{L}\\p{M}\\p{Nd}\\p{Pc}]";
            else if (e == 'W' && !in_class)
                rep = "[^\\p{L}\\p{M}\\p{Nd}\\p{Pc}]";
            else if (e == 'W' || e == 'h' || e == 'H') {
                *bad = e;
                free(out);
                return NULL;
            }
            if (rep) {
                size_t k = strlen(rep);
                memcpy(out + o, rep, k);
                o += k;
            } else {
                out[o++] = c;
                out[o++] = e;
            }
            ++i;
            continue;
        }
        if (c == '[' && !in_class) {
            in_class = 1;
            out[o++] = c;
            /* a ']' right after '[' or '[^' is a literal */
            if (i + 1 < n && p[i + 1] == '^') out[o++] = p[++i];
            if (i + 1 < n && p[i + 1] == ']') out[o++] = p[++i];
            continue;
        }
        if (c == ']' && in_class) in_class = 0;
        out[o++] = c;
    }
    out[o] = '\0';
    return out;
}

qs_status qs_regex_compile(qs_regex *re, const char *pattern, int literal, const char *what,
                           qs_err *err) {
    memset(re, 0, sizeof(*re));
    char *pat = NULL;
    uint32_t opts = PCRE2_UTF | PCRE2_UCP;
    if (literal) {
        opts |= PCRE2_LITERAL;
    } else {
        char bad = 0;
        pat = translate(pattern, &bad);
        if (!pat) {
            if (bad)
                return QS_FAIL(err, QS_ERR_INPUT, "%s: the escape \\%c is not supported", what,
                               bad);
            return QS_FAIL(err, QS_ERR_RUNTIME, "%s: out of memory", what);
        }
    }
    int ecode = 0;
    PCRE2_SIZE eoff = 0;
    const char *src = literal ? pattern : pat;
    pcre2_code *code = pcre2_compile((PCRE2_SPTR)src, PCRE2_ZERO_TERMINATED, opts, &ecode,
                                     &eoff, NULL);
    free(pat);
    if (!code) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(ecode, msg, sizeof(msg));
        return QS_FAIL(err, QS_ERR_INPUT, "%s: bad regular expression: %s", what,
                       (const char *)msg);
    }
    re->code = code;
    re->jit = pcre2_jit_compile(code, PCRE2_JIT_COMPLETE) == 0;
    re->md = pcre2_match_data_create_from_pattern(code, NULL);
    if (!re->md) {
        qs_regex_free(re);
        return QS_FAIL(err, QS_ERR_RUNTIME, "%s: out of memory", what);
    }
    return QS_OK;
}

void qs_regex_free(qs_regex *re) {
    if (re->md) pcre2_match_data_free(re->md);
    if (re->code) pcre2_code_free(re->code);
    memset(re, 0, sizeof(*re));
}

int qs_regex_next(qs_regex *re, const char *s, size_t n, qs_regex_iter *it, size_t *ms,
                  size_t *me) {
    for (;;) {
        if (it->next > n) return 0;
        int rc = re->jit ? pcre2_jit_match(re->code, (PCRE2_SPTR)s, n, it->next, 0, re->md, NULL)
                         : pcre2_match(re->code, (PCRE2_SPTR)s, n, it->next, PCRE2_NO_UTF_CHECK,
                                       re->md, NULL);
        if (rc == PCRE2_ERROR_NOMATCH) return 0;
        if (rc < 0) return -1;
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(re->md);
        size_t s0 = ov[0], e0 = ov[1];
        if (s0 == e0 && it->have_last && it->last_end == e0) {
            it->next += it->next < n ? (size_t)qs_utf8_len((unsigned char)s[it->next]) : 1;
            continue;
        }
        it->next = e0;
        it->last_end = e0;
        it->have_last = 1;
        *ms = s0;
        *me = e0;
        return 1;
    }
}
