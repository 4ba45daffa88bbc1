/* gguf_vocab.c: tokenizer.ggml.* metadata from SentencePiece / tokenizer.json files, as
 * llama.cpp's converter writes it (see gguf_vocab.h). */
#include "gguf_vocab.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cjson/cJSON.h>

#include "rundir.h"
#include "tokjson.h"

#define MAX_TOKENIZER_BYTES ((uint64_t)1 << 30)
#define PATH_CAP 4096

/* GGUF token types (llama.cpp's llama_token_type / gguf-py TokenType) */
enum { TT_NORMAL = 1, TT_UNKNOWN = 2, TT_CONTROL = 3, TT_USER_DEFINED = 4, TT_UNUSED = 5,
       TT_BYTE = 6 };

/* The pre-tokenizer regexes of tokenizer.json that name llama.cpp's pre-tokenizers. */
static const char k_re_llama3[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char k_re_qwen2[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

/* ---- small helpers --------------------------------------------------------------------- */

static int is_file(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISREG(sb.st_mode);
}

static int is_dir(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISDIR(sb.st_mode);
}

/* Parses a JSON file; *root is NULL (and OK) when the file does not exist and !required. */
static qs_status json_load(const char *path, int required, cJSON **root, qs_err *err) {
    *root = NULL;
    if (!is_file(path))
        return required ? QS_FAIL(err, QS_ERR_INPUT, "%s: no such file", path) : QS_OK;
    return qs_tokjson_parse_file(path, MAX_TOKENIZER_BYTES, root, err);
}

/* Python truthiness of a JSON value. */
static int truthy(const cJSON *j) {
    if (!j || cJSON_IsNull(j) || cJSON_IsFalse(j)) return 0;
    if (cJSON_IsTrue(j)) return 1;
    if (cJSON_IsString(j)) return j->valuestring && j->valuestring[0];
    if (cJSON_IsNumber(j)) return j->valuedouble != 0;
    return j->child != NULL;
}

static int str_eq(const cJSON *j, const char *s) {
    return s && cJSON_IsString(j) && j->valuestring && strcmp(j->valuestring, s) == 0;
}

/* An integral JSON number in [0, 2^31) into *v; 0 on success. */
static int json_id(const cJSON *j, int64_t *v) {
    if (!cJSON_IsNumber(j)) return -1;
    double d = j->valuedouble;
    if (!(d >= 0 && d < 2147483648.0) || d != (double)(int64_t)d) return -1;
    *v = (int64_t)d;
    return 0;
}

/* The converter's does_token_look_special. */
static int looks_special(const char *s) {
    size_t n = strlen(s);
    if (!strcmp(s, "<pad>") || !strcmp(s, "<mask>") || !strcmp(s, "<2mass>") ||
        !strcmp(s, "[@BOS@]"))
        return 1;
    if (n >= 4 && !strncmp(s, "<|", 2) && !strcmp(s + n - 2, "|>")) return 1;
    /* "<｜" ... "｜>" (U+FF5C fullwidth vertical line: EF BD 9C) */
    if (n >= 8 && !strncmp(s, "<\xEF\xBD\x9C", 4) && !strcmp(s + n - 4, "\xEF\xBD\x9C>")) return 1;
    if (n >= 8 && !strncmp(s, "<unused", 7) && s[n - 1] == '>') return 1;
    return 0;
}

/* Copy of s with every U+2581 replaced by a space (the converter's pre-normalization of
 * user-defined tokens); *len its length. NULL on OOM. */
static char *replace_lower_block(const char *s, size_t *len) {
    size_t n = strlen(s), k = 0;
    char *d = malloc(n + 1);
    if (!d) return NULL;
    for (size_t i = 0; i < n;) {
        if (i + 2 < n && (unsigned char)s[i] == 0xE2 && (unsigned char)s[i + 1] == 0x96 &&
            (unsigned char)s[i + 2] == 0x81) {
            d[k++] = ' ';
            i += 3;
        } else {
            d[k++] = s[i++];
        }
    }
    d[k] = '\0';
    *len = k;
    return d;
}

/* ---- the vocabulary -------------------------------------------------------------------- */

typedef struct vocab {
    int64_t n;          /* entries = vocab_size */
    char **tok;         /* (n,) owned token bytes */
    size_t *len;        /* (n,) */
    float *score;       /* (n,) SentencePiece only, else NULL */
    int32_t *type;      /* (n,) */
    char **merges;      /* (nmerges,) owned, gpt2 only */
    int64_t nmerges;
} vocab;

static void vocab_free(vocab *v) {
    if (v->tok)
        for (int64_t i = 0; i < v->n; ++i) free(v->tok[i]);
    free(v->tok);
    free(v->len);
    free(v->score);
    free(v->type);
    if (v->merges)
        for (int64_t i = 0; i < v->nmerges; ++i) free(v->merges[i]);
    free(v->merges);
    memset(v, 0, sizeof(*v));
}

static qs_status vocab_init(vocab *v, int64_t n, int scores, const char *what, qs_err *err) {
    qs_status st = QS_OK;
    memset(v, 0, sizeof(*v));
    v->tok = calloc((size_t)n, sizeof(*v->tok));
    v->len = calloc((size_t)n, sizeof(*v->len));
    v->type = calloc((size_t)n, sizeof(*v->type));
    if (scores) v->score = calloc((size_t)n, sizeof(*v->score));
    v->n = n;
    if (!v->tok || !v->len || !v->type || (scores && !v->score))
        QS_THROW(err, QS_ERR_RUNTIME, "%s: out of memory (%lld tokens)", what, (long long)n);
done:
    return st;
}

/* Sets token i to the n bytes at s (copied). */
static int vocab_set(vocab *v, int64_t i, const char *s, size_t n) {
    char *d = malloc(n + 1);
    if (!d) return -1;
    memcpy(d, s, n);
    d[n] = '\0';
    free(v->tok[i]);
    v->tok[i] = d;
    v->len[i] = n;
    return 0;
}

static int vocab_set_pad(vocab *v, int64_t i) {
    char b[40];
    int k = snprintf(b, sizeof(b), "[PAD%lld]", (long long)i);
    return vocab_set(v, i, b, (size_t)k);
}

/* ---- SentencePiece ModelProto ----------------------------------------------------------- */

/* Reads a base-128 varint at *pos of p (n bytes); 0 on success. */
static int pb_varint(const unsigned char *p, size_t n, size_t *pos, uint64_t *v) {
    uint64_t x = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (*pos >= n) return -1;
        unsigned char b = p[(*pos)++];
        x |= (uint64_t)(b & 0x7F) << shift;
        if (!(b & 0x80)) {
            *v = x;
            return 0;
        }
    }
    return -1;
}

/* Skips a field of wire type wt; 0 on success. */
static int pb_skip(const unsigned char *p, size_t n, size_t *pos, unsigned wt) {
    uint64_t v;
    switch (wt) {
    case 0: return pb_varint(p, n, pos, &v);
    case 1: if (n - *pos < 8) return -1; *pos += 8; return 0;
    case 2:
        if (pb_varint(p, n, pos, &v) != 0 || v > n - *pos) return -1;
        *pos += (size_t)v;
        return 0;
    case 5: if (n - *pos < 4) return -1; *pos += 4; return 0;
    default: return -1; /* groups (3, 4) and reserved types */
    }
}

/* One SentencePiece message: piece (1, bytes), score (2, float), type (3, enum). */
static int pb_piece(const unsigned char *p, size_t n, const unsigned char **piece, size_t *plen,
                    float *score, int *type) {
    size_t pos = 0;
    *piece = NULL;
    *plen = 0;
    *score = 0.0f;
    *type = 1; /* NORMAL */
    while (pos < n) {
        uint64_t key, v;
        if (pb_varint(p, n, &pos, &key) != 0) return -1;
        const unsigned field = (unsigned)(key >> 3), wt = (unsigned)(key & 7);
        if (field == 1 && wt == 2) {
            if (pb_varint(p, n, &pos, &v) != 0 || v > n - pos) return -1;
            *piece = p + pos;
            *plen = (size_t)v;
            pos += (size_t)v;
        } else if (field == 2 && wt == 5) {
            if (n - pos < 4) return -1;
            uint32_t u = (uint32_t)p[pos] | (uint32_t)p[pos + 1] << 8 |
                         (uint32_t)p[pos + 2] << 16 | (uint32_t)p[pos + 3] << 24;
            memcpy(score, &u, 4);
            pos += 4;
        } else if (field == 3 && wt == 0) {
            if (pb_varint(p, n, &pos, &v) != 0) return -1;
            *type = (int)(v & 0x7FFFFFFF);
        } else if (pb_skip(p, n, &pos, wt) != 0) {
            return -1;
        }
    }
    return *piece ? 0 : -1;
}

/* Reads the pieces of SentencePiece model `path` into v (n = vocab_size entries,
 * pre-filled as padding). */
static qs_status spm_read(const char *path, int64_t vocab_size, vocab *v, qs_err *err) {
    qs_status st = QS_OK;
    char *data = NULL;
    size_t n = 0, pos = 0;
    int64_t id = 0;
    QS_CHECK(vocab_init(v, vocab_size, 1, path, err));
    for (int64_t i = 0; i < vocab_size; ++i) {
        if (vocab_set_pad(v, i) != 0) QS_THROW(err, QS_ERR_RUNTIME, "%s: out of memory", path);
        v->score[i] = -10000.0f;
        v->type[i] = TT_UNUSED;
    }
    QS_CHECK(qs_read_file_max(path, MAX_TOKENIZER_BYTES, &data, &n, err));
    const unsigned char *p = (const unsigned char *)data;
    while (pos < n) {
        uint64_t key, len;
        size_t at = pos;
        if (pb_varint(p, n, &pos, &key) != 0)
            QS_THROW(err, QS_ERR_INPUT, "%s: not a SentencePiece model (bad field key at byte %zu)",
                     path, at);
        const unsigned field = (unsigned)(key >> 3), wt = (unsigned)(key & 7);
        if (field == 1 && wt == 2) {
            if (pb_varint(p, n, &pos, &len) != 0 || len > n - pos)
                QS_THROW(err, QS_ERR_INPUT, "%s: not a SentencePiece model (piece %lld truncated "
                         "at byte %zu)", path, (long long)id, at);
            const unsigned char *piece;
            size_t plen;
            float score;
            int type;
            if (pb_piece(p + pos, (size_t)len, &piece, &plen, &score, &type) != 0)
                QS_THROW(err, QS_ERR_INPUT, "%s: not a SentencePiece model (piece %lld malformed "
                         "at byte %zu)", path, (long long)id, at);
            pos += (size_t)len;
            if (id < vocab_size) { /* the converter ignores pieces beyond vocab_size */
                if (vocab_set(v, id, (const char *)piece, plen) != 0)
                    QS_THROW(err, QS_ERR_RUNTIME, "%s: out of memory", path);
                v->score[id] = score;
                v->type[id] = (type == TT_UNKNOWN || type == TT_CONTROL || type == TT_UNUSED ||
                               type == TT_BYTE) ? type : TT_NORMAL;
            }
            id++;
        } else if (field == 0 || pb_skip(p, n, &pos, wt) != 0) {
            QS_THROW(err, QS_ERR_INPUT, "%s: not a SentencePiece model (field %u, wire type %u at "
                     "byte %zu)", path, field, wt, at);
        }
    }
    if (id == 0) QS_THROW(err, QS_ERR_INPUT, "%s: SentencePiece model without pieces", path);
done:
    free(data);
    return st;
}

/* added_tokens.json and tokenizer_config.json's added_tokens_decoder over an SPM vocab. */
static qs_status spm_added(const char *dir, const cJSON *tc, const char *tc_path, vocab *v,
                           qs_err *err) {
    qs_status st = QS_OK;
    char path[PATH_CAP];
    cJSON *at = NULL;
    char *rep = NULL;
    snprintf(path, sizeof(path), "%s/added_tokens.json", dir);
    QS_CHECK(json_load(path, 0, &at, err));
    if (at) {
        if (!cJSON_IsObject(at)) QS_THROW(err, QS_ERR_INPUT, "%s: not a JSON object", path);
        for (const cJSON *e = at->child; e; e = e->next) {
            int64_t id;
            if (json_id(e, &id) != 0)
                QS_THROW(err, QS_ERR_INPUT, "%s: token '%.60s' has no valid id", path, e->string);
            if (id >= v->n) continue;
            if (vocab_set(v, id, e->string, strlen(e->string)) != 0)
                QS_THROW(err, QS_ERR_RUNTIME, "%s: out of memory", path);
            v->score[id] = -1000.0f;
            v->type[id] = TT_USER_DEFINED;
        }
    }
    const cJSON *dec = tc ? cJSON_GetObjectItemCaseSensitive(tc, "added_tokens_decoder") : NULL;
    if (dec && cJSON_IsObject(dec)) {
        for (const cJSON *e = dec->child; e; e = e->next) {
            char *end = NULL;
            long long id = strtoll(e->string, &end, 10);
            const cJSON *content = cJSON_GetObjectItemCaseSensitive(e, "content");
            if (!end || *end || end == e->string || id < 0 || !cJSON_IsString(content))
                QS_THROW(err, QS_ERR_INPUT, "%s: added_tokens_decoder entry '%.40s' is malformed",
                         tc_path, e->string);
            if (id >= v->n) continue;
            const char *s = content->valuestring;
            size_t sl = strlen(s);
            if (truthy(cJSON_GetObjectItemCaseSensitive(e, "special")) || looks_special(s)) {
                v->type[id] = TT_CONTROL;
            } else {
                rep = replace_lower_block(s, &sl);
                if (!rep) QS_THROW(err, QS_ERR_RUNTIME, "%s: out of memory", tc_path);
                s = rep;
                v->type[id] = TT_USER_DEFINED;
            }
            v->score[id] = -1000.0f;
            if (vocab_set(v, id, s, sl) != 0)
                QS_THROW(err, QS_ERR_RUNTIME, "%s: out of memory", tc_path);
            free(rep);
            rep = NULL;
        }
    }
done:
    free(rep);
    cJSON_Delete(at);
    return st;
}

/* ---- tokenizer.json (byte-level BPE) --------------------------------------------------- */

/* The llama.cpp pre-tokenizer name for tokenizer.json's pre_tokenizer, or NULL. */
static const char *bpe_pre_name(const cJSON *tj) {
    const cJSON *pt = cJSON_GetObjectItemCaseSensitive(tj, "pre_tokenizer");
    if (!pt || !str_eq(cJSON_GetObjectItemCaseSensitive(pt, "type"), "Sequence")) return NULL;
    const cJSON *seq = cJSON_GetObjectItemCaseSensitive(pt, "pretokenizers");
    const char *regex = NULL;
    int byte_level = 0, nsplit = 0, n = 0;
    for (const cJSON *p = seq ? seq->child : NULL; p; p = p->next, ++n) {
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(p, "type");
        if (str_eq(type, "Split")) {
            const cJSON *pat = cJSON_GetObjectItemCaseSensitive(p, "pattern");
            const cJSON *re = pat ? cJSON_GetObjectItemCaseSensitive(pat, "Regex") : NULL;
            if (!cJSON_IsString(re) ||
                !str_eq(cJSON_GetObjectItemCaseSensitive(p, "behavior"), "Isolated") ||
                truthy(cJSON_GetObjectItemCaseSensitive(p, "invert")))
                return NULL;
            regex = re->valuestring;
            nsplit++;
        } else if (str_eq(type, "ByteLevel")) {
            if (truthy(cJSON_GetObjectItemCaseSensitive(p, "use_regex"))) return NULL;
            byte_level++;
        } else {
            return NULL;
        }
    }
    if (n != 2 || nsplit != 1 || byte_level != 1) return NULL;
    if (strcmp(regex, k_re_llama3) == 0) return "llama-bpe";
    if (strcmp(regex, k_re_qwen2) == 0) return "qwen2";
    return NULL;
}

/* Appends `s` to d with every space replaced by U+0120 (UTF-8 C4 A0). */
static size_t put_merge_part(char *d, const char *s) {
    size_t k = 0;
    for (; *s; ++s) {
        if (*s == ' ') {
            d[k++] = (char)0xC4;
            d[k++] = (char)0xA0;
        } else {
            d[k++] = *s;
        }
    }
    return k;
}

/* The GGUF vocabulary of a byte-level BPE tokenizer.json (read by core/tokjson.c): tokens by
 * id, added tokens' types, merges as "a b" strings. */
static qs_status bpe_read(const char *path, const qs_tokjson *tj, int64_t vocab_size, vocab *v,
                          const char **pre, qs_err *err) {
    qs_status st = QS_OK;
    unsigned char *is_added = NULL, *is_special = NULL;
    const char **rev = NULL;
    char *rep = NULL;
    if (!tj->model_type || strcmp(tj->model_type, "BPE") != 0)
        QS_THROW(err, QS_ERR_INPUT, "%s: tokenizer model '%.40s' is not supported (BPE only)",
                 path, tj->model_type ? tj->model_type : "?");
    *pre = bpe_pre_name(tj->root);
    if (!*pre)
        QS_THROW(err, QS_ERR_INPUT, "%s: pre_tokenizer is not recognized (supported: Llama 3's "
                 "and Qwen2's byte-level Split regexes)", path);
    QS_CHECK(vocab_init(v, vocab_size, 0, path, err));
    rev = calloc((size_t)vocab_size, sizeof(*rev));
    is_added = calloc((size_t)vocab_size, 1);
    is_special = calloc((size_t)vocab_size, 1);
    if (!rev || !is_added || !is_special) QS_THROW(err, QS_ERR_RUNTIME, "%s: out of memory", path);
    for (int64_t i = 0; i < tj->nvocab; ++i) {
        const int64_t id = tj->vocab[i].id;
        if (id >= vocab_size)
            QS_THROW(err, QS_ERR_INPUT, "%s: model.vocab id %lld is not below config.json's "
                     "vocab_size %lld", path, (long long)id, (long long)vocab_size);
        rev[id] = tj->vocab[i].s;
    }
    for (int64_t k = 0; k < tj->nadded; ++k) {
        const qs_tokjson_added *a = &tj->added[k];
        if (a->id < 0)
            QS_THROW(err, QS_ERR_INPUT, "%s: added_tokens entry %lld has no id", path,
                     (long long)k);
        if (a->id >= vocab_size)
            QS_THROW(err, QS_ERR_INPUT, "%s: added token id %lld is not below config.json's "
                     "vocab_size %lld", path, (long long)a->id, (long long)vocab_size);
        rev[a->id] = a->content;
        is_added[a->id] = 1;
        is_special[a->id] = (unsigned char)a->special;
    }
    for (int64_t i = 0; i < vocab_size; ++i) {
        int rc;
        if (!rev[i]) {
            rc = vocab_set_pad(v, i);
            v->type[i] = TT_UNUSED;
        } else if (is_added[i] && !is_special[i] && !looks_special(rev[i])) {
            size_t l;
            rep = replace_lower_block(rev[i], &l);
            rc = rep ? vocab_set(v, i, rep, l) : -1;
            free(rep);
            rep = NULL;
            v->type[i] = TT_USER_DEFINED;
        } else {
            rc = vocab_set(v, i, rev[i], strlen(rev[i]));
            v->type[i] = is_added[i] ? TT_CONTROL : TT_NORMAL;
        }
        if (rc != 0) QS_THROW(err, QS_ERR_RUNTIME, "%s: out of memory", path);
    }
    /* merges: "a b" strings as written, [a, b] pairs with spaces inside a part as U+0120 */
    if (tj->nmerges == 0) QS_THROW(err, QS_ERR_INPUT, "%s: BPE model without merges", path);
    v->merges = calloc((size_t)tj->nmerges, sizeof(*v->merges));
    if (!v->merges) QS_THROW(err, QS_ERR_RUNTIME, "%s: out of memory", path);
    for (int64_t k = 0; k < tj->nmerges; ++k) {
        const qs_tokjson_merge *mg = &tj->merges[k];
        char *d = malloc(2 * (mg->nl + mg->nr) + 2);
        if (!d) QS_THROW(err, QS_ERR_RUNTIME, "%s: out of memory", path);
        size_t n = 0;
        if (mg->pair) {
            n = put_merge_part(d, mg->l);
            d[n++] = ' ';
            n += put_merge_part(d + n, mg->r);
        } else {
            memcpy(d, mg->l, mg->nl);
            d[mg->nl] = ' ';
            memcpy(d + mg->nl + 1, mg->r, mg->nr);
            n = mg->nl + 1 + mg->nr;
        }
        d[n] = '\0';
        v->merges[v->nmerges++] = d;
    }
done:
    free(rep);
    free(rev);
    free(is_added);
    free(is_special);
    return st;
}

/* ---- special tokens (gguf-py SpecialVocab) --------------------------------------------- */

enum { SP_BOS, SP_EOS, SP_UNK, SP_SEP, SP_PAD, SP_CLS, SP_MASK, SP_EOT, SP_EOM, SP_PREFIX,
       SP_SUFFIX, SP_MIDDLE, SP_N };
static const char *const k_sp_name[SP_N] = {"bos", "eos", "unk", "sep", "pad", "cls",
                                            "mask", "eot", "eom", "prefix", "suffix", "middle"};
/* GGUF keys of the ids (NULL: no key; the converter skips cls) */
static const char *const k_sp_key[SP_N] = {
    "tokenizer.ggml.bos_token_id",    "tokenizer.ggml.eos_token_id",
    "tokenizer.ggml.unknown_token_id", "tokenizer.ggml.seperator_token_id",
    "tokenizer.ggml.padding_token_id", NULL,
    "tokenizer.ggml.mask_token_id",   "tokenizer.ggml.eot_token_id",
    "tokenizer.ggml.eom_token_id",    "tokenizer.ggml.prefix_token_id",
    "tokenizer.ggml.suffix_token_id", "tokenizer.ggml.middle_token_id"};

typedef struct special {
    int active[SP_N];       /* types considered (bos..mask, eot/eom when added) */
    int64_t id[SP_N];       /* -1 unset */
    int add[SP_N];          /* -1 unset, else 0/1 (only bos/eos/sep have a key) */
    int id_order[SP_N], nid;    /* insertion order of ids */
    int add_order[SP_N], nadd;  /* insertion order of add flags */
    const cJSON *content[SP_N]; /* tokenizer_config's <type>_token (string or object) */
    char *ovr[SP_N];            /* owned: contents set by the template logic (replace content) */
} special;

static void special_free(special *sp) {
    for (int t = 0; t < SP_N; ++t) free(sp->ovr[t]);
}

static qs_status sp_override(special *sp, int typ, const char *s, const char *path, qs_err *err) {
    char *d = malloc(strlen(s) + 1);
    if (!d) return QS_FAIL(err, QS_ERR_RUNTIME, "%s: out of memory", path);
    strcpy(d, s);
    free(sp->ovr[typ]);
    sp->ovr[typ] = d;
    return QS_OK;
}

/* The id string of a template entry {"SpecialToken": {"id": ...}} (non-empty), or NULL. */
static const char *special_token_id(const cJSON *e) {
    const cJSON *st = e ? cJSON_GetObjectItemCaseSensitive(e, "SpecialToken") : NULL;
    const cJSON *id = st ? cJSON_GetObjectItemCaseSensitive(st, "id") : NULL;
    return (cJSON_IsString(id) && id->valuestring[0]) ? id->valuestring : NULL;
}

/* The id of a template entry {"Sequence": {"id": "A"}}, or NULL. */
static const char *sequence_id(const cJSON *e) {
    const cJSON *sq = e ? cJSON_GetObjectItemCaseSensitive(e, "Sequence") : NULL;
    const cJSON *id = sq ? cJSON_GetObjectItemCaseSensitive(sq, "id") : NULL;
    return cJSON_IsString(id) ? id->valuestring : NULL;
}

static void sp_set_id(special *sp, int typ, int64_t id, int64_t n_vocab) {
    if (id < 0 || (n_vocab >= 0 && id >= n_vocab) || sp->id[typ] >= 0) return;
    sp->id[typ] = id;
    sp->id_order[sp->nid++] = typ;
}

static void sp_set_add(special *sp, int typ, int v) {
    if (sp->add[typ] < 0) sp->add_order[sp->nadd++] = typ;
    sp->add[typ] = v ? 1 : 0;
}

/* The value itself when it is a string, else NULL. */
static const char *raw_str(const cJSON *e) { return cJSON_IsString(e) ? e->valuestring : NULL; }

/* The string of a <type>_token entry (a string or {"content": string}), or NULL. */
static const char *content_str(const cJSON *e) {
    if (cJSON_IsString(e)) return e->valuestring;
    if (cJSON_IsObject(e)) {
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(e, "content");
        if (cJSON_IsString(c)) return c->valuestring;
    }
    return NULL;
}

/* Defaults before any file is read: nothing set, the default types active, and
 * tokenizer_config's <type>_token of the default types (eot/eom only via the template logic,
 * prefix/suffix/middle only for CodeLlama). */
static void special_init(special *sp, const cJSON *tc) {
    for (int t = 0; t < SP_N; ++t) {
        sp->id[t] = -1;
        sp->add[t] = -1;
        sp->active[t] = t <= SP_MASK;
        char key[32];
        snprintf(key, sizeof(key), "%s_token", k_sp_name[t]);
        sp->content[t] = (tc && t <= SP_MASK) ? cJSON_GetObjectItemCaseSensitive(tc, key) : NULL;
    }
}

/* The special-token strings the post-processor logic compares templates with (the
 * converter compares raw values: only strings can match a token); templates change them. */
typedef struct special_strs {
    const char *bos, *eos, *cls, *sep;
} special_strs;

/* Whether the pair template "[first] A [sep [eos]] B [last]" adds sep: 1 or 0, or -1 when
 * the pair template does not have that form (it decides nothing). */
static int pair_adds_sep(const cJSON *pair, const char *first, const char *last,
                         const special_strs *s) {
    const int np = cJSON_IsArray(pair) ? cJSON_GetArraySize(pair) : 0;
    if (np == 0) return -1;
    const char *p0 = special_token_id(pair->child);
    const char *pl = special_token_id(cJSON_GetArrayItem(pair, np - 1));
    const int lo = (first && p0 && !strcmp(p0, first)) ? 1 : 0;
    const int hi = (last && pl && !strcmp(pl, last)) ? np - 1 : np; /* exclusive */
    if (hi - lo < 1) return -1;
    const char *a = sequence_id(cJSON_GetArrayItem(pair, lo));
    const char *b = sequence_id(cJSON_GetArrayItem(pair, hi - 1));
    if (!a || strcmp(a, "A") != 0 || !b || strcmp(b, "B") != 0 || hi - lo - 2 < 1) return -1;
    int add_sep = 0;
    const char *e0 = special_token_id(cJSON_GetArrayItem(pair, lo + 1));
    if (e0 && ((s->sep && !strcmp(e0, s->sep)) || (s->eos && !strcmp(e0, s->eos))) && !last)
        add_sep = 1;
    if (hi - lo - 2 == 2) {
        const char *e1 = special_token_id(cJSON_GetArrayItem(pair, lo + 2));
        if (e1 && ((s->sep && !strcmp(e1, s->sep)) || (s->eos && !strcmp(e1, s->eos))))
            add_sep = 1;
    }
    return add_sep;
}

/* One TemplateProcessing post-processor p: the special tokens leading and ending its single
 * template decide add_bos / add_eos (a trailing token other than eos becomes eos, the old eos
 * eot or eom), its pair template add_sep. */
static qs_status special_from_template(special *sp, const cJSON *p, int have_tc, special_strs *s,
                                       const char *tj_path, qs_err *err) {
    qs_status st = QS_OK;
    const cJSON *single = cJSON_GetObjectItemCaseSensitive(p, "single");
    const char *first = NULL, *last = NULL; /* special tokens leading / ending single */
    if (cJSON_IsArray(single) && cJSON_GetArraySize(single) > 1) {
        first = special_token_id(single->child);
        last = special_token_id(cJSON_GetArrayItem(single, cJSON_GetArraySize(single) - 1));
    }
    if (first) {
        if (!have_tc) s->bos = first;
        sp_set_add(sp, SP_BOS, (s->bos && !strcmp(first, s->bos)) ||
                                   (s->cls && !strcmp(first, s->cls)));
    }
    if (last) {
        if (!have_tc) {
            s->eos = last;
        } else if (!s->eos || strcmp(last, s->eos) != 0) {
            /* a trailing token other than eos: it becomes eos, the old eos eot/eom */
            int slot = !sp->active[SP_EOT] ? SP_EOT : !sp->active[SP_EOM] ? SP_EOM : -1;
            if (slot >= 0) {
                sp->active[slot] = 1;
                sp->content[slot] = sp->content[SP_EOS];
            }
            QS_CHECK(sp_override(sp, SP_EOS, last, tj_path, err));
            s->eos = sp->ovr[SP_EOS];
        }
        sp_set_add(sp, SP_EOS, s->eos && !strcmp(last, s->eos));
    }
    const int add_sep = pair_adds_sep(cJSON_GetObjectItemCaseSensitive(p, "pair"), first, last, s);
    if (add_sep < 0) return QS_OK;
    sp_set_add(sp, SP_SEP, add_sep);
    if (add_sep && !truthy(sp->content[SP_SEP]) && !sp->ovr[SP_SEP] && have_tc && s->eos) {
        QS_CHECK(sp_override(sp, SP_SEP, s->eos, tj_path, err));
        s->sep = sp->ovr[SP_SEP];
    }
done:
    return st;
}

/* tokenizer.json's post-processor (one, or a Sequence's processors in order): Roberta adds
 * bos, eos and sep; TemplateProcessing as special_from_template. Without bos/eos in
 * tokenizer_config, cls/sep stand in for them. */
static qs_status special_from_post_processor(special *sp, const cJSON *tj, int have_tc,
                                             const char *tj_path, qs_err *err) {
    qs_status st = QS_OK;
    special_strs s = {raw_str(sp->content[SP_BOS]), raw_str(sp->content[SP_EOS]),
                      raw_str(sp->content[SP_CLS]), raw_str(sp->content[SP_SEP])};
    if (!truthy(sp->content[SP_BOS]) && truthy(sp->content[SP_CLS]) && have_tc) {
        sp->content[SP_BOS] = sp->content[SP_CLS];
        s.bos = s.cls;
    }
    if (!truthy(sp->content[SP_EOS]) && truthy(sp->content[SP_SEP]) && have_tc) {
        sp->content[SP_EOS] = sp->content[SP_SEP];
        s.eos = s.sep;
    }
    const cJSON *pp = cJSON_GetObjectItemCaseSensitive(tj, "post_processor");
    const cJSON *procs = pp ? cJSON_GetObjectItemCaseSensitive(pp, "processors") : NULL;
    const cJSON *first_proc = (procs && cJSON_IsArray(procs)) ? procs->child : pp;
    for (const cJSON *p = first_proc; p; p = (procs && cJSON_IsArray(procs)) ? p->next : NULL) {
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(p, "type");
        if (str_eq(type, "RobertaProcessing")) {
            sp_set_add(sp, SP_BOS, 1);
            sp_set_add(sp, SP_EOS, 1);
            sp_set_add(sp, SP_SEP, 1);
        } else if (str_eq(type, "TemplateProcessing")) {
            QS_CHECK(special_from_template(sp, p, have_tc, &s, tj_path, err));
        }
    }
done:
    return st;
}

/* tokenizer_config.json: add_<type>_token flags, and each active type's content looked up
 * among tokenizer.json's added tokens (the first match gives its id). */
static void special_from_tokenizer_config(special *sp, const cJSON *tc, const qs_tokjson *tj,
                                          int64_t n_vocab) {
    static const char *const add_key[SP_N] = {
        "add_bos_token",  "add_eos_token", "add_unk_token", "add_sep_token",
        "add_pad_token",  "add_cls_token", "add_mask_token", "add_eot_token",
        "add_eom_token",  "",              "",              ""};
    for (int t = 0; t < SP_N; ++t) {
        if (!sp->active[t]) continue;
        const cJSON *a = cJSON_GetObjectItemCaseSensitive(tc, add_key[t]);
        if (cJSON_IsBool(a)) sp_set_add(sp, t, cJSON_IsTrue(a));
        const char *c = sp->ovr[t] ? sp->ovr[t] : content_str(sp->content[t]);
        if (!c) continue;
        for (int64_t k = 0; tj && k < tj->nadded; ++k)
            if (strcmp(tj->added[k].content, c) == 0) {
                if (tj->added[k].id >= 0) sp_set_id(sp, t, tj->added[k].id, n_vocab);
                break; /* the first match */
            }
    }
}

/* config.json: <type>_token_id (integers only; also under text_config) for the types still
 * unset. */
static qs_status special_from_config_json(special *sp, const char *cfg_path, int64_t n_vocab,
                                          qs_err *err) {
    qs_status st = QS_OK;
    cJSON *cfg = NULL;
    QS_CHECK(json_load(cfg_path, 0, &cfg, err));
    for (int t = 0; cfg && t < SP_N; ++t) {
        if (!sp->active[t]) continue;
        char key[32];
        snprintf(key, sizeof(key), "%s_token_id", k_sp_name[t]);
        const cJSON *e = cJSON_GetObjectItemCaseSensitive(cfg, key);
        const cJSON *text = cJSON_GetObjectItemCaseSensitive(cfg, "text_config");
        if (!e && text) e = cJSON_GetObjectItemCaseSensitive(text, key);
        int64_t id;
        if (e && cJSON_IsNumber(e)) {
            if (e->valuedouble < 0) QS_THROW(err, QS_ERR_INPUT, "%s: %s is negative", cfg_path, key);
            if (json_id(e, &id) == 0) sp_set_id(sp, t, id, n_vocab);
        }
    }
done:
    cJSON_Delete(cfg);
    return st;
}

/* SpecialVocab._try_load_from_tokenizer_json, then ._try_load_from_config_json. */
static qs_status special_load(special *sp, const qs_tokjson *tj, const cJSON *tc, const char *cfg_path,
                              int64_t n_vocab, const char *tj_path, qs_err *err) {
    qs_status st = QS_OK;
    special_init(sp, tc);
    const int have_tc = tc && truthy(tc); /* Python: `if tokenizer_config` */
    if (tj) QS_CHECK(special_from_post_processor(sp, tj->root, have_tc, tj_path, err));
    if (have_tc) special_from_tokenizer_config(sp, tc, tj, n_vocab);
    QS_CHECK(special_from_config_json(sp, cfg_path, n_vocab, err));
done:
    return st;
}

/* tokenizer.chat_template (and named templates) from tokenizer_config.json or the files
 * beside it. */
static qs_status chat_template(qs_gguf_meta *m, const cJSON *tc, const char *dir, qs_err *err) {
    qs_status st = QS_OK;
    char path[PATH_CAP];
    char *text = NULL, **names = NULL;
    cJSON *ctj = NULL;
    size_t n = 0;
    int64_t nnames = 0;
    const cJSON *ct = cJSON_GetObjectItemCaseSensitive(tc, "chat_template");
    if (!ct) {
        snprintf(path, sizeof(path), "%s/chat_template.jinja", dir);
        if (is_file(path)) {
            QS_CHECK(qs_read_file_max(path, MAX_TOKENIZER_BYTES, &text, &n, err));
            if (n > 0) QS_CHECK(qs_gguf_meta_set_strn(m, "tokenizer.chat_template", text, n, err));
            goto done;
        }
        snprintf(path, sizeof(path), "%s/chat_template.json", dir);
        QS_CHECK(json_load(path, 0, &ctj, err));
        ct = ctj ? cJSON_GetObjectItemCaseSensitive(ctj, "chat_template") : NULL;
    }
    if (!ct || cJSON_IsNull(ct)) goto done;
    if (cJSON_IsString(ct)) {
        if (ct->valuestring[0])
            QS_CHECK(qs_gguf_meta_set_str(m, "tokenizer.chat_template", ct->valuestring, err));
    } else if (cJSON_IsArray(ct)) {
        const char *deflt = NULL;
        names = calloc((size_t)cJSON_GetArraySize(ct) + 1, sizeof(*names));
        if (!names) QS_THROW(err, QS_ERR_RUNTIME, "chat template: out of memory");
        for (const cJSON *c = ct->child; c; c = c->next) {
            const cJSON *nm = cJSON_GetObjectItemCaseSensitive(c, "name");
            const cJSON *tp = cJSON_GetObjectItemCaseSensitive(c, "template");
            if (!cJSON_IsString(nm) || !nm->valuestring[0] || !cJSON_IsString(tp)) continue;
            char *clean = malloc(strlen(nm->valuestring) + 1);
            if (!clean) QS_THROW(err, QS_ERR_RUNTIME, "chat template: out of memory");
            size_t k = 0;
            for (const char *s = nm->valuestring; *s; ++s)
                clean[k++] = ((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
                              (*s >= '0' && *s <= '9')) ? *s : '_';
            clean[k] = '\0';
            if (strcmp(clean, "default") == 0) {
                deflt = tp->valuestring;
                free(clean);
                continue;
            }
            int dup = 0;
            for (int64_t i = 0; i < nnames; ++i) dup |= strcmp(names[i], clean) == 0;
            char key[PATH_CAP];
            snprintf(key, sizeof(key), "tokenizer.chat_template.%s", clean);
            if (tp->valuestring[0]) QS_CHECK(qs_gguf_meta_set_str(m, key, tp->valuestring, err));
            if (dup) free(clean);
            else names[nnames++] = clean;
        }
        if (nnames > 0)
            QS_CHECK(qs_gguf_meta_set_str_array(m, "tokenizer.chat_templates",
                                                (const char *const *)names, NULL, (uint64_t)nnames,
                                                err));
        if (deflt && deflt[0])
            QS_CHECK(qs_gguf_meta_set_str(m, "tokenizer.chat_template", deflt, err));
    }
done:
    if (names)
        for (int64_t i = 0; i < nnames; ++i) free(names[i]);
    free(names);
    free(text);
    cJSON_Delete(ctj);
    return st;
}

/* ---- the whole tokenizer --------------------------------------------------------------- */

/* out = dir + "/" + name (name NULL: dir alone); QS_ERR_INPUT naming the path when it does not
 * fit in PATH_CAP bytes. */
static qs_status path_join(char out[PATH_CAP], const char *dir, const char *name, qs_err *err) {
    int n = name ? snprintf(out, PATH_CAP, "%s/%s", dir, name) : snprintf(out, PATH_CAP, "%s", dir);
    if (n < 0 || n >= PATH_CAP)
        return QS_FAIL(err, QS_ERR_INPUT, "%s%s%s: path too long", dir, name ? "/" : "",
                       name ? name : "");
    return QS_OK;
}

static int ends_with(const char *s, const char *suf) {
    size_t n = strlen(s), k = strlen(suf);
    return n >= k && strcmp(s + n - k, suf) == 0;
}

qs_status qs_gguf_meta_add_vocab(qs_gguf_meta *m, const qs_hf_config *hf, const char *model_dir,
                                 const char *tokenizer, qs_err *err) {
    qs_status st = QS_OK;
    char dir[PATH_CAP], spm[PATH_CAP], tjp[PATH_CAP], tcp[PATH_CAP], cfgp[PATH_CAP];
    cJSON *tc = NULL;
    qs_tokjson tjr; /* tokenizer.json, when there is one (tjr.root NULL otherwise) */
    vocab v;
    special sp;
    memset(&v, 0, sizeof(v));
    memset(&sp, 0, sizeof(sp));
    memset(&tjr, 0, sizeof(tjr));
    spm[0] = tjp[0] = '\0';
    const int llama_like = hf->arch != QS_ARCH_QWEN2;
    const int64_t nv = hf->vocab_size;
    if (nv < 1 || nv > ((int64_t)1 << 31))
        QS_THROW(err, QS_ERR_INPUT, "%s: vocab_size %lld", model_dir, (long long)nv);

    /* which files */
    if (tokenizer && !is_dir(tokenizer)) {
        if (!is_file(tokenizer))
            QS_THROW(err, QS_ERR_INPUT, "%s: tokenizer file not found", tokenizer);
        QS_CHECK(path_join(dir, tokenizer, NULL, err));
        char *slash = strrchr(dir, '/');
        if (slash == dir) slash[1] = '\0';
        else if (slash) *slash = '\0';
        else strcpy(dir, ".");
        QS_CHECK(path_join(ends_with(tokenizer, ".json") ? tjp : spm, tokenizer, NULL, err));
    } else {
        QS_CHECK(path_join(dir, tokenizer ? tokenizer : model_dir, NULL, err));
        QS_CHECK(path_join(spm, dir, "tokenizer.model", err));
        QS_CHECK(path_join(tjp, dir, "tokenizer.json", err));
        if (!is_file(spm)) spm[0] = '\0';
        if (!is_file(tjp)) tjp[0] = '\0';
        if (!spm[0] && !tjp[0])
            QS_THROW(err, QS_ERR_INPUT, "%s: no tokenizer.model or tokenizer.json (give the "
                     "tokenizer file explicitly)", dir);
    }
    QS_CHECK(path_join(tcp, dir, "tokenizer_config.json", err));
    QS_CHECK(path_join(cfgp, model_dir, "config.json", err));
    QS_CHECK(json_load(tcp, 0, &tc, err));
    if (tc && !cJSON_IsObject(tc)) QS_THROW(err, QS_ERR_INPUT, "%s: not a JSON object", tcp);
    if (!tjp[0]) { /* tokenizer.json beside a SentencePiece model: for special tokens */
        QS_CHECK(path_join(tjp, dir, "tokenizer.json", err));
        if (!is_file(tjp)) tjp[0] = '\0';
    }
    if (tjp[0]) QS_CHECK(qs_tokjson_read(&tjr, tjp, MAX_TOKENIZER_BYTES, err));
    const cJSON *tj = tjr.root;

    if (llama_like && tc) {
        const cJSON *aps = cJSON_GetObjectItemCaseSensitive(tc, "add_prefix_space");
        if (cJSON_IsBool(aps))
            QS_CHECK(qs_gguf_meta_set_bool(m, "tokenizer.ggml.add_space_prefix", cJSON_IsTrue(aps),
                                           err));
    }
    const char *model_name = NULL, *pre = NULL;
    int64_t n_vocab_limit;
    if (spm[0]) {
        QS_CHECK(spm_read(spm, nv, &v, err));
        QS_CHECK(spm_added(dir, tc, tcp, &v, err));
        model_name = "llama";
        pre = "default";
        n_vocab_limit = nv;
    } else {
        const cJSON *model = cJSON_GetObjectItemCaseSensitive(tj, "model");
        if (llama_like && model && str_eq(cJSON_GetObjectItemCaseSensitive(model, "type"), "BPE") &&
            cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(model, "byte_fallback"))) {
            const cJSON *dec = cJSON_GetObjectItemCaseSensitive(tj, "decoder");
            if (dec && str_eq(cJSON_GetObjectItemCaseSensitive(dec, "type"), "Sequence"))
                QS_THROW(err, QS_ERR_INPUT, "%s: a BPE tokenizer with byte_fallback (a "
                         "SentencePiece-style vocabulary) is not supported; give its "
                         "tokenizer.model", tjp);
        }
        QS_CHECK(bpe_read(tjp, &tjr, nv, &v, &pre, err));
        model_name = "gpt2";
        n_vocab_limit = -1;
    }

    QS_CHECK(qs_gguf_meta_set_str(m, "tokenizer.ggml.model", model_name, err));
    QS_CHECK(qs_gguf_meta_set_str(m, "tokenizer.ggml.pre", pre, err));
    QS_CHECK(qs_gguf_meta_set_str_array(m, "tokenizer.ggml.tokens", (const char *const *)v.tok,
                                        v.len, (uint64_t)v.n, err));
    if (v.score)
        QS_CHECK(qs_gguf_meta_set_array(m, "tokenizer.ggml.scores", QS_GGUF_V_FLOAT32, v.score,
                                        (uint64_t)v.n, err));
    QS_CHECK(qs_gguf_meta_set_array(m, "tokenizer.ggml.token_type", QS_GGUF_V_INT32, v.type,
                                    (uint64_t)v.n, err));
    if (v.nmerges > 0)
        QS_CHECK(qs_gguf_meta_set_str_array(m, "tokenizer.ggml.merges",
                                            (const char *const *)v.merges, NULL,
                                            (uint64_t)v.nmerges, err));

    QS_CHECK(special_load(&sp, tj ? &tjr : NULL, tc, cfgp, n_vocab_limit, tjp, err));
    for (int i = 0; i < sp.nid; ++i) {
        const int t = sp.id_order[i];
        if (k_sp_key[t]) QS_CHECK(qs_gguf_meta_set_u32(m, k_sp_key[t], (uint32_t)sp.id[t], err));
    }
    for (int i = 0; i < sp.nadd; ++i) {
        const int t = sp.add_order[i];
        const char *key = t == SP_BOS ? "tokenizer.ggml.add_bos_token"
                          : t == SP_EOS ? "tokenizer.ggml.add_eos_token"
                          : t == SP_SEP ? "tokenizer.ggml.add_sep_token" : NULL;
        if (key) QS_CHECK(qs_gguf_meta_set_bool(m, key, sp.add[t], err));
    }
    if (tc && truthy(tc)) QS_CHECK(chat_template(m, tc, dir, err));
    if (llama_like && nv == 32016) { /* CodeLlama's infill tokens */
        QS_CHECK(qs_gguf_meta_set_u32(m, "tokenizer.ggml.prefix_token_id", 32007, err));
        QS_CHECK(qs_gguf_meta_set_u32(m, "tokenizer.ggml.suffix_token_id", 32008, err));
        QS_CHECK(qs_gguf_meta_set_u32(m, "tokenizer.ggml.middle_token_id", 32009, err));
        QS_CHECK(qs_gguf_meta_set_u32(m, "tokenizer.ggml.eot_token_id", 32010, err));
    }
    if (llama_like && nv == 49152)
        QS_CHECK(qs_gguf_meta_set_bool(m, "tokenizer.ggml.add_bos_token", 0, err));
done:
    special_free(&sp);
    vocab_free(&v);
    qs_tokjson_free(&tjr);
    cJSON_Delete(tc);
    return st;
}
