/* ct_convert.c: a qshard GPTQ export rewritten as a compressed-tensors export (ct_export.h),
 * code for code: qsource.c unpacks, ct_export.c packs. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ct_export.h"
#include "qsource.h"

/* 1 if `name` ends with `suffix`; *stem_len gets the length before it. */
static int ends_with(const char *name, const char *suffix, size_t *stem_len) {
    size_t n = strlen(name), k = strlen(suffix);
    if (n <= k || strcmp(name + n - k, suffix) != 0) return 0;
    *stem_len = n - k;
    return 1;
}

/* What the converter does with tensor `name` of the GPTQ export. */
typedef enum cv_kind { CV_LINEAR, CV_PART, CV_PLAIN, CV_FLOAT_WEIGHT } cv_kind;

static cv_kind kind_of(const qs_qsource *s, const char *name, char *module, size_t cap) {
    static const char *const parts[] = {".qzeros", ".scales", ".g_idx", ".bias", NULL};
    char probe[1200];
    size_t k = 0;
    if (ends_with(name, ".qweight", &k) && k < cap) {
        snprintf(module, cap, "%.*s", (int)k, name);
        return CV_LINEAR;
    }
    for (int i = 0; parts[i]; ++i)
        if (ends_with(name, parts[i], &k) && k < cap) {
            snprintf(probe, sizeof(probe), "%.*s.qweight", (int)k, name);
            if (qs_ckpt_find(&s->ck, probe)) return CV_PART;
        }
    if (ends_with(name, ".weight", &k) && k < cap) {
        qs_gptq_scheme sc;
        int quantized = 1;
        snprintf(module, cap, "%.*s", (int)k, name);
        qs_qsource_scheme_of(s, module, &quantized, &sc);
        if (!quantized) return CV_FLOAT_WEIGHT;
    }
    return CV_PLAIN;
}

qs_status qs_ct_export_from_gptq(const char *gptq_dir, const char *out_dir,
                                 const qs_qexport_opts *opts, int64_t *nlinears,
                                 qs_err *err) {
    qs_status st = QS_OK;
    qs_qsource s;
    qs_qexport *x = NULL;
    qs_qsource_codes c;
    char module[1100], name[1200];
    memset(&s, 0, sizeof(s));
    memset(&c, 0, sizeof(c));
    *nlinears = 0;
    QS_CHECK(qs_qsource_open_gptq(&s, gptq_dir, err));
    qs_qexport_opts o = *opts;
    o.static_groups = s.static_groups;
    QS_CHECK(qs_qexport_begin(&x, &qs_ct_format, out_dir, gptq_dir, &o, err));
    /* pass 0 declares, pass 1 writes; tensors in file order (shards, then offsets) */
    for (int pass = 0; pass < 2; ++pass) {
        for (int f = 0; f < s.ck.nshards; ++f) {
            const qs_st_file *sh = &s.ck.shards[f];
            for (int64_t i = 0; i < sh->ntensors; ++i) {
                const qs_st_tensor *t = &sh->tensors[i];
                const cv_kind k = kind_of(&s, t->name, module, sizeof(module));
                if (k == CV_PART) continue;
                if (k != CV_LINEAR) {
                    if (pass == 1) {
                        QS_CHECK(qs_qexport_add_tensor(x, t->name, t->data, (size_t)t->nbytes,
                                                         err));
                    } else {
                        if (k == CV_FLOAT_WEIGHT) QS_CHECK(qs_qexport_exclude(x, module, err));
                        QS_CHECK(qs_qexport_declare_tensor(x, t->name, t->dtype, t->ndim,
                                                             t->shape, err));
                    }
                    continue;
                }
                qs_gptq_scheme sc;
                int quantized = 1, found = 0;
                qs_qsource_scheme_of(&s, module, &quantized, &sc);
                snprintf(name, sizeof(name), "%s.bias", module);
                const qs_st_tensor *bias = qs_ckpt_find(&s.ck, name);
                if (pass == 0) {
                    /* shapes from qweight (d_in*b/32, d_out) and g_idx (d_in,); checked when
                     * the codes are read in pass 1 */
                    snprintf(name, sizeof(name), "%s.g_idx", module);
                    const qs_st_tensor *gi = qs_ckpt_find(&s.ck, name);
                    if (!gi || gi->ndim != 1 || t->ndim != 2)
                        QS_THROW(err, QS_ERR_INPUT, "%s: %s has no g_idx or a wrong rank",
                                 qs_ckpt_file_of(&s.ck, t->name), module);
                    QS_CHECK(qs_qexport_declare_linear(x, module, t->shape[1], gi->shape[0],
                                                         &sc, bias != NULL,
                                                         bias ? bias->dtype : QS_DTYPE_F32, err));
                    (*nlinears)++;
                } else {
                    QS_CHECK(qs_qsource_codes_of(&s, module, &c, &found, err));
                    qs_gptq_linear q = {c.codes, c.scales, c.zeros, c.g_idx,
                                        bias ? bias->data : NULL};
                    QS_CHECK(qs_qexport_add_linear(x, module, &q, err));
                }
                qs_qsource_codes_free(&c);
            }
        }
    }
    QS_CHECK(qs_qexport_finish(x, err));
done:
    qs_qsource_codes_free(&c);
    qs_qexport_free(x);
    qs_qsource_close(&s);
    return st;
}
