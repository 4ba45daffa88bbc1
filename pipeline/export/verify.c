/* verify.c: `qshard verify` (see verify.h). */
#include "verify.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "checksums.h"
#include "qsource.h"
#include "rundir.h"
#include "sha256.h"

static int is_dir(const char *p) {
    DIR *d = opendir(p);
    if (d) closedir(d);
    return d != NULL;
}

/* 1 if dir/config.json names quant_method "compressed-tensors". */
static int is_compressed_tensors(const char *dir) {
    char path[QS_PATH_MAX + 16], *text = NULL;
    qs_err e = {0};
    snprintf(path, sizeof(path), "%s/config.json", dir);
    if (qs_read_file(path, &text, NULL, &e) != QS_OK) return 0;
    cJSON *o = cJSON_Parse(text);
    const cJSON *qc = cJSON_GetObjectItemCaseSensitive(o, "quantization_config");
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(qc, "quant_method");
    const int ct = cJSON_IsString(m) && strcmp(m->valuestring, "compressed-tensors") == 0;
    cJSON_Delete(o);
    free(text);
    return ct;
}

static qs_status verify_export(const char *dir, char *summary, size_t n, qs_err *err) {
    qs_status st = QS_OK;
    qs_qsource s;
    int64_t nl = 0, nt = 0;
    memset(&s, 0, sizeof(s));
    int64_t nck = 0;
    QS_CHECK(qs_checksums_verify(dir, &nck, err));
    const int ct = is_compressed_tensors(dir);
    QS_CHECK(ct ? qs_qsource_open_ct(&s, dir, err) : qs_qsource_open_gptq(&s, dir, err));
    QS_CHECK(qs_qsource_verify(&s, &nl, &nt, err));
    snprintf(summary + strlen(summary), n - strlen(summary),
             "%s: %s export ok (%lld quantized linears, %lld tensors, %lld file(s) match %s)\n",
             dir, ct ? "compressed-tensors" : "GPTQ", (long long)nl, (long long)nt,
             (long long)nck, QS_CHECKSUMS_FILE);
done:
    qs_qsource_close(&s);
    return st;
}

/* A GGUF file: header, tensor infos and every tensor decoded. */
static qs_status verify_gguf(const char *file, char *summary, size_t n, qs_err *err) {
    qs_status st = QS_OK;
    qs_qsource s;
    int64_t nl = 0, nt = 0;
    int64_t nck = 0;
    char dir[QS_PATH_MAX];
    memset(&s, 0, sizeof(s));
    snprintf(dir, sizeof(dir), "%s", file);
    char *slash = strrchr(dir, '/');
    if (slash) *slash = '\0';
    QS_CHECK(qs_checksums_verify(slash ? dir : ".", &nck, err));
    QS_CHECK(qs_qsource_open_gguf(&s, file, err));
    QS_CHECK(qs_qsource_verify(&s, &nl, &nt, err));
    snprintf(summary + strlen(summary), n - strlen(summary),
             "%s: GGUF file ok (%lld quantized tensors, %lld float tensors, %lld file(s) match "
             "%s)\n",
             file, (long long)nl, (long long)nt, (long long)nck, QS_CHECKSUMS_FILE);
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
    QS_CHECK(qs_rundir_path(&rd, QS_DIR_EXPORT_CT, path, sizeof(path), err));
    if (is_dir(path)) QS_CHECK(verify_export(path, summary, n, err));
    QS_CHECK(qs_rundir_path(&rd, QS_REL_GGUF, path, sizeof(path), err));
    if (qs_path_exists(path)) QS_CHECK(verify_gguf(path, summary, n, err));
done:
    qs_qsource_close(&s);
    qs_manifest_free(&m);
    qs_rundir_free(&rd);
    return st;
}
