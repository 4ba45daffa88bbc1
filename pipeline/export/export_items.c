/* export_items.c: schemes, module regexes, the item table and fused ties of the writers. */
#include "export_items.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int qs_export_scheme_eq(const qs_gptq_scheme *a, const qs_gptq_scheme *b) {
    return a->bits == b->bits && a->group_size == b->group_size && !a->sym == !b->sym &&
           !a->desc_act == !b->desc_act;
}

void qs_export_scheme_name(const qs_gptq_scheme *s, char *buf, size_t cap) {
    snprintf(buf, cap, "w%dg%d %s%s", s->bits, s->group_size, s->sym ? "sym" : "asym",
             s->desc_act ? " desc_act" : "");
}

int qs_export_g_idx_natural(const int32_t *g_idx, int64_t d_in, int group_size) {
    for (int64_t j = 0; j < d_in; ++j)
        if (g_idx[j] != (group_size < 1 ? 0 : (int32_t)(j / group_size))) return 0;
    return 1;
}

/* ---- module regexes -------------------------------------------------------------------- */

/* vLLM fuses these projections of one layer into one linear; the last name of each list is
 * the fused module's name. */
static const char *const k_fused_qkv[] = {"q_proj", "k_proj", "v_proj", "qkv_proj", NULL};
static const char *const k_fused_gate_up[] = {"gate_proj", "up_proj", "gate_up_proj", NULL};

static const char *const *fused_family(const char *leaf) {
    for (int i = 0; k_fused_qkv[i]; ++i)
        if (strcmp(leaf, k_fused_qkv[i]) == 0) return k_fused_qkv;
    for (int i = 0; k_fused_gate_up[i]; ++i)
        if (strcmp(leaf, k_fused_gate_up[i]) == 0) return k_fused_gate_up;
    return NULL;
}

/* Appends `s` to buf (of size cap, used len) with regex metacharacters escaped. */
static int append_escaped(char *buf, size_t cap, size_t *len, const char *s, size_t n) {
    for (size_t i = 0; i < n; ++i) {
        if (strchr(".^$*+?()[]{}|\\", s[i]) != NULL) {
            if (*len + 1 >= cap) return -1;
            buf[(*len)++] = '\\';
        }
        if (*len + 1 >= cap) return -1;
        buf[(*len)++] = s[i];
    }
    buf[*len] = '\0';
    return 0;
}

static int append_raw(char *buf, size_t cap, size_t *len, const char *s) {
    size_t n = strlen(s);
    if (*len + n + 1 > cap) return -1;
    memcpy(buf + *len, s, n + 1);
    *len += n;
    return 0;
}

int qs_export_module_regex(const char *prefix, const char *module, char *buf, size_t cap) {
    size_t len = 0;
    if (cap == 0) return -1;
    buf[0] = '\0';
    if (append_raw(buf, cap, &len, prefix) != 0) return -1;
    const char *dot = strrchr(module, '.');
    const char *leaf = dot ? dot + 1 : module;
    const char *const *fam = fused_family(leaf);
    if (!fam) {
        if (append_escaped(buf, cap, &len, module, strlen(module)) != 0) return -1;
    } else {
        if (append_escaped(buf, cap, &len, module, (size_t)(leaf - module)) != 0) return -1;
        if (append_raw(buf, cap, &len, "(") != 0) return -1;
        for (int i = 0; fam[i]; ++i) {
            if (i && append_raw(buf, cap, &len, "|") != 0) return -1;
            if (append_raw(buf, cap, &len, fam[i]) != 0) return -1;
        }
        if (append_raw(buf, cap, &len, ")") != 0) return -1;
    }
    return append_raw(buf, cap, &len, "$");
}

/* ---- the item table -------------------------------------------------------------------- */

static char *dup_str(const char *s, qs_err *err) {
    size_t n = strlen(s) + 1;
    char *d = qs_malloc(n, err, "string");
    if (d) memcpy(d, s, n);
    return d;
}

qs_status qs_export_items_push(qs_export_items *x, const char *name, const qs_gptq_scheme *scheme,
                               qs_export_item **out, qs_err *err) {
    qs_status st = QS_OK;
    char key[QS_EXPORT_KEY_MAX];
    *out = NULL;
    if (x->fixed)
        QS_THROW(err, QS_ERR_INTERNAL, "%s: '%s' declared after the first tensor was written",
                 x->dir, name);
    if (x->failed) QS_THROW(err, QS_ERR_INTERNAL, "%s: export used after an error", x->dir);
    for (int64_t i = 0; i < x->n; ++i)
        if (strcmp(x->v[i].name, name) == 0)
            QS_THROW(err, QS_ERR_INPUT, "%s: '%s' declared twice", x->dir, name);
    if (scheme && (strlen(name) + 32 > sizeof(key) ||
                   qs_export_module_regex("", name, key, sizeof(key)) != 0))
        QS_THROW(err, QS_ERR_INPUT, "%s: module name too long", name);
    if (x->n == x->cap) {
        int64_t cap = x->cap ? 2 * x->cap : 128;
        qs_export_item *it = realloc(x->v, (size_t)cap * sizeof(*it));
        if (!it) QS_THROW(err, QS_ERR_RUNTIME, "%s: out of memory (item table)", x->dir);
        x->v = it;
        x->cap = cap;
    }
    qs_export_item *it = &x->v[x->n];
    memset(it, 0, sizeof(*it));
    it->name = dup_str(name, err);
    if (!it->name) QS_THROW(err, QS_ERR_RUNTIME, "%s: out of memory", x->dir);
    if (scheme) {
        it->linear = 1;
        it->scheme = *scheme;
        it->scheme.sym = !!scheme->sym;
        it->scheme.desc_act = !!scheme->desc_act;
        it->regex = dup_str(key, err);
        if (!it->regex) {
            free(it->name);
            QS_THROW(err, QS_ERR_RUNTIME, "%s: out of memory", x->dir);
        }
    }
    x->n++;
    *out = it;
done:
    return st;
}

qs_status qs_export_items_exclude(qs_export_items *x, const char *module, qs_err *err) {
    qs_status st = QS_OK;
    char key[QS_EXPORT_KEY_MAX];
    if (x->fixed)
        QS_THROW(err, QS_ERR_INTERNAL, "%s: '%s' excluded after the first tensor was written",
                 x->dir, module);
    if (qs_export_module_regex("", module, key, sizeof(key)) != 0)
        QS_THROW(err, QS_ERR_INPUT, "%s: module name too long", module);
    for (int64_t i = 0; i < x->nexcl; ++i)
        if (strcmp(x->excl[i], key) == 0) goto done; /* a fused sibling already did */
    char **e = realloc(x->excl, sizeof(char *) * (size_t)(x->nexcl + 1));
    if (!e) QS_THROW(err, QS_ERR_RUNTIME, "%s: out of memory", x->dir);
    x->excl = e;
    x->excl[x->nexcl] = dup_str(key, err);
    if (!x->excl[x->nexcl]) QS_THROW(err, QS_ERR_RUNTIME, "%s: out of memory", x->dir);
    x->nexcl++;
done:
    return st;
}

qs_status qs_export_items_check_ties(const qs_export_items *x, qs_err *err) {
    qs_status st = QS_OK;
    for (int64_t i = 0; i < x->n; ++i) {
        const qs_export_item *a = &x->v[i];
        if (!a->linear) continue;
        for (int64_t j = 0; j < i; ++j) {
            const qs_export_item *b = &x->v[j];
            if (b->linear && strcmp(a->regex, b->regex) == 0 &&
                !qs_export_scheme_eq(&a->scheme, &b->scheme)) {
                char sa[64], sb[64];
                qs_export_scheme_name(&a->scheme, sa, sizeof(sa));
                qs_export_scheme_name(&b->scheme, sb, sizeof(sb));
                QS_THROW(err, QS_ERR_INPUT,
                         "%s: scheme %s differs from %s of %s; vLLM fuses them into one linear "
                         "and needs one scheme (tie them in the search)",
                         a->name, sa, sb, b->name);
            }
        }
    }
    for (int64_t i = 0; i < x->n; ++i) {
        const qs_export_item *a = &x->v[i];
        if (!a->linear) continue;
        for (int64_t k = 0; k < x->nexcl; ++k)
            if (strcmp(a->regex, x->excl[k]) == 0)
                QS_THROW(err, QS_ERR_INPUT,
                         "%s: quantized while a module fused with it stays float; vLLM fuses "
                         "them into one linear and needs one scheme (tie them in the search)",
                         a->name);
    }
done:
    return st;
}

qs_status qs_export_items_next(qs_export_items *x, const char *name, int linear,
                               qs_export_item **out, qs_err *err) {
    qs_status st = QS_OK;
    *out = NULL;
    if (x->failed) QS_THROW(err, QS_ERR_INTERNAL, "%s: export used after an error", x->dir);
    if (x->next >= x->n)
        QS_THROW(err, QS_ERR_INPUT, "%s: '%s' written after every declared item", x->dir, name);
    qs_export_item *it = &x->v[x->next];
    if (strcmp(it->name, name) != 0)
        QS_THROW(err, QS_ERR_INPUT, "%s: '%s' written while '%s' is the next declared item",
                 x->dir, name, it->name);
    if (it->linear != linear)
        QS_THROW(err, QS_ERR_INPUT, "%s: '%s' was declared as a %s", x->dir, name,
                 it->linear ? "quantized linear" : "plain tensor");
    *out = it;
done:
    return st;
}

qs_status qs_export_items_fix(qs_export_items *x, qs_export_dir *d, qs_err *err) {
    qs_status st = QS_OK;
    if (x->fixed) return QS_OK;
    if (x->n == 0) QS_THROW(err, QS_ERR_INPUT, "%s: nothing to export", x->dir);
    QS_CHECK(qs_export_items_check_ties(x, err));
    QS_CHECK(qs_export_dir_layout(d, err));
    x->fixed = 1;
done:
    return st;
}

qs_status qs_export_items_begin_add(qs_export_items *x, qs_export_dir *d, int finished,
                                    const char *name, int linear, qs_export_item **out,
                                    qs_err *err) {
    qs_status st = QS_OK;
    *out = NULL;
    if (x->failed) QS_THROW(err, QS_ERR_INTERNAL, "%s: export used after an error", x->dir);
    if (finished) QS_THROW(err, QS_ERR_INTERNAL, "%s: export used after finish", x->dir);
    QS_CHECK(qs_export_items_fix(x, d, err));
    QS_CHECK(qs_export_items_next(x, name, linear, out, err));
done:
    return st;
}

qs_status qs_export_items_all_written(const qs_export_items *x, qs_err *err) {
    if (x->next < x->n)
        return QS_FAIL(err, QS_ERR_INPUT, "%s: '%s' was declared but never written", x->dir,
                       x->v[x->next].name);
    return QS_OK;
}

int qs_export_items_lm_head(const qs_export_items *x) {
    for (int64_t i = 0; i < x->n; ++i) {
        const char *n = x->v[i].name, *dot = strrchr(n, '.');
        if (x->v[i].linear && strcmp(dot ? dot + 1 : n, "lm_head") == 0) return 1;
    }
    return 0;
}

void qs_export_items_free(qs_export_items *x) {
    for (int64_t i = 0; i < x->n; ++i) {
        free(x->v[i].name);
        free(x->v[i].regex);
    }
    for (int64_t k = 0; k < x->nexcl; ++k) free(x->excl[k]);
    free(x->excl);
    free(x->v);
    memset(x, 0, sizeof(*x));
}
