/* corpus.c: .txt / .jsonl / directory inputs -> documents -> ids. */
#include "corpus.h"

#include <cjson/cJSON.h>
#include <dirent.h>
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

static int kind_of(const char *path, qs_corpus_kind *kind) {
    if (ends_with(path, ".txt")) {
        *kind = QS_CORPUS_TXT;
        return 1;
    }
    if (ends_with(path, ".jsonl")) {
        *kind = QS_CORPUS_JSONL;
        return 1;
    }
    return 0;
}

static qs_status add_doc(qs_corpus *c, size_t *cap, uint32_t file, uint64_t off, uint64_t len,
                         int64_t line, qs_err *err) {
    if ((size_t)c->ndocs == *cap) {
        size_t n = *cap ? *cap * 2 : 1024;
        qs_corpus_doc *d = realloc(c->docs, n * sizeof(*d));
        if (!d) return QS_FAIL(err, QS_ERR_RUNTIME, "out of memory (%zu documents)", n);
        c->docs = d;
        *cap = n;
    }
    qs_corpus_doc *d = &c->docs[c->ndocs++];
    d->file = file;
    d->pad = 0;
    d->off = off;
    d->len = len;
    d->line = line;
    c->bytes += len;
    return QS_OK;
}

static int blank(const char *s, size_t n) {
    for (size_t i = 0; i < n; ++i)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\f' && s[i] != '\v') return 0;
    return 1;
}

/* Finds the documents of file f (mapped). */
static qs_status scan_file(qs_corpus *c, size_t *cap, uint32_t f, qs_err *err) {
    qs_status st = QS_OK;
    const qs_corpus_file *cf = &c->files[f];
    const char *m = cf->map;
    size_t n = cf->size, pos = 0;
    int64_t before = c->ndocs, line = 0;
    if (n >= 3 && memcmp(m, "\xEF\xBB\xBF", 3) == 0) pos = 3;
    int64_t doc_line = 0;
    size_t doc_start = 0, doc_end = 0;
    int in_doc = 0;
    while (pos < n) {
        ++line;
        const char *nl = memchr(m + pos, '\n', n - pos);
        size_t end = nl ? (size_t)(nl - m) : n; /* line is [pos, end) */
        size_t next = nl ? end + 1 : n;
        int is_blank = blank(m + pos, end - pos);
        if (cf->kind == QS_CORPUS_JSONL) {
            if (!is_blank) QS_CHECK(add_doc(c, cap, f, pos, end - pos, line, err));
        } else if (is_blank) {
            if (in_doc) QS_CHECK(add_doc(c, cap, f, doc_start, doc_end - doc_start, doc_line, err));
            in_doc = 0;
        } else {
            if (!in_doc) {
                doc_start = pos;
                doc_line = line;
                in_doc = 1;
            }
            doc_end = end > pos && m[end - 1] == '\r' && nl ? end - 1 : end;
        }
        pos = next;
    }
    if (in_doc) QS_CHECK(add_doc(c, cap, f, doc_start, doc_end - doc_start, doc_line, err));
    if (c->ndocs == before)
        QS_THROW(err, QS_ERR_INPUT, "%s: no text (the file is empty or holds only blank lines)", cf->path);
done:
    return st;
}

static qs_status add_file(qs_corpus *c, const char *path, qs_corpus_kind kind, qs_err *err) {
    qs_corpus_file *nf = realloc(c->files, (size_t)(c->nfiles + 1) * sizeof(*nf));
    if (!nf) return QS_FAIL(err, QS_ERR_RUNTIME, "out of memory");
    c->files = nf;
    qs_corpus_file *f = &c->files[c->nfiles];
    memset(f, 0, sizeof(*f));
    f->kind = kind;
    f->path = strdup(path);
    if (!f->path) return QS_FAIL(err, QS_ERR_RUNTIME, "out of memory");
    ++c->nfiles;
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return QS_FAIL(err, errno == ENOENT || errno == EACCES ? QS_ERR_INPUT : QS_ERR_RUNTIME,
                       "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        close(fd);
        return QS_FAIL(err, QS_ERR_RUNTIME, "%s: stat: %s", path, strerror(errno));
    }
    if (sb.st_size == 0) {
        close(fd);
        return QS_FAIL(err, QS_ERR_INPUT, "%s: no text (the file is empty or holds only blank lines)",
                       path);
    }
    void *m = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (m == MAP_FAILED) return QS_FAIL(err, QS_ERR_RUNTIME, "%s: mmap: %s", path, strerror(errno));
    f->map = m;
    f->size = (size_t)sb.st_size;
    return QS_OK;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Appends the .txt/.jsonl files below dir (sorted, recursive) to *list. */
static qs_status walk(const char *dir, char ***list, size_t *n, size_t *cap, qs_err *err) {
    qs_status st = QS_OK;
    DIR *d = opendir(dir);
    char **names = NULL;
    size_t nn = 0, nc = 0;
    if (!d) return QS_FAIL(err, QS_ERR_INPUT, "%s: cannot open directory: %s", dir, strerror(errno));
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        if (nn == nc) {
            nc = nc ? nc * 2 : 64;
            char **x = realloc(names, nc * sizeof(char *));
            if (!x) QS_THROW(err, QS_ERR_RUNTIME, "out of memory");
            names = x;
        }
        names[nn] = strdup(e->d_name);
        if (!names[nn]) QS_THROW(err, QS_ERR_RUNTIME, "out of memory");
        ++nn;
    }
    qsort(names, nn, sizeof(char *), cmp_str);
    for (size_t i = 0; i < nn; ++i) {
        size_t len = strlen(dir) + strlen(names[i]) + 2;
        char *p = malloc(len);
        if (!p) QS_THROW(err, QS_ERR_RUNTIME, "out of memory");
        snprintf(p, len, "%s/%s", dir, names[i]);
        struct stat sb;
        qs_corpus_kind k;
        if (stat(p, &sb) == 0 && S_ISDIR(sb.st_mode)) {
            st = walk(p, list, n, cap, err);
            free(p);
            if (st != QS_OK) goto done;
        } else if (stat(p, &sb) == 0 && S_ISREG(sb.st_mode) && kind_of(p, &k)) {
            if (*n == *cap) {
                *cap = *cap ? *cap * 2 : 64;
                char **x = realloc(*list, *cap * sizeof(char *));
                if (!x) {
                    free(p);
                    QS_THROW(err, QS_ERR_RUNTIME, "out of memory");
                }
                *list = x;
            }
            (*list)[(*n)++] = p;
        } else {
            free(p);
        }
    }
done:
    for (size_t i = 0; i < nn; ++i) free(names[i]);
    free(names);
    closedir(d);
    return st;
}

qs_status qs_corpus_open(qs_corpus *c, const char *const *inputs, int ninputs,
                         const char *text_field, qs_err *err) {
    qs_status st = QS_OK;
    size_t cap = 0;
    memset(c, 0, sizeof(*c));
    c->field = strdup(text_field && *text_field ? text_field : "text");
    if (!c->field) return QS_FAIL(err, QS_ERR_RUNTIME, "out of memory");
    if (ninputs <= 0) return QS_FAIL(err, QS_ERR_INPUT, "no text inputs given");
    for (int i = 0; i < ninputs; ++i) {
        const char *in = inputs[i];
        struct stat sb;
        qs_corpus_kind k;
        if (stat(in, &sb) != 0)
            QS_THROW(err, QS_ERR_INPUT, "%s: cannot open: %s", in, strerror(errno));
        if (S_ISDIR(sb.st_mode)) {
            char **list = NULL;
            size_t n = 0, lc = 0;
            st = walk(in, &list, &n, &lc, err);
            for (size_t j = 0; j < n && st == QS_OK; ++j) {
                kind_of(list[j], &k);
                st = add_file(c, list[j], k, err);
                if (st == QS_OK) st = scan_file(c, &cap, (uint32_t)(c->nfiles - 1), err);
            }
            for (size_t j = 0; j < n; ++j) free(list[j]);
            free(list);
            if (st != QS_OK) goto done;
            if (n == 0) QS_THROW(err, QS_ERR_INPUT, "%s: no .txt or .jsonl files in the directory", in);
        } else if (kind_of(in, &k)) {
            QS_CHECK(add_file(c, in, k, err));
            QS_CHECK(scan_file(c, &cap, (uint32_t)(c->nfiles - 1), err));
        } else {
            QS_THROW(err, QS_ERR_INPUT,
                     "%s: unknown text file type (expected .txt, .jsonl or a directory of them)", in);
        }
    }
done:
    if (st != QS_OK) qs_corpus_close(c);
    return st;
}

void qs_corpus_close(qs_corpus *c) {
    for (int i = 0; i < c->nfiles; ++i) {
        if (c->files[i].map) munmap((void *)c->files[i].map, c->files[i].size);
        free(c->files[i].path);
    }
    free(c->files);
    free(c->docs);
    free(c->field);
    memset(c, 0, sizeof(*c));
}

qs_status qs_corpus_encode(const qs_corpus *c, qs_tokenizer *t, int64_t first, int64_t count,
                           qs_ids *out, qs_err *err) {
    qs_status st = QS_OK;
    cJSON *obj = NULL;
    for (int64_t i = first; i < first + count; ++i) {
        const qs_corpus_doc *d = &c->docs[i];
        const qs_corpus_file *f = &c->files[d->file];
        const char *text = f->map + d->off;
        size_t n = (size_t)d->len;
        if (f->kind == QS_CORPUS_JSONL) {
            obj = cJSON_ParseWithLength(text, n);
            if (!obj || !cJSON_IsObject(obj))
                QS_THROW(err, QS_ERR_INPUT, "%s:%lld: invalid JSON (expected one object per line)",
                         f->path, (long long)d->line);
            const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, c->field);
            if (!v) QS_THROW(err, QS_ERR_INPUT, "%s:%lld: no field '%s'", f->path, (long long)d->line, c->field);
            if (!cJSON_IsString(v))
                QS_THROW(err, QS_ERR_INPUT, "%s:%lld: field '%s' is not a string", f->path,
                         (long long)d->line, c->field);
            n = strlen(v->valuestring);
            if (n) QS_CHECK(qs_tokenizer_encode_document(t, v->valuestring, n, out, err));
            cJSON_Delete(obj);
            obj = NULL;
        } else {
            QS_CHECK(qs_tokenizer_encode_document(t, text, n, out, err));
        }
    }
done:
    cJSON_Delete(obj);
    return st;
}

qs_status qs_corpus_tokenize(const qs_corpus *c, qs_tokenizer *t, qs_ids *out, qs_err *err) {
    qs_status st = qs_corpus_encode(c, t, 0, c->ndocs, out, err);
    if (st == QS_OK && out->n == 0)
        st = QS_FAIL(err, QS_ERR_INPUT, "%s: no tokens (every document is empty)",
                     c->nfiles ? c->files[0].path : "text");
    return st;
}
