// The byte-coded streaming product of the avx2 set (kernels.h QuantizedSmallM):
// decode-shaped scaled GEMMs (rows <= 4 of a) read the float8 or int8 weight
// once and decode it in registers, so that a 1-byte weight moves half the
// bytes of a bf16 one. Compiled with -mavx2 -mfma -mf16c; runs only where
// kernels_select.cpp found those features.
//
// Float8 weights to float32 without a table, 32 codes per 256-bit load:
//   e5m2      a code is the top byte of the binary16 of the same value, so
//             one unpack with zeros gives binary16: h = code << 8.
//   e4m3fn    sign | (code & 0x7f) << 7 is binary16 of the value times 2^-8
//             (exponent bias 15 instead of 7; binary16 holds every e4m3
//             magnitude, subnormals included). From h: an arithmetic shift
//             right by one and a mask (0xbf80: the sign, then the 7 bits).
//             Its NaN codes (0x7f, 0xff) are patched in, on a branch that a
//             test of each 32 codes takes only when one is there.
//   e4m3fnuz  the same, times 2^-7 (bias 8); NaN is 0x80 (no -0).
//   e5m2fnuz  its top exponent has no binary16 counterpart: a gather from a
//             256-entry float table instead (slower, but still one pass).
// vcvtph2ps widens binary16 exactly, binary16 subnormals included. The power
// of two is folded into a, which is decoded once per call (exact: a's float8
// values times 2^8 stay far inside float32).
//
// The unpacks work within 128-bit lanes, so of 32 codes the four float
// vectors hold codes 0-7, 16-23, 8-15 and 24-31; a is prepared in that order.
//
// int8: 16 codes sign-extended to int16 (vpmovsxbw) and multiplied with a as
// int16 in pairs (vpmaddwd): exact int32 sums (a pair is at most 2^15).
//
// One column of w (a row of the Linear weight) at a time with every row of a,
// so w is read as one sequential stream. Accumulators: the four float vectors
// of a chunk go to separate chains for one row (FMA latency), to two for two
// rows, to one each beyond; block sums fold into totals (kernels.h).

#include "kernels.h"

#if defined(__x86_64__) || defined(_M_X64)

#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "avx2_vectors.h"

namespace hetero {
namespace cpu {
namespace {

constexpr int64_t kChunk = 32;  // codes per step (one 256-bit load)

// decode32 runs once per chunk in the kernel's loop. GCC left some of its
// instances out of line, returning the vectors through memory: forced inline,
// the stream ran twice as fast (bench/RESULTS.md, the Zen 3).
#if defined(_MSC_VER)
#define HETERO_ALWAYS_INLINE __forceinline
#else
#define HETERO_ALWAYS_INLINE inline __attribute__((always_inline))
#endif

// The weight formats of the stream and how each is decoded.
enum Kind { kE5M2, kE4M3, kE4M3Fnuz, kGather, kInt8 };

// What a is multiplied by so that a times w's reading is a times w's value.
constexpr float factor_of(int kind) {
  return kind == kE4M3 ? 256.0f : kind == kE4M3Fnuz ? 128.0f : 1.0f;
}

// Which code of a chunk lane i of the q-th float vector decode32 gives holds,
// p = 8q + i: a is prepared in this order, so the kernel reads it straight.
inline int code_at(int kind, int p) {
  const int q = p / 8, i = p % 8;
  switch (kind) {
    case kE5M2: case kE4M3: case kE4M3Fnuz:  // unpacks within 128-bit lanes
      return (q == 1 ? 16 : q == 2 ? 8 : q == 3 ? 24 : 0) + i;
    default: return p;
  }
}

// 32 codes at `codes` (32 readable bytes) into four float vectors.
template <int KIND>
HETERO_ALWAYS_INLINE void decode32(const uint8_t* codes, const float* table, __m256* w) {
  if (KIND == kGather) {
    for (int q = 0; q < 4; ++q) {
      const __m128i eight = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(codes + 8 * q));
      w[q] = _mm256_i32gather_ps(table, _mm256_cvtepu8_epi32(eight), 4);
    }
    return;
  }
  const __m256i c = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(codes));
  const __m256i zero = _mm256_setzero_si256();
  __m256i lo = _mm256_unpacklo_epi8(zero, c);  // code << 8 in 16-bit lanes
  __m256i hi = _mm256_unpackhi_epi8(zero, c);
  if (KIND != kE5M2) {
    const __m256i keep = _mm256_set1_epi16(static_cast<short>(0xbf80));
    lo = _mm256_and_si256(_mm256_srai_epi16(lo, 1), keep);
    hi = _mm256_and_si256(_mm256_srai_epi16(hi, 1), keep);
    const __m256i nan = KIND == kE4M3
        ? _mm256_cmpeq_epi8(_mm256_and_si256(c, _mm256_set1_epi8(0x7f)), _mm256_set1_epi8(0x7f))
        : _mm256_cmpeq_epi8(c, _mm256_set1_epi8(static_cast<char>(0x80)));
    if (!_mm256_testz_si256(nan, nan)) {  // rare: make those lanes binary16 NaN
      const __m256i quiet = _mm256_set1_epi16(0x7e00);
      lo = _mm256_or_si256(lo, _mm256_and_si256(_mm256_unpacklo_epi8(nan, nan), quiet));
      hi = _mm256_or_si256(hi, _mm256_and_si256(_mm256_unpackhi_epi8(nan, nan), quiet));
    }
  }
  w[0] = _mm256_cvtph_ps(_mm256_castsi256_si128(lo));
  w[1] = _mm256_cvtph_ps(_mm256_extracti128_si256(lo, 1));
  w[2] = _mm256_cvtph_ps(_mm256_castsi256_si128(hi));
  w[3] = _mm256_cvtph_ps(_mm256_extracti128_si256(hi, 1));
}

using avx2::horizontal_sum;

inline int32_t horizontal_sum(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
  return _mm_cvtsi128_si32(s);
}

// The block scale of row r, block kb, column j (block recipe).
inline float block_scale(const QuantizedSmallM& p, int r, int64_t kb, int64_t j) {
  return p.scale_a[r * p.sa_rows + kb * p.sa_cols] * p.scale_b[kb * p.sb_rows + (j / 128) * p.sb_cols];
}

// Column j of the product: c[r][j] for every row r of a (prepared: float or
// int16, rows lda_p apart, zero-padded to whole chunks).
template <int ROWS, int KIND>
void column(const QuantizedSmallM& p, const float* table, const void* a_prepared, int64_t lda_p,
            int64_t j, int64_t prefetch_rows) {
  constexpr int kChains = KIND == kInt8 ? 2 : ROWS == 1 ? 4 : ROWS == 2 ? 2 : 1;
  __m256 acc[ROWS][kChains];
  __m256i iacc[ROWS][kChains];
  float total[ROWS] = {};
  int64_t exact[ROWS] = {};
  for (int r = 0; r < ROWS; ++r) {
    for (int q = 0; q < kChains; ++q) acc[r][q] = _mm256_setzero_ps(), iacc[r][q] = _mm256_setzero_si256();
  }
  const uint8_t* w = p.w + j * p.ldw;
  const int64_t depth = p.depth, block = p.block;
  alignas(32) uint8_t tail[kChunk];
  const int64_t block_or_depth = block != 0 ? block : depth;
  int64_t fold_at = std::min(block_or_depth, depth);  // the next fold's k (blocks are whole chunks)
  for (int64_t k0 = 0; k0 < depth; k0 += kChunk) {
    // The row prefetch_rows on is asked into L2 at this row's pace: each row
    // of w is a short stream (a 4096-byte row is one page) on which the
    // hardware prefetcher would start cold.
    if (prefetch_rows > 0) _mm_prefetch(reinterpret_cast<const char*>(w + prefetch_rows * p.ldw + k0), _MM_HINT_T1);
    const uint8_t* codes = w + k0;
    if (k0 + kChunk > depth) {  // the last codes, zero-padded (0 is +0 in every format)
      std::memset(tail, 0, sizeof tail);
      std::memcpy(tail, codes, static_cast<size_t>(depth - k0));
      codes = tail;
    }
    if (KIND == kInt8) {
      const int16_t* a16 = static_cast<const int16_t*>(a_prepared) + k0;
      const __m256i w0 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(codes)));
      const __m256i w1 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(codes + 16)));
      for (int r = 0; r < ROWS; ++r) {
        const int16_t* ar = a16 + r * lda_p;
        iacc[r][0] = _mm256_add_epi32(iacc[r][0], _mm256_madd_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(ar)), w0));
        iacc[r][1] = _mm256_add_epi32(iacc[r][1], _mm256_madd_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(ar + 16)), w1));
      }
    } else {
      __m256 wv[4];
      decode32<KIND>(codes, table, wv);
      const float* a32 = static_cast<const float*>(a_prepared) + k0;
      for (int r = 0; r < ROWS; ++r) {
        for (int q = 0; q < 4; ++q) {
          acc[r][q % kChains] = _mm256_fmadd_ps(_mm256_loadu_ps(a32 + r * lda_p + 8 * q), wv[q], acc[r][q % kChains]);
        }
      }
    }
    // Fold at each block's end (block scales; int8's exact slices) and at the end.
    const int64_t done = k0 + kChunk;
    if (done < fold_at) continue;
    fold_at = std::min(fold_at + block_or_depth, depth);
    const int64_t kb = block != 0 ? k0 / block : 0;
    for (int r = 0; r < ROWS; ++r) {
      const float scale = p.scale_a != nullptr ? block_scale(p, r, kb, j) : 1.0f;
      if (KIND == kInt8) {
        const int32_t sum = horizontal_sum(_mm256_add_epi32(iacc[r][0], iacc[r][1]));
        if (p.exact_int) exact[r] += sum;
        else total[r] += static_cast<float>(sum) * scale;
        iacc[r][0] = iacc[r][1] = _mm256_setzero_si256();
      } else {
        __m256 sum = acc[r][0];
        for (int q = 1; q < kChains; ++q) sum = _mm256_add_ps(sum, acc[r][q]);
        total[r] += p.scale_a != nullptr ? horizontal_sum(sum) * scale : horizontal_sum(sum);
        for (int q = 0; q < kChains; ++q) acc[r][q] = _mm256_setzero_ps();
      }
    }
  }
  for (int r = 0; r < ROWS; ++r) {
    // int64 sums wrap to int32 as torch._int_mm's int32 sums do.
    if (p.exact_int) static_cast<int32_t*>(p.c)[r * p.ldc + j] = static_cast<int32_t>(exact[r]);
    else static_cast<float*>(p.c)[r * p.ldc + j] = total[r];
  }
}

template <int KIND>
void columns(const QuantizedSmallM& p, const float* table, const void* a_prepared, int64_t lda_p,
             int64_t col0, int64_t col1) {
  // Prefetch about 12 KiB ahead in w (kernels_avx512_quantized.cpp measured it).
  const int64_t ahead = std::max<int64_t>(1, 12 * 1024 / std::max<int64_t>(p.ldw, 1));
  for (int64_t j = col0; j < col1; ++j) {
    const int64_t prefetch_rows = j + ahead < col1 ? ahead : 0;
    switch (p.rows) {
      case 1: column<1, KIND>(p, table, a_prepared, lda_p, j, prefetch_rows); break;
      case 2: column<2, KIND>(p, table, a_prepared, lda_p, j, prefetch_rows); break;
      case 3: column<3, KIND>(p, table, a_prepared, lda_p, j, prefetch_rows); break;
      default: column<4, KIND>(p, table, a_prepared, lda_p, j, prefetch_rows); break;
    }
  }
}

void small_m(const QuantizedSmallM& p, int64_t col0, int64_t col1) {
  const int kind = p.dtype == DType::int8 ? kInt8
                   : p.dtype == DType::float8_e5m2 ? kE5M2
                   : p.dtype == DType::float8_e4m3fn ? kE4M3
                   : p.dtype == DType::float8_e4m3fnuz ? kE4M3Fnuz : kGather;
  alignas(32) float table[256];
  for (int code = 0; code < 256; ++code) table[code] = bfloat16_to_float(BFloat16{p.table[code]});
  // a's rows, decoded once per call in the order decode32 gives w's codes
  // (code_at) and zero-padded to whole chunks: float times the kind's factor,
  // or int16 for int8.
  const int64_t ld = (p.depth + kChunk - 1) / kChunk * kChunk;
  int order[kChunk];
  for (int i = 0; i < kChunk; ++i) order[i] = code_at(kind, i);
  thread_local std::vector<float> prepared;
  prepared.assign(static_cast<size_t>(std::max<int64_t>(p.rows * ld, 1)), 0.0f);
  int16_t* a16 = reinterpret_cast<int16_t*>(prepared.data());
  const float factor = factor_of(kind);
  for (int64_t r = 0; r < p.rows; ++r) {
    const uint8_t* a = p.a + r * p.lda;
    for (int64_t k0 = 0; k0 < p.depth; k0 += kChunk) {
      for (int i = 0; i < kChunk; ++i) {
        const int64_t k = k0 + order[i];
        if (k >= p.depth) continue;  // zero padding
        if (kind == kInt8) a16[r * ld + k0 + i] = static_cast<int8_t>(a[k]);
        else prepared[static_cast<size_t>(r * ld + k0 + i)] = table[a[k]] * factor;
      }
    }
  }
  switch (kind) {
    case kInt8: return columns<kInt8>(p, table, a16, ld, col0, col1);
    case kE5M2: return columns<kE5M2>(p, table, prepared.data(), ld, col0, col1);
    case kE4M3: return columns<kE4M3>(p, table, prepared.data(), ld, col0, col1);
    case kE4M3Fnuz: return columns<kE4M3Fnuz>(p, table, prepared.data(), ld, col0, col1);
    default: return columns<kGather>(p, table, prepared.data(), ld, col0, col1);
  }
}

}  // namespace

const QuantizedKernels* avx2_quantized_kernels() {
  // Streaming beats decoding w up to 32 rows here: on the Zen 3, fp8 1.3-2x
  // at 32 rows and level at 64 (bench/RESULTS.md).
  static const QuantizedKernels kernels{portable_quantized_kernels()->decode_rows, small_m, nullptr,
                                        nullptr, 32};
  return &kernels;
}

}  // namespace cpu
}  // namespace hetero

#endif  // x86-64
