// Exact int8 x @ w.t() for a few rows of x on AMX-INT8 tiles (kernels.h
// Int8Stream): the amx kernel set's int8 product for scaled_gemm.cpp, where
// PyTorch's own int8 GEMM runs on the same tiles. Compiled with -mamx-tile
// -mamx-int8; reached only through the amx set where the CPU has AMX-INT8.
//
// amx_stream.h's weight-streaming loop with bytes: A tiles are 16 rows of w
// x 64 values of k, B tiles 16 quads of k x 16 rows of x (x packed once per
// call, 4 bytes per row and quad), and tdpbssd multiplies signed bytes and
// adds each row's 4 products to int32 exactly.

#include "amx_peak.h"
#include "kernels.h"

#if defined(__x86_64__) && defined(__AMX_TILE__) && defined(__AMX_INT8__)

#include "amx_stream.h"

namespace hetero {
namespace cpu {
namespace {

constexpr int64_t kStep = amx::kStepBytes;  // values of k per tile row
// Rows of x it serves: from 3 (below, the vector streaming product is as
// fast) to 128 (as the bf16 stream).
constexpr int64_t kMinRows = 3, kMaxRows = 128;

struct Int8Dot {  // amx_stream.h's Dot
  static void c0() { _tile_dpbssd(0, 4, 6); }
  static void c1() { _tile_dpbssd(1, 4, 7); }
  static void c2() { _tile_dpbssd(2, 5, 6); }
  static void c3() { _tile_dpbssd(3, 5, 7); }
};

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
  amx::stream_rows<Int8Dot>(xp, rows, depth, w, ldw, c, ldc);
}

}  // namespace

const Int8Stream* amx_int8_stream() {
  if (!amx_int8_available()) return nullptr;
  static const Int8Stream stream{kMinRows, kMaxRows, kStep, amx::kStreamCols, pack_x, multiply};
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
