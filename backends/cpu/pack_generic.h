// Portable packing into the Ap/Bp layouts of kernels.h, for any dtype and
// strides. The AVX2 file uses these for layouts it has no fast path for.
#pragma once

#include "kernels.h"

namespace hetero {
namespace cpu {

template <typename In>
void pack_a_generic(const MatrixRef& src, int64_t rows, int64_t depth, float* dst) {
  const In* a = static_cast<const In*>(src.data);
  for (int64_t s = 0; s * kMR < rows; ++s, dst += depth * kMR) {
    for (int64_t r = 0; r < kMR; ++r) {
      const int64_t i = s * kMR + r;
      if (i >= rows) {
        for (int64_t k = 0; k < depth; ++k) dst[k * kMR + r] = 0.0f;
        continue;
      }
      const In* row = a + i * src.row_stride;
      for (int64_t k = 0; k < depth; ++k) dst[k * kMR + r] = to_float(row[k * src.col_stride]);
    }
  }
}

template <typename In>
void widen_rows_generic(const MatrixRef& src, int64_t rows, int64_t depth, float* dst, int64_t ld) {
  for (int64_t i = 0; i < rows; ++i) {
    const In* row = static_cast<const In*>(src.at(i, 0));
    for (int64_t k = 0; k < depth; ++k) dst[i * ld + k] = to_float(row[k * src.col_stride]);
  }
}

template <typename In>
void pack_b_generic(const MatrixRef& src, int64_t depth, int64_t cols, float* dst) {
  const In* b = static_cast<const In*>(src.data);
  for (int64_t s = 0; s * kNR < cols; ++s, dst += depth * kNR) {
    const int64_t width = cols - s * kNR < kNR ? cols - s * kNR : kNR;
    for (int64_t k = 0; k < depth; ++k) {
      const In* row = b + k * src.row_stride + s * kNR * src.col_stride;
      float* out = dst + k * kNR;
      for (int64_t c = 0; c < width; ++c) out[c] = to_float(row[c * src.col_stride]);
      for (int64_t c = width; c < kNR; ++c) out[c] = 0.0f;
    }
  }
}

// Calls packer<In>(src, ...) for In = src.dtype (float32/float16/bfloat16):
// any function templated on the element type of its first (MatrixRef) argument.
#define HETERO_PACK_BY_DTYPE(packer, src, ...)                                       \
  do {                                                                               \
    switch ((src).dtype) {                                                           \
      case DType::float16: packer<Half>(src, __VA_ARGS__); break;                    \
      case DType::bfloat16: packer<BFloat16>(src, __VA_ARGS__); break;               \
      default: packer<float>(src, __VA_ARGS__); break;                               \
    }                                                                                \
  } while (0)

}  // namespace cpu
}  // namespace hetero
