// The weight-streaming tile loop that the AMX bf16 and int8 products share
// (kernels_amx_gemm.cpp's WeightStream, kernels_amx_int8.cpp's Int8Stream).
// Include only from files compiled with -mamx-tile and the AMX dot product
// the caller's Dot runs.
//
// c[i * ldc + j] = sum over k of x[i][k] * w[j][k] for i < rows and the 32
// rows j of w at `w` (row stride w_stride bytes): per block of 32 rows of x,
// tiles hold T = w . x^T (32 w rows x 32 x rows, 4-byte sums). A tiles are
// 16 rows of w x 64 bytes of k loaded straight from memory; B tiles 16 groups
// of k (pairs of bf16, quads of int8) x 16 rows of x, from x packed as 32
// 4-byte words per group (a block: 32 * depth_bytes bytes). T is stored and
// transposed into c. The first block of x rows reads w from memory and
// prefetches it kPrefetchSteps steps ahead, one line per row; the other
// blocks read it from L2.
#pragma once

#include <immintrin.h>

#include <cstdint>

#include "amx_peak.h"

namespace hetero {
namespace cpu {
namespace amx {

constexpr int64_t kStreamCols = 32;  // rows of w per call
constexpr int64_t kStepBytes = 64;   // bytes of k per tile row
constexpr int64_t kPrefetchSteps = 8;

// Dot's four functions run the tile dot products of the loop, named by their
// C tile: c0 is tile 0 += 4 . 6, c1 1 += 4 . 7, c2 2 += 5 . 6, c3 3 += 5 . 7
// (the intrinsics take their tile numbers as literal tokens). Sum is the
// products' 4-byte sum (float or int32_t).
template <class Dot, class Sum>
void stream_rows(const uint8_t* xp, int64_t rows, int64_t depth_bytes, const uint8_t* w,
                 int64_t w_stride, Sum* c, int64_t ldc) {
  static const TileConfig config;  // per call: each call is a whole pass over depth
  _tile_loadconfig(&config);
  const uint8_t* w1 = w + 16 * w_stride;
  alignas(64) Sum t[kStreamCols * 32];
  for (int64_t i0 = 0; i0 < rows; i0 += 32, xp += 32 * depth_bytes) {
    const bool two = rows - i0 > 16;  // a second B tile of x rows
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
    for (int64_t k = 0; k < depth_bytes; k += kStepBytes) {
      if (i0 == 0 && k + kPrefetchSteps * kStepBytes < depth_bytes) {
        for (int64_t r = 0; r < kStreamCols; ++r) {
          _mm_prefetch(reinterpret_cast<const char*>(w + r * w_stride + k + kPrefetchSteps * kStepBytes),
                       _MM_HINT_T0);
        }
      }
      const uint8_t* x = xp + k * 32;  // 16 groups x 32 words per step
      _tile_loadd(4, w + k, w_stride);
      _tile_loadd(6, x, 128);
      Dot::c0();
      _tile_loadd(5, w1 + k, w_stride);
      Dot::c2();
      if (two) {
        _tile_loadd(7, x + 64, 128);
        Dot::c1();
        Dot::c3();
      }
    }
    // T tiles: (w rows 0-15 | 16-31) x (x rows 0-15 | 16-31), row stride 32 sums.
    _tile_stored(0, t, 128);
    _tile_stored(2, t + 16 * 32, 128);
    if (two) {
      _tile_stored(1, t + 16, 128);
      _tile_stored(3, t + 16 * 32 + 16, 128);
    }
    const int64_t n = rows - i0 < 32 ? rows - i0 : 32;
    for (int64_t i = 0; i < n; ++i) {
      for (int64_t j = 0; j < kStreamCols; ++j) c[(i0 + i) * ldc + j] = t[j * 32 + i];
    }
  }
}

}  // namespace amx
}  // namespace cpu
}  // namespace hetero
