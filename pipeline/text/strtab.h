/* strtab.h: an open-addressing hash table from byte strings to int32 values, for the
 * tokenizer's vocabulary, added tokens and word cache. Keys are copied into an arena;
 * entries are numbered 0.. in insertion order (callers may keep parallel arrays).
 *
 * Ownership: qs_strtab owns its arena and arrays; qs_strtab_free releases them (safe on a
 * zeroed struct).
 */
#ifndef QS_STRTAB_H
#define QS_STRTAB_H

#include <stddef.h>
#include <stdint.h>

typedef struct qs_strtab {
    char *arena;          /* (alen,) key bytes */
    size_t alen, acap;
    size_t *koff;         /* (count,) key offset into arena */
    uint32_t *klen;       /* (count,) key length */
    int32_t *val;         /* (count,) value */
    size_t count, ecap;
    int32_t *slot;        /* (nslot,) entry index or -1 */
    size_t nslot;         /* power of two */
} qs_strtab;

/* Entry index of key (n bytes), or -1. */
int32_t qs_strtab_find(const qs_strtab *t, const char *key, size_t n);

/* Sets key -> val (replacing the value of an existing key); returns the entry index, or -1
 * when out of memory. */
int32_t qs_strtab_put(qs_strtab *t, const char *key, size_t n, int32_t val);

/* Removes every entry (keeps the memory). */
void qs_strtab_clear(qs_strtab *t);
void qs_strtab_free(qs_strtab *t);

#endif /* QS_STRTAB_H */
