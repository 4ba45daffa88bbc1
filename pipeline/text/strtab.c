/* strtab.c: byte-string hash table (linear probing, power-of-two slots, load <= 1/2). */
#include "strtab.h"

#include <stdlib.h>
#include <string.h>

static uint64_t hash_bytes(const char *s, size_t n) {
    uint64_t h = 0x9E3779B97F4A7C15ULL ^ (uint64_t)n;
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, s, 8);
        h = (h ^ w) * 0xFF51AFD7ED558CCDULL;
        h ^= h >> 32;
        s += 8;
        n -= 8;
    }
    uint64_t w = 0;
    for (size_t i = 0; i < n; ++i) w |= (uint64_t)(unsigned char)s[i] << (8 * i);
    h = (h ^ w) * 0xC4CEB9FE1A85EC53ULL;
    h ^= h >> 29;
    h *= 0xFF51AFD7ED558CCDULL;
    return h ^ (h >> 32);
}

int32_t qs_strtab_find(const qs_strtab *t, const char *key, size_t n) {
    if (!t->nslot) return -1;
    size_t mask = t->nslot - 1, i = (size_t)hash_bytes(key, n) & mask;
    for (;;) {
        int32_t e = t->slot[i];
        if (e < 0) return -1;
        if (t->klen[e] == n && memcmp(t->arena + t->koff[e], key, n) == 0) return e;
        i = (i + 1) & mask;
    }
}

static int rehash(qs_strtab *t, size_t nslot) {
    int32_t *s = malloc(nslot * sizeof(int32_t));
    if (!s) return -1;
    memset(s, 0xFF, nslot * sizeof(int32_t));
    for (size_t e = 0; e < t->count; ++e) {
        size_t i = (size_t)hash_bytes(t->arena + t->koff[e], t->klen[e]) & (nslot - 1);
        while (s[i] >= 0) i = (i + 1) & (nslot - 1);
        s[i] = (int32_t)e;
    }
    free(t->slot);
    t->slot = s;
    t->nslot = nslot;
    return 0;
}

int32_t qs_strtab_put(qs_strtab *t, const char *key, size_t n, int32_t val) {
    int32_t e = qs_strtab_find(t, key, n);
    if (e >= 0) {
        t->val[e] = val;
        return e;
    }
    if (t->count >= 0x7FFFFFFF) return -1;
    if ((t->count + 1) * 2 > t->nslot && rehash(t, t->nslot ? t->nslot * 2 : 64) != 0)
        return -1;
    if (t->count == t->ecap) {
        size_t cap = t->ecap ? t->ecap * 2 : 64;
        size_t *ko = realloc(t->koff, cap * sizeof(size_t));
        if (ko) t->koff = ko;
        uint32_t *kl = realloc(t->klen, cap * sizeof(uint32_t));
        if (kl) t->klen = kl;
        int32_t *v = realloc(t->val, cap * sizeof(int32_t));
        if (v) t->val = v;
        if (!ko || !kl || !v) return -1;
        t->ecap = cap;
    }
    if (t->alen + n > t->acap) {
        size_t cap = t->acap ? t->acap : 4096;
        while (cap < t->alen + n) cap *= 2;
        char *a = realloc(t->arena, cap);
        if (!a) return -1;
        t->arena = a;
        t->acap = cap;
    }
    if (n) memcpy(t->arena + t->alen, key, n);
    e = (int32_t)t->count++;
    t->koff[e] = t->alen;
    t->klen[e] = (uint32_t)n;
    t->val[e] = val;
    t->alen += n;
    size_t mask = t->nslot - 1, i = (size_t)hash_bytes(key, n) & mask;
    while (t->slot[i] >= 0) i = (i + 1) & mask;
    t->slot[i] = e;
    return e;
}

void qs_strtab_clear(qs_strtab *t) {
    t->count = 0;
    t->alen = 0;
    if (t->slot) memset(t->slot, 0xFF, t->nslot * sizeof(int32_t));
}

void qs_strtab_free(qs_strtab *t) {
    free(t->arena);
    free(t->koff);
    free(t->klen);
    free(t->val);
    free(t->slot);
    memset(t, 0, sizeof(*t));
}
