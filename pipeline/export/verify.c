/* verify.c: `qshard verify` (see verify.h). */
#include "verify.h"

#include <dirent.h>
#include <stdio.h>
#include <string.h>

#include "qsource.h"
#include "rundir.h"
#include "sha256.h"

static int is_dir(const char *p) {
    DIR *d = opendir(p);
    if (d) closedir(d);
    return d != NULL;
}

static qs_status verify_export(const char *dir, char *summary, size_t n, qs_err *err) {
    qs_status st = QS_OK;
    qs_qsource s;
    int64_t nl = 0, nt = 0;
    memset(&s, 0, sizeof(s));
    QS_CHECK(qs_qsource_open_gptq(&s, dir, err));
    QS_CHECK(qs_qsource_verify(&s, &nl, &nt, err));
    snprintf(summary + strlen(summary), n - strlen(summary),
             "%s: GPTQ export ok (%lld quantized linears, %lld tensors)\n", dir, (long long)nl,
             (long long)nt);
done:
    qs_qsource_close(&s);
    return st;
}

/* A GGUF file: header, tensor infos and every tensor decoded. */
static qs_status verify_gguf(const char *file, char *summary, size_t n, qs_err *err) {
    qs_status st = QS_OK;
    qs_qsource s;
    int64_t nl = 0, nt = 0;
    memset(&s, 0, sizeof(s));
    QS_CHECK(qs_qsource_open_gguf(&s, file, err));
    QS_CHECK(qs_qsource_verify(&s, &nl, &nt, err));
    snprintf(summary + strlen(summary), n - strlen(summary),
             "%s: GGUF file ok (%lld quantized tensors, %lld float tensors)\n", file,
             (long long)nl, (long long)nt);
done:
    qs_qsource_close(&s);
    return st;
}

qs_status qs_verify_dir(const char *dir, char *summary, size_t n, qs_err *err) {
    qs_status st = QS_OK;
    qs_rundir rd;
    qs_manifest m;
    qs_qsource s;
    char path[QS_PATH_MAX];
    int found = 0;
    memset(&rd, 0, sizeof(rd));
    memset(&m, 0, sizeof(m));
    memset(&s, 0, sizeof(s));
    summary[0] = '\0';
    char st_path[QS_PATH_MAX], idx_path[QS_PATH_MAX];
    snprintf(st_path, sizeof(st_path), "%s/model.safetensors", dir);
    snprintf(idx_path, sizeof(idx_path), "%s/model.safetensors.index.json", dir);
    if (qs_path_exists(st_path) || qs_path_exists(idx_path)) {
        st = verify_export(dir, summary, n, err);
        goto done;
    }
    const size_t dl = strlen(dir);
    if (dl > 5 && strcmp(dir + dl - 5, ".gguf") == 0 && !is_dir(dir)) {
        st = verify_gguf(dir, summary, n, err);
        goto done;
    }
    QS_CHECK(qs_rundir_init(&rd, dir, err));
    QS_CHECK(qs_manifest_read(&m, &rd, QS_DIR_OUT, &found, err));
    if (!found)
        QS_THROW(err, QS_ERR_INPUT, "%s: neither a run directory with out/manifest.json nor a "
                 "GPTQ export (model.safetensors or model.safetensors.index.json)", dir);
    for (int i = 0; i < m.noutputs; ++i) {
        char hex[65];
        QS_CHECK(qs_rundir_path(&rd, m.outputs[i].name, path, sizeof(path), err));
        if (!qs_path_exists(path))
            QS_THROW(err, QS_ERR_INPUT, "%s: missing (listed in out/manifest.json)", path);
        QS_CHECK(qs_sha256_file(path, hex, err));
        if (strcmp(hex, m.outputs[i].hash) != 0)
            QS_THROW(err, QS_ERR_INPUT, "%s: SHA-256 differs from out/manifest.json", path);
    }
    snprintf(summary, n, "%s: %d output(s) match out/manifest.json\n", dir, m.noutputs);
    QS_CHECK(qs_rundir_path(&rd, QS_DIR_OUT, path, sizeof(path), err));
    QS_CHECK(qs_qsource_open_h5(&s, path, err));
    {
        int64_t nl = 0, nt = 0;
        QS_CHECK(qs_qsource_verify(&s, &nl, &nt, err));
        snprintf(summary + strlen(summary), n - strlen(summary),
                 "%s: HDF5 shards ok (%lld quantized linears, %lld tensors)\n", path,
                 (long long)nl, (long long)nt);
    }
    QS_CHECK(qs_rundir_path(&rd, QS_DIR_EXPORT, path, sizeof(path), err));
    if (is_dir(path)) QS_CHECK(verify_export(path, summary, n, err));
    QS_CHECK(qs_rundir_path(&rd, QS_REL_GGUF, path, sizeof(path), err));
    if (qs_path_exists(path)) QS_CHECK(verify_gguf(path, summary, n, err));
done:
    qs_qsource_close(&s);
    qs_manifest_free(&m);
    qs_rundir_free(&rd);
    return st;
}
