// The avx512 set's Int8Stream (kernels.h): exact int8 x @ w.t() reading the
// weight w where it lies, once, on vpdpbusd (AVX512_VNNI) — the int8 form of
// kernels_avx512_bf16_stream.cpp, which explains the structure (driven by
// scaled_gemm.cpp's run_int8_stream). Compiled with the flags of
// kernels_avx512_int8.cpp; used only where the CPU has AVX512_VNNI.
//
// vpdpbusd multiplies 4 unsigned by 4 signed bytes and adds the four products
// to an int32 lane. x is the unsigned operand: packed once per call as x + 128
// (the sign bit flipped), 32 rows per sliver, per quad of k the 32 words
// (x[i][k..k+3]); each 4-byte quad of a w row is broadcast straight from
// memory as the signed operand. Then sum (x + 128) w = x.w + 128 sum(w), and
// the row sums of w are subtracted at the end. int32 arithmetic wraps, so the
// result is x.w modulo 2^32: exact wherever x.w itself fits int32, as
// torch._int_mm's.
//
// Micro-tile 6 w rows x 64 x rows: per quad of k, four 512-bit loads of x and
// 6 broadcasts feed 24 vpdpbusd into 24 accumulators; the last 32 or 16 rows
// of x take a 12 x 32 or 12 x 16 tile. Per group of 12 rows of w, every 64-row
// unit of x; the first unit prefetches the group's lines ahead, every unit its
// share of the next group's rows into L2.

#include "kernels.h"

#if defined(__x86_64__) || defined(_M_X64)

#include <immintrin.h>

#include <cstring>

namespace hetero {
namespace cpu {
namespace {

constexpr int64_t kGroupRows = 12;          // rows of w per group
constexpr int64_t kHalf = kGroupRows / 2;   // rows of w per 64-row tile
constexpr int64_t kCols = 2 * kGroupRows;   // rows of w per multiply call
constexpr int64_t kSliverRows = 32;         // rows of x per packed sliver
constexpr int64_t kQuadsPerLine = 16;       // quads per 64-byte line of a w row
constexpr int64_t kPrefetchLines = 6;       // how far ahead the first unit fetches w
// Rows of x it serves: those of the bf16 stream (kernels_avx512_bf16_stream.cpp).
constexpr int64_t kMinRows = 20, kMaxRows = 512;

// x(i, k) = x[i * rs + k * cs] for i < rows, k < depth (a multiple of 4), as
// x + 128 in unsigned bytes: per 32-row sliver, per quad of k, 32 words. 16
// rows' words of one quad come in one gather (rows past `rows` read as zero).
void pack_x(const uint8_t* x, int64_t rs, int64_t cs, int64_t rows, int64_t depth, uint8_t* dst) {
  const __m512i flip = _mm512_set1_epi8(static_cast<char>(0x80));
  const __m512i lanes = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  for (int64_t i0 = 0; i0 < rows; i0 += kSliverRows, dst += kSliverRows * depth) {
    for (int64_t h = 0; h < 2; ++h) {  // the sliver's two 16-row halves
      const int64_t first = i0 + 16 * h, n = rows - first < 16 ? rows - first : 16;
      uint8_t* out = dst + 64 * h;
      if (n <= 0) {
        for (int64_t q = 0; q < depth / 4; ++q) _mm512_storeu_si512(out + 128 * q, flip);
        continue;
      }
      const __mmask16 keep = static_cast<__mmask16>((1u << n) - 1);
      if (cs == 1 && rs <= INT32_MAX / 16) {
        const __m512i offsets = _mm512_mullo_epi32(lanes, _mm512_set1_epi32(static_cast<int32_t>(rs)));
        const uint8_t* base = x + first * rs;
        for (int64_t q = 0; q < depth / 4; ++q) {
          const __m512i words = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), keep, offsets, base + 4 * q, 1);
          _mm512_storeu_si512(out + 128 * q, _mm512_xor_si512(words, flip));
        }
        continue;
      }
      for (int64_t q = 0; q < depth / 4; ++q) {
        for (int64_t i = 0; i < 16; ++i) {
          for (int64_t e = 0; e < 4; ++e) {
            const uint8_t v = i < n ? x[(first + i) * rs + (4 * q + e) * cs] : 0;
            out[128 * q + 4 * i + e] = static_cast<uint8_t>(v ^ 0x80);
          }
        }
      }
    }
  }
}

// t[j][i] = sum over quads of (x_i + 128) . w_j for the kW rows j of w at w
// (row stride ldw bytes) and the 16 kVecs rows i of x from the sliver xs on
// (vector v: half v % 2 of sliver v / 2, slivers sliver_bytes apart);
// prefetches as kernels_avx512_bf16_stream.cpp's group_tile.
template <int kW, int kVecs>
void group_tile(const uint8_t* xs, int64_t sliver_bytes, int64_t quads, const uint8_t* w, int64_t ldw,
                bool prefetch, const uint8_t* next, int64_t next_r0, int64_t next_r1,
                int32_t (*t)[2 * kSliverRows]) {
  __m512i acc[kW][kVecs];
#pragma GCC unroll 12
  for (int j = 0; j < kW; ++j) {
#pragma GCC unroll 4
    for (int v = 0; v < kVecs; ++v) acc[j][v] = _mm512_setzero_si512();
  }
  auto step = [&](int64_t q) {
    __m512i xv[kVecs];
#pragma GCC unroll 4
    for (int v = 0; v < kVecs; ++v) {
      xv[v] = _mm512_loadu_si512(xs + (v / 2) * sliver_bytes + 4 * (q * kSliverRows + 16 * (v % 2)));
    }
#pragma GCC unroll 12
    for (int j = 0; j < kW; ++j) {
      int word;
      std::memcpy(&word, w + j * ldw + 4 * q, sizeof(word));
      const __m512i wj = _mm512_set1_epi32(word);
#pragma GCC unroll 4
      for (int v = 0; v < kVecs; ++v) acc[j][v] = _mm512_dpbusd_epi32(acc[j][v], xv[v], wj);
    }
  };
  int64_t q = 0;
  for (; q + kQuadsPerLine <= quads; q += kQuadsPerLine) {  // a line of each w row
    if (prefetch) {
      for (int j = 0; j < kW; ++j) {
        _mm_prefetch(reinterpret_cast<const char*>(w + j * ldw + 4 * (q + kPrefetchLines * kQuadsPerLine)),
                     _MM_HINT_T0);
      }
    }
    for (int64_t j = next_r0; j < next_r1; ++j) {
      _mm_prefetch(reinterpret_cast<const char*>(next + j * ldw + 4 * q), _MM_HINT_T1);
    }
#pragma GCC unroll 16
    for (int64_t s = 0; s < kQuadsPerLine; ++s) step(q + s);
  }
  for (; q < quads; ++q) step(q);
#pragma GCC unroll 12
  for (int j = 0; j < kW; ++j) {
#pragma GCC unroll 4
    for (int v = 0; v < kVecs; ++v) _mm512_storeu_si512(t[j] + 16 * v, acc[j][v]);
  }
}

// 128 * sum over k < depth of row j of w (signed bytes), for kGroupRows rows.
void row_sums_128(const uint8_t* w, int64_t ldw, int64_t depth, int32_t* sums) {
  const __m512i ones = _mm512_set1_epi8(1);
  for (int64_t j = 0; j < kGroupRows; ++j) {
    __m512i acc = _mm512_setzero_si512();
    for (int64_t k = 0; k < depth; k += 64) {
      const __mmask64 keep = depth - k >= 64 ? ~__mmask64{0} : (__mmask64{1} << (depth - k)) - 1;
      acc = _mm512_dpbusd_epi32(acc, ones, _mm512_maskz_loadu_epi8(keep, w + j * ldw + k));
    }
    sums[j] = static_cast<int32_t>(static_cast<uint32_t>(_mm512_reduce_add_epi32(acc)) << 7);
  }
}

// c[i * ldc + j] for i < rows, j < kCols (Int8Stream::multiply).
void multiply(const uint8_t* xp, int64_t rows, int64_t depth, const uint8_t* w, int64_t ldw, int32_t* c,
              int64_t ldc) {
  const int64_t quads = depth / 4, sliver_bytes = kSliverRows * depth;
  alignas(64) int32_t t[kGroupRows][2 * kSliverRows];
  int32_t sums[kGroupRows];
  const int64_t slivers = (rows + kSliverRows - 1) / kSliverRows, units = (slivers + 1) / 2;
  for (int64_t j0 = 0; j0 < kCols; j0 += kGroupRows) {
    const uint8_t* wg = w + j0 * ldw;
    const uint8_t* next = wg + kGroupRows * ldw;
    for (int64_t u = 0, i0 = 0; u < units; ++u, i0 += 2 * kSliverRows) {
      const int64_t n = rows - i0 < 2 * kSliverRows ? rows - i0 : 2 * kSliverRows;
      const uint8_t* xs = xp + 2 * u * sliver_bytes;
      const int64_t r0 = kGroupRows * u / units, r1 = kGroupRows * (u + 1) / units, rm = (r0 + r1) / 2;
      if (n > kSliverRows) {
        group_tile<kHalf, 4>(xs, sliver_bytes, quads, wg, ldw, u == 0, next, r0, rm, t);
        group_tile<kHalf, 4>(xs, sliver_bytes, quads, wg + kHalf * ldw, ldw, u == 0, next, rm, r1, t + kHalf);
      } else if (n > 16) {
        group_tile<kGroupRows, 2>(xs, sliver_bytes, quads, wg, ldw, u == 0, next, r0, r1, t);
      } else {
        group_tile<kGroupRows, 1>(xs, sliver_bytes, quads, wg, ldw, u == 0, next, r0, r1, t);
      }
      if (u == 0) row_sums_128(wg, ldw, depth, sums);  // the group's rows are in cache now
      for (int64_t i = 0; i < n; ++i) {
        for (int64_t j = 0; j < kGroupRows; ++j) {  // wrapping, as the products
          c[(i0 + i) * ldc + j0 + j] =
              static_cast<int32_t>(static_cast<uint32_t>(t[j][i]) - static_cast<uint32_t>(sums[j]));
        }
      }
    }
  }
}

}  // namespace

const Int8Stream* avx512_int8_stream() {
  static const Int8Stream stream{kMinRows, kMaxRows, 4, kCols, pack_x, multiply};
  return &stream;
}

}  // namespace cpu
}  // namespace hetero

#else

namespace hetero {
namespace cpu {
const Int8Stream* avx512_int8_stream() { return nullptr; }
}  // namespace cpu
}  // namespace hetero

#endif
