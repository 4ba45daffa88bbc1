/* driver.c: the pipeline driver: config + model on every rank (agreed), run directory
 * checks, stages in order with skip-if-done, signal stops (exit 3), per-stage timings. */
#include "driver.h"

#include <float.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "candidates.h"
#include "config.h"
#include "hf_model.h"
#include "log.h"
#include "report.h"
#include "rundir.h"
#include "sha256.h"
#include "summary.h"
#include "common.h"
#include "stage.h"

/* The one process-wide variable: set only by the signal handler, read at unit
 * boundaries (combined over ranks with qs_comm_any). */
static volatile sig_atomic_t g_stop_signal = 0;
static volatile int g_stop_view = 0;

static void on_signal(int sig) {
    g_stop_signal = sig;
    g_stop_view = 1;
}

void qs_driver_install_signals(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGUSR1, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
}

const volatile int *qs_driver_stop_flag(void) { return &g_stop_view; }

/* Fingerprint of the model: config.json bytes, and per shard its name, size and header
 * (the header holds every tensor's name, dtype, shape and offsets). Hashing all weights
 * of a 400 GB model at every resume would cost more than it protects. */
static qs_status model_fingerprint(const qs_model *m, const char *dir, char hex[65],
                                   qs_err *err) {
    qs_status st = QS_OK;
    char path[QS_PATH_MAX];
    char *cfgtext = NULL;
    size_t n = 0;
    qs_sha256 s;
    qs_sha256_init(&s);
    snprintf(path, sizeof(path), "%s/config.json", dir);
    QS_CHECK(qs_read_file(path, &cfgtext, &n, err));
    qs_sha256_update(&s, cfgtext, n);
    for (int i = 0; i < m->ckpt.nshards; ++i) {
        const qs_st_file *f = &m->ckpt.shards[i];
        const char *base = strrchr(f->path, '/');
        base = base ? base + 1 : f->path;
        qs_sha256_update(&s, base, strlen(base) + 1);
        uint64_t hlen = 0;
        for (int b = 0; b < 8; ++b) hlen |= (uint64_t)f->map[b] << (8 * b);
        qs_sha256_update(&s, &f->size, sizeof(f->size));
        qs_sha256_update(&s, f->map, (size_t)(8 + hlen));
    }
    qs_sha256_final_hex(&s, hex);
done:
    free(cfgtext);
    return st;
}

/* The config hash: the resolved config without the runtime keys and without the `model` and
 * `run_dir` paths, so that a run directory moved or copied elsewhere (or a model moved)
 * resumes; the model itself is identified by its fingerprint (model_fingerprint). */
static qs_status config_hash(const qs_config *cfg, char hex[65], qs_err *err) {
    qs_status st = QS_OK;
    char *buf = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&buf, &len);
    if (!mem) return QS_FAIL(err, QS_ERR_RUNTIME, "out of memory (config hash)");
    qs_config place_free = *cfg; /* shallow: only the two path pointers differ */
    place_free.model = (char *)"";
    place_free.run_dir = (char *)"";
    st = qs_config_dump(&place_free, mem, 0, err);
    fclose(mem);
    if (st == QS_OK) qs_sha256_hex(buf, len, hex);
    free(buf);
    return st;
}

/* Rank 0: run/stopped.json, the marker that a run stopped durably on a signal (exit 3):
 * launchers may report the ranks' exit differently (Open MPI's mpiexec returns 1 after a
 * SIGTERM), so the sbatch template and scripts read the marker. Removed when a run starts. */
static void write_stop_marker(const qs_rundir *rd, const char *extra, const char *stage) {
    char path[QS_PATH_MAX], text[256];
    qs_err e = {0};
    int n = snprintf(text, sizeof(text),
                     "{\n  \"stopped\": true,\n  \"signal\": %d,\n  \"stage\": \"%s\"\n}\n",
                     (int)g_stop_signal, stage ? stage : "");
    if (qs_rundir_path(rd, QS_REL_STOPPED, path, sizeof(path), &e) == QS_OK)
        qs_write_file_atomic(path, text, (size_t)n, &e);
    if (extra && extra[0]) qs_write_file_atomic(extra, text, (size_t)n, &e);
}

/* Rank 0: checks/creates the run directory and records run.json + config.resolved.yaml.
 * A directory holding another config's run is refused; an existing run needs --resume. */
static qs_status prepare_rundir(const qs_run_opts *opts, const qs_config *cfg,
                                const qs_rundir *rd, const char *chash, const char *mhash,
                                qs_err *err) {
    qs_status st = QS_OK;
    char path[QS_PATH_MAX], *old = NULL, *buf = NULL;
    size_t len = 0;
    FILE *mem = NULL;
    QS_CHECK(qs_rundir_path(rd, "run.json", path, sizeof(path), err));
    if (qs_path_exists(path)) {
        QS_CHECK(qs_read_file(path, &old, NULL, err));
        if (!strstr(old, chash))
            QS_THROW(err, QS_ERR_INPUT,
                     "%s: run directory holds a run of a different config; use a new "
                     "run_dir or remove it",
                     rd->root);
        if (!strstr(old, mhash))
            QS_THROW(err, QS_ERR_INPUT,
                     "%s: run directory holds a run of a different model; use a new "
                     "run_dir or remove it",
                     rd->root);
        if (!opts->resume)
            QS_THROW(err, QS_ERR_INPUT,
                     "%s: run directory already holds this run; pass --resume to continue "
                     "it",
                     rd->root);
        QS_CHECK(qs_rundir_remove_temps(rd, NULL, err)); /* of a process killed mid-write */
    }
    {
        char marker[QS_PATH_MAX];
        QS_CHECK(qs_rundir_path(rd, QS_REL_STOPPED, marker, sizeof(marker), err));
        if (qs_path_exists(marker) && unlink(marker) != 0)
            QS_THROW(err, QS_ERR_RUNTIME, "%s: cannot remove the stop marker", marker);
    }
    QS_CHECK(qs_mkdir_p(rd->root, err));
    {
        char text[256];
        int k = snprintf(text, sizeof(text),
                         "{\n  \"config_hash\": \"%s\",\n  \"model_hash\": \"%s\"\n}\n", chash,
                         mhash);
        QS_CHECK(qs_write_file_atomic(path, text, (size_t)k, err));
    }
    mem = open_memstream(&buf, &len);
    if (!mem) QS_THROW(err, QS_ERR_RUNTIME, "out of memory (resolved config)");
    st = qs_config_dump(cfg, mem, 1, err);
    fclose(mem);
    mem = NULL;
    if (st != QS_OK) goto done;
    QS_CHECK(qs_rundir_path(rd, "config.resolved.yaml", path, sizeof(path), err));
    QS_CHECK(qs_write_file_atomic(path, buf, len, err));
done:
    free(old);
    free(buf);
    return st;
}

/* The key of a stage's unit records: its folder, the config hash and its inputs. */
static void unit_key(const qs_manifest *want, char hex[65]) {
    qs_sha256 s;
    qs_sha256_init(&s);
    qs_sha256_update(&s, want->stage, strlen(want->stage) + 1);
    qs_sha256_update(&s, want->config_hash, strlen(want->config_hash) + 1);
    for (int i = 0; i < want->ninputs; ++i) {
        qs_sha256_update(&s, want->inputs[i].name, strlen(want->inputs[i].name) + 1);
        qs_sha256_update(&s, want->inputs[i].hash, strlen(want->inputs[i].hash) + 1);
    }
    qs_sha256_final_hex(&s, hex);
}

/* Rank 0: 1 when the stage's manifest matches its inputs and every output still has its
 * checksum. An unreadable or malformed old manifest only means: do the stage again. */
static int manifest_matches(const qs_stage_ctx *ctx, const qs_manifest *want) {
    qs_manifest have;
    qs_err e = {0};
    int found = 0, matches = 0;
    if (qs_manifest_read(&have, ctx->rd, want->stage, &found, &e) != QS_OK) {
        qs_log_info(ctx->log, "%s: %s; redoing the stage", want->stage, e.msg);
        return 0;
    }
    if (found && qs_manifest_check(&have, want, ctx->rd, &matches, &e) != QS_OK) matches = 0;
    qs_manifest_free(&have);
    return matches;
}

/* Rank 0: which units must be done. A unit is reused only when its record carries this
 * run's key and every file it lists still has its recorded checksum; the log says which
 * units are redone and why. */
static void verify_units(const qs_stage_ctx *ctx, const qs_stage *sg, qs_stage_units *u) {
    int reused = 0, redo = 0;
    for (int i = 0; i < u->n; ++i) {
        char why[QS_PATH_MAX + 64];
        qs_err e = {0};
        int ok = 0;
        if (qs_unit_record_verify(ctx->rd, sg->dir, u->name[i], ctx->unit_key, &ok, why,
                                  sizeof(why), &e) != QS_OK) {
            ok = 0;
            snprintf(why, sizeof(why), "%s", e.msg);
        }
        u->todo[i] = !ok;
        if (ok) {
            ++reused;
        } else if (strcmp(why, "no record") != 0) {
            ++redo;
            qs_log_info(ctx->log, "%s: redoing %s: %s", sg->name, u->name[i], why);
        }
    }
    if (reused)
        qs_log_info(ctx->log, "%s: %d of %d unit(s) verified and reused%s", sg->name, reused,
                    u->n, redo ? "" : " (the rest had not finished)");
}

/* Rank 0: the manifest of a finished stage: its inputs and every unit's recorded files. */
static qs_status write_manifest(const qs_stage_ctx *ctx, qs_manifest *want,
                                const qs_stage_units *u, qs_err *err) {
    qs_status st = QS_OK;
    for (int i = 0; i < u->n; ++i)
        QS_CHECK(qs_unit_record_outputs(ctx->rd, want->stage, u->name[i], want, err));
    QS_CHECK(qs_rundir_mkdir(ctx->rd, want->stage, err));
    QS_CHECK(qs_manifest_write(want, ctx->rd, err));
done:
    return st;
}

/* One stage: open (inputs, units), skip when its manifest matches, verify the units a
 * resumed stage would reuse, run, then the manifest last. Collective. */
static qs_status run_stage(const qs_stage_ctx *base, const qs_stage *sg, qs_err *err) {
    qs_status st = QS_OK;
    const qs_comm *comm = base->comm;
    qs_stage_ctx ctx = *base;
    qs_stage_open o;
    qs_stage_units units;
    void *state = NULL;
    int skip = 0;
    memset(&o, 0, sizeof(o));
    memset(&units, 0, sizeof(units));
    qs_manifest_init(&o.inputs, sg->dir, base->config_hash);
    ctx.dir = sg->dir;

    st = sg->open(&ctx, sg->pass, &state, &o, err);
    st = qs_comm_agree(comm, st, err);
    if (st != QS_OK) goto done;
    if (o.nothing_to_do) {
        qs_log_info(ctx.log, "%s: %s", sg->name, o.why);
        goto done;
    }
    units.n = o.nunits;
    units.name = o.unit_name;
    units.todo = qs_calloc((size_t)(o.nunits > 0 ? o.nunits : 1), 1, err, "unit flags");
    if (!units.todo) qs_comm_abort(comm, err); /* every rank allocates the same */
    unit_key(&o.inputs, ctx.unit_key);
    ctx.units = &units;
    if (comm->rank == 0) {
        skip = manifest_matches(&ctx, &o.inputs);
        if (!skip) {
            verify_units(&ctx, sg, &units);
            st = qs_rundir_mkdir(ctx.rd, sg->dir, err);
        }
    }
    st = qs_comm_agree(comm, st, err);
    if (st != QS_OK) goto done;
    qs_comm_bcast(comm, &skip, sizeof(skip), 0);
    if (skip) {
        qs_log_info(ctx.log, "%s: up to date, skipped", sg->name);
        goto done;
    }
    if (units.n > 0) qs_comm_bcast(comm, units.todo, (size_t)units.n, 0);
    qs_stage_test_hold(&ctx, "start"); /* a no-op unless a fault test asks (common.h) */
    st = sg->run(&ctx, state, err);
    if (st != QS_OK) goto done;
    if (comm->rank == 0) st = write_manifest(&ctx, &o.inputs, &units, err);
    st = qs_comm_agree(comm, st, err);
done:
    if (sg->close) sg->close(state);
    free(units.todo);
    free(o.unit_name);
    qs_manifest_free(&o.inputs);
    return st;
}

qs_status qs_driver_threads_make(const qs_config *cfg, qs_driver_threads *t, qs_err *err) {
    memset(t, 0, sizeof(*t));
    qs_status st = qs_config_threads(cfg->threads, getenv("SLURM_CPUS_PER_TASK"),
                                     getenv("OMP_NUM_THREADS"), &t->requested, &t->from, err);
    t->cpus = qs_pool_cpus_allowed();
    t->online = qs_pool_cpus_online();
    t->used = st == QS_OK ? qs_pool_fit(t->requested, t->cpus, t->online) : 1;
    if (st == QS_OK && t->used > 1) st = qs_pool_create(t->used, &t->pool, err);
    return st;
}

void qs_driver_threads_log(const qs_comm *comm, const qs_log *lg, const qs_driver_threads *t) {
    /* { any rank capped, -(fewest threads used), -(fewest CPUs) }, the last two over the
     * capped ranks only (an uncapped rank gives -DBL_MAX, which the maximum ignores) */
    const int capped = t->used < t->requested;
    double v[3] = {capped ? 1.0 : 0.0, capped ? -(double)t->used : -DBL_MAX,
                   capped ? -(double)(t->cpus > 0 ? t->cpus : t->requested) : -DBL_MAX};
    qs_comm_max_double(comm, v, 3);
    qs_log_info(lg, "threads: %d per rank (from %s)", t->requested, t->from);
    if (v[0] > 0.0)
        qs_log_info(lg,
                    "threads: a rank may run on only %d CPU(s) (its affinity mask, set by the "
                    "launcher), so it runs %d thread(s), not %d: Open MPI binds each rank to one "
                    "core when it starts 2 or fewer; launch with 'mpiexec --bind-to none' or "
                    "'--map-by slot:PE=%d' (srun: --cpus-per-task=%d)",
                    (int)-v[2], (int)-v[1], t->requested, t->requested, t->requested);
}

qs_status qs_driver_run(const qs_run_opts *opts, qs_comm *comm, qs_err *err) {
    qs_status st = QS_OK;
    qs_config cfg;
    qs_model model;
    qs_rundir rd;
    qs_log lg;
    qs_stage_ctx ctx;
    qs_rundir_lock lock = {-1};
    qs_driver_threads thr = {1, 1, "default", 0, 0, NULL};
    const char *where = ""; /* the stage a stop happened in or before */
    memset(&cfg, 0, sizeof(cfg));
    memset(&model, 0, sizeof(model));
    memset(&rd, 0, sizeof(rd));
    memset(&ctx, 0, sizeof(ctx));
    qs_log_init(&lg, comm->rank, opts->verbose, opts->quiet);
    double t_start = qs_log_now(), busy = 0.0;
    qs_stage_skip skipped;
    qs_progress progress;
    qs_timings tm;
    int timed = 0; /* run directory prepared: timings.json is written on the way out */
    qs_timings_init(&tm, opts->resume);

    /* 1. config and model on every rank; agree before anything blocks */
    st = qs_config_load(&cfg, opts->config_path, opts->sets, opts->nset, err);
    if (st == QS_OK) st = qs_model_open(&model, cfg.model, err);
    if (st == QS_OK) st = qs_cands_check_model(&model.hf, &cfg, err);
    if (st == QS_OK) st = qs_cands_check_budget(&model, &cfg, err);
    if (st == QS_OK) st = qs_rundir_init(&rd, cfg.run_dir, err);
    if (st == QS_OK) st = config_hash(&cfg, ctx.config_hash, err);
    if (st == QS_OK) st = model_fingerprint(&model, cfg.model, ctx.model_hash, err);
    if (st == QS_OK) st = qs_driver_threads_make(&cfg, &thr, err);
    st = qs_comm_agree(comm, st, err);
    if (st != QS_OK) goto done;
    qs_log_info(&lg, "qshard %s: %d rank(s), model %s (%s, %lld layers), run %s", QS_VERSION,
                comm->size, cfg.model, model.hf.architecture,
                (long long)model.hf.num_hidden_layers, cfg.run_dir);
    qs_driver_threads_log(comm, &lg, &thr);
    ctx.cfg = &cfg;
    ctx.comm = comm;
    ctx.rd = &rd;
    ctx.model = &model;
    ctx.log = &lg;
    ctx.stop = qs_driver_stop_flag();
    ctx.progress = &progress;
    ctx.busy = &busy;
    ctx.skipped = &skipped;
    ctx.pool = thr.pool;

    /* 2. every input from outside the run directory, before anything is written */
    char warning[QS_TIMINGS_WARN_MAX];
    st = qs_stages_check_inputs(&ctx, warning, sizeof(warning), err);
    if (st == QS_OK && warning[0]) qs_timings_warn(&tm, warning);
    st = qs_comm_agree(comm, st, err);
    if (st != QS_OK) goto done;

    /* 3. run directory (rank 0: locked for the whole run), agreed */
    if (comm->rank == 0) st = qs_rundir_lock_take(&rd, &lock, err);
    if (st == QS_OK && comm->rank == 0)
        st = prepare_rundir(opts, &cfg, &rd, ctx.config_hash, ctx.model_hash, err);
    st = qs_comm_agree(comm, st, err);
    if (st != QS_OK) goto done;
    timed = 1;

    /* 4. the stages in the driver's order */
    static const qs_stage *const stages[] = {
        &qs_stage_plan,   &qs_stage_calibrate,          &qs_stage_reconstruct, &qs_stage_search,
        &qs_stage_reconstruct_final, &qs_stage_write, &qs_stage_eval,
    };
    const qs_token_source esrc = qs_config_eval_source(&cfg);
    const int have_eval = qs_token_source_given(&esrc);
    for (size_t i = 0; i < sizeof(stages) / sizeof(stages[0]); ++i) {
        const qs_stage *sg = stages[i];
        if (sg->needs_eval && !have_eval) continue;
        where = sg->name;
        if (qs_comm_any(comm, *ctx.stop)) {
            qs_log_info(&lg, "stopped by a signal before %s; completed work is durable",
                        sg->name);
            st = QS_STOPPED;
            goto done;
        }
        double t0 = qs_log_now(), c0 = qs_log_cpu_now();
        qs_log_info(&lg, "%s: start", sg->name);
        qs_progress_start(&progress, &lg, sg->name);
        busy = 0.0;
        memset(&skipped, 0, sizeof(skipped));
        st = run_stage(&ctx, sg, err);
        qs_timings_add(&tm, sg->name, st, qs_log_now() - t0, busy, qs_log_cpu_now() - c0);
        qs_timings_threads(&tm, thr.used);
        qs_timings_skip(&tm, skipped.what, skipped.count, skipped.of, skipped.why);
        if (st != QS_OK) goto done;
        qs_log_info(&lg, "%s: done in %.2f s", sg->name, qs_log_now() - t0);
    }
    qs_log_info(&lg, "pipeline: complete%s", have_eval ? " (written model evaluated)" : "");
    if (comm->rank == 0 && !opts->quiet) qs_summary_print(stdout, &rd, &model);
    qs_log_info(&lg, "total %.2f s, peak RSS rank %d: %.1f MiB", qs_log_now() - t_start,
                comm->rank, (double)qs_log_peak_rss() / (1024.0 * 1024.0));
done:
    if (st == QS_ERR_INTERNAL) qs_comm_abort(comm, err);
    if (timed && st == QS_STOPPED && comm->rank == 0) write_stop_marker(&rd, opts->stop_marker, where);
    if (timed) { /* statuses here are agreed: the gather is safe */
        qs_err e2 = {0};
        qs_status s2 = qs_timings_write(&tm, st, comm, &rd, &e2);
        if (s2 == QS_OK && (st == QS_OK || st == QS_STOPPED) && comm->rank == 0)
            s2 = qs_report_write(rd.root, &e2); /* also of a stopped run: what is done so far */
        s2 = qs_comm_agree(comm, s2, &e2);
        if (s2 != QS_OK && st == QS_OK) {
            st = s2;
            *err = e2;
        }
        if (s2 == QS_OK && st == QS_OK) qs_log_info(&lg, "report: %s/report.md", rd.root);
    }
    qs_rundir_lock_release(&lock);
    qs_pool_free(thr.pool);
    qs_model_close(&model);
    qs_rundir_free(&rd);
    qs_config_free(&cfg);
    return st;
}
