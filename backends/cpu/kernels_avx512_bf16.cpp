// The bf16 GEMM and attention products of the avx512 kernel set (kernels.h
// DotGemm, DotAttention): operands packed as bf16 pairs, multiplied by
// vdpbf16ps, which adds a[k] b[k] + a[k+1] b[k+1] to each fp32 lane at twice
// the fp32 FMA rate and without widening anything. Compiled with the flags of
// kernels_avx512.cpp; used only where the CPU has AVX512_BF16.
//
// GEMM micro-tile 8 x 48: per pair of k, three 512-bit B loads (48 columns x a
// pair) and 8 broadcast A pairs feed 24 vdpbf16ps into 24 accumulators; with
// the B vectors and the broadcast, 28 of the 32 registers. 8 rows, not more:
// prompts and batches come in multiples of 8 far more often than of 14, and
// every padded row is wasted arithmetic. From L1 this runs at the measured
// vdpbf16ps peak.
// Blocks: a KC = 1024 B sliver (96 KiB) streams from L2 while the MC / 8 row
// slivers use it; the MC x KC A block (192 KiB) stays in L2. A deep KC means
// fewer passes over the fp32 accumulators and fewer, larger packing runs.
// Attention's tile is 8 x 32 (head dims 64 and 128 are whole slivers); both
// run the same templated micro-kernel, which reaches the same rate.
//
// Rounding: each product of two bf16 is exact in fp32; each pair adds to the
// accumulator with fp32 rounding, so a K-long sum is rounded about K times, as
// the fp32 kernels' is. vdpbf16ps treats subnormal inputs as zero and flushes
// subnormal results: differences far below the bounds hetero checks against.

#include "kernels.h"

#if defined(__x86_64__) || defined(_M_X64)

#include <immintrin.h>

#include <cstring>

namespace hetero {
namespace cpu {
namespace {

constexpr int64_t kMR16 = 8, kNR16 = 48;                  // the micro-tile
constexpr int64_t kMC16 = 96, kKC16 = 1024, kNC16 = 480;  // blocks
constexpr int64_t kPrefetchPairs = 8;                      // see pack_pairs

inline uint16_t bits(const void* p, int64_t offset) {
  return static_cast<const uint16_t*>(p)[offset];
}

// The 32-bit word (x[k], x[k+1]) of a strided bf16 row or column, zero past depth.
inline uint32_t pair_at(const uint16_t* x, int64_t stride, int64_t k, int64_t depth) {
  const uint32_t lo = bits(x, k * stride);
  const uint32_t hi = k + 1 < depth ? bits(x, (k + 1) * stride) : 0;
  return lo | hi << 16;
}

// The 8 x 8 transpose of 32-bit words in registers (unpack, shuffle,
// permute): store(j, x) receives x with lane i = lane j of load(i). Named
// values, not arrays: GCC spills arrays of vectors to the stack.
template <class Load, class Store>
inline void transpose8x8(Load load, Store store) {
  const __m256 r0 = load(0), r1 = load(1), r2 = load(2), r3 = load(3), r4 = load(4),
               r5 = load(5), r6 = load(6), r7 = load(7);
  const __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1),
               t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3),
               t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5),
               t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
  const __m256 s0 = _mm256_shuffle_ps(t0, t2, 0x44), s1 = _mm256_shuffle_ps(t0, t2, 0xEE),
               s2 = _mm256_shuffle_ps(t1, t3, 0x44), s3 = _mm256_shuffle_ps(t1, t3, 0xEE),
               s4 = _mm256_shuffle_ps(t4, t6, 0x44), s5 = _mm256_shuffle_ps(t4, t6, 0xEE),
               s6 = _mm256_shuffle_ps(t5, t7, 0x44), s7 = _mm256_shuffle_ps(t5, t7, 0xEE);
  store(0, _mm256_permute2f128_ps(s0, s4, 0x20)), store(1, _mm256_permute2f128_ps(s1, s5, 0x20));
  store(2, _mm256_permute2f128_ps(s2, s6, 0x20)), store(3, _mm256_permute2f128_ps(s3, s7, 0x20));
  store(4, _mm256_permute2f128_ps(s0, s4, 0x31)), store(5, _mm256_permute2f128_ps(s1, s5, 0x31));
  store(6, _mm256_permute2f128_ps(s2, s6, 0x31)), store(7, _mm256_permute2f128_ps(s3, s7, 0x31));
}

// Pairs of `lines` (up to 8) lines that run along k with unit stride (rows of
// a row-major A, columns of a column-major B): word p of line l is
// (x_l[2p], x_l[2p+1]); writes dst[p * ld + l] for p < pairs (2 * pairs <=
// depth), leaving lines >= `lines` alone. 8 pairs of the 8 lines at a time
// go through transpose8x8, the rest word by word.
inline void transpose_pairs(const uint16_t* const* line, int lines, int64_t pairs, uint32_t* dst,
                            int64_t ld) {
  const __mmask8 keep = static_cast<__mmask8>((1u << lines) - 1);
  const uint16_t* src[8];  // missing lines re-read line 0 (cheaper than a branch), masked off
  for (int l = 0; l < 8; ++l) src[l] = line[l < lines ? l : 0];
  int64_t p = 0;
  for (; p + 8 <= pairs; p += 8) {
    transpose8x8(
        [&](int l) { return _mm256_loadu_ps(reinterpret_cast<const float*>(src[l] + 2 * p)); },
        [&](int pair, __m256 x) {
          _mm256_mask_storeu_epi32(dst + (p + pair) * ld, keep, _mm256_castps_si256(x));
        });
  }
  for (; p < pairs; ++p) {
    for (int l = 0; l < lines; ++l) {
      uint32_t word;
      std::memcpy(&word, line[l] + 2 * p, sizeof(word));
      dst[p * ld + l] = word;
    }
  }
}

// Pairs of two lines that run across k (rows k and k+1 of a row-major B,
// columns k and k+1 of a column-major A), 16 values at a time: interleaves
// x0[0..15] and x1[0..15] into the words (x0[j], x1[j]).
inline void interleave16(const uint16_t* x0, const uint16_t* x1, uint32_t* dst, __mmask16 keep) {
  const __m256i r0 = _mm256_maskz_loadu_epi16(keep, x0);
  const __m256i r1 = x1 ? _mm256_maskz_loadu_epi16(keep, x1) : _mm256_setzero_si256();
  const __m256i lo = _mm256_unpacklo_epi16(r0, r1), hi = _mm256_unpackhi_epi16(r0, r1);
  _mm256_mask_storeu_epi32(dst, static_cast<__mmask8>(keep), _mm256_permute2x128_si256(lo, hi, 0x20));
  _mm256_mask_storeu_epi32(dst + 8, static_cast<__mmask8>(keep >> 8), _mm256_permute2x128_si256(lo, hi, 0x31));
}

// ---------------------------------------------------------------- packing

// Packs `lines` lines of bf16 (rows of A, or columns of B), each `depth` long
// along k, into slivers of `width` lines: per sliver, for each pair of k, the
// `width` words (x_l[k], x_l[k+1]). Padding lines and a missing k + 1 are 0.
// Element (line l, k) is at x[l * line_stride + k * k_stride].
void pack_pairs(const uint16_t* x, int64_t line_stride, int64_t k_stride, int64_t lines,
                int64_t depth, int64_t width, uint32_t* dst) {
  const int64_t pairs = (depth + 1) / 2, sliver_words = pairs * width;
  if (lines % width != 0) {
    std::memset(dst + lines / width * sliver_words, 0, sizeof(uint32_t) * static_cast<size_t>(sliver_words));
  }
  // Where line l starts in dst: its sliver, then its place in the sliver.
  auto line_dst = [&](int64_t l) { return dst + l / width * sliver_words + l % width; };
  if (k_stride == 1) {  // each line's pairs are words in memory: transpose 8 lines at a time
    const int64_t whole = depth / 2;
    for (int64_t l0 = 0; l0 < lines; l0 += 8) {  // width is a multiple of 8
      const uint16_t* line[8];
      const int n = static_cast<int>(lines - l0 < 8 ? lines - l0 : 8);
      for (int l = 0; l < n; ++l) line[l] = x + (l0 + l) * line_stride;
      uint32_t* d = line_dst(l0);
      transpose_pairs(line, n, whole, d, width);
      if (whole < pairs) {
        for (int l = 0; l < n; ++l) d[whole * width + l] = pair_at(line[l], 1, 2 * whole, depth);
      }
    }
  } else if (line_stride == 1) {
    // Lines are adjacent in memory: interleave k and k + 1 across all lines,
    // one pair of k at a time, so that memory is read in order (one pass per
    // sliver instead would stride over the whole depth once per sliver).
    // Each step reads two short runs far apart, which the hardware
    // prefetcher does not foresee: prefetch the runs kPrefetchPairs ahead.
    const int64_t chunk = width < 16 ? width : 16;  // 16 divides width when larger
    for (int64_t p = 0; p < pairs; ++p) {
      const uint16_t* x0 = x + 2 * p * k_stride;
      const uint16_t* x1 = 2 * p + 1 < depth ? x0 + k_stride : nullptr;
      if (2 * (p + kPrefetchPairs) + 1 < depth) {  // the two lines kPrefetchPairs pairs on
        const char* ahead = reinterpret_cast<const char*>(x0 + 2 * kPrefetchPairs * k_stride);
        for (int64_t off = 0; off < 2 * lines; off += 64) {
          _mm_prefetch(ahead + off, _MM_HINT_T0);
          _mm_prefetch(ahead + 2 * k_stride + off, _MM_HINT_T0);
        }
      }
      for (int64_t l0 = 0; l0 < lines; l0 += chunk) {
        const int64_t n = lines - l0 < chunk ? lines - l0 : chunk;
        interleave16(x0 + l0, x1 ? x1 + l0 : nullptr, line_dst(l0) + p * width,
                     static_cast<__mmask16>((1u << n) - 1));
      }
    }
  } else {
    for (int64_t l = 0; l < lines; ++l) {
      uint32_t* d = line_dst(l);
      for (int64_t p = 0; p < pairs; ++p) d[p * width] = pair_at(x + l * line_stride, k_stride, 2 * p, depth);
    }
  }
}

// Ap: per row sliver, depth_pairs x kMR16 words.
void pack_a(const MatrixRef& src, int64_t rows, int64_t depth, uint16_t* dst) {
  pack_pairs(static_cast<const uint16_t*>(src.data), src.row_stride, src.col_stride, rows, depth,
             kMR16, reinterpret_cast<uint32_t*>(dst));
}

// Bp: per column sliver, depth_pairs x kNR16 words.
void pack_b(const MatrixRef& src, int64_t depth, int64_t cols, uint16_t* dst) {
  pack_pairs(static_cast<const uint16_t*>(src.data), src.col_stride, src.row_stride, cols, depth,
             kNR16, reinterpret_cast<uint32_t*>(dst));
}

// Attention's B slivers: kDotAttentionNR columns.
void pack_b_attention(const MatrixRef& src, int64_t depth, int64_t cols, uint16_t* dst) {
  pack_pairs(static_cast<const uint16_t*>(src.data), src.col_stride, src.row_stride, cols, depth,
             kDotAttentionNR, reinterpret_cast<uint32_t*>(dst));
}

// Ap from float32 rows src[i * ld + k], rounded to bf16: per 8-row sliver,
// 8 pairs (16 floats) of each row at a time are rounded by vcvtneps2bf16 into
// 8 words, and the 8 x 8 words transposed into place.
void pack_a_f32(const float* src, int64_t ld, int64_t rows, int64_t depth, uint16_t* dst16) {
  static_assert(kDotAttentionMR == 8, "one 8 x 8 transpose per sliver and 8 pairs");
  uint32_t* dst = reinterpret_cast<uint32_t*>(dst16);
  const int64_t pairs = (depth + 1) / 2, vector_pairs = depth / 16 * 8;
  auto word = [](float lo, float hi) {
    return static_cast<uint32_t>(float_to_bfloat16(lo).bits) |
           static_cast<uint32_t>(float_to_bfloat16(hi).bits) << 16;
  };
  for (int64_t i0 = 0; i0 < rows; i0 += 8, dst += pairs * 8) {
    const int n = static_cast<int>(rows - i0 < 8 ? rows - i0 : 8);
    const __mmask8 keep = static_cast<__mmask8>((1u << n) - 1);  // rows past n are zero
    const float* row = src + i0 * ld;
    for (int64_t p = 0; p < vector_pairs; p += 8) {
      transpose8x8(
          [&](int l) {  // 16 floats of row l (row 0 again past n), rounded to 8 words
            const float* x = row + (l < n ? l : 0) * ld + 2 * p;
            return _mm256_castsi256_ps((__m256i)_mm512_cvtneps_pbh(_mm512_loadu_ps(x)));
          },
          [&](int pair, __m256 x) {
            _mm256_storeu_ps(reinterpret_cast<float*>(dst + (p + pair) * 8), _mm256_maskz_mov_ps(keep, x));
          });
    }
    for (int64_t p = vector_pairs; p < pairs; ++p) {
      for (int l = 0; l < 8; ++l) {
        const float* x = row + l * ld;
        dst[p * 8 + l] = l < n ? word(x[2 * p], 2 * p + 1 < depth ? x[2 * p + 1] : 0.0f) : 0u;
      }
    }
  }
}

// ---------------------------------------------------------------- micro-kernel

// c[kRows x 16 kVecs] (row stride ldc) = (accumulate ? c : 0) + a . b over
// `depth` (even) values of k: per pair of k, kVecs B vectors and one broadcast
// A word per row feed kRows x kVecs vdpbf16ps into as many accumulators.
template <int kRows, int kVecs>
void micro_tile(int64_t depth, const uint16_t* a, const uint16_t* b, float* c, int64_t ldc,
                bool accumulate) {
  __m512 acc[kRows][kVecs];  // fully unrolled below, so it lives in registers
#pragma GCC unroll 16
  for (int r = 0; r < kRows; ++r) {
#pragma GCC unroll 4
    for (int v = 0; v < kVecs; ++v) {
      acc[r][v] = accumulate ? _mm512_loadu_ps(c + r * ldc + 16 * v) : _mm512_setzero_ps();
    }
  }
  for (int64_t p = 0; p < depth / 2; ++p, a += 2 * kRows, b += 32 * kVecs) {
    __m512bh bv[kVecs];
#pragma GCC unroll 4
    for (int v = 0; v < kVecs; ++v) bv[v] = (__m512bh)_mm512_loadu_si512(b + 32 * v);
#pragma GCC unroll 16
    for (int r = 0; r < kRows; ++r) {
      int word;
      std::memcpy(&word, a + 2 * r, sizeof(word));
      const __m512bh ar = (__m512bh)_mm512_set1_epi32(word);
#pragma GCC unroll 4
      for (int v = 0; v < kVecs; ++v) acc[r][v] = _mm512_dpbf16_ps(acc[r][v], ar, bv[v]);
    }
  }
#pragma GCC unroll 16
  for (int r = 0; r < kRows; ++r) {
#pragma GCC unroll 4
    for (int v = 0; v < kVecs; ++v) _mm512_storeu_ps(c + r * ldc + 16 * v, acc[r][v]);
  }
}

void micro(int64_t depth, const uint16_t* a, const uint16_t* b, float* c, int64_t ldc,
           bool accumulate) {
  micro_tile<kMR16, kNR16 / 16>(depth, a, b, c, ldc, accumulate);
}

void micro_attention(int64_t depth, const uint16_t* a, const uint16_t* b, float* c, int64_t ldc,
                     bool accumulate) {
  micro_tile<kDotAttentionMR, kDotAttentionNR / 16>(depth, a, b, c, ldc, accumulate);
}

}  // namespace

const DotAttention* avx512_bf16_attention() {
  static_assert(kDotAttentionMR == kMR16, "attention packs its A like the GEMM");
  static const DotAttention attention{pack_a, pack_a_f32, pack_b_attention, micro_attention};
  return &attention;
}

const DotGemm* avx512_bf16_gemm() {
  static const DotGemm gemm{kMR16, kNR16, kMC16, kKC16, kNC16, 2, pack_a, pack_b, micro};
  return &gemm;
}

}  // namespace cpu
}  // namespace hetero

#else

namespace hetero {
namespace cpu {
const DotGemm* avx512_bf16_gemm() { return nullptr; }
const DotAttention* avx512_bf16_attention() { return nullptr; }
}  // namespace cpu
}  // namespace hetero

#endif
