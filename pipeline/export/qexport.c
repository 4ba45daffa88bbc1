/* qexport.c: the quantized-checkpoint writer: directory, item table, bias, order and state
 * checks, commit; the format's table (qexport.h) does the rest. */
#include "qexport.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct qs_qexport {
    const qs_qexport_format *fmt;
    qs_qexport_opts opts;
    qs_export_dir *d;        /* owned */
    qs_export_items items;   /* owned; items.dir points into d */
    int finished;
};

void qs_qexport_opts_default(qs_qexport_opts *o) {
    memset(o, 0, sizeof(*o));
    o->shard_bytes = (int64_t)4 << 30;
    o->true_sequential = 1;
    o->damp_percent = 0.01;
}

qs_status qs_qexport_begin(qs_qexport **out, const qs_qexport_format *fmt, const char *dir,
                           const char *src_model_dir, const qs_qexport_opts *opts, qs_err *err) {
    *out = NULL;
    qs_qexport *x = qs_calloc(1, sizeof(*x), err, "checkpoint writer");
    if (!x) return QS_FAIL(err, QS_ERR_RUNTIME, "%s: out of memory", dir);
    x->fmt = fmt;
    x->opts = *opts;
    qs_status st = qs_export_dir_begin(&x->d, dir, src_model_dir, opts->shard_bytes,
                                       opts->overwrite, err);
    if (st == QS_OK) {
        x->items.dir = qs_export_dir_path(x->d);
        *out = x;
    } else {
        qs_qexport_free(x);
    }
    return st;
}

qs_status qs_qexport_declare_linear(qs_qexport *x, const char *module, int64_t d_out,
                                    int64_t d_in, const qs_gptq_scheme *scheme, int has_bias,
                                    qs_dtype bias_dtype, qs_err *err) {
    qs_status st = QS_OK;
    qs_export_item *it = NULL;
    QS_CHECK(x->fmt->check(module, d_out, d_in, scheme, &x->opts, err));
    if (has_bias && bias_dtype != QS_DTYPE_F32 && bias_dtype != QS_DTYPE_F16 &&
        bias_dtype != QS_DTYPE_BF16)
        QS_THROW(err, QS_ERR_INPUT, "%s: bias dtype must be F32, F16 or BF16", module);
    if (strlen(module) + x->fmt->suffix_room > QS_EXPORT_KEY_MAX)
        QS_THROW(err, QS_ERR_INPUT, "%s: module name too long", module);
    QS_CHECK(qs_export_items_push(&x->items, module, scheme, &it, err));
    it->d_out = d_out;
    it->d_in = d_in;
    it->has_bias = has_bias;
    it->bias_dt = bias_dtype;
    it->t0 = qs_export_dir_ntensors(x->d);
    qs_qexport_part parts[QS_QEXPORT_PARTS_MAX + 1];
    int np = x->fmt->parts(d_out, d_in, scheme, &x->opts, parts);
    if (has_bias) parts[np++] = (qs_qexport_part){"bias", bias_dtype, 1, {d_out, 0}};
    for (int k = 0; k < np; ++k) {
        char name[QS_EXPORT_KEY_MAX];
        snprintf(name, sizeof(name), "%s.%s", module, parts[k].suffix);
        QS_CHECK(qs_export_dir_declare(x->d, name, parts[k].dt, parts[k].ndim, parts[k].shape,
                                       NULL, err));
    }
    it->nt = qs_export_dir_ntensors(x->d) - it->t0;
done:
    if (st != QS_OK && it) x->items.failed = 1; /* half-declared: the writer is unusable */
    return st;
}

qs_status qs_qexport_declare_tensor(qs_qexport *x, const char *name, qs_dtype dt, int ndim,
                                    const int64_t *shape, qs_err *err) {
    qs_status st = QS_OK;
    qs_export_item *it = NULL;
    QS_CHECK(qs_export_items_push(&x->items, name, NULL, &it, err));
    it->t0 = qs_export_dir_ntensors(x->d);
    QS_CHECK(qs_export_dir_declare(x->d, name, dt, ndim, shape, NULL, err));
    it->nt = 1;
done:
    if (st != QS_OK && it) x->items.failed = 1;
    return st;
}

qs_status qs_qexport_exclude(qs_qexport *x, const char *module, qs_err *err) {
    return qs_export_items_exclude(&x->items, module, err);
}

uint64_t qs_qexport_data_bytes(const qs_qexport *x) {
    return qs_export_dir_data_bytes(x->d);
}

qs_status qs_qexport_add_linear(qs_qexport *x, const char *module, const qs_gptq_linear *q,
                                qs_err *err) {
    qs_status st = QS_OK;
    qs_export_item *it = NULL;
    QS_CHECK(qs_export_items_begin_add(&x->items, x->d, x->finished, module, 1, &it, err));
    if (it->has_bias != (q->bias != NULL))
        QS_THROW(err, QS_ERR_INPUT, "%s: bias %s but %s declared", module,
                 q->bias ? "given" : "missing", it->has_bias ? "one was" : "none was");
    QS_CHECK(x->fmt->put(x->d, it, q, &x->opts, err));
    if (it->has_bias) {
        const int64_t t = it->t0 + it->nt - 1; /* the bias is the item's last tensor */
        QS_CHECK(qs_export_dir_put(x->d, t, q->bias, (size_t)qs_export_dir_tensor_bytes(x->d, t),
                                   err));
    }
    x->items.next++;
done:
    if (st != QS_OK && it) x->items.failed = 1;
    return st;
}

qs_status qs_qexport_add_tensor(qs_qexport *x, const char *name, const void *data,
                                size_t nbytes, qs_err *err) {
    qs_status st = QS_OK;
    qs_export_item *it = NULL;
    QS_CHECK(qs_export_items_begin_add(&x->items, x->d, x->finished, name, 0, &it, err));
    QS_CHECK(qs_export_dir_put(x->d, it->t0, data, nbytes, err));
    x->items.next++;
done:
    if (st != QS_OK && it) x->items.failed = 1;
    return st;
}

qs_status qs_qexport_finish(qs_qexport *x, qs_err *err) {
    qs_status st = QS_OK;
    cJSON *qc = NULL;
    const char *dir = qs_export_dir_path(x->d);
    if (x->items.failed) QS_THROW(err, QS_ERR_INTERNAL, "%s: export finished after an error", dir);
    if (x->finished) QS_THROW(err, QS_ERR_INTERNAL, "%s: export finished twice", dir);
    QS_CHECK(qs_export_items_fix(&x->items, x->d, err));
    QS_CHECK(qs_export_items_all_written(&x->items, err));
    QS_CHECK(x->fmt->config(&x->items, dir, &x->opts, &qc, err));
    if (x->fmt->side_json) QS_CHECK(qs_export_dir_write_json(x->d, x->fmt->side_json, qc, err));
    QS_CHECK(qs_export_dir_finish(x->d, qc, err));
    x->finished = 1;
done:
    if (st != QS_OK && !x->finished) x->items.failed = 1;
    cJSON_Delete(qc);
    return st;
}

void qs_qexport_free(qs_qexport *x) {
    if (!x) return;
    qs_export_dir_free(x->d); /* removes the temporary directory before a finish */
    qs_export_items_free(&x->items);
    free(x);
}
