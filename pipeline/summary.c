/* summary.c: the end-of-run table (see summary.h). */
#include "summary.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

/* Parses run/<rel> as JSON; NULL when absent or malformed. */
static cJSON *read_json(const qs_rundir *rd, const char *rel) {
    char path[QS_PATH_MAX], *text = NULL;
    qs_err e = {0};
    if (qs_rundir_path(rd, rel, path, sizeof(path), &e) != QS_OK || !qs_path_exists(path))
        return NULL;
    if (qs_read_file(path, &text, NULL, &e) != QS_OK) return NULL;
    cJSON *o = cJSON_Parse(text);
    free(text);
    return o;
}

static double num(const cJSON *o, const char *key, double dflt) {
    const cJSON *v = o ? cJSON_GetObjectItemCaseSensitive(o, key) : NULL;
    return cJSON_IsNumber(v) ? v->valuedouble : dflt;
}

static const char *str(const cJSON *o, const char *key) {
    const cJSON *v = o ? cJSON_GetObjectItemCaseSensitive(o, key) : NULL;
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static void cell_ppl(char *buf, size_t n, const cJSON *ev) {
    double p = num(ev, "ppl", -1.0);
    if (p < 0) snprintf(buf, n, "-");
    else snprintf(buf, n, "%.4f", p);
}

void qs_summary_print(FILE *out, const qs_rundir *rd, const qs_model *model) {
    cJSON *sm = read_json(rd, "search/summary.json");
    cJSON *ev = read_json(rd, "eval.json");
    cJSON *evf = read_json(rd, "eval-float.json");
    /* the checkpoint's bytes: every tensor the files hold */
    double ckpt = 0.0;
    for (int i = 0; i < model->ckpt.nshards; ++i)
        for (int64_t t = 0; t < model->ckpt.shards[i].ntensors; ++t)
            ckpt += (double)model->ckpt.shards[i].tensors[t].nbytes;
    const double payload = num(sm, "payload_bytes", -1), total = num(sm, "total_bytes", -1);
    const double qw = num(sm, "quantized_weights", 0);
    char pf[32], pq[32], bq[32], bf[32], sq[32];
    cell_ppl(pf, sizeof(pf), evf);
    cell_ppl(pq, sizeof(pq), ev);
    if (sm && qw > 0) {
        snprintf(bq, sizeof(bq), "%.4f", payload * 8.0 / qw);
        /* the linears' bits in the checkpoint: everything that is not the unquantized rest */
        snprintf(bf, sizeof(bf), "%.2f", (ckpt - (total - payload)) * 8.0 / qw);
        snprintf(sq, sizeof(sq), "%.2f MiB", total / 1048576.0);
    } else {
        snprintf(bq, sizeof(bq), "-");
        snprintf(bf, sizeof(bf), "-");
        snprintf(sq, sizeof(sq), "-");
    }
    const char *wsrc = str(ev, "weights");
    char label[64];
    snprintf(label, sizeof(label), "quantized (%s)", wsrc ? wsrc : "written");
    fprintf(out, "\nsummary (%s)\n", rd->root);
    fprintf(out, "  %-24s %14s %10s %12s\n", "model", "size", "bpw", "perplexity");
    fprintf(out, "  %-24s %10.2f MiB %10s %12s\n", "float checkpoint", ckpt / 1048576.0, bf, pf);
    fprintf(out, "  %-24s %14s %10s %12s\n", label, sq, bq, pq);
    if (sm) {
        /* "engines": which engines load the GPTQ export (export/engines.h, written by the
         * search stage); runs from before it have none */
        const char *obj = str(sm, "objective"), *vp = str(sm, "engines");
        fprintf(out, "  allocation: %s objective, %.0f of %.0f budget bytes (payload); "
                     "GPTQ export %s\n",
                obj ? obj : "?", payload, num(sm, "budget_bytes", 0), vp ? vp : "(engines ?)");
    }
    if (ev)
        fprintf(out, "  perplexity: %.0f windows x %.0f tokens of %s\n", num(ev, "windows", 0),
                num(ev, "seqlen", 0), str(ev, "tokens_file") ? str(ev, "tokens_file") : "?");
    /* the written formats (output.formats) that are there */
    static const char *const REL[3] = {QS_DIR_EXPORT, QS_DIR_EXPORT_CT, QS_REL_GGUF};
    static const char *const WHAT[3] = {"GPTQ checkpoint", "compressed-tensors checkpoint",
                                        "GGUF file"};
    fprintf(out, "  outputs:");
    for (int i = 0; i < 3; ++i) {
        char p[QS_PATH_MAX];
        qs_err pe = {0};
        if (qs_rundir_path(rd, REL[i], p, sizeof(p), &pe) == QS_OK && qs_path_exists(p))
            fprintf(out, " %s (%s),", p, WHAT[i]);
    }
    fprintf(out, " %s/out (HDF5 shards), %s/search/allocation.md, %s/report.md\n", rd->root,
            rd->root, rd->root);
    fflush(out);
    cJSON_Delete(sm);
    cJSON_Delete(ev);
    cJSON_Delete(evf);
}
