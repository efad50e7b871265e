// The avx512 set's WeightStream (kernels.h) on vdpbf16ps: bf16 x @ w.t()
// reading the Linear weight w where it lies, once, with no packing of w
// (gemm_weight_stream.cpp drives it). Compiled with the flags of
// kernels_avx512.cpp; used only where the CPU has AVX512_BF16.
//
// The BLIS nest (gemm.cpp) packs every value of w into pair slivers before
// multiplying. With tens of rows of x that packing, and the wait for w's
// bytes inside it, is a large share of the call. Here the roles of the operands
// swap: C^T = w . x^T, with x, packed once per call as pairs of k (the
// attention B slivers: 32 rows of x per sliver), as the vector operand, and
// each 32-bit word (w[j][k], w[j][k+1]) of a w row broadcast straight from
// memory.
//
// Micro-tile 6 w rows x 64 x rows (two 32-row slivers): per pair of k, four
// 512-bit loads of x and 6 broadcasts feed 24 vdpbf16ps into 24
// accumulators (29 of the 32 registers with the x vectors and a broadcast):
// 10 loads per 24 products. A 12 x 32 tile (14 loads per 24) is slower from
// M = 64 up: there the loads, not the products, are the limit. The
// tile runs the whole depth in registers and is transposed into c once; the
// last 32 or 16 rows of x take a 12 x 32 or 12 x 16 tile.
// Blocks: a call computes kCols rows of w; for each group of 12 it walks
// every 64-row unit of x, so the group's rows of w (12 x depth values) are
// read from memory by the first unit and from L1/L2 by the rest; the first
// unit prefetches them a few lines ahead, the x slivers stream from L2/L3,
// and every unit prefetches its share of the next group's rows into L2, so
// that the memory reads of w overlap the products throughout.
//
// Rounding: as kernels_avx512_bf16.cpp (products exact in fp32, one fp32
// rounding per pair of k).

#include "kernels.h"

#if defined(__x86_64__) || defined(_M_X64)

#include <immintrin.h>

#include <cstring>

namespace hetero {
namespace cpu {
namespace {

constexpr int64_t kGroupRows = 12;                // rows of w per group
constexpr int64_t kHalf = kGroupRows / 2;         // rows of w per 64-row tile
constexpr int64_t kCols = 2 * kGroupRows;         // rows of w per multiply call
constexpr int64_t kSliverRows = kDotAttentionNR;  // rows of x per packed sliver
constexpr int64_t kPairsPerLine = 16;             // pairs per 64-byte line of a w row
constexpr int64_t kPrefetchLines = 6;             // how far ahead the first unit fetches w
// Rows of x it serves: from 20 (below, gemm_small_m.cpp's dot product,
// which packs nothing, is as fast: a 12 x 16 tile is bound by its loads) to
// 512 (beyond, x no longer stays in L3 at long depths, and it is re-read for
// every group of 12 rows of w: the BLIS nest, which reads each value of x
// once per panel of w, takes over).
constexpr int64_t kMinRows = 20, kMaxRows = 512;
static_assert(kSliverRows == 32, "two 16-lane vectors per pair of a sliver");

// t[j][i] = sum over pairs p < pairs of dot(w_j pair p, x_i pair p) for the
// kW rows j of w at w (row stride ldw values) and the 16 kVecs rows i of x
// from the sliver xs on (vector v: half v % 2 of sliver v / 2, slivers
// sliver_values apart). prefetch: fetch w's lines kPrefetchLines ahead (into
// L1). Rows [next_r0, next_r1) of the next group (at `next`, same stride) are
// fetched into L2 a line per line of w used.
template <int kW, int kVecs>
void group_tile(const uint16_t* xs, int64_t sliver_values, int64_t pairs, const uint16_t* w, int64_t ldw,
                bool prefetch, const uint16_t* next, int64_t next_r0, int64_t next_r1,
                float (*t)[2 * kSliverRows]) {
  __m512 acc[kW][kVecs];
#pragma GCC unroll 12
  for (int j = 0; j < kW; ++j) {
#pragma GCC unroll 4
    for (int v = 0; v < kVecs; ++v) acc[j][v] = _mm512_setzero_ps();
  }
  auto step = [&](int64_t p) {
    __m512bh xv[kVecs];
#pragma GCC unroll 4
    for (int v = 0; v < kVecs; ++v) {
      xv[v] = (__m512bh)_mm512_loadu_si512(xs + (v / 2) * sliver_values + 2 * (p * kSliverRows + 16 * (v % 2)));
    }
#pragma GCC unroll 12
    for (int j = 0; j < kW; ++j) {
      int word;
      std::memcpy(&word, w + j * ldw + 2 * p, sizeof(word));
      const __m512bh wj = (__m512bh)_mm512_set1_epi32(word);
#pragma GCC unroll 4
      for (int v = 0; v < kVecs; ++v) acc[j][v] = _mm512_dpbf16_ps(acc[j][v], wj, xv[v]);
    }
  };
  int64_t p = 0;
  for (; p + kPairsPerLine <= pairs; p += kPairsPerLine) {  // a line of each w row
    if (prefetch) {
      for (int j = 0; j < kW; ++j) {
        _mm_prefetch(reinterpret_cast<const char*>(w + j * ldw + 2 * (p + kPrefetchLines * kPairsPerLine)),
                     _MM_HINT_T0);
      }
    }
    for (int64_t j = next_r0; j < next_r1; ++j) {
      _mm_prefetch(reinterpret_cast<const char*>(next + j * ldw + 2 * p), _MM_HINT_T1);
    }
#pragma GCC unroll 16
    for (int64_t q = 0; q < kPairsPerLine; ++q) step(p + q);
  }
  for (; p < pairs; ++p) step(p);
#pragma GCC unroll 12
  for (int j = 0; j < kW; ++j) {
#pragma GCC unroll 4
    for (int v = 0; v < kVecs; ++v) _mm512_storeu_ps(t[j] + 16 * v, acc[j][v]);
  }
}

void pack_x(const uint16_t* x, int64_t rs, int64_t cs, int64_t rows, int64_t depth, uint16_t* dst) {
  avx512_bf16_attention()->pack_b({x, DType::bfloat16, cs, rs}, depth, rows, dst);
}

// c[i * ldc + j] for i < rows, j < kCols (WeightStream::multiply).
void multiply(const uint16_t* xp, int64_t rows, int64_t depth, const uint16_t* w, int64_t ldw,
              float* c, int64_t ldc) {
  const int64_t pairs = depth / 2, sliver_values = kSliverRows * depth;
  alignas(64) float t[kGroupRows][2 * kSliverRows];
  const int64_t slivers = (rows + kSliverRows - 1) / kSliverRows, units = (slivers + 1) / 2;
  for (int64_t j0 = 0; j0 < kCols; j0 += kGroupRows) {
    const uint16_t* wg = w + j0 * ldw;
    const uint16_t* next = wg + kGroupRows * ldw;
    for (int64_t u = 0, i0 = 0; u < units; ++u, i0 += 2 * kSliverRows) {
      const int64_t n = rows - i0 < 2 * kSliverRows ? rows - i0 : 2 * kSliverRows;
      const uint16_t* xs = xp + 2 * u * sliver_values;
      // The next group's rows, shared out over the units and the tiles (past
      // the call's columns: the rows of the next call, prefetches that cannot
      // fault).
      const int64_t r0 = kGroupRows * u / units, r1 = kGroupRows * (u + 1) / units, rm = (r0 + r1) / 2;
      if (n > kSliverRows) {
        group_tile<kHalf, 4>(xs, sliver_values, pairs, wg, ldw, u == 0, next, r0, rm, t);
        group_tile<kHalf, 4>(xs, sliver_values, pairs, wg + kHalf * ldw, ldw, u == 0, next, rm, r1, t + kHalf);
      } else if (n > 16) {
        group_tile<kGroupRows, 2>(xs, sliver_values, pairs, wg, ldw, u == 0, next, r0, r1, t);
      } else {
        group_tile<kGroupRows, 1>(xs, sliver_values, pairs, wg, ldw, u == 0, next, r0, r1, t);
      }
      for (int64_t i = 0; i < n; ++i) {
        for (int64_t j = 0; j < kGroupRows; ++j) c[(i0 + i) * ldc + j0 + j] = t[j][i];
      }
    }
  }
}

}  // namespace

const WeightStream* avx512_bf16_weight_stream() {
  static const WeightStream stream{kMinRows, kMaxRows, 2, kCols, pack_x, multiply};
  return &stream;
}

}  // namespace cpu
}  // namespace hetero

#else

namespace hetero {
namespace cpu {
const WeightStream* avx512_bf16_weight_stream() { return nullptr; }
}  // namespace cpu
}  // namespace hetero

#endif
