// Exact int8 x @ w.t() for a few rows of x on AMX-INT8 tiles (kernels.h
// Int8Stream): the amx kernel set's int8 product for scaled_gemm.cpp, where
// PyTorch's own int8 GEMM runs on the same tiles. Compiled with -mamx-tile
// -mamx-int8; reached only through the amx set where the CPU has AMX-INT8.
//
// The structure of kernels_amx_gemm.cpp's weight stream with bytes: per 32
// rows of w (Linear layout, k contiguous) and 32 rows of x, tiles hold
// T = w . x^T in int32 — A tiles are 16 rows of w x 64 values of k loaded
// straight from memory at w's row stride, B tiles 16 quads of k x 16 rows of
// x (x packed once per call, 4 bytes per row and quad), tdpbssd multiplies
// signed bytes and adds each row's 4 products to int32 exactly. T is stored
// and transposed into c. The first block of x rows prefetches w ahead.

#include "amx_peak.h"
#include "kernels.h"

#if defined(__x86_64__) && defined(__AMX_TILE__) && defined(__AMX_INT8__)

#include <immintrin.h>

#include <cstring>

namespace hetero {
namespace cpu {
namespace {

constexpr int64_t kTileRows = 16;
constexpr int64_t kStep = 64;  // values of k per tile row
constexpr int64_t kCols = 32;  // rows of w per call
// Rows of x it serves: from 3 (below, the vector streaming product is as
// fast) to 128 (as the bf16 stream).
constexpr int64_t kMinRows = 3, kMaxRows = 128;
constexpr int64_t kPrefetchSteps = 8;

void pack_x(const uint8_t* x, int64_t rs, int64_t cs, int64_t rows, int64_t depth, uint8_t* dst) {
  for (int64_t i0 = 0; i0 < rows; i0 += 32, dst += 32 * depth) {
    for (int64_t q = 0; q < depth / 4; ++q) {
      for (int64_t i = 0; i < 32; ++i) {
        uint8_t* word = dst + q * 128 + i * 4;
        for (int64_t e = 0; e < 4; ++e) word[e] = i0 + i < rows ? x[(i0 + i) * rs + (4 * q + e) * cs] : 0;
      }
    }
  }
}

void multiply(const uint8_t* xp, int64_t rows, int64_t depth, const uint8_t* w, int64_t ldw, int32_t* c,
              int64_t ldc) {
  static const TileConfig config;  // per call: each call is a whole pass over depth
  _tile_loadconfig(&config);
  const uint8_t* w1 = w + kTileRows * ldw;
  alignas(64) int32_t t[kCols * 32];
  for (int64_t i0 = 0; i0 < rows; i0 += 32, xp += 32 * depth) {
    const bool two = rows - i0 > kTileRows;  // a second B tile of x rows
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
    for (int64_t k = 0; k < depth; k += kStep) {
      if (i0 == 0 && k + kPrefetchSteps * kStep < depth) {
        for (int64_t r = 0; r < kCols; ++r) {
          _mm_prefetch(reinterpret_cast<const char*>(w + r * ldw + k + kPrefetchSteps * kStep), _MM_HINT_T0);
        }
      }
      const uint8_t* x = xp + k * 32;  // 16 quads x 32 words per step
      _tile_loadd(4, w + k, ldw);
      _tile_loadd(6, x, 128);
      _tile_dpbssd(0, 4, 6);
      _tile_loadd(5, w1 + k, ldw);
      _tile_dpbssd(2, 5, 6);
      if (two) {
        _tile_loadd(7, x + 64, 128);
        _tile_dpbssd(1, 4, 7);
        _tile_dpbssd(3, 5, 7);
      }
    }
    // T tiles: (w rows 0-15 | 16-31) x (x rows 0-15 | 16-31), row stride 32 words.
    _tile_stored(0, t, 128);
    _tile_stored(2, t + 16 * 32, 128);
    if (two) {
      _tile_stored(1, t + 16, 128);
      _tile_stored(3, t + 16 * 32 + 16, 128);
    }
    const int64_t n = rows - i0 < 32 ? rows - i0 : 32;
    for (int64_t i = 0; i < n; ++i) {
      for (int64_t j = 0; j < kCols; ++j) c[(i0 + i) * ldc + j] = t[j * 32 + i];
    }
  }
}

}  // namespace

const Int8Stream* amx_int8_stream() {
  if (!amx_int8_available()) return nullptr;
  static const Int8Stream stream{kMinRows, kMaxRows, kStep, kCols, pack_x, multiply};
  return &stream;
}

}  // namespace cpu
}  // namespace hetero

#else

namespace hetero {
namespace cpu {
const Int8Stream* amx_int8_stream() { return nullptr; }
}  // namespace cpu
}  // namespace hetero

#endif
