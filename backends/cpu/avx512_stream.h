// The weight-streaming loop that the avx512 set's bf16 and int8 streams share
// (kernels_avx512_bf16_stream.cpp's WeightStream, kernels_avx512_int8_stream.cpp's
// Int8Stream). Include only from files compiled with AVX-512 and the dot
// product the caller's Dot runs.
//
// c[i * ldc + j] = sum over k of x[i][k] * w[j][k] for i < rows and the
// kStreamCols rows j of w at `w` (row stride w_stride bytes), in 4-byte steps
// of k (a pair of bf16, a quad of int8). Roles swapped so that w needs no
// packing: x, packed once per call as 32-row slivers (per step, the 32 rows'
// 4-byte words: 128 bytes), is the vector operand; each 4-byte step of a w
// row is broadcast straight from memory.
//
// Micro-tile 6 w rows x 64 x rows (two slivers): per step, four 512-bit loads
// of x and 6 broadcasts feed 24 dot products into 24 accumulators (29 of the
// 32 registers with the x vectors and a broadcast): 10 loads per 24 products.
// A 12 x 32 tile (14 loads per 24) is slower from 64 rows up: there the
// loads, not the products, are the limit. It, and a 12 x 16 tile, take the
// last 32 or 16 rows. Each tile runs the whole depth in registers and is
// transposed into c once.
// Blocks: per group of 12 rows of w, every 64-row unit of x, so the group's
// rows are read from memory by the first unit and from L1/L2 by the rest; the
// first unit prefetches them a few lines ahead, the x slivers stream from
// L2/L3, and every unit prefetches its share of the next group's rows into L2,
// so that the memory reads of w overlap the products throughout.
#pragma once

#include <immintrin.h>

#include <cstdint>
#include <cstring>

namespace hetero {
namespace cpu {
namespace avx512 {

constexpr int64_t kGroupRows = 12;              // rows of w per group
constexpr int64_t kStreamCols = 2 * kGroupRows;  // rows of w per call
constexpr int64_t kSliverRows = 32;              // rows of x per packed sliver
constexpr int64_t kStepBytes = 4;                // bytes of a row per step of k
constexpr int64_t kStepsPerLine = 64 / kStepBytes;
constexpr int64_t kPrefetchLines = 6;            // how far ahead the first unit fetches w

// Dot: the accumulator type Acc and its Sum, zero(), dot(acc, x, w) (x: 16
// rows' words, w: one word broadcast) and store(Sum*, acc).

// t[j][i] = the sum for the kW rows j of w at w and the 16 kVecs rows i of x
// from the sliver xs on (vector v: half v % 2 of sliver v / 2, slivers
// sliver_bytes apart). prefetch: fetch w's lines kPrefetchLines ahead (into
// L1). Rows [next_r0, next_r1) of the next group (at `next`) are fetched into
// L2 a line per line of w used.
template <class Dot, int kW, int kVecs>
void group_tile(const uint8_t* xs, int64_t sliver_bytes, int64_t steps, const uint8_t* w, int64_t w_stride,
                bool prefetch, const uint8_t* next, int64_t next_r0, int64_t next_r1,
                typename Dot::Sum (*t)[2 * kSliverRows]) {
  typename Dot::Acc acc[kW][kVecs];
#pragma GCC unroll 12
  for (int j = 0; j < kW; ++j) {
#pragma GCC unroll 4
    for (int v = 0; v < kVecs; ++v) acc[j][v] = Dot::zero();
  }
  auto step = [&](int64_t s) {
    __m512i xv[kVecs];
#pragma GCC unroll 4
    for (int v = 0; v < kVecs; ++v) {
      xv[v] = _mm512_loadu_si512(xs + (v / 2) * sliver_bytes + kStepBytes * (s * kSliverRows + 16 * (v % 2)));
    }
#pragma GCC unroll 12
    for (int j = 0; j < kW; ++j) {
      int word;
      std::memcpy(&word, w + j * w_stride + kStepBytes * s, sizeof(word));
      const __m512i wj = _mm512_set1_epi32(word);
#pragma GCC unroll 4
      for (int v = 0; v < kVecs; ++v) acc[j][v] = Dot::dot(acc[j][v], xv[v], wj);
    }
  };
  int64_t s = 0;
  for (; s + kStepsPerLine <= steps; s += kStepsPerLine) {  // a line of each w row
    if (prefetch) {
      for (int j = 0; j < kW; ++j) {
        _mm_prefetch(reinterpret_cast<const char*>(w + j * w_stride + kStepBytes * (s + kPrefetchLines * kStepsPerLine)),
                     _MM_HINT_T0);
      }
    }
    for (int64_t j = next_r0; j < next_r1; ++j) {
      _mm_prefetch(reinterpret_cast<const char*>(next + j * w_stride + kStepBytes * s), _MM_HINT_T1);
    }
#pragma GCC unroll 16
    for (int64_t q = 0; q < kStepsPerLine; ++q) step(s + q);
  }
  for (; s < steps; ++s) step(s);
#pragma GCC unroll 12
  for (int j = 0; j < kW; ++j) {
#pragma GCC unroll 4
    for (int v = 0; v < kVecs; ++v) Dot::store(t[j] + 16 * v, acc[j][v]);
  }
}

// c[i * ldc + j] for i < rows, j < kStreamCols; depth_bytes a multiple of
// kStepBytes (prefetches past the call's rows of w cannot fault).
template <class Dot>
void stream_rows(const uint8_t* xp, int64_t rows, int64_t depth_bytes, const uint8_t* w, int64_t w_stride,
                 typename Dot::Sum* c, int64_t ldc) {
  constexpr int64_t kHalf = kGroupRows / 2;
  const int64_t steps = depth_bytes / kStepBytes, sliver_bytes = kSliverRows * depth_bytes;
  alignas(64) typename Dot::Sum t[kGroupRows][2 * kSliverRows];
  const int64_t slivers = (rows + kSliverRows - 1) / kSliverRows, units = (slivers + 1) / 2;
  for (int64_t j0 = 0; j0 < kStreamCols; j0 += kGroupRows) {
    const uint8_t* wg = w + j0 * w_stride;
    const uint8_t* next = wg + kGroupRows * w_stride;
    for (int64_t u = 0, i0 = 0; u < units; ++u, i0 += 2 * kSliverRows) {
      const int64_t n = rows - i0 < 2 * kSliverRows ? rows - i0 : 2 * kSliverRows;
      const uint8_t* xs = xp + 2 * u * sliver_bytes;
      // The next group's rows, shared out over the units and the tiles.
      const int64_t r0 = kGroupRows * u / units, r1 = kGroupRows * (u + 1) / units, rm = (r0 + r1) / 2;
      if (n > kSliverRows) {
        group_tile<Dot, kHalf, 4>(xs, sliver_bytes, steps, wg, w_stride, u == 0, next, r0, rm, t);
        group_tile<Dot, kHalf, 4>(xs, sliver_bytes, steps, wg + kHalf * w_stride, w_stride, u == 0, next, rm, r1,
                                  t + kHalf);
      } else if (n > 16) {
        group_tile<Dot, kGroupRows, 2>(xs, sliver_bytes, steps, wg, w_stride, u == 0, next, r0, r1, t);
      } else {
        group_tile<Dot, kGroupRows, 1>(xs, sliver_bytes, steps, wg, w_stride, u == 0, next, r0, r1, t);
      }
      for (int64_t i = 0; i < n; ++i) {
        for (int64_t j = 0; j < kGroupRows; ++j) c[(i0 + i) * ldc + j0 + j] = t[j][i];
      }
    }
  }
}

}  // namespace avx512
}  // namespace cpu
}  // namespace hetero
