/* sweep.c: `qshard sweep` (resolved configs per point + a Slurm job-array script) and
 * `qshard collect` (one results table over the points' run directories). */
#include "sweep.h"

#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

#include "config.h"
#include "report.h"
#include "rundir.h"

#define MAX_KEYS 32
#define MAX_POINTS 100000

/* One override: key and its --set value text ("3", "[3,4]", "\"a b\""). */
typedef struct ov {
    char key[128];
    char *val;
} ov;

/* A list of value alternatives for one key (grid) or one point's overrides. */
typedef struct ovlist {
    int n;
    ov *v;
} ovlist;

static void ovlist_free(ovlist *l) {
    for (int i = 0; i < l->n; ++i) free(l->v[i].val);
    free(l->v);
    memset(l, 0, sizeof(*l));
}

static qs_status ovlist_push(ovlist *l, const char *key, char *val, const char *path,
                             qs_err *err) {
    ov *v = realloc(l->v, sizeof(ov) * (size_t)(l->n + 1));
    if (!v) {
        free(val);
        return QS_FAIL(err, QS_ERR_RUNTIME, "%s: out of memory", path);
    }
    l->v = v;
    snprintf(l->v[l->n].key, sizeof(l->v[l->n].key), "%s", key);
    l->v[l->n].val = val;
    l->n++;
    return QS_OK;
}

/* Appends the --set text of a YAML node (scalar or flow-able sequence of scalars). */
static int node_text(yaml_document_t *doc, yaml_node_t *n, FILE *out) {
    if (!n) return -1;
    if (n->type == YAML_SCALAR_NODE) {
        const char *s = (const char *)n->data.scalar.value;
        if (n->data.scalar.style == YAML_SINGLE_QUOTED_SCALAR_STYLE ||
            n->data.scalar.style == YAML_DOUBLE_QUOTED_SCALAR_STYLE) {
            fputc('"', out);
            for (; *s; ++s) {
                if (*s == '"' || *s == '\\') fputc('\\', out);
                fputc(*s, out);
            }
            fputc('"', out);
        } else {
            fputs(s, out);
        }
        return 0;
    }
    if (n->type == YAML_SEQUENCE_NODE) {
        fputc('[', out);
        int first = 1;
        for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top;
             ++it) {
            yaml_node_t *c = yaml_document_get_node(doc, *it);
            if (!c || c->type != YAML_SCALAR_NODE) return -1;
            if (!first) fputc(',', out);
            first = 0;
            node_text(doc, c, out);
        }
        fputc(']', out);
        return 0;
    }
    return -1;
}

static char *node_string(yaml_document_t *doc, yaml_node_t *n) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f) return NULL;
    int rc = node_text(doc, n, f);
    fclose(f);
    if (rc != 0) {
        free(buf);
        return NULL;
    }
    return buf;
}

/* Reads a mapping of key -> value into `l` (values as --set text). */
static qs_status read_map(yaml_document_t *doc, yaml_node_t *m, const char *path,
                          const char *what, ovlist *l, qs_err *err) {
    if (!m || m->type != YAML_MAPPING_NODE)
        return QS_FAIL(err, QS_ERR_INPUT, "%s:%lu: %s: expected a mapping of key.path: value",
                       path, m ? (unsigned long)m->start_mark.line + 1 : 0UL, what);
    for (yaml_node_pair_t *p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top; ++p) {
        yaml_node_t *k = yaml_document_get_node(doc, p->key);
        yaml_node_t *v = yaml_document_get_node(doc, p->value);
        if (!k || k->type != YAML_SCALAR_NODE)
            return QS_FAIL(err, QS_ERR_INPUT, "%s: %s: keys must be plain key.path names", path,
                           what);
        char *t = node_string(doc, v);
        if (!t)
            return QS_FAIL(err, QS_ERR_INPUT,
                           "%s:%lu: %s: %s: value must be a scalar or a list of scalars", path,
                           (unsigned long)v->start_mark.line + 1, what,
                           (const char *)k->data.scalar.value);
        qs_status st = ovlist_push(l, (const char *)k->data.scalar.value, t, path, err);
        if (st != QS_OK) return st;
    }
    return QS_OK;
}

typedef struct sweep {
    char *base;          /* absolute path of the base config */
    char *out;           /* from the file, may be NULL */
    int parallel;
    ovlist set;          /* every point */
    int ngrid;
    char gkey[MAX_KEYS][128];
    ovlist gval[MAX_KEYS]; /* alternatives per grid key (key field = the grid key) */
    int npoints;
    ovlist *points;      /* (npoints) */
    int nsbatch;
    char **sbatch;
} sweep;

static void sweep_free(sweep *s) {
    free(s->base);
    free(s->out);
    ovlist_free(&s->set);
    for (int i = 0; i < s->ngrid; ++i) ovlist_free(&s->gval[i]);
    for (int i = 0; i < s->npoints; ++i) ovlist_free(&s->points[i]);
    free(s->points);
    for (int i = 0; i < s->nsbatch; ++i) free(s->sbatch[i]);
    free(s->sbatch);
    memset(s, 0, sizeof(*s));
}

/* A sweep file's YAML document (libyaml's loader). */
typedef struct yaml_file {
    FILE *fh;
    yaml_parser_t parser;
    yaml_document_t doc;
    int parser_ok, doc_ok;
} yaml_file;

static void yaml_file_close(yaml_file *y) {
    if (y->doc_ok) yaml_document_delete(&y->doc);
    if (y->parser_ok) yaml_parser_delete(&y->parser);
    if (y->fh) fclose(y->fh);
    memset(y, 0, sizeof(*y));
}

/* Loads `path`; unreadable or malformed YAML is QS_ERR_INPUT naming the file (and position).
 * yaml_file_close releases it, also after a failure. */
static qs_status yaml_file_load(yaml_file *y, const char *path, qs_err *err) {
    memset(y, 0, sizeof(*y));
    y->fh = fopen(path, "rb");
    if (!y->fh) return QS_FAIL(err, QS_ERR_INPUT, "%s: cannot open the sweep file", path);
    if (!yaml_parser_initialize(&y->parser))
        return QS_FAIL(err, QS_ERR_RUNTIME, "%s: out of memory", path);
    y->parser_ok = 1;
    yaml_parser_set_input_file(&y->parser, y->fh);
    if (!yaml_parser_load(&y->parser, &y->doc))
        return QS_FAIL(err, QS_ERR_INPUT, "%s:%lu:%lu: %s", path,
                       (unsigned long)y->parser.problem_mark.line + 1,
                       (unsigned long)y->parser.problem_mark.column + 1,
                       y->parser.problem ? y->parser.problem : "malformed YAML");
    y->doc_ok = 1;
    return QS_OK;
}

/* base: (relative to the sweep file's directory) or out: (as written) -> *slot. */
static qs_status parse_path_key(const char *path, const char *key, const yaml_node_t *v,
                                unsigned long line, char **slot, qs_err *err) {
    const char *sv = v && v->type == YAML_SCALAR_NODE ? (const char *)v->data.scalar.value
                                                      : NULL;
    if (!sv || !sv[0])
        return QS_FAIL(err, QS_ERR_INPUT, "%s:%lu: %s: expected a path", path, line, key);
    char *abs = NULL;
    if (sv[0] != '/' && strcmp(key, "base") == 0) { /* relative to the sweep file */
        char *tmp = strdup(path);
        const char *d = tmp ? dirname(tmp) : ".";
        size_t n = strlen(d) + strlen(sv) + 2;
        abs = malloc(n);
        if (abs) snprintf(abs, n, "%s/%s", d, sv);
        free(tmp);
    } else {
        abs = strdup(sv);
    }
    if (!abs) return QS_FAIL(err, QS_ERR_RUNTIME, "out of memory");
    free(*slot);
    *slot = abs;
    return QS_OK;
}

/* grid: key.path: [value, ...] -> one key and its alternatives each. */
static qs_status parse_grid(yaml_document_t *doc, yaml_node_t *v, const char *path,
                            unsigned long line, sweep *s, qs_err *err) {
    qs_status st = QS_OK;
    if (!v || v->type != YAML_MAPPING_NODE)
        QS_THROW(err, QS_ERR_INPUT, "%s:%lu: grid: expected key.path: [value, ...]", path,
                 line);
    for (yaml_node_pair_t *g = v->data.mapping.pairs.start; g < v->data.mapping.pairs.top; ++g) {
        yaml_node_t *gk = yaml_document_get_node(doc, g->key);
        yaml_node_t *gv = yaml_document_get_node(doc, g->value);
        if (s->ngrid >= MAX_KEYS)
            QS_THROW(err, QS_ERR_INPUT, "%s: grid: more than %d keys", path, MAX_KEYS);
        if (!gk || gk->type != YAML_SCALAR_NODE || !gv || gv->type != YAML_SEQUENCE_NODE ||
            gv->data.sequence.items.top == gv->data.sequence.items.start)
            QS_THROW(err, QS_ERR_INPUT,
                     "%s:%lu: grid: each key needs a non-empty list of values", path,
                     gv ? (unsigned long)gv->start_mark.line + 1 : line);
        const char *gname = (const char *)gk->data.scalar.value;
        snprintf(s->gkey[s->ngrid], sizeof(s->gkey[0]), "%s", gname);
        ovlist *alt = &s->gval[s->ngrid++];
        for (yaml_node_item_t *it = gv->data.sequence.items.start;
             it < gv->data.sequence.items.top; ++it) {
            yaml_node_t *e = yaml_document_get_node(doc, *it);
            char *t = node_string(doc, e);
            if (!t)
                QS_THROW(err, QS_ERR_INPUT,
                         "%s:%lu: grid: %s: each value must be a scalar or a list of scalars",
                         path, e ? (unsigned long)e->start_mark.line + 1 : line, gname);
            QS_CHECK(ovlist_push(alt, gname, t, path, err));
        }
    }
done:
    return st;
}

/* points: a list of mappings, one point's overrides each. */
static qs_status parse_points(yaml_document_t *doc, yaml_node_t *v, const char *path,
                              unsigned long line, sweep *s, qs_err *err) {
    if (!v || v->type != YAML_SEQUENCE_NODE)
        return QS_FAIL(err, QS_ERR_INPUT, "%s:%lu: points: expected a list of mappings", path,
                       line);
    for (yaml_node_item_t *it = v->data.sequence.items.start; it < v->data.sequence.items.top;
         ++it) {
        ovlist *np = realloc(s->points, sizeof(ovlist) * (size_t)(s->npoints + 1));
        if (!np) return QS_FAIL(err, QS_ERR_RUNTIME, "out of memory");
        s->points = np;
        memset(&s->points[s->npoints], 0, sizeof(ovlist));
        s->npoints++;
        qs_status st = read_map(doc, yaml_document_get_node(doc, *it), path, "points",
                                &s->points[s->npoints - 1], err);
        if (st != QS_OK) return st;
    }
    return QS_OK;
}

/* sbatch: a list of one-line #SBATCH options. */
static qs_status parse_sbatch(yaml_document_t *doc, yaml_node_t *v, const char *path,
                              unsigned long line, sweep *s, qs_err *err) {
    if (!v || v->type != YAML_SEQUENCE_NODE)
        return QS_FAIL(err, QS_ERR_INPUT, "%s:%lu: sbatch: expected a list of options", path,
                       line);
    for (yaml_node_item_t *it = v->data.sequence.items.start; it < v->data.sequence.items.top;
         ++it) {
        yaml_node_t *e = yaml_document_get_node(doc, *it);
        if (!e || e->type != YAML_SCALAR_NODE || strchr((const char *)e->data.scalar.value, '\n'))
            return QS_FAIL(err, QS_ERR_INPUT, "%s:%lu: sbatch: options must be one-line strings",
                           path, line);
        char **nb = realloc(s->sbatch, sizeof(char *) * (size_t)(s->nsbatch + 1));
        if (!nb) return QS_FAIL(err, QS_ERR_RUNTIME, "out of memory");
        s->sbatch = nb;
        s->sbatch[s->nsbatch] = strdup((const char *)e->data.scalar.value);
        if (!s->sbatch[s->nsbatch++]) return QS_FAIL(err, QS_ERR_RUNTIME, "out of memory");
    }
    return QS_OK;
}

static qs_status sweep_parse(const char *path, sweep *s, qs_err *err) {
    qs_status st = QS_OK;
    yaml_file y;
    memset(s, 0, sizeof(*s));
    s->parallel = 4;
    QS_CHECK(yaml_file_load(&y, path, err));
    yaml_node_t *root = yaml_document_get_root_node(&y.doc);
    if (!root || root->type != YAML_MAPPING_NODE)
        QS_THROW(err, QS_ERR_INPUT, "%s: expected a mapping (base, set, grid, points, parallel)",
                 path);
    for (yaml_node_pair_t *p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top;
         ++p) {
        yaml_node_t *k = yaml_document_get_node(&y.doc, p->key);
        yaml_node_t *v = yaml_document_get_node(&y.doc, p->value);
        const char *key = k && k->type == YAML_SCALAR_NODE ? (const char *)k->data.scalar.value
                                                           : "";
        const unsigned long line = v ? (unsigned long)v->start_mark.line + 1 : 0;
        if (strcmp(key, "base") == 0) {
            QS_CHECK(parse_path_key(path, key, v, line, &s->base, err));
        } else if (strcmp(key, "out") == 0) {
            QS_CHECK(parse_path_key(path, key, v, line, &s->out, err));
        } else if (strcmp(key, "parallel") == 0) {
            const int scalar = v && v->type == YAML_SCALAR_NODE;
            char *end = NULL;
            long x = scalar ? strtol((const char *)v->data.scalar.value, &end, 10) : 0;
            if (!scalar || *end || x < 1 || x > 100000)
                QS_THROW(err, QS_ERR_INPUT, "%s:%lu: parallel: expected an integer >= 1", path,
                         line);
            s->parallel = (int)x;
        } else if (strcmp(key, "set") == 0) {
            QS_CHECK(read_map(&y.doc, v, path, "set", &s->set, err));
        } else if (strcmp(key, "grid") == 0) {
            QS_CHECK(parse_grid(&y.doc, v, path, line, s, err));
        } else if (strcmp(key, "points") == 0) {
            QS_CHECK(parse_points(&y.doc, v, path, line, s, err));
        } else if (strcmp(key, "sbatch") == 0) {
            QS_CHECK(parse_sbatch(&y.doc, v, path, line, s, err));
        } else {
            QS_THROW(err, QS_ERR_INPUT,
                     "%s: unknown key '%s' (expected base, set, grid, points, parallel, sbatch, "
                     "out)",
                     path, key);
        }
    }
    if (!s->base) QS_THROW(err, QS_ERR_INPUT, "%s: base: the base config path is required", path);
done:
    yaml_file_close(&y);
    return st;
}

/* Absolute version of a path (the directory need not exist yet). */
static char *abs_path(const char *p) {
    if (p[0] == '/') return strdup(p);
    char cwd[QS_PATH_MAX];
    if (!getcwd(cwd, sizeof(cwd))) return NULL;
    size_t n = strlen(cwd) + strlen(p) + 2;
    char *a = malloc(n);
    if (a) snprintf(a, n, "%s/%s", cwd, p);
    return a;
}

/* "key=value" (malloc'd). */
static char *join_kv(const char *k, const char *v) {
    size_t n = strlen(k) + strlen(v) + 2;
    char *s = malloc(n);
    if (s) snprintf(s, n, "%s=%s", k, v);
    return s;
}

/* CSV field with quotes when needed. */
static void csv_field(FILE *f, const char *s) {
    if (!strpbrk(s, ",\"\n")) {
        fputs(s, f);
        return;
    }
    fputc('"', f);
    for (; *s; ++s) {
        if (*s == '"') fputc('"', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

/* Finds slurm/qshard.sbatch: the given path, env QSHARD_SBATCH, or next to the binary
 * (build/qshard -> ../slurm/qshard.sbatch). */
static int find_template(const qs_sweep_opts *o, char *out, size_t n) {
    const char *e = o->template_path ? o->template_path : getenv("QSHARD_SBATCH");
    if (e && e[0]) {
        snprintf(out, n, "%s", e);
        return qs_path_exists(out);
    }
    if (!o->qshard_bin) return 0;
    char *tmp = strdup(o->qshard_bin);
    if (!tmp) return 0;
    const char *d = dirname(tmp);
    static const char *const REL[] = {"../slurm/qshard.sbatch", "../share/qshard/qshard.sbatch",
                                      "slurm/qshard.sbatch", NULL};
    int found = 0;
    for (int i = 0; REL[i] && !found; ++i) {
        snprintf(out, n, "%s/%s", d, REL[i]);
        found = qs_path_exists(out);
    }
    free(tmp);
    return found;
}

/* The output directory (absolute, malloc'd; NULL when out of memory): --out, the file's
 * out:, or the sweep file's path without .yaml / .yml (SWEEP.sweep without either). */
static char *sweep_out_dir(const qs_sweep_opts *o, const sweep *s) {
    if (o->out_dir) return abs_path(o->out_dir);
    if (s->out) return abs_path(s->out);
    char *t = malloc(strlen(o->sweep_path) + 8);
    if (!t) return NULL;
    strcpy(t, o->sweep_path);
    size_t n = strlen(t);
    if (n > 5 && strcmp(t + n - 5, ".yaml") == 0)
        t[n - 5] = 0;
    else if (n > 4 && strcmp(t + n - 4, ".yml") == 0)
        t[n - 4] = 0;
    else
        strcat(t, ".sweep"); /* no .yaml suffix: OUT = SWEEP.sweep */
    char *out = abs_path(t);
    free(t);
    return out;
}

/* Every point's overrides in order: the explicit points (or one empty point) x the grid's
 * cartesian product, first grid key slowest. *pts (*npts,) is the caller's to free. */
static qs_status points_expand(const sweep *s, const char *sweep_path, ovlist **pts,
                               int *npts, qs_err *err) {
    int64_t ncomb = 1;
    for (int g = 0; g < s->ngrid; ++g) ncomb *= s->gval[g].n;
    const int nbase = s->npoints > 0 ? s->npoints : 1;
    if (ncomb * nbase > MAX_POINTS)
        return QS_FAIL(err, QS_ERR_INPUT, "%s: %lld points (more than %d)", sweep_path,
                       (long long)(ncomb * nbase), MAX_POINTS);
    *npts = (int)(ncomb * nbase);
    *pts = calloc((size_t)*npts, sizeof(ovlist));
    if (!*pts) return QS_FAIL(err, QS_ERR_RUNTIME, "out of memory");
    for (int p = 0, i = 0; p < nbase; ++p)
        for (int64_t c = 0; c < ncomb; ++c, ++i) {
            ovlist *pt = &(*pts)[i];
            qs_status st = QS_OK;
            if (s->npoints > 0)
                for (int k = 0; k < s->points[p].n && st == QS_OK; ++k)
                    st = ovlist_push(pt, s->points[p].v[k].key, strdup(s->points[p].v[k].val),
                                     sweep_path, err);
            int64_t div = ncomb; /* first grid key slowest */
            for (int g = 0; g < s->ngrid && st == QS_OK; ++g) {
                div /= s->gval[g].n;
                const int j = (int)((c / div) % s->gval[g].n);
                st = ovlist_push(pt, s->gkey[g], strdup(s->gval[g].v[j].val), sweep_path, err);
            }
            if (st != QS_OK) return st;
        }
    return QS_OK;
}

/* Point i's config through the config loader: the base with the sweep's set, the point's
 * overrides and its run_dir OUT/runs/NNN. sets has room for all of them. An invalid point
 * is QS_ERR_INPUT naming the sweep file and the point. */
static qs_status point_config(const sweep *s, const ovlist *pt, int i, const char *out,
                              const char *sweep_path, const char **sets, qs_config *cfg,
                              qs_err *err) {
    int ns = 0;
    char rd[QS_PATH_MAX + 16];
    char **owned = calloc((size_t)(s->set.n + pt->n + 1), sizeof(char *));
    int nowned = 0;
    if (!owned) return QS_FAIL(err, QS_ERR_RUNTIME, "out of memory");
    for (int k = 0; k < s->set.n + pt->n; ++k) {
        const ov *x = k < s->set.n ? &s->set.v[k] : &pt->v[k - s->set.n];
        owned[nowned] = join_kv(x->key, x->val);
        if (!owned[nowned]) break;
        sets[ns++] = owned[nowned++];
    }
    qs_status st = QS_OK;
    qs_err e = {0};
    if (nowned < s->set.n + pt->n) {
        st = QS_FAIL(err, QS_ERR_RUNTIME, "out of memory");
    } else {
        snprintf(rd, sizeof(rd), "run_dir=%s/runs/%03d", out, i);
        sets[ns++] = rd;
        st = qs_config_load(cfg, s->base, sets, ns, &e);
        if (st != QS_OK)
            st = QS_FAIL(err, st == QS_ERR_RUNTIME ? QS_ERR_RUNTIME : QS_ERR_INPUT,
                         "%s: point %d: %s", sweep_path, i, e.msg);
    }
    for (int k = 0; k < nowned; ++k) free(owned[k]);
    free(owned);
    return st;
}

/* OUT/points/NNN.yaml: point i's resolved config. */
static qs_status point_write(const qs_config *cfg, int i, const char *out, const sweep *s,
                             const char *sweep_path, qs_err *err) {
    char path[QS_PATH_MAX];
    qs_atomic a;
    snprintf(path, sizeof(path), "%s/points/%03d.yaml", out, i);
    qs_status st = qs_atomic_open(&a, path, err);
    if (st != QS_OK) return st;
    fprintf(a.f, "# point %03d of sweep %s (base %s)\n", i, sweep_path, s->base);
    st = qs_config_dump(cfg, a.f, 1, err);
    if (st != QS_OK) {
        qs_atomic_abandon(&a);
        return st;
    }
    return qs_atomic_commit(&a, err);
}

/* OUT/points.csv: point, run_dir, one column per distinct swept key (first-seen order). */
static qs_status points_csv_write(const ovlist *pts, int npts, const char *out, qs_err *err) {
    char keys[MAX_KEYS * 2][128], path[QS_PATH_MAX];
    int nk = 0;
    for (int i = 0; i < npts; ++i)
        for (int k = 0; k < pts[i].n; ++k) {
            int seen = 0;
            for (int j = 0; j < nk && !seen; ++j) seen = strcmp(keys[j], pts[i].v[k].key) == 0;
            if (!seen && nk < MAX_KEYS * 2) snprintf(keys[nk++], 128, "%s", pts[i].v[k].key);
        }
    qs_atomic a;
    snprintf(path, sizeof(path), "%s/points.csv", out);
    qs_status st = qs_atomic_open(&a, path, err);
    if (st != QS_OK) return st;
    FILE *f = a.f;
    fputs("point,run_dir", f);
    for (int j = 0; j < nk; ++j) {
        fputc(',', f);
        csv_field(f, keys[j]);
    }
    fputc('\n', f);
    for (int i = 0; i < npts; ++i) {
        fprintf(f, "%d,%s/runs/%03d", i, out, i);
        for (int j = 0; j < nk; ++j) {
            const char *v = "";
            for (int k = 0; k < pts[i].n; ++k)
                if (strcmp(pts[i].v[k].key, keys[j]) == 0) v = pts[i].v[k].val;
            fputc(',', f);
            csv_field(f, v);
        }
        fputc('\n', f);
    }
    return qs_atomic_commit(&a, err);
}

/* OUT/qshard.sbatch (a copy of the template) and OUT/sweep.sbatch, the job array whose task
 * i runs point i through it. */
static qs_status array_script_write(const qs_sweep_opts *o, const sweep *s, const char *tmpl,
                                    const char *out, int npts, qs_err *err) {
    qs_status st = QS_OK;
    char path[QS_PATH_MAX], *text = NULL;
    size_t tn = 0;
    qs_atomic a;
    QS_CHECK(qs_read_file(tmpl, &text, &tn, err));
    snprintf(path, sizeof(path), "%s/qshard.sbatch", out);
    QS_CHECK(qs_write_file_atomic(path, text, tn, err));
    chmod(path, 0755);
    snprintf(path, sizeof(path), "%s/sweep.sbatch", out);
    QS_CHECK(qs_atomic_open(&a, path, err));
    fprintf(a.f,
            "#!/bin/bash\n"
            "# sweep.sbatch: written by `qshard sweep %s`: a job array, task i runs point i\n"
            "# (points/NNN.yaml, run directory runs/NNN) through qshard.sbatch next to this\n"
            "# file (a copy of slurm/qshard.sbatch: launcher, USR1 stop, requeue of the task,\n"
            "# --resume on restart). Submit with the per-task size, e.g.\n"
            "#   sbatch -n 2 %s/sweep.sbatch\n"
            "# then `qshard collect %s` for the table. QSHARD overrides the binary.\n"
            "#SBATCH --job-name=qshard-sweep\n"
            "#SBATCH --array=0-%d%%%d\n"
            "#SBATCH --signal=B:USR1@120\n"
            "#SBATCH --requeue\n"
            "#SBATCH --open-mode=append\n"
            "#SBATCH --output=%s/logs/point-%%a.out\n",
            o->sweep_path, out, out, npts - 1, s->parallel, out);
    for (int i = 0; i < s->nsbatch; ++i) fprintf(a.f, "#SBATCH %s\n", s->sbatch[i]);
    fprintf(a.f,
            "set -u\n"
            "SWEEP_DIR='%s'\n"
            "POINT=$(printf '%%03d' \"${SLURM_ARRAY_TASK_ID:?not a job-array task}\")\n"
            "export QSHARD=\"${QSHARD:-%s}\"\n"
            "# exec: the batch shell that gets Slurm's USR1 is qshard.sbatch's own\n"
            "exec bash \"$SWEEP_DIR/qshard.sbatch\" \"$SWEEP_DIR/points/$POINT.yaml\" \"$@\"\n",
            out, o->qshard_bin ? o->qshard_bin : "qshard");
    QS_CHECK(qs_atomic_commit(&a, err));
    chmod(path, 0755);
done:
    free(text);
    return st;
}

qs_status qs_sweep_write(const qs_sweep_opts *o, qs_err *err) {
    qs_status st = QS_OK;
    sweep s;
    qs_config cfg;
    char *out = NULL;
    const char **sets = NULL;
    ovlist *pts = NULL; /* (npts) every point's overrides (set, point, grid) in order */
    int npts = 0;
    char path[QS_PATH_MAX], tmpl[QS_PATH_MAX];
    memset(&cfg, 0, sizeof(cfg));
    QS_CHECK(sweep_parse(o->sweep_path, &s, err));
    out = sweep_out_dir(o, &s);
    if (!out) QS_THROW(err, QS_ERR_RUNTIME, "out of memory");
    if (!find_template(o, tmpl, sizeof(tmpl)))
        QS_THROW(err, QS_ERR_INPUT,
                 "%s: slurm/qshard.sbatch not found next to %s; set QSHARD_SBATCH to its path",
                 o->sweep_path, o->qshard_bin ? o->qshard_bin : "qshard");
    QS_CHECK(points_expand(&s, o->sweep_path, &pts, &npts, err));

    /* each point through the config loader (pass 0: all valid before anything is written),
     * then dumped resolved (pass 1) */
    int maxsets = 0;
    for (int i = 0; i < npts; ++i) maxsets = pts[i].n > maxsets ? pts[i].n : maxsets;
    maxsets += s.set.n + 2;
    sets = calloc((size_t)maxsets, sizeof(char *));
    if (!sets) QS_THROW(err, QS_ERR_RUNTIME, "out of memory");
    for (int i = 0; i < npts; ++i) {
        QS_CHECK(point_config(&s, &pts[i], i, out, o->sweep_path, sets, &cfg, err));
        qs_config_free(&cfg);
    }
    static const char *const SUB[] = {"points", "runs", "logs"};
    for (int k = 0; k < 3; ++k) {
        snprintf(path, sizeof(path), "%s/%s", out, SUB[k]);
        QS_CHECK(qs_mkdir_p(path, err));
    }
    for (int i = 0; i < npts; ++i) {
        QS_CHECK(point_config(&s, &pts[i], i, out, o->sweep_path, sets, &cfg, err));
        QS_CHECK(point_write(&cfg, i, out, &s, o->sweep_path, err));
        qs_config_free(&cfg);
    }
    QS_CHECK(points_csv_write(pts, npts, out, err));
    QS_CHECK(array_script_write(o, &s, tmpl, out, npts, err));
    printf("sweep: %d point(s) in %s\n  points/NNN.yaml, points.csv, sweep.sbatch (--array=0-%d%%%d)\n"
           "  submit: sbatch -n RANKS %s/sweep.sbatch\n  then:   qshard collect %s\n",
           npts, out, npts - 1, s.parallel, out, out);
done:
    if (pts)
        for (int i = 0; i < npts; ++i) ovlist_free(&pts[i]);
    free(pts);
    free(sets);
    free(out);
    qs_config_free(&cfg);
    sweep_free(&s);
    return st;
}

/* ---- collect -------------------------------------------------------------------------- */

static void fmt_num(char *b, size_t n, double v, const char *fmt) {
    if (v < 0)
        snprintf(b, n, "%s", "");
    else
        snprintf(b, n, fmt, v);
}

qs_status qs_sweep_collect(const char *out_dir, qs_err *err) {
    qs_status st = QS_OK;
    char path[QS_PATH_MAX];
    char *text = NULL, *csvbuf = NULL, *mdbuf = NULL;
    size_t csvlen = 0, mdlen = 0;
    FILE *fc = NULL, *fm = NULL;
    snprintf(path, sizeof(path), "%s/points.csv", out_dir);
    if (!qs_path_exists(path))
        QS_THROW(err, QS_ERR_INPUT, "%s: missing; run qshard sweep first", path);
    QS_CHECK(qs_read_file(path, &text, NULL, err));
    fc = open_memstream(&csvbuf, &csvlen);
    fm = open_memstream(&mdbuf, &mdlen);
    if (!fc || !fm) QS_THROW(err, QS_ERR_RUNTIME, "out of memory");
    fputs("point,overrides,size_bytes,bpw,ppl,ppl_float,time_s,status\n", fc);
    fputs("| point | overrides | size bytes | bpw | perplexity | float ppl | time s | status |\n"
          "|---:|---|---:|---:|---:|---:|---:|---|\n", fm);
    char *save = NULL, *line = strtok_r(text, "\n", &save);
    /* header: point,run_dir,key... */
    char *hdr[MAX_KEYS * 2 + 2];
    int nh = 0;
    if (line) {
        char *s2 = NULL;
        for (char *t = strtok_r(line, ",", &s2); t && nh < MAX_KEYS * 2 + 2;
             t = strtok_r(NULL, ",", &s2))
            hdr[nh++] = t;
    }
    int ndone = 0, nall = 0;
    for (line = strtok_r(NULL, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        /* fields with CSV quotes */
        char *fld[MAX_KEYS * 2 + 2];
        const int nf = qs_csv_split(line, fld, MAX_KEYS * 2 + 2);
        if (nf < 2) continue;
        char ovs[2048] = "";
        size_t on = 0;
        for (int k = 2; k < nf && k < nh; ++k) {
            if (!fld[k][0]) continue;
            on += (size_t)snprintf(ovs + on, on < sizeof(ovs) ? sizeof(ovs) - on : 0, "%s%s=%s",
                                   on ? " " : "", hdr[k], fld[k]);
            if (on >= sizeof(ovs)) on = sizeof(ovs) - 1;
        }
        qs_run_summary rs;
        qs_run_summary_read(fld[1], &rs);
        char sz[32], bpw[32], ppl[32], pplf[32], tm[32];
        fmt_num(sz, sizeof(sz), rs.size_bytes, "%.0f");
        fmt_num(bpw, sizeof(bpw), rs.bpw, "%.4f");
        fmt_num(ppl, sizeof(ppl), rs.ppl, "%.6f");
        fmt_num(pplf, sizeof(pplf), rs.ppl_float, "%.6f");
        fmt_num(tm, sizeof(tm), rs.time_s, "%.2f");
        fprintf(fc, "%s,", fld[0]);
        csv_field(fc, ovs);
        fprintf(fc, ",%s,%s,%s,%s,%s,%s\n", sz, bpw, ppl, pplf, tm, rs.status);
        fprintf(fm, "| %s | %s | %s | %s | %s | %s | %s | %s |\n", fld[0], ovs, sz, bpw, ppl, pplf,
                tm, rs.status);
        ++nall;
        ndone += strcmp(rs.status, "done") == 0;
    }
    fprintf(fm, "\n%d of %d point(s) done.\n", ndone, nall);
    fclose(fc);
    fc = NULL;
    fclose(fm);
    fm = NULL;
    snprintf(path, sizeof(path), "%s/results.csv", out_dir);
    QS_CHECK(qs_write_file_atomic(path, csvbuf, csvlen, err));
    snprintf(path, sizeof(path), "%s/results.md", out_dir);
    QS_CHECK(qs_write_file_atomic(path, mdbuf, mdlen, err));
    fwrite(mdbuf, 1, mdlen, stdout);
done:
    if (fc) fclose(fc);
    if (fm) fclose(fm);
    free(csvbuf);
    free(mdbuf);
    free(text);
    return st;
}
