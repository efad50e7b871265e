// Moving tiles of 16-bit elements from global to shared memory, shared by the
// GEMM and attention kernels.
#pragma once

#include <cstdint>
#include <cstring>

#include "backends/cuda/runtime.h"

namespace hetero {
namespace gpu {

// One 16-byte move (8 elements); both addresses 16-byte aligned.
__device__ __forceinline__ void copy16(uint16_t* dst, const uint16_t* src) {
#if defined(HETERO_GPU_HOST)
  std::memcpy(dst, src, 16);
#else
  *reinterpret_cast<uint4*>(dst) = *reinterpret_cast<const uint4*>(src);
#endif
}

// Copies a ROWS x COLS tile into shared memory `dst` (row pitch PITCH
// elements, 16-byte aligned). Element (r, c) is src[r * row_stride + c *
// col_stride]; what lies outside [0, rows) x [0, cols) becomes zero, so
// partial tiles need no special case in the math.
//
// Threads take chunks of 8 consecutive columns, so when columns are the
// contiguous dimension a warp reads whole cache lines. A chunk moves as one
// 16-byte load when `vectors` (col_stride 1, src and row_stride 16-byte
// aligned: the caller checks) and the chunk is entirely inside.
template <int ROWS, int COLS, int PITCH, int THREADS>
__device__ __forceinline__ void load_tile(uint16_t* dst, const uint16_t* src, int64_t rows,
                                          int64_t cols, int64_t row_stride, int64_t col_stride,
                                          bool vectors) {
  static_assert(COLS % 8 == 0 && PITCH % 8 == 0, "chunks of 8 columns, 16-byte aligned rows");
  constexpr int kChunksPerRow = COLS / 8;
  for (int chunk = static_cast<int>(threadIdx.x); chunk < ROWS * kChunksPerRow; chunk += THREADS) {
    const int r = chunk / kChunksPerRow;
    const int c = (chunk % kChunksPerRow) * 8;
    uint16_t* d = dst + r * PITCH + c;
    const uint16_t* s = src + r * row_stride;
    if (vectors && r < rows && c + 8 <= cols) {
      copy16(d, s + c);
    } else {
      for (int e = 0; e < 8; ++e) {
        d[e] = (r < rows && c + e < cols) ? s[(c + e) * col_stride] : uint16_t{0};
      }
    }
  }
}

// Whether load_tile may use 16-byte moves for a tensor whose innermost
// (column) stride is `col_stride` and whose other strides are `strides`.
inline bool vector_loads_ok(const void* data, int64_t col_stride, const int64_t* strides, int n) {
  if (col_stride != 1 || reinterpret_cast<uintptr_t>(data) % 16 != 0) return false;
  for (int i = 0; i < n; ++i) {
    if (strides[i] % 8 != 0) return false;
  }
  return true;
}

// Stores v to element `offset` of an output of dtype `dt` (float32, or T).
template <typename T>
__device__ __forceinline__ void store_as(void* base, DType dt, int64_t offset, float v) {
  if (dt == DType::float32) {
    static_cast<float*>(base)[offset] = v;
  } else {
    static_cast<uint16_t*>(base)[offset] = T::narrow(v);
  }
}

// Element `offset` of a float32 or T input, widened.
template <typename T>
__device__ __forceinline__ float load_as(const void* base, DType dt, int64_t offset) {
  return dt == DType::float32 ? static_cast<const float*>(base)[offset]
                              : T::widen(static_cast<const uint16_t*>(base)[offset]);
}

}  // namespace gpu
}  // namespace hetero
