/* f16.h: float32 -> bfloat16 / IEEE half encoders, round to nearest even.
 *
 * Bit-exact on every machine (integer arithmetic only). NaN stays NaN (quiet), values too
 * large for half become +-inf, values too small become signed zero or half subnormals.
 * The opposite direction (half -> float) lives with the readers.
 */
#ifndef QS_F16_H
#define QS_F16_H

#include <stdint.h>

/* bfloat16 bits of f, rounded to nearest even. */
uint16_t qs_f16_encode_bf16(float f);

/* IEEE 754 binary16 bits of f, rounded to nearest even (subnormals included). */
uint16_t qs_f16_encode_f16(float f);

#endif /* QS_F16_H */
