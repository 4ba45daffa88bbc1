/* test_rundir.c: SHA-256 known answers, durable writes, manifests (match, mismatch,
 * tampered output), and that no temp file is left behind after a failed write. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "rundir.h"
#include "sha256.h"

int main(void) {
    char hex[65];
    qs_sha256_hex("", 0, hex);
    CHECK(strcmp(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855") == 0,
          "sha256 empty");
    qs_sha256_hex("abc", 3, hex);
    CHECK(strcmp(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad") == 0,
          "sha256 abc");
    {
        const char *m = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
        qs_sha256 s;
        qs_sha256_init(&s);
        for (size_t i = 0; i < strlen(m); ++i) qs_sha256_update(&s, m + i, 1);
        qs_sha256_final_hex(&s, hex);
        CHECK(strcmp(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1") == 0,
              "sha256 448 bits streamed");
        char *mil = malloc(1000000);
        memset(mil, 'a', 1000000);
        qs_sha256_hex(mil, 1000000, hex);
        free(mil);
        CHECK(strcmp(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0") == 0,
              "sha256 million a");
    }

    char root[512];
    qs_test_tmpdir(root, sizeof(root), "rundir");
    qs_err err = {0};
    qs_rundir rd;
    CHECK(qs_rundir_init(&rd, root, &err) == QS_OK, "init");
    CHECK(qs_rundir_mkdir(&rd, "plan/sub", &err) == QS_OK, "mkdir -p");
    char path[QS_PATH_MAX];
    qs_rundir_path(&rd, "plan/out.txt", path, sizeof(path), &err);
    CHECK(qs_write_file_atomic(path, "hello\n", 6, &err) == QS_OK, "atomic write");
    char *back = NULL;
    size_t n = 0;
    CHECK(qs_read_file(path, &back, &n, &err) == QS_OK && n == 6 && strcmp(back, "hello\n") == 0,
          "read back");
    free(back);
    /* a file's digest (libcrypto) equals the streamed one (this code) around block and read
     * boundaries (64 B blocks, 64 KiB reads); a missing file is an error naming it */
    {
        static const size_t sizes[] = {0, 1, 55, 56, 63, 64, 65, 65535, 65536, 65537, 1000003};
        unsigned char *data = malloc(1000003);
        uint32_t x = 12345u;
        for (size_t i = 0; i < 1000003; ++i) {
            x = x * 1664525u + 1013904223u;
            data[i] = (unsigned char)(x >> 24);
        }
        char fpath[QS_PATH_MAX], fhex[65];
        qs_rundir_path(&rd, "plan/blob.bin", fpath, sizeof(fpath), &err);
        for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); ++k) {
            CHECK(qs_write_file_atomic(fpath, data, sizes[k], &err) == QS_OK, "write blob");
            CHECK(qs_sha256_file(fpath, fhex, &err) == QS_OK, "hash blob: %s", err.msg);
            qs_sha256 s;
            qs_sha256_init(&s);
            for (size_t i = 0; i < sizes[k]; i += 1000) /* streamed in uneven pieces */
                qs_sha256_update(&s, data + i, sizes[k] - i < 1000 ? sizes[k] - i : 1000);
            qs_sha256_final_hex(&s, hex);
            CHECK(strcmp(hex, fhex) == 0, "file digest = streamed digest at %zu bytes",
                  sizes[k]);
        }
        free(data);
        unlink(fpath);
        qs_rundir_path(&rd, "plan/absent.bin", fpath, sizeof(fpath), &err);
        memset(&err, 0, sizeof(err));
        CHECK(qs_sha256_file(fpath, fhex, &err) == QS_ERR_INPUT && strstr(err.msg, "absent.bin"),
              "missing file: %s", err.msg);
    }
    {
        char plan_dir[QS_PATH_MAX];
        qs_rundir_path(&rd, "plan", plan_dir, sizeof(plan_dir), &err);
        CHECK(qs_test_count_entries(plan_dir, NULL) == 2, "no temp file left (out.txt + sub)");
    }
    /* abandoned write leaves nothing */
    {
        qs_atomic a;
        char p2[QS_PATH_MAX];
        qs_rundir_path(&rd, "plan/never.txt", p2, sizeof(p2), &err);
        CHECK(qs_atomic_open(&a, p2, &err) == QS_OK, "atomic open");
        fputs("partial", a.f);
        qs_atomic_abandon(&a);
        CHECK(!qs_path_exists(p2), "abandoned target absent");
        char plan_dir[QS_PATH_MAX];
        qs_rundir_path(&rd, "plan", plan_dir, sizeof(plan_dir), &err);
        CHECK(qs_test_count_entries(plan_dir, NULL) == 2, "abandoned temp removed");
    }
    /* writing into a missing directory is an error naming the file */
    {
        qs_err e2 = {0};
        qs_status st = qs_write_file_atomic("/nonexistent-dir-qs/x.json", "x", 1, &e2);
        CHECK(st == QS_ERR_INPUT && strstr(e2.msg, "/nonexistent-dir-qs/x.json") != NULL,
              "missing dir error");
    }
    /* manifests */
    qs_manifest want, have;
    qs_manifest_init(&want, "plan", "0123456789012345678901234567890123456789012345678901234567890123");
    CHECK(qs_manifest_add_input(&want, "model",
                                "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
                                &err) == QS_OK,
          "add input");
    CHECK(qs_manifest_add_output(&want, &rd, "plan/out.txt", &err) == QS_OK, "add output");
    CHECK(qs_manifest_write(&want, &rd, &err) == QS_OK, "write manifest");
    int found = 0, matches = 0;
    CHECK(qs_manifest_read(&have, &rd, "plan", &found, &err) == QS_OK && found, "read manifest");
    CHECK(qs_manifest_check(&have, &want, &rd, &matches, &err) == QS_OK && matches, "matches");
    /* a different config hash does not match */
    {
        qs_manifest other;
        qs_manifest_init(&other, "plan", "ffff456789012345678901234567890123456789012345678901234567890123");
        qs_manifest_add_input(&other, "model",
                              "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", &err);
        qs_manifest_check(&have, &other, &rd, &matches, &err);
        CHECK(!matches, "config mismatch detected");
        qs_manifest_free(&other);
    }
    /* a tampered output does not match */
    qs_write_file_atomic(path, "HELLO\n", 6, &err);
    qs_manifest_check(&have, &want, &rd, &matches, &err);
    CHECK(!matches, "tampered output detected");
    qs_manifest_free(&have);
    qs_manifest_free(&want);
    /* missing manifest: found = 0 */
    CHECK(qs_manifest_read(&have, &rd, "calib", &found, &err) == QS_OK && !found, "absent");
    qs_manifest_free(&have);
    qs_rundir_free(&rd);
    qs_test_rm_rf(root);
    return qs_test_finish("test_rundir");
}
