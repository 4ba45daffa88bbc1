/* report.c: run/timings.json (gathered per-stage, per-rank times, one entry per attempt) and
 * run/report.md + the SVGs in run/report/ built from the run directory's files only. */
#include "report.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "candidates.h"
#include "config.h"
#include "h5store.h"
#include "log.h"
#include "layer_plan.h"
#include "recon_notes.h"
#include "svg.h"

/* ---- timings ------------------------------------------------------------------------ */

void qs_timings_init(qs_timings *t, int resume) {
    memset(t, 0, sizeof(*t));
    t->t_start = qs_log_now();
    t->resume = resume;
}

void qs_timings_add(qs_timings *t, const char *name, qs_status status, double wall_s,
                    double busy_s, double cpu_s) {
    const long long rss = qs_log_peak_rss();
    if (rss > t->peak_rss) t->peak_rss = rss;
    if (t->n >= QS_TIMINGS_MAX) return;
    qs_timing *s = &t->st[t->n++];
    snprintf(s->name, sizeof(s->name), "%s", name);
    s->status = status;
    s->wall_s = wall_s;
    s->busy_s = busy_s;
    s->cpu_s = cpu_s;
}

void qs_timings_threads(qs_timings *t, int threads) {
    if (t->n > 0) t->st[t->n - 1].threads = threads;
}

void qs_timings_skip(qs_timings *t, const char *what, int64_t count, int64_t of,
                     const char *why) {
    if (t->n <= 0 || count <= 0) return;
    qs_timing *s = &t->st[t->n - 1];
    snprintf(s->skip_what, sizeof(s->skip_what), "%s", what);
    snprintf(s->skip_why, sizeof(s->skip_why), "%s", why);
    s->skip_count = count;
    s->skip_of = of;
}

void qs_timings_warn(qs_timings *t, const char *text) {
    if (t->nwarn >= QS_TIMINGS_NWARN) return;
    snprintf(t->warn[t->nwarn++], QS_TIMINGS_WARN_MAX, "%s", text);
}

/* run_dir/<dir>/layer-NNN.h5 */
static void layer_path(char *out, size_t n, const char *run_dir, const char *dir, int layer) {
    char rel[64];
    qs_rundir_layer_rel(rel, sizeof(rel), dir, layer);
    snprintf(out, n, "%s/%s", run_dir, rel);
}
static const char *status_word(qs_status st) {
    return st == QS_OK ? "done" : st == QS_STOPPED ? "stopped" : "failed";
}

/* Per rank: n stages x (wall, busy, cpu, threads), then peak RSS and total wall: 4n + 2
 * doubles. */
qs_status qs_timings_write(const qs_timings *t, qs_status run_status, const qs_comm *comm,
                           const qs_rundir *rd, qs_err *err) {
    qs_status st = QS_OK;
    const int n = t->n, per = 4 * n + 2;
    double *mine = NULL; /* (per,) */
    void *all = NULL;    /* (size, per) on rank 0 */
    size_t *counts = NULL;
    char *old = NULL, *text = NULL;
    cJSON *root = NULL;
    char path[QS_PATH_MAX];
    mine = qs_malloc(sizeof(double) * (size_t)per, err, "timings");
    if (!mine) st = QS_ERR_RUNTIME;
    st = qs_comm_agree(comm, st, err);
    if (st != QS_OK) goto done;
    for (int i = 0; i < n; ++i) {
        mine[4 * i] = t->st[i].wall_s;
        mine[4 * i + 1] = t->st[i].busy_s;
        mine[4 * i + 2] = t->st[i].cpu_s;
        mine[4 * i + 3] = t->st[i].threads > 0 ? t->st[i].threads : 1;
    }
    const long long rss_now = qs_log_peak_rss();
    mine[4 * n] = (double)(rss_now > t->peak_rss ? rss_now : t->peak_rss);
    mine[4 * n + 1] = qs_log_now() - t->t_start;
    QS_CHECK(qs_comm_gatherv(comm, mine, sizeof(double) * (size_t)per, 0, &all, &counts, err));
    if (comm->rank == 0) {
        const double *v = all; /* (size, per) */
        QS_CHECK(qs_rundir_path(rd, "timings.json", path, sizeof(path), err));
        if (qs_path_exists(path) && qs_read_file(path, &old, NULL, err) == QS_OK)
            root = cJSON_Parse(old);
        qs_err_clear(err);
        if (!root || !cJSON_IsArray(cJSON_GetObjectItem(root, "attempts"))) {
            cJSON_Delete(root);
            root = cJSON_CreateObject();
            cJSON_AddStringToObject(root, "format", "qshard-timings-1");
            cJSON_AddNumberToObject(root, "total_s", 0);
            cJSON_AddArrayToObject(root, "attempts");
        }
        cJSON *atts = cJSON_GetObjectItem(root, "attempts");
        cJSON *a = cJSON_CreateObject();
        cJSON_AddNumberToObject(a, "ranks", comm->size);
        cJSON_AddNumberToObject(a, "resume", t->resume);
        cJSON_AddStringToObject(a, "status", status_word(run_status));
        cJSON_AddNumberToObject(a, "total_s", v[4 * n + 1]);
        cJSON *rss = cJSON_AddArrayToObject(a, "peak_rss_bytes");
        for (int r = 0; r < comm->size; ++r)
            cJSON_AddItemToArray(rss, cJSON_CreateNumber(v[(size_t)r * per + 4 * n]));
        cJSON *stages = cJSON_AddArrayToObject(a, "stages");
        for (int i = 0; i < n; ++i) {
            cJSON *s = cJSON_CreateObject();
            cJSON_AddStringToObject(s, "name", t->st[i].name);
            cJSON_AddStringToObject(s, "status", status_word(t->st[i].status));
            cJSON_AddNumberToObject(s, "wall_s", t->st[i].wall_s);
            cJSON *rk = cJSON_AddArrayToObject(s, "ranks");
            for (int r = 0; r < comm->size; ++r) {
                const double *x = v + (size_t)r * per + 4 * i;
                cJSON *o = cJSON_CreateObject();
                cJSON_AddNumberToObject(o, "wall_s", x[0]);
                if (x[1] > 0)
                    cJSON_AddNumberToObject(o, "busy_s", x[1]);
                else
                    cJSON_AddNullToObject(o, "busy_s");
                cJSON_AddNumberToObject(o, "cpu_s", x[2]);
                cJSON_AddNumberToObject(o, "threads", x[3]);
                cJSON_AddItemToArray(rk, o);
            }
            if (t->st[i].skip_what[0]) {
                cJSON *k = cJSON_AddObjectToObject(s, "skipped");
                cJSON_AddStringToObject(k, "what", t->st[i].skip_what);
                cJSON_AddNumberToObject(k, "count", (double)t->st[i].skip_count);
                cJSON_AddNumberToObject(k, "of", (double)t->st[i].skip_of);
                cJSON_AddStringToObject(k, "why", t->st[i].skip_why);
            }
            cJSON_AddItemToArray(stages, s);
        }
        if (t->nwarn > 0) {
            cJSON *w = cJSON_AddArrayToObject(a, "warnings");
            for (int i = 0; i < t->nwarn; ++i)
                cJSON_AddItemToArray(w, cJSON_CreateString(t->warn[i]));
        }
        cJSON_AddItemToArray(atts, a);
        double total = 0;
        cJSON *it;
        cJSON_ArrayForEach(it, atts) {
            cJSON *ts = cJSON_GetObjectItem(it, "total_s");
            if (cJSON_IsNumber(ts)) total += ts->valuedouble;
        }
        cJSON_ReplaceItemInObject(root, "total_s", cJSON_CreateNumber(total));
        text = cJSON_Print(root);
        if (!text) QS_THROW(err, QS_ERR_RUNTIME, "%s: out of memory", path);
        QS_CHECK(qs_write_file_atomic(path, text, strlen(text), err));
    }
done:
    st = qs_comm_agree(comm, st, err);
    cJSON_Delete(root);
    free(text);
    free(old);
    free(mine);
    free(all);
    free(counts);
    return st;
}

/* ---- report helpers ------------------------------------------------------------------ */

/* Reads run_dir/rel into a malloc'd string; NULL when missing or unreadable. */
static char *read_rel(const char *run_dir, const char *rel) {
    char path[QS_PATH_MAX];
    char *text = NULL;
    qs_err e = {0};
    snprintf(path, sizeof(path), "%s/%s", run_dir, rel);
    if (!qs_path_exists(path)) return NULL;
    if (qs_read_file(path, &text, NULL, &e) != QS_OK) return NULL;
    return text;
}

static void human_bytes(double b, char *out, size_t n) {
    const char *u[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int k = 0;
    while (b >= 1024.0 && k < 4) {
        b /= 1024.0;
        ++k;
    }
    snprintf(out, n, k ? "%.1f %s" : "%.0f %s", b, u[k]);
}

static double jnum(const cJSON *o, const char *key, double dflt) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNumber(v) ? v->valuedouble : dflt;
}

static const char *jstr(const cJSON *o, const char *key, const char *dflt) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : dflt;
}

/* One layer's recon tables (run/recon/layer-NNN.h5). */
typedef struct recon_tab {
    int ok;
    int ncand;
    double *error;     /* (7, C) */
    int64_t *bytes;    /* (7, C) */
    int32_t *bits;     /* (C) */
    int32_t *gsize;    /* (C) */
    int32_t *gguf;     /* (C) GGML type of a GGUF column, -1 integer; NULL: no GGUF column */
    int64_t *d_out;    /* (7) */
    int64_t *d_in;     /* (7) */
} recon_tab;

static void recon_free(recon_tab *t) {
    free(t->error);
    free(t->bytes);
    free(t->bits);
    free(t->gsize);
    free(t->gguf);
    free(t->d_out);
    free(t->d_in);
    memset(t, 0, sizeof(*t));
}

static void recon_read(const char *run_dir, int layer, recon_tab *t) {
    char path[QS_PATH_MAX];
    qs_h5 h;
    qs_err e = {0};
    int nd = 0;
    int64_t dims[8], cdims[8];
    memset(&h, 0, sizeof(h));
    memset(t, 0, sizeof(*t));
    layer_path(path, sizeof(path), run_dir, QS_DIR_RECON, layer);
    if (!qs_path_exists(path) || qs_h5_open(&h, path, &e) != QS_OK) return;
    int ok = qs_h5_read(&h, "table/bits", QS_H5_I32, &nd, cdims, (void **)&t->bits, &e) == QS_OK;
    ok = ok && qs_h5_read(&h, "table/group_size", QS_H5_I32, &nd, dims, (void **)&t->gsize, &e) ==
                   QS_OK;
    ok = ok && qs_h5_read(&h, "table/error", QS_H5_F64, &nd, dims, (void **)&t->error, &e) == QS_OK;
    ok = ok && nd == 2 && dims[0] == QS_LIN_COUNT && dims[1] == cdims[0];
    ok = ok && qs_h5_read(&h, "table/bytes", QS_H5_I64, &nd, dims, (void **)&t->bytes, &e) == QS_OK;
    ok = ok && qs_h5_read(&h, "table/d_out", QS_H5_I64, &nd, dims, (void **)&t->d_out, &e) == QS_OK;
    ok = ok && qs_h5_read(&h, "table/d_in", QS_H5_I64, &nd, dims, (void **)&t->d_in, &e) == QS_OK;
    if (ok && qs_h5_has(&h, "table/gguf_type"))
        ok = qs_h5_read_n(&h, "table/gguf_type", QS_H5_I32, cdims[0], (void **)&t->gguf, &e) ==
             QS_OK;
    qs_h5_abandon(&h);
    if (!ok) {
        recon_free(t);
        return;
    }
    t->ncand = (int)cdims[0];
    t->ok = 1;
}

static void cand_name(const recon_tab *t, int c, char *buf, size_t n) {
    if (t->gguf && t->gguf[c] >= 0)
        qs_cand_column_name(0, 0, t->gguf[c], buf, n);
    else
        snprintf(buf, n, "w%dg%d", t->bits[c], t->gsize[c] < 1 ? -1 : t->gsize[c]);
}

static int cand_index(const recon_tab *t, const char *name) {
    char b[64];
    for (int c = 0; c < t->ncand; ++c) {
        cand_name(t, c, b, sizeof(b));
        if (strcmp(b, name) == 0) return c;
    }
    return -1;
}

/* Nominal bits of a candidate name "w<bits>g<gs>" or a GGUF type (16 for "" = float). */
static double nominal_bits(const char *name) {
    int b = 0;
    qs_gguf_type t;
    if (!name[0]) return 16.0;
    if (sscanf(name, "w%d", &b) == 1) return b;
    if (qs_gguf_type_parse(name, &t) == 0) return qs_gguf_nominal_bits(t);
    return 0;
}

/* A minimal CSV reader: header + rows, double quotes allowed. Returns rows read. */
typedef struct csv {
    int ncol, nrow;
    char **head;   /* (ncol) */
    char ***cell;  /* (nrow, ncol) */
} csv;

int qs_csv_split(char *line, char **out, int max) {
    int n = 0;
    char *p = line;
    while (n < max) {
        char *start = p, *w = p;
        int q = 0;
        while (*p && (q || (*p != ',' && *p != '\n' && *p != '\r'))) {
            if (*p == '"') {
                if (q && p[1] == '"') {
                    *w++ = '"';
                    p += 2;
                    continue;
                }
                q = !q;
                ++p;
                continue;
            }
            *w++ = *p++;
        }
        const char end = *p;
        *w = 0;
        out[n++] = start;
        if (end == ',') {
            ++p;
            continue;
        }
        break;
    }
    return n;
}

static void csv_free(csv *c) {
    for (int r = 0; r < c->nrow; ++r) {
        for (int k = 0; k < c->ncol; ++k) free(c->cell[r][k]);
        free(c->cell[r]);
    }
    for (int k = 0; k < c->ncol; ++k) free(c->head[k]);
    free(c->head);
    free(c->cell);
    memset(c, 0, sizeof(*c));
}

static int csv_parse(char *text, csv *c) {
    memset(c, 0, sizeof(*c));
    char *save = NULL, *fields[256];
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        if (!line[0] || line[0] == '\r') continue;
        int n = qs_csv_split(line, fields, 256);
        if (!c->head) {
            c->ncol = n;
            c->head = calloc((size_t)n, sizeof(char *));
            if (!c->head) return 0;
            for (int k = 0; k < n; ++k) c->head[k] = strdup(fields[k]);
            continue;
        }
        char ***cell = realloc(c->cell, sizeof(char **) * (size_t)(c->nrow + 1));
        if (!cell) break;
        c->cell = cell;
        c->cell[c->nrow] = calloc((size_t)c->ncol, sizeof(char *));
        if (!c->cell[c->nrow]) break;
        for (int k = 0; k < c->ncol; ++k) c->cell[c->nrow][k] = strdup(k < n ? fields[k] : "");
        c->nrow++;
    }
    return c->nrow;
}

static int csv_col(const csv *c, const char *const *names) {
    for (int i = 0; names[i]; ++i)
        for (int k = 0; k < c->ncol; ++k)
            if (strcmp(c->head[k], names[i]) == 0) return k;
    return -1;
}

/* ---- the report ---------------------------------------------------------------------- */

static void section_timings(FILE *f, const char *run_dir) {
    fputs("## Timings\n\n", f);
    char *text = read_rel(run_dir, "timings.json");
    cJSON *root = text ? cJSON_Parse(text) : NULL;
    cJSON *atts = root ? cJSON_GetObjectItem(root, "attempts") : NULL;
    if (!cJSON_IsArray(atts) || cJSON_GetArraySize(atts) == 0) {
        fputs("not run (no timings.json)\n\n", f);
        goto out;
    }
    fprintf(f, "Total wall time over %d attempt(s): %.2f s. Busy = the stage's measured compute "
               "time on the rank (CPU time in parentheses; MPI's polling counts as CPU).\n\n",
            cJSON_GetArraySize(atts), jnum(root, "total_s", 0));
    int ai = 0;
    cJSON *a;
    cJSON_ArrayForEach(a, atts) {
        const int nr = (int)jnum(a, "ranks", 0);
        fprintf(f, "### Attempt %d: %d rank(s)%s, %s, %.2f s\n\n", ++ai, nr,
                jnum(a, "resume", 0) ? ", --resume" : "", jstr(a, "status", "?"),
                jnum(a, "total_s", 0));
        fputs("| stage | status | wall s |", f);
        for (int r = 0; r < nr; ++r) fprintf(f, " rank %d busy s |", r);
        fputs("\n|---|---|---:|", f);
        for (int r = 0; r < nr; ++r) fputs("---:|", f);
        fputs("\n", f);
        cJSON *s;
        cJSON_ArrayForEach(s, cJSON_GetObjectItem(a, "stages")) {
            fprintf(f, "| %s | %s | %.2f |", jstr(s, "name", "?"), jstr(s, "status", "?"),
                    jnum(s, "wall_s", 0));
            cJSON *rk;
            cJSON_ArrayForEach(rk, cJSON_GetObjectItem(s, "ranks")) {
                const cJSON *b = cJSON_GetObjectItem(rk, "busy_s");
                if (cJSON_IsNumber(b))
                    fprintf(f, " %.2f (%.2f) |", b->valuedouble, jnum(rk, "cpu_s", 0));
                else
                    fprintf(f, " — (%.2f) |", jnum(rk, "cpu_s", 0));
            }
            fputs("\n", f);
        }
        fputs("\nPeak RSS per rank:", f);
        cJSON *v;
        int r = 0;
        cJSON_ArrayForEach(v, cJSON_GetObjectItem(a, "peak_rss_bytes")) {
            char b[32];
            human_bytes(v->valuedouble, b, sizeof(b));
            fprintf(f, "%s rank %d %s", r ? "," : "", r, b);
            ++r;
        }
        fputs("\n\n", f);
        /* work the stages left out because no output needs it */
        int nsk = 0;
        cJSON_ArrayForEach(s, cJSON_GetObjectItem(a, "stages")) {
            const cJSON *k = cJSON_GetObjectItem(s, "skipped");
            if (!cJSON_IsObject(k)) continue;
            if (!nsk++) fputs("Skipped (no output needs it):\n\n", f);
            fprintf(f, "- %s: %.0f of %.0f %s (%s)\n", jstr(s, "name", "?"),
                    jnum(k, "count", 0), jnum(k, "of", 0), jstr(k, "what", "?"),
                    jstr(k, "why", "?"));
        }
        if (nsk) fputs("\n", f);
        /* what the input checks warned about (timings.json "warnings") */
        int nw = 0;
        cJSON_ArrayForEach(s, cJSON_GetObjectItem(a, "warnings")) {
            if (!cJSON_IsString(s)) continue;
            if (!nw++) fputs("Warnings:\n\n", f);
            fprintf(f, "- %s\n", s->valuestring);
        }
        if (nw) fputs("\n", f);
    }
out:
    cJSON_Delete(root);
    free(text);
}

static void section_memory(FILE *f, const char *run_dir, int *nlayers) {
    fputs("## Memory per rank (plan)\n\n", f);
    char *text = read_rel(run_dir, "plan/plan.json");
    qs_plan p;
    qs_err e = {0};
    memset(&p, 0, sizeof(p));
    if (!text || qs_plan_from_json(&p, text, "plan/plan.json", &e) != QS_OK) {
        fputs("not run (no plan/plan.json)\n\n", f);
        goto out;
    }
    *nlayers = p.nlayers;
    fprintf(f, "%d decoder layers over %d rank(s); formula of docs/design.md (the process adds "
               "~30-36 MiB). Calibrate: %d stage(s) x %d replica(s) (docs/calibrate.md).\n\n",
            p.nlayers, p.nranks, p.calib_stages, p.calib_replicas);
    fputs("| rank | layers | calibrate | weights | hessians | activations | extra | total |\n"
          "|---:|---|---|---:|---:|---:|---:|---:|\n", f);
    for (int r = 0; r < p.nranks; ++r) {
        char b[5][32], cal[48];
        const qs_mem_estimate *m = &p.mem[r];
        qs_mem_calib role;
        if (qs_plan_calib_role(&p, r, &role) >= 0)
            snprintf(cal, sizeof(cal), "[%d, %d) r%d", role.first, role.first + role.count,
                     role.replica);
        else
            snprintf(cal, sizeof(cal), "idle");
        human_bytes((double)m->weights, b[0], 32);
        human_bytes((double)m->hessians, b[1], 32);
        human_bytes((double)m->activations, b[2], 32);
        human_bytes((double)m->extra, b[3], 32);
        human_bytes((double)m->total, b[4], 32);
        fprintf(f, "| %d | [%d, %d) | %s | %s | %s | %s | %s | %s |\n", r, p.first[r],
                p.first[r + 1], cal, b[0], b[1], b[2], b[3], b[4]);
    }
    fputs("\n", f);
out:
    qs_plan_free(&p);
    free(text);
}

/* Allocation table + bits-per-layer plot. *have_alloc = 1 when read. */
static qs_status section_alloc(FILE *f, const char *run_dir, int nlayers, const recon_tab *tabs,
                               qs_alloc *al, int *have_alloc, qs_err *err) {
    qs_status st = QS_OK;
    double *xs = NULL, *bits = NULL; /* (nlayers,) */
    char path[QS_PATH_MAX];
    qs_err e = {0};
    fputs("## Allocation\n\n", f);
    snprintf(path, sizeof(path), "%s/search/allocation.json", run_dir);
    if (!qs_path_exists(path)) {
        fputs("not run (no search/allocation.json)\n\n", f);
        return QS_OK;
    }
    if (qs_alloc_read_json(al, path, nlayers > 0 ? nlayers : -1, &e) != QS_OK) {
        fprintf(f, "not readable: %s\n\n", e.msg);
        return QS_OK;
    }
    *have_alloc = 1;
    fprintf(f, "Objective %s, budget %lld B, payload %lld B, total %lld B, %.4f bits per weight "
               "(payload), predicted %.6g.\n\n",
            al->objective, (long long)al->budget_bytes, (long long)al->payload_bytes,
            (long long)al->total_bytes, al->bpw, al->predicted);
    xs = qs_malloc(sizeof(double) * (size_t)(al->nlayers + 1), err, "report bits");
    bits = qs_malloc(sizeof(double) * (size_t)(al->nlayers + 1), err, "report bits");
    if (!xs || !bits) QS_THROW(err, QS_ERR_RUNTIME, "out of memory (report)");
    fputs("| layer |", f);
    for (int k = 0; k < QS_LIN_COUNT; ++k) fprintf(f, " %s |", qs_alloc_linear_name(k));
    fputs(" bits/weight |\n|---:|", f);
    for (int k = 0; k <= QS_LIN_COUNT; ++k) fputs("---|", f);
    fputs("\n", f);
    for (int64_t l = 0; l < al->nlayers; ++l) {
        /* payload bits per weight of the layer when the recon tables give sizes, else the
         * nominal bits weighted by the linears' sizes (or unweighted) */
        const recon_tab *t = (l < nlayers && tabs) ? &tabs[l] : NULL;
        double num = 0, den = 0;
        fprintf(f, "| %lld |", (long long)l);
        for (int k = 0; k < QS_LIN_COUNT; ++k) {
            const char *nm = al->cand[l][k];
            fprintf(f, " %s |", nm[0] ? nm : "float");
            double w = 1.0, b = nominal_bits(nm);
            if (t && t->ok) {
                w = (double)(t->d_out[k] * t->d_in[k]);
                const int c = nm[0] ? cand_index(t, nm) : -1;
                if (c >= 0 && t->bytes[k * t->ncand + c] > 0)
                    b = 8.0 * (double)t->bytes[k * t->ncand + c] / w;
            }
            num += b * w;
            den += w;
        }
        xs[l] = (double)l;
        bits[l] = den > 0 ? num / den : 0;
        fprintf(f, " %.4f |\n", bits[l]);
    }
    fputs("\n", f);
    snprintf(path, sizeof(path), "%s/report/bits_per_layer.svg", run_dir);
    qs_svg_chart ch = {"Bits per weight per layer", "layer", "bits per weight", 0};
    QS_CHECK(qs_svg_bars(path, &ch, xs, bits, (int)al->nlayers, err));
    fputs("![bits per layer](report/bits_per_layer.svg)\n\n", f);
done:
    free(xs);
    free(bits);
    return st;
}

/* Summed error of final/layer-NNN.h5 (the final pass: table/error (7, 1)); 0 if absent. */
static int final_error(const char *run_dir, int layer, double *out) {
    char path[QS_PATH_MAX];
    qs_h5 h;
    qs_err e = {0};
    double *v = NULL; /* (7, 1) */
    int nd = 0, ok = 0;
    int64_t dims[8];
    memset(&h, 0, sizeof(h));
    layer_path(path, sizeof(path), run_dir, QS_DIR_FINAL, layer);
    if (!qs_path_exists(path) || qs_h5_open(&h, path, &e) != QS_OK) return 0;
    if (qs_h5_read(&h, "table/error", QS_H5_F64, &nd, dims, (void **)&v, &e) == QS_OK &&
        nd == 2 && dims[0] == QS_LIN_COUNT) {
        *out = 0;
        for (int64_t i = 0; i < dims[0] * dims[1]; ++i) *out += v[i];
        ok = 1;
    }
    free(v);
    qs_h5_abandon(&h);
    return ok;
}

static const char *const LIN[QS_LIN_COUNT] = {"q", "k", "v", "o", "gate", "up", "down"};

static qs_status section_error(FILE *f, const char *run_dir, int nlayers, const recon_tab *tabs,
                               const qs_alloc *al, int have_alloc, qs_err *err) {
    qs_status st = QS_OK;
    double *xs = NULL, *ys = NULL; /* (ns, nlayers) */
    qs_svg_series *ser = NULL;
    char (*names)[64] = NULL;
    double *fin = NULL; /* (nl,) final-pass error per layer */
    fputs("## Error per layer\n\n", f);
    int nl = 0;
    while (nl < nlayers && tabs[nl].ok) ++nl;
    if (nl == 0) {
        fputs("not run (no recon/layer-NNN.h5)\n\n", f);
        return QS_OK;
    }
    const int C = tabs[0].ncand;
    int same = 1;
    for (int l = 0; l < nl; ++l) same = same && tabs[l].ncand == C;
    if (!same) {
        fputs("not readable (layers hold different candidate lists)\n\n", f);
        return QS_OK;
    }
    /* the final pass (sequential, the allocation's candidates): final/layer-NNN.h5 tables of
     * one column; a series only when every layer has its file */
    fin = qs_calloc((size_t)nl, sizeof(double), err, "report final");
    if (!fin) QS_THROW(err, QS_ERR_RUNTIME, "out of memory (report)");
    int have_final = have_alloc;
    for (int l = 0; l < nl && have_final; ++l) have_final = final_error(run_dir, l, &fin[l]);
    const int ns = C + (have_alloc ? 1 : 0) + (have_final ? 1 : 0);
    xs = qs_malloc(sizeof(double) * (size_t)(ns * nl), err, "report error");
    ys = qs_malloc(sizeof(double) * (size_t)(ns * nl), err, "report error");
    ser = qs_calloc((size_t)ns, sizeof(*ser), err, "report series");
    names = qs_calloc((size_t)ns, sizeof(*names), err, "report names");
    if (!xs || !ys || !ser || !names) QS_THROW(err, QS_ERR_RUNTIME, "out of memory (report)");
    for (int c = 0; c < C; ++c) cand_name(&tabs[0], c, names[c], sizeof(names[c]));
    if (have_alloc) snprintf(names[C], sizeof(names[C]), "allocation");
    if (have_final) snprintf(names[C + 1], sizeof(names[C + 1]), "final");
    fprintf(f, "Summed GPTQ error tr(dW H dWᵀ) of the seven linears, %d of %d layer file(s)%s.%s"
               "\n\n",
            nl, nlayers, nl < nlayers ? " (the rest not written yet)" : "",
            have_final ? " *allocation*: the measured errors of the allocation's candidates; "
                         "*final*: the final pass (final/), each layer calibrated on the "
                         "allocated model's outputs." : "");
    fputs("| layer |", f);
    for (int k = 0; k < ns; ++k) fprintf(f, " %s |", names[k]);
    fputs("\n|---:|", f);
    for (int k = 0; k < ns; ++k) fputs("---:|", f);
    fputs("\n", f);
    for (int l = 0; l < nl; ++l) {
        fprintf(f, "| %d |", l);
        for (int k = 0; k < ns; ++k) {
            double e = 0;
            for (int j = 0; j < QS_LIN_COUNT && k <= C; ++j) {
                int c = k;
                if (k == C) {
                    c = (al && l < al->nlayers && al->cand[l][j][0])
                            ? cand_index(&tabs[l], al->cand[l][j])
                            : -1;
                    if (c < 0) continue; /* float linear: no error */
                }
                e += tabs[l].error[j * C + c];
            }
            if (k == C + 1) e = fin[l];
            xs[k * nl + l] = l;
            ys[k * nl + l] = e;
            fprintf(f, " %.6g |", e);
        }
        fputs("\n", f);
    }
    fputs("\n", f);
    for (int k = 0; k < ns; ++k)
        ser[k] = (qs_svg_series){names[k], xs + k * nl, ys + k * nl, nl, 1};
    {
        char path[QS_PATH_MAX];
        snprintf(path, sizeof(path), "%s/report/error_per_layer.svg", run_dir);
        qs_svg_chart ch = {"GPTQ error per layer (sum over linears)", "layer",
                           "tr(dW H dW^T) (log scale)", 1};
        QS_CHECK(qs_svg_lines(path, &ch, ser, ns, err));
        fputs("![error per layer](report/error_per_layer.svg)\n\n", f);
    }
done:
    free(fin);
    free(xs);
    free(ys);
    free(ser);
    free(names);
    return st;
}

/* quant.damp and quant.method of the run (config.resolved.yaml); *damp < 0 when unreadable. */
static void run_quant(const char *run_dir, double *damp, int *rtn) {
    char path[QS_PATH_MAX];
    qs_config c;
    qs_err e = {0};
    memset(&c, 0, sizeof(c));
    *damp = -1.0;
    *rtn = 0;
    snprintf(path, sizeof(path), "%s/config.resolved.yaml", run_dir);
    if (qs_path_exists(path) && qs_config_load(&c, path, NULL, 0, &e) == QS_OK) {
        *damp = c.quant.damp;
        *rtn = c.quant.method == QS_METHOD_RTN;
    }
    qs_config_free(&c);
}

#define NOTES_ROWS_MAX 100

/* The GPTQ notes of the layer files of one folder (recon, final): per (layer, linear) with
 * something to say a table row (up to *room rows), counted in cnt[4] = {pairs with dead
 * columns, raised damping, fp64, pairs read}. Returns the layer files read. */
static int notes_rows(FILE *f, const char *run_dir, const char *dir, int nlayers,
                      double damp_cfg, int *room, int cnt[4]) {
    char path[QS_PATH_MAX], cfgd[32];
    int nl = 0;
    if (damp_cfg >= 0)
        snprintf(cfgd, sizeof(cfgd), "%g", damp_cfg);
    else
        snprintf(cfgd, sizeof(cfgd), "?");
    for (int l = 0; l < nlayers; ++l) {
        qs_recon_notes n;
        qs_err e = {0};
        layer_path(path, sizeof(path), run_dir, dir, l);
        if (!qs_path_exists(path) || qs_recon_notes_read(path, &n, &e) != QS_OK) continue;
        ++nl;
        for (int k = 0; k < QS_LIN_COUNT; ++k) {
            const qs_recon_note *o = &n.lin[k];
            cnt[0] += o->ndead > 0;
            cnt[1] += o->nraise > 0;
            cnt[2] += o->fp64 != 0;
            cnt[3] += 1;
            if (!qs_recon_note_any(o) || *room <= 0) continue;
            if (f)
                fprintf(f, "| %s | %d | %s | %lld of %lld | %g | %s | %d | %s |\n", dir, l,
                        LIN[k], (long long)o->ndead, (long long)o->d_in, o->damp, cfgd,
                        o->nraise, o->fp64 ? "yes" : "no");
            --*room;
        }
    }
    return nl;
}

/* Dead input columns, raised damping and the fp64 fallback of every layer file of recon/ and
 * final/ (lib/recon_notes.h): a sentence per folder; the table and what it means only when
 * something happened. */
static void section_notes(FILE *f, const char *run_dir, int nlayers) {
    static const char *const DIRS[2] = {QS_DIR_RECON, QS_DIR_FINAL};
    double damp_cfg;
    int rtn, cnt[2][4] = {{0}}, nl[2], room = NOTES_ROWS_MAX, any = 0;
    fputs("## Dead columns and damping (GPTQ)\n\n", f);
    run_quant(run_dir, &damp_cfg, &rtn);
    if (rtn) {
        fputs("quant.method rtn: no Hessian is factored, nothing to report.\n\n", f);
        return;
    }
    for (int d = 0; d < 2; ++d)
        nl[d] = notes_rows(NULL, run_dir, DIRS[d], nlayers, damp_cfg, &room, cnt[d]);
    if (nl[0] + nl[1] == 0) {
        fputs("not run (no recon/layer-NNN.h5)\n\n", f);
        return;
    }
    for (int d = 0; d < 2; ++d) {
        if (nl[d] == 0) continue;
        fprintf(f, "%s/ (%d layer file(s)): %d of %d (layer, linear) pairs had dead input columns, "
                   "%d raised the damping, %d used the fp64 fallback.\n\n",
                DIRS[d], nl[d], cnt[d][0], cnt[d][3], cnt[d][1], cnt[d][2]);
        any += cnt[d][0] + cnt[d][1] + cnt[d][2];
    }
    if (!any) return;
    fputs("| pass | layer | linear | dead columns | damping used | damping configured | raised | "
          "fp64 |\n|---|---:|---|---:|---:|---:|---:|---|\n", f);
    room = NOTES_ROWS_MAX;
    for (int d = 0; d < 2; ++d) {
        int c[4] = {0};
        notes_rows(f, run_dir, DIRS[d], nlayers, damp_cfg, &room, c);
    }
    fputs("\n", f);
    if (room <= 0)
        fprintf(f, "(the first %d rows; every layer file holds its numbers in table/ndead, "
                   "table/damp, table/damp_raised and table/fp64)\n\n", NOTES_ROWS_MAX);
    fputs("What it means:\n\n"
          "- *dead columns*: no calibration token gave these inputs of the linear a nonzero "
          "activation (the Hessian's diagonal is 0 there), so GPTQ has nothing to fit them to "
          "and sets their weights to zero, as the reference GPTQ does: the quantized linear "
          "ignores those inputs. The calibration text never exercised them; calibrate on more, "
          "and more varied, text (or check the model: a norm weight of zero does the same).\n"
          "- *damping raised*: the damped Hessian (quant.damp x mean diag) was not positive "
          "definite in fp32, so the damping was raised x10 at a time (from 0: straight to "
          "quant.damp_max) up to quant.damp_max; "
          "stronger damping moves GPTQ towards plain rounding for that linear (often: too few "
          "calibration tokens for its width).\n"
          "- *fp64*: fp32 failed at every damping up to quant.damp_max; the factorization ran in "
          "fp64.\n\n", f);
}

static int name_cmp(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static void section_eval(FILE *f, const char *run_dir) {
    fputs("## Perplexity\n\n", f);
    DIR *dir = opendir(run_dir);
    char *names[64];
    int n = 0;
    struct dirent *de;
    while (dir && (de = readdir(dir)) && n < 64) {
        const size_t len = strlen(de->d_name);
        if (strncmp(de->d_name, "eval", 4) == 0 && len > 5 &&
            strcmp(de->d_name + len - 5, ".json") == 0)
            if ((names[n] = strdup(de->d_name)) != NULL) ++n;
    }
    if (dir) closedir(dir);
    int good = 0;
    qsort(names, (size_t)n, sizeof(char *), name_cmp);
    for (int i = 0; i < n; ++i) {
        char *text = read_rel(run_dir, names[i]);
        cJSON *o = text ? cJSON_Parse(text) : NULL;
        if (o && cJSON_IsNumber(cJSON_GetObjectItem(o, "ppl"))) {
            if (!good++)
                fputs("| file | weights | perplexity | windows | tokens |\n"
                      "|---|---|---:|---:|---:|\n", f);
            fprintf(f, "| %s | %s | %.6f | %.0f | %.0f |\n", names[i], jstr(o, "weights", "?"),
                    jnum(o, "ppl", 0), jnum(o, "windows", 0), jnum(o, "tokens", 0));
        }
        cJSON_Delete(o);
        free(text);
    }
    for (int i = 0; i < n; ++i) free(names[i]);
    fputs(good ? "\n" : "not run (no eval*.json; set eval.tokens)\n\n", f);
}

static qs_status section_pareto(FILE *f, const char *run_dir, const qs_alloc *al, int have_alloc,
                                qs_err *err) {
    qs_status st = QS_OK;
    csv c;
    double *xs = NULL, *ys = NULL; /* (nrow,) */
    fputs("## Pareto frontier\n\n", f);
    char *text = read_rel(run_dir, "search/pareto.csv");
    memset(&c, 0, sizeof(c));
    if (!text || csv_parse(text, &c) == 0) {
        fputs("not run (no search/pareto.csv)\n\n", f);
        goto done;
    }
    static const char *const XN[] = {"bpw", "bits_per_weight", "total_bytes", "payload_bytes",
                                     "bytes", "budget_bytes", "budget", NULL};
    static const char *const YN[] = {"predicted", "error", "cost", "objective", NULL};
    int cx = csv_col(&c, XN), cy = csv_col(&c, YN);
    if (cx < 0) cx = 0;
    if (cy < 0) cy = c.ncol > 1 ? 1 : 0;
    xs = qs_malloc(sizeof(double) * (size_t)c.nrow, err, "report pareto");
    ys = qs_malloc(sizeof(double) * (size_t)c.nrow, err, "report pareto");
    if (!xs || !ys) QS_THROW(err, QS_ERR_RUNTIME, "out of memory (report)");
    for (int r = 0; r < c.nrow; ++r) {
        xs[r] = strtod(c.cell[r][cx], NULL);
        ys[r] = strtod(c.cell[r][cy], NULL);
    }
    fprintf(f, "%d point(s) of search/pareto.csv: %s against %s.\n\n", c.nrow, c.head[cy],
            c.head[cx]);
    {
        qs_svg_series s[2];
        int ns = 1;
        s[0] = (qs_svg_series){"frontier", xs, ys, c.nrow, 1};
        double ax = 0, ay = 0;
        if (have_alloc && al->predicted > 0 && strcmp(c.head[cx], "bpw") == 0) {
            ax = al->bpw;
            ay = al->predicted;
            s[ns++] = (qs_svg_series){"chosen", &ax, &ay, 1, 0};
        }
        char path[QS_PATH_MAX];
        snprintf(path, sizeof(path), "%s/report/pareto.svg", run_dir);
        qs_svg_chart ch = {"Pareto frontier", c.head[cx], c.head[cy], 1};
        QS_CHECK(qs_svg_lines(path, &ch, s, ns, err));
        fputs("![Pareto frontier](report/pareto.svg)\n\n", f);
    }
done:
    csv_free(&c);
    free(xs);
    free(ys);
    free(text);
    return st;
}

qs_status qs_report_write(const char *run_dir, qs_err *err) {
    qs_status st = QS_OK;
    char path[QS_PATH_MAX];
    char *buf = NULL, *cfg = NULL;
    size_t len = 0;
    FILE *f = NULL;
    recon_tab *tabs = NULL; /* (nlayers,) */
    qs_alloc al;
    int nlayers = 0, have_alloc = 0;
    memset(&al, 0, sizeof(al));
    snprintf(path, sizeof(path), "%s/run.json", run_dir);
    if (!qs_path_exists(path))
        return QS_FAIL(err, QS_ERR_INPUT, "%s: not a run directory (no run.json)", run_dir);
    snprintf(path, sizeof(path), "%s/report", run_dir);
    QS_CHECK(qs_mkdir_p(path, err));
    f = open_memstream(&buf, &len);
    if (!f) QS_THROW(err, QS_ERR_RUNTIME, "out of memory (report)");
    cfg = read_rel(run_dir, "config.resolved.yaml");
    fprintf(f, "# qshard run report\n\nRun directory `%s`", run_dir);
    if (cfg) {
        const char *m = strstr(cfg, "\nmodel:");
        if (!m && strncmp(cfg, "model:", 6) == 0) m = cfg - 1;
        if (m) {
            m += 7;
            while (*m == ' ') ++m;
            const char *e = strchr(m, '\n');
            int k = (int)(e ? e - m : (long)strlen(m));
            if (k >= 2 && m[0] == '"' && m[k - 1] == '"') { /* a quoted YAML scalar */
                ++m;
                k -= 2;
            }
            fprintf(f, ", model `%.*s`", k, m);
        }
    }
    fputs(". Written by qshard from the run directory's files (`qshard report RUN_DIR` "
          "rebuilds it).\n\n", f);
    section_timings(f, run_dir);
    section_memory(f, run_dir, &nlayers);
    if (nlayers <= 0) { /* no plan: count the recon files */
        for (;;) {
            layer_path(path, sizeof(path), run_dir, QS_DIR_RECON, nlayers);
            if (!qs_path_exists(path)) break;
            ++nlayers;
        }
    }
    if (nlayers > 0) {
        tabs = qs_calloc((size_t)nlayers, sizeof(*tabs), err, "report tables");
        if (!tabs) QS_THROW(err, QS_ERR_RUNTIME, "out of memory (report)");
        for (int l = 0; l < nlayers; ++l) recon_read(run_dir, l, &tabs[l]);
    }
    QS_CHECK(section_alloc(f, run_dir, nlayers, tabs, &al, &have_alloc, err));
    if (nlayers > 0) {
        QS_CHECK(section_error(f, run_dir, nlayers, tabs, &al, have_alloc, err));
    } else {
        fputs("## Error per layer\n\nnot run (no recon/layer-NNN.h5)\n\n", f);
    }
    section_notes(f, run_dir, nlayers);
    section_eval(f, run_dir);
    QS_CHECK(section_pareto(f, run_dir, &al, have_alloc, err));
    fputs("## Config (config.resolved.yaml)\n\n", f);
    if (cfg)
        fprintf(f, "```yaml\n%s%s```\n", cfg, cfg[0] && cfg[strlen(cfg) - 1] == '\n' ? "" : "\n");
    else
        fputs("not found\n", f);
    fclose(f);
    f = NULL;
    snprintf(path, sizeof(path), "%s/report.md", run_dir);
    QS_CHECK(qs_write_file_atomic(path, buf, len, err));
done:
    if (f) fclose(f);
    if (tabs)
        for (int l = 0; l < nlayers; ++l) recon_free(&tabs[l]);
    free(tabs);
    qs_alloc_free(&al);
    free(buf);
    free(cfg);
    return st;
}

/* ---- run summary (qshard collect) ---------------------------------------------------- */

void qs_run_summary_read(const char *run_dir, qs_run_summary *s) {
    char path[QS_PATH_MAX];
    s->size_bytes = s->bpw = s->ppl = s->ppl_float = s->time_s = -1;
    snprintf(s->status, sizeof(s->status), "missing");
    /* status and time: the last attempt of timings.json */
    char *text = read_rel(run_dir, "timings.json");
    cJSON *root = text ? cJSON_Parse(text) : NULL;
    cJSON *atts = root ? cJSON_GetObjectItem(root, "attempts") : NULL;
    const int na = cJSON_IsArray(atts) ? cJSON_GetArraySize(atts) : 0;
    if (na > 0) {
        const char *w = jstr(cJSON_GetArrayItem(atts, na - 1), "status", "");
        if (strcmp(w, "done") == 0 || strcmp(w, "failed") == 0)
            snprintf(s->status, sizeof(s->status), "%s", w);
        s->time_s = jnum(root, "total_s", -1);
    }
    cJSON_Delete(root);
    free(text);
    /* size and bpw: search summary, allocation, else a one-candidate run's recon tables */
    static const char *const SUMS[] = {"search/summary.json", QS_REL_ALLOCATION, NULL};
    for (int i = 0; SUMS[i] && s->size_bytes < 0; ++i) {
        text = read_rel(run_dir, SUMS[i]);
        root = text ? cJSON_Parse(text) : NULL;
        if (root) {
            s->size_bytes = jnum(root, "total_bytes", jnum(root, "bytes", -1));
            s->bpw = jnum(root, "bpw", -1);
        }
        cJSON_Delete(root);
        free(text);
    }
    if (s->size_bytes < 0) {
        double bytes = 0, weights = 0;
        int l = 0, ok = 1;
        for (;; ++l) {
            layer_path(path, sizeof(path), run_dir, QS_DIR_RECON, l);
            if (!qs_path_exists(path)) break;
            recon_tab t;
            recon_read(run_dir, l, &t);
            ok = ok && t.ok && t.ncand == 1;
            for (int k = 0; ok && k < QS_LIN_COUNT; ++k) {
                ok = t.bytes[k] > 0;
                bytes += (double)t.bytes[k];
                weights += (double)(t.d_out[k] * t.d_in[k]);
            }
            recon_free(&t);
            if (!ok) break;
        }
        snprintf(path, sizeof(path), "%s/recon/manifest.json", run_dir);
        if (ok && l > 0 && weights > 0 && qs_path_exists(path)) {
            s->size_bytes = bytes;
            s->bpw = 8.0 * bytes / weights;
        }
    }
    /* perplexities */
    DIR *dir = opendir(run_dir);
    struct dirent *de;
    int best = 0; /* 2: weights "final", 1: another quantized source */
    while (dir && (de = readdir(dir))) {
        const size_t len = strlen(de->d_name);
        if (strncmp(de->d_name, "eval", 4) != 0 || len <= 5 ||
            strcmp(de->d_name + len - 5, ".json") != 0)
            continue;
        text = read_rel(run_dir, de->d_name);
        root = text ? cJSON_Parse(text) : NULL;
        const double ppl = root ? jnum(root, "ppl", -1) : -1;
        const char *w = root ? jstr(root, "weights", "") : "";
        if (ppl > 0 && strcmp(w, "float") == 0) {
            s->ppl_float = ppl;
        } else if (ppl > 0) {
            const int rank = strcmp(w, "final") == 0 ? 2 : 1;
            if (rank > best) {
                best = rank;
                s->ppl = ppl;
            }
        }
        cJSON_Delete(root);
        free(text);
    }
    if (dir) closedir(dir);
}
