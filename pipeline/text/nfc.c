/* nfc.c: Normalization Form C (UAX #15): decompose, order marks, compose. */
#include "nfc.h"

#include <string.h>

#include "utf8.h"

#define SBASE 0xAC00u
#define LBASE 0x1100u
#define VBASE 0x1161u
#define TBASE 0x11A7u
#define LCOUNT 19u
#define VCOUNT 21u
#define TCOUNT 28u
#define NCOUNT (VCOUNT * TCOUNT)
#define SCOUNT (LCOUNT * NCOUNT)
#define NONE 0xFFFFFFFFu

static int in_ranges(const uint32_t (*r)[2], int n, uint32_t cp) {
    int lo = 0, hi = n - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (cp < r[mid][0])
            hi = mid - 1;
        else if (cp > r[mid][1])
            lo = mid + 1;
        else
            return 1;
    }
    return 0;
}

static unsigned ccc_of(uint32_t cp) {
    if (cp < 0x300) return 0;
    int lo = 0, hi = qs_nfc_nccc - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (cp < qs_nfc_ccc[mid][0])
            hi = mid - 1;
        else if (cp > qs_nfc_ccc[mid][0])
            lo = mid + 1;
        else
            return qs_nfc_ccc[mid][1];
    }
    return 0;
}

/* Appends the full canonical decomposition of cp to out; returns the count. */
static int decompose(uint32_t cp, uint32_t *out) {
    if (cp >= SBASE && cp < SBASE + SCOUNT) {
        uint32_t s = cp - SBASE;
        out[0] = LBASE + s / NCOUNT;
        out[1] = VBASE + (s % NCOUNT) / TCOUNT;
        if (s % TCOUNT == 0) return 2;
        out[2] = TBASE + s % TCOUNT;
        return 3;
    }
    if (cp >= 0xC0) {
        int lo = 0, hi = qs_nfc_ndecomp - 1;
        while (lo <= hi) {
            int mid = (lo + hi) / 2;
            if (cp < qs_nfc_decomp[mid][0])
                hi = mid - 1;
            else if (cp > qs_nfc_decomp[mid][0])
                lo = mid + 1;
            else {
                uint32_t off = qs_nfc_decomp[mid][1], len = qs_nfc_decomp[mid][2];
                for (uint32_t i = 0; i < len; ++i) out[i] = qs_nfc_decomp_pool[off + i];
                return (int)len;
            }
        }
    }
    out[0] = cp;
    return 1;
}

static uint32_t compose(uint32_t a, uint32_t b) {
    if (a >= LBASE && a < LBASE + LCOUNT && b >= VBASE && b < VBASE + VCOUNT)
        return SBASE + ((a - LBASE) * VCOUNT + (b - VBASE)) * TCOUNT;
    if (a >= SBASE && a < SBASE + SCOUNT && (a - SBASE) % TCOUNT == 0 && b > TBASE &&
        b < TBASE + TCOUNT)
        return a + (b - TBASE);
    int lo = 0, hi = qs_nfc_ncomp - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        const uint32_t *e = qs_nfc_comp[mid];
        if (a < e[0] || (a == e[0] && b < e[1]))
            hi = mid - 1;
        else if (a > e[0] || b > e[1])
            lo = mid + 1;
        else
            return e[2];
    }
    return NONE;
}

int qs_nfc_quick(const char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0xCC) { /* every code point below U+0300 is safe */
            i += (size_t)qs_utf8_len(c);
            continue;
        }
        int len;
        uint32_t cp = qs_utf8_decode(s + i, &len);
        if (in_ranges(qs_nfc_unsafe, qs_nfc_nunsafe, cp)) return 0;
        i += (size_t)len;
    }
    return 1;
}

/* NFC of one chunk: a starter that NFC never touches (or the text start) and the code
 * points up to the next such starter. */
static size_t nfc_chunk(const char *s, size_t n, char *out, uint32_t *work) {
    /* 1. decompose into work (m code points), 2. canonical order, 3. compose in place. */
    size_t m = 0;
    for (size_t i = 0; i < n;) {
        int len;
        uint32_t cp = qs_utf8_decode(s + i, &len);
        i += (size_t)len;
        m += (size_t)decompose(cp, work + m);
    }
    for (size_t i = 1; i < m; ++i) { /* stable insertion sort of each run of marks */
        unsigned c = ccc_of(work[i]);
        if (c == 0) continue;
        size_t j = i;
        uint32_t cp = work[i];
        while (j > 0) {
            unsigned p = ccc_of(work[j - 1]);
            if (p <= c || p == 0) break;
            work[j] = work[j - 1];
            --j;
        }
        work[j] = cp;
    }
    size_t keep = m;
    if (m > 0) {
        size_t starter = 0, w = 1;
        uint32_t starter_cp = work[0];
        unsigned last = ccc_of(starter_cp) ? 256u : 0u;
        for (size_t r = 1; r < m; ++r) {
            uint32_t cp = work[r];
            unsigned c = ccc_of(cp);
            uint32_t comp = compose(starter_cp, cp);
            if (comp != NONE && (last < c || last == 0)) {
                work[starter] = comp;
                starter_cp = comp;
                continue;
            }
            if (c == 0) {
                starter = w;
                starter_cp = cp;
            }
            last = c;
            work[w++] = cp;
        }
        keep = w;
    }
    size_t o = 0;
    for (size_t i = 0; i < keep; ++i) o += (size_t)qs_utf8_encode(work[i], out + o);
    return o;
}

static int is_safe(uint32_t cp) { return cp < 0x300 || !in_ranges(qs_nfc_unsafe, qs_nfc_nunsafe, cp); }

size_t qs_nfc(const char *s, size_t n, char *out, uint32_t *work) {
    /* Safe starters are copied; each unsafe code point is normalized together with the
     * safe starter before it and the unsafe ones after it (nothing composes or reorders
     * across a safe starter). */
    size_t i = 0, o = 0, chunk = 0; /* chunk: where the current chunk would start */
    while (i < n) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x80) {
            out[o++] = (char)c;
            chunk = i++;
            continue;
        }
        int len;
        uint32_t cp = qs_utf8_decode(s + i, &len);
        if (is_safe(cp)) {
            memcpy(out + o, s + i, (size_t)len);
            o += (size_t)len;
            chunk = i;
            i += (size_t)len;
            continue;
        }
        o -= i - chunk; /* the chunk's starter was copied already */
        size_t j = i + (size_t)len;
        while (j < n) {
            uint32_t q = qs_utf8_decode(s + j, &len);
            if (is_safe(q)) break;
            j += (size_t)len;
        }
        o += nfc_chunk(s + chunk, j - chunk, out + o, work);
        i = j;
        chunk = j;
    }
    return o;
}
