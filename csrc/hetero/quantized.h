// The byte-coded inputs of scaled GEMMs — the four float8 formats and int8 —
// decoded exactly, and the 256-entry tables kernels decode them through.
//
// Every value of these formats is exact in bfloat16 (at most 4 significant
// bits for float8, 8 for int8; exponents within bfloat16's range), so a
// kernel may decode to bfloat16 and multiply in bfloat16 pairs without
// rounding anything. Encodings (OCP 8-bit floating point, and the FNUZ
// variants AMD MI300 uses):
//   e4m3fn    bias 7,  no inf, NaN = S.1111.111, largest 448
//   e5m2      bias 15, IEEE-like: inf = S.11111.00, NaN = S.11111.{01,10,11}
//   e4m3fnuz  bias 8,  no inf, no -0: 0x80 is the only NaN, largest 240
//   e5m2fnuz  bias 16, no inf, no -0: 0x80 is the only NaN, largest 57344
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>

#include "hetero/dtype.h"

namespace hetero {

// The value of byte `code` of byte-coded dtype `dt` (NaN for NaN codes).
inline float decode_byte(DType dt, uint8_t code) {
  if (dt == DType::int8) return static_cast<float>(static_cast<int8_t>(code));
  int exponent_bits = 4, bias = 7;
  bool fnuz = false;
  switch (dt) {
    case DType::float8_e5m2: exponent_bits = 5, bias = 15; break;
    case DType::float8_e4m3fnuz: bias = 8, fnuz = true; break;
    case DType::float8_e5m2fnuz: exponent_bits = 5, bias = 16, fnuz = true; break;
    default: break;  // e4m3fn
  }
  const int mantissa_bits = 7 - exponent_bits;
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float sign = (code & 0x80) ? -1.0f : 1.0f;
  const int exponent = (code & 0x7f) >> mantissa_bits;
  const int mantissa = code & ((1 << mantissa_bits) - 1);
  const int top = (1 << exponent_bits) - 1;
  if (fnuz && code == 0x80) return nan;
  if (dt == DType::float8_e4m3fn && (code & 0x7f) == 0x7f) return nan;
  if (dt == DType::float8_e5m2 && exponent == top) {
    return mantissa == 0 ? sign * std::numeric_limits<float>::infinity() : nan;
  }
  const float fraction = static_cast<float>(mantissa) / static_cast<float>(1 << mantissa_bits);
  if (exponent == 0) return sign * std::ldexp(fraction, 1 - bias);  // subnormal
  return sign * std::ldexp(1.0f + fraction, exponent - bias);
}

// table[code] = the bfloat16 bits of decode_byte(dt, code), for all 256 codes.
inline void bf16_table(DType dt, uint16_t* table) {
  for (int code = 0; code < 256; ++code) {
    table[code] = float_to_bfloat16(decode_byte(dt, static_cast<uint8_t>(code))).bits;
  }
}

}  // namespace hetero
