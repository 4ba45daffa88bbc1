/* half.h: IEEE binary16 (f16) and bfloat16 (bf16) <-> binary32 (f32) conversions.
 *
 * Widening (f16/bf16 -> f32) is exact for every input, including subnormals, infinities
 * and NaNs (the payload is kept). Narrowing (f32 -> f16/bf16) rounds to nearest, ties to
 * even; values beyond the format's range become infinities, NaNs stay (quiet) NaNs.
 * All functions work on bit patterns (uint16_t / uint32_t or float) and hold no state.
 */
#ifndef QS_HALF_H
#define QS_HALF_H

#include <stddef.h>
#include <stdint.h>

float qs_f16_to_f32(uint16_t h);
float qs_bf16_to_f32(uint16_t b);
uint16_t qs_f32_to_f16(float f);
uint16_t qs_f32_to_bf16(float f);

/* Bit casts without aliasing problems. */
uint32_t qs_f32_bits(float f);
float qs_f32_from_bits(uint32_t u);

/* Array forms: out (n,) from in (n,). */
void qs_f16_to_f32_n(const uint16_t *in, float *out, size_t n);
void qs_bf16_to_f32_n(const uint16_t *in, float *out, size_t n);
void qs_f32_to_f16_n(const float *in, uint16_t *out, size_t n);
void qs_f32_to_bf16_n(const float *in, uint16_t *out, size_t n);

#endif /* QS_HALF_H */
