/* check.h: the one assertion family of the C unit tests, and the small helpers they share.
 * Every tests/unit/test_*.c includes it; each test is one program, so the failure count
 * below is per program (a test file is its only translation unit).
 *
 * Assertions (a failed check is reported and counted, the test goes on):
 *   CHECK(cond, fmt, ...)            "FAIL file:line: cond: message" on stderr
 *   CHECK_AT(file, line, cond, fmt, ...)
 *                                    the same at a caller's file:line (for helpers that
 *                                    check on behalf of the line that called them)
 *   CHECK_NEAR(a, b, tol, fmt, ...)  |a - b| <= tol in double precision; a NaN fails;
 *                                    prints both values and the tolerance
 * The message is a printf format (a literal; pass "%s", text for other strings).
 *
 * Ending a test: `return qs_test_finish("test_name");` prints "test_name: ok" (exit 0) or
 * "test_name: N check(s) failed" (exit 1).
 *
 * Helpers (malloc'd results are the caller's to free):
 *   qs_test_max_abs_diff(a, b, n)    max |a[i] - b[i]| of two float arrays, a NaN wins
 *   qs_test_urand(&state)            splitmix64 -> uniform [0, 1) on the caller's state
 *   qs_test_nrand(&state)            a standard normal float from two qs_test_urand
 *   qs_test_xorshift32(&state), qs_test_xorshift64(&state)
 *                                    Marsaglia's xorshift (13, 17, 5) and (13, 7, 17)
 *   qs_test_tmpdir(out, cap, name)   creates $TMPDIR/qs_<name>_XXXXXX (or /tmp/...); on
 *                                    failure prints why and exits 1
 *   qs_test_rm_rf(path)              removes a file tree (depth first, links not followed)
 *   qs_test_exists(path)             1 if stat() succeeds
 *   qs_test_read_file(path, &len)    whole file, NUL-terminated; NULL if unreadable
 *   qs_test_write_file(path, p, n)   whole file; 0, or -1 (a failed check) on error
 *   qs_test_files_equal(a, b)        1 if both are readable and byte-identical
 *   qs_test_count_entries(dir, sub)  entries of dir except . and .. (only names containing
 *                                    `sub` unless it is NULL); -1 if dir cannot be read
 *   qs_test_need_dir(path)           for tests of ../shared: 0 when path is a directory;
 *                                    otherwise 77 (skip: print why) or, with
 *                                    QS_REQUIRE_SHARED=1, 1 (a failure)
 */
#ifndef QS_TEST_CHECK_H
#define QS_TEST_CHECK_H

#include <dirent.h>
#include <ftw.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int qs_test_failures = 0;

#define CHECK_AT(file, line, cond, ...)                                       \
    do {                                                                      \
        if (!(cond)) {                                                        \
            fprintf(stderr, "FAIL %s:%d: %s: ", (file), (line), #cond);       \
            fprintf(stderr, __VA_ARGS__);                                     \
            fputc('\n', stderr);                                              \
            ++qs_test_failures;                                               \
        }                                                                     \
    } while (0)

#define CHECK(cond, ...) CHECK_AT(__FILE__, __LINE__, cond, __VA_ARGS__)

#define CHECK_NEAR(a, b, tol, ...)                                                    \
    do {                                                                              \
        double qs_check_a_ = (double)(a), qs_check_b_ = (double)(b);                  \
        double qs_check_t_ = (double)(tol);                                           \
        if (!(fabs(qs_check_a_ - qs_check_b_) <= qs_check_t_)) {                      \
            fprintf(stderr, "FAIL %s:%d: |%s - %s| <= %s: %.17g vs %.17g (tol %.3g): ", \
                    __FILE__, __LINE__, #a, #b, #tol, qs_check_a_, qs_check_b_,       \
                    qs_check_t_);                                                     \
            fprintf(stderr, __VA_ARGS__);                                             \
            fputc('\n', stderr);                                                      \
            ++qs_test_failures;                                                       \
        }                                                                             \
    } while (0)

static inline int qs_test_finish(const char *name) {
    if (qs_test_failures) {
        fprintf(stderr, "%s: %d check(s) failed\n", name, qs_test_failures);
        return 1;
    }
    printf("%s: ok\n", name);
    return 0;
}

static inline double qs_test_max_abs_diff(const float *a, const float *b, int64_t n) {
    double m = 0.0;
    for (int64_t i = 0; i < n; ++i) {
        double e = fabs((double)a[i] - (double)b[i]);
        if (!(e <= m)) m = e; /* a NaN replaces the maximum and fails any <= test */
    }
    return m;
}

static inline double qs_test_urand(uint64_t *state) {
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return (double)(z >> 11) * (1.0 / 9007199254740992.0);
}

static inline float qs_test_nrand(uint64_t *state) { /* Box-Muller */
    double u1 = qs_test_urand(state), u2 = qs_test_urand(state);
    return (float)(sqrt(-2.0 * log(u1 + 1e-300)) * cos(6.283185307179586 * u2));
}

static inline uint32_t qs_test_xorshift32(uint32_t *state) {
    *state ^= *state << 13;
    *state ^= *state >> 17;
    *state ^= *state << 5;
    return *state;
}

static inline uint64_t qs_test_xorshift64(uint64_t *state) {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    return *state;
}

static inline void qs_test_tmpdir(char *out, size_t cap, const char *name) {
    const char *t = getenv("TMPDIR");
    int k = snprintf(out, cap, "%s/qs_%s_XXXXXX", t && *t ? t : "/tmp", name);
    if (k < 0 || (size_t)k >= cap || !mkdtemp(out)) {
        perror("qs_test_tmpdir: mkdtemp");
        exit(1);
    }
}

static inline int qs_test_rm_entry(const char *p, const struct stat *sb, int flag,
                                   struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    remove(p);
    return 0;
}

static inline void qs_test_rm_rf(const char *path) {
    nftw(path, qs_test_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static inline int qs_test_exists(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0;
}

static inline unsigned char *qs_test_read_file(const char *path, size_t *len) {
    if (len) *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    unsigned char *p = NULL;
    long n = -1;
    if (fseek(f, 0, SEEK_END) == 0) n = ftell(f);
    if (n >= 0 && fseek(f, 0, SEEK_SET) == 0) p = malloc((size_t)n + 1);
    if (p && fread(p, 1, (size_t)n, f) != (size_t)n) {
        free(p);
        p = NULL;
    }
    fclose(f);
    if (p) {
        p[n] = 0;
        if (len) *len = (size_t)n;
    }
    return p;
}

static inline int qs_test_write_file(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL, "cannot write %s", path);
    if (!f) return -1;
    int ok = n == 0 || fwrite(data, 1, n, f) == n;
    ok = (fclose(f) == 0) && ok;
    CHECK(ok, "short write %s", path);
    return ok ? 0 : -1;
}

static inline int qs_test_files_equal(const char *a, const char *b) {
    size_t na, nb;
    unsigned char *pa = qs_test_read_file(a, &na), *pb = qs_test_read_file(b, &nb);
    int eq = pa && pb && na == nb && memcmp(pa, pb, na) == 0;
    free(pa);
    free(pb);
    return eq;
}

static inline int qs_test_count_entries(const char *dir, const char *sub) {
    DIR *d = opendir(dir);
    if (!d) return -1;
    int n = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        if (!sub || strstr(e->d_name, sub)) ++n;
    }
    closedir(d);
    return n;
}

static inline int qs_test_need_dir(const char *path) {
    struct stat sb;
    if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode)) return 0;
    const char *req = getenv("QS_REQUIRE_SHARED");
    if (req && strcmp(req, "1") == 0) {
        fprintf(stderr, "FAIL: fixture missing: %s (QS_REQUIRE_SHARED=1)\n", path);
        return 1;
    }
    printf("skip: no shared fixtures (%s)\n", path);
    return 77;
}

#endif /* QS_TEST_CHECK_H */
