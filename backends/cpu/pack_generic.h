// Portable packing into the Ap/Bp layouts of kernels.h, for any dtype, strides
// and tile (mr rows, nr columns; the portable and avx2 sets' by default). The
// vector files use these for layouts and edges they have no fast path for.
#pragma once

#include "kernels.h"

namespace hetero {
namespace cpu {

template <typename In, int64_t mr = kMR>
void pack_a_generic(const MatrixRef& src, int64_t rows, int64_t depth, float* dst) {
  const In* a = static_cast<const In*>(src.data);
  for (int64_t s = 0; s * mr < rows; ++s, dst += depth * mr) {
    for (int64_t r = 0; r < mr; ++r) {
      const int64_t i = s * mr + r;
      if (i >= rows) {
        for (int64_t k = 0; k < depth; ++k) dst[k * mr + r] = 0.0f;
        continue;
      }
      const In* row = a + i * src.row_stride;
      for (int64_t k = 0; k < depth; ++k) dst[k * mr + r] = to_float(row[k * src.col_stride]);
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

template <typename In, int64_t nr = kNR>
void pack_b_generic(const MatrixRef& src, int64_t depth, int64_t cols, float* dst) {
  const In* b = static_cast<const In*>(src.data);
  for (int64_t s = 0; s * nr < cols; ++s, dst += depth * nr) {
    const int64_t width = cols - s * nr < nr ? cols - s * nr : nr;
    for (int64_t k = 0; k < depth; ++k) {
      const In* row = b + k * src.row_stride + s * nr * src.col_stride;
      float* out = dst + k * nr;
      for (int64_t c = 0; c < width; ++c) out[c] = to_float(row[c * src.col_stride]);
      for (int64_t c = width; c < nr; ++c) out[c] = 0.0f;
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
