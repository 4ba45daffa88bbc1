/* tokens.c: token files (.u32/.u16) through mmap, validation, window sampling. */
#include "tokens.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

/* Every id < vocab (named by the first bad one). */
static qs_status check_ids(const qs_tokens *t, int64_t vocab, qs_err *err) {
    for (int64_t i = 0; i < t->count; ++i) {
        uint32_t id = qs_tokens_get(t, i);
        if ((int64_t)id >= vocab)
            return QS_FAIL(err, QS_ERR_INPUT,
                           "%s: token id %u at index %lld is >= vocab size %lld", t->path, id,
                           (long long)i, (long long)vocab);
    }
    return QS_OK;
}

qs_status qs_tokens_open(qs_tokens *t, const char *path, int64_t vocab, qs_err *err) {
    qs_status st = QS_OK;
    int fd = -1;
    memset(t, 0, sizeof(*t));
    if (ends_with(path, ".u32"))
        t->width = 4;
    else if (ends_with(path, ".u16"))
        t->width = 2;
    else
        return QS_FAIL(err, QS_ERR_INPUT,
                       "%s: unknown token file type (expected .u32 or .u16 raw little-endian ids)",
                       path);
    size_t plen = strlen(path) + 1;
    t->path = qs_malloc(plen, err, "token path");
    if (!t->path) return QS_ERR_RUNTIME;
    memcpy(t->path, path, plen);
    fd = open(path, O_RDONLY);
    if (fd < 0)
        QS_THROW(err, errno == ENOENT || errno == EACCES ? QS_ERR_INPUT : QS_ERR_RUNTIME,
                 "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode))
        QS_THROW(err, QS_ERR_INPUT, "%s: not a regular file", path);
    if (sb.st_size == 0) QS_THROW(err, QS_ERR_INPUT, "%s: token file is empty", path);
    if ((uint64_t)sb.st_size % (uint64_t)t->width != 0)
        QS_THROW(err, QS_ERR_INPUT, "%s: size %lld is not a multiple of %d bytes per token",
                 path, (long long)sb.st_size, t->width);
    t->map_size = (uint64_t)sb.st_size;
    void *m = mmap(NULL, (size_t)t->map_size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (m == MAP_FAILED) QS_THROW(err, QS_ERR_RUNTIME, "%s: mmap: %s", path, strerror(errno));
    t->map = m;
    t->count = (int64_t)(t->map_size / (uint64_t)t->width);
    QS_CHECK(check_ids(t, vocab, err));
done:
    if (fd >= 0) close(fd);
    if (st != QS_OK) qs_tokens_close(t);
    return st;
}

qs_status qs_tokens_from_ids(qs_tokens *t, const char *name, uint32_t *ids, int64_t n,
                             int64_t vocab, qs_err *err) {
    memset(t, 0, sizeof(*t));
    t->owned = ids;
    t->map = (const unsigned char *)ids;
    t->width = 4;
    t->count = n;
    t->map_size = (uint64_t)n * 4;
    size_t plen = strlen(name) + 1;
    t->path = qs_malloc(plen, err, "token source name");
    qs_status st = t->path ? QS_OK : QS_ERR_RUNTIME;
    if (st == QS_OK) memcpy(t->path, name, plen);
    if (st == QS_OK && n == 0) st = QS_FAIL(err, QS_ERR_INPUT, "%s: no token ids", name);
    if (st == QS_OK) st = check_ids(t, vocab, err);
    if (st != QS_OK) qs_tokens_close(t);
    return st;
}

void qs_tokens_close(qs_tokens *t) {
    if (t->owned) free(t->owned);
    else if (t->map) munmap((void *)t->map, (size_t)t->map_size);
    free(t->path);
    memset(t, 0, sizeof(*t));
}

uint32_t qs_tokens_get(const qs_tokens *t, int64_t i) {
    const unsigned char *p = t->map + (size_t)i * (size_t)t->width;
    if (t->width == 2) return (uint32_t)p[0] | ((uint32_t)p[1] << 8);
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
           ((uint32_t)p[3] << 24);
}

void qs_tokens_copy(const qs_tokens *t, int64_t start, int64_t n, int32_t *out) {
    for (int64_t i = 0; i < n; ++i) out[i] = (int32_t)qs_tokens_get(t, start + i);
}

static uint64_t splitmix64(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* Uniform integer in [0, n) without modulo bias (rejection sampling). */
static uint64_t uniform_below(uint64_t *s, uint64_t n) {
    uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t r;
    do r = splitmix64(s);
    while (r >= limit);
    return r % n;
}

qs_status qs_tokens_windows(const qs_tokens *t, qs_calib_sampling sampling, int64_t nsamples,
                            int64_t seqlen, uint64_t seed, const char *offsets_file,
                            int64_t *offsets, qs_err *err) {
    qs_status st = QS_OK;
    FILE *f = NULL;
    if (nsamples <= 0 || seqlen <= 0)
        return QS_FAIL(err, QS_ERR_INPUT, "%s: need nsamples > 0 and seqlen > 0", t->path);
    if (t->count < seqlen)
        return QS_FAIL(err, QS_ERR_INPUT,
                       "%s: %lld tokens is shorter than one window of %lld tokens", t->path,
                       (long long)t->count, (long long)seqlen);
    int64_t last = t->count - seqlen; /* largest valid start */
    if (sampling == QS_SAMPLING_RANDOM) {
        uint64_t s = seed;
        for (int64_t i = 0; i < nsamples; ++i)
            offsets[i] = (int64_t)uniform_below(&s, (uint64_t)last + 1);
    } else if (sampling == QS_SAMPLING_CONSECUTIVE) {
        if (nsamples > t->count / seqlen)
            return QS_FAIL(err, QS_ERR_INPUT,
                           "%s: %lld tokens hold only %lld consecutive windows of %lld, "
                           "%lld requested",
                           t->path, (long long)t->count, (long long)(t->count / seqlen),
                           (long long)seqlen, (long long)nsamples);
        for (int64_t i = 0; i < nsamples; ++i) offsets[i] = i * seqlen;
    } else {
        if (!offsets_file || !*offsets_file)
            return QS_FAIL(err, QS_ERR_INPUT, "calib.offsets_file: required for sampling: file");
        f = fopen(offsets_file, "r");
        if (!f)
            return QS_FAIL(err, QS_ERR_INPUT, "%s: cannot open: %s", offsets_file,
                           strerror(errno));
        char line[256];
        int64_t i = 0, lineno = 0;
        while (i < nsamples && fgets(line, sizeof(line), f)) {
            ++lineno;
            char *p = line;
            while (*p == ' ' || *p == '\t') ++p;
            if (*p == '\n' || *p == '\0' || *p == '#') continue;
            errno = 0;
            char *end = NULL;
            long long v = strtoll(p, &end, 10);
            while (end && (*end == ' ' || *end == '\t' || *end == '\r' || *end == '\n')) ++end;
            if (errno || end == p || (end && *end) || v < 0)
                QS_THROW(err, QS_ERR_INPUT, "%s:%lld: not a non-negative integer offset",
                         offsets_file, (long long)lineno);
            if (v > last)
                QS_THROW(err, QS_ERR_INPUT,
                         "%s:%lld: offset %lld + seqlen %lld is past the end of %s (%lld tokens)",
                         offsets_file, (long long)lineno, v, (long long)seqlen, t->path,
                         (long long)t->count);
            offsets[i++] = v;
        }
        if (i < nsamples)
            QS_THROW(err, QS_ERR_INPUT, "%s: lists %lld offsets, calib.nsamples is %lld",
                     offsets_file, (long long)i, (long long)nsamples);
    }
done:
    if (f) fclose(f);
    return st;
}
