/* tokens.h: calibration and evaluation token files and the choice of windows.
 *
 * A token file is raw little-endian uint32 (`.u32`) or uint16 (`.u16`), chosen by the
 * file extension. It is mapped read-only; every id is checked against the vocabulary once
 * at open. Windows of `seqlen` tokens are chosen by the config: random start offsets from
 * a seed (as GPTQ does, with our own splitmix64 generator so any machine gives the same
 * offsets), consecutive windows from 0, or start offsets listed in a file (one per line)
 * to reproduce another tool's calibration set exactly.
 *
 * Ownership: qs_tokens owns its mapping and path; qs_tokens_close releases them (safe on
 * a zeroed struct). Offsets arrays are caller-owned.
 */
#ifndef QS_TOKENS_H
#define QS_TOKENS_H

#include <stdint.h>

#include "config.h"
#include "status.h"

typedef struct qs_tokens {
    char *path;                 /* owned */
    int width;                  /* 2 or 4 bytes per id */
    const unsigned char *map;   /* (count * width,) */
    uint64_t map_size;
    int64_t count;              /* number of token ids */
    uint32_t *owned;            /* ids held in memory (qs_tokens_from_ids), else NULL */
} qs_tokens;

/* Opens and validates `path`: known extension, non-empty, size a multiple of the width,
 * every id < vocab. Errors name the file and the cause (first bad id and its index). */
qs_status qs_tokens_open(qs_tokens *t, const char *path, int64_t vocab, qs_err *err);
void qs_tokens_close(qs_tokens *t);

/* The same object over ids already in memory (e.g. tokenized text): takes ownership of
 * `ids` (n, malloc'd) whatever the outcome; `name` names it in messages. Every id is
 * checked against the vocabulary as qs_tokens_open does. */
qs_status qs_tokens_from_ids(qs_tokens *t, const char *name, uint32_t *ids, int64_t n,
                             int64_t vocab, qs_err *err);

/* Token id at index i (0 <= i < count). */
uint32_t qs_tokens_get(const qs_tokens *t, int64_t i);

/* Copies tokens [start, start + n) into out (n,). */
void qs_tokens_copy(const qs_tokens *t, int64_t start, int64_t n, int32_t *out);

/* Start offsets of `nsamples` windows of `seqlen` tokens into offsets (nsamples,).
 * QS_SAMPLING_RANDOM: uniform in [0, count - seqlen] from `seed`;
 * QS_SAMPLING_CONSECUTIVE: i * seqlen (needs nsamples * seqlen <= count);
 * QS_SAMPLING_FILE: the first nsamples lines of offsets_file (fewer lines, a bad number or
 * an offset past the end is an error naming the file and line). A file shorter than one
 * window is an error. */
qs_status qs_tokens_windows(const qs_tokens *t, qs_calib_sampling sampling, int64_t nsamples,
                            int64_t seqlen, uint64_t seed, const char *offsets_file,
                            int64_t *offsets, qs_err *err);

#endif /* QS_TOKENS_H */
