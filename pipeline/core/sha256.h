/* sha256.h: SHA-256 (FIPS 180-4) for manifests: checksums of outputs, hashes of inputs
 * and of the resolved config. The streaming interface (small inputs: configs, token
 * windows, headers) is written from the standard; a whole file, the bulk of the bytes
 * hashed (layer files of gigabytes), goes through libcrypto's SHA-256, which uses the
 * CPU's SHA extensions. test_rundir checks that the two agree.
 * A qs_sha256 is a plain value; nothing to free.
 */
#ifndef QS_SHA256_H
#define QS_SHA256_H

#include <stddef.h>
#include <stdint.h>

#include "status.h"

typedef struct qs_sha256 {
    uint32_t h[8];
    uint64_t nbytes;
    unsigned char buf[64];
    size_t nbuf;
} qs_sha256;

void qs_sha256_init(qs_sha256 *s);
void qs_sha256_update(qs_sha256 *s, const void *data, size_t n);
/* Writes the digest as 64 lowercase hex characters + NUL into hex (65 bytes). */
void qs_sha256_final_hex(qs_sha256 *s, char hex[65]);

/* Digest of a whole buffer. */
void qs_sha256_hex(const void *data, size_t n, char hex[65]);

/* Digest of a file's contents (read in blocks, libcrypto). Errors name the file. */
qs_status qs_sha256_file(const char *path, char hex[65], qs_err *err);

#endif /* QS_SHA256_H */
