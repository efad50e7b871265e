// Element types shared by every backend, and portable scalar conversions.
//
// The conversions are plain integer bit manipulation (no _Float16, no F16C or
// NEON intrinsics) so every backend and every compiler produces the same bits.
// float -> half/bfloat16 rounds to nearest, ties to even, exactly like IEEE
// hardware conversions: NaN stays NaN (sign kept, quiet bit set), overflow
// becomes inf, and fp16 subnormals are produced and read back exactly.
// Under nvcc and hipcc the conversions are host and device functions, so the
// GPU kernels round exactly like the CPU ones.
#pragma once

#include <cstdint>
#include <cstring>

#if defined(__CUDACC__) || defined(__HIPCC__)
#define HETERO_HOST_DEVICE __host__ __device__
#else
#define HETERO_HOST_DEVICE
#endif

namespace hetero {

// The numeric codes are part of the Python-facing ABI: never renumber.
// boolean: one byte, 0 or 1 (torch.bool), for attention masks. The float8
// codes and int8 are the byte-coded inputs of scaled GEMMs (quantized.h
// decodes them); int32 is their exact integer result.
enum class DType : int32_t {
  float32 = 0, float16 = 1, bfloat16 = 2, float64 = 3, boolean = 4,
  float8_e4m3fn = 5, float8_e5m2 = 6, float8_e4m3fnuz = 7, float8_e5m2fnuz = 8,
  int8 = 9, int32 = 10
};

inline bool is_known(DType dt) {
  return static_cast<int32_t>(dt) >= 0 && static_cast<int32_t>(dt) <= 10;
}

// One byte per element, decoded through a table: the float8 formats and int8.
inline bool is_byte_coded(DType dt) {
  return static_cast<int32_t>(dt) >= 5 && static_cast<int32_t>(dt) <= 9;
}

// Bytes per element; 0 for a code outside the enum.
inline int64_t element_size(DType dt) {
  switch (dt) {
    case DType::float32: return 4;
    case DType::float16: return 2;
    case DType::bfloat16: return 2;
    case DType::float64: return 8;
    case DType::boolean: return 1;
    case DType::float8_e4m3fn:
    case DType::float8_e5m2:
    case DType::float8_e4m3fnuz:
    case DType::float8_e5m2fnuz:
    case DType::int8: return 1;
    case DType::int32: return 4;
  }
  return 0;
}

inline const char* dtype_name(DType dt) {
  switch (dt) {
    case DType::float32: return "float32";
    case DType::float16: return "float16";
    case DType::bfloat16: return "bfloat16";
    case DType::float64: return "float64";
    case DType::boolean: return "bool";
    case DType::float8_e4m3fn: return "float8_e4m3fn";
    case DType::float8_e5m2: return "float8_e5m2";
    case DType::float8_e4m3fnuz: return "float8_e4m3fnuz";
    case DType::float8_e5m2fnuz: return "float8_e5m2fnuz";
    case DType::int8: return "int8";
    case DType::int32: return "int32";
  }
  return "unknown";
}

// Storage-only 16-bit types: arithmetic always happens in float.
struct Half {
  uint16_t bits;
};
struct BFloat16 {
  uint16_t bits;
};

// memcpy is the portable, aliasing-safe bit cast before C++20; CUDA device
// code has intrinsics for it, HIP device code clang's builtin memcpy.
HETERO_HOST_DEVICE inline uint32_t float_bits(float f) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(f);
#elif defined(__HIP_DEVICE_COMPILE__)
  uint32_t u;
  __builtin_memcpy(&u, &f, sizeof u);
  return u;
#else
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
#endif
}

HETERO_HOST_DEVICE inline float bits_float(uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#elif defined(__HIP_DEVICE_COMPILE__)
  float f;
  __builtin_memcpy(&f, &u, sizeof f);
  return f;
#else
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
#endif
}

HETERO_HOST_DEVICE inline float half_to_float(Half h) {
  const uint32_t sign = static_cast<uint32_t>(h.bits & 0x8000u) << 16;
  const uint32_t exp = (h.bits >> 10) & 0x1fu;
  const uint32_t mant = h.bits & 0x3ffu;
  if (exp == 0x1fu) return bits_float(sign | 0x7f800000u | (mant << 13));  // inf, NaN
  if (exp != 0) return bits_float(sign | ((exp + (127 - 15)) << 23) | (mant << 13));
  // Zero or subnormal: mant * 2^-24 is exact in float (a normal float), so a
  // multiply is the simplest exact renormalisation.
  const float magnitude = static_cast<float>(mant) * 0x1p-24f;
  return bits_float(sign | float_bits(magnitude));
}

HETERO_HOST_DEVICE inline Half float_to_half(float f) {
  const uint32_t x = float_bits(f);
  const uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000u);
  const uint32_t abs = x & 0x7fffffffu;

  if (abs > 0x7f800000u) {  // NaN: keep the top payload bits, force quiet
    return Half{static_cast<uint16_t>(sign | 0x7e00u | ((abs >> 13) & 0x3ffu))};
  }
  // 65520 is the midpoint between 65504 (max half) and 65536; ties-to-even
  // rounds it up, so everything from there on (and inf) is inf.
  if (abs >= 0x477ff000u) return Half{static_cast<uint16_t>(sign | 0x7c00u)};

  if (abs >= 0x38800000u) {  // normal half range, >= 2^-14
    // Add just under half an ulp, plus one when the kept lsb is odd: that is
    // round-half-even. A mantissa carry correctly bumps the exponent.
    const uint32_t odd = (abs >> 13) & 1u;
    const uint32_t rounded = abs + 0xfffu + odd;
    return Half{static_cast<uint16_t>(sign | ((rounded - ((127u - 15u) << 23)) >> 13))};
  }

  // Subnormal half (or zero): result = round(value / 2^-24).
  const uint32_t exp = abs >> 23;  // biased float exponent, < 113 here
  const uint32_t shift = 126u - exp;  // value = mant24 * 2^-24 >> shift
  if (shift > 24) return Half{sign};  // below 2^-25: rounds to zero
  const uint32_t mant24 = (abs & 0x7fffffu) | 0x800000u;
  uint32_t q = mant24 >> shift;
  const uint32_t rem = mant24 & ((1u << shift) - 1u);
  const uint32_t halfway = 1u << (shift - 1);
  if (rem > halfway || (rem == halfway && (q & 1u))) ++q;  // may carry into 2^-14: still right
  return Half{static_cast<uint16_t>(sign | q)};
}

HETERO_HOST_DEVICE inline float bfloat16_to_float(BFloat16 b) {
  return bits_float(static_cast<uint32_t>(b.bits) << 16);
}

HETERO_HOST_DEVICE inline BFloat16 float_to_bfloat16(float f) {
  const uint32_t x = float_bits(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) {  // NaN: rounding could carry it into inf
    return BFloat16{static_cast<uint16_t>((x >> 16) | 0x0040u)};
  }
  // Same half-even bias trick as for half; overflow carries into inf naturally.
  const uint32_t odd = (x >> 16) & 1u;
  return BFloat16{static_cast<uint16_t>((x + 0x7fffu + odd) >> 16)};
}

// Uniform spelling for templated kernels.
HETERO_HOST_DEVICE inline float to_float(float v) { return v; }
HETERO_HOST_DEVICE inline float to_float(Half v) { return half_to_float(v); }
HETERO_HOST_DEVICE inline float to_float(BFloat16 v) { return bfloat16_to_float(v); }

template <typename T>
HETERO_HOST_DEVICE T from_float(float v);
template <>
HETERO_HOST_DEVICE inline float from_float<float>(float v) { return v; }
template <>
HETERO_HOST_DEVICE inline Half from_float<Half>(float v) { return float_to_half(v); }
template <>
HETERO_HOST_DEVICE inline BFloat16 from_float<BFloat16>(float v) { return float_to_bfloat16(v); }

}  // namespace hetero
