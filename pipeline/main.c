/* main.c: `qshard <command>`: parses argv and calls one function per command.
 *
 * Exit codes (README.md): 0 ok, 1 runtime failure, 2 bad input or usage,
 * 3 stopped by a signal with everything completed durable (requeue and --resume).
 * Errors are one line on stderr: "qshard: error: <file or key>: <cause>".
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "candidates.h"
#include "config.h"
#include "ct_export.h"
#include "driver.h"
#include "evaluator.h"
#include "hf_model.h"
#include "synth.h"
#include "comm.h"
#include "corpus.h"
#include "h5store.h"
#include "layer_plan.h"
#include "report.h"
#include "sweep.h"
#include "verify.h"
#include "status.h"
#include "text_tokens.h"
#include "tokenizer.h"

static const char *const USAGE =
    "usage: qshard <command> [options]\n"
    "\n"
    "commands:\n"
    "  run CONFIG.yaml [--set key.path=value]... [--resume] [--stop-marker FILE] [--verbose]\n"
    "      [--quiet]        run the pipeline (under mpirun/srun: one process per rank)\n"
    "  plan CONFIG.yaml --ranks N [--set key.path=value]... [--json]\n"
    "                       print the layer plan and memory per rank without running\n"
    "  inspect MODEL_DIR [--json]\n"
    "                       architecture, dimensions, parameters and tensors of a checkpoint\n"
    "  eval CONFIG.yaml [--weights SOURCE] [--set key.path=value]...\n"
    "                       perplexity on eval.tokens (under mpirun: layers split over ranks)\n"
"  sweep SWEEP.yaml [--out DIR]\n"
    "                       one resolved config per point + a Slurm job-array script\n"
    "  collect DIR          table (CSV + markdown) of a sweep's finished points\n"
    "  report RUN_DIR       (re)write RUN_DIR/report.md and its SVG plots from the run's files\n"
    "  verify RUN_DIR|EXPORT_DIR\n"
    "                       check a run's written shards and export (manifest, checksums, shapes)\n"
    "  tokenize --tokenizer MODEL_DIR|tokenizer.json IN... OUT.u32\n"
    "                       text (.txt, .jsonl, directories) to a token file with the model's\n"
    "                       tokenizer (under mpirun: documents split over ranks)\n"
    "  convert --to compressed-tensors GPTQ_DIR OUT_DIR [--shard-bytes N] [--overwrite]\n"
    "                       rewrite a qshard GPTQ export as a compressed-tensors one (same codes)\n"
    "  synth-model --arch llama|mistral|qwen2 --layers N --hidden H [...] OUT_DIR\n"
    "                       write a deterministic synthetic model in Hugging Face layout\n"
    "\n"
    "  qshard <command> --help    help for one command\n"
    "  qshard --version\n"
    "\n"
    "exit codes: 0 ok, 1 runtime failure, 2 bad input or usage, 3 stopped by a signal\n"
    "(everything completed is durable: rerun with --resume)\n";

static const char *const USAGE_RUN =
    "usage: qshard run CONFIG.yaml [--set key.path=value]... [--resume] [--stop-marker FILE]\n"
    "         [--verbose] [--quiet]\n"
    "\n"
    "Runs the pipeline described by CONFIG.yaml (docs/config.md) over its run directory.\n"
    "Start it with one process per rank: mpirun -np N qshard run ... or\n"
    "srun --mpi=pmix -n N qshard run ...\n"
    "\n"
    "  --set key.path=value  override one config key (repeatable; lists as [2,3,4])\n"
    "  --resume              continue a run directory that holds this run (same config and\n"
    "                        model; any rank count): completed stages and units are reused\n"
    "  --stop-marker FILE    when the run stops durably on a signal (exit 3), also write\n"
    "                        FILE (as RUN_DIR/stopped.json): launchers may report another\n"
    "                        exit code for the stop (slurm/qshard.sbatch reads it)\n"
    "  --verbose             log from every rank (default: rank 0 only)\n"
    "  --quiet               log nothing but errors\n";

static const char *const USAGE_PLAN =
    "usage: qshard plan CONFIG.yaml --ranks N [--set key.path=value]... [--json]\n"
    "\n"
    "Prints how the decoder layers would be split over N ranks (optimal contiguous split of\n"
    "the per-layer cost) and each rank's memory from the formula in docs/design.md.\n"
    "Use it to size a Slurm job before submitting. Nothing is written.\n";

static const char *const USAGE_INSPECT =
    "usage: qshard inspect MODEL_DIR [--json]\n"
    "\n"
    "Validates config.json and the safetensors files (single or sharded) of a Hugging Face\n"
    "Llama/Mistral/Qwen2 checkpoint and prints its architecture, dimensions, parameter count\n"
    "and a per-tensor table.\n";

static const char *const USAGE_SYNTH =
    "usage: qshard synth-model --arch llama|mistral|qwen2 --layers N --hidden H\n"
    "         [--intermediate I] [--heads A] [--kv-heads K] [--head-dim D] [--vocab V]\n"
    "         [--dtype bf16|f16|f32] [--shards S] [--seed N] [--tie] [--sliding-window W]\n"
    "         [--tokens N] OUT_DIR\n"
    "\n"
    "Writes a deterministic synthetic model (config.json + safetensors, sharded with an index\n"
    "when --shards > 1) for tests, benchmarks and the demo. Equal options give equal bytes.\n"
    "--tokens N also writes OUT_DIR/tokens.u32 with N deterministic token ids.\n"
    "Defaults: intermediate = 8/3 hidden rounded up to 64, heads = hidden/64, kv-heads =\n"
    "heads, vocab 512, dtype bf16, shards 1, seed 0.\n";

static const char *const USAGE_EVAL =
    "usage: qshard eval CONFIG.yaml [--weights SOURCE] [--set key.path=value]... [--verbose]\n"
    "         [--quiet]\n"
    "\n"
    "Perplexity on eval.tokens: consecutive windows of eval.seqlen tokens from the start\n"
    "(remainder dropped, at most eval.max_windows), each predicting tokens 1..T-1; prints the\n"
    "result and writes RUN_DIR/eval.json. Start with one process per rank (mpirun -np N):\n"
    "the decoder layers are split over the ranks; the result does not depend on N.\n"
    "\n"
    "  --weights float       the unquantized checkpoint (default)\n"
    "  --weights recon:CAND  every linear of every layer as candidate CAND (e.g. recon:w4g128,\n"
    "                        recon:Q4_K)\n"
    "                        from the reconstruct stage's RUN_DIR/recon/\n"
    "  --weights final       the run's searched allocation (RUN_DIR/search/allocation.json)\n"
    "                        from RUN_DIR/final/ (sequential inputs) or RUN_DIR/recon/\n"
    "  --weights alloc:PATH  an allocation file (qshard-allocation-1 JSON, e.g. a copy of\n"
    "                        search/allocation.json), from RUN_DIR/final/ or RUN_DIR/recon/\n"
    "  --weights h5          the written HDF5 shards (RUN_DIR/out/), dequantized\n"
    "  --weights gptq[:DIR]  a GPTQ export (default RUN_DIR/export/), dequantized\n"
    "  --weights ct[:DIR]    a compressed-tensors export (default RUN_DIR/export-ct/),\n"
    "                        dequantized\n"
    "  --weights gguf[:FILE] a GGUF file (default RUN_DIR/gguf/model.gguf), dequantized as\n"
    "                        llama.cpp does, q/k rows un-permuted\n"
    "  --set key.path=value  override one config key (repeatable)\n";

static const char *const USAGE_REPORT =
    "usage: qshard report RUN_DIR\n"
    "\n"
    "Writes RUN_DIR/report.md and RUN_DIR/report/*.svg (bits per layer, error per layer,\n"
    "Pareto frontier) from the files of the run directory only: config, timings, plan\n"
    "memory, allocation, error and damping tables, perplexities. `qshard run` writes it at\n"
    "the end of every completed or stopped run; sections whose stage has not run say\n"
    "\"not run\".\n";

static const char *const USAGE_SWEEP =
    "usage: qshard sweep SWEEP.yaml [--out DIR]\n"
    "\n"
    "SWEEP.yaml names a base config and overrides (docs/slurm.md \"Sweeps\"):\n"
    "  base: sweep-base.yaml            # relative to the sweep file\n"
    "  set: {model: /models/x}          # every point\n"
    "  grid: {quant.bits: [[3], [4]], quant.group_size: [[32], [128]]}  # cartesian product\n"
    "  points: [{search.target_bpw: 3.0}]  # explicit points (x the grid)\n"
    "  parallel: 4                      # tasks at once: --array=0-N%K\n"
    "  sbatch: [\"--time=04:00:00\"]     # extra #SBATCH lines\n"
    "Writes DIR/points/NNN.yaml (resolved, run_dir DIR/runs/NNN), DIR/points.csv,\n"
    "DIR/sweep.sbatch (job array; task i runs point i through a copy of slurm/qshard.sbatch:\n"
    "requeue and --resume per task) and DIR/logs/. DIR defaults to SWEEP without .yaml.\n"
    "Every point goes through the config loader: a bad key or value is exit 2.\n"
    "Submit: sbatch -n RANKS DIR/sweep.sbatch; then qshard collect DIR.\n"
    "QSHARD_SBATCH=PATH names slurm/qshard.sbatch when it is not next to the binary.\n";

static const char *const USAGE_COLLECT =
    "usage: qshard collect DIR\n"
    "\n"
    "Reads DIR/points.csv and each point's run directory (timings.json, eval*.json,\n"
    "search/summary.json or allocation.json, recon tables) and writes DIR/results.csv and\n"
    "DIR/results.md: point, overrides, size bytes, bpw, perplexity (quantized), float\n"
    "perplexity, time, status (done | failed | missing). Prints the markdown table.\n";
static const char *const USAGE_TOKENIZE =
    "usage: qshard tokenize --tokenizer MODEL_DIR|tokenizer.json [--text-field NAME] [--quiet]\n"
    "         IN... OUT.u32|OUT.u16\n"
    "\n"
    "Tokenizes text with the model's Hugging Face tokenizer (tokenizer.json, and\n"
    "tokenizer_config.json beside it) into a token file for calib.tokens / eval.tokens:\n"
    "raw little-endian ids, the documents' ids concatenated in order (docs/text.md).\n"
    "Each IN is a .txt file (documents separated by blank lines), a .jsonl file (one\n"
    "object per line, the document in its string field NAME, default \"text\") or a\n"
    "directory (every .txt and .jsonl file below it, in sorted order). Each document is\n"
    "encoded with the tokenizer's special tokens (BOS and/or EOS); when it adds none, the\n"
    "tokenizer_config.json eos_token ends each document.\n"
    "Under mpirun -np N the documents are split over the ranks; the file is the same for\n"
    "any N. It is written to a temp name and renamed when complete.\n";

static const char *const USAGE_VERIFY =
    "usage: qshard verify RUN_DIR|EXPORT_DIR\n"
    "\n"
    "RUN_DIR: every output listed in out/manifest.json has its SHA-256, every HDF5 shard\n"
    "dataset has the shape its attributes imply, and RUN_DIR/export (if any) is checked as\n"
    "below. EXPORT_DIR (a GPTQ checkpoint): index and shards agree, every quantized linear's\n"
    "qweight/qzeros/scales/g_idx have the shapes and dtypes of its scheme (quantization_config\n"
    "and its dynamic map). Exit 0 when everything matches, 2 with one line naming the file.\n";

static const char *const USAGE_CONVERT =
    "usage: qshard convert --to compressed-tensors GPTQ_DIR OUT_DIR [--shard-bytes N] [--overwrite]\n"
    "\n"
    "Rewrites a GPTQ export written by qshard (v1 or v2, with or without a dynamic map) as a\n"
    "compressed-tensors pack-quantized export (docs/export.md): the same codes, scales and zero\n"
    "points, so the same dequantized weights; float modules go to \"ignore\". Only 4-bit and\n"
    "8-bit symmetric schemes convert (what vLLM loads); others are exit 2 naming the module.\n"
    "OUT_DIR must not exist (--overwrite replaces it). Shards: N data bytes (default 4 GiB).\n";

static int usage_error(const char *usage, const char *fmt, const char *arg) {
    fprintf(stderr, "qshard: error: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, " (see 'qshard %s --help')\n", usage);
    return 2;
}

static int is_help(const char *a) { return strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0; }

/* Parses a positive integer option value; returns 0 on success. */
static int parse_i64(const char *s, long long lo, long long hi, long long *out) {
    if (!s || !*s) return -1;
    errno = 0;
    char *end = NULL;
    long long v = strtoll(s, &end, 10);
    if (errno || *end || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

/* 1 when a is the flag spelled long_name or short_name. */
static int is_flag(const char *a, const char *long_name, const char *short_name) {
    return strcmp(a, long_name) == 0 || strcmp(a, short_name) == 0;
}

/* An option with a value, "--name VALUE" or "--name=VALUE", at argv[*i]: 1 when it is that
 * option, with *val its value (NULL when "--name" is last) and *i past it; 0 otherwise. */
static int option_value(int argc, char **argv, int *i, const char *name, const char **val) {
    const char *a = argv[*i];
    size_t n = strlen(name);
    if (strncmp(a, name, n) != 0 || (a[n] != '\0' && a[n] != '=')) return 0;
    if (a[n] == '=')
        *val = a + n + 1;
    else
        *val = *i + 1 < argc ? argv[++*i] : NULL;
    return 1;
}

/* MPI for a command that runs on ranks: 0, or 1 after the one error line. */
static int comm_start(qs_comm *comm, int *argc, char ***argv) {
    qs_err err = {0};
    if (qs_comm_init(comm, argc, argv, &err) == QS_OK) return 0;
    fprintf(stderr, "qshard: error: %s\n", err.msg);
    return 1;
}

/* A command's end: every HDF5 identifier it opened must be closed (qs_h5_check_closed).
 * Otherwise this process prints the internal error (rank < 0: a command without ranks)
 * and exits 1 whatever the command's own status was; else returns rc. */
static int h5_closed(int rank, int rc) {
    qs_err err = {0};
    if (qs_h5_check_closed(&err) == QS_OK) return rc;
    if (rank >= 0)
        fprintf(stderr, "qshard: internal error at %s:%d (rank %d): %s\n", err.file, err.line,
                rank, err.msg);
    else
        fprintf(stderr, "qshard: internal error at %s:%d: %s\n", err.file, err.line, err.msg);
    return qs_status_exit_code(QS_ERR_INTERNAL);
}

/* The end of a command that runs on ranks: rank 0 prints the one error line (a stop is not
 * an error), every rank checks that its HDF5 identifiers are closed (before MPI_Finalize,
 * which ends the HDF5 library), output is flushed, MPI finalized; returns the exit code. */
static int comm_finish(qs_comm *comm, qs_status st, const qs_err *err) {
    if (st != QS_OK && st != QS_STOPPED && comm->rank == 0)
        fprintf(stderr, "qshard: error: %s\n", err->msg);
    int rc = h5_closed(comm->rank, qs_status_exit_code(st));
    fflush(stdout);
    qs_comm_finalize(comm);
    return rc;
}

/* ---- tokenize ---- */

static int cmd_tokenize(int argc, char **argv) {
    qs_comm comm;
    qs_err err = {0};
    qs_status st = QS_OK;
    if (comm_start(&comm, &argc, &argv) != 0) return 1;
    const char *tok_path = NULL, *field = "text", *val = NULL;
    int help = 0, quiet = 0, nin = 0;
    const char **ins = calloc((size_t)argc + 1, sizeof(char *));
    qs_tokenizer *tok = NULL;
    qs_corpus corpus;
    memset(&corpus, 0, sizeof(corpus));
    if (!ins) st = QS_FAIL(&err, QS_ERR_RUNTIME, "out of memory");
    for (int i = 2; i < argc && st == QS_OK; ++i) {
        const char *a = argv[i];
        if (is_help(a)) {
            help = 1;
        } else if (option_value(argc, argv, &i, "--tokenizer", &val) ||
                   option_value(argc, argv, &i, "--text-field", &val)) {
            if (!val)
                st = QS_FAIL(&err, QS_ERR_INPUT, "tokenize: %s needs a value (see 'qshard tokenize --help')",
                             a);
            else if (a[2] == 't' && a[3] == 'o')
                tok_path = val;
            else
                field = val;
        } else if (is_flag(a, "--quiet", "-q")) {
            quiet = 1;
        } else if (a[0] == '-' && a[1]) {
            st = QS_FAIL(&err, QS_ERR_INPUT, "tokenize: unknown option '%s' (see 'qshard tokenize --help')",
                         a);
        } else {
            ins[nin++] = a;
        }
    }
    if (help && st == QS_OK) {
        if (comm.rank == 0) fputs(USAGE_TOKENIZE, stdout);
        goto out;
    }
    if (st == QS_OK && !tok_path)
        st = QS_FAIL(&err, QS_ERR_INPUT, "tokenize: missing --tokenizer MODEL_DIR|tokenizer.json (see 'qshard tokenize --help')");
    if (st == QS_OK && nin < 2)
        st = QS_FAIL(&err, QS_ERR_INPUT, "tokenize: need at least one input and OUT.u32 (see 'qshard tokenize --help')");
    if (st == QS_OK && !*field) st = QS_FAIL(&err, QS_ERR_INPUT, "tokenize: --text-field is empty");
    if (st == QS_OK) st = qs_tokenizer_load(tok_path, &tok, &err);
    if (st == QS_OK) st = qs_corpus_open(&corpus, ins, nin - 1, field, &err);
    st = qs_comm_agree(&comm, st, &err);
    if (st == QS_OK) {
        const char *out_path = ins[nin - 1];
        qs_text_tokens_stats stats;
        double t0 = qs_log_now();
        st = qs_text_tokens_write(&comm, tok, &corpus, out_path, &stats, &err);
        double dt = qs_log_now() - t0;
        if (st == QS_OK && comm.rank == 0 && !quiet)
            printf("tokenize: %lld documents, %llu bytes -> %lld tokens in %s (%d rank%s, %.2f s, %.2f MB/s)\n",
                   (long long)stats.docs, (unsigned long long)stats.bytes, (long long)stats.tokens, out_path,
                   comm.size, comm.size == 1 ? "" : "s", dt, dt > 0 ? (double)stats.bytes / dt / 1e6 : 0.0);
        if (st == QS_ERR_INTERNAL) qs_comm_abort(&comm, &err);
    }
out:
    qs_corpus_close(&corpus);
    qs_tokenizer_free(tok);
    free(ins);
    return comm_finish(&comm, st, &err);
}

/* The one positional argument of a command without options (collect, report, verify):
 * *arg set and -1 returned when it is there; otherwise the exit code (0 after --help, 2
 * with the usage error naming `what` when it is missing). */
static int one_argument(int argc, char **argv, const char *cmd, const char *usage,
                        const char *what, const char **arg) {
    char fmt[64];
    *arg = NULL;
    for (int i = 2; i < argc; ++i) {
        if (is_help(argv[i])) {
            fputs(usage, stdout);
            return 0;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            snprintf(fmt, sizeof(fmt), "%s: unknown option '%%s'", cmd);
            return usage_error(cmd, fmt, argv[i]);
        } else if (*arg) {
            snprintf(fmt, sizeof(fmt), "%s: unexpected argument '%%s'", cmd);
            return usage_error(cmd, fmt, argv[i]);
        }
        *arg = argv[i];
    }
    if (*arg) return -1;
    snprintf(fmt, sizeof(fmt), "%s: missing %%s", cmd);
    return usage_error(cmd, fmt, what);
}

/* ---- run ---- */

static int cmd_run(int argc, char **argv) {
    qs_comm comm;
    qs_err err = {0};
    /* A stop signal may arrive while MPI starts (Slurm's early USR1): catch it from the
     * first instruction; installed again below in case MPI_Init replaced a handler. */
    qs_driver_install_signals();
    qs_status st = QS_OK;
    if (comm_start(&comm, &argc, &argv) != 0) return 1;
    qs_run_opts opts;
    memset(&opts, 0, sizeof(opts));
    const char **sets = calloc((size_t)argc + 1, sizeof(char *));
    const char *val = NULL;
    int help = 0;
    if (!sets) {
        st = QS_FAIL(&err, QS_ERR_RUNTIME, "out of memory");
    } else {
        /* argv[0] = "qshard", argv[1] = "run" */
        for (int i = 2; i < argc && st == QS_OK; ++i) {
            const char *a = argv[i];
            if (is_help(a)) {
                help = 1;
            } else if (option_value(argc, argv, &i, "--set", &val)) {
                if (!val)
                    st = QS_FAIL(&err, QS_ERR_INPUT, "--set needs key.path=value");
                else
                    sets[opts.nset++] = val;
            } else if (strcmp(a, "--resume") == 0) {
                opts.resume = 1;
            } else if (strcmp(a, "--stop-marker") == 0) {
                if (i + 1 >= argc)
                    st = QS_FAIL(&err, QS_ERR_INPUT, "--stop-marker needs a file path");
                else
                    opts.stop_marker = argv[++i];
            } else if (is_flag(a, "--verbose", "-v")) {
                opts.verbose = 1;
            } else if (is_flag(a, "--quiet", "-q")) {
                opts.quiet = 1;
            } else if (a[0] == '-' && a[1]) {
                st = QS_FAIL(&err, QS_ERR_INPUT, "run: unknown option '%s' (see 'qshard run --help')",
                             a);
            } else if (!opts.config_path) {
                opts.config_path = a;
            } else {
                st = QS_FAIL(&err, QS_ERR_INPUT, "run: unexpected argument '%s'", a);
            }
        }
        if (st == QS_OK && !help && !opts.config_path)
            st = QS_FAIL(&err, QS_ERR_INPUT, "run: missing CONFIG.yaml (see 'qshard run --help')");
    }
    opts.sets = sets;
    if (help && st == QS_OK) {
        if (comm.rank == 0) fputs(USAGE_RUN, stdout);
    } else if (st == QS_OK) {
        qs_driver_install_signals();
        st = qs_driver_run(&opts, &comm, &err);
    }
    free(sets);
    return comm_finish(&comm, st, &err);
}

/* ---- plan ---- */

static int cmd_plan(int argc, char **argv) {
    const char *config_path = NULL;
    long long ranks = 0;
    int json = 0, nset = 0;
    const char **sets = calloc((size_t)argc + 1, sizeof(char *));
    if (!sets) return 1;
    int rc = 0;
    for (int i = 2; i < argc; ++i) {
        const char *a = argv[i];
        if (is_help(a)) {
            fputs(USAGE_PLAN, stdout);
            free(sets);
            return 0;
        } else if (strcmp(a, "--ranks") == 0 || strcmp(a, "-n") == 0) {
            if (i + 1 >= argc || parse_i64(argv[i + 1], 1, 1000000, &ranks) != 0) {
                rc = usage_error("plan", "--ranks needs a positive integer%s", "");
                goto out;
            }
            ++i;
        } else if (strcmp(a, "--set") == 0 && i + 1 < argc) {
            sets[nset++] = argv[++i];
        } else if (strcmp(a, "--json") == 0) {
            json = 1;
        } else if (a[0] == '-' && a[1]) {
            rc = usage_error("plan", "plan: unknown option '%s'", a);
            goto out;
        } else if (!config_path) {
            config_path = a;
        } else {
            rc = usage_error("plan", "plan: unexpected argument '%s'", a);
            goto out;
        }
    }
    if (!config_path) {
        rc = usage_error("plan", "plan: missing CONFIG.yaml%s", "");
        goto out;
    }
    if (ranks <= 0) {
        rc = usage_error("plan", "plan: missing --ranks N%s", "");
        goto out;
    }
    {
        qs_err err = {0};
        qs_config cfg;
        qs_model model;
        qs_plan plan;
        memset(&cfg, 0, sizeof(cfg));
        memset(&model, 0, sizeof(model));
        memset(&plan, 0, sizeof(plan));
        qs_status st = qs_config_load(&cfg, config_path, sets, nset, &err);
        if (st == QS_OK) st = qs_model_open(&model, cfg.model, &err);
        if (st == QS_OK) st = qs_cands_check_model(&model.hf, &cfg, &err);
        if (st == QS_OK) st = qs_cands_check_budget(&model, &cfg, &err);
        if (st == QS_OK) st = qs_plan_compute(&model.hf, &cfg, (int)ranks, &plan, &err);
        if (st == QS_OK) {
            if (json) {
                char *text = NULL;
                st = qs_plan_to_json(&plan, &text, &err);
                if (st == QS_OK) fputs(text, stdout);
                free(text);
            } else {
                qs_plan_print(&plan, stdout);
            }
        }
        if (st != QS_OK) fprintf(stderr, "qshard: error: %s\n", err.msg);
        rc = qs_status_exit_code(st);
        qs_plan_free(&plan);
        qs_model_close(&model);
        qs_config_free(&cfg);
    }
out:
    free(sets);
    return rc;
}

/* ---- inspect ---- */

static void shape_str(const qs_st_tensor *t, char *out, size_t n) {
    size_t k = 0;
    out[0] = '\0';
    k += (size_t)snprintf(out + k, n - k, "(");
    for (int d = 0; d < t->ndim && k < n; ++d)
        k += (size_t)snprintf(out + k, n - k, d ? ", %lld" : "%lld", (long long)t->shape[d]);
    if (k < n) snprintf(out + k, n - k, ")");
}

static void with_commas(long long v, char *out, size_t n) {
    char tmp[32];
    snprintf(tmp, sizeof(tmp), "%lld", v);
    size_t len = strlen(tmp), k = 0;
    for (size_t i = 0; i < len && k + 1 < n; ++i) {
        out[k++] = tmp[i];
        size_t left = len - i - 1;
        if (left && left % 3 == 0 && tmp[i] != '-' && k + 1 < n) out[k++] = ',';
    }
    out[k] = '\0';
}

/* The file name of a path (after its last '/'). */
static const char *file_name(const char *path) {
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

/* `qshard inspect --json`: the config's fields, the parameter count, every tensor. */
static void inspect_json(const qs_model *m) {
    const qs_hf_config *hf = &m->hf;
    long long params = (long long)qs_model_param_count(m);
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "architecture", hf->architecture);
    cJSON_AddStringToObject(root, "family", qs_arch_name(hf->arch));
    cJSON_AddNumberToObject(root, "num_hidden_layers", (double)hf->num_hidden_layers);
    cJSON_AddNumberToObject(root, "hidden_size", (double)hf->hidden_size);
    cJSON_AddNumberToObject(root, "intermediate_size", (double)hf->intermediate_size);
    cJSON_AddNumberToObject(root, "num_attention_heads", (double)hf->num_attention_heads);
    cJSON_AddNumberToObject(root, "num_key_value_heads", (double)hf->num_key_value_heads);
    cJSON_AddNumberToObject(root, "head_dim", (double)hf->head_dim);
    cJSON_AddNumberToObject(root, "vocab_size", (double)hf->vocab_size);
    cJSON_AddBoolToObject(root, "tie_word_embeddings", hf->tie_word_embeddings);
    cJSON_AddNumberToObject(root, "rope_theta", hf->rope.theta);
    cJSON_AddNumberToObject(root, "sliding_window", (double)hf->sliding_window);
    cJSON_AddNumberToObject(root, "parameters", (double)params);
    cJSON_AddNumberToObject(root, "shards", m->ckpt.nshards);
    cJSON *arr = cJSON_AddArrayToObject(root, "tensors");
    for (int s = 0; s < m->ckpt.nshards; ++s) {
        const qs_st_file *f = &m->ckpt.shards[s];
        const char *base = file_name(f->path);
        for (int64_t i = 0; i < f->ntensors; ++i) {
            const qs_st_tensor *t = &f->tensors[i];
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "name", t->name);
            cJSON_AddStringToObject(o, "dtype", qs_dtype_name(t->dtype));
            cJSON *sh = cJSON_AddArrayToObject(o, "shape");
            for (int d = 0; d < t->ndim; ++d)
                cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)t->shape[d]));
            cJSON_AddStringToObject(o, "file", base);
            cJSON_AddItemToArray(arr, o);
        }
    }
    char *text = cJSON_Print(root);
    if (text) printf("%s\n", text);
    cJSON_free(text);
    cJSON_Delete(root);
}

/* `qshard inspect`: the same as a table. */
static void inspect_text(const qs_model *m, const char *dir) {
    const qs_hf_config *hf = &m->hf;
    long long params = (long long)qs_model_param_count(m);
    char pc[40];
    with_commas(params, pc, sizeof(pc));
    printf("model:        %s\n", dir);
    printf("architecture: %s (%s)\n", hf->architecture, qs_arch_name(hf->arch));
    printf("layers:       %lld\n", (long long)hf->num_hidden_layers);
    printf("hidden:       %lld   intermediate: %lld   vocab: %lld\n",
           (long long)hf->hidden_size, (long long)hf->intermediate_size,
           (long long)hf->vocab_size);
    printf("attention:    %lld heads, %lld kv heads%s, head_dim %lld\n",
           (long long)hf->num_attention_heads, (long long)hf->num_key_value_heads,
           hf->num_key_value_heads < hf->num_attention_heads ? " (GQA)" : "",
           (long long)hf->head_dim);
    printf("rope:         theta %g%s\n", hf->rope.theta,
           hf->rope.type == QS_ROPE_LINEAR   ? ", linear scaling"
           : hf->rope.type == QS_ROPE_LLAMA3 ? ", llama3 scaling"
                                             : "");
    if (hf->sliding_window) printf("window:       %lld\n", (long long)hf->sliding_window);
    printf("embeddings:   %s\n", hf->tie_word_embeddings ? "tied" : "untied");
    printf("parameters:   %s\n", pc);
    printf("files:        %d safetensors file(s)\n", m->ckpt.nshards);
    printf("\n%-52s %-5s %-16s %s\n", "tensor", "dtype", "shape", "file");
    for (int s = 0; s < m->ckpt.nshards; ++s) {
        const qs_st_file *f = &m->ckpt.shards[s];
        const char *base = file_name(f->path);
        for (int64_t i = 0; i < f->ntensors; ++i) {
            char sh[96];
            shape_str(&f->tensors[i], sh, sizeof(sh));
            printf("%-52s %-5s %-16s %s\n", f->tensors[i].name,
                   qs_dtype_name(f->tensors[i].dtype), sh, base);
        }
    }
}

static int cmd_inspect(int argc, char **argv) {
    const char *dir = NULL;
    int json = 0;
    for (int i = 2; i < argc; ++i) {
        if (is_help(argv[i])) {
            fputs(USAGE_INSPECT, stdout);
            return 0;
        } else if (strcmp(argv[i], "--json") == 0) {
            json = 1;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            return usage_error("inspect", "inspect: unknown option '%s'", argv[i]);
        } else if (!dir) {
            dir = argv[i];
        } else {
            return usage_error("inspect", "inspect: unexpected argument '%s'", argv[i]);
        }
    }
    if (!dir) return usage_error("inspect", "inspect: missing MODEL_DIR%s", "");
    qs_err err = {0};
    qs_model m;
    memset(&m, 0, sizeof(m));
    qs_status st = qs_model_open(&m, dir, &err);
    if (st != QS_OK) {
        fprintf(stderr, "qshard: error: %s\n", err.msg);
        qs_model_close(&m);
        return qs_status_exit_code(st);
    }
    if (json)
        inspect_json(&m);
    else
        inspect_text(&m, dir);
    qs_model_close(&m);
    return 0;
}

/* ---- synth-model ---- */

static int cmd_synth(int argc, char **argv) {
    qs_synth_opts o;
    qs_synth_opts_default(&o);
    const char *out = NULL;
    long long v = 0, tokens = 0;
    for (int i = 2; i < argc; ++i) {
        const char *a = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
#define INTOPT(flag, field, lo, hi)                                                   \
    if (strcmp(a, flag) == 0) {                                                       \
        if (parse_i64(val, lo, hi, &v) != 0)                                          \
            return usage_error("synth-model", flag " needs an integer in range, got '%s'", \
                               val ? val : "");                                        \
        o.field = v;                                                                  \
        ++i;                                                                          \
        continue;                                                                     \
    }
        if (is_help(a)) {
            fputs(USAGE_SYNTH, stdout);
            return 0;
        }
        INTOPT("--layers", layers, 1, 1000)
        INTOPT("--hidden", hidden, 1, 1 << 20)
        INTOPT("--intermediate", intermediate, 1, 1 << 22)
        INTOPT("--heads", heads, 1, 4096)
        INTOPT("--kv-heads", kv_heads, 1, 4096)
        INTOPT("--head-dim", head_dim, 1, 4096)
        INTOPT("--vocab", vocab, 2, 1 << 24)
        INTOPT("--shards", shards, 1, 10000)
        INTOPT("--seed", seed, 0, 0x7fffffffffffffffLL)
        INTOPT("--sliding-window", sliding_window, 0, 1 << 30)
#undef INTOPT
        if (strcmp(a, "--tokens") == 0) {
            if (parse_i64(val, 1, 1LL << 40, &tokens) != 0)
                return usage_error("synth-model", "--tokens needs a positive integer, got '%s'",
                                   val ? val : "");
            ++i;
        } else if (strcmp(a, "--arch") == 0) {
            if (!val || qs_synth_parse_arch(val, &o.arch) != QS_OK)
                return usage_error("synth-model", "--arch must be llama, mistral or qwen2, got '%s'",
                                   val ? val : "");
            ++i;
        } else if (strcmp(a, "--dtype") == 0) {
            if (!val || qs_synth_parse_dtype(val, &o.dtype) != QS_OK)
                return usage_error("synth-model", "--dtype must be bf16, f16 or f32, got '%s'",
                                   val ? val : "");
            ++i;
        } else if (strcmp(a, "--tie") == 0) {
            o.tie_embeddings = 1;
        } else if (a[0] == '-' && a[1]) {
            return usage_error("synth-model", "synth-model: unknown option '%s'", a);
        } else if (!out) {
            out = a;
        } else {
            return usage_error("synth-model", "synth-model: unexpected argument '%s'", a);
        }
    }
    if (!out) return usage_error("synth-model", "synth-model: missing OUT_DIR%s", "");
    qs_err err = {0};
    qs_status st = qs_synth_write(&o, out, &err);
    if (st == QS_OK && tokens > 0) st = qs_synth_write_tokens(&o, out, (int64_t)tokens, &err);
    if (st != QS_OK) {
        fprintf(stderr, "qshard: error: %s\n", err.msg);
        return qs_status_exit_code(st);
    }
    return 0;
}

/* ---- eval ---- */

static int cmd_eval(int argc, char **argv) {
    qs_comm comm;
    qs_err err = {0};
    qs_status st = QS_OK;
    if (comm_start(&comm, &argc, &argv) != 0) return 1;
    const char *config_path = NULL, *weights = "float", *val = NULL;
    int nset = 0, help = 0, verbose = 0, quiet = 0;
    const char **sets = calloc((size_t)argc + 1, sizeof(char *));
    qs_config cfg;
    qs_model model;
    qs_rundir rd;
    qs_log lg;
    qs_eval_weights which = QS_EVAL_FLOAT;
    qs_driver_threads thr = {1, 1, "default", 0, 0, NULL};
    memset(&cfg, 0, sizeof(cfg));
    memset(&model, 0, sizeof(model));
    memset(&rd, 0, sizeof(rd));
    if (!sets) st = QS_FAIL(&err, QS_ERR_RUNTIME, "out of memory");
    for (int i = 2; i < argc && st == QS_OK; ++i) {
        const char *a = argv[i];
        if (is_help(a)) {
            help = 1;
        } else if (option_value(argc, argv, &i, "--set", &val) ||
                   option_value(argc, argv, &i, "--weights", &val)) {
            if (!val)
                st = QS_FAIL(&err, QS_ERR_INPUT, "eval: %s needs a value (see 'qshard eval --help')",
                             a);
            else if (a[2] == 's')
                sets[nset++] = val;
            else
                weights = val;
        } else if (is_flag(a, "--verbose", "-v")) {
            verbose = 1;
        } else if (is_flag(a, "--quiet", "-q")) {
            quiet = 1;
        } else if (a[0] == '-' && a[1]) {
            st = QS_FAIL(&err, QS_ERR_INPUT, "eval: unknown option '%s' (see 'qshard eval --help')",
                         a);
        } else if (!config_path) {
            config_path = a;
        } else {
            st = QS_FAIL(&err, QS_ERR_INPUT, "eval: unexpected argument '%s'", a);
        }
    }
    if (st == QS_OK && !help && !config_path)
        st = QS_FAIL(&err, QS_ERR_INPUT, "eval: missing CONFIG.yaml (see 'qshard eval --help')");
    if (st == QS_OK && !help) st = qs_eval_parse_weights(weights, &which, &err);
    if (help && st == QS_OK) {
        if (comm.rank == 0) fputs(USAGE_EVAL, stdout);
        goto out;
    }
    qs_log_init(&lg, comm.rank, verbose, quiet);
    if (st == QS_OK) st = qs_config_load(&cfg, config_path, sets, nset, &err);
    if (st == QS_OK) st = qs_model_open(&model, cfg.model, &err);
    if (st == QS_OK) st = qs_rundir_init(&rd, cfg.run_dir, &err);
    if (st == QS_OK) st = qs_driver_threads_make(&cfg, &thr, &err);
    st = qs_comm_agree(&comm, st, &err);
    if (st == QS_OK) {
        qs_progress progress;
        qs_driver_threads_log(&comm, &lg, &thr);
        qs_progress_start(&progress, &lg, "eval");
        qs_eval_env env = {.cfg = &cfg, .comm = &comm, .rd = &rd, .model = &model, .log = &lg,
                           .progress = &progress, .pool = thr.pool};
        qs_eval_result res;
        qs_eval_env_for_eval(&env, &cfg);
        st = qs_eval_perplexity(&env, &which, &res, &err);
        if (st == QS_OK) st = qs_eval_write_json(&env, &which, &res, QS_REL_EVAL, &err);
        if (st == QS_OK && comm.rank == 0 && !quiet)
            printf("perplexity %.6f (%lld windows x %lld tokens, nll_sum %.17g)\n", res.ppl,
                   (long long)res.windows, (long long)res.seqlen, res.nll_sum);
        if (st == QS_ERR_INTERNAL) qs_comm_abort(&comm, &err);
    }
out:
    qs_pool_free(thr.pool);
    qs_model_close(&model);
    qs_rundir_free(&rd);
    qs_config_free(&cfg);
    free(sets);
    return comm_finish(&comm, st, &err);
}

/* ---- sweep, collect ---- */

static int cmd_sweep(int argc, char **argv) {
    qs_sweep_opts o;
    memset(&o, 0, sizeof(o));
    for (int i = 2; i < argc; ++i) {
        const char *a = argv[i];
        if (is_help(a)) {
            fputs(USAGE_SWEEP, stdout);
            return 0;
        } else if (strcmp(a, "--out") == 0) {
            if (i + 1 >= argc) return usage_error("sweep", "sweep: --out needs a directory%s", "");
            o.out_dir = argv[++i];
        } else if (a[0] == '-' && a[1]) {
            return usage_error("sweep", "sweep: unknown option '%s'", a);
        } else if (!o.sweep_path) {
            o.sweep_path = a;
        } else {
            return usage_error("sweep", "sweep: unexpected argument '%s'", a);
        }
    }
    if (!o.sweep_path) return usage_error("sweep", "sweep: missing SWEEP.yaml%s", "");
    char bin[4096];
    ssize_t n = readlink("/proc/self/exe", bin, sizeof(bin) - 1);
    if (n > 0) {
        bin[n] = 0;
        o.qshard_bin = bin;
    }
    qs_err err = {0};
    qs_status st = qs_sweep_write(&o, &err);
    if (st != QS_OK) fprintf(stderr, "qshard: error: %s\n", err.msg);
    return qs_status_exit_code(st);
}

static int cmd_collect(int argc, char **argv) {
    const char *dir = NULL;
    int rc = one_argument(argc, argv, "collect", USAGE_COLLECT, "DIR", &dir);
    if (rc >= 0) return rc;
    qs_err err = {0};
    qs_status st = qs_sweep_collect(dir, &err);
    if (st != QS_OK) fprintf(stderr, "qshard: error: %s\n", err.msg);
    return qs_status_exit_code(st);
}

/* ---- report ---- */

static int cmd_report(int argc, char **argv) {
    const char *dir = NULL;
    int rc = one_argument(argc, argv, "report", USAGE_REPORT, "RUN_DIR", &dir);
    if (rc >= 0) return rc;
    qs_err err = {0};
    qs_status st = qs_report_write(dir, &err);
    if (st != QS_OK) fprintf(stderr, "qshard: error: %s\n", err.msg);
    else printf("%s/report.md\n", dir);
    return qs_status_exit_code(st);
}

/* ---- verify ---- */

static int cmd_convert(int argc, char **argv) {
    const char *to = NULL, *in = NULL, *out = NULL;
    qs_qexport_opts o;
    qs_qexport_opts_default(&o);
    for (int i = 2; i < argc; ++i) {
        const char *a = argv[i];
        if (is_help(a)) {
            fputs(USAGE_CONVERT, stdout);
            return 0;
        } else if (strcmp(a, "--to") == 0 && i + 1 < argc) {
            to = argv[++i];
        } else if (strcmp(a, "--shard-bytes") == 0 && i + 1 < argc) {
            long long v = 0;
            if (parse_i64(argv[++i], 1, INT64_MAX, &v) != 0)
                return usage_error("convert", "--shard-bytes needs a positive integer, got '%s'",
                                   argv[i]);
            o.shard_bytes = v;
        } else if (strcmp(a, "--overwrite") == 0) {
            o.overwrite = 1;
        } else if (a[0] == '-' && a[1]) {
            return usage_error("convert", "convert: unknown option or missing value '%s'", a);
        } else if (!in) {
            in = a;
        } else if (!out) {
            out = a;
        } else {
            return usage_error("convert", "convert: unexpected argument '%s'", a);
        }
    }
    if (!to || strcmp(to, "compressed-tensors") != 0)
        return usage_error("convert", "convert: --to must be compressed-tensors, got '%s'",
                           to ? to : "");
    if (!in || !out) return usage_error("convert", "convert: missing %s", "GPTQ_DIR OUT_DIR");
    qs_err err = {0};
    int64_t n = 0;
    qs_status st = qs_ct_export_from_gptq(in, out, &o, &n, &err);
    if (st != QS_OK) {
        fprintf(stderr, "qshard: error: %s\n", err.msg);
        return qs_status_exit_code(st);
    }
    printf("convert: %s -> %s (compressed-tensors, %lld quantized linears)\n", in, out,
           (long long)n);
    return 0;
}

static int cmd_verify(int argc, char **argv) {
    const char *dir = NULL;
    int rc = one_argument(argc, argv, "verify", USAGE_VERIFY, "RUN_DIR|EXPORT_DIR", &dir);
    if (rc >= 0) return rc;
    qs_err err = {0};
    char summary[8192];
    qs_status st = qs_verify_dir(dir, summary, sizeof(summary), &err);
    if (st != QS_OK) {
        fprintf(stderr, "qshard: error: %s\n", err.msg);
        return qs_status_exit_code(st);
    }
    fputs(summary, stdout);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fputs(USAGE, stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (is_help(cmd) || strcmp(cmd, "help") == 0) {
        fputs(USAGE, stdout);
        return 0;
    }
    if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "version") == 0) {
        printf("qshard %s\n", QS_VERSION);
        return 0;
    }
    /* commands on ranks (comm_finish checks their HDF5 identifiers before MPI ends) */
    if (strcmp(cmd, "run") == 0) return cmd_run(argc, argv);
    if (strcmp(cmd, "tokenize") == 0) return cmd_tokenize(argc, argv);
    if (strcmp(cmd, "eval") == 0) return cmd_eval(argc, argv);
    /* commands without MPI */
    if (strcmp(cmd, "plan") == 0) return h5_closed(-1, cmd_plan(argc, argv));
    if (strcmp(cmd, "inspect") == 0) return h5_closed(-1, cmd_inspect(argc, argv));
    if (strcmp(cmd, "synth-model") == 0) return h5_closed(-1, cmd_synth(argc, argv));
    if (strcmp(cmd, "report") == 0) return h5_closed(-1, cmd_report(argc, argv));
    if (strcmp(cmd, "sweep") == 0) return h5_closed(-1, cmd_sweep(argc, argv));
    if (strcmp(cmd, "collect") == 0) return h5_closed(-1, cmd_collect(argc, argv));
    if (strcmp(cmd, "verify") == 0) return h5_closed(-1, cmd_verify(argc, argv));
    if (strcmp(cmd, "convert") == 0) return h5_closed(-1, cmd_convert(argc, argv));
    fprintf(stderr, "qshard: error: unknown command '%s' (see 'qshard --help')\n", cmd);
    return 2;
}
