/* regex.h: the split and replace patterns of tokenizer.json, run with PCRE2.
 *
 * Hugging Face `tokenizers` compiles these patterns with Oniguruma (Ruby syntax, Unicode).
 * The patterns real tokenizers use (GPT-2, Llama-3, Qwen2 pre-tokenizers) mean the same in
 * PCRE2 with PCRE2_UTF | PCRE2_UCP, except the shorthand classes, which are rewritten to
 * the Unicode properties Oniguruma gives them: \s -> \p{White_Space} (PCRE2 10.42 leaves
 * out U+0085), \S -> \P{White_Space}, \w -> [\p{L}\p{M}\p{Nd}\p{Pc}], \W (outside a class)
 * -> its negation. \h and \H (a hex digit in Ruby) and \W inside a class are refused.
 * A "String" pattern is matched literally (PCRE2_LITERAL).
 *
 * Matching follows the onig crate's find_iter: leftmost matches, each search starting
 * where the previous match ended; an empty match right where the previous match ended is
 * skipped by moving one character on.
 *
 * Ownership: qs_regex owns its compiled code and match data (qs_regex_free; safe on a
 * zeroed struct). Matching writes into the match data: one qs_regex per thread.
 */
#ifndef QS_REGEX_H
#define QS_REGEX_H

#include <stddef.h>

#include "status.h"

typedef struct qs_regex {
    void *code;   /* pcre2_code_8 * */
    void *md;     /* pcre2_match_data_8 * */
    int jit;      /* 1 when JIT-compiled */
} qs_regex;

/* Compiles `pattern` (literal when `literal`). `what` names the file and key for errors
 * ("tokenizer.json: pre_tokenizer Split pattern"): QS_ERR_INPUT with PCRE2's message. */
qs_status qs_regex_compile(qs_regex *re, const char *pattern, int literal, const char *what,
                           qs_err *err);
void qs_regex_free(qs_regex *re);

/* Iteration state over one subject (zero it before the first call). */
typedef struct qs_regex_iter {
    size_t next;          /* where the next search starts */
    size_t last_end;      /* end of the previous match */
    int have_last;
} qs_regex_iter;

/* Next match in s (n bytes, valid UTF-8): returns 1 and [*ms, *me), or 0 when there is
 * none (or -1 on a PCRE2 matching error such as a resource limit). */
int qs_regex_next(qs_regex *re, const char *s, size_t n, qs_regex_iter *it, size_t *ms,
                  size_t *me);

#endif /* QS_REGEX_H */
