/* utf8.h: UTF-8 for the tokenizer: decoding valid text, encoding code points, and making
 * arbitrary bytes valid the way Python's bytes.decode("utf-8", errors="replace") does
 * (each maximal subpart of an ill-formed sequence becomes one U+FFFD, Unicode 3.9 /
 * W3C "substitution of maximal subparts").
 *
 * Ownership: the caller owns every buffer.
 */
#ifndef QS_UTF8_H
#define QS_UTF8_H

#include <stddef.h>
#include <stdint.h>

/* Length of the longest valid UTF-8 prefix of s (n bytes); n when all of it is valid. */
size_t qs_utf8_valid_prefix(const char *s, size_t n);

/* Copies s (n bytes) to out replacing every maximal ill-formed subpart by U+FFFD
 * (EF BF BD). out must hold 3 * n bytes. Returns the output length. */
size_t qs_utf8_sanitize(const char *s, size_t n, char *out);

/* Decodes the code point at s (valid UTF-8, at least one byte); *len = its byte length. */
uint32_t qs_utf8_decode(const char *s, int *len);

/* Byte length of the UTF-8 sequence starting with lead byte c (valid text). */
int qs_utf8_len(unsigned char c);

/* Writes cp as UTF-8 to out (4 bytes room); returns the byte count. */
int qs_utf8_encode(uint32_t cp, char *out);

#endif /* QS_UTF8_H */
