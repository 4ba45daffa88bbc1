/* nfc.h: Unicode Normalization Form C (UAX #15) of UTF-8 text, for the tokenizer's NFC
 * normalizer (Qwen2). Canonical decomposition, canonical ordering and canonical
 * composition with the tables of nfc_table.c (generated from Python's unicodedata; the
 * Unicode version is qs_nfc_unicode_version). Text made only of code points that NFC
 * never changes (the quick-check "unsafe" table) is copied as it is.
 *
 * Ownership: the caller owns both buffers.
 */
#ifndef QS_NFC_H
#define QS_NFC_H

#include <stddef.h>
#include <stdint.h>

/* 1 when NFC leaves the valid UTF-8 text `s` (n bytes) unchanged by the quick check (every
 * code point is a starter that NFC never touches); 0 when it may change it. */
int qs_nfc_quick(const char *s, size_t n);

/* NFC of the valid UTF-8 text `s` (n bytes) into out (3 * n + 16 bytes of room: NFC
 * never grows to more than 3 bytes per input byte; 3 * n + 16 is always enough).
 * `work` is scratch of at least 4 * n + 16 uint32_t. Returns the output length. */
size_t qs_nfc(const char *s, size_t n, char *out, uint32_t *work);

/* Tables (nfc_table.c). */
extern const char qs_nfc_unicode_version[];
extern const uint32_t qs_nfc_ccc[][2];
extern const int qs_nfc_nccc;
extern const uint32_t qs_nfc_decomp[][3];
extern const int qs_nfc_ndecomp;
extern const uint32_t qs_nfc_decomp_pool[];
extern const uint32_t qs_nfc_comp[][3];
extern const int qs_nfc_ncomp;
extern const uint32_t qs_nfc_unsafe[][2];
extern const int qs_nfc_nunsafe;

#endif /* QS_NFC_H */
